//! `berth deploy <app> --dir DIR`: the directory packed as the build needs it and uploaded.
//!
//! Only the app's build context (`DIR/<context>`) is packed, under its own path, so the node
//! finds the context and Dockerfile where a git checkout would have them. Left out: `.git`,
//! what `.gitignore` files leave out (as git would, whether or not DIR is a repository), and
//! what the context's `.dockerignore` leaves out (never the Dockerfile or the `.dockerignore`
//! itself, which the build needs). The archive is the same bytes for the same files — sorted,
//! owner 0, a fixed time — so its SHA-256 names the content and an unchanged directory uploads
//! to the same name.

use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
use berth_node::dockerignore;
use sha2::{Digest, Sha256};

use super::Failed;

/// Largest archive the client builds (the API's own limit, `api.upload_max_mb`, may be lower).
pub(super) const CLIENT_MAX: u64 = 1024 * 1024 * 1024;

/// A packed directory.
#[derive(Debug)]
pub(super) struct Packed {
    pub(super) bytes: Vec<u8>,
    pub(super) sha256: String,
    pub(super) files: usize,
}

/// Packs `dir`'s build context (`context`, holding `dockerfile`) as the module says, refusing
/// to go past `cap` bytes.
pub(super) fn pack(dir: &Path, context: &str, dockerfile: &str, cap: u64) -> Result<Packed> {
    if !dir.is_dir() {
        bail!(Failed(format!("{} is not a directory", dir.display())));
    }
    let ctx_rel = Path::new(context);
    if ctx_rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        bail!(Failed(format!(
            "the app's context {context:?} is not a path inside the directory"
        )));
    }
    let ctx_dir = dir.join(ctx_rel);
    if !ctx_dir.is_dir() {
        bail!(Failed(format!(
            "{} has no directory {context:?}, the app's build context",
            dir.display()
        )));
    }
    let rules = match std::fs::read_to_string(ctx_dir.join(".dockerignore")) {
        Ok(text) => dockerignore::Rules::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => dockerignore::Rules::default(),
        Err(e) => return Err(e).context("reading .dockerignore"),
    };
    let keep = [dockerfile.trim_start_matches("./"), ".dockerignore"];
    let walk = ignore::WalkBuilder::new(&ctx_dir)
        .standard_filters(false)
        .hidden(false)
        .parents(true)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let mut files = 0usize;
    for entry in walk {
        let entry = entry.context("reading the directory")?;
        let path = entry.path();
        let rel = path
            .strip_prefix(&ctx_dir)
            .expect("the walk stays inside its root");
        if rel.as_os_str().is_empty() {
            continue;
        }
        let Some(rel_str) = rel.to_str() else {
            bail!(Failed(format!("{} is not a UTF-8 path", path.display())));
        };
        let kept = keep.contains(&rel_str);
        let Some(ft) = entry.file_type() else {
            continue;
        };
        // Directories are always entered: a `.dockerignore` exception may put back a file in
        // a left-out one; a left-out directory's own entry is not archived.
        if !kept && rules.excluded(rel_str) && !ft.is_dir() {
            continue;
        }
        if ft.is_dir() && rules.excluded(rel_str) {
            continue;
        }
        if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
            // Sockets, FIFOs and devices are never part of a build.
            continue;
        }
        let name = if context == "." || context.is_empty() {
            rel.to_path_buf()
        } else {
            ctx_rel.join(rel)
        };
        b.append_path_with_name(path, &name)
            .with_context(|| format!("packing {}", path.display()))?;
        if ft.is_file() {
            files += 1;
        }
        let size = b.get_ref().len() as u64;
        if size > cap {
            bail!(Failed(format!(
                "{} packs to more than {} MiB: leave out what the image does not need with \
                 .gitignore or .dockerignore",
                dir.display(),
                cap / (1024 * 1024)
            )));
        }
    }
    if files == 0 {
        bail!(Failed(format!(
            "{} holds no file to upload (after .gitignore and .dockerignore)",
            dir.display()
        )));
    }
    let bytes = b.into_inner().context("finishing the archive")?;
    Ok(Packed {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own, removed at the end of the test.
    struct Tmp(std::path::PathBuf);
    impl Tmp {
        fn new() -> Tmp {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let p = std::env::temp_dir().join(format!("berth-pack-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    fn tree(root: &Path) {
        for (p, text) in [
            ("Dockerfile", "FROM busybox\n"),
            ("www/index.html", "hi\n"),
            ("www/secret.env", "TOKEN=x\n"),
            ("notes/draft.txt", "draft\n"),
            ("build/out.bin", "bin\n"),
            (".git/config", "[core]\n"),
            (".gitignore", "*.env\nbuild/\n"),
            (".dockerignore", "notes\n"),
        ] {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        }
    }

    #[test]
    fn leaves_out_git_gitignored_and_dockerignored_files() {
        let t = Tmp::new();
        tree(t.path());
        let p = pack(t.path(), ".", "Dockerfile", CLIENT_MAX).unwrap();
        let n = names(&p.bytes);
        assert!(n.contains(&"Dockerfile".to_string()), "{n:?}");
        assert!(n.contains(&"www/index.html".to_string()), "{n:?}");
        assert!(n.contains(&".dockerignore".to_string()), "{n:?}");
        for gone in [
            "www/secret.env",
            "build/out.bin",
            ".git/config",
            "notes/draft.txt",
        ] {
            assert!(!n.iter().any(|x| x == gone), "{gone} in {n:?}");
        }
        // The same files give the same archive, whatever their times.
        let again = pack(t.path(), ".", "Dockerfile", CLIENT_MAX).unwrap();
        assert_eq!(again.sha256, p.sha256);
        std::fs::write(t.path().join("www/index.html"), "changed\n").unwrap();
        assert_ne!(
            pack(t.path(), ".", "Dockerfile", CLIENT_MAX)
                .unwrap()
                .sha256,
            p.sha256
        );
    }

    #[test]
    fn packs_only_the_context_under_its_path_and_stops_at_the_cap() {
        let t = Tmp::new();
        tree(&t.path().join("app"));
        std::fs::write(t.path().join("outside.txt"), "x").unwrap();
        let p = pack(t.path(), "app", "Dockerfile", CLIENT_MAX).unwrap();
        let n = names(&p.bytes);
        assert!(n.contains(&"app/Dockerfile".to_string()), "{n:?}");
        assert!(!n.iter().any(|x| x.contains("outside")), "{n:?}");
        let e = pack(t.path(), "app", "Dockerfile", 1024)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more than 0 MiB") || e.contains("packs to more than"),
            "{e}"
        );
        let e = pack(t.path(), "nope", "Dockerfile", CLIENT_MAX)
            .unwrap_err()
            .to_string();
        assert!(e.contains("build context"), "{e}");
    }
}
