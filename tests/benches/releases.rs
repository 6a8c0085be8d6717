//! Releases under load: failed requests during deploy / rollback / failing deploy, and rollback
//! latency.
//!
//! 1. A constant load through Caddy (4 kept-alive clients, back to back) while the app is deployed
//!    to v2, rolled back to v1, and deployed to a v3 that fails its health check, and until at
//!    least `BENCH_REQUESTS` (default 10,000) requests were sent. Reported: answers, failures
//!    (non-2xx or connection errors after the standard retry), and how many requests needed
//!    that retry (a kept-alive connection Caddy closed before answering).
//! 2. `BENCH_ROLLBACKS` (default 12) rollbacks, alternating between two releases: wall time from
//!    `POST /rollback` until Caddy serves the other version (polled every 5 ms); median and max.
//!    Side by side, the baseline of the same switch done by hand: `docker start` of the stopped
//!    container + first 200 from it.
//!
//! Run: `cargo build --release --bins && cargo bench -p berth-tests --bench releases`

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{
    hello_page, ingress_get, repo_root, sh, unique, Cluster, GitRepo, Load, TempDir,
};
use serde_json::json;

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

async fn deploy(
    c: &Cluster,
    app: &str,
    repo: &GitRepo,
    v: &str,
) -> anyhow::Result<serde_json::Value> {
    repo.write("www/index.html", &hello_page(v))?;
    repo.commit(v)?;
    let (_, d) = c
        .api
        .deploy_and_wait(app, None, Duration::from_secs(180))
        .await?;
    Ok(d)
}

async fn until_serves(c: &Cluster, host: &str, v: &str, t: Instant) -> anyhow::Result<f64> {
    let needle = format!("<span id=\"version\">{v}</span>");
    loop {
        if let Ok((200, b)) = ingress_get(c.ingress, host).await {
            if b.contains(&needle) {
                return Ok(t.elapsed().as_secs_f64());
            }
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "{host} never served {v}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let requests = env_or("BENCH_REQUESTS", 10_000);
    let rollbacks = env_or("BENCH_ROLLBACKS", 12) as usize;
    let mut c = Cluster::up().await?;
    let src = TempDir::with_prefix("bench-rel").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    let app = unique("rel");
    let host = format!("{app}.localhost");
    c.create_app(
        json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 2,
        "health_check": {"interval_ms": 100, "deadline_s": 20}}),
    )
    .await?;
    anyhow::ensure!(deploy(&c, &app, &repo, "v1").await?["status"] == "succeeded");
    until_serves(&c, &host, "v1", Instant::now()).await?;

    // 1. Load across deploy, rollback and a failing deploy.
    let started = Instant::now();
    let load = Load::start(c.ingress, &host, 4, Duration::ZERO);
    anyhow::ensure!(deploy(&c, &app, &repo, "v2").await?["status"] == "succeeded");
    until_serves(&c, &host, "v2", Instant::now()).await?;
    let (s, v) = c
        .api
        .post(&format!("/api/v1/apps/{app}/rollback"), json!({}))
        .await?;
    anyhow::ensure!(s == 202, "{v}");
    let d = c
        .api
        .wait_terminal(
            v["id"].as_str().unwrap_or_default(),
            Duration::from_secs(60),
        )
        .await?;
    anyhow::ensure!(d["status"] == "succeeded", "{d}");
    c.api
        .patch(
            &format!("/api/v1/apps/{app}"),
            json!({"health_check": {"path": "/missing", "deadline_s": 3}}),
        )
        .await?;
    anyhow::ensure!(deploy(&c, &app, &repo, "v3").await?["status"] == "failed");
    c.api
        .patch(
            &format!("/api/v1/apps/{app}"),
            json!({"health_check": {"path": "/", "deadline_s": 20}}),
        )
        .await?;
    // Keep the load on until the drained releases stopped and enough requests went out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    while load.sent() < requests && started.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = load.finish().await;
    println!("load over {:.1} s: {} answered 2xx, {} failed, {} needed the standard retry on a closed kept-alive connection; versions seen: {:?}",
        started.elapsed().as_secs_f64(), n.ok, n.failed, n.retried, n.versions);
    if n.ok + n.failed < requests {
        println!("(fewer than {requests} requests: raise the duration)");
    }

    // 2. Rollback latency, alternating between the two newest releases (v1 serves now).
    let mut current = "v1".to_string();
    let mut lat = Vec::new();
    for _ in 0..rollbacks {
        let target = if current == "v1" { "v2" } else { "v1" };
        let t = Instant::now();
        let (s, v) = c
            .api
            .post(&format!("/api/v1/apps/{app}/rollback"), json!({}))
            .await?;
        anyhow::ensure!(s == 202, "{v}");
        lat.push(until_serves(&c, &host, target, t).await?);
        c.api
            .wait_terminal(
                v["id"].as_str().unwrap_or_default(),
                Duration::from_secs(60),
            )
            .await?;
        current = target.to_string();
        // Let the previous release stop (it is kept stopped; the next rollback starts it).
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }
    // Baseline: the same switch by hand — start a stopped container of the app and get a 200.
    let stopped = sh(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        &format!("label=berth.app={app}"),
        "--filter",
        "status=exited",
    ]))?;
    let mut base = Vec::new();
    if let Some(id) = stopped.lines().next() {
        for _ in 0..rollbacks {
            let t = Instant::now();
            sh(Command::new("docker").args(["start", id]))?;
            let port = sh(Command::new("docker").args(["port", id, "8080/tcp"]))?;
            let url = format!("http://{}/", port.lines().next().unwrap_or_default());
            let http = berth_tests::http_client().build().expect("an HTTP client");
            loop {
                if let Ok(r) = http.get(&url).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                anyhow::ensure!(t.elapsed() < Duration::from_secs(30));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            base.push(t.elapsed().as_secs_f64());
            sh(Command::new("docker").args(["stop", "-t", "1", id]))?;
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (m, x) = stats(&mut lat);
    println!("rollback, API call → Caddy serves the old version ({rollbacks}): median {m:.3} s, max {x:.3} s (goal: median < 1 s)");
    if !base.is_empty() {
        let (bm, bx) = stats(&mut base);
        println!("by hand, docker start + first 200 ({rollbacks}): median {bm:.3} s, max {bx:.3} s; ratio of medians {:.2}", m / bm);
    }
    Ok(())
}
