//! Webhook latency while builds run: 100 signed push deliveries, each queueing (and superseding)
//! a deployment, sent one after another while another app's slow build keeps the node and the
//! Docker engine busy. Side by side, interleaved: the same number of `GET /healthz` requests to
//! the same server, as the baseline of what any answer costs at that moment.
//!
//! Run: `cargo build --release --bins && cargo bench -p berth-tests --bench webhook`
//! (`BENCH_DELIVERIES`, default 100).

use std::time::{Duration, Instant};

use berth_tests::github::{deliver_push, push_body, webhook_secret};
use berth_tests::{repo_root, unique, Cluster, GitRepo, TempDir};
use serde_json::json;

const SECRET: &str = "bench secret";

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut c = Cluster::up_with(&webhook_secret(SECRET)).await?;
    let src = TempDir::with_prefix("bench-hook").unwrap();

    // A slow build to run meanwhile (a CPU-bound RUN step).
    let slow = GitRepo::from_dir(
        &src.path().join("slow"),
        &repo_root().join("examples/hello"),
    )?;
    slow.write(
        "Dockerfile",
        "FROM busybox\nRUN i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done\nCOPY www /www\nCMD [\"httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"]\n",
    )?;
    let slow_sha = slow.commit("slow build")?;
    let slow_app = unique("slow");
    c.create_app(json!({"name": slow_app, "repo": slow.url(), "port": 8080}))
        .await?;

    let repo = GitRepo::from_dir(
        &src.path().join("hook"),
        &repo_root().join("examples/hello"),
    )?;
    let app = unique("hook");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await?;
    let head = repo.git(&["rev-parse", "HEAD"])?;
    let body = push_body(
        &repo,
        "refs/heads/main",
        "0000000000000000000000000000000000000000",
        &head,
        "bench",
    );

    let slow_id = c.api.deploy(&slow_app, Some(&slow_sha)).await?;
    let http = berth_tests::http_client().build().expect("an HTTP client");
    let (mut hook, mut base) = (Vec::new(), Vec::new());
    let mut during_build = 0;
    for i in 0..n {
        let t = Instant::now();
        let (s, v) = deliver_push(&c.api.base, SECRET, &unique("delivery"), &body).await?;
        hook.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            s == 202 && v["deployments"].as_array().map(Vec::len) == Some(1),
            "delivery {i}: {s} {v}"
        );
        let t = Instant::now();
        let r = http.get(format!("{}/healthz", c.api.base)).send().await?;
        base.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(r.status() == 200);
        let (_, d) = c.api.get(&format!("/api/v1/deployments/{slow_id}")).await?;
        if d["status"] == "building" {
            during_build += 1;
        }
    }
    let slow_end = c
        .api
        .wait_terminal(&slow_id, Duration::from_secs(600))
        .await?;
    println!(
        "{n} deliveries, {during_build} of them while the slow build was running (it ended {})",
        slow_end["status"]
    );
    println!("              p50 (ms)   p99 (ms)   max (ms)");
    let (h50, h99, hmax) = (
        pct(&mut hook, 0.5),
        pct(&mut hook, 0.99),
        pct(&mut hook, 1.0),
    );
    let (b50, b99, bmax) = (
        pct(&mut base, 0.5),
        pct(&mut base, 0.99),
        pct(&mut base, 1.0),
    );
    println!("webhook     {h50:>10.2} {h99:>10.2} {hmax:>10.2}");
    println!("/healthz    {b50:>10.2} {b99:>10.2} {bmax:>10.2}");
    println!(
        "ratio p99   {:>10.2}   (goal: webhook p99 < 1000 ms)",
        h99 / b99
    );
    Ok(())
}
