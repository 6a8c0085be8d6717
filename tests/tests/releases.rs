//! Zero-downtime releases, rollbacks, cancels and pruning, through the real cluster.

use std::time::Duration;

use berth_tests::{
    hello_page, repo_root, running_containers, sh, unique, version_marker, Cluster, GitRepo, Load,
    TempDir,
};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);

async fn deploy_version(c: &Cluster, app: &str, repo: &GitRepo, v: &str) -> Value {
    repo.write("www/index.html", &hello_page(v)).unwrap();
    repo.commit(v).unwrap();
    c.api.deploy_and_wait(app, None, DEPLOY).await.unwrap().1
}

async fn releases(c: &Cluster, app: &str) -> Vec<Value> {
    let (s, v) = c
        .api
        .get(&format!("/api/v1/apps/{app}/releases"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}

async fn rollback(c: &Cluster, app: &str, to: Option<&str>) -> Value {
    let body = match to {
        Some(t) => json!({"to": t}),
        None => json!({}),
    };
    let (s, v) = c
        .api
        .post(&format!("/api/v1/apps/{app}/rollback"), body)
        .await
        .unwrap();
    assert_eq!(s, 202, "{v}");
    c.api
        .wait_terminal(v["id"].as_str().unwrap(), DEPLOY)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failed_request_across_deploy_rollback_and_a_failing_deploy() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("zd-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("zd");
    let host = format!("{app}.localhost");
    c.create_app(
        json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 2,
        "health_check": {"interval_ms": 100, "retries": 3, "deadline_s": 20}}),
    )
    .await
    .unwrap();
    let v1 = deploy_version(&c, &app, &repo, "v1").await;
    assert_eq!(v1["status"], "succeeded", "{v1}");
    c.serves(&host, &version_marker("v1")).await.unwrap();

    let load = Load::start(c.ingress, &host, 4, Duration::ZERO);
    let v2 = deploy_version(&c, &app, &repo, "v2").await;
    assert_eq!(v2["status"], "succeeded", "{v2}");
    c.serves(&host, &version_marker("v2")).await.unwrap();
    let back = rollback(&c, &app, None).await;
    assert_eq!(back["status"], "succeeded", "{back}");
    c.serves(&host, &version_marker("v1")).await.unwrap();
    // v3 never becomes healthy.
    let (s, _) = c
        .api
        .patch(
            &format!("/api/v1/apps/{app}"),
            json!({"health_check": {"path": "/missing", "deadline_s": 3}}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200);
    let v3 = deploy_version(&c, &app, &repo, "v3").await;
    assert_eq!(v3["status"], "failed", "{v3}");
    let v3_ended = std::time::Instant::now();
    c.serves(&host, &version_marker("v1")).await.unwrap();
    // The drained releases stop while the load goes on (2,000 requests at least), and it goes
    // on long enough (drain 2 s, then two passes of the node's retiring of replicas no route
    // names) that stopping the serving release by mistake would show as failures.
    berth_tests::eventually(
        "the drained releases to stop, under 2,000 requests of load",
        Duration::from_secs(30),
        || async {
            let one = running_containers(&app, &c.node).ok()?.len() == 1;
            let long = v3_ended.elapsed() >= Duration::from_secs(6);
            (one && long && load.sent() >= 2000).then_some(())
        },
    )
    .await
    .unwrap();
    let n = load.finish().await;
    eprintln!("load: {n:?}");
    assert!(n.ok + n.failed >= 2000, "at least 2,000 requests: {n:?}");
    assert_eq!(n.failed, 0, "no request failed: {n:?}");
    // Nor did any need a retry: moving traffic is an answer of the node's DNS responder, not a
    // Caddy config reload, so no kept-alive connection was closed under a client.
    assert_eq!(n.retried, 0, "no kept-alive connection was closed: {n:?}");
    let seen: Vec<&str> = n.versions.iter().map(|(v, _)| v.as_str()).collect();
    assert!(
        seen.contains(&"v1") && seen.contains(&"v2") && !seen.contains(&"v3"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_three_back_failing_deploys_and_pruning() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("rb-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("rb");
    let host = format!("{app}.localhost");
    c.create_app(
        json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 0, "keep_releases": 4}),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for v in ["r1", "r2", "r3", "r4"] {
        let d = deploy_version(&c, &app, &repo, v).await;
        assert_eq!(d["status"], "succeeded", "{d}");
        ids.push(d["id"].as_str().unwrap().to_string());
    }
    c.serves(&host, &version_marker("r4")).await.unwrap();
    let rels = releases(&c, &app).await;
    let rel_ids: Vec<&str> = rels
        .iter()
        .map(|r| r["deployment"].as_str().unwrap())
        .collect();
    assert_eq!(
        rel_ids,
        ids.iter().rev().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(rels[0]["current"], true);

    // A failing deploy leaves the current release serving and the release list unchanged.
    repo.write("Dockerfile", "FROM busybox\nRUN exit 9\n")
        .unwrap();
    repo.commit("broken").unwrap();
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "failed");
    assert_eq!(releases(&c, &app).await, rels);
    c.serves(&host, &version_marker("r4")).await.unwrap();

    // Roll back three versions: r1 serves, with no build in its log.
    let back = rollback(&c, &app, Some(&ids[0])).await;
    assert_eq!(back["status"], "succeeded", "{back}");
    assert_eq!(back["kind"], "rollback");
    c.serves(&host, &version_marker("r1")).await.unwrap();
    let log = c.api.log(back["id"].as_str().unwrap()).await.unwrap();
    assert!(
        !log.contains("Step 1/") && !log.contains("fetching"),
        "no build:\n{log}"
    );
    assert!(log.contains("no build"), "{log}");
    berth_tests::eventually("one running container", Duration::from_secs(20), || async {
        (running_containers(&app, &c.node).ok()?.len() == 1).then_some(())
    })
    .await
    .unwrap();
    // The rollback to the release just before (r4 → kept stopped) starts that container again.
    let back2 = rollback(&c, &app, None).await;
    assert_eq!(back2["status"], "succeeded", "{back2}");
    c.serves(&host, &version_marker("r4")).await.unwrap();
    let log2 = c.api.log(back2["id"].as_str().unwrap()).await.unwrap();
    assert!(log2.contains("stopped container"), "reused:\n{log2}");

    // Pruning keeps exactly N releases and never the current one's image.
    repo.git(&["checkout", "-q", "HEAD~1", "--", "Dockerfile"])
        .unwrap();
    for v in ["r5", "r6"] {
        let d = deploy_version(&c, &app, &repo, v).await;
        assert_eq!(d["status"], "succeeded", "{d}");
    }
    let rels = releases(&c, &app).await;
    assert_eq!(rels.len(), 4, "{rels:?}");
    let offered: Vec<String> = rels
        .iter()
        .map(|r| r["image"].as_str().unwrap().to_string())
        .collect();
    // Pruning runs right after each switch; wait for the engine to show its result.
    let images = berth_tests::eventually(
        "images pruned to the releases",
        Duration::from_secs(20),
        || {
            let (app, offered) = (app.clone(), offered.clone());
            async move {
                let out = sh(std::process::Command::new("docker").args([
                    "images",
                    "--format",
                    "{{.Repository}}:{{.Tag}}",
                    &format!("berth/{app}"),
                ]))
                .ok()?;
                let imgs: Vec<String> = out.lines().map(String::from).collect();
                (imgs.iter().all(|i| offered.contains(i))).then_some(imgs)
            }
        },
    )
    .await
    .unwrap();
    for o in &offered {
        assert!(
            images.contains(o),
            "offered release image {o} is kept: {images:?}"
        );
    }
    // Every offered release can still be rolled back to.
    let last = rels.last().unwrap()["deployment"]
        .as_str()
        .unwrap()
        .to_string();
    let back3 = rollback(&c, &app, Some(&last)).await;
    assert_eq!(back3["status"], "succeeded", "{back3}");
    // Something not offered is refused.
    let (s, v) = c
        .api
        .post(
            &format!("/api/v1/apps/{app}/rollback"),
            json!({"to": ids[1]}),
        )
        .await
        .unwrap();
    assert!(
        s == 400 || rels.iter().any(|r| r["deployment"] == ids[1].as_str()),
        "{s} {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_build_and_during_health_checks() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("cx-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("cx");
    let host = format!("{app}.localhost");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 0}))
        .await
        .unwrap();
    let d = deploy_version(&c, &app, &repo, "ok1").await;
    assert_eq!(d["status"], "succeeded");

    // During the build: a slow RUN step.
    repo.write(
        "Dockerfile",
        "FROM busybox\nRUN echo slow-step-started && sleep 60\nCOPY www /www\nCMD [\"httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"]\n",
    )
    .unwrap();
    repo.commit("slow build").unwrap();
    let id = c.api.deploy(&app, None).await.unwrap();
    c.api
        .wait_log(
            "the slow step to run",
            &id,
            "slow-step-started",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let (s, v) = c.api.cancel(&id).await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "cancelled");
    let (s, _) = c.api.cancel(&id).await.unwrap();
    assert_eq!(s, 409, "a terminal deployment cannot be cancelled again");
    c.api
        .wait_log(
            "the job to stop",
            &id,
            "cancelled while",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    c.serves(&host, &version_marker("ok1")).await.unwrap();
    assert_eq!(running_containers(&app, &c.node).unwrap().len(), 1);

    // During the health checks: an app that never becomes healthy, with a long deadline.
    repo.git(&["checkout", "-q", "HEAD~1", "--", "Dockerfile"])
        .unwrap();
    repo.commit("fast build").unwrap();
    let (s, _) = c
        .api
        .patch(&format!("/api/v1/apps/{app}"), json!({"health_check": {"path": "/missing", "deadline_s": 120, "retries": 10000, "interval_ms": 100}}))
        .await
        .unwrap();
    assert_eq!(s, 200);
    let id = c.api.deploy(&app, None).await.unwrap();
    c.api
        .wait_log(
            "health checks to run",
            &id,
            "probe 1/",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let (s, v) = c.api.cancel(&id).await.unwrap();
    assert_eq!(s, 200, "{v}");
    // The node logs "removing the new container" before it removes it: the container may
    // still be listed (stopped) for a moment after the line.
    let leftover = || {
        sh(std::process::Command::new("docker").args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.deployment={id}"),
        ]))
    };
    berth_tests::eventually(
        "the probed container to be removed",
        Duration::from_secs(20),
        || async {
            let log = c.api.log(&id).await.ok()?;
            (log.contains("removing the new container")
                && running_containers(&app, &c.node).ok()?.len() == 1
                && leftover().ok()?.is_empty())
            .then_some(())
        },
    )
    .await
    .unwrap();
    let all = leftover().unwrap();
    assert!(
        all.is_empty(),
        "no leftover container of the cancelled deployment: {all}"
    );
    c.serves(&host, &version_marker("ok1")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_healthcheck_must_pass_too() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("hc-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("hc");
    c.create_app(
        json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 0,
        "health_check": {"deadline_s": 30, "healthy_threshold": 2, "interval_ms": 100}}),
    )
    .await
    .unwrap();
    // A HEALTHCHECK that passes: the deployment waits for Docker to say so.
    let dockerfile = |check: &str| {
        format!(
            "FROM busybox\nCOPY www /www\nHEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD {check}\nCMD [\"httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"]\n"
        )
    };
    repo.write(
        "Dockerfile",
        &dockerfile("wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1"),
    )
    .unwrap();
    repo.commit("healthcheck ok").unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    let log = c.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{log}");
    assert!(log.contains("Docker HEALTHCHECK: healthy"), "{log}");
    assert!(
        log.contains("probe healthy (1/2 in a row)"),
        "threshold shown: {log}"
    );

    // One that fails: the deployment fails although HTTP answers, and the release serves on.
    repo.write("Dockerfile", &dockerfile("exit 1")).unwrap();
    repo.commit("healthcheck fails").unwrap();
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "failed", "{d}");
    assert!(
        d["error"]
            .as_str()
            .unwrap_or_default()
            .contains("HEALTHCHECK"),
        "{d}"
    );
    c.serves(&format!("{app}.localhost"), &version_marker("1"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_to_a_stopped_release_keeps_serving_from_its_container() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("reuse-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("reuse");
    let host = format!("{app}.localhost");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await
        .unwrap();
    for v in ["v1", "v2"] {
        let d = deploy_version(&c, &app, &repo, v).await;
        assert_eq!(d["status"], "succeeded", "{d}");
    }
    berth_tests::eventually(
        "v1's container to stop",
        Duration::from_secs(30),
        || async { (running_containers(&app, &c.node).ok()?.len() == 1).then_some(()) },
    )
    .await
    .unwrap();
    // v1's own stopped container is started again; it keeps the label of v1's deployment while
    // the route names the rollback's. The node must not take it for a leftover and stop it.
    let back = rollback(&c, &app, None).await;
    assert_eq!(back["status"], "succeeded", "{back}");
    let log = c.api.log(back["id"].as_str().unwrap()).await.unwrap();
    assert!(log.contains("stopped container"), "{log}");
    let t = std::time::Instant::now();
    // Past the time a node leaves a replica out of the route before stopping it (15 s).
    berth_tests::eventually(
        "20 s of v1 served after the rollback",
        Duration::from_secs(60),
        || async {
            let served = c.serves(&host, &version_marker("v1")).await.is_ok();
            assert!(
                served,
                "v1 stopped serving {:?} after the rollback",
                t.elapsed()
            );
            (t.elapsed() >= Duration::from_secs(20)).then_some(())
        },
    )
    .await
    .unwrap();
    assert_eq!(running_containers(&app, &c.node).unwrap().len(), 1);
}
