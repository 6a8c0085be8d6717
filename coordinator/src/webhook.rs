//! GitHub push webhooks: signature check, payload reading, and which apps a push concerns.
//!
//! Pure functions, so every rule is tested without a server. The web layer verifies the
//! signature over the raw bytes before anything is parsed; the `Api` actor deduplicates the
//! delivery id in Redis (after the signature, so nobody can burn ids) and queues deployments.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Failed signatures a client address may send within [`FAILURE_WINDOW_S`] before it gets 429.
pub const FAILURES_ALLOWED: u64 = 10;
/// The window failed signatures are counted in, from a client's first failure, in seconds.
pub const FAILURE_WINDOW_S: u64 = 60;

/// Checks `X-Hub-Signature-256: sha256=<hex>` against HMAC-SHA256(secret, body), in constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), &'static str> {
    let header = header.ok_or("missing X-Hub-Signature-256 header")?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or("X-Hub-Signature-256 must start with sha256=")?;
    let sig = hex::decode(hex_sig).map_err(|_| "X-Hub-Signature-256 is not hex")?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| "bad secret")?;
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| "signature does not match")
}

/// The hex HMAC-SHA256 of a body (what a sender puts after `sha256=`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The parts of a `push` payload Berth reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Push {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub after: String,
    #[serde(default)]
    pub deleted: bool,
    pub repository: Repository,
    #[serde(default)]
    pub head_commit: Option<HeadCommit>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    #[serde(default)]
    pub clone_url: Option<String>,
    #[serde(default)]
    pub ssh_url: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub git_url: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HeadCommit {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub author: Option<Author>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Author {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
}

/// Reads a delivery's body as a push: the JSON itself, or (`content_type` starting with
/// `application/x-www-form-urlencoded`, GitHub's other delivery format) its `payload` form field.
/// The error is one sentence for a 400.
pub fn read_push(content_type: Option<&str>, body: &[u8]) -> Result<Push, String> {
    let form;
    let json: &[u8] =
        if content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")) {
            let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| format!("invalid form body: {e}"))?;
            form = fields
                .into_iter()
                .find(|(k, _)| k == "payload")
                .ok_or("form delivery without a payload field")?
                .1;
            form.as_bytes()
        } else {
            body
        };
    serde_json::from_slice(json).map_err(|e| format!("push payload is not what GitHub sends: {e}"))
}

/// What a push asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum PushAction {
    /// Deploy `commit` for apps on `branch`.
    Deploy { branch: String, commit: String },
    /// Nothing to deploy, and why.
    Ignore(String),
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

impl Push {
    pub fn action(&self) -> PushAction {
        if self.deleted || self.after == ZERO_SHA {
            return PushAction::Ignore(format!("{} was deleted; nothing to deploy", self.git_ref));
        }
        match self.git_ref.strip_prefix("refs/heads/") {
            Some(branch) => {
                if !self.after.bytes().all(|b| b.is_ascii_hexdigit()) || self.after.len() < 7 {
                    return PushAction::Ignore(format!(
                        "'after' {:?} is not a commit sha",
                        self.after
                    ));
                }
                PushAction::Deploy {
                    branch: branch.to_string(),
                    commit: self.after.clone(),
                }
            }
            None if self.git_ref.starts_with("refs/tags/") => PushAction::Ignore(format!(
                "{} is a tag push; Berth deploys branches",
                self.git_ref
            )),
            None => PushAction::Ignore(format!("{} is not a branch", self.git_ref)),
        }
    }

    /// What identifies the push whatever its delivery id: the hex SHA-256 of the repository (its
    /// normalised addresses, sorted), the ref and the `after` commit. Two deliveries with the
    /// same digest ask for the same deployments, so the second is a replay or a redelivery.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let mut keys = self.repo_keys();
        keys.sort();
        keys.dedup();
        let mut h = Sha256::new();
        for k in &keys {
            h.update(k.as_bytes());
            h.update(b"\n");
        }
        h.update(b"\0");
        h.update(self.git_ref.as_bytes());
        h.update(b"\0");
        h.update(self.after.to_ascii_lowercase().as_bytes());
        hex::encode(h.finalize())
    }

    /// Every form of the repository's address, normalised.
    pub fn repo_keys(&self) -> Vec<String> {
        let r = &self.repository;
        [&r.clone_url, &r.ssh_url, &r.html_url, &r.git_url]
            .into_iter()
            .flatten()
            .map(|u| normalize_repo(u))
            .chain(
                r.full_name
                    .iter()
                    .map(|n| format!("github.com/{}", n.to_ascii_lowercase())),
            )
            .collect()
    }
}

