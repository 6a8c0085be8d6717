//! End to end through the real parts: the `berth` binary, Redis, Caddy, git and Docker.
//!
//! Each test brings up its own cluster on free ports in a temp directory and removes the
//! containers and images it made.

use std::time::Duration;

use berth_tests::{
    hello_page, repo_root, running_containers, unique, version_marker, Cluster, GitRepo, TempDir,
};
use serde_json::json;

const DEPLOY: Duration = Duration::from_secs(180);

/// Deploy, update, and a failing health check that leaves the previous version serving — the
/// same flow through either form of the cluster.
async fn deploy_flow(c: &mut Cluster) -> anyhow::Result<()> {
    let src = TempDir::with_prefix("hello-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    let app = unique("hello");
    let host = format!("{app}.localhost");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await?;

    // v1
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}\n{}",
        c.api.log(&id).await?,
        c.logs()
    );
    assert_eq!(
        d["commit"].as_str(),
        Some(repo.git(&["rev-parse", "HEAD"])?.as_str())
    );
    assert_eq!(d["node"], c.node.as_str());
    c.serves(&host, &version_marker("1")).await?;
    // With a port in the Host header too, as a browser sends it.
    c.serves(&format!("{host}:{}", c.ingress), &version_marker("1"))
        .await?;

    // v2: a new commit, deployed; Caddy serves it and exactly one container of the app runs.
    repo.write("www/index.html", &hello_page("2"))?;
    let sha2 = repo.commit("v2")?;
    let (id2, d2) = c.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(
        d2["status"],
        "succeeded",
        "{d2}\n{}",
        c.api.log(&id2).await?
    );
    assert_eq!(d2["commit"], sha2.as_str());
    c.serves(&host, &version_marker("2")).await?;
    // The old container is stopped right after the switch (its stop may take the app's grace time).
    berth_tests::eventually(
        "exactly one container of the app to run",
        Duration::from_secs(30),
        || async { (running_containers(&app, &c.node).ok()?.len() == 1).then_some(()) },
    )
    .await?;

    // A health check that never passes: failed within its deadline, v2 still answers.
    let (s, _) = c
        .api
        .patch(
            &format!("/api/v1/apps/{app}"),
            json!({"health_check": {"path": "/no-such-page", "deadline_s": 5, "interval_ms": 100, "retries": 100}}),
        )
        .await?;
    assert_eq!(s, 200);
    repo.write("www/index.html", &hello_page("3"))?;
    repo.commit("v3")?;
    let started = std::time::Instant::now();
    let (id3, d3) = c.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(d3["status"], "failed", "{d3}");
    let err = d3["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("health"),
        "error names the health check: {err}"
    );
    let probe_started = d3["started_at"].as_u64().unwrap_or(0);
    let took = d3["finished_at"].as_u64().unwrap_or(u64::MAX) - probe_started;
    assert!(
        took < 5_000 + 60_000,
        "the deadline bounds it (build included): {took} ms"
    );
    assert!(started.elapsed() < DEPLOY);
    let log3 = c.api.log(&id3).await?;
    assert!(
        log3.contains("health"),
        "the log tells about the probe:\n{log3}"
    );
    c.serves(&host, &version_marker("2")).await?;
    let running = running_containers(&app, &c.node)?;
    assert_eq!(
        running.len(),
        1,
        "the failed container is removed: {running:?}"
    );

    // The list is newest first.
    let (_, list) = c
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await?;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, vec![id3.as_str(), id2.as_str(), id.as_str()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_update_and_failed_health_check_with_berth_up() {
    let mut c = Cluster::up().await.expect("berth up");
    deploy_flow(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_with_coordinator_and_node_as_separate_processes() {
    let mut c = Cluster::separate().await.expect("separate cluster");
    deploy_flow(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_end_failed_with_the_reason_in_the_log() {
    let mut c = Cluster::up().await.expect("berth up");
    let src = TempDir::with_prefix("bad-src").unwrap();

    // A Dockerfile that fails: Docker's own error text is in the error and the log.
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    repo.write("Dockerfile", "FROM busybox\nRUN echo building && exit 3\n")
        .unwrap();
    repo.commit("broken build").unwrap();
    let app = unique("broken");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "failed", "{d}");
    let log = c.api.log(&id).await.unwrap();
    assert!(
        log.contains("returned a non-zero code: 3"),
        "docker's error in the log:\n{log}"
    );
    assert!(
        d["error"]
            .as_str()
            .unwrap_or_default()
            .contains("non-zero code: 3"),
        "{d}"
    );

    // A repository that cannot be reached is refused when the app is created; one that goes
    // away after that fails the deployment with git's reason.
    let app2 = unique("noclone");
    let missing = src.path().join("does-not-exist.git");
    let (s, v) = c
        .api
        .post(
            "/api/v1/apps",
            json!({"name": app2, "repo": missing.to_string_lossy(), "port": 8080}),
        )
        .await
        .unwrap();
    assert_eq!(s, 422, "{v}");
    let gone = GitRepo::from_dir(
        &src.path().join("gone"),
        &repo_root().join("examples/hello"),
    )
    .unwrap();
    c.create_app(json!({"name": app2, "repo": gone.url(), "port": 8080}))
        .await
        .unwrap();
    std::fs::remove_dir_all(&gone.bare).unwrap();
    let (_, d2) = c.api.deploy_and_wait(&app2, None, DEPLOY).await.unwrap();
    assert_eq!(d2["status"], "failed", "{d2}");
    assert!(
        d2["error"].as_str().unwrap_or_default().contains("git"),
        "{d2}"
    );

    // A ref that does not exist.
    let (_, d3) = c
        .api
        .deploy_and_wait(&app, Some("no-such-branch"), DEPLOY)
        .await
        .unwrap();
    assert_eq!(d3["status"], "failed", "{d3}");

    // A container that exits at once: failed fast, not at the probe deadline.
    let repo4 = GitRepo::from_dir(
        &src.path().join("exits"),
        &repo_root().join("examples/hello"),
    )
    .unwrap();
    repo4
        .write(
            "Dockerfile",
            "FROM busybox\nCMD [\"sh\", \"-c\", \"echo about to crash; exit 7\"]\n",
        )
        .unwrap();
    repo4.commit("crashes").unwrap();
    let app4 = unique("crash");
    c.create_app(json!({"name": app4, "repo": repo4.url(), "port": 8080, "health_check": {"deadline_s": 120}}))
        .await
        .unwrap();
    let (id4, d4) = c
        .api
        .deploy_and_wait(&app4, None, Duration::from_secs(100))
        .await
        .unwrap();
    assert_eq!(d4["status"], "failed", "{d4}");
    assert!(
        d4["error"].as_str().unwrap_or_default().contains("exited"),
        "{d4}"
    );
    let log4 = c.api.log(&id4).await.unwrap();
    assert!(
        log4.contains("about to crash"),
        "the container's last lines are kept:\n{log4}"
    );
    assert!(running_containers(&app4, &c.node).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_auth_and_bad_input() {
    let mut c = Cluster::up().await.expect("berth up");
    let http = berth_tests::http_client().build().expect("an HTTP client");
    let base = c.api.base.clone();

    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "healthz needs no token");
    let r = http
        .get(format!("{base}/api/v1/apps"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("Authorization"),
        "{body}"
    );
    let r = http
        .get(format!("{base}/api/v1/apps"))
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/api/v1/apps"))
        .json(&json!({"name": "x", "repo": "/r", "port": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no app is created without a token");

    // No webhook secret configured: every delivery is refused, signed or not.
    let r = http
        .post(format!("{base}/api/v1/webhooks/github"))
        .header("x-github-event", "ping")
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("webhook_secret"),
        "{body}"
    );

    let app = unique("valid");
    // The one app that is created needs a repository the coordinator can reach.
    let src = TempDir::with_prefix("valid-src").unwrap();
    let repo = GitRepo::init(src.path()).unwrap();
    repo.commit("empty").unwrap();
    let ok = json!({"name": app, "repo": repo.url(), "port": 8080});
    let cases = [
        (
            json!({"name": "Not_A_Label", "repo": "/r", "port": 80}),
            400,
            "DNS label",
        ),
        (
            json!({"name": "p", "repo": "/r", "port": 70000}),
            400,
            "out of range",
        ),
        (
            json!({"name": "p", "repo": "/r", "port": 80, "dockerfile": "../Dockerfile"}),
            400,
            "inside the repository",
        ),
        (
            json!({"name": "p", "repo": "/r", "port": 80, "context": "/etc"}),
            400,
            "absolute",
        ),
        (
            json!({"name": "p", "repo": "/r", "port": 80, "domains": ["not a domain"]}),
            400,
            "valid domain",
        ),
        (json!({"name": "p", "repo": "/r"}), 400, "port"),
        (
            json!({"name": "p", "repo": "/r", "port": 80, "bogus": 1}),
            400,
            "bogus",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, v) = c.api.post("/api/v1/apps", body.clone()).await.unwrap();
        assert_eq!(s, status, "{body} → {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(needle),
            "{body} → {v}"
        );
    }
    let (s, _) = c.api.get("/api/v1/apps").await.unwrap();
    assert_eq!(s, 200);
    c.create_app(ok.clone()).await.unwrap();
    let (s, v) = c.api.post("/api/v1/apps", ok.clone()).await.unwrap();
    assert_eq!(s, 409, "{v}");
    let other = unique("other");
    let (s, v) = c
        .api
        .post("/api/v1/apps", json!({"name": other, "repo": "/r", "port": 80, "domains": [format!("{app}.localhost")]}))
        .await
        .unwrap();
    assert_eq!(s, 409, "a domain serves one app: {v}");
    let (s, v) = c.api.get("/api/v1/apps/nope-not-here").await.unwrap();
    assert_eq!(s, 404, "{v}");
    let (s, _) = c
        .api
        .post("/api/v1/apps/nope-not-here/deployments", json!({}))
        .await
        .unwrap();
    assert_eq!(s, 404);
    let (s, _) = c.api.get("/api/v1/deployments/nope").await.unwrap();
    assert_eq!(s, 404);
    let (s, v) = c
        .api
        .post(
            &format!("/api/v1/apps/{app}/deployments"),
            json!({"ref": "--upload-pack=x"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 400, "{v}");
    let (s, v) = c
        .api
        .patch(&format!("/api/v1/apps/{app}"), json!({"port": 0}))
        .await
        .unwrap();
    assert_eq!(s, 400, "{v}");
    let (_, v) = c.api.get(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert_eq!(v["port"], 8080, "a rejected patch changes nothing");
    let (s, _) = c.api.delete(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert_eq!(s, 204);
    let (s, _) = c.api.get(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_works_next_to_berth_up_without_flags() {
    let mut c = Cluster::up().await.expect("berth up");
    let src = TempDir::with_prefix("cli-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("cli");
    c.apps.push(app.clone());
    // The CLI finds the API through the client config `berth up` wrote: drop the token from env.
    let run = |args: &[&str]| {
        let mut cmd = c.berth();
        cmd.env_remove("BERTH_API__TOKEN")
            .env_remove("BERTH_API__LISTEN")
            .args(args);
        cmd.output().unwrap()
    };
    let out = run(&[
        "apps",
        "create",
        &app,
        "--repo",
        &repo.url(),
        "--port",
        "8080",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["deploy", &app, "--wait"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for status in ["queued", "succeeded"] {
        assert!(
            stdout.contains(status),
            "deploy --wait shows {status}:\n{stdout}"
        );
    }
    c.serves(&format!("{app}.localhost"), &version_marker("1"))
        .await
        .unwrap();

    let out = run(&["--json", "deployments", &app]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["status"], "succeeded");
    let out = run(&["nodes"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&c.node));
    let out = run(&["apps", "webhook", &app]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains(&format!("{}/api/v1/webhooks/github", c.api.base)),
        "{text}"
    );
    assert!(text.contains("push"), "{text}");

    // A failing deploy exits non-zero.
    repo.write("Dockerfile", "FROM busybox\nRUN exit 1\n")
        .unwrap();
    repo.commit("broken").unwrap();
    let out = run(&["deploy", &app, "--wait"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed"));
    let out = run(&["apps", "show", "no-such-app"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
