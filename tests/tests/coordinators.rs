//! Several coordinators on one Redis: one leads (the lease `berth:leader`), all serve the API,
//! and when the leader is killed another takes over its deployments.

use std::time::Duration;

use berth_protocol::keys;
use berth_tests::{
    eventually, hello_page, repo_root, slow_dockerfile, unique, version_marker, Api, Cluster,
    GitRepo, Proc, TempDir,
};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);

/// A second `berth coordinator` on the cluster's Redis.
async fn second_coordinator(c: &Cluster) -> (Proc, Api) {
    c.spawn_coordinator("coordinator-2", None).await.unwrap()
}

async fn wait_terminal(api: &Api, id: &str, logs: impl Fn() -> String) -> Value {
    eventually("the deployment ends", DEPLOY, || async {
        let (_, d) = api.get(&format!("/api/v1/deployments/{id}")).await.ok()?;
        matches!(
            d["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
        .then_some(d)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_the_api_and_takes_over_when_the_leader_is_killed() {
    let mut c = Cluster::separate().await.unwrap();
    let (first, epoch) = c.leader().expect("the first coordinator leads");
    let (mut second, api2) = second_coordinator(&c).await;
    // Still the first: a follower does not take a held lease.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.leader(), Some((first.clone(), epoch)));

    let src = TempDir::with_prefix("lead").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    repo.write("Dockerfile", &slow_dockerfile(5)).unwrap();
    repo.write("www/index.html", &hello_page("v1")).unwrap();
    repo.commit("v1").unwrap();
    let app = unique("lead");
    // The follower's API writes like the leader's: the app and a deployment, which the
    // leader places.
    let (s, v) = api2
        .post(
            "/api/v1/apps",
            json!({"name": app, "repo": repo.url(), "port": 8080}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    let id = api2.deploy(&app, None).await.unwrap();
    eventually("building", DEPLOY, || async {
        let (_, d) = c.api.get(&format!("/api/v1/deployments/{id}")).await.ok()?;
        (d["status"] == "building").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", c.logs(), second.log_text()));

    // The leader dies mid-build. The follower leads under a newer epoch and sees the
    // deployment through.
    let i = c
        .procs
        .iter()
        .position(|p| p.name == "berth coordinator")
        .unwrap();
    c.procs[i].kill();
    let d = wait_terminal(&api2, &id, || second.log_text()).await;
    assert_eq!(d["status"], "succeeded", "{d}\n{}", second.log_text());
    let (holder, epoch2) = c.leader().expect("a leader");
    assert_ne!(holder, first);
    assert!(epoch2 > epoch, "{epoch2} > {epoch}");
    c.serves(&format!("{app}.localhost"), &version_marker("v1"))
        .await
        .unwrap();
    assert!(
        second
            .log_text()
            .contains("leading: this coordinator holds the leader lease"),
        "{}",
        second.log_text()
    );

    // A deploy through the new leader goes through too.
    repo.write("www/index.html", &hello_page("v2")).unwrap();
    repo.commit("v2").unwrap();
    let id2 = api2.deploy(&app, None).await.unwrap();
    let d2 = wait_terminal(&api2, &id2, || second.log_text()).await;
    assert_eq!(d2["status"], "succeeded", "{d2}");
    c.serves(&format!("{app}.localhost"), &version_marker("v2"))
        .await
        .unwrap();

    // A clean stop gives the lease up at once.
    second.stop();
    assert_eq!(c.leader(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_writes_are_refused_by_their_fence() {
    let mut c = Cluster::separate().await.unwrap();
    let (holder, epoch) = c.leader().expect("the coordinator leads");
    let src = TempDir::with_prefix("fence").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("fence");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();

    // A newer leader's epoch, while the lease still names this coordinator under the old one:
    // what a leader that was paused while another took over sees when it wakes.
    c.redis_cli(&["INCR", keys::LEADER_EPOCH]).unwrap();
    let (s, v) = c
        .api
        .post(&format!("/api/v1/apps/{app}/deployments"), json!({}))
        .await
        .unwrap();
    assert_eq!(s, 503, "{v}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("leader epoch {epoch} is no longer current")),
        "{msg}"
    );
    // Nothing was written: the app has no deployment.
    let (_, list) = c
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await
        .unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");

    // The lease runs out (here: is deleted); the coordinator takes it again under a newer epoch
    // and its writes go through.
    c.redis_cli(&["DEL", keys::LEADER]).unwrap();
    eventually("a new epoch", Duration::from_secs(10), || {
        let l = c.leader();
        async move { l.filter(|(_, e)| *e > epoch + 1) }
    })
    .await
    .unwrap();
    assert_eq!(c.leader().map(|(h, _)| h), Some(holder));
    let id = eventually("a deploy accepted", Duration::from_secs(10), || async {
        c.api.deploy(&app, None).await.ok()
    })
    .await
    .unwrap();
    let d = wait_terminal(&c.api, &id, || c.logs()).await;
    assert_eq!(d["status"], "succeeded", "{d}");
    c.serves(&format!("{app}.localhost"), &version_marker("1"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
}
