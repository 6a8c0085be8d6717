//! The fleet on one machine (three nodes, each with its own Docker engine and Caddy, a registry):
//!
//! 1. **Rollback and route propagation.** `BENCH_ROLLBACKS` (default 10) rollbacks between two
//!    releases of a one-replica app: wall time from `POST /rollback` until each node's Caddy
//!    serves the other version (polled every 5 ms, all nodes at once) — the node that runs the
//!    app, and the others, which learn the route from Redis. Side by side, the same rollbacks on
//!    a one-node `berth up`.
//! 2. **Failover.** A constant load (4 kept-alive clients) through a surviving node's Caddy while
//!    the app's node is killed (its berth process and its engine, like a power cut): time from the
//!    kill until the dead node's upstream is out of the route, and until the app answers again
//!    from another node; failed requests before and after the upstream left the route.
//!
//! 3. **Replicas.** The same rollbacks for an app of 3 replicas on the 3 engines (every replica
//!    of the release started again and switched together), and for one with `standby_s` (the
//!    release's replicas still running out of the route: a route change only), timed at the
//!    first node's Caddy.
//!
//! Run: `cargo build --release --bins && cargo bench -p berth-tests --bench fleet`

use std::time::{Duration, Instant};

use berth_tests::{
    hello_page, ingress_get, repo_root, unique, Cluster, Fleet, GitRepo, Load, Registry, TempDir,
};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);

