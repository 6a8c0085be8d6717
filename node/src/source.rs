//! Fetching an app's source: a shallow `git fetch` of one ref into a fresh directory.
//!
//! git runs as a child process through `tokio::process` (it never blocks the actix thread) with
//! `kill_on_drop`, so a deployment that hits its deadline also stops its git. No terminal prompt,
//! no stdin; the repo and ref are validated and passed after `--` so neither can become an option.
//!
//! The repository must pass `repo_url::check` here too, whatever the coordinator let through (a
//! record stored before the rule, or by hand): this is the last line of defence. Every git runs
//! with `repo_url::git_env` — no system configuration, only the allowed transports.

use std::path::Path;
use std::process::Stdio;

use berth_protocol::secret::GitCredential;
use berth_protocol::{repo_url, validate};

use crate::error::{Error, Result};
use crate::log_sink::LogSink;

/// Makes `dir` an empty directory: whatever was there (an earlier attempt's checkout) goes.
pub(crate) async fn empty_dir(dir: &Path) -> Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("cannot empty {}", dir.display()), e)),
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    Ok(())
}

/// Fetches `git_ref` (branch, tag or commit) of `repo` into `dir` (created, must not hold anything
/// that matters: it is emptied first) and checks it out detached. Returns the commit sha.
/// `allow_local`: whether a repository on this machine may be fetched (`allow_local_repos`).
pub async fn fetch(
    repo: &str,
    git_ref: &str,
    dir: &Path,
    log: &LogSink,
    auth: &GitAuth,
) -> Result<String> {
    validate::repo(repo).map_err(Error::Invalid)?;
    repo_url::check(repo, auth.allow_local, auth.kind).map_err(Error::Invalid)?;
    validate::git_ref("ref", git_ref).map_err(Error::Invalid)?;

    empty_dir(dir).await?;

    git_with(auth, dir, "git init", &["init", "-q"]).await?;
    log.system(format!(
        "fetching {git_ref} from {}",
        repo_url::redact(repo)
    ))
    .await;
    let shallow = git_with(
        auth,
        dir,
        "git fetch",
        &["fetch", "-q", "--depth", "1", "--", repo, git_ref],
    )
    .await;
    match shallow {
        Ok(_) => {
            git_with(
                auth,
                dir,
                "git checkout",
                &["checkout", "-q", "--detach", "FETCH_HEAD"],
            )
            .await?;
        }
        Err(shallow_err) => {
            // A commit sha the server does not let us ask for directly: fetch every branch and
            // tag, then look the ref up locally.
            log.system(format!(
                "shallow fetch of {git_ref} failed, fetching the whole repository ({shallow_err})"
            ))
            .await;
            git_with(
                auth,
                dir,
                "git fetch",
                &[
                    "fetch",
                    "-q",
                    "--",
                    repo,
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
            )
            .await?;
            // A commit or tag resolves as given; a branch lives under origin/ after this fetch.
            let mut sha = None;
            for spec in [
                format!("{git_ref}^{{commit}}"),
                format!("origin/{git_ref}^{{commit}}"),
            ] {
                let found = git_with(
                    auth,
                    dir,
                    "git rev-parse",
                    &[
                        "rev-parse",
                        "--verify",
                        "--quiet",
                        "--end-of-options",
                        &spec,
                    ],
                )
                .await;
                if let Ok(s) = found {
                    sha = Some(s);
                    break;
                }
            }
            let sha = sha.ok_or_else(|| {
                Error::Git(format!(
                    "git fetch failed: {git_ref:?} is not a branch, tag or commit of {repo} \
                     (shallow fetch said: {shallow_err})"
                ))
            })?;
            let sha = sha.trim().to_string();
            git_with(
                auth,
                dir,
                "git checkout",
                &["checkout", "-q", "--detach", &sha, "--"],
            )
            .await?;
        }
    }
    let commit = git_with(auth, dir, "git rev-parse", &["rev-parse", "HEAD"]).await?;
    Ok(commit.trim().to_string())
}

/// The checked-out commit's subject line and `Name <email>` of its author, when git tells.
pub async fn describe(dir: &Path) -> (Option<String>, Option<String>) {
    match git(dir, "git log", &["log", "-1", "--format=%s%n%an <%ae>"]).await {
        Ok(out) => {
            let mut lines = out.lines().map(|l| l.trim().to_string());
            (lines.next(), lines.next())
        }
        Err(_) => (None, None),
    }
}

/// How git authenticates to a remote: environment for the git process (never arguments, which
/// any local user could read in `ps`), and a private key file removed on drop.
#[derive(Default)]
pub struct GitAuth {
    env: Vec<(String, String)>,
    key_file: Option<std::path::PathBuf>,
    /// Values that must be masked in logs.
    pub secrets: Vec<String>,
    /// The credential's kind, if there is one (`repo_url::check` refuses to send it over plain
    /// `http://`).
    kind: Option<&'static str>,
    /// Whether a repository on this machine may be fetched (`allow_local_repos`).
    allow_local: bool,
}

impl GitAuth {
    /// No credential; `allow_local`: whether a repository on this machine may be fetched.
    pub fn none(allow_local: bool) -> GitAuth {
        let mut auth = GitAuth::default();
        auth.allow_local = allow_local;
        auth
    }

    /// Prepares a credential; an SSH key is written (mode 0600) to `key_file`.
    pub async fn new(cred: &GitCredential, key_file: &Path, allow_local: bool) -> Result<GitAuth> {
        let git = cred.git_env(key_file);
        let written = match git.key {
            Some(key) => {
                write_private(key_file, key).await?;
                // The pinned host keys, or an empty file ssh records the server's in.
                let hosts = git.known_hosts.unwrap_or_default();
                write_private(&key_file.with_extension("known_hosts"), hosts).await?;
                Some(key_file.to_path_buf())
            }
            None => None,
        };
        Ok(GitAuth {
            env: git.vars,
            key_file: written,
            secrets: cred.mask_values(),
            kind: Some(cred.kind()),
            allow_local,
        })
    }
}

/// Writes `contents` to `path` (created or truncated, mode 0600), off the async runtime.
async fn write_private(path: &Path, contents: String) -> Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        f.write_all(contents.as_bytes())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    })
    .await
    .map_err(|e| Error::Internal(format!("key file task failed: {e}")))?
}

