//! An uploaded build source (`berth deploy <app> --dir`): the archive the API kept in Redis
//! (`berth:upload:<app>:<sha256>`, a list of chunks) is read chunk by chunk into a file, checked
//! against its SHA-256 and size, and unpacked into the deployment's checkout, where the build
//! takes it as it would a git checkout.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_bus::Redis;
use berth_protocol::{keys, validate, Upload};
use redis::AsyncCommands;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::log_sink::LogSink;

/// Unpacks `upload` of `app` into `dir` (emptied first). The archive passes through a file
/// beside `dir`, never whole in memory.
pub async fn fetch(
    redis: &Redis,
    app: &str,
    upload: &Upload,
    dir: &Path,
    log: &LogSink,
) -> Result<()> {
    validate::upload_sha256(&upload.sha256).map_err(Error::Invalid)?;
    crate::source::empty_dir(dir).await?;
    log.system(format!(
        "reading the uploaded directory sha256:{} ({} KiB)",
        upload.sha256,
        upload.size.div_ceil(1024)
    ))
    .await;
    let key = keys::upload(app, &upload.sha256);
    let mut c = redis.clone();
    let chunks: usize = c.llen(&key).await?;
    if chunks == 0 {
        return Err(Error::Invalid(format!(
            "the uploaded directory sha256:{} is no longer kept (uploads are kept for {} h): \
             upload it again with berth deploy --dir",
            upload.sha256,
            keys::UPLOAD_TTL_S / 3600
        )));
    }
    let file = archive_path(dir);
    let read = read_into(&mut c, &key, chunks, &file, upload).await;
    if read.is_err() {
        let _ = tokio::fs::remove_file(&file).await;
    }
    read?;
    let (from, to) = (file.clone(), dir.to_path_buf());
    let unpacked = tokio::task::spawn_blocking(move || unpack(&from, &to))
        .await
        .map_err(|e| Error::Internal(format!("unpacking task failed: {e}")))?;
    let _ = tokio::fs::remove_file(&file).await;
    let entries = unpacked?;
    log.system(format!(
        "unpacked {entries} entries of the uploaded directory"
    ))
    .await;
    Ok(())
}

/// Reads the `chunks` of `key` into `file`, checking them against `upload`'s hash and size.
async fn read_into(
    c: &mut Redis,
    key: &str,
    chunks: usize,
    file: &Path,
    upload: &Upload,
) -> Result<()> {
    let out = std::fs::File::create(file)
        .map_err(|e| Error::io(format!("cannot create {}", file.display()), e))?;
    let mut out = std::io::BufWriter::new(out);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    for i in 0..chunks {
        let mut got: Vec<Vec<u8>> = c.lrange(key, i as isize, i as isize).await?;
        let Some(chunk) = got.pop() else {
            break;
        };
        hash.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk)
            .map_err(|e| Error::io(format!("cannot write {}", file.display()), e))?;
    }
    out.flush()
        .map_err(|e| Error::io(format!("cannot write {}", file.display()), e))?;
    let sha = hex::encode(hash.finalize());
    if sha != upload.sha256 || size != upload.size {
        return Err(Error::Invalid(format!(
            "the uploaded directory read back from Redis is not the one uploaded ({size} bytes \
             with sha256:{sha}, expected {} bytes with sha256:{}): upload it again",
            upload.size, upload.sha256
        )));
    }
    Ok(())
}

/// Where the archive of the checkout `dir` is written while it is read: beside it.
fn archive_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".upload.tar");
    dir.with_file_name(name)
}

/// Unpacks the tar at `archive` into `dir`: files, directories and symbolic links only, none
/// leaving `dir` (the tar crate refuses `..`, absolute paths and writes through links that
/// lead out). Returns how many entries it holds.
pub fn unpack(archive: &Path, dir: &Path) -> Result<usize> {
    let file = std::fs::File::open(archive)
        .map_err(|e| Error::io(format!("cannot open {}", archive.display()), e))?;
    let mut a = tar::Archive::new(std::io::BufReader::new(file));
    a.set_preserve_mtime(true);
    a.set_unpack_xattrs(false);
    let bad = |e: std::io::Error| {
        Error::Invalid(format!("the uploaded directory cannot be unpacked: {e}"))
    };
    let mut n = 0;
    for entry in a.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            let path = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(Error::Invalid(format!(
                "the uploaded directory holds {path:?}, which is not a file, directory or \
                 symbolic link"
            )));
        }
        if !entry.unpack_in(dir).map_err(bad)? {
            let path = entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(Error::Invalid(format!(
                "the uploaded directory's entry {path:?} leaves the directory"
            )));
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_tests::TempDir;

    #[test]
    fn unpacks_files_and_refuses_an_escape() {
        let t = TempDir::with_prefix("berth-node-upload").unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("www")).unwrap();
        std::fs::write(src.join("www/index.html"), "hi").unwrap();
        std::fs::write(src.join("Dockerfile"), "FROM busybox").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all(".", &src).unwrap();
        let tar_file = t.path().join("a.tar");
        std::fs::write(&tar_file, b.into_inner().unwrap()).unwrap();
        let out = t.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        assert!(unpack(&tar_file, &out).unwrap() >= 3);
        assert_eq!(
            std::fs::read_to_string(out.join("www/index.html")).unwrap(),
            "hi"
        );

        // An archive whose entry climbs out of the checkout.
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        let name = b"../escaped";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        std::fs::write(&tar_file, b.into_inner().unwrap()).unwrap();
        let out2 = t.path().join("out2");
        std::fs::create_dir_all(&out2).unwrap();
        let e = unpack(&tar_file, &out2).unwrap_err().to_string();
        assert!(e.contains("leaves the directory"), "{e}");
        assert!(!t.path().join("escaped").exists());
    }

    #[test]
    fn the_archive_is_written_beside_the_checkout() {
        assert_eq!(
            archive_path(Path::new("/b/builds/d1")),
            PathBuf::from("/b/builds/d1.upload.tar")
        );
    }
}
