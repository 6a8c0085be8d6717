//! Whether an app's repository and branch can be reached, checked when the app is created and
//! when its repository or branch changes: a clear 422 then, rather than a failed
//! deployment later.
//!
//! It runs `git ls-remote --heads` as a child process (`tokio::process`, `kill_on_drop`, bounded
//! by [`CHECK_WITHIN`]) with the app's credential in the environment exactly as a node gives it
//! to git — both take it from `GitCredential::git_env` (an SSH key's file written mode 0600 and
//! removed afterwards); never on the command line, no prompt, no stdin; and with the same
//! hardening (`repo_url::git_env`: no system configuration, only the allowed transports). git is neither Docker nor
//! Caddy, so the coordinator may run it; it reaches the repository from the coordinator's host,
//! which in a fleet must reach it as the nodes do.

use std::process::Stdio;
use std::time::Duration;

use berth_protocol::repo_url;
use berth_protocol::secret::GitCredential;

/// How long the check may take.
pub const CHECK_WITHIN: Duration = Duration::from_secs(15);

/// `Ok` when `repo` answers and has `branch`; else the sentence a person reads: "cannot reach
/// repository X: <git's message>" or "branch B is not in X (it has: main, dev)".
/// `allow_local`: whether git may reach a repository on this machine (`allow_local_repos`).
///
/// With an SSH key whose host keys are not pinned yet, answers the server's host keys ssh
/// recorded (`Ok(Some(known_hosts))`), which the caller pins in the credential; a pinned
/// credential's run accepts only its pinned keys.
pub async fn check(
    repo: &str,
    branch: &str,
    cred: Option<&GitCredential>,
    allow_local: bool,
) -> Result<Option<String>, String> {
    let key_file = key_file("ls-remote");
    let _remove = RemoveOnDrop(key_file.clone());
    let mut cmd = git_command(cred, &key_file, allow_local)
        .await
        .map_err(|e| format!("cannot check repository {repo}: {e}"))?;
    cmd.args(["ls-remote", "--heads", "--", repo]);
    let out = match tokio::time::timeout(CHECK_WITHIN, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(format!(
                "cannot check repository {repo}: cannot run git: {e}"
            ))
        }
        Err(_) => {
            return Err(format!(
                "cannot reach repository {repo}: no answer within {} s",
                CHECK_WITHIN.as_secs()
            ))
        }
    };
    let secrets = cred.map(GitCredential::mask_values).unwrap_or_default();
    if !out.status.success() {
        let said = git_message(&String::from_utf8_lossy(&out.stderr), &secrets);
        let said = if said.is_empty() {
            format!("git exited with {}", out.status)
        } else {
            said
        };
        if String::from_utf8_lossy(&out.stderr).contains("Host key verification failed") {
            return Err(format!(
                "cannot reach repository {repo}: its SSH host key is not the one pinned for this \
                 app: if the server's key really changed, give the credential again with the \
                 new key in git_credential.known_hosts"
            ));
        }
        return Err(format!("cannot reach repository {repo}: {said}"));
    }
    let heads = heads(&String::from_utf8_lossy(&out.stdout));
    if heads.iter().any(|h| h == branch) {
        let learned = match cred {
            Some(c) if c.learns_host_keys() => {
                tokio::fs::read_to_string(key_file.with_extension("known_hosts"))
                    .await
                    .ok()
                    .filter(|k| !k.trim().is_empty())
            }
            _ => None,
        };
        return Ok(learned);
    }
    Err(missing_branch(repo, branch, &heads))
}

/// A fresh path for an SSH key file of one git run (`RemoveOnDrop` removes it and its
/// `known_hosts` after).
pub(crate) fn key_file(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "berth-{what}-{}.key",
        uuid::Uuid::new_v4().simple()
    ))
}

