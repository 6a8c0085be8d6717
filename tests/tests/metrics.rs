//! Metrics through the real cluster: Prometheus text at `/metrics` (read with an outside parser),
//! an app's resource series, and the host figures in the node list.

use std::time::Duration;

use berth_tests::{eventually, repo_root, unique, Cluster, GitRepo, TempDir};
use prometheus_parse::{Scrape, Value};
use serde_json::{json, Value as Json};

const DEPLOY: Duration = Duration::from_secs(180);
/// Sample every second so the series fill quickly.
const FAST_STATS: (&str, &str) = ("BERTH_NODE__STATS_INTERVAL_S", "1");

/// `GET /metrics` with the cluster's token, parsed; fails on a line the parser could not read.
async fn scrape(c: &Cluster) -> Scrape {
    let (status, ctype, text) = c.api.metrics_text().await.unwrap();
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    // The parser skips what it cannot read: every sample line must have become a value.
    let data_lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    let parsed: usize = scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            Value::Histogram(b) => b.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(parsed, data_lines, "every line parses:\n{text}");
    scrape
}

/// The value of `metric` with exactly these labels (among others), if present.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a single value: {other:?}"),
        })
}

/// The sum of `metric` over every label set.
fn sum(s: &Scrape, metric: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

struct Counts {
    succeeded: f64,
    failed: f64,
    builds: f64,
    build_sum: f64,
    requests: f64,
}

fn counts(s: &Scrape) -> Counts {
    let outcome = |st| value(s, "berth_deployments_total", &[("status", st)]).unwrap();
    Counts {
        succeeded: outcome("succeeded"),
        failed: outcome("failed"),
        builds: value(s, "berth_build_duration_seconds_count", &[]).unwrap(),
        build_sum: value(s, "berth_build_duration_seconds_sum", &[]).unwrap(),
        requests: sum(s, "berth_api_request_duration_seconds_count"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_outcomes_builds_and_requests_across_a_restart() {
    let mut c = Cluster::separate_with(&[FAST_STATS]).await.unwrap();

    // The same token as the API.
    let r = c
        .api
        .http
        .get(format!("{}/metrics", c.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let before = scrape(&c).await;
    let b = counts(&before);
    assert_eq!(
        value(&before, "berth_node_up", &[("node", &c.node)]),
        Some(1.0)
    );
    for st in ["queued", "building", "deploying"] {
        assert!(
            value(&before, "berth_deployments", &[("status", st)]).is_some(),
            "{st}"
        );
    }

    let src = TempDir::with_prefix("prom-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("prom");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 0}))
        .await
        .unwrap();
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    // A build that fails.
    repo.write("Dockerfile", "FROM busybox\nRUN exit 9\n")
        .unwrap();
    repo.commit("broken").unwrap();
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "failed", "{d}");

    let after = scrape(&c).await;
    let a = counts(&after);
    assert_eq!(a.succeeded, b.succeeded + 1.0);
    assert_eq!(a.failed, b.failed + 1.0);
    // Both left `building`: one into `deploying`, one into `failed`.
    assert_eq!(a.builds, b.builds + 2.0);
    assert!(a.build_sum > b.build_sum);
    assert!(a.requests > b.requests, "{} > {}", a.requests, b.requests);
    assert!(value(&after, "berth_apps", &[]).unwrap() >= 1.0);
    assert_eq!(
        value(&after, "berth_node_up", &[("node", &c.node)]),
        Some(1.0)
    );
    assert!(value(&after, "berth_nodes", &[("status", "up")]).unwrap() >= 1.0);
    let depth = value(&after, "berth_job_queue_depth", &[("node", &c.node)]).unwrap();
    assert!(depth >= 0.0);
    // The histogram is consistent: +Inf holds every observation, buckets never decrease.
    let hist = after
        .samples
        .iter()
        .find(|s| s.metric == "berth_build_duration_seconds")
        .expect("build histogram");
    let Value::Histogram(buckets) = &hist.value else {
        panic!("{hist:?}")
    };
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert_eq!(inf.count, a.builds);
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));

    // The counters live in Redis: a new coordinator shows the same figures.
    c.restart_coordinator().await.unwrap();
    let again = counts(&scrape(&c).await);
    assert_eq!(again.succeeded, a.succeeded);
    assert_eq!(again.failed, a.failed);
    assert_eq!(again.builds, a.builds);
    assert_eq!(again.build_sum, a.build_sum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_series_and_host_figures() {
    let mut c = Cluster::up_with(&[FAST_STATS]).await.unwrap();
    let src = TempDir::with_prefix("series-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("series");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();

    // Input checks first (the app exists, the window is wrong).
    for bad in ["abc", "2h", "0s", "15"] {
        let (s, v) = c
            .api
            .get(&format!("/api/v1/apps/{app}/metrics?window={bad}"))
            .await
            .unwrap();
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("window"),
            "{bad}: {v}"
        );
    }
    let (s, v) = c.api.get("/api/v1/apps/no-such-app/metrics").await.unwrap();
    assert_eq!(s, 404, "{v}");
    // Before any deployment: an empty series, not an error.
    let (s, v) = c
        .api
        .get(&format!("/api/v1/apps/{app}/metrics"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["window_s"], 900);
    assert_eq!(v["replicas"], json!([]));

    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());

    let api = c.api.clone();
    let path = format!("/api/v1/apps/{app}/metrics?window=5m");
    let m: Json = eventually(
        "two samples of the app's container",
        Duration::from_secs(60),
        || async {
            let (s, v) = api.get(&path).await.ok()?;
            assert_eq!(s, 200, "{v}");
            let r = v["replicas"].as_array()?.first()?.clone();
            (r["samples"].as_array()?.len() >= 2).then_some(v)
        },
    )
    .await
    .unwrap();
    assert_eq!(m["app"], app.as_str());
    assert_eq!(m["window_s"], 300);
    let replicas = m["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 1, "{m}");
    let r = &replicas[0];
    assert_eq!(r["node"], c.node.as_str());
    assert_eq!(r["deployment"], id.as_str());
    // The container's name (`berth-<app>-<deployment>`), not its id.
    assert!(r["container"].as_str().unwrap().contains(&id), "{r}");
    let samples = r["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    assert!(last["mem_bytes"].as_u64().unwrap() > 0, "{last}");
    assert!(last["mem_limit_bytes"].as_u64().unwrap() >= last["mem_bytes"].as_u64().unwrap());
    assert!(last["cpu_pct"].as_f64().unwrap() >= 0.0);
    let ts: Vec<u64> = samples.iter().map(|s| s["ts"].as_u64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "oldest first: {ts:?}");
    let total = m["total"].as_array().unwrap();
    assert!(!total.is_empty(), "{m}");
    let t = total.last().unwrap();
    assert_eq!(t["replicas"], 1);
    assert!(t["mem_bytes"].as_u64().unwrap() > 0);

    // The CLI prints the latest figures, and the raw answer with --json.
    let out = c
        .berth()
        .args(["metrics", &app, "--window", "5m"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("total (1 replica(s))") && text.contains(&id),
        "{text}"
    );
    let out = c
        .berth()
        .args(["metrics", &app, "--json"])
        .output()
        .unwrap();
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["window_s"], 900);
    let out = c
        .berth()
        .args(["metrics", &app, "--window", "abc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // The node list shows the host's figures.
    let api = c.api.clone();
    let node = c.node.clone();
    let host: Json = eventually(
        "host figures in GET /nodes",
        Duration::from_secs(30),
        || async {
            let (_, v) = api.get("/api/v1/nodes").await.ok()?;
            let n = v.as_array()?.iter().find(|n| n["name"] == node.as_str())?;
            let h = n["host"].clone();
            (h["containers"].as_u64()? >= 1).then_some(h)
        },
    )
    .await
    .unwrap();
    let total_mem = host["mem_total_bytes"].as_u64().unwrap();
    assert!(total_mem > 0, "{host}");
    assert!(host["mem_available_bytes"].as_u64().unwrap() <= total_mem);
    let disk = host["disk_total_bytes"].as_u64().unwrap();
    assert!(disk > 0, "{host}");
    assert!(host["disk_available_bytes"].as_u64().unwrap() <= disk);
    let cpu = host["cpu_pct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{host}");
}
