//! Nodes and placement through the real cluster: what a node announces (labels, CPUs, engine),
//! liveness (`ready` → `suspect` → `down`), cordons, and a placement that cannot be satisfied
//! failing at once with which filter removed which node.

use std::time::Duration;

use berth_protocol::envelope::{encode, kind};
use berth_protocol::{keys, now_ms, NodeInfo};
use berth_tests::{eventually, repo_root, unique, version_marker, Cluster, GitRepo, TempDir};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);

/// A heartbeat record of a node named `name` whose last beat was `age_ms` ago (a node that
/// stopped), written as a node writes it.
fn stale_node(c: &Cluster, name: &str, age_ms: u64) {
    let info = NodeInfo {
        name: name.into(),
        address: "127.0.0.1".into(),
        ingress_http: 1,
        ingress_https: None,
        version: "test".into(),
        labels: [("zone".to_string(), "us".to_string())].into(),
        cpus: 1,
        build_slots: 1,
        engine: None,
        started_at: 0,
        last_heartbeat: now_ms() - age_ms,
        running_jobs: 0,
        host: None,
    };
    let record = encode(kind::NODE, name, &info).unwrap();
    let set = vec![b"SET".to_vec(), keys::node(name).into_bytes(), record];
    let add = vec![b"SADD".to_vec(), keys::NODES.into(), name.into()];
    c.redis_pipe(&[set, add]).unwrap();
}

fn node_view<'a>(nodes: &'a Value, name: &str) -> &'a Value {
    let all = nodes.as_array().unwrap();
    all.iter().find(|n| n["name"] == name).unwrap()
}

async fn deploy_to_end(c: &Cluster, app: &str) -> Value {
    c.api.deploy_and_wait(app, None, DEPLOY).await.unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_says_which_filter_removed_which_node_and_cordon_holds_new_work() {
    let mut c = Cluster::up_with(&[("BERTH_NODE__LABELS", "zone=eu,disk=ssd")])
        .await
        .unwrap();
    let me = c.node.clone();
    let (s, nodes) = c.api.get("/api/v1/nodes").await.unwrap();
    assert_eq!(s, 200, "{nodes}");
    let n = node_view(&nodes, &me);
    assert_eq!(n["labels"], json!({"zone": "eu", "disk": "ssd"}), "{n}");
    assert_eq!(n["status"], "ready", "{n}");
    assert_eq!(n["cordoned"], false, "{n}");
    assert!(n["cpus"].as_u64().unwrap() >= 1, "{n}");
    assert!(n["build_slots"].as_u64().unwrap() >= 1, "{n}");
    assert!(!n["engine"].as_str().unwrap_or_default().is_empty(), "{n}");

    // Two nodes that stopped beating: one a few seconds ago, one long ago.
    let (late, gone) = (unique("late"), unique("gone"));
    stale_node(&c, &late, 3_500);
    stale_node(&c, &gone, 60_000);
    let (_, nodes) = c.api.get("/api/v1/nodes").await.unwrap();
    assert_eq!(node_view(&nodes, &late)["status"], "suspect", "{nodes}");
    assert_eq!(node_view(&nodes, &gone)["status"], "down", "{nodes}");

    // A constraint no ready node satisfies fails the deployment at once, node by node.
    let src = TempDir::with_prefix("place").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let (us, any) = (unique("inus"), unique("any"));
    let (s, v) = c
        .api
        .post(
            "/api/v1/apps",
            json!({"name": us, "repo": repo.url(), "port": 8080,
                   "placement": {"constraints": ["zone=U S"]}}),
        )
        .await
        .unwrap();
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("label value"), "{v}");
    c.create_app(json!({"name": us, "repo": repo.url(), "port": 8080,
                        "placement": {"constraints": ["zone=us"]}}))
        .await
        .unwrap();
    let d = deploy_to_end(&c, &us).await;
    assert_eq!(d["status"], "failed", "{d}");
    let error = d["error"].as_str().unwrap();
    for part in [
        format!("{me}: constraint zone=us does not hold (zone=eu)"),
        format!("{late}: suspect"),
        format!("{gone}: down"),
    ] {
        assert!(error.contains(&part), "{part:?} in {error}");
    }

    // Cordoned: nothing new is placed; an unknown node is a 404.
    let (s, v) = c
        .api
        .post(&format!("/api/v1/nodes/{me}/cordon"), json!({}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["cordoned"], true, "{v}");
    let listed = c.berth().arg("nodes").output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let line = listed.lines().find(|l| l.starts_with(&me)).unwrap();
    assert!(
        line.contains("cordoned") && line.contains("zone=eu"),
        "{listed}"
    );
    c.create_app(json!({"name": any, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let d = deploy_to_end(&c, &any).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{me}: cordoned")),
        "{d}"
    );
    let (s, v) = c
        .api
        .post("/api/v1/nodes/no-such-node/cordon", json!({}))
        .await
        .unwrap();
    assert_eq!(s, 404, "{v}");

    // Uncordoned (by the CLI): the same app deploys and serves.
    let out = c.berth().args(["nodes", "uncordon", &me]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let d = deploy_to_end(&c, &any).await;
    assert_eq!(d["status"], "succeeded", "{d}");
    assert_eq!(d["node"], me.as_str(), "{d}");
    c.serves(&format!("{any}.localhost"), &version_marker("1"))
        .await
        .unwrap();

    // More memory reserved than the node has available (once its host figures are in).
    eventually(
        "the node's host figures",
        Duration::from_secs(30),
        || async {
            let (_, nodes) = c.api.get("/api/v1/nodes").await.ok()?;
            (!node_view(&nodes, &me)["host"].is_null()).then_some(())
        },
    )
    .await
    .unwrap();
    let (s, v) = c
        .api
        .patch(
            &format!("/api/v1/apps/{any}"),
            json!({"placement": {"memory_mb": 100_000_000}}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let d = deploy_to_end(&c, &any).await;
    assert_eq!(d["status"], "failed", "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(error.contains("the app reserves 100000000 MiB"), "{error}");
    // The release that served keeps serving.
    c.serves(&format!("{any}.localhost"), &version_marker("1"))
        .await
        .unwrap();
}
