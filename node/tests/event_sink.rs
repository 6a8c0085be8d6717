//! The node's events against a real Redis that goes away: an event is never given up while the
//! node lives, and an outcome survives a node restart in the outbox.

use std::time::Duration;

use berth_node::event_sink::EventSink;
use berth_protocol::{envelope, keys, DeploymentStatus, DeploymentUpdate, Event, EVENT_KIND};
use berth_tests::{eventually, free_port, start_redis, TempDir};
use tokio_util::sync::CancellationToken;

/// The deployment events on `berth:events`, in order.
async fn events(url: &str) -> Vec<DeploymentUpdate> {
    let Ok(client) = redis::Client::open(url) else {
        return Vec::new();
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    let reply: redis::streams::StreamRangeReply = match redis::cmd("XRANGE")
        .arg(keys::EVENTS)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
    {
        Ok(r) => r,
        Err(_) => return Vec::new(),
    };
    reply
        .ids
        .iter()
        .filter_map(|e| e.get::<Vec<u8>>(envelope::STREAM_FIELD))
        .filter_map(|b| match envelope::decode::<Event>(&b, EVENT_KIND).ok()? {
            Event::Deployment(u) => Some(u),
            Event::AppRemoved { .. } => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_written_while_redis_is_away_arrives_when_it_is_back() {
    let dir = TempDir::with_prefix("sink").unwrap();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let mut redis = start_redis(dir.path(), port, &["--appendonly", "yes"])
        .await
        .unwrap();
    let conn = berth_bus::Redis::connect(&url, "node").await.unwrap();
    let sink = EventSink::new(
        conn,
        "n1",
        dir.path().join("outbox"),
        CancellationToken::new(),
    )
    .unwrap();

    redis.stop();
    let sending = tokio::spawn({
        let sink = sink.clone();
        async move {
            sink.deployment(DeploymentUpdate {
                image: Some("berth/a:d1".into()),
                ..DeploymentUpdate::new("d1", DeploymentStatus::Succeeded)
            })
            .await
        }
    });
    // Away for longer than any fixed number of quick retries would cover.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!sending.is_finished(), "the event was given up");
    let _redis = start_redis(dir.path(), port, &["--appendonly", "yes"])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), sending)
        .await
        .expect("the event went out once Redis was back")
        .unwrap();
    let got = events(&url).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].status, DeploymentStatus::Succeeded);
    assert_eq!(got[0].node.as_deref(), Some("n1"));
    assert_eq!(got[0].image.as_deref(), Some("berth/a:d1"));
    // Delivered: nothing is left to re-send.
    assert_eq!(sink.resend_outbox().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_not_delivered_before_a_restart_is_sent_at_the_next_start() {
    let dir = TempDir::with_prefix("outbox").unwrap();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let mut redis = start_redis(dir.path(), port, &["--appendonly", "yes"])
        .await
        .unwrap();
    let outbox = dir.path().join("outbox");

    // The first run reports a failure while Redis is away, then shuts down.
    let stop = CancellationToken::new();
    let first = EventSink::new(
        berth_bus::Redis::connect(&url, "node").await.unwrap(),
        "n1",
        outbox.clone(),
        stop.clone(),
    )
    .unwrap();
    redis.stop();
    let sending = tokio::spawn(async move {
        first
            .deployment(DeploymentUpdate::ended(
                "d2",
                DeploymentStatus::Failed,
                "health check failed",
            ))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), sending)
        .await
        .expect("shutdown ends the retries")
        .unwrap();
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);

    // The next run, with Redis back, sends it before anything else.
    let _redis = start_redis(dir.path(), port, &["--appendonly", "yes"])
        .await
        .unwrap();
    let second = EventSink::new(
        berth_bus::Redis::connect(&url, "node").await.unwrap(),
        "n1",
        outbox.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(second.resend_outbox().await, 1);
    let got = eventually("the re-sent outcome", Duration::from_secs(10), || async {
        let got = events(&url).await;
        (!got.is_empty()).then_some(got)
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].deployment_id, "d2");
    assert_eq!(got[0].error.as_deref(), Some("health check failed"));
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 0);
}
