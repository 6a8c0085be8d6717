//! The durability promise against real processes: a `redis-server` primary and a replica
//! (`--replicaof`) on loopback. A covered write is confirmed once the replica has it, is
//! reported unconfirmed (within the timeout, counted) while the replica is stopped, and with the
//! default setting no `WAIT` is ever sent. A primary that refuses writes for want of replicas
//! (`NOREPLICAS`) is an unavailability that leaves the link up.

use std::time::{Duration, Instant};

use berth_bus::{is_unavailable, Durability, Redis, Replicas, Shutdown, Unreplicated};
use berth_tests::{eventually, free_port, pause, start_redis, start_replica, TempDir};

const PRIMARY_ARGS: [&str; 2] = ["--repl-diskless-sync-delay", "0"];

async fn set(redis: &Redis, key: &str, value: &str) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut redis.clone())
        .await
}

/// `INFO commandstats` of the Redis on `port`.
fn commandstats(port: u16) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_covered_write_is_confirmed_by_the_replica_and_reported_unconfirmed_without_it() {
    let dir = TempDir::with_prefix("durable").unwrap();
    let (p, r) = (free_port(), free_port());
    let _primary = start_redis(dir.path(), p, &PRIMARY_ARGS).await.unwrap();
    let replica = start_replica(&dir.path().join("replica"), r, p)
        .await
        .unwrap();
    let redis = Redis::connect(&format!("redis://127.0.0.1:{p}/"), "test")
        .await
        .unwrap();
    let shutdown = Shutdown::new();
    let timeout = Duration::from_millis(500);
    let replicas = Replicas::new(
        &redis,
        Durability {
            replicas: 1,
            timeout,
        },
        "test",
        &shutdown,
    );
    assert!(replicas.is_on());

    // The replica is up: confirmed, and the replica has the write when it is.
    set(&redis, "k1", "v1").await.unwrap();
    replicas.confirm().await.unwrap();
    assert_eq!(redis_cli(r, &["GET", "k1"]), "v1");

    // The replica stops answering (SIGSTOP: its connection stays open, as on a hung machine).
    pause(&replica, true).unwrap();
    set(&redis, "k2", "v2").await.unwrap();
    let started = Instant::now();
    let e = replicas.confirm().await.unwrap_err();
    // A hang check, not a figure: the answer comes after about the timeout, not never.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        e,
        Unreplicated {
            acked: 0,
            wanted: 1,
            timeout,
            cause: None
        }
    );
    let text = e.to_string();
    assert!(
        text.contains("reached Redis's primary") && text.contains("0 of the 1 replica(s)"),
        "{text}"
    );
    // Several callers at once are answered together, each told the same; each is counted.
    let many = futures_util::future::join_all((0..5).map(|_| replicas.confirm())).await;
    assert!(many.iter().all(|r| r.is_err()), "{many:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    eventually(
        "the writes not confirmed to be counted",
        Duration::from_secs(10),
        || async {
            (redis_cli(p, &["HGET", "berth:stats:unreplicated", "test"]) == "6").then_some(())
        },
    )
    .await
    .unwrap();
    // Nothing else of the daemon waited on the replica: the shared connection answers at once.
    set(&redis, "k3", "v3").await.unwrap();

    // Back: confirmed again.
    pause(&replica, false).unwrap();
    eventually(
        "confirmations to work again",
        Duration::from_secs(20),
        || async { replicas.confirm().await.ok() },
    )
    .await
    .unwrap();
    assert_eq!(redis_cli(r, &["GET", "k3"]), "v3");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_replica_asked_for_no_wait_is_ever_sent() {
    let dir = TempDir::with_prefix("durable-off").unwrap();
    let p = free_port();
    let _primary = start_redis(dir.path(), p, &PRIMARY_ARGS).await.unwrap();
    let redis = Redis::connect(&format!("redis://127.0.0.1:{p}/"), "test")
        .await
        .unwrap();
    let shutdown = Shutdown::new();
    // The default setting, and the handle everything starts with.
    for replicas in [
        Replicas::new(&redis, Durability::default(), "test", &shutdown),
        Replicas::off(),
    ] {
        assert!(!replicas.is_on());
        for n in 0..100 {
            set(&redis, "k", &n.to_string()).await.unwrap();
            replicas.confirm().await.unwrap();
        }
    }
    let stats = commandstats(p);
    assert!(stats.contains("cmdstat_set:calls=200"), "{stats}");
    assert!(
        !stats.contains("cmdstat_wait") && !stats.contains("cmdstat_publish"),
        "{stats}"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_short_of_replicas_refuses_writes_as_an_unavailability_and_stays_up() {
    let dir = TempDir::with_prefix("durable-noreplicas").unwrap();
    let p = free_port();
    let _primary = start_redis(dir.path(), p, &["--min-replicas-to-write", "1"])
        .await
        .unwrap();
    let redis = Redis::connect(&format!("redis://127.0.0.1:{p}/"), "test")
        .await
        .unwrap();
    let e = set(&redis, "k", "v").await.unwrap_err();
    assert!(e.to_string().contains("NOREPLICAS"), "{e}");
    assert!(is_unavailable(&e), "{e}");
    // Redis answers: the link is not down, reads go on, and the error is Redis's own.
    assert!(!redis.is_down());
    redis.ping().await.unwrap();
    let e = set(&redis, "k", "v").await.unwrap_err();
    assert!(!e.to_string().contains("Redis is unreachable"), "{e}");
    assert!(!redis.is_down());
}
