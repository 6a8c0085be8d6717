//! Supervision: a panic in any actor of either daemon is noticed, the actor is started again
//! (its state reloaded), the restart is counted in `/metrics`, and the work in progress goes
//! on; an actor that keeps dying takes its process down with a non-zero exit. The panics come
//! from the test hook (`BERTH_TEST_HOOKS=true`: `LPUSH berth:test:panic:<process> <actor>`).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use berth_protocol::keys;
use berth_tests::chaos::{COORDINATOR_ACTORS, NODE_ACTORS};
use berth_tests::{
    eventually, hello_page, repo_root, sh, slow_dockerfile, unique, version_marker, Cluster,
    GitRepo, TempDir,
};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);

fn hooks() -> [(&'static str, &'static str); 1] {
    [("BERTH_TEST_HOOKS", "true")]
}

/// The restart counts Redis holds, by `<process>/<actor>`.
fn restarts(c: &Cluster) -> HashMap<String, u64> {
    let out = c
        .redis_cli(&["HGETALL", keys::STATS_RESTARTS])
        .unwrap_or_default();
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .filter_map(|kv| Some((kv[0].to_string(), kv.get(1)?.parse().ok()?)))
        .collect()
}

/// Makes `actor` of `process` panic and waits until its restart is counted.
async fn panic_and_wait(c: &Cluster, process: &str, actor: &str) {
    let field = format!("{process}/{actor}");
    let before = restarts(c).get(&field).copied().unwrap_or(0);
    c.redis_cli(&["LPUSH", &keys::test_panic(process), actor])
        .unwrap();
    eventually(
        &format!("{field} restarted"),
        Duration::from_secs(20),
        || {
            let now = restarts(c).get(&field).copied().unwrap_or(0);
            async move { (now > before).then_some(()) }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
}

async fn wait_status(c: &Cluster, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually("the deployment's status", DEPLOY, || async {
        let (_, d) = c.api.get(&format!("/api/v1/deployments/{id}")).await.ok()?;
        pred(&d).then_some(d)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()))
}

/// The app's containers on the main engine, by deployment label.
fn containers_of(app: &str) -> Vec<String> {
    sh(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        &format!("label=berth.app={app}"),
        "--format",
        "{{.Label \"berth.deployment\"}}",
    ]))
    .unwrap()
    .lines()
    .map(str::to_string)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_actor_that_panics_is_restarted_counted_and_the_work_goes_on() {
    let mut c = Cluster::separate_with(&hooks()).await.unwrap();
    let node = format!("node:{}", c.node);
    let src = TempDir::with_prefix("sup").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    // A build long enough to panic actors while it runs (never answered from the layer cache).
    repo.write("Dockerfile", &slow_dockerfile(6)).unwrap();
    repo.write("www/index.html", &hello_page("v1")).unwrap();
    repo.commit("v1").unwrap();
    let app = unique("sup");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();

    // While it builds, the deployment's own actor, the node's job consumer and its deployer
    // die: the job goes on in its task, nothing starts it twice.
    let id = c.api.deploy(&app, None).await.unwrap();
    wait_status(&c, &id, |d| d["status"] == "building").await;
    panic_and_wait(&c, "coordinator", "deployment").await;
    panic_and_wait(&c, &node, "job_consumer").await;
    panic_and_wait(&c, &node, "deployer").await;
    let (_, during) = c
        .api
        .get(&format!("/api/v1/deployments/{id}"))
        .await
        .unwrap();
    assert_eq!(during["status"], "building", "the panics hit the build");
    let d = wait_status(&c, &id, |d| d["status"].as_str().is_some_and(is_terminal)).await;
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    let host = format!("{app}.localhost");
    c.serves(&host, &version_marker("v1")).await.unwrap();
    assert_eq!(
        containers_of(&app),
        vec![id.clone()],
        "one container for the one deployment"
    );

    // Every other actor of both processes dies once.
    // (`deployment` was panicked during the build: it needs a deployment in flight.)
    for actor in COORDINATOR_ACTORS
        .into_iter()
        .filter(|a| *a != "deployment")
    {
        panic_and_wait(&c, "coordinator", actor).await;
    }
    for actor in NODE_ACTORS {
        panic_and_wait(&c, &node, actor).await;
    }

    // Both processes still run, and a deploy goes through all the restarted actors.
    for p in c.procs.iter_mut() {
        assert!(!p.exited(), "{} exited:\n{}", p.name, p.log_text());
    }
    repo.write("www/index.html", &hello_page("v2")).unwrap();
    repo.commit("v2").unwrap();
    let id2 = c.api.deploy(&app, None).await.unwrap();
    let d2 = wait_status(&c, &id2, |d| d["status"].as_str().is_some_and(is_terminal)).await;
    assert_eq!(d2["status"], "succeeded", "{d2}\n{}", c.logs());
    c.serves(&host, &version_marker("v2")).await.unwrap();

    // /metrics counts each restart by process and actor.
    let (status, _, text) = c.api.metrics_text().await.unwrap();
    assert_eq!(status, 200);
    for actor in COORDINATOR_ACTORS {
        let want =
            format!("berth_actor_restarts_total{{process=\"coordinator\",actor=\"{actor}\"}} ");
        assert!(text.contains(&want), "no {want:?} in:\n{text}");
    }
    for actor in NODE_ACTORS {
        let want = format!("berth_actor_restarts_total{{process=\"{node}\",actor=\"{actor}\"}} ");
        assert!(text.contains(&want), "no {want:?} in:\n{text}");
    }
    // The panics were logged where they happened.
    let logs = c.logs();
    assert!(
        logs.contains("panic injected by the test hook into Ledger"),
        "{logs}"
    );
    assert!(
        logs.contains("actor died (a panic, or it stopped); starting a new one"),
        "{logs}"
    );
}

fn is_terminal(s: &str) -> bool {
    matches!(s, "succeeded" | "failed" | "cancelled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_that_keeps_dying_takes_its_process_down_with_a_non_zero_exit() {
    let mut c = Cluster::separate_with(&hooks()).await.unwrap();
    let key = keys::test_panic(&format!("node:{}", c.node));
    // One more panic than the restart intensity allows (10 within 60 s); the hook injects one
    // every 200 ms, each restart takes at most 100 ms.
    for _ in 0..12 {
        c.redis_cli(&["RPUSH", &key, "stats"]).unwrap();
    }
    let i = c.procs.iter().position(|p| p.name == "berth node").unwrap();
    let status = eventually("the node exits", Duration::from_secs(60), || {
        let s = c.procs[i].child.try_wait().ok().flatten();
        async move { s }
    })
    .await
    .unwrap();
    let log = c.procs[i].log_text();
    // An exit with an error (the process's own), not a signal.
    assert!(status.code().is_some_and(|c| c != 0), "{status:?}\n{log}");
    assert!(
        log.contains("actor stats died more than 10 times within 60 s"),
        "{log}"
    );
    // It shut down in order rather than crashing.
    assert!(log.contains("shut down"), "{log}");
    // The coordinator is not affected.
    let coordinator = c
        .procs
        .iter_mut()
        .find(|p| p.name == "berth coordinator")
        .unwrap();
    assert!(!coordinator.exited(), "{}", coordinator.log_text());
}
