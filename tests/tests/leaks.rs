//! Secrets that must not leak (issue 13, item 9): the data directory and its token and key files
//! are private after a start, even when they were readable before; the password of the Redis URL
//! never shows in what the daemons print. A real separate cluster on a password-protected Redis.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use berth_tests::{Cluster, TempDir};

const PASSWORD: &str = "hunter2-redis-pw-4d1f";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_private_on_disk_and_out_of_the_logs() {
    let mut c = Cluster::separate_with_redis(&["--requirepass", PASSWORD], Some(PASSWORD), &[])
        .await
        .unwrap();
    // The cluster works on the protected Redis.
    let (code, v) = c.api.get("/healthz").await.unwrap();
    assert_eq!(code, 200, "{v}");

    // What an older version (or an operator's umask) could leave behind: all readable.
    let data = c.dir.path().join("berth");
    std::fs::write(data.join("token"), "0123456789abcdef0123456789abcdef").unwrap();
    chmod(&data.join("token"), 0o644);
    chmod(&data.join("secret.key"), 0o644);
    std::fs::create_dir_all(data.join("node")).unwrap();
    chmod(&data.join("node"), 0o755);
    chmod(&data, 0o755);

    c.restart_coordinator().await.unwrap();
    assert_eq!(mode(&data), 0o700, "data_dir");
    assert_eq!(mode(&data.join("node")), 0o700, "data_dir/node");
    assert_eq!(mode(&data.join("token")), 0o600, "token");
    assert_eq!(mode(&data.join("secret.key")), 0o600, "secret.key");

    // A Redis outage makes both daemons log about Redis; the URL's password must not be there.
    c.stop_redis().unwrap();
    let (code, _) = c.api.get("/healthz").await.unwrap();
    assert_eq!(code, 503);
    berth_tests::eventually("the outage in the log", Duration::from_secs(30), || async {
        c.logs().contains("Redis is unreachable").then_some(())
    })
    .await
    .unwrap();
    let logs = c.logs();
    assert!(
        !logs.contains(PASSWORD),
        "the Redis password is in the logs:\n{logs}"
    );

    // A node refused for a bad Redis URL says so, without the password.
    let dir = TempDir::with_prefix("leaks-node").unwrap();
    let out = c
        .berth()
        .arg("node")
        .env("BERTH_DATA_DIR", dir.path().join("berth"))
        .env("BERTH_NODE__NAME", berth_tests::unique("leaky"))
        .env(
            "BERTH_REDIS__URL",
            format!("redis://:{PASSWORD}@127.0.0.1:1/not-a-db"),
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    // Refused when the settings are read (`RedisSettings::check`), saying why.
    assert!(text.contains("redis.url is not a Redis URL"), "{text}");
    assert!(!text.contains(PASSWORD), "the password is shown:\n{text}");
}
