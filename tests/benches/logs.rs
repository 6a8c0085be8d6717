//! Log latency: how long a line an app prints takes to reach an SSE client of the API.
//!
//! An app prints a numbered line every 5 ms, forever. Docker stamps each line when it reads it
//! from the container (its `--timestamps` stamp, which Berth keeps as the line's `ts`). Two
//! readers run side by side over the same lines:
//! - Berth: `GET /api/v1/apps/{app}/logs?follow=1` (node follows Docker → Redis stream → the
//!   coordinator's `XREAD BLOCK` → SSE); latency = arrival − `ts`.
//! - Baseline: `docker logs -f --timestamps` on the same container, read by this process;
//!   latency = arrival − Docker's stamp. It is the floor: Docker's own delivery of the line.
//!
//! Reported: p50, p99 and max over `BENCH_LINES` lines (default 2,000) for both, and the ratio;
//! the same again while another app's CPU-bound build keeps both cores busy on the node; then
//! Berth alone for `BENCH_FOLLOWERS` (default 50) SSE followers of the app at once, each taking
//! half as many lines.
//!
//! Run: `cargo build --release --bins && cargo bench -p berth-tests --bench logs`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_protocol::{now_ms, LogEntry};
use berth_tests::{
    eventually, repo_root, running_containers, unique, Cluster, GitRepo, Sse, TempDir,
};
use serde_json::json;

fn env_or(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    let (p50, p99, max) = (pct(&v, 0.5), pct(&v, 0.99), *v.last().unwrap());
    println!(
        "{name:<34} lines {:>5}  p50 {p50:>4} ms  p99 {p99:>4} ms  max {max:>4} ms",
        v.len()
    );
    (p50, p99)
}

const PRINTER: &str = "FROM busybox\n\
    COPY www /www\n\
    CMD [\"sh\", \"-c\", \"i=0; while true; do echo line $i; i=$((i+1)); usleep 5000; done & exec httpd -f -p 8080 -h /www\"]\n";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let lines = env_or("BENCH_LINES", 2000);
    let mut c = Cluster::up().await?;
    let src = TempDir::with_prefix("bench-logs").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    repo.write("Dockerfile", PRINTER)?;
    repo.commit("printer")?;
    let app = unique("loglat");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await?;
    c.apps.push(app.clone());
    let (_, d) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(180))
        .await?;
    anyhow::ensure!(d["status"] == "succeeded", "deploy failed: {d}");
    let container = running_containers(&app, &c.node)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no container"))?;

    let (berth, base) = measure(&c, &app, &container, lines).await?;
    println!("log latency, a line every 5 ms, {lines} lines (2 cores, release build)");
    compare(berth, base);

    // The same while another app's CPU-bound build keeps both cores busy on the same node.
    let slow_src = TempDir::with_prefix("bench-logs-slow").unwrap();
    let slow = GitRepo::from_dir(slow_src.path(), &repo_root().join("examples/hello"))?;
    slow.write("Dockerfile", SLOW_BUILD)?;
    slow.commit("slow build")?;
    let slow_app = unique("slow");
    c.create_app(json!({"name": slow_app, "repo": slow.url(), "port": 8080}))
        .await?;
    c.apps.push(slow_app.clone());
    let slow_id = c.api.deploy(&slow_app, None).await?;
    // Wait until the build's RUN step is burning CPU.
    eventually(
        "the slow build's RUN step",
        Duration::from_secs(60),
        || async {
            let log = c.api.log(&slow_id).await.ok()?;
            log.contains("Step 2/").then_some(())
        },
    )
    .await?;
    let (berth, base) = measure(&c, &app, &container, lines).await?;
    let (_, d) = c.api.get(&format!("/api/v1/deployments/{slow_id}")).await?;
    let after = d["status"].as_str().unwrap_or_default().to_string();
    println!(
        "the same while another app's CPU-bound build runs on the node (still {after} at the end)"
    );
    compare(berth, base);
    anyhow::ensure!(
        after == "building",
        "the slow build ended before the measurement did"
    );
    let _ = c
        .api
        .post(&format!("/api/v1/deployments/{slow_id}/cancel"), json!({}))
        .await;
    c.api
        .wait_terminal(&slow_id, Duration::from_secs(60))
        .await?;

    // Many followers of the same app at once (each holds its own Redis connection).
    let followers = env_or("BENCH_FOLLOWERS", 50);
    let each = (lines / 2).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..followers {
        let api = c.api.clone();
        let app = app.clone();
        tasks.spawn(async move { follow_lines_api(&api, &app, each).await });
    }
    let mut all = Vec::with_capacity(followers * each);
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    report(&format!("berth SSE, {followers} followers at once"), all);
    Ok(())
}

/// Two CPU-bound loops in one RUN step: both cores busy for about a minute.
const SLOW_BUILD: &str = "FROM busybox\n\
    RUN burn() { i=0; while [ $i -lt 30000000 ]; do i=$((i+1)); done; }; burn & burn; wait\n\
    COPY www /www\n\
    CMD [\"httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"]\n";

/// Latencies of the next `lines` lines of `container`, read by Berth's SSE follow of `app` and by
/// `docker logs -f` side by side: (berth, baseline).
async fn measure(
    c: &Cluster,
    app: &str,
    container: &str,
    lines: usize,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    // Baseline reader: docker logs -f on its own thread.
    let mut docker = Command::new("docker")
        .args(["logs", "-f", "--timestamps", "--since", "0s", container])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = docker.stdout.take().unwrap();
    let baseline = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(lines);
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            let arrival = now_ms();
            let Some((stamp, _)) = l.split_once(' ') else {
                continue;
            };
            if let Ok(t) = humantime::parse_rfc3339(stamp) {
                let ts = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
                lat.push(arrival.saturating_sub(ts));
            }
            if lat.len() >= lines {
                break;
            }
        }
        lat
    });
    // Berth reader: SSE follow from now on.
    let berth = follow_lines(c, app, lines).await;
    let base = baseline.join().expect("baseline thread");
    let _ = docker.kill();
    let _ = docker.wait();
    Ok((berth?, base))
}

fn compare(berth: Vec<u64>, base: Vec<u64>) {
    let (b50, b99) = report("berth SSE (app logs follow)", berth);
    let (d50, d99) = report("baseline docker logs -f", base);
    println!(
        "ratio berth/baseline: p50 {:.2}  p99 {:.2}",
        b50 as f64 / d50.max(1) as f64,
        b99 as f64 / d99.max(1) as f64
    );
}

/// Latencies of the next `n` lines an SSE follower of `app` receives.
async fn follow_lines(c: &Cluster, app: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    follow_lines_api(&c.api, app, n).await
}

async fn follow_lines_api(api: &berth_tests::Api, app: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    let mut sse = Sse::open(
        api,
        &format!("/api/v1/apps/{app}/logs?follow=1&tail=1"),
        None,
    )
    .await?;
    let mut out = Vec::with_capacity(n);
    let mut first = true;
    while out.len() < n {
        let ev = sse
            .next(Duration::from_secs(30))
            .await?
            .ok_or_else(|| anyhow::anyhow!("stream closed"))?;
        let arrival = now_ms();
        let Some(e) = ev.json::<LogEntry>() else {
            continue;
        };
        if first {
            // The tail line was printed before we connected.
            first = false;
            continue;
        }
        out.push(arrival.saturating_sub(e.line.ts));
    }
    Ok(out)
}
