//! Checks of what a person sends, with messages they can act on. Pure functions: both the
//! coordinator (at the API) and the node (before touching the file system) use them.

/// An app name: a DNS label (lowercase letters, digits, `-`; 1 to 63; no leading or trailing `-`).
pub fn app_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!("app name {name:?} must be 1 to 63 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "app name {name:?} is not a DNS label: use lowercase letters, digits and '-', \
             not starting or ending with '-'"
        ));
    }
    Ok(())
}

/// A domain name as RFC 1123 writes host names: dot-separated labels of letters, digits and `-`
/// (1 to 63 each, not starting or ending with `-`), at most 253 characters, and a last label that
/// is not all digits (that would be an IP address). Case is not checked: [`normalize_domain`]
/// lowercases.
pub fn domain(d: &str) -> Result<(), String> {
    let bad = || format!("{d:?} is not a valid domain name (e.g. app.example.com)");
    if d.is_empty() || d.len() > 253 || d.ends_with('.') {
        return Err(bad());
    }
    for label in d.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad());
        }
    }
    if d.rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{d:?} is an IP address or ends in a numeric label: an app is served at a domain name"
        ));
    }
    Ok(())
}

/// An app's domain as Berth stores and compares it: valid ([`domain`]) and lowercased — DNS and
/// Caddy's host matching ignore case, so `SHOP.example.com` and `shop.example.com` are one domain.
/// `reserved` lists the names no app may take besides `localhost` (the bare base domain, the
/// API's own host), compared ignoring case.
pub fn normalize_domain(d: &str, reserved: &[String]) -> Result<String, String> {
    domain(d)?;
    let lower = d.to_ascii_lowercase();
    if lower == "localhost" {
        return Err(format!(
            "{d:?} is reserved: it names this machine; use a name under it (e.g. app.localhost)"
        ));
    }
    if reserved.iter().any(|r| r.eq_ignore_ascii_case(&lower)) {
        return Err(format!(
            "{d:?} is reserved: it is the base domain or the API's own host; use a name under it"
        ));
    }
    Ok(lower)
}

/// A TCP port a container listens on.
pub fn port(p: u32) -> Result<u16, String> {
    if (1..=65535).contains(&p) {
        Ok(p as u16)
    } else {
        Err(format!("port {p} is out of range: use 1 to 65535"))
    }
}

/// A path inside the repository: relative, and never leaving it through `..`.
pub fn repo_path(what: &str, p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if p.starts_with('/') || p.starts_with('\\') {
        return Err(format!(
            "{what} {p:?} must be relative to the repository, not absolute"
        ));
    }
    if p.split(['/', '\\']).any(|part| part == "..") {
        return Err(format!(
            "{what} {p:?} must stay inside the repository (no '..')"
        ));
    }
    if p.contains('\0') {
        return Err(format!("{what} {p:?} contains a NUL byte"));
    }
    Ok(())
}

/// A git URL or path: non-empty, one line, and not an option in disguise.
pub fn repo(r: &str) -> Result<(), String> {
    if r.trim().is_empty() {
        return Err("repo must be a git URL or path".into());
    }
    if r.starts_with('-') || r.contains(['\n', '\r', '\0']) {
        return Err(format!("repo {r:?} is not a git URL or path"));
    }
    Ok(())
}

/// The name of an upload: a hex SHA-256 (64 lowercase hex digits).
pub fn upload_sha256(s: &str) -> Result<(), String> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!("upload {s:?} is not a hex SHA-256"))
    }
}

/// A branch, tag or commit: no spaces, no leading `-`, nothing git would refuse.
pub fn git_ref(what: &str, r: &str) -> Result<(), String> {
    let bad = || format!("{what} {r:?} is not a valid git branch, tag or commit");
    if r.is_empty()
        || r.len() > 255
        || r.starts_with('-')
        || r.contains("..")
        || r.bytes()
            .any(|b| b.is_ascii_control() || b" ~^:?*[\\".contains(&b))
    {
        return Err(bad());
    }
    Ok(())
}

/// An environment variable name.
pub fn env_name(k: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && !k.as_bytes()[0].is_ascii_digit()
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "environment variable name {k:?} must be letters, digits and '_', not starting with a digit"
        ))
    }
}

/// Longest value a variable may have, in bytes.
pub const ENV_VALUE_MAX: usize = 32 * 1024;
/// Most variables an app may have, plain and secret together.
pub const ENV_VARS_MAX: usize = 500;

/// A variable's value: at most [`ENV_VALUE_MAX`] bytes, no NUL (an environment cannot hold one).
pub fn env_value(k: &str, v: &str) -> Result<(), String> {
    if v.len() > ENV_VALUE_MAX {
        return Err(format!(
            "the value of {k} is {} bytes; at most {ENV_VALUE_MAX} are accepted",
            v.len()
        ));
    }
    if v.contains('\0') {
        return Err(format!(
            "the value of {k} contains a NUL byte, which an environment cannot hold"
        ));
    }
    Ok(())
}

