//! Where an app's repository is, as far as git's transport and a credential are concerned: the
//! one rule of which repository addresses Berth lets git reach, and the environment that holds
//! git to it. The coordinator applies it when an app is created or patched (a 400 that says
//! why), a node again before every fetch (the last line of defence, for records written before
//! the rule or by hand). Pure functions — no I/O here.
//!
//! Allowed: `https://` and SSH (`ssh://`, `user@host:path`). Only with `allow_local_repos`
//! (on for `berth up`, off by default for `berth coordinator` and `berth node`): a path,
//! `file://`, and plain `http://` to a loopback address (a repository on this machine). Never:
//! git's other transports (`git://`, `ext::`, `fd::`, …), a password or token inside the URL,
//! or a credential sent over plain `http://` beyond this machine.

/// How git would reach a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Https,
    Http,
    Ssh,
    /// A path or `file://`.
    Local,
    /// Any other transport, by its name (`git`, `ext`, `fd`, `ftp`, …).
    Other(String),
}

/// A repository address taken apart as git would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    pub transport: Transport,
    /// The host, lowercase, with its port when the URL names one; `None` for a local repository.
    pub host: Option<String>,
    /// What stands before `@` in the address (`user` or `user:password`), if anything.
    pub userinfo: Option<String>,
}

impl RepoUrl {
    /// Takes `repo` apart: `<transport>::<address>` (git's remote helpers), `scheme://…`, the
    /// SSH form `[user@]host:path` (a `:` before any `/`), else a path.
    pub fn parse(repo: &str) -> RepoUrl {
        let repo = repo.trim();
        if let Some((helper, _)) = repo.split_once("::") {
            if !helper.is_empty()
                && helper
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            {
                return RepoUrl {
                    transport: Transport::Other(helper.to_ascii_lowercase()),
                    host: None,
                    userinfo: None,
                };
            }
        }
        if let Some((scheme, rest)) = repo.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            let transport = match scheme.as_str() {
                "https" => Transport::Https,
                "http" => Transport::Http,
                "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
                "file" => Transport::Local,
                _ => Transport::Other(scheme),
            };
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let (userinfo, host) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h),
                None => (None, authority),
            };
            let host = (transport != Transport::Local || !host.is_empty())
                .then(|| host.to_ascii_lowercase());
            return RepoUrl {
                transport,
                host,
                userinfo,
            };
        }
        // git's rule: a colon before the first slash is the SSH form.
        let colon = repo.find(':');
        let slash = repo.find('/');
        if let Some(c) = colon {
            if slash.is_none_or(|s| c < s) {
                let authority = &repo[..c];
                let (userinfo, host) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u.to_string()), h),
                    None => (None, authority),
                };
                return RepoUrl {
                    transport: Transport::Ssh,
                    host: Some(host.trim_matches(['[', ']']).to_ascii_lowercase()),
                    userinfo,
                };
            }
        }
        RepoUrl {
            transport: Transport::Local,
            host: None,
            userinfo: None,
        }
    }

    /// Whether the host is this machine's loopback (`localhost`, 127.0.0.0/8, `::1`).
    pub fn is_loopback(&self) -> bool {
        let Some(host) = &self.host else {
            return false;
        };
        // Without the port: `[::1]:8080`, `127.0.0.1:8080`, `localhost`.
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.split(':').next().unwrap_or(""),
        };
        name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Whether `a` and `b` name the same host (and port): what decides whether an app's credential
/// may follow a change of its repository.
pub fn same_host(a: &str, b: &str) -> bool {
    let (a, b) = (RepoUrl::parse(a), RepoUrl::parse(b));
    a.host == b.host && a.is_local() == b.is_local()
}

impl RepoUrl {
    fn is_local(&self) -> bool {
        self.transport == Transport::Local
    }
}

/// Refuses a repository address Berth does not let git reach, with the sentence a person reads.
/// `credential` is the kind of the app's git credential, if it has one.
pub fn check(repo: &str, allow_local: bool, credential: Option<&str>) -> Result<(), String> {
    let url = RepoUrl::parse(repo);
    if let Some(userinfo) = &url.userinfo {
        let holds_secret =
            userinfo.contains(':') || matches!(url.transport, Transport::Https | Transport::Http);
        if holds_secret {
            return Err(format!(
                "repo {} holds a user name or password: give the secret as git_credential \
                 instead (it is stored sealed and never shown)",
                redact(repo)
            ));
        }
    }
    match &url.transport {
        Transport::Https | Transport::Ssh => Ok(()),
        Transport::Http if allow_local && url.is_loopback() => Ok(()),
        Transport::Http if credential.is_some() => Err(format!(
            "repo {repo} uses plain http://, which would send the git credential unencrypted: \
             use https://"
        )),
        Transport::Http => Err(format!(
            "repo {repo} uses plain http://, which Berth does not fetch from: use https:// or ssh"
        )),
        Transport::Local if allow_local => Ok(()),
        Transport::Local => Err(format!(
            "repo {repo} is a repository on this machine (a path or file://), which this Berth \
             does not fetch from: use https:// or ssh, or set allow_local_repos \
             (BERTH_ALLOW_LOCAL_REPOS=true)"
        )),
        Transport::Other(t) => Err(format!(
            "repo {} uses git's {t} transport, which Berth does not allow: use https:// or ssh",
            redact(repo)
        )),
    }
}

