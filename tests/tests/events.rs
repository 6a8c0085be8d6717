//! `GET /api/v1/events` on a real `berth up` (Redis, Docker, Caddy, git): a client following it
//! is told of app changes (`apps`, with the counter after the change) and of a deployment as it
//! moves on and ends (`deployment`: queued or building, then succeeded), seen from Redis by the
//! coordinator's watcher.

use std::time::Duration;

use berth_tests::{repo_root, unique, Cluster, GitRepo, Sse, TempDir};
use serde_json::{json, Value};

/// Reads events until one named `name` whose data satisfies `want` (its data), or fails after
/// `timeout` with what came.
async fn until_event(
    sse: &mut Sse,
    name: &str,
    timeout: Duration,
    want: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = match sse.next(left).await {
            Ok(Some(ev)) => ev,
            Ok(None) => anyhow::bail!("the stream ended; seen: {seen:?}"),
            Err(e) => anyhow::bail!("{e}; seen: {seen:?}"),
        };
        let data: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        seen.push(format!("{} {}", ev.event, ev.data));
        if ev.event == name && want(&data) {
            return Ok(data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_what_changes() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("events").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let mut sse = Sse::open(&c.api, "/api/v1/events", None).await.unwrap();

    // An app created is told as `apps`. The watcher's first read only sets where changes count
    // from, so the app changes until one is told.
    let app = unique("ev");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let mut told = None;
    for i in 0..10 {
        if let Ok(v) = until_event(&mut sse, "apps", Duration::from_secs(3), |_| true).await {
            told = Some(v);
            break;
        }
        let (s, b) = c
            .api
            .patch(&format!("/api/v1/apps/{app}"), json!({"drain_s": i + 1}))
            .await
            .unwrap();
        assert_eq!(s, 200, "{b}");
    }
    let told = told.expect("an `apps` event after the app's changes");
    assert!(told["version"].as_u64().unwrap() > 0, "{told}");

    // A deployment is told as it goes, and when it ends.
    let id = c.api.deploy(&app, None).await.unwrap();
    let first = until_event(&mut sse, "deployment", Duration::from_secs(60), |d| {
        d["id"] == id.as_str()
    })
    .await
    .unwrap();
    assert_eq!(first["app"], app.as_str(), "{first}");
    assert_eq!(first["kind"], "deploy", "{first}");
    // Not followed, it says where changes stand: the deployment in flight (until it ends).
    let (s, now) = c.api.get("/api/v1/events").await.unwrap();
    assert_eq!(s, 200, "{now}");
    assert!(now["version"].as_u64() >= told["version"].as_u64(), "{now}");
    let listed = now["active"].as_array().unwrap();
    let rec = c
        .api
        .get(&format!("/api/v1/deployments/{id}"))
        .await
        .unwrap()
        .1;
    if rec["finished_at"].is_null() {
        // (read after the list: still running then means it was in flight when listed)
        assert!(
            listed.iter().any(|d| d["id"] == id.as_str()),
            "{now} lists {id}"
        );
    }
    // (A deployment that ends between two of the watcher's reads is told once, ended.)
    let end = if first["status"] == "succeeded" {
        first.clone()
    } else {
        until_event(&mut sse, "deployment", Duration::from_secs(180), |d| {
            d["id"] == id.as_str() && d["status"] == "succeeded"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()))
    };
    assert_eq!(end["app"], app.as_str());

    // Deleting the app is an `apps` change too.
    let (s, b) = c.api.delete(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert!(s == 200 || s == 204, "{s} {b}");
    let after = until_event(&mut sse, "apps", Duration::from_secs(10), |v| {
        v["version"].as_u64() > told["version"].as_u64()
    })
    .await
    .unwrap();
    assert!(after["version"].as_u64() > told["version"].as_u64());
}
