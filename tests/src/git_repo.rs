//! Local git repositories to deploy from: a bare repository and a work tree that pushes to it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::sh;

/// A local git repository (a bare one to deploy from, and a work tree to commit in).
pub struct GitRepo {
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl GitRepo {
    /// Copies `src` into a new work tree, commits it on `main` and pushes it to a bare repository.
    pub fn from_dir(root: &Path, src: &Path) -> Result<GitRepo> {
        let repo = GitRepo::init(root)?;
        copy_dir(src, &repo.work)?;
        repo.commit("initial")?;
        Ok(repo)
    }

    /// An empty bare repository `root/repo.git` and a work tree `root/work` on `main` whose
    /// `origin` it is; nothing committed yet.
    pub fn init(root: &Path) -> Result<GitRepo> {
        let work = root.join("work");
        let bare = root.join("repo.git");
        sh(Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare))?;
        sh(Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .arg(&work))?;
        let repo = GitRepo { bare, work };
        repo.git(&["remote", "add", "origin", &repo.bare.to_string_lossy()])?;
        Ok(repo)
    }

    pub fn git(&self, args: &[&str]) -> Result<String> {
        sh(Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args([
                "-c",
                "user.name=Berth Test",
                "-c",
                "user.email=test@berth.invalid",
            ])
            .args(args))
    }

    /// Commits everything in the work tree, pushes `main`, returns the commit sha.
    pub fn commit(&self, message: &str) -> Result<String> {
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "--allow-empty", "-m", message])?;
        self.git(&["push", "-q", "origin", "main"])?;
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn write(&self, rel: &str, contents: &str) -> Result<()> {
        let p = self.work.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(p, contents)?;
        Ok(())
    }

    pub fn url(&self) -> String {
        self.bare.to_string_lossy().into_owned()
    }
}

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}
