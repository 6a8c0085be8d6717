//! `trim_acked_every` on a real Redis: a stream whose one reader is the group loses the entries
//! the group acknowledged, and keeps every entry from the group's oldest unacknowledged one on
//! (whichever consumer holds it), so its writers need no cap that could drop unread entries.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_bus::{ConsumerConfig, Mode, Outcome, Redis, Shutdown, StreamConsumer};
use berth_protocol::envelope::STREAM_FIELD;
use berth_tests::eventually;
use tokio_util::sync::CancellationToken;

const STREAM: &str = "test:trim";

async fn add(c: &mut Redis, n: usize, from: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in from..from + n {
        let id: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg(STREAM_FIELD)
            .arg(i.to_string())
            .query_async(c)
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

async fn xlen(c: &mut Redis) -> usize {
    redis::cmd("XLEN").arg(STREAM).query_async(c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_entries_are_trimmed_and_the_oldest_unacknowledged_one_is_kept() {
    let (_dir, _server, redis) = common::redis("trim").await;
    let mut c = redis.clone();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await
        .unwrap();
    add(&mut c, 1000, 0).await;

    let handled = Arc::new(AtomicUsize::new(0));
    let start = || {
        let mut cfg = ConsumerConfig::new(STREAM, "g", "c1", Mode::Sequential);
        cfg.block = Duration::from_millis(100);
        cfg.trim_acked_every = Some(Duration::ZERO);
        let consumer = StreamConsumer::new(cfg, redis.clone(), Shutdown::new());
        let stop = CancellationToken::new();
        let handled = handled.clone();
        let run = tokio::spawn(consumer.run(stop.clone(), move |_| {
            handled.fetch_add(1, Ordering::SeqCst);
            async { Outcome::Done }
        }));
        (stop, run)
    };
    let (stop, run) = start();

    // Everything read and acknowledged: all but the last node's worth (`~`) goes.
    let handled_all = |n: usize| {
        let handled = handled.clone();
        move || {
            let handled = handled.clone();
            async move { (handled.load(Ordering::SeqCst) >= n).then_some(()) }
        }
    };
    eventually(
        "1,000 entries handled",
        Duration::from_secs(30),
        handled_all(1000),
    )
    .await
    .unwrap();
    let trimmed = |most: usize| {
        let c = redis.clone();
        move || {
            let mut c = c.clone();
            async move { (xlen(&mut c).await <= most).then_some(()) }
        }
    };
    eventually(
        "acknowledged entries trimmed",
        Duration::from_secs(10),
        trimmed(200),
    )
    .await
    .unwrap();

    // Another consumer of the group takes one entry (while the reader is stopped, and claims
    // it, so that it holds it) unacknowledged; the reader handles the 1,000 behind
    // it. That entry and all after it stay.
    stop.cancel();
    run.await.unwrap();
    let held = add(&mut c, 1, 1000).await.remove(0);
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("c0")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(">")
        .query_async(&mut c)
        .await
        .unwrap();
    // The stopped reader's last blocking read may still be waiting in Redis and take the entry
    // first: claimed, it is c0's either way.
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(STREAM)
        .arg("g")
        .arg("c0")
        .arg(0)
        .arg(&held)
        .query_async(&mut c)
        .await
        .unwrap();
    add(&mut c, 1000, 1001).await;
    let (stop, run) = start();
    eventually(
        "2,000 entries handled",
        Duration::from_secs(30),
        handled_all(2000),
    )
    .await
    .unwrap();
    // Several trims have run since (one per read, every 100 ms at most).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(xlen(&mut c).await >= 1001, "{}", xlen(&mut c).await);
    let still: redis::Value = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg(&held)
        .arg(&held)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        matches!(&still, redis::Value::Array(v) if v.len() == 1),
        "the held entry was trimmed: {still:?}"
    );

    // Acknowledged, it and what the reader acknowledged after it go.
    let _: i64 = redis::cmd("XACK")
        .arg(STREAM)
        .arg("g")
        .arg(&held)
        .query_async(&mut c)
        .await
        .unwrap();
    eventually("the rest trimmed", Duration::from_secs(10), trimmed(200))
        .await
        .unwrap();
    stop.cancel();
    run.await.unwrap();
}

/// Calls of `command` Redis has answered (`INFO commandstats`).
async fn calls(c: &mut Redis, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(c)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_reader_sends_no_trims() {
    let (_dir, _server, redis) = common::redis("trim-idle").await;
    let mut c = redis.clone();
    add(&mut c, 300, 0).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let mut cfg = ConsumerConfig::new(STREAM, "g", "c1", Mode::Concurrent);
    cfg.block = Duration::from_millis(50);
    cfg.trim_acked_every = Some(Duration::ZERO);
    let consumer = StreamConsumer::new(cfg, redis.clone(), Shutdown::new());
    let stop = CancellationToken::new();
    let run = {
        let handled = handled.clone();
        tokio::spawn(consumer.run(stop.clone(), move |_| {
            handled.fetch_add(1, Ordering::SeqCst);
            async { Outcome::Done }
        }))
    };
    eventually(
        "the entries handled and trimmed",
        Duration::from_secs(30),
        || {
            let (handled, mut c) = (handled.clone(), c.clone());
            async move {
                (handled.load(Ordering::SeqCst) == 300 && xlen(&mut c).await <= 200).then_some(())
            }
        },
    )
    .await
    .unwrap();
    // Whatever trim was still due has run (reads return every 50 ms); from then on, nothing is
    // read and nothing is pending, so no read is followed by a trim.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = calls(&mut c, "xtrim").await;
    assert!(before > 0, "the reader never trimmed");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        calls(&mut c, "xtrim").await,
        before,
        "an idle reader trimmed"
    );

    // A new entry read and acknowledged is trimmed after again.
    add(&mut c, 1, 300).await;
    eventually("a trim after a new read", Duration::from_secs(10), || {
        let mut c = c.clone();
        async move { (calls(&mut c, "xtrim").await > before).then_some(()) }
    })
    .await
    .unwrap();
    stop.cancel();
    run.await.unwrap();
}
