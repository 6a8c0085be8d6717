//! Uploaded build sources (`berth deploy <app> --dir`): what the API checks of an archive
//! before it keeps it. Pure: the node checks the archive again when it unpacks it.

use sha2::{Digest, Sha256};

/// What an accepted archive is: its hex SHA-256, size and number of entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub sha256: String,
    pub size: u64,
    pub entries: usize,
}

/// Checks that `archive` is an uncompressed tar whose entries are files, directories and
/// symbolic links with relative paths that stay inside it (no `..`, nothing absolute). The
/// error is one sentence for the person who uploaded it.
pub fn check(archive: &[u8]) -> Result<Checked, String> {
    if archive.is_empty() {
        return Err("the upload is empty: send a tar archive of the directory to deploy".into());
    }
    let mut entries = 0usize;
    let mut a = tar::Archive::new(archive);
    let iter = a
        .entries()
        .map_err(|e| format!("the upload is not a tar archive: {e}"))?;
    for entry in iter {
        let entry = entry.map_err(|e| format!("the upload is not a valid tar archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("the upload holds an unreadable path: {e}"))?
            .into_owned();
        let shown = path.display().to_string();
        for c in path.components() {
            match c {
                std::path::Component::Normal(_) | std::path::Component::CurDir => {}
                _ => {
                    return Err(format!(
                        "the upload's entry {shown:?} leaves the directory (an absolute path or \
                         '..'): paths must be relative and stay inside it"
                    ))
                }
            }
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            return Err(format!(
                "the upload's entry {shown:?} is not a file, directory or symbolic link \
                 (uploads hold only those)"
            ));
        }
        entries += 1;
    }
    if entries == 0 {
        return Err(
            "the upload holds no files: send a tar archive of the directory to deploy".into(),
        );
    }
    Ok(Checked {
        sha256: hex::encode(Sha256::digest(archive)),
        size: archive.len() as u64,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(paths: &[(&str, tar::EntryType)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, kind) in paths {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(if kind.is_file() { 2 } else { 0 });
            h.set_mode(0o644);
            // Written raw: `set_path` itself refuses `..`, and an attacker's archive would not.
            let name = &mut h.as_old_mut().name;
            name[..p.len()].copy_from_slice(p.as_bytes());
            h.set_cksum();
            let data: &[u8] = if kind.is_file() { b"hi" } else { b"" };
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_plain_directory_is_accepted_with_its_hash() {
        let a = archive(&[
            ("www", tar::EntryType::Directory),
            ("www/index.html", tar::EntryType::Regular),
            ("Dockerfile", tar::EntryType::Regular),
        ]);
        let c = check(&a).unwrap();
        assert_eq!(c.entries, 3);
        assert_eq!(c.size, a.len() as u64);
        assert_eq!(c.sha256, hex::encode(Sha256::digest(&a)));
    }

    #[test]
    fn escapes_devices_and_garbage_are_refused_with_a_sentence() {
        let up = archive(&[("../etc/passwd", tar::EntryType::Regular)]);
        assert!(check(&up).unwrap_err().contains("leaves the directory"));
        let abs = archive(&[("/etc/passwd", tar::EntryType::Regular)]);
        assert!(check(&abs).unwrap_err().contains("leaves the directory"));
        let dev = archive(&[("null", tar::EntryType::Char)]);
        assert!(check(&dev).unwrap_err().contains("not a file"));
        assert!(check(b"").unwrap_err().contains("empty"));
        let junk = vec![7u8; 1024];
        assert!(check(&junk).is_err());
        assert!(check(&archive(&[])).unwrap_err().contains("no files"));
    }
}