impl Drop for GitAuth {
    fn drop(&mut self) {
        if let Some(f) = &self.key_file {
            let _ = std::fs::remove_file(f);
            let _ = std::fs::remove_file(f.with_extension("known_hosts"));
        }
    }
}

/// Runs git in `dir`; returns stdout, or an error "<what> failed: <stderr>".
async fn git(dir: &Path, what: &str, args: &[&str]) -> Result<String> {
    git_with(&GitAuth::none(false), dir, what, args).await
}

/// [`git`] with credentials.
async fn git_with(auth: &GitAuth, dir: &Path, what: &str, args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.envs(auth.env.iter().map(|(k, v)| (k, v)));
    cmd.envs(repo_url::git_env(auth.allow_local));
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && auth.key_file.is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| Error::Git(format!("{what} failed: cannot run git: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        let detail = if stderr.is_empty() {
            format!("exited with {}", out.status)
        } else if stderr.contains("Host key verification failed") {
            // ssh's banner is many lines of '@': the sentence that matters instead.
            "the repository's SSH host key is not the one pinned for this app: if the \
             server's key really changed, give the credential again with the new key in \
             git_credential.known_hosts"
                .to_string()
        } else {
            stderr.to_string()
        };
        Err(Error::Git(format!("{what} failed: {detail}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ssh_key_is_written_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("berth-sshkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("d1.key");
        let cred = GitCredential::SshKey {
            private_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END OPENSSH PRIVATE KEY-----".into(),
            known_hosts: None,
        };
        let auth = GitAuth::new(&cred, &key_file, false).await.unwrap();
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let ssh = &auth
            .env
            .iter()
            .find(|(k, _)| k == "GIT_SSH_COMMAND")
            .unwrap()
            .1;
        assert!(ssh.contains(&key_file.display().to_string()) && ssh.contains("BatchMode=yes"));
        assert_eq!(
            auth.secrets,
            vec!["b3BlbnNzaC1rZXktdjEAAAAABG5vbmU".to_string()]
        );
        drop(auth);
        assert!(!key_file.exists(), "the key file goes with the job");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn https_token_goes_in_the_environment_not_the_arguments() {
        let cred = GitCredential::HttpsToken {
            username: "x-access-token".into(),
            token: "tok123".into(),
        };
        let auth = GitAuth::new(&cred, Path::new("/nonexistent"), false)
            .await
            .unwrap();
        let header = &auth
            .env
            .iter()
            .find(|(k, _)| k == "GIT_CONFIG_VALUE_0")
            .unwrap()
            .1;
        // base64("x-access-token:tok123")
        assert_eq!(header, "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9rMTIz");
        assert!(auth.secrets.contains(&"tok123".to_string()));
        assert!(auth
            .secrets
            .contains(&"eC1hY2Nlc3MtdG9rZW46dG9rMTIz".to_string()));
    }
    use berth_tests::{GitRepo, TempDir};

    /// A bare repo with two commits on `main` (and a tag on the first); returns (bare path, sha1, sha2).
    fn make_repo(tmp: &TempDir) -> (String, String, String) {
        let repo = GitRepo::init(tmp.path()).unwrap();
        repo.write("a.txt", "one").unwrap();
        let sha1 = repo.commit("one").unwrap();
        repo.git(&["tag", "v1"]).unwrap();
        repo.write("a.txt", "two").unwrap();
        let sha2 = repo.commit("two").unwrap();
        repo.git(&["push", "-q", "origin", "v1"]).unwrap();
        (repo.url(), sha1, sha2)
    }

    #[actix_rt::test]
    async fn fetches_branch_tag_and_commit_from_local_bare_repo() {
        let tmp = TempDir::with_prefix("berth-node-test-git").unwrap();
        let (bare, sha1, sha2) = make_repo(&tmp);
        let (log, _) = LogSink::memory();
        let dir = tmp.path().join("checkout");

        let c = fetch(&bare, "main", &dir, &log, &GitAuth::none(true))
            .await
            .unwrap();
        assert_eq!(c, sha2);
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "two");

        let c = fetch(
            &format!("file://{bare}"),
            &sha1,
            &dir,
            &log,
            &GitAuth::none(true),
        )
        .await
        .unwrap();
        assert_eq!(c, sha1);
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "one");

        let c = fetch(&bare, "v1", &dir, &log, &GitAuth::none(true))
            .await
            .unwrap();
        assert_eq!(c, sha1);
    }

    #[actix_rt::test]
    async fn a_local_repository_is_refused_unless_allowed_and_other_transports_always() {
        let tmp = TempDir::with_prefix("berth-node-test-git").unwrap();
        let (bare, _, _) = make_repo(&tmp);
        let (log, _) = LogSink::memory();
        let dir = tmp.path().join("checkout");
        for repo in [bare.clone(), format!("file://{bare}")] {
            let e = fetch(&repo, "main", &dir, &log, &GitAuth::none(false))
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("set allow_local_repos"), "{e}");
        }
        // `ext::` runs a command; git itself refuses it too (`GIT_ALLOW_PROTOCOL`), but the rule
        // stops it before git starts.
        let marker = tmp.path().join("ran");
        let ext = format!("ext::sh -c touch% {}", marker.display());
        let e = fetch(&ext, "main", &dir, &log, &GitAuth::none(true))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("ext transport"), "{e}");
        assert!(!marker.exists());
        // A token is never sent over plain http:// beyond this machine.
        let cred = GitCredential::HttpsToken {
            username: "x-access-token".into(),
            token: "tok123".into(),
        };
        let auth = GitAuth::new(&cred, Path::new("/nonexistent"), true)
            .await
            .unwrap();
        let e = fetch("http://192.0.2.1/a.git", "main", &dir, &log, &auth)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("unencrypted"), "{e}");
    }

    #[tokio::test]
    async fn git_runs_without_system_config_and_with_only_the_allowed_transports() {
        let tmp = TempDir::with_prefix("berth-node-test-git").unwrap();
        let env = git(tmp.path(), "git var", &["-c", "alias.e=!env", "e"])
            .await
            .unwrap();
        for want in [
            "GIT_CONFIG_NOSYSTEM=1",
            "GIT_PROTOCOL_FROM_USER=0",
            "GIT_ALLOW_PROTOCOL=https:ssh",
        ] {
            assert!(env.lines().any(|l| l == want), "{want} not in:\n{env}");
        }
        // Even past the rule, git itself refuses a transport outside the list.
        let marker = tmp.path().join("ran");
        let e = git(
            tmp.path(),
            "git ls-remote",
            &[
                "ls-remote",
                &format!("ext::sh -c touch% {}", marker.display()),
            ],
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("transport 'ext' not allowed"), "{e}");
        assert!(!marker.exists());
    }

    #[actix_rt::test]
    async fn unknown_ref_and_bad_input_fail_with_actionable_text() {
        let tmp = TempDir::with_prefix("berth-node-test-git").unwrap();
        let (bare, _, _) = make_repo(&tmp);
        let (log, _) = LogSink::memory();
        let dir = tmp.path().join("checkout");
        let e = fetch(&bare, "nope", &dir, &log, &GitAuth::none(true))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("git fetch failed"), "{e}");
        let e = fetch(
            &bare,
            "--upload-pack=touch x",
            &dir,
            &log,
            &GitAuth::none(true),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a valid git"), "{e}");
        let e = fetch("-oops", "main", &dir, &log, &GitAuth::none(true))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a git URL"), "{e}");
        let e = fetch(
            &tmp.path().join("missing").display().to_string(),
            "main",
            &dir,
            &log,
            &GitAuth::none(true),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("git fetch failed"), "{e}");
    }
}