/// `git` with the hardening every git Berth runs gets (`repo_url::git_env`), no prompt, no
/// stdin, killed on drop, and `cred` in its environment exactly as a node gives it (an SSH
/// key written to `key_file`, mode 0600). The caller adds the arguments.
pub(crate) async fn git_command(
    cred: Option<&GitCredential>,
    key_file: &std::path::Path,
    allow_local: bool,
) -> Result<tokio::process::Command, String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("LC_ALL", "C")
        .envs(repo_url::git_env(allow_local))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match cred.map(|c| c.git_env(key_file)) {
        Some(git) => {
            if let Some(key) = git.key {
                write_private(key_file, key)
                    .await
                    .map_err(|e| format!("writing its key: {e}"))?;
                write_private(
                    &key_file.with_extension("known_hosts"),
                    git.known_hosts.unwrap_or_default(),
                )
                .await
                .map_err(|e| format!("writing its known hosts: {e}"))?;
            }
            cmd.envs(git.vars);
        }
        None => {
            if std::env::var_os("GIT_SSH_COMMAND").is_none() {
                cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
            }
        }
    }
    Ok(cmd)
}

/// The branch names of `git ls-remote --heads` output.
fn heads(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter_map(|(_, r)| r.trim().strip_prefix("refs/heads/"))
        .map(str::to_string)
        .collect()
}

/// "branch B is not in X (it has: main, dev)" — at most 10 names listed.
fn missing_branch(repo: &str, branch: &str, heads: &[String]) -> String {
    if heads.is_empty() {
        return format!(
            "branch {branch} is not in {repo} (it has no branches yet: push one first)"
        );
    }
    let mut names: Vec<&str> = heads.iter().map(String::as_str).take(10).collect();
    if heads.len() > 10 {
        names.push("…");
    }
    format!(
        "branch {branch} is not in {repo} (it has: {})",
        names.join(", ")
    )
}

/// git's stderr on one line, without its `fatal: ` prefixes and with secrets masked.
pub(crate) fn git_message(stderr: &str, secrets: &[String]) -> String {
    let mut s = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_prefix("fatal: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        s = s.replace(secret.as_str(), "***");
    }
    if s.len() > 500 {
        let mut end = 500;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

pub(crate) struct RemoveOnDrop(pub(crate) std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("known_hosts"));
    }
}

async fn write_private(path: &std::path::Path, contents: String) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await?;
    f.write_all(contents.as_bytes()).await?;
    f.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_the_missing_branch_sentence() {
        let out = "1111\trefs/heads/main\n2222\trefs/heads/dev\n3333\trefs/tags/v1\n";
        let h = heads(out);
        assert_eq!(h, vec!["main", "dev"]);
        assert_eq!(
            missing_branch("/srv/a.git", "prod", &h),
            "branch prod is not in /srv/a.git (it has: main, dev)"
        );
        assert!(missing_branch("r", "main", &[]).contains("no branches yet"));
    }

    #[test]
    fn gits_message_is_one_line_and_masked() {
        let e = "fatal: 'x' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure tok123 is right\n";
        assert_eq!(
            git_message(e, &["tok123".into()]),
            "'x' does not appear to be a git repository Could not read from remote repository. Please make sure *** is right"
        );
    }

    #[tokio::test]
    async fn a_local_repository_is_checked_for_real() {
        let tmp = berth_tests::TempDir::with_prefix("berth-git-check").unwrap();
        let repo = berth_tests::GitRepo::init(tmp.path()).unwrap();
        repo.write("a.txt", "one").unwrap();
        repo.commit("one").unwrap();
        let url = repo.url();
        assert_eq!(check(&url, "main", None, true).await, Ok(None));
        let e = check(&url, "nope", None, true).await.unwrap_err();
        assert_eq!(e, format!("branch nope is not in {url} (it has: main)"));
        let missing = tmp.path().join("missing").display().to_string();
        let e = check(&missing, "main", None, true).await.unwrap_err();
        assert!(
            e.starts_with(&format!("cannot reach repository {missing}: ")),
            "{e}"
        );
    }
}