fn env_or(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn deploy_version(api: &berth_tests::Api, app: &str, repo: &GitRepo, v: &str) -> Value {
    repo.write("www/index.html", &hello_page(v)).unwrap();
    repo.commit(v).unwrap();
    let (_, d) = api.deploy_and_wait(app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    d
}

/// Polls `port`'s Caddy every 5 ms until `host` shows `version`; the time since `t`.
async fn until_serves(port: u16, host: &str, version: &str, t: Instant) -> f64 {
    let marker = format!("<span id=\"version\">{version}<");
    loop {
        if let Ok((200, body)) = ingress_get(port, host).await {
            if body.contains(&marker) {
                return t.elapsed().as_secs_f64();
            }
        }
        if t.elapsed() > Duration::from_secs(30) {
            panic!("{host} never served {version} on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `n` rollbacks between v1 and v2 of `app`, timed at each ingress port of `ports`; returns the
/// times per port.
async fn rollbacks(api: &berth_tests::Api, app: &str, ports: &[u16], n: usize) -> Vec<Vec<f64>> {
    let host = format!("{app}.localhost");
    let mut times = vec![Vec::new(); ports.len()];
    let mut serving = "v2";
    for _ in 0..n {
        let want = if serving == "v2" { "v1" } else { "v2" };
        let t = Instant::now();
        let (s, v) = api
            .post(&format!("/api/v1/apps/{app}/rollback"), json!({}))
            .await
            .unwrap();
        assert_eq!(s, 202, "{v}");
        let waits = ports.iter().map(|p| until_serves(*p, &host, want, t));
        for (i, secs) in futures_util::future::join_all(waits)
            .await
            .into_iter()
            .enumerate()
        {
            times[i].push(secs);
        }
        let id = v["id"].as_str().unwrap();
        api.wait_terminal(id, DEPLOY).await.unwrap();
        serving = want;
        // Let the drained release stop (a rollback starts its stopped container again).
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    times
}

/// One more rollback of an app with a standby, split: when the API answered, when the
/// coordinator had written the route (the log line's stamp), when the first Caddy served it.
async fn standby_split(f: &Fleet, app: &str) -> anyhow::Result<String> {
    let host = format!("{app}.localhost");
    let (_, list) = f
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await?;
    let serving = list[0]["commit_message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let want = if serving == "v2" { "v1" } else { "v2" };
    let epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let (t0, t) = (epoch(), Instant::now());
    let (_, v) = f
        .api
        .post(&format!("/api/v1/apps/{app}/rollback"), json!({}))
        .await?;
    let answered = t.elapsed().as_secs_f64() * 1000.0;
    let seen = until_serves(f.nodes[0].ingress, &host, want, t).await * 1000.0;
    let id = v["id"].as_str().unwrap_or_default();
    f.api.wait_terminal(id, DEPLOY).await?;
    let (_, log) = f
        .api
        .get(&format!("/api/v1/deployments/{id}/logs?format=json"))
        .await?;
    let routed = log
        .as_array()
        .and_then(|l| {
            l.iter().find(|e| {
                e["line"]
                    .as_str()
                    .is_some_and(|s| s.contains("route change"))
            })
        })
        .and_then(|e| e["ts"].as_i64())
        .map_or(f64::NAN, |ts| (ts - t0) as f64);
    Ok(format!(
        "  a standby rollback, split: API answered {answered:.0} ms, route written {routed:.0} ms, first Caddy served {seen:.0} ms"
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n = env_or("BENCH_ROLLBACKS", 10);
    let registry = Registry::start().await?;
    let url = format!("127.0.0.1:{}", registry.port);
    let mut f = Fleet::start_with(3, &[("BERTH_REGISTRY__URL", &url)]).await?;
    let src = TempDir::with_prefix("bench-fleet")?;
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    let app = unique("fleetb");
    let host = format!("{app}.localhost");
    f.create_app(
        json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1,
        "health_check": {"interval_ms": 50}}),
    )
    .await?;
    deploy_version(&f.api, &app, &repo, "v1").await;
    let d = deploy_version(&f.api, &app, &repo, "v2").await;
    let home = f.node_index(d["node"].as_str().unwrap()).unwrap();
    // The node that runs the app first, then the others.
    let mut order = vec![home];
    order.extend((0..f.nodes.len()).filter(|j| *j != home));
    let ports: Vec<u16> = order.iter().map(|i| f.nodes[*i].ingress).collect();

    // 1. Rollbacks: the fleet, then a one-node cluster side by side.
    let mut fleet_times = rollbacks(&f.api, &app, &ports, n).await;
    let mut c = Cluster::up().await?;
    let single = unique("singleb");
    c.create_app(
        json!({"name": single, "repo": repo.url(), "port": 8080, "drain_s": 1,
        "health_check": {"interval_ms": 50}}),
    )
    .await?;
    deploy_version(&c.api, &single, &repo, "v1").await;
    deploy_version(&c.api, &single, &repo, "v2").await;
    let mut single_times = rollbacks(&c.api, &single, &[c.ingress], n).await;
    drop(c);
    let one = median(&mut single_times[0]);
    println!("rollback, API call → Caddy serves the other version, median of {n} (s):");
    println!("  one-node berth up:                 {one:.3}");
    for (k, t) in fleet_times.iter_mut().enumerate() {
        let what = if k == 0 {
            "fleet, the app's node"
        } else {
            "fleet, another node"
        };
        let m = median(t);
        let max = t.iter().cloned().fold(0.0, f64::max);
        println!(
            "  {what:<34} {m:.3} (max {max:.3}; ratio to one node {:.2})",
            m / one
        );
    }

    // 3. Replicas: three on three engines, without and with a standby.
    let mut rows = Vec::new();
    let mut split = Vec::new();
    for (what, standby) in [
        ("3 replicas, stopped release", 0),
        ("3 replicas, standby", 600),
    ] {
        let name = unique("repb");
        f.create_app(json!({
            "name": name, "repo": repo.url(), "port": 8080, "drain_s": 1,
            "replicas": 3, "standby_s": standby, "health_check": {"interval_ms": 50},
        }))
        .await?;
        deploy_version(&f.api, &name, &repo, "v1").await;
        deploy_version(&f.api, &name, &repo, "v2").await;
        let mut t = rollbacks(&f.api, &name, &[f.nodes[0].ingress], n).await;
        if standby > 0 {
            split.push(standby_split(&f, &name).await?);
        }
        let m = median(&mut t[0]);
        let max = t[0].iter().cloned().fold(0.0, f64::max);
        rows.push(format!(
            "  {what:<34} {m:.3} (max {max:.3}; ratio to one node {:.2})",
            m / one
        ));
    }
    println!("rollback of an app with replicas, at the first node's Caddy, median of {n} (s):");
    for r in rows {
        println!("{r}");
    }
    for s in split {
        println!("{s}");
    }

    // 2. Failover under load through a surviving node.
    let (_, d) = f.api.get(&format!("/api/v1/apps/{app}")).await?;
    anyhow::ensure!(d["name"] == app.as_str(), "{d}");
    let (_, list) = f
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await?;
    let node = list[0]["node"].as_str().unwrap_or_default().to_string();
    let i = f.node_index(&node).unwrap();
    let j = (0..f.nodes.len()).find(|j| *j != i).unwrap();
    let surviving = f.nodes[j].ingress;
    let before = Load::start(surviving, &host, 4, Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    f.kill_node(i);
    // Until the route every node carries no longer names the dead node.
    let out = loop {
        let routes = f.redis_cli(&["HGET", "berth:routes", &host])?;
        if !routes.contains(&node) {
            break t.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let early = before.finish().await;
    let after = Load::start(surviving, &host, 4, Duration::ZERO);
    let back = loop {
        if let Ok((200, _)) = ingress_get(surviving, &host).await {
            break t.elapsed().as_secs_f64();
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = after.finish().await;
    println!("failover, a node killed under load through another node's Caddy:");
    println!("  kill → its upstream out of every route: {out:.2} s");
    println!("  kill → the app answers from another node: {back:.2} s (goal ≤ 10 s)");
    println!(
        "  requests before the upstream left the route: {} ok, {} failed {:?}",
        early.ok,
        early.failed,
        early.examples.first()
    );
    println!(
        "  requests after it left: {} ok, {} failed {:?} (goal 0)",
        late.ok,
        late.failed,
        late.examples.first()
    );
    Ok(())
}
