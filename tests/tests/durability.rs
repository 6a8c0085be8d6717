//! The durability promise through the real API: a separate cluster (`berth coordinator` and
//! `berth node` as processes) with `redis.min_replicas_acked = 1`, its Redis a primary with a
//! `redis-server --replicaof` replica on loopback. A new deployment is acknowledged (202) only
//! once the replica has it; with the replica stopped (SIGSTOP: a hung machine, its connection
//! open) the same request answers 503 — after about the timeout, not a hang, not a 500 — saying
//! the deployment reached the primary only and how to look for it, and `/metrics` counts it. A
//! primary with `min-replicas-to-write` that refuses the write (`NOREPLICAS`) gets a 503 worth
//! retrying, and reads go on.

use std::time::{Duration, Instant};

use berth_tests::{
    eventually, free_port, pause, repo_root, start_replica, unique, Cluster, GitRepo, TempDir,
};
use serde_json::json;

const ACK_TIMEOUT_MS: &str = "500";

/// `berth_redis_unreplicated_writes_total{process="coordinator"}` from `/metrics`.
async fn unreplicated(c: &Cluster) -> f64 {
    let (status, _, text) = c.api.metrics_text().await.unwrap();
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("berth_redis_unreplicated_writes_total{process=\"coordinator\"} ")
        })
        .unwrap_or_else(|| panic!("no unreplicated-writes counter in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_is_acknowledged_only_once_a_replica_has_it() {
    let mut c = Cluster::separate_with_redis(
        &["--repl-diskless-sync-delay", "0"],
        None,
        &[
            ("BERTH_REDIS__MIN_REPLICAS_ACKED", "1"),
            ("BERTH_REDIS__REPLICA_ACK_TIMEOUT_MS", ACK_TIMEOUT_MS),
        ],
    )
    .await
    .unwrap();
    let replica_port = free_port();
    let replica = start_replica(
        &c.dir.path().join("replica"),
        replica_port,
        c.redis_port().unwrap(),
    )
    .await
    .unwrap();
    let on_replica = |key: &str| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &replica_port.to_string(), "EXISTS", key])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    };

    let src = TempDir::with_prefix("durable-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("durable");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    assert!(on_replica(&format!("berth:app:{app}")));
    assert_eq!(unreplicated(&c).await, 0.0);

    // The replica is there: queued, acknowledged, and the replica has the record already.
    let first = c.api.deploy(&app, None).await.unwrap();
    assert!(on_replica(&format!("berth:deployment:{first}")), "{first}");
    let (s, v) = c.api.cancel(&first).await.unwrap();
    assert_eq!(s, 200, "{v}");

    // The replica stops answering: the same request is not acknowledged as done.
    pause(&replica, true).unwrap();
    let started = Instant::now();
    let (s, v) = c
        .api
        .post(&format!("/api/v1/apps/{app}/deployments"), json!({}))
        .await
        .unwrap();
    let took = started.elapsed();
    let msg = v["error"].as_str().unwrap_or_default().to_string();
    assert_eq!(s, 503, "{v}\n{}", c.logs());
    assert!(
        msg.contains("reached Redis's primary")
            && msg.contains("0 of the 1 replica(s)")
            && msg.contains("`berth deployment "),
        "{msg}"
    );
    // A hang check, not a figure: the answer comes after about the timeout.
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The message names the deployment, which the primary has.
    let id = msg
        .split_whitespace()
        .nth(1)
        .expect("deployment <id> of app …")
        .to_string();
    let (s, d) = c
        .api
        .get(&format!("/api/v1/deployments/{id}"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{msg}: {d}");
    assert_eq!(d["app"], app.as_str());
    assert!(unreplicated(&c).await >= 1.0);

    // A primary told to refuse writes without a replica (`min-replicas-to-write`) refuses this
    // one before writing anything: a 503 like an outage's (trying again is safe), while reads
    // go on — the coordinator's link to Redis is not taken for down.
    let primary = c.redis_port().unwrap().to_string();
    let config = |k: &str, v: &str| {
        std::process::Command::new("redis-cli")
            .args(["-p", &primary, "CONFIG", "SET", k, v])
            .output()
            .unwrap();
    };
    config("min-replicas-max-lag", "1");
    config("min-replicas-to-write", "1");
    let (s, v) = eventually(
        "the primary to refuse writes",
        Duration::from_secs(20),
        || async {
            let (s, v) = c
                .api
                .post(&format!("/api/v1/apps/{app}/deployments"), json!({}))
                .await
                .unwrap();
            (s != 503
                || v["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("NOREPLICAS"))
            .then_some((s, v))
        },
    )
    .await
    .unwrap();
    let msg = v["error"].as_str().unwrap_or_default();
    assert_eq!(s, 503, "{v}");
    assert!(
        msg.contains("NOREPLICAS") && msg.contains("try again shortly"),
        "{msg}"
    );
    let (s, v) = c.api.get(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert_eq!(s, 200, "{v}");
    config("min-replicas-to-write", "0");

    // Back: acknowledged again; the deployment the 503 named reached the replica too.
    pause(&replica, false).unwrap();
    let again = eventually(
        "a deployment to be acknowledged again",
        Duration::from_secs(30),
        || async { c.api.deploy(&app, None).await.ok() },
    )
    .await
    .unwrap();
    assert!(on_replica(&format!("berth:deployment:{id}")), "{id}");
    let (s, v) = c.api.cancel(&again).await.unwrap();
    assert_eq!(s, 200, "{v}");
}
