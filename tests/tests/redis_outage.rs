//! Redis outages, through a separate cluster (its own `redis-server` with AOF `everysec`, Caddy,
//! `berth coordinator` and `berth node` as processes): Redis is really stopped (SIGTERM, so it
//! syncs its append-only file and exits) and started again on the same port and data dir.
//!
//! While it is away the API answers 503 with a message that names Redis, promptly; the daemons
//! stay up; when it is back the same calls work, and a deployment caught by the outage ends
//! `succeeded` with nothing of its log lost.

use std::process::Stdio;
use std::time::Duration;

use berth_tests::{eventually, repo_root, unique, version_marker, Cluster, GitRepo, TempDir};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

const DEPLOY: Duration = Duration::from_secs(180);

/// A client that gives up after 5 s: an API that hangs on a missing Redis fails the test
/// instead of making it wait (a hang check, not a timing assertion).
fn impatient() -> reqwest::Client {
    berth_tests::http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// `method path` with the cluster's token through `http`: status and JSON body.
async fn call(
    c: &Cluster,
    http: &reqwest::Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http
        .request(method.clone(), format!("{}{path}", c.api.base))
        .bearer_auth(&c.api.token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = match r.send().await {
        Ok(resp) => resp,
        Err(e) => panic!("{method} {path}: no answer ({e}):\n{}", c.logs()),
    };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Asserts that a 503 answer says Redis is unreachable, where, and that it is worth retrying.
fn says_redis_is_away(what: &str, status: u16, body: &Value, redis_port: u16) {
    let msg = body["error"].as_str().unwrap_or_default();
    assert_eq!(status, 503, "{what}: {body}");
    assert!(
        msg.contains(&format!("Redis is unreachable at 127.0.0.1:{redis_port}"))
            && msg.contains("try again shortly"),
        "{what}: {msg}"
    );
}

/// Runs the `berth` CLI of the cluster with `args`: exit code, stdout, stderr.
fn berth(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let out = c.berth().args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Fails (with their output) if the coordinator or the node process exited.
fn daemons_alive(c: &mut Cluster) {
    let logs = c.logs();
    for p in c.procs.iter_mut() {
        if p.name.starts_with("berth") {
            assert!(!p.exited(), "{} exited:\n{logs}", p.name);
        }
    }
}

/// The example app with a Dockerfile of its own: `RUN sleep <build_s>` before the page, so the
/// build lasts a while.
fn hello_repo(dir: &TempDir, build_s: u32, version: &str) -> GitRepo {
    let repo = GitRepo::from_dir(dir.path(), &repo_root().join("examples/hello")).unwrap();
    write_version(&repo, build_s, version);
    repo.commit(&format!("v{version}")).unwrap();
    repo
}

fn write_version(repo: &GitRepo, build_s: u32, version: &str) {
    repo.write(
        "Dockerfile",
        &format!(
            "FROM busybox\nRUN echo building {version} && sleep {build_s}\nCOPY www /www\n\
             CMD [\"httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"]\n"
        ),
    )
    .unwrap();
    repo.write("www/index.html", &version_marker(version))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_503_while_redis_is_away_and_works_again_when_it_returns() {
    let mut c = Cluster::separate().await.expect("separate cluster");
    let port = c.redis_port().unwrap();
    let src = TempDir::with_prefix("outage-a").unwrap();
    let repo = hello_repo(&src, 0, "1");
    let app = unique("outa");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());

    // A deployment queued just before Redis goes: wherever the outage catches it (waiting for
    // its node, fetching, building), it resumes when Redis is back.
    write_version(&repo, 0, "2");
    repo.commit("v2").unwrap();
    let queued = c.api.deploy(&app, None).await.unwrap();
    c.stop_redis().unwrap();
    let http = impatient();
    let other = unique("outb");
    use reqwest::Method;
    let calls: Vec<(&str, Method, String, Option<Value>)> = vec![
        ("list apps", Method::GET, "/api/v1/apps".into(), None),
        (
            "create an app",
            Method::POST,
            "/api/v1/apps".into(),
            Some(json!({"name": other, "repo": repo.url(), "port": 8080})),
        ),
        (
            "deploy",
            Method::POST,
            format!("/api/v1/apps/{app}/deployments"),
            Some(json!({})),
        ),
        (
            "a deployment's status",
            Method::GET,
            format!("/api/v1/deployments/{id}"),
            None,
        ),
        (
            "show an app",
            Method::GET,
            format!("/api/v1/apps/{app}"),
            None,
        ),
        ("list nodes", Method::GET, "/api/v1/nodes".into(), None),
    ];
    // Twice: the first calls find the connection broken, the later ones find it known down.
    for round in 0..2 {
        for (what, method, path, body) in &calls {
            let (s, v) = call(&c, &http, method.clone(), path, body.clone()).await;
            says_redis_is_away(&format!("{what} (round {round})"), s, &v, port);
        }
    }
    // The health check says so too, without a token.
    let r = http
        .get(format!("{}/healthz", c.api.base))
        .send()
        .await
        .expect("healthz answers");
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "unavailable", "{v}");
    says_redis_is_away("healthz", 503, &v, port);
    // The CLI prints the message, not a generic error.
    let (code, _, err) = berth(&c, &["apps", "list"]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("Redis is unreachable at 127.0.0.1:{port}"))
            && err.contains("(HTTP 503)"),
        "{err}"
    );
    daemons_alive(&mut c);

    c.start_redis_again().await.unwrap();
    // Once the coordinator has seen Redis back, every call works again; nothing was lost.
    eventually(
        "the API to answer again",
        Duration::from_secs(30),
        || async {
            let (s, _) = call(&c, &http, Method::GET, "/api/v1/apps", None).await;
            (s == 200).then_some(())
        },
    )
    .await
    .unwrap();
    let (s, v) = call(&c, &http, Method::GET, "/api/v1/apps", None).await;
    assert_eq!(s, 200);
    assert!(
        v.as_array().unwrap().iter().any(|a| a["name"] == app),
        "{v}"
    );
    let (s, v) = call(
        &c,
        &http,
        Method::GET,
        &format!("/api/v1/deployments/{id}"),
        None,
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("succeeded")), "{v}");
    let d = c.api.wait_terminal(&queued, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    c.serves(&format!("{app}.localhost"), &version_marker("2"))
        .await
        .unwrap();
    let r = http
        .get(format!("{}/healthz", c.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    c.create_app(json!({"name": other, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    write_version(&repo, 0, "3");
    repo.commit("v3").unwrap();
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    c.serves(&format!("{app}.localhost"), &version_marker("3"))
        .await
        .unwrap();
    let (code, out, err) = berth(&c, &["apps", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&other), "{out}");
    daemons_alive(&mut c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_caught_by_a_redis_outage_succeeds_once_redis_is_back() {
    let mut c = Cluster::separate().await.expect("separate cluster");
    let src = TempDir::with_prefix("outage-d").unwrap();
    let repo = hello_repo(&src, 0, "1");
    let app = unique("outd");
    let host = format!("{app}.localhost");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    c.serves(&host, &version_marker("1")).await.unwrap();

    // v2 builds for 3 s; Redis goes away while it does, for longer than a node's heartbeat
    // may be silent (`node.down_after_s`, 5 s), so the build ends, and the heartbeats stop,
    // while Redis is away.
    write_version(&repo, 3, "2");
    repo.commit("v2").unwrap();
    // Through the CLI, which waits the outage out (`--wait`).
    let mut cli = tokio::process::Command::from(c.berth());
    cli.args(["deploy", &app, "--wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut cli = cli.spawn().unwrap();
    let mut out = tokio::io::BufReader::new(cli.stdout.take().unwrap()).lines();
    let first = out.next_line().await.unwrap().unwrap_or_default();
    let id = first
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(first.ends_with("queued"), "{first}");
    c.api
        .wait_log("the build to run", &id, "building 2", DEPLOY)
        .await
        .unwrap();
    c.stop_redis().unwrap();
    // The outage: the old release keeps serving all along (routes are in every node's memory).
    let until = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < until {
        c.serves(&host, &version_marker("1")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    daemons_alive(&mut c);
    c.start_redis_again().await.unwrap();

    let d = c.api.wait_terminal(&id, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    c.serves(&host, &version_marker("2")).await.unwrap();
    // The CLI said why it waited, and ends as the deployment did.
    let mut rest = Vec::new();
    while let Some(line) = out.next_line().await.unwrap() {
        rest.push(line);
    }
    let status = cli.wait().await.unwrap();
    let mut err = String::new();
    cli.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(status.success(), "{rest:?}\n{err}");
    assert!(
        err.contains("waiting: Redis is unreachable at 127.0.0.1:"),
        "{err}"
    );
    // Nothing of its log was lost: the lines written while Redis was away arrived after.
    let log = c.api.log(&id).await.unwrap();
    for line in [
        "building 2",
        "built berth/",
        "started container",
        "deployment succeeded",
    ] {
        assert!(log.contains(line), "{line:?} missing from the log:\n{log}");
    }
    // The record of the first deployment and the app are still there (AOF).
    let (s, v) = c
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    daemons_alive(&mut c);
}
