//! A replica the engine starts again by itself stays served (issue 12). Its container publishes
//! the app's port on an ephemeral host port; started again — by its restart policy after the
//! app crashed, or by the engine's own restart — it comes back on another one, and the routes
//! must dial that one. One node with its own `dockerd`, so the engine can be killed.
//!
//! A node whose Caddy answers but cannot take its config yet (a port still held, a config load
//! that takes long) tries again a while instead of exiting.

use std::time::Duration;

use anyhow::{anyhow, Result};
use berth_tests::{
    eventually, ingress_get, repo_root, unique, version_marker, Cluster, Engine, GitRepo, TempDir,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// `docker inspect` of one container through `engine`, formatted by `format`.
fn inspect(engine: &Engine, id: &str, format: &str) -> Result<String> {
    let out = engine
        .docker()
        .args(["inspect", "-f", format, id])
        .output()?;
    if !out.status.success() {
        return Err(anyhow!(
            "docker inspect {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The host port the container publishes 8080 on, and how many times the engine restarted it.
fn port_and_restarts(engine: &Engine, id: &str) -> Result<(String, u32)> {
    let got = inspect(
        engine,
        id,
        "{{.State.Running}} {{.RestartCount}} {{(index (index .NetworkSettings.Ports \"8080/tcp\") 0).HostPort}}",
    )?;
    match got.split(' ').collect::<Vec<_>>()[..] {
        ["true", restarts, port] => Ok((port.to_string(), restarts.parse()?)),
        _ => Err(anyhow!("not running: {got}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_engine_restarts_on_a_new_port_stays_served() {
    let mut f = berth_tests::Fleet::start(1).await.unwrap();
    let src = TempDir::with_prefix("restarts").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("restarts");
    let host = format!("{app}.localhost");
    f.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await
        .unwrap();
    let (id, d) = f.api.deploy_and_wait(&app, None, WAIT).await.unwrap();
    let log = f.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{log}\n{}", f.logs());
    let marker = version_marker("1");
    f.serves(0, &host, &marker).await.unwrap();
    let node = f.nodes[0].name.clone();
    let running = f.nodes[0].engine.running_containers(&app, &node).unwrap();
    let [cid] = &running[..] else {
        panic!("one replica runs: {running:?}");
    };
    let (port, restarts) = port_and_restarts(&f.nodes[0].engine, cid).unwrap();

    // The app crashes (its process tree killed from outside): the restart policy starts the
    // container again, and the engine publishes it on a new port.
    let pid = inspect(&f.nodes[0].engine, cid, "{{.State.Pid}}").unwrap();
    let crashed = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let engine = &f.nodes[0].engine;
    let moved = eventually("the engine to restart the replica", WAIT, || async {
        port_and_restarts(engine, cid)
            .ok()
            .filter(|(_, n)| *n > restarts)
    })
    .await
    .unwrap();
    assert_ne!(
        moved.0, port,
        "the restarted container is published on another port (else this test tells nothing)"
    );
    f.serves(0, &host, &marker)
        .await
        .unwrap_or_else(|e| panic!("served after the crash: {e}\n{}", f.logs()));
    eprintln!(
        "served again {:.1} s after the crash (port {port} → {})",
        crashed.elapsed().as_secs_f64(),
        moved.0
    );

    // The engine dies with everything on it (a power cut) and boots again: it starts the
    // replica again (`unless-stopped`), and the app is served where it was.
    f.nodes[0].engine.kill();
    let cut = std::time::Instant::now();
    f.nodes[0].engine.restart().await.unwrap();
    let engine = &f.nodes[0].engine;
    eventually("the engine to start the replica again", WAIT, || async {
        port_and_restarts(engine, cid).ok()
    })
    .await
    .unwrap();
    f.serves(0, &host, &marker)
        .await
        .unwrap_or_else(|e| panic!("served after the engine's restart: {e}\n{}", f.logs()));
    eprintln!(
        "served again {:.1} s after the engine was killed",
        cut.elapsed().as_secs_f64()
    );

    // And it still deploys.
    repo.write("www/index.html", &berth_tests::hello_page("2"))
        .unwrap();
    repo.commit("version 2").unwrap();
    let (id, d) = f.api.deploy_and_wait(&app, None, WAIT).await.unwrap();
    let log = f.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{log}\n{}", f.logs());
    f.serves(0, &host, &version_marker("2")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_caddy_cannot_take_its_config_yet_tries_again() {
    let mut c = Cluster::separate().await.unwrap();
    // The port comes free after the node's first two tries (at once, after 1 s) failed.
    c.restart_node_while_ingress_is_taken(Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
    // The new Caddy started with its boot config only: the node set the berth server up in it.
    let (status, body) = ingress_get(c.ingress, "nothing-here.example.com")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no app is deployed"), "{body}");
}
