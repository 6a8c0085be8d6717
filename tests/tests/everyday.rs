//! The everyday commands, run as the real `berth` binary against a real cluster: change an app
//! (`apps update`, `domains add|remove`, `scale`), apply its settings without a build
//! (`restart`), take it out of service and back (`stop`, `start`), find it (`open`, `ps`,
//! `log <app>`), and rollbacks that start the release's own container again, even while it
//! still drains.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use berth_tests::github::webhook_secret;
use berth_tests::{
    containers, hello_page, ingress_get, repo_root, running_containers, sh, unique, version_marker,
    Cluster, GitRepo, TempDir,
};
use serde_json::Value;

const DEPLOY: Duration = Duration::from_secs(180);
const SECRET: &str = "everyday-secret";

/// Runs `berth <args>`; answers the exit code, stdout and stderr.
fn berth(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    let out = c.berth().args(args).output().expect("berth runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `berth <args>` and fails unless it exits 0; answers stdout.
fn ok(c: &Cluster, args: &[&str]) -> Result<String> {
    let (code, out, err) = berth(c, args);
    ensure!(code == 0, "berth {args:?} exited {code}:\n{out}\n{err}");
    Ok(out)
}

/// The app's newest deployment record.
async fn latest(c: &Cluster, app: &str) -> Result<Value> {
    let (_, v) = c
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await?;
    v.get(0).cloned().context("no deployment")
}

/// The short id (12 characters) of a deployment's container.
fn short(d: &Value) -> String {
    let c = d["container"].as_str().unwrap_or_default();
    c[..12.min(c.len())].to_string()
}

/// Whether the main engine runs the container.
fn running(id: &str) -> bool {
    sh(std::process::Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", id]))
        .is_ok_and(|s| s.trim() == "true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_restart_stop_start_and_find_an_app_from_the_cli() {
    let mut c = Cluster::up_with(&webhook_secret(SECRET))
        .await
        .expect("berth up");
    let r = everyday(&mut c).await;
    if r.is_err() {
        eprintln!("--- cluster log ---\n{}", c.logs());
    }
    r.unwrap();
}

async fn everyday(c: &mut Cluster) -> Result<()> {
    let src = TempDir::with_prefix("everyday-src")?;
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    let app = unique("day");
    c.apps.push(app.clone());
    let host = format!("{app}.localhost");
    let url = format!("http://{host}:{}/", c.ingress);
    ok(
        c,
        &[
            "apps",
            "create",
            &app,
            "--repo",
            &repo.url(),
            "--port",
            "8080",
        ],
    )?;

    // `apps update`: nothing given is an error that says what to do; variables are set one by
    // one; a runtime change says how to apply it.
    let (code, _, err) = berth(c, &["apps", "update", &app]);
    ensure!(code == 1 && err.contains("nothing to change"), "{err}");
    let out = ok(
        c,
        &[
            "apps",
            "update",
            &app,
            "--env",
            "GREETING=hi",
            "--env",
            "OTHER=1",
            "--drain",
            "1",
            "--health-deadline",
            "20",
        ],
    )?;
    ensure!(out.contains(&format!("berth restart {app}")), "{out}");
    ok(
        c,
        &[
            "apps",
            "update",
            &app,
            "--unset-env",
            "OTHER",
            "--no-auto-deploy",
        ],
    )?;
    let (_, a) = c.api.get(&format!("/api/v1/apps/{app}")).await?;
    ensure!(
        a["env"]["runtime"] == serde_json::json!({"GREETING": "hi"}),
        "{a}"
    );
    ensure!(a["drain_s"] == 1 && a["auto_deploy"] == false, "{a}");
    ensure!(a["health_check"]["deadline_s"] == 20, "{a}");

    // A deploy that succeeds prints the URL that works; `open` prints the same.
    let out = ok(c, &["deploy", &app, "--wait"])?;
    ensure!(out.contains(&format!("is live at {url}")), "{out}");
    ensure!(ok(c, &["open", &app])?.trim() == url, "open");
    c.serves(&host, &version_marker("1")).await?;
    let v1 = latest(c, &app).await?;

    // `log <app>`: the latest deployment's log; `logs <deployment>` hints at `log`.
    let out = ok(c, &["log", &app])?;
    ensure!(out.contains("deployment succeeded"), "{out}");
    let id = v1["id"].as_str().unwrap_or_default();
    let (code, _, err) = berth(c, &["logs", id]);
    ensure!(
        code == 1 && err.contains(&format!("berth log {id}")),
        "{err}"
    );

    // `restart`: new container, same image, the app's settings of now.
    ok(c, &["apps", "update", &app, "--env", "GREETING=hello"])?;
    let out = ok(c, &["restart", &app, "--wait"])?;
    ensure!(out.contains("succeeded"), "{out}");
    let restarted = latest(c, &app).await?;
    ensure!(restarted["kind"] == "restart", "{restarted}");
    ensure!(restarted["image"] == v1["image"], "{restarted}\n{v1}");
    ensure!(restarted["container"] != v1["container"], "a new container");
    let env = sh(std::process::Command::new("docker").args([
        "inspect",
        "-f",
        "{{json .Config.Env}}",
        &short(&restarted),
    ]))?;
    ensure!(env.contains("GREETING=hello"), "{env}");
    c.serves(&host, &version_marker("1")).await?;

    // `ps`: the serving container, with a header.
    let out = ok(c, &["ps", &app])?;
    for needle in ["NODE", "AGE", "serving", &short(&restarted)] {
        ensure!(out.contains(needle), "{needle:?} in:\n{out}");
    }

    // A rollback to a release whose container is stopped starts that container again.
    repo.write("www/index.html", &hello_page("2"))?;
    repo.commit("v2")?;
    ok(c, &["deploy", &app, "--wait"])?;
    c.serves(&host, &version_marker("2")).await?;
    berth_tests::eventually("the restarted container to stop", DEPLOY, || async {
        (!running(&short(&restarted))).then_some(())
    })
    .await?;
    ok(c, &["rollback", &app, "--wait"])?;
    let back = latest(c, &app).await?;
    ensure!(short(&back) == short(&restarted), "{back}\n{restarted}");
    let log = c.api.log(back["id"].as_str().unwrap_or_default()).await?;
    ensure!(
        log.contains("starting the release's stopped container"),
        "{log}"
    );
    c.serves(&host, &version_marker("1")).await?;

    // A rollback while the replaced release still drains takes its running container, and
    // the drain that was to stop it leaves it serving.
    ok(c, &["apps", "update", &app, "--drain", "6"])?;
    repo.write("www/index.html", &hello_page("3"))?;
    repo.commit("v3")?;
    ok(c, &["deploy", &app, "--wait"])?;
    c.serves(&host, &version_marker("3")).await?;
    ensure!(running(&short(&back)), "v1 drains for 6 s");
    ok(c, &["rollback", &app, "--wait"])?;
    let again = latest(c, &app).await?;
    ensure!(short(&again) == short(&back), "{again}\n{back}");
    let log = c.api.log(again["id"].as_str().unwrap_or_default()).await?;
    ensure!(log.contains("still running: it was draining"), "{log}");
    tokio::time::sleep(Duration::from_secs(9)).await;
    ensure!(running(&short(&again)), "the v3 drain left it running");
    c.serves(&host, &version_marker("1")).await?;

    // `stop`: no route, containers stopped but kept; deploys refused with a hint.
    let out = ok(c, &["stop", &app])?;
    ensure!(out.contains(&format!("berth start {app}")), "{out}");
    berth_tests::eventually("the route to go", Duration::from_secs(10), || async {
        match ingress_get(c.ingress, &host).await {
            Ok((200, _)) => None,
            _ => Some(()),
        }
    })
    .await?;
    berth_tests::eventually(
        "the containers to stop",
        Duration::from_secs(30),
        || async {
            running_containers(&app, &c.node)
                .ok()
                .filter(|r| r.is_empty())
        },
    )
    .await?;
    ensure!(!containers(&app, &c.node)?.is_empty(), "kept");
    let (code, _, err) = berth(c, &["deploy", &app]);
    ensure!(
        code == 1 && err.contains(&format!("berth start {app}")),
        "{err}"
    );
    let out = ok(c, &["ps", &app])?;
    ensure!(out.contains("is stopped"), "{out}");

    // `start`: the serving release's stopped container runs again.
    let out = ok(c, &["start", &app, "--wait"])?;
    ensure!(out.contains("succeeded"), "{out}");
    let started = latest(c, &app).await?;
    ensure!(started["kind"] == "start", "{started}");
    ensure!(short(&started) == short(&again), "{started}");
    c.serves(&host, &version_marker("1")).await?;
    let (code, _, err) = berth(c, &["start", &app]);
    ensure!(code == 1 && err.contains("not stopped"), "{err}");

    // `domains add|remove`: one more domain, served at once; the last one stays.
    let www = format!("www-{app}.localhost");
    ok(c, &["domains", "add", &app, &www])?;
    c.serves(&www, &version_marker("1")).await?;
    let (code, _, err) = berth(c, &["domains", "remove", &app, &host]);
    ensure!(code == 0, "{err}");
    let (code, _, err) = berth(c, &["domains", "remove", &app, &www]);
    ensure!(code == 1 && err.contains("only domain"), "{err}");

    // `scale` is `apps scale`.
    let out = ok(c, &["scale", &app, "1"])?;
    ensure!(out.contains("1 replicas"), "{out}");

    // The README's recipe for trying the webhook locally: a signed push of the repository's
    // branch deploys its newest commit.
    ok(c, &["apps", "update", &app, "--auto-deploy"])?;
    repo.write("www/index.html", &hello_page("4"))?;
    let sha = repo.commit("v4 by webhook")?;
    let out = sh(std::process::Command::new("bash")
        .arg(repo_root().join("scripts/webhook-push.sh"))
        .arg(repo.url())
        .env("BERTH_API", &c.api.base)
        .env("BERTH_GITHUB__WEBHOOK_SECRET", SECRET))?;
    ensure!(out.contains("queued 1 deployment"), "{out}");
    let pushed = latest(c, &app).await?;
    ensure!(pushed["ref"] == sha.as_str(), "{pushed}");
    ensure!(pushed["commit_message"] == "v4 by webhook", "{pushed}");
    let id = pushed["id"].as_str().unwrap_or_default();
    let done = c.api.wait_terminal(id, DEPLOY).await?;
    ensure!(done["status"] == "succeeded", "{done}");
    c.serves(&www, &version_marker("4")).await?;
    Ok(())
}
