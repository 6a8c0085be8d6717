//! Redis under Sentinel, with real processes on loopback: a primary, its replica and three
//! `redis-sentinel`s (Debian's package; scripts/setup.sh installs it). The primary is killed
//! (`kill -9`): commands fail at once as Redis being away, never hang; once Sentinel has promoted
//! the replica, commands and a consumer group's reader go on against it; the old primary,
//! started again, comes back as a replica and nothing changes for Berth. A Sentinel whose
//! answer names a replica is not believed.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_bus::StreamConsumer;
use berth_bus::{is_unavailable, ConsumerConfig, Mode, Outcome, Redis, Sentinels, Shutdown};
use berth_protocol::envelope::STREAM_FIELD;
use berth_tests::{eventually, free_port, redis_role, start_redis, RedisSentinels, TempDir};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const MASTER: &str = "berth";
const STREAM: &str = "test:sentinel";

/// The Redis processes and the Sentinels as Berth is configured with them.
async fn setup(dir: &TempDir) -> (RedisSentinels, Sentinels) {
    let r = RedisSentinels::start(dir.path(), MASTER).await.unwrap();
    let s = Sentinels {
        addrs: r.addrs.clone(),
        master_name: MASTER.into(),
        ..Sentinels::default()
    };
    (r, s)
}

fn sub(dir: &Path, name: &str) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn set(redis: &Redis, k: &str, v: &str) -> redis::RedisResult<()> {
    // A hang check, not a figure: a command may fail while the primary changes, never wait
    // for it.
    tokio::time::timeout(
        Duration::from_secs(30),
        redis::cmd("SET")
            .arg(k)
            .arg(v)
            .query_async(&mut redis.clone()),
    )
    .await
    .unwrap_or_else(|_| panic!("SET {k} hung"))
}

async fn xadd(redis: &Redis, payload: &str) -> redis::RedisResult<String> {
    redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg(STREAM_FIELD)
        .arg(payload)
        .query_async(&mut redis.clone())
        .await
}

