//! What Berth would build from a repository, before anything is built (`POST /api/v1/analyze`):
//! a shallow clone into a temporary directory, then the build packs' analysis of it.
//!
//! The clone is git as a child process with the hardening and credential handling of the
//! repository check (`git_check::git_command`: `repo_url::git_env`, no prompt, the credential
//! in the environment only), `--depth 1 --single-branch --no-tags`, no submodules, LFS
//! smudging off, bounded by [`CLONE_WITHIN`] and removed afterwards. The analysis
//! (`berth-packs`) reads files on a blocking thread and runs nothing from the repository.

use std::path::PathBuf;
use std::time::Duration;

use berth_packs::{Images, Options};
use berth_protocol::api::Analysis;
use berth_protocol::secret::GitCredential;
use berth_protocol::{repo_url, validate, BuildPack};

use crate::error::{Error, Result};
use crate::git_check::{self, RemoveOnDrop};

/// How long the clone may take.
pub const CLONE_WITHIN: Duration = Duration::from_secs(60);

/// What to analyse.
pub struct Request<'a> {
    pub repo: &'a str,
    /// A branch or tag; `None`: the repository's default branch.
    pub git_ref: Option<&'a str>,
    /// The directory analysed, relative to the repository root.
    pub context: &'a str,
    pub pack: BuildPack,
    pub static_dir: Option<&'a str>,
    /// The app's port, when an app is analysed.
    pub port: Option<u16>,
    pub credential: Option<&'a GitCredential>,
}

/// Clones `r.repo` shallowly and analyses it. Refusals of the request are 400s; a repository
/// that cannot be cloned, or holds nothing Berth can build, a 422 saying so.
pub async fn analyze(r: Request<'_>, allow_local: bool, images: &Images) -> Result<Analysis> {
    let bad = Error::BadRequest;
    validate::repo(r.repo).map_err(bad)?;
    repo_url::check(r.repo, allow_local, r.credential.map(GitCredential::kind)).map_err(bad)?;
    if let Some(g) = r.git_ref {
        validate::git_ref("ref", g).map_err(bad)?;
    }
    validate::repo_path("context", r.context).map_err(bad)?;
    if let Some(d) = r.static_dir {
        validate::repo_path("static_dir", d).map_err(bad)?;
    }
    if r.pack == BuildPack::Dockerfile {
        return Err(bad(
            "build_pack dockerfile builds with the repository's own Dockerfile: there is nothing to analyse (give auto or static)".into(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("berth-analyze-{}", uuid::Uuid::new_v4().simple()));
    let _remove = RemoveDirOnDrop(dir.clone());
    let key_file = git_check::key_file("clone");
    let _remove_key = RemoveOnDrop(key_file.clone());
    let repo = r.repo;
    let mut cmd = git_check::git_command(r.credential, &key_file, allow_local)
        .await
        .map_err(|e| Error::Internal(format!("cannot clone repository {repo}: {e}")))?;
    cmd.env("GIT_LFS_SKIP_SMUDGE", "1").args([
        "clone",
        "--quiet",
        "--depth",
        "1",
        "--single-branch",
        "--no-tags",
    ]);
    if let Some(g) = r.git_ref {
        cmd.args(["--branch", g]);
    }
    cmd.arg("--").arg(repo).arg(&dir);
    let out = match tokio::time::timeout(CLONE_WITHIN, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(Error::Internal(format!(
                "cannot clone repository {repo}: cannot run git: {e}"
            )))
        }
        Err(_) => {
            return Err(Error::Unprocessable(format!(
                "cannot clone repository {repo}: not done within {} s",
                CLONE_WITHIN.as_secs()
            )))
        }
    };
    if !out.status.success() {
        let secrets = r
            .credential
            .map(GitCredential::mask_values)
            .unwrap_or_default();
        let said = git_check::git_message(&String::from_utf8_lossy(&out.stderr), &secrets);
        return Err(Error::Unprocessable(format!(
            "cannot clone repository {repo}{}: {said}",
            r.git_ref.map(|g| format!(" at {g}")).unwrap_or_default()
        )));
    }
    let (context, pack, port) = (r.context.to_string(), r.pack, r.port);
    let static_dir = r.static_dir.map(str::to_string);
    let images = images.clone();
    tokio::task::spawn_blocking(move || {
        let ctx = berth_packs::context_dir(&dir, &context)?;
        berth_packs::analyze(
            &ctx,
            &Options {
                pack,
                static_dir: static_dir.as_deref(),
                port,
                images: &images,
            },
        )
    })
    .await
    .map_err(|e| Error::Internal(format!("analysis task failed: {e}")))?
    .map_err(Error::Unprocessable)
}

struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_repository_is_cloned_and_analysed() {
        let tmp = berth_tests::TempDir::with_prefix("berth-analyze").unwrap();
        let repo = berth_tests::GitRepo::init(tmp.path()).unwrap();
        repo.write("go.mod", "module example.com/hello\n").unwrap();
        repo.write("main.go", "package main\n").unwrap();
        repo.commit("go").unwrap();
        let url = repo.url();
        let req = |git_ref| Request {
            repo: &url,
            git_ref,
            context: ".",
            pack: BuildPack::Auto,
            static_dir: None,
            port: None,
            credential: None,
        };
        let a = analyze(req(Some("main")), true, &Images::default())
            .await
            .unwrap();
        assert_eq!((a.kind.as_str(), a.port), ("go", 8080));
        let e = analyze(req(Some("nope")), true, &Images::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unprocessable(_)), "{e}");
        assert!(e.to_string().starts_with("cannot clone repository"), "{e}");
        // Local repositories only with allow_local_repos.
        let e = analyze(req(None), false, &Images::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::BadRequest(_)), "{e}");
    }
}
