//! `berth coordinator` pointed at Redis Sentinels (`BERTH_REDIS__SENTINELS`,
//! `BERTH_REDIS__MASTER_NAME`), with real processes on loopback: when the primary is killed
//! (`kill -9`) the API answers 503 with a message meanwhile — never a 500, never a hang — and
//! accepts writes again once Sentinel has promoted the replica, nobody touching the coordinator.

use std::process::Command;
use std::time::Duration;

use berth_tests::{berth_bin, eventually, free_port, Api, GitRepo, Proc, RedisSentinels, TempDir};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_503_while_sentinel_fails_over_then_writes_again() {
    let dir = TempDir::with_prefix("sentinel-api").unwrap();
    let mut redis = RedisSentinels::start(&dir.path().join("redis"), "berth")
        .await
        .unwrap();
    let port = free_port();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let d = dir.path().to_string_lossy().to_string();
    let mut cmd = Command::new(berth_bin());
    cmd.arg("coordinator")
        .env("HOME", &d)
        .env("XDG_CONFIG_HOME", format!("{d}/config"))
        .env("XDG_DATA_HOME", format!("{d}/data"))
        .env("BERTH_DATA_DIR", format!("{d}/berth"))
        .env("BERTH_API__LISTEN", format!("127.0.0.1:{port}"))
        .env("BERTH_API__TOKEN", &token)
        .env("BERTH_REDIS__SENTINELS", redis.env())
        .env("BERTH_REDIS__MASTER_NAME", "berth")
        .env("BERTH_ALLOW_LOCAL_REPOS", "true")
        .env("RUST_LOG", "info");
    let mut coord =
        Proc::spawn("berth coordinator", cmd, dir.path().join("coordinator.log")).unwrap();
    let api = Api::new(format!("http://127.0.0.1:{port}"), token);
    let log = |coord: &Proc| coord.log_text();
    eventually("the API to answer", Duration::from_secs(60), || async {
        matches!(api.get("/api/v1/apps").await, Ok((200, _))).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log(&coord)));
    let repo = GitRepo::init(&dir.path().join("repo")).unwrap();
    repo.write("index.html", "hello").unwrap();
    repo.commit("v1").unwrap();
    let create = |name: &str| json!({"name": name, "repo": repo.url(), "port": 8080});
    api.create_app(create("before")).await.unwrap();

    // Replication is asynchronous: what Berth wrote may not have reached the replica yet when
    // the primary dies (which writes must wait for it is the durability promise, not this
    // test's). A write of the test's own that one replica acknowledged (`WAIT 1`) comes after
    // all of Berth's in the replication stream.
    let primary =
        redis::Client::open(format!("redis://127.0.0.1:{}/", redis.primary_port)).unwrap();
    let cfg =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    let mut p = primary
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("test:mark")
        .arg(1)
        .query_async(&mut p)
        .await
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut p)
        .await
        .unwrap();
    assert_eq!(acked, 1);
    redis.primary.kill();
    // Every answer meanwhile is 201 (the new primary took it) or 503 saying Redis is away; at
    // least one is a 503. A hang check, not a figure: each request gets 30 s.
    let mut unavailable = 0;
    for i in 0.. {
        assert!(!coord.exited(), "the coordinator exited:\n{}", log(&coord));
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            api.post("/api/v1/apps", create(&format!("after-{i}"))),
        )
        .await
        .unwrap_or_else(|_| panic!("POST /api/v1/apps hung:\n{}", log(&coord)));
        let (status, body) = r.unwrap();
        match status {
            201 => break,
            503 => {
                let e = body["error"].as_str().unwrap_or_default();
                assert!(e.contains("Redis is unreachable at"), "{body}");
                unavailable += 1;
            }
            _ => panic!("HTTP {status}: {body}\n{}", log(&coord)),
        }
        assert!(
            i < 600,
            "no write accepted after {i} tries:\n{}",
            log(&coord)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(unavailable > 0, "the API answered 503 during the failover");
    let (status, apps) = api.get("/api/v1/apps").await.unwrap();
    assert_eq!(status, 200, "{apps}");
    assert!(apps.to_string().contains("\"before\""), "{apps}");
    assert_eq!(
        berth_tests::redis_role(redis.replica_port).await.as_deref(),
        Some("master")
    );
    let text = log(&coord);
    assert!(text.contains("Redis primary moved"), "{text}");
}