/// Whether a variable's name says it holds a secret (TOKEN, SECRET, PASSWORD or KEY in it, any
/// case): given to a build as a plain build arg, it deserves the image-history warning.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "KEY"]
        .iter()
        .any(|w| upper.contains(w))
}

/// A health-check path: starts with `/`.
/// An app's own webhook secret: 16 to 256 printable ASCII characters, no spaces (what GitHub's
/// form takes and a person can paste; long enough not to be guessed).
pub fn webhook_secret(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if !(16..=256).contains(&n) {
        return Err(format!(
            "webhook_secret must be 16 to 256 characters, not {n} (e.g. the output of `openssl rand -hex 32`)"
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "webhook_secret must be printable ASCII without spaces (e.g. the output of `openssl rand -hex 32`)"
                .into(),
        );
    }
    Ok(())
}

pub fn health_path(p: &str) -> Result<(), String> {
    if p.starts_with('/') && !p.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!(
            "health_check.path {p:?} must start with '/' and contain no spaces"
        ))
    }
}

/// A node label's key: lowercase letters, digits and `.-_/`, starting with a letter or digit, at
/// most 63 characters.
pub fn label_key(k: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && k.len() <= 63
        && k.as_bytes()[0].is_ascii_alphanumeric()
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "label key {k:?} must be 1-63 of lowercase letters, digits and '.-_/', starting with a letter or digit"
        ))
    }
}

/// A node label's value: letters, digits and `.-_`, at most 63 characters (may be empty).
pub fn label_value(v: &str) -> Result<(), String> {
    if v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "label value {v:?} must be at most 63 letters, digits and '.-_'"
        ))
    }
}

/// The most releases an app may keep (`keep_releases`).
pub const MAX_KEEP_RELEASES: u32 = 100;

