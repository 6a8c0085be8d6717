//! Where Redis stands, as Berth shows it: a coordinator and a node on their own Redis, a real
//! replica of it (`redis-server --replicaof`) started and then killed. `GET /api/v1/redis`,
//! `/metrics` and `berth nodes` show the primary, the replica in sync with its lag, and then no
//! replica.

use std::time::Duration;

use berth_tests::{eventually, free_port, start_redis, Cluster, TempDir};
use serde_json::Value;

const SYNC: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_and_its_replicas_are_shown() {
    let c = Cluster::separate().await.unwrap();
    let primary = c.redis_port().unwrap();

    let (s, alone) = c.api.get("/api/v1/redis").await.unwrap();
    assert_eq!(s, 200, "{alone}");
    assert_eq!(alone["role"], "master", "{alone}");
    assert_eq!(alone["addr"], format!("127.0.0.1:{primary}"), "{alone}");
    assert_eq!(alone["replicas"], Value::Array(vec![]), "{alone}");

    let dir = TempDir::with_prefix("replica").unwrap();
    let port = free_port();
    let mut replica = start_redis(
        dir.path(),
        port,
        &["--replicaof", "127.0.0.1", &primary.to_string()],
    )
    .await
    .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let view = eventually("the replica in sync, as the API tells it", SYNC, || {
        let (api, addr) = (c.api.clone(), addr.clone());
        async move {
            let (_, v) = api.get("/api/v1/redis").await.ok()?;
            let r = v["replicas"].as_array()?.first()?.clone();
            (r["addr"] == addr.as_str() && r["state"] == "online").then_some(v)
        }
    })
    .await
    .unwrap();
    let r = &view["replicas"][0];
    assert!(r["lag_s"].as_u64().unwrap() <= 10, "{view}");
    assert!(r["behind_bytes"].is_u64(), "{view}");

    let (s, _, text) = c.api.metrics_text().await.unwrap();
    assert_eq!(s, 200);
    for want in [
        format!("berth_redis_primary{{addr=\"127.0.0.1:{primary}\"}} 1"),
        "berth_redis_replicas 1".to_string(),
        format!("berth_redis_replica_lag_seconds{{replica=\"{addr}\"}}"),
        format!("berth_redis_replica_behind_bytes{{replica=\"{addr}\"}}"),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&want)),
            "no {want} in\n{text}"
        );
    }

    let out = c.berth().arg("nodes").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "redis: 127.0.0.1:{primary} is primary; replica {addr} online, lag "
        )),
        "{said}"
    );
    // `--json` is the node list alone, as before.
    let out = c.berth().args(["nodes", "--json"]).output().unwrap();
    let nodes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(nodes.is_array(), "{nodes}");

    // The replica gone: none is shown any more.
    replica.kill();
    eventually("the replica gone from the API's answer", SYNC, || {
        let api = c.api.clone();
        async move {
            let (_, v) = api.get("/api/v1/redis").await.ok()?;
            v["replicas"].as_array()?.is_empty().then_some(())
        }
    })
    .await
    .unwrap();
    let (_, _, text) = c.api.metrics_text().await.unwrap();
    assert!(
        text.lines().any(|l| l == "berth_redis_replicas 0"),
        "{text}"
    );
    let out = c.berth().arg("nodes").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("is primary; no replica"), "{said}");
}
