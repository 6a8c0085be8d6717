//! Listing latency with many records: `GET /api/v1/apps` with 10,000 apps and
//! `GET /api/v1/apps/{name}/deployments` (the newest 100) of an app with 1,000 deployments,
//! each request timed from the client. Side by side, interleaved: `GET /healthz` on the same
//! server, the cost of any answer at that moment. The records are written straight into Redis as
//! the coordinator stores them. `GET /apps` is measured three times: while the app list does not
//! change (the coordinator's list is cached against `berth:apps:version`); with one app changed
//! through the API before every request (the cache is patched with the changed record); and
//! cold, with the change log's floor raised before every request, so every record is read and
//! decoded (what a coordinator's first list costs).
//!
//! Run: `cargo build --release --bins && cargo bench -p berth-tests --bench listing`
//! (`BENCH_APPS`, default 10,000; `BENCH_DEPLOYMENTS`, default 1,000; `BENCH_REQUESTS`, default
//! 200 of each).

use std::time::Instant;

use berth_protocol::App;
use berth_tests::{unique, Cluster, GitRepo, TempDir};
use serde_json::json;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// What happens, untimed, before each timed request.
#[derive(Clone, Copy, PartialEq)]
enum Before<'a> {
    Nothing,
    /// `PATCH /apps/{name}` of this app (its port toggles).
    Change(&'a str),
    /// The change log's floor raised past the version: the next list reads every record.
    Cold,
}

/// Times `n` GETs of `path` interleaved with `n` of `/healthz`; prints a row for each.
async fn measure(
    c: &Cluster,
    label: &str,
    path: &str,
    expect: usize,
    n: usize,
    before: Before<'_>,
) -> anyhow::Result<()> {
    let http = berth_tests::http_client().build().expect("an HTTP client");
    let (mut list, mut base) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        match before {
            Before::Nothing => {}
            Before::Change(app) => {
                let port = 8080 + (i % 2);
                let path = format!("/api/v1/apps/{app}");
                let (s, v) = c.api.patch(&path, json!({ "port": port })).await?;
                anyhow::ensure!(s == 200, "{v}");
            }
            Before::Cold => {
                use berth_protocol::keys::{APPS_CHANGES_FLOOR, APPS_VERSION};
                c.redis_cli(&["INCR", APPS_VERSION])?;
                c.redis_cli(&["SET", APPS_CHANGES_FLOOR, "1000000000"])?;
            }
        }
        let t = Instant::now();
        let r = http
            .get(format!("{}{path}", c.api.base))
            .bearer_auth(&c.api.token)
            .send()
            .await?;
        let body = r.bytes().await?;
        list.push(t.elapsed().as_secs_f64() * 1000.0);
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        anyhow::ensure!(v.as_array().map(Vec::len) == Some(expect), "{path}: {v}");
        let t = Instant::now();
        let r = http.get(format!("{}/healthz", c.api.base)).send().await?;
        r.bytes().await?;
        base.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (l50, l99, lmax) = (
        pct(&mut list, 0.5),
        pct(&mut list, 0.99),
        pct(&mut list, 1.0),
    );
    let (b50, b99) = (pct(&mut base, 0.5), pct(&mut base, 0.99));
    println!("{label:<34} {l50:>9.2} {l99:>9.2} {lmax:>9.2}   /healthz {b50:>6.2} {b99:>6.2}");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let (apps, deployments, n) = (
        env("BENCH_APPS", 10_000),
        env("BENCH_DEPLOYMENTS", 1_000),
        env("BENCH_REQUESTS", 200),
    );
    let mut c = Cluster::up().await?;
    let app = unique("list");
    // Never deployed, but its repository must be reachable to be created.
    let src = TempDir::with_prefix("list-src")?;
    let repo = GitRepo::init(src.path())?;
    repo.commit("empty")?;
    let created = c
        .create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await?;
    let template: App = serde_json::from_value(created)?;
    let t = Instant::now();
    c.seed_apps(&template, &app, apps - 1)?;
    c.seed_deployments(&app, deployments)?;
    println!(
        "seeded {apps} apps and {deployments} deployments in {:.1} s; {n} requests each",
        t.elapsed().as_secs_f64()
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9}   baseline p50, p99 (ms)",
        "", "p50 (ms)", "p99 (ms)", "max (ms)"
    );
    let all = format!("GET /apps ({apps} apps)");
    measure(&c, &all, "/api/v1/apps", apps, n, Before::Nothing).await?;
    let changed = "  … each after an app change";
    measure(&c, changed, "/api/v1/apps", apps, n, Before::Change(&app)).await?;
    let cold = "  … cold (every record read)";
    measure(&c, cold, "/api/v1/apps", apps, n, Before::Cold).await?;
    let deps = format!("GET /apps/{{name}}/deployments ({deployments})");
    let path = format!("/api/v1/apps/{app}/deployments");
    measure(&c, &deps, &path, 100, n, Before::Nothing).await?;
    println!("goal: p99 under 50 ms at 10,000 apps");
    Ok(())
}
