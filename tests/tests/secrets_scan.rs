//! The secrets scan (issue 13): a cluster is given every kind of secret Berth handles — a
//! password-protected Redis, the API token, the GitHub webhook secret, a private repository's
//! token, the cluster's secret key — and uses each (a deployment of the private app, signed and
//! badly signed webhook deliveries). Then every key in its Redis (every type, read whole), every
//! file its processes wrote (logs, Redis's append-only file, Caddy's state, the data dir) and
//! every log the API serves are read as raw bytes, and none may hold a secret, neither as it is
//! nor in base64 (at any alignment: a secret inside a longer base64 text, as in a Basic
//! `Authorization` header, shows as one of three strings).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use berth_tests::github::{deliver, deliver_push, webhook_secret};
use berth_tests::{eventually, private_https_remote, repo_root, unique, Cluster, GitRepo, TempDir};
use serde_json::json;

const GIT_TOKEN: &str = "ghp_ScanTokenThatMustNeverLeak0123456789";
const REDIS_PASSWORD: &str = "redis-pass-ScanMustNeverFindThis-7f3a";
const WEBHOOK_SECRET: &str = "webhook-ScanSecretNeverStored-91c2";
/// The app's own webhook secret (its own endpoint).
const APP_HOOK_SECRET: &str = "apphook-ScanSecretNeverStored-3e8a";
/// An app's environment is configuration its token holders read back through the API, stored as
/// given; a secret kept there must still never reach a log.
const ENV_RUNTIME: &str = "db-pass-ScanEnvRuntimeNeverLogged-55d1";
const ENV_BUILD: &str = "npm-ScanEnvBuildNeverLogged-0b7e";
/// Secret variables (`PUT /apps/{name}/env/{KEY}` with `secret`): sealed, so in the clear
/// nowhere, Redis included.
const ENV_SECRET_RUNTIME: &str = "sealed-ScanEnvSecretRuntimeNeverStored-2f6c";
const ENV_SECRET_BUILD: &str = "sealed-ScanEnvSecretBuildNeverStored-8d0e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_kept_or_logged_in_the_clear() {
    // The node is a process of its own: it gets the coordinator's key as a fleet's nodes do.
    let key_hex = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut extra = webhook_secret(WEBHOOK_SECRET).to_vec();
    extra.push(("BERTH_SECRET_KEY", &key_hex));
    extra.push(("RUST_LOG", "debug,hyper=info,h2=info,bollard=info"));
    let mut c = Cluster::separate_with_redis(
        &["--requirepass", REDIS_PASSWORD],
        Some(REDIS_PASSWORD),
        &extra,
    )
    .await
    .unwrap();

    // A private app with a token, an environment, deployed.
    let src = TempDir::with_prefix("scan-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let (url, basic) = private_https_remote(src.path(), &repo, GIT_TOKEN)
        .await
        .unwrap();
    let app = unique("scan");
    c.create_app(json!({"name": app, "repo": url, "port": 8080,
        "git_credential": {"kind": "https_token", "token": GIT_TOKEN},
        "webhook_secret": APP_HOOK_SECRET,
        "env": {"runtime": {"DB_PASSWORD": ENV_RUNTIME}, "build": {"NPM_TOKEN": ENV_BUILD}}}))
        .await
        .unwrap();
    for (key, value, scope) in [
        ("API_SECRET", ENV_SECRET_RUNTIME, "runtime"),
        ("BUILD_SECRET", ENV_SECRET_BUILD, "build"),
    ] {
        let (s, v) = c
            .api
            .req(
                reqwest::Method::PUT,
                &format!("/api/v1/apps/{app}/env/{key}"),
                Some(json!({"value": value, "scope": scope, "secret": true})),
            )
            .await
            .unwrap();
        assert_eq!(s, 200, "{v}");
    }
    let (id, d) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}",
        c.api.log(&id).await.unwrap()
    );
    c.serves(&format!("{app}.localhost"), "Hello")
        .await
        .unwrap();

    // The webhook secret checks a ping, a push of another repository, and a forged delivery.
    let (s, v) = deliver(
        &c.api.base,
        Some(WEBHOOK_SECRET),
        "ping",
        &unique("d"),
        b"{\"zen\":\"hi\"}",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    let other_src = TempDir::with_prefix("scan-other").unwrap();
    let other = GitRepo::from_dir(other_src.path(), &repo_root().join("examples/hello")).unwrap();
    let head = other.git(&["rev-parse", "HEAD"]).unwrap();
    let body = berth_tests::github::push_body(&other, "refs/heads/main", &head, &head, "m");
    let (s, v) = deliver_push(&c.api.base, WEBHOOK_SECRET, &unique("d"), &body)
        .await
        .unwrap();
    assert_eq!(s, 202, "{v}");
    let (s, v) = deliver_push(&c.api.base, "not-the-secret", &unique("d"), &body)
        .await
        .unwrap();
    assert_eq!(s, 401, "{v}");
    // The app's own secret checks a ping at its own endpoint.
    let http = berth_tests::http_client().build().unwrap();
    let (s, v) = berth_tests::github::deliver_at(
        &http,
        &format!("{}/api/v1/apps/{app}/webhooks/github", c.api.base),
        Some(APP_HOOK_SECRET),
        "ping",
        &unique("d"),
        b"{\"zen\":\"hi\"}",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");

    let secrets: Vec<(&str, String)> = vec![
        ("the git token", GIT_TOKEN.into()),
        ("the git token's Basic value", basic),
        ("the API token", c.api.token.clone()),
        ("the webhook secret", WEBHOOK_SECRET.into()),
        ("the app's own webhook secret", APP_HOOK_SECRET.into()),
        ("the Redis password", REDIS_PASSWORD.into()),
        ("the secret key", key_hex),
        (
            "a secret runtime variable's value",
            ENV_SECRET_RUNTIME.into(),
        ),
        ("a secret build variable's value", ENV_SECRET_BUILD.into()),
    ];
    let env_values: Vec<(&str, String)> = vec![
        ("a runtime variable's value", ENV_RUNTIME.into()),
        ("a build variable's value", ENV_BUILD.into()),
    ];
    let logged: Vec<(&str, String)> = secrets.iter().chain(&env_values).cloned().collect();
    let (secrets, logged) = (needles(&secrets), needles(&logged));

    // Redis: every key, whatever its type, read whole.
    let port = c.redis_port().unwrap();
    let keys = redis_raw(port, &["--scan"]);
    let keys: Vec<&[u8]> = keys
        .split(|b| *b == b'\n')
        .filter(|k| !k.is_empty())
        .collect();
    let mut seen = Vec::new();
    for k in &keys {
        let name = String::from_utf8_lossy(k).to_string();
        let value = redis_raw(port, &["EVAL", berth_tests::REDIS_DUMP_KEY, "1", &name]);
        assert!(
            !value.starts_with(b"ERR") && !value.starts_with(b"unread type"),
            "{name}: {}",
            String::from_utf8_lossy(&value)
        );
        let mut both = k.to_vec();
        both.extend_from_slice(&value);
        if let Some(what) = found(&both, &secrets) {
            panic!("Redis key {name} holds {what}");
        }
        seen.push(name);
    }
    // The scan read what matters: the sealed credential, the app, its jobs and its log.
    for must in [
        berth_protocol::keys::app_credential(&app),
        berth_protocol::keys::app_env_secrets(&app),
        format!("berth:deployment:{id}"),
        format!("berth:logs:{id}"),
    ] {
        assert!(seen.contains(&must), "{must} not among {seen:?}");
    }
    assert!(
        seen.iter().any(|k| k.starts_with("berth:jobs:")),
        "{seen:?}"
    );

    // Redis's append-only file has every write: wait until it holds the deployment's id (the
    // fsync is every second), then it is read with the other files.
    let dir = c.dir.path().to_path_buf();
    eventually(
        "the AOF to hold the deployment",
        Duration::from_secs(10),
        || {
            let (dir, id) = (dir.clone(), id.clone());
            async move {
                files(&dir)
                    .iter()
                    .filter(|p| p.to_string_lossy().contains("appendonly"))
                    .any(|p| contains(&std::fs::read(p).unwrap_or_default(), id.as_bytes()))
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();

    // Every file under the cluster's directory (the processes' logs, Redis's files, Caddy's
    // state, the data dir) but the two that are the secrets' own homes.
    let homes = [dir.join("berth/secret.key"), dir.join("berth/token")];
    let mut read = 0;
    for p in files(&dir) {
        if homes.contains(&p) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&p) else {
            continue; // a socket, or gone since the listing
        };
        // Redis's own files hold what its keys hold (an app's environment too); every other
        // file must not even hold that.
        let redis_data =
            p.to_string_lossy().contains("appendonly") || p.extension().is_some_and(|e| e == "rdb");
        let needles = if redis_data { &secrets } else { &logged };
        if let Some(what) = found(&bytes, needles) {
            panic!("{} holds {what}", p.display());
        }
        read += 1;
    }
    assert!(read >= 5, "only {read} files read in {}", dir.display());

    // The logs the API serves.
    for path in [
        format!("/api/v1/deployments/{id}/logs"),
        format!("/api/v1/apps/{app}/logs"),
    ] {
        let (s, v) = c.api.get(&format!("{path}?format=json")).await.unwrap();
        assert_eq!(s, 200, "{path}: {v}");
        if let Some(what) = found(v.to_string().as_bytes(), &logged) {
            panic!("{path} holds {what}");
        }
    }
    let log = c.api.log(&id).await.unwrap();
    assert!(log.contains(&app), "{log}");
    if let Some(what) = found(log.as_bytes(), &logged) {
        panic!("the deployment's log holds {what}");
    }
}

/// `redis-cli --raw` against the test's Redis on `port` with `args`: its output as bytes.
fn redis_raw(port: u16, args: &[&str]) -> Vec<u8> {
    let out = Command::new("redis-cli")
        .args([
            "--no-auth-warning",
            "--raw",
            "-h",
            "127.0.0.1",
            "-a",
            REDIS_PASSWORD,
        ])
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Each secret as it is and in base64 at each of the three alignments it can have inside a
/// longer base64 text (the part of its encoding that does not depend on its neighbours).
fn needles(secrets: &[(&str, String)]) -> Vec<(String, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut out = Vec::new();
    for (what, s) in secrets {
        out.push((what.to_string(), s.as_bytes().to_vec()));
        for pad in 0..3usize {
            let mut bytes = vec![0u8; pad];
            bytes.extend_from_slice(s.as_bytes());
            let enc = b64.encode(&bytes);
            // Skip the characters that mix in the padding, and the last group, which depends on
            // what follows.
            let start = if pad == 0 { 0 } else { 4 };
            let end = enc.len().saturating_sub(4);
            if end > start + 16 {
                let core = enc.as_bytes()[start..end].to_vec();
                out.push((format!("{what} in base64"), core.clone()));
                let url_safe: Vec<u8> = core
                    .iter()
                    .map(|b| match b {
                        b'+' => b'-',
                        b'/' => b'_',
                        b => *b,
                    })
                    .collect();
                out.push((format!("{what} in URL-safe base64"), url_safe));
            }
        }
    }
    out
}

/// The first needle found in `hay`, described.
fn found(hay: &[u8], needles: &[(String, Vec<u8>)]) -> Option<String> {
    needles
        .iter()
        .find(|(_, n)| contains(hay, n))
        .map(|(what, _)| what.clone())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every regular file under `dir`, recursively (symbolic links not followed).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}
