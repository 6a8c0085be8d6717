//! The link to a real Redis that goes away and comes back: commands fail at once saying where
//! Redis is, one probe at a time finds it again, and waiting loops are woken.

use std::time::{Duration, Instant};

use berth_bus::{is_unavailable, Redis};
use berth_tests::{eventually, free_port, start_redis, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_fail_at_once_while_redis_is_away_and_work_when_it_is_back() {
    let dir = TempDir::with_prefix("link").unwrap();
    let port = free_port();
    let args = ["--appendonly", "yes", "--appendfsync", "everysec"];
    let mut server = start_redis(dir.path(), port, &args).await.unwrap();
    let redis = Redis::connect(&format!("redis://127.0.0.1:{port}/"), "test")
        .await
        .unwrap();
    let mut c = redis.clone();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!redis.is_down() && redis.last_outage().is_none());

    server.stop();
    let first = redis.ping().await.unwrap_err();
    assert!(is_unavailable(&first), "{first}");
    assert!(
        first
            .to_string()
            .starts_with(&format!("Redis is unreachable at 127.0.0.1:{port}: ")),
        "{first}"
    );
    assert!(redis.is_down());
    // Known down: a hundred commands, each refused without trying to connect (or a probe). A
    // hang check, not a figure: before the link, each one waited for reconnect attempts of its
    // own (about a second), a hundred of them well over a minute.
    let started = Instant::now();
    for _ in 0..100 {
        let e = redis.ping().await.unwrap_err();
        assert!(e.to_string().contains("Redis is unreachable at"), "{e}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "100 commands took {took:?}");
    // A blocking reader's connection is refused the same way.
    let e = redis
        .connect_blocking(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Redis is unreachable at"), "{e}");

    let woken = tokio::spawn({
        let redis = redis.clone();
        async move { redis.back().await }
    });
    let _server = start_redis(dir.path(), port, &args).await.unwrap();
    eventually("Redis to answer again", Duration::from_secs(10), || async {
        redis.ping().await.ok()
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("back() resolves once Redis answers")
        .unwrap();
    let (from, to) = redis.last_outage().expect("the outage is remembered");
    assert!(from <= to);
    // What Redis had is still there (AOF).
    let v: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    redis
        .connect_blocking(Duration::from_secs(1))
        .await
        .unwrap();
}

/// A URL whose node is a replica (or became one): a write it refuses (`READONLY`) counts as Redis
/// being away, and the link stays down — its probe asks the node's role — until the node is a
/// primary again; it is not taken back at every `PING` only to refuse the next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_a_replica_keeps_the_link_down_until_it_is_a_primary() {
    let dir = TempDir::with_prefix("replica").unwrap();
    let (primary, replica) = (free_port(), free_port());
    let d = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let _primary = start_redis(&d("primary"), primary, &[]).await.unwrap();
    let _replica = start_redis(
        &d("replica"),
        replica,
        &["--replicaof", "127.0.0.1", &primary.to_string()],
    )
    .await
    .unwrap();
    let redis = Redis::connect(&format!("redis://127.0.0.1:{replica}/"), "test")
        .await
        .unwrap();
    let set = || async {
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async::<()>(&mut redis.clone())
            .await
    };
    let e = set().await.unwrap_err();
    assert!(is_unavailable(&e), "{e}");
    assert!(redis.is_down(), "{e}");
    assert!(e.to_string().contains("read only replica"), "{e}");
    // The probe finds a replica: still down, saying so.
    let e = eventually("a probe", Duration::from_secs(10), || async {
        let e = redis.ping().await.unwrap_err();
        e.to_string().contains("is a slave").then_some(e)
    })
    .await
    .unwrap();
    assert!(
        e.to_string()
            .contains(&format!("127.0.0.1:{replica} is a slave, not the primary")),
        "{e}"
    );
    assert!(redis.is_down());
    // Promoted: the link comes up and writes go.
    let c = redis::Client::open(format!("redis://127.0.0.1:{replica}/")).unwrap();
    let mut c = c.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut c)
        .await
        .unwrap();
    eventually("writes to go", Duration::from_secs(10), || async {
        set().await.ok()
    })
    .await
    .unwrap();
    assert!(!redis.is_down());
    // A transaction refused by a replica counts the same.
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary)
        .query_async(&mut c)
        .await
        .unwrap();
    let e = redis::pipe()
        .atomic()
        .set("k", "v")
        .incr("n", 1)
        .query_async::<()>(&mut redis.clone())
        .await
        .unwrap_err();
    assert!(is_unavailable(&e), "{e}");
    assert!(redis.is_down(), "{e}");
}