/// Kills the primary and waits, writing all the while, until writes succeed again: each one
/// before that fails as Redis being away (never another error, never a hang), and at least one
/// does.
async fn fail_over(s: &mut RedisSentinels, redis: &Redis) {
    s.primary.kill();
    let refused = AtomicUsize::new(0);
    eventually(
        "a write to succeed on the promoted replica",
        Duration::from_secs(90),
        || {
            let redis = redis.clone();
            let refused = &refused;
            async move {
                match set(&redis, "after", "1").await {
                    Ok(()) => Some(()),
                    Err(e) => {
                        assert!(is_unavailable(&e), "not an unavailability: {e}");
                        assert!(e.to_string().starts_with("Redis is unreachable at "), "{e}");
                        refused.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
            }
        },
    )
    .await
    .unwrap();
    assert!(
        refused.into_inner() > 0,
        "writes failed while Sentinel promoted the replica"
    );
    assert!(
        redis
            .addr()
            .starts_with(&format!("127.0.0.1:{}", s.replica_port)),
        "{}",
        redis.addr()
    );
    assert_eq!(redis_role(s.replica_port).await.as_deref(), Some("master"));
}

/// Waits until the consumer has acknowledged what it was handed and the replica has all of it
/// (replication is asynchronous: an entry acknowledged on a primary that dies before passing
/// the `XACK` on is handed out again by the new one — at least once, as promised — and this
/// test wants to tell a redelivery from a loss).
async fn replicated(redis: &Redis) {
    eventually(
        "the consumer to acknowledge",
        Duration::from_secs(30),
        || async {
            let summary: redis::Value = redis::cmd("XPENDING")
                .arg(STREAM)
                .arg("g")
                .query_async(&mut redis.clone())
                .await
                .ok()?;
            match summary {
                redis::Value::Array(items) if items.first() == Some(&redis::Value::Int(0)) => {
                    Some(())
                }
                _ => None,
            }
        },
    )
    .await
    .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut redis.clone())
        .await
        .unwrap();
    assert_eq!(acked, 1);
}

/// A consumer in a group on `STREAM` whose deliveries come out of the returned receiver.
fn consume(redis: &Redis) -> (mpsc::UnboundedReceiver<String>, CancellationToken) {
    let mut cfg = ConsumerConfig::new(STREAM, "g", "c1", Mode::Sequential);
    cfg.block = Duration::from_millis(500);
    let consumer = StreamConsumer::new(cfg, redis.clone(), Shutdown::new());
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    tokio::spawn(consumer.run(stop.clone(), move |d| {
        let tx = tx.clone();
        async move {
            let p = String::from_utf8(d.payload.unwrap_or_default()).unwrap_or_default();
            let _ = tx.send(p);
            Outcome::Done
        }
    }));
    (rx, stop)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(90), rx.recv())
        .await
        .expect("the consumer handed out the entry")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_by_its_promoted_replica_and_readers_go_on() {
    let dir = TempDir::with_prefix("sentinel").unwrap();
    let (mut s, sentinels) = setup(&dir).await;
    // The URL says how to speak to the data nodes; its host is not used.
    let redis = Redis::connect_with("redis://127.0.0.1:1/0", Some(&sentinels), "test")
        .await
        .unwrap();
    assert!(
        redis
            .addr()
            .starts_with(&format!("127.0.0.1:{}", s.primary_port)),
        "{}",
        redis.addr()
    );
    set(&redis, "before", "1").await.unwrap();
    let (mut rx, stop) = consume(&redis);
    xadd(&redis, "one").await.unwrap();
    assert_eq!(next(&mut rx).await, "one");
    replicated(&redis).await;

    fail_over(&mut s, &redis).await;

    let v: Option<String> = redis::cmd("GET")
        .arg("before")
        .query_async(&mut redis.clone())
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("1"), "the replica had the write");
    // The reader reconnects to the new primary and goes on in its group.
    xadd(&redis, "two").await.unwrap();
    assert_eq!(next(&mut rx).await, "two");
    // A blocking reader's own connection goes to the new primary too.
    let mut b = redis
        .connect_blocking(Duration::from_secs(1))
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("blocking")
        .arg("1")
        .query_async(&mut b)
        .await
        .unwrap();
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_primary_comes_back_as_a_replica_and_nothing_changes() {
    let dir = TempDir::with_prefix("sentinel").unwrap();
    let (mut s, sentinels) = setup(&dir).await;
    let redis = Redis::connect_with("redis://127.0.0.1:1/0", Some(&sentinels), "test")
        .await
        .unwrap();
    let (mut rx, stop) = consume(&redis);
    xadd(&redis, "one").await.unwrap();
    assert_eq!(next(&mut rx).await, "one");
    replicated(&redis).await;

    fail_over(&mut s, &redis).await;

    // Started again as it was (a primary by its own configuration): Sentinel turns it into
    // a replica of the new primary.
    s.restart_primary().await.unwrap();
    eventually(
        "the old primary to become a replica",
        Duration::from_secs(90),
        || async { (redis_role(s.primary_port).await.as_deref() == Some("slave")).then_some(()) },
    )
    .await
    .unwrap();
    set(&redis, "later", "2").await.unwrap();
    assert!(
        redis
            .addr()
            .starts_with(&format!("127.0.0.1:{}", s.replica_port)),
        "{}",
        redis.addr()
    );
    xadd(&redis, "two").await.unwrap();
    assert_eq!(next(&mut rx).await, "two");
    // And the write reaches the old primary, a replica now.
    let old = redis::Client::open(format!("redis://127.0.0.1:{}/", s.primary_port)).unwrap();
    eventually(
        "the write to reach the old primary",
        Duration::from_secs(60),
        || async {
            let mut c = old.get_multiplexed_async_connection().await.ok()?;
            let v: Option<String> = redis::cmd("GET")
                .arg("later")
                .query_async(&mut c)
                .await
                .ok()?;
            (v.as_deref() == Some("2")).then_some(())
        },
    )
    .await
    .unwrap();
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demoted_by_a_failover_is_left_for_the_promoted_replica() {
    let dir = TempDir::with_prefix("sentinel").unwrap();
    let (s, sentinels) = setup(&dir).await;
    let redis = Redis::connect_with("redis://127.0.0.1:1/0", Some(&sentinels), "test")
        .await
        .unwrap();
    let (mut rx, stop) = consume(&redis);
    xadd(&redis, "one").await.unwrap();
    assert_eq!(next(&mut rx).await, "one");
    replicated(&redis).await;

    // A failover the old primary lives through: Sentinel makes it a replica and closes its
    // clients' connections; a command that reaches it after that is answered READONLY. Either
    // must move Berth to the new primary as a dead one would (READONLY on its own:
    // outage.rs's replica test).
    let sentinel = redis::Client::open(format!("redis://{}/", s.addrs[0])).unwrap();
    let mut c = sentinel.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(MASTER)
        .query_async(&mut c)
        .await
        .unwrap();
    eventually(
        "the old primary to be a replica",
        Duration::from_secs(60),
        || async { (redis_role(s.primary_port).await.as_deref() == Some("slave")).then_some(()) },
    )
    .await
    .unwrap();
    eventually(
        "writes to go to the promoted replica",
        Duration::from_secs(60),
        || async {
            match set(&redis, "after", "1").await {
                Ok(()) => redis
                    .addr()
                    .starts_with(&format!("127.0.0.1:{}", s.replica_port))
                    .then_some(()),
                Err(e) => {
                    assert!(is_unavailable(&e), "not an unavailability: {e}");
                    None
                }
            }
        },
    )
    .await
    .unwrap();
    xadd(&redis, "two").await.unwrap();
    assert_eq!(next(&mut rx).await, "two");
    stop.cancel();
}

/// Serves a stand-in Sentinel on a free port that answers every command with
/// `[127.0.0.1, port]`: a Sentinel whose view is stale.
async fn stale_sentinel(port: u16) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let p = port.to_string();
                let reply = format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{p}\r\n", p.len());
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_that_names_a_replica_is_not_believed() {
    let dir = TempDir::with_prefix("stale").unwrap();
    let (primary_port, replica_port) = (free_port(), free_port());
    let _primary = start_redis(&sub(dir.path(), "primary"), primary_port, &[])
        .await
        .unwrap();
    let _replica = start_redis(
        &sub(dir.path(), "replica"),
        replica_port,
        &["--replicaof", "127.0.0.1", &primary_port.to_string()],
    )
    .await
    .unwrap();
    let stale = stale_sentinel(replica_port).await;
    let right = stale_sentinel(primary_port).await;
    let only_stale = Sentinels {
        addrs: vec![stale.clone()],
        master_name: MASTER.into(),
        ..Sentinels::default()
    };
    let e = Redis::connect_with("redis://127.0.0.1:1/", Some(&only_stale), "test")
        .await
        .unwrap_err();
    assert!(is_unavailable(&e), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "127.0.0.1:{replica_port} is a slave, not the primary"
        )),
        "{e}"
    );
    let both = Sentinels {
        addrs: vec![stale, right],
        ..only_stale
    };
    let redis = Redis::connect_with("redis://127.0.0.1:1/", Some(&both), "test")
        .await
        .unwrap();
    assert!(
        redis
            .addr()
            .starts_with(&format!("127.0.0.1:{primary_port}")),
        "{}",
        redis.addr()
    );
    set(&redis, "k", "v").await.unwrap();
}