/// `repo` with any password or token in it replaced by `***` (for addresses stored before they
/// were refused, whenever one is written to a log).
pub fn redact(repo: &str) -> String {
    let url = RepoUrl::parse(repo);
    let Some(userinfo) = url.userinfo else {
        return repo.to_string();
    };
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None if matches!(url.transport, Transport::Https | Transport::Http) => "***".into(),
        None => return repo.to_string(),
    };
    repo.replacen(&format!("{userinfo}@"), &format!("{masked}@"), 1)
}

/// The environment every git Berth runs gets, beside the credential's: no system-wide git
/// configuration (another user's `/etc/gitconfig` could name helpers or rewrite URLs), only the
/// allowed transports — also for submodules and redirects, which git checks against the same
/// list — and none a repository's own configuration may add.
pub fn git_env(allow_local: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_PROTOCOL_FROM_USER", "0"),
        (
            "GIT_ALLOW_PROTOCOL",
            if allow_local {
                "https:ssh:file:http"
            } else {
                "https:ssh"
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_taken_apart_as_git_does() {
        let cases: &[(&str, Transport, Option<&str>, Option<&str>)] = &[
            (
                "https://github.com/a/b.git",
                Transport::Https,
                Some("github.com"),
                None,
            ),
            (
                "HTTPS://GitHub.com:8443/a",
                Transport::Https,
                Some("github.com:8443"),
                None,
            ),
            (
                "http://127.0.0.1:9/x",
                Transport::Http,
                Some("127.0.0.1:9"),
                None,
            ),
            (
                "ssh://git@h.example:22/r",
                Transport::Ssh,
                Some("h.example:22"),
                Some("git"),
            ),
            (
                "git@github.com:a/b.git",
                Transport::Ssh,
                Some("github.com"),
                Some("git"),
            ),
            ("file:///srv/a.git", Transport::Local, None, None),
            ("/srv/a.git", Transport::Local, None, None),
            ("./a:b", Transport::Local, None, None),
            (
                "ext::sh -c touch% /tmp/x",
                Transport::Other("ext".into()),
                None,
                None,
            ),
            ("git://h/r", Transport::Other("git".into()), Some("h"), None),
        ];
        for (repo, t, host, user) in cases {
            let u = RepoUrl::parse(repo);
            assert_eq!(&u.transport, t, "{repo}");
            assert_eq!(u.host.as_deref(), *host, "{repo}");
            assert_eq!(u.userinfo.as_deref(), *user, "{repo}");
        }
    }

    #[test]
    fn the_rule_refuses_what_it_must_and_says_why() {
        let ok = |r: &str, local: bool, cred: Option<&str>| check(r, local, cred);
        assert_eq!(
            ok("https://github.com/a/b", false, Some("https_token")),
            Ok(())
        );
        assert_eq!(ok("git@github.com:a/b", false, Some("ssh_key")), Ok(()));
        assert_eq!(ok("/srv/a.git", true, None), Ok(()));
        assert_eq!(ok("file:///srv/a.git", true, None), Ok(()));
        assert_eq!(
            ok("http://127.0.0.1:9/x", true, Some("https_token")),
            Ok(())
        );
        let refused: &[(&str, bool, Option<&str>, &str)] = &[
            ("/srv/a.git", false, None, "set allow_local_repos"),
            ("file:///srv/a.git", false, None, "set allow_local_repos"),
            ("http://127.0.0.1:9/x", false, None, "plain http://"),
            (
                "http://example.com/x",
                true,
                Some("https_token"),
                "unencrypted",
            ),
            ("http://example.com/x", true, None, "plain http://"),
            ("ext::sh -c touch% /tmp/x", true, None, "ext transport"),
            ("git://example.com/x", true, None, "git transport"),
            ("fd::3", true, None, "fd transport"),
            (
                "https://u:p4ss@github.com/a",
                false,
                None,
                "git_credential instead",
            ),
            (
                "https://ghp_tok@github.com/a",
                false,
                None,
                "git_credential instead",
            ),
            ("ssh://git:pw@h/r", false, None, "git_credential instead"),
        ];
        for (repo, local, cred, says) in refused {
            let e = ok(repo, *local, *cred).unwrap_err();
            assert!(e.contains(says), "{repo}: {e}");
            assert!(!e.contains("p4ss") && !e.contains("ghp_tok"), "{e}");
        }
    }

    #[test]
    fn secrets_in_addresses_are_masked() {
        assert_eq!(
            redact("https://u:p4ss@github.com/a"),
            "https://u:***@github.com/a"
        );
        assert_eq!(redact("https://tok@h/a"), "https://***@h/a");
        assert_eq!(redact("git@github.com:a/b"), "git@github.com:a/b");
        assert_eq!(redact("/srv/a"), "/srv/a");
    }

    #[test]
    fn hosts_compare_with_their_ports() {
        assert!(same_host("https://github.com/a", "https://GitHub.com/b"));
        assert!(same_host("git@github.com:a", "ssh://git@github.com/b"));
        assert!(!same_host("https://github.com/a", "https://evil.example/a"));
        assert!(!same_host("http://127.0.0.1:1/a", "http://127.0.0.1:2/a"));
        assert!(!same_host("/srv/a", "https://h/a"));
        assert!(same_host("/srv/a", "/srv/b"));
    }
}