/// A repository address reduced to `host/owner/name`: case, scheme, credentials, port, a
/// trailing `/` or `.git`, and the `git@host:owner/name` form all fold together.
pub fn normalize_repo(url: &str) -> String {
    let mut s = url.trim().to_ascii_lowercase();
    for scheme in [
        "https://",
        "http://",
        "ssh://",
        "git://",
        "git+ssh://",
        "file://",
    ] {
        if let Some(rest) = s.strip_prefix(scheme) {
            s = rest.to_string();
            break;
        }
    }
    // user@ (git@, token@)
    if let Some(at) = s.find('@') {
        if !s[..at].contains('/') {
            s = s[at + 1..].to_string();
        }
    }
    // host:owner/name (scp-like) or host:port/owner/name
    if let Some(colon) = s.find(':') {
        let (host, rest) = s.split_at(colon);
        let rest = &rest[1..];
        let rest = match rest.split_once('/') {
            Some((port, tail)) if port.bytes().all(|b| b.is_ascii_digit()) => tail.to_string(),
            _ => rest.to_string(),
        };
        s = format!("{host}/{rest}");
    }
    let s = s.trim_end_matches('/');
    s.strip_suffix(".git").unwrap_or(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_to(repo: &str, git_ref: &str, after: &str) -> Push {
        serde_json::from_value(serde_json::json!({
            "ref": git_ref, "after": after,
            "repository": {"clone_url": repo, "full_name": "octo/hello"}
        }))
        .unwrap()
    }

    #[test]
    fn reads_a_push_from_json_or_a_form() {
        let json =
            r#"{"ref":"refs/heads/main","after":"abcdef1","repository":{"full_name":"a/b"}}"#;
        let p = read_push(None, json.as_bytes()).unwrap();
        assert_eq!(p.git_ref, "refs/heads/main");
        let form = format!(
            "other=1&payload={}",
            json.replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
        );
        let ctype = Some("application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(read_push(ctype, form.as_bytes()).unwrap().after, "abcdef1");
        assert_eq!(
            read_push(ctype, b"other=1").unwrap_err(),
            "form delivery without a payload field"
        );
        // Without the form content type, a form body is not JSON.
        let e = read_push(None, form.as_bytes()).unwrap_err();
        assert!(
            e.starts_with("push payload is not what GitHub sends: "),
            "{e}"
        );
    }

    #[test]
    fn a_push_s_digest_names_its_repository_ref_and_commit() {
        let a = push_to(
            "https://github.com/octo/hello.git",
            "refs/heads/main",
            "abc1234",
        );
        // The same push, whatever form the address takes: the same digest.
        let same = push_to(
            "https://github.com/Octo/Hello",
            "refs/heads/main",
            "ABC1234",
        );
        assert_eq!(a.digest(), same.digest());
        for other in [
            push_to(
                "https://github.com/octo/hello.git",
                "refs/heads/main",
                "abc1235",
            ),
            push_to(
                "https://github.com/octo/hello.git",
                "refs/heads/dev",
                "abc1234",
            ),
            push_to(
                "https://github.com/octo/other.git",
                "refs/heads/main",
                "abc1234",
            ),
        ] {
            assert_ne!(a.digest(), other.digest());
        }
    }

    #[test]
    fn known_github_vector() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, body), expected);
        assert!(verify_signature(secret, body, Some(&format!("sha256={expected}"))).is_ok());
    }

    #[test]
    fn rejects_missing_wrong_and_malformed_signatures() {
        let s = b"secret";
        let good = format!("sha256={}", sign(s, b"body"));
        assert!(verify_signature(s, b"body", Some(&good)).is_ok());
        assert!(verify_signature(s, b"body!", Some(&good)).is_err());
        assert!(verify_signature(b"other", b"body", Some(&good)).is_err());
        assert!(verify_signature(s, b"body", None).is_err());
        assert!(verify_signature(s, b"body", Some("sha1=abcd")).is_err());
        assert!(verify_signature(s, b"body", Some("sha256=zz")).is_err());
        assert!(verify_signature(s, b"body", Some("sha256=")).is_err());
    }

    #[test]
    fn repo_forms_fold_together() {
        let want = "github.com/octo/hello";
        for u in [
            "https://github.com/Octo/Hello.git",
            "https://github.com/octo/hello",
            "https://github.com/octo/hello/",
            "git@github.com:octo/hello.git",
            "ssh://git@github.com/octo/hello.git",
            "ssh://git@github.com:22/octo/hello.git",
            "git://github.com/octo/hello.git",
            "https://x-access-token:abc@github.com/octo/hello.git",
        ] {
            assert_eq!(normalize_repo(u), want, "{u}");
        }
        assert_ne!(normalize_repo("https://github.com/octo/hello2"), want);
        assert_eq!(normalize_repo("/srv/git/hello.git"), "/srv/git/hello");
        assert_eq!(
            normalize_repo("file:///srv/git/hello.git"),
            "/srv/git/hello"
        );
    }

    fn push(r: &str, after: &str, deleted: bool) -> Push {
        Push {
            git_ref: r.into(),
            after: after.into(),
            deleted,
            repository: Repository {
                clone_url: None,
                ssh_url: None,
                html_url: None,
                git_url: None,
                full_name: Some("o/r".into()),
            },
            head_commit: None,
        }
    }

    #[test]
    fn push_actions() {
        let sha = "a".repeat(40);
        assert_eq!(
            push("refs/heads/main", &sha, false).action(),
            PushAction::Deploy {
                branch: "main".into(),
                commit: sha.clone()
            }
        );
        assert!(
            matches!(push("refs/tags/v1", &sha, false).action(), PushAction::Ignore(r) if r.contains("tag"))
        );
        assert!(
            matches!(push("refs/heads/main", ZERO_SHA, true).action(), PushAction::Ignore(r) if r.contains("deleted"))
        );
        assert!(matches!(
            push("refs/heads/main", ZERO_SHA, false).action(),
            PushAction::Ignore(_)
        ));
        assert!(matches!(
            push("refs/pull/1/head", &sha, false).action(),
            PushAction::Ignore(_)
        ));
    }
}
