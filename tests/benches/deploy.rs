//! Deploy overhead: Berth's deploy of a commit against the same steps done by hand, side by side.
//!
//! For each round, a new commit of examples/hello (so no build cache hides the work) is
//! - deployed by Berth: wall time from `POST /api/v1/apps/{app}/deployments` until Caddy answers
//!   with the new version;
//! - deployed by hand: `git clone` + `docker build` + `docker run -p` + the first 200 from the
//!   container's published port (polled every 5 ms, as the node does).
//!
//! The two alternate which goes first from round to round, so drift on the machine (the Docker
//! engine's classic builder has ~1 s steps whose length varies) falls on both alike.
//!
//! Run: `cargo build --release --bins && cargo bench -p berth-tests --bench deploy`
//! (`BENCH_ROUNDS`, default 11). Prints one line per round, the medians and the means.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{hello_page, ingress_get, repo_root, sh, unique, Cluster, GitRepo, TempDir};
use serde_json::json;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn by_hand(
    repo: &GitRepo,
    work: &std::path::Path,
    tag: &str,
    needle: &str,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let dir = work.join(tag.replace([':', '/'], "-"));
    sh(Command::new("git")
        .args(["clone", "-q", "--depth", "1", "-b", "main"])
        .arg(format!("file://{}", repo.url()))
        .arg(&dir))?;
    sh(Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(&dir))?;
    let id = sh(Command::new("docker").args(["run", "-d", "-p", "127.0.0.1::8080", tag]))?;
    let port = sh(Command::new("docker").args(["port", &id, "8080/tcp"]))?;
    let url = format!("http://{}/", port.lines().next().unwrap_or_default());
    let http = berth_tests::http_client()
        .timeout(Duration::from_secs(2))
        .build()?;
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() && r.text().await?.contains(needle) {
                break;
            }
        }
        if t.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("hand deploy never answered");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    Ok(secs)
}

async fn by_berth(c: &Cluster, app: &str, needle: &str) -> anyhow::Result<f64> {
    let host = format!("{app}.localhost");
    let t = Instant::now();
    let id = c.api.deploy(app, None).await?;
    loop {
        if let Ok((200, body)) = ingress_get(c.ingress, &host).await {
            if body.contains(needle) {
                break;
            }
        }
        if t.elapsed() > Duration::from_secs(120) {
            anyhow::bail!(
                "berth deploy {id} never answered:\n{}",
                c.api.log(&id).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let d = c.api.wait_terminal(&id, Duration::from_secs(60)).await?;
    anyhow::ensure!(d["status"] == "succeeded", "{d}");
    Ok(secs)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let mut c = Cluster::up().await?;
    let src = TempDir::with_prefix("bench-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    let app = unique("bench");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await?;
    // Warm-up: the first deploy also creates the route.
    c.api
        .deploy_and_wait(&app, None, Duration::from_secs(120))
        .await?;

    let (mut hand, mut berth) = (Vec::new(), Vec::new());
    println!("round  by-hand(s)  berth(s)  overhead(s)  ratio");
    for round in 0..rounds {
        let (mut h, mut b) = (0.0, 0.0);
        for turn in 0..2 {
            let hand_turn = (round + turn) % 2 == 0;
            let v = format!(
                "{}-{round}-{}",
                if hand_turn { "hand" } else { "berth" },
                unique("v")
            );
            repo.write("www/index.html", &hello_page(&v))?;
            repo.commit(&v)?;
            if hand_turn {
                h = by_hand(&repo, src.path(), &format!("berth-bench-hand:{round}"), &v).await?;
            } else {
                b = by_berth(&c, &app, &v).await?;
            }
        }
        println!(
            "{round:>5}  {h:>10.3}  {b:>8.3}  {:>11.3}  {:>5.3}",
            b - h,
            b / h
        );
        hand.push(h);
        berth.push(b);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (hm, bm) = (mean(&hand), mean(&berth));
    let (h, b) = (median(&mut hand), median(&mut berth));
    println!(
        "median {h:>10.3}  {b:>8.3}  {:>11.3}  {:>5.3}   (goal: overhead <= max(0.3 s, 10 %))",
        b - h,
        b / h
    );
    println!(
        "mean   {hm:>10.3}  {bm:>8.3}  {:>11.3}  {:>5.3}",
        bm - hm,
        bm / hm
    );
    Ok(())
}
