//! `Mode::Keyed` on a real Redis: the entries of one key are handled in stream order, and a
//! failing one holds back the rest of its key only; different keys are handled at once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_bus::{ConsumerConfig, Delivery, Mode, Outcome, Shutdown, StreamConsumer};
use berth_protocol::envelope::STREAM_FIELD;
use berth_tests::eventually;
use tokio_util::sync::CancellationToken;

const STREAM: &str = "test:keyed";

/// An entry's payload is `<key>:<n>`; its key is the part before the colon.
fn key_of(d: &Delivery) -> Option<String> {
    let p = String::from_utf8(d.payload.clone()?).ok()?;
    Some(p.split(':').next()?.to_string())
}

fn payload(d: &Delivery) -> String {
    String::from_utf8(d.payload.clone().unwrap_or_default()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_run_at_once_each_in_order_and_a_failure_holds_back_only_its_key() {
    let (_dir, _server, redis) = common::redis("keyed").await;
    let mut c = redis.clone();
    // Three keys; b:1 fails the first time it is handled.
    let entries = ["a:1", "b:1", "c:1", "a:2", "b:2", "c:2", "a:3", "b:3"];
    for e in entries {
        let _: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg(STREAM_FIELD)
            .arg(e)
            .query_async(&mut c)
            .await
            .unwrap();
    }

    let handled: Arc<Mutex<Vec<String>>> = Arc::default();
    // Every key's first entry waits until all three keys' first entries are in their handlers:
    // handled one after another, they never would be (the test times out).
    let together = Arc::new(tokio::sync::Barrier::new(3));
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut cfg = ConsumerConfig::new(STREAM, "g", "c1", Mode::Keyed(key_of));
    cfg.block = Duration::from_millis(100);
    let shutdown = Shutdown::new();
    let consumer = StreamConsumer::new(cfg, redis.clone(), shutdown.clone());
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let (handled, together, failed_once) =
            (handled.clone(), together.clone(), failed_once.clone());
        let stop = stop.clone();
        consumer.run(stop, move |d| {
            let (handled, together, failed_once) =
                (handled.clone(), together.clone(), failed_once.clone());
            async move {
                let p = payload(&d);
                if p.ends_with(":1") && !d.recovered && d.deliveries == 1 {
                    together.wait().await;
                }
                if p == "b:1" && !failed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    handled.lock().unwrap().push("b:1 failed".into());
                    return Outcome::Retry("the first time".into());
                }
                handled.lock().unwrap().push(p);
                Outcome::Done
            }
        })
    });

    let done = eventually("every entry handled", Duration::from_secs(30), || {
        let handled = handled.clone();
        async move {
            let h = handled.lock().unwrap().clone();
            (h.iter().filter(|p| !p.ends_with("failed")).count() == entries.len()).then_some(h)
        }
    })
    .await
    .unwrap();
    stop.cancel();
    run.await.unwrap();

    let of = |key: &str| -> Vec<&str> {
        done.iter()
            .map(String::as_str)
            .filter(|p| p.starts_with(key))
            .collect()
    };
    assert_eq!(of("a:"), ["a:1", "a:2", "a:3"], "{done:?}");
    assert_eq!(of("c:"), ["c:1", "c:2"], "{done:?}");
    // b's entries waited for b:1 to be handled again; nothing of b was handled out of order.
    assert_eq!(of("b:"), ["b:1 failed", "b:1", "b:2", "b:3"], "{done:?}");
    // a and c did not wait for b's retry (it comes after a backoff).
    let pos = |p: &str| done.iter().position(|x| x == p).unwrap();
    assert!(
        pos("a:3") < pos("b:1") && pos("c:2") < pos("b:1"),
        "{done:?}"
    );
    // Everything is acknowledged.
    // XPENDING's summary: the count first.
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(STREAM)
        .arg("g")
        .query_async(&mut c)
        .await
        .unwrap();
    let count = match &pending {
        redis::Value::Array(v) => v.first().cloned(),
        _ => None,
    };
    assert_eq!(count, Some(redis::Value::Int(0)), "{pending:?}");
}