/// Every rule a stored app satisfies: what the API checks at create and PATCH, and what a node
/// checks again on the app a job carries (it reads the job from Redis).
pub fn app(app: &crate::model::App) -> Result<(), String> {
    app_name(&app.name)?;
    // Empty: an app without a repository, deployed from uploads only.
    if !app.repo.is_empty() {
        repo(&app.repo)?;
    }
    git_ref("branch", &app.branch)?;
    repo_path("dockerfile", &app.dockerfile)?;
    repo_path("context", &app.context)?;
    if let Some(d) = &app.static_dir {
        repo_path("static_dir", d)?;
    }
    if app.domains.is_empty() {
        return Err("an app needs at least one domain".into());
    }
    for d in &app.domains {
        domain(d)?;
    }
    port(u32::from(app.port))?;
    for c in &app.placement.constraints {
        crate::Constraint::parse(c).map_err(|e| format!("placement: {e}"))?;
    }
    for k in app.env.runtime.keys().chain(app.env.build.keys()) {
        env_name(k)?;
    }
    for (k, v) in app.env.runtime.iter().chain(app.env.build.iter()) {
        env_value(k, v)?;
    }
    for k in app.env.secret.keys() {
        env_name(k)?;
        if app.env.runtime.contains_key(k) || app.env.build.contains_key(k) {
            return Err(format!(
                "{k} is a secret variable: it cannot also have a plain value (change it with PUT /api/v1/apps/{}/env/{k})",
                app.name
            ));
        }
    }
    let count = app
        .env
        .runtime
        .keys()
        .chain(app.env.build.keys())
        .chain(app.env.secret.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if count > ENV_VARS_MAX {
        return Err(format!(
            "an app has at most {ENV_VARS_MAX} variables; this one would have {count}"
        ));
    }
    let h = &app.health_check;
    health_path(&h.path)?;
    if h.interval_ms == 0 || h.timeout_ms == 0 || h.deadline_s == 0 {
        return Err("health_check interval_ms, timeout_ms and deadline_s must be above 0".into());
    }
    if h.deadline_s > 3600 {
        return Err("health_check.deadline_s must be at most 3600".into());
    }
    if h.healthy_threshold == 0 || h.healthy_threshold > 100 {
        return Err("health_check.healthy_threshold must be 1 to 100".into());
    }
    if h.port == Some(0) {
        return Err("health_check.port must be 1 to 65535".into());
    }
    if app.drain_s > 3600 {
        return Err("drain_s must be at most 3600".into());
    }
    if app.keep_releases == 0 || app.keep_releases > MAX_KEEP_RELEASES {
        return Err(format!("keep_releases must be 1 to {MAX_KEEP_RELEASES}"));
    }
    if app.replicas == 0 || app.replicas > 100 {
        return Err("replicas must be 1 to 100".into());
    }
    if app.max_surge == 0 || app.max_surge > 100 {
        return Err("max_surge must be 1 to 100".into());
    }
    if app.standby_s > 86_400 {
        return Err("standby_s must be at most 86400 (a day)".into());
    }
    limits(&app.limits)?;
    Ok(())
}

/// An image a node is told to run for `app` (a rollback, a failover, a start): one of the app's
/// own releases, `berth/<app>:<tag>` on the engine or `<registry>/berth/<app>:<tag>` in the
/// fleet's registry (`registry`: its `host:port`) — never another app's image or one from
/// elsewhere.
pub fn release_image(app: &str, image: &str, registry: Option<&str>) -> Result<(), String> {
    let bad = || {
        format!(
            "image {image:?} is not a release of app {app:?}: expected berth/{app}:<tag>{}",
            registry
                .map(|r| format!(" or {}/berth/{app}:<tag>", r.trim_end_matches('/')))
                .unwrap_or_default()
        )
    };
    let Some((repository, tag)) = image.rsplit_once(':') else {
        return Err(bad());
    };
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    let own = format!("berth/{app}");
    let repository_ok = repository == own
        || registry.is_some_and(|r| repository == format!("{}/{own}", r.trim_end_matches('/')));
    if tag_ok && repository_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Bounds of an app's container limits (`limits.*`), shared by the API's check and the node's
/// settings: below the minimums no app starts (Docker itself refuses less than 6 MiB of memory).
pub const MEMORY_MB: std::ops::RangeInclusive<u64> = 16..=1_048_576;
pub const MILLICPUS: std::ops::RangeInclusive<u32> = 10..=1_024_000;
pub const PIDS: std::ops::RangeInclusive<u32> = 16..=4_194_304;

/// An app's container limits: each one given must lie in its range.
pub fn limits(l: &crate::model::Limits) -> Result<(), String> {
    if let Some(m) = l.memory_mb {
        in_range("limits.memory_mb", "MiB", m, &MEMORY_MB)?;
    }
    if let Some(c) = l.millicpus {
        in_range(
            "limits.millicpus",
            "thousandths of a CPU",
            u64::from(c),
            &(u64::from(*MILLICPUS.start())..=u64::from(*MILLICPUS.end())),
        )?;
    }
    if let Some(p) = l.pids {
        in_range(
            "limits.pids",
            "processes",
            u64::from(p),
            &(u64::from(*PIDS.start())..=u64::from(*PIDS.end())),
        )?;
    }
    Ok(())
}

/// "limits.memory_mb must be 16 to 1048576 (MiB), not 1".
pub fn in_range(
    what: &str,
    unit: &str,
    v: u64,
    range: &std::ops::RangeInclusive<u64>,
) -> Result<(), String> {
    if range.contains(&v) {
        return Ok(());
    }
    Err(format!(
        "{what} must be {} to {} ({unit}), not {v}",
        range.start(),
        range.end()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_images_are_the_app_s_own() {
        let reg = Some("10.0.0.10:5000");
        for ok in ["berth/shop:3f2a", "10.0.0.10:5000/berth/shop:3f2a-b"] {
            assert!(release_image("shop", ok, reg).is_ok(), "{ok}");
        }
        assert!(release_image("shop", "berth/shop:v1", None).is_ok());
        for bad in [
            "berth/other:3f2a",
            "berth/shop",
            "berth/shop:",
            "evil.example/berth/shop:1",
            "10.0.0.10:5000/berth/other:1",
            "busybox:latest",
            "berth/shop:a/b",
            "berth/shopx:1",
        ] {
            let e = release_image("shop", bad, reg).unwrap_err();
            assert!(e.contains("is not a release of app \"shop\""), "{bad}: {e}");
        }
        assert!(release_image("shop", "10.0.0.10:5000/berth/shop:1", None).is_err());
    }

    #[test]
    fn limit_bounds() {
        use crate::model::Limits;
        assert!(
            limits(&Limits::default()).is_ok(),
            "unset: the node's defaults"
        );
        let ok = Limits {
            memory_mb: Some(16),
            millicpus: Some(10),
            pids: Some(16),
            read_only: true,
        };
        assert!(limits(&ok).is_ok());
        for (bad, says) in [
            (
                Limits {
                    memory_mb: Some(1),
                    ..Default::default()
                },
                "limits.memory_mb must be 16 to 1048576 (MiB), not 1",
            ),
            (
                Limits {
                    memory_mb: Some(0),
                    ..Default::default()
                },
                "limits.memory_mb must be 16 to 1048576 (MiB), not 0",
            ),
            (
                Limits {
                    millicpus: Some(5),
                    ..Default::default()
                },
                "limits.millicpus must be 10 to 1024000 (thousandths of a CPU), not 5",
            ),
            (
                Limits {
                    pids: Some(2),
                    ..Default::default()
                },
                "limits.pids must be 16 to 4194304 (processes), not 2",
            ),
        ] {
            assert_eq!(limits(&bad).unwrap_err(), says);
        }
    }

    #[test]
    fn labels() {
        for ok in ["zone", "berth.dev/disk", "a-1_b"] {
            assert!(label_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Zone", "-a", "a b", "a=b", &"a".repeat(64)] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
        for ok in ["", "eu-west-1", "SSD", "v1.2"] {
            assert!(label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["a b", "a=b", "a,b", &"a".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn app_names() {
        for ok in ["a", "hello", "my-app-2", &"a".repeat(63)] {
            assert!(app_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Hello", "a_b", "a.b", &"a".repeat(64)] {
            assert!(app_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains() {
        for ok in [
            "a.localhost",
            "x.example.com",
            "localhost",
            "SHOP.Example.com",
            "a1.b2c",
            "xn--bcher-kva.example",
        ] {
            assert!(domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a-.com",
            "a b.com",
            "a.com.",
            "a/b",
            "a_b.com",
            "http://a.com",
            "127.0.0.1",
            "10.1.2.3",
            "::1",
            "[::1]",
            "a.123",
            &format!("{}.com", "a".repeat(64)),
            &vec!["a".repeat(63); 4].join("."),
        ] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalized_domains() {
        let reserved = vec!["example.test".to_string(), "berth.example.test".to_string()];
        for (input, want) in [
            ("SHOP.localhost", "shop.localhost"),
            ("Shop.Example.Test", "shop.example.test"),
            ("a.b.c", "a.b.c"),
        ] {
            assert_eq!(
                normalize_domain(input, &reserved).as_deref(),
                Ok(want),
                "{input}"
            );
        }
        for bad in [
            "localhost",
            "LOCALHOST",
            "example.test",
            "Example.TEST",
            "berth.example.test",
            "127.0.0.1",
            "not a domain",
        ] {
            let e = normalize_domain(bad, &reserved).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn env_values_and_secret_looking_names() {
        assert!(env_value("A", "x").is_ok());
        assert!(env_value("A", &"x".repeat(ENV_VALUE_MAX)).is_ok());
        let e = env_value("A", &"x".repeat(ENV_VALUE_MAX + 1)).unwrap_err();
        assert!(e.contains("at most 32768"), "{e}");
        assert!(env_value("A", "a\0b").unwrap_err().contains("NUL"));
        for yes in [
            "API_TOKEN",
            "db_password",
            "SECRET",
            "AWS_ACCESS_KEY_ID",
            "ssh_key",
        ] {
            assert!(looks_secret(yes), "{yes}");
        }
        for no in ["PORT", "GREETING", "NODE_ENV"] {
            assert!(!looks_secret(no), "{no}");
        }
    }

    #[test]
    fn a_secret_variable_has_no_plain_value() {
        let mut app: crate::App = serde_json::from_value(serde_json::json!({
            "name": "shop", "repo": "https://example.test/shop.git", "branch": "main",
            "dockerfile": "Dockerfile", "context": ".", "port": 8080,
            "domains": ["shop.localhost"], "created_at": 1, "updated_at": 1
        }))
        .unwrap();
        app.env.secret.insert("TOKEN".into(), crate::EnvScope::Both);
        assert!(self::app(&app).is_ok());
        app.env.build.insert("TOKEN".into(), "plain".into());
        let e = self::app(&app).unwrap_err();
        assert!(e.contains("TOKEN is a secret variable"), "{e}");
    }

    #[test]
    fn ports() {
        assert_eq!(port(80), Ok(80));
        assert!(port(0).is_err());
        assert!(port(65536).is_err());
    }

    #[test]
    fn repo_paths() {
        for ok in [".", "Dockerfile", "app/Dockerfile", "./sub"] {
            assert!(repo_path("context", ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc", "../x", "a/../../x", "a/.."] {
            assert!(repo_path("context", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refs() {
        for ok in ["main", "feature/x", "v1.0", "0123abcd"] {
            assert!(git_ref("ref", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a..b", "a:b", "--upload-pack=x"] {
            assert!(git_ref("ref", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn webhook_secrets() {
        assert!(webhook_secret(&"a1".repeat(8)).is_ok());
        assert!(webhook_secret("0123456789abcdef0123456789abcdef").is_ok());
        for (bad, says) in [
            ("short", "16 to 256"),
            (&"x".repeat(257)[..], "16 to 256"),
            ("a secret with spaces", "printable"),
            ("tab\tinside-0123456789", "printable"),
        ] {
            let e = webhook_secret(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
