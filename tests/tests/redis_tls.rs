//! A fleet's Redis: over TLS with a password the whole deploy path works (jobs, events, logs,
//! routes, heartbeats, the router's subscription); a Redis whose certificate the daemons do not
//! trust, or one on another host with no password in the URL, is refused before anything runs.

use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::{repo_root, test_ca, unique, Cluster, GitRepo, TempDir};
use serde_json::json;

const DEPLOY: Duration = Duration::from_secs(180);

/// Runs `cmd` to its end (at most 90 s) with no stdin: exit code and stderr.
fn run(mut cmd: Command) -> (i32, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} still runs after 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_over_tls_with_a_password_carries_a_deploy_and_an_untrusted_one_is_refused() {
    let mut c = Cluster::separate_tls().await.unwrap();
    let url = c
        .env
        .iter()
        .find(|(k, _)| k == "BERTH_REDIS__URL")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(url.starts_with("rediss://:"), "{url}");
    // The Redis answers only TLS, and only with the password.
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
    let plain = Command::new("redis-cli")
        .args(["-p", port, "PING"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("PONG"),
        "the test's Redis answered without TLS"
    );
    assert_eq!(c.redis_cli(&["PING"]).unwrap(), "PONG");

    let src = TempDir::with_prefix("tls").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("tls");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}\n{}",
        c.api.log(&id).await.unwrap_or_default(),
        c.logs()
    );
    c.serves(&format!("{app}.localhost"), "Hello")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    // The build's log came back through the TLS Redis too.
    assert!(!c.api.log(&id).await.unwrap().is_empty());
    // The password is in no daemon's log.
    let password = url["rediss://:".len()..].split('@').next().unwrap();
    assert!(
        !c.logs().contains(password),
        "a log holds the Redis password"
    );

    // The same Redis with a certificate from a CA the daemon does not trust: refused, and the
    // daemon says why and stops instead of running without its store.
    let other = TempDir::with_prefix("other-ca").unwrap();
    let other_ca = test_ca(other.path()).unwrap();
    let mut cmd = c.berth();
    cmd.arg("coordinator")
        .env("SSL_CERT_FILE", &other_ca.ca)
        .env("BERTH_API__LISTEN", "127.0.0.1:0")
        .env("BERTH_DATA_DIR", other.path().join("data"));
    let (code, err) = run(cmd);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.to_lowercase().contains("certificate"),
        "the refusal names the certificate: {err}"
    );
}

#[test]
fn a_redis_on_another_host_without_a_password_is_refused_at_start() {
    let dir = TempDir::with_prefix("noauth").unwrap();
    for role in ["coordinator", "node"] {
        let mut cmd = Command::new(berth_tests::berth_bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BERTH_DATA_DIR", dir.path())
            // A documentation address (RFC 5737): nothing is sent to it, the check comes first.
            .env("BERTH_REDIS__URL", "redis://192.0.2.10:6379/0")
            .arg(role);
        let (code, err) = run(cmd);
        assert_ne!(code, 0, "{role}: {err}");
        assert!(
            err.contains("redis.url names no password for the Redis at 192.0.2.10"),
            "{role}: {err}"
        );
        assert!(err.contains("requirepass"), "{role}: {err}");
    }
}
