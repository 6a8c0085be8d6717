//! The test fleet on one machine: three nodes, each with its own Docker engine and Caddy, one
//! coordinator and one Redis ([`Fleet`]); and a registry, the only way two engines share an
//! image ([`Registry`]). After each, the machine's own engine still runs containers (an extra
//! engine once took `docker0` away when it stopped).

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{
    docker_cli, hello_page, repo_root, sh, unique, version_marker, Engine, Fleet, GitRepo, Load,
    Registry, TempDir, BASE_IMAGE,
};
use serde_json::json;

const DEPLOY: Duration = Duration::from_secs(180);

/// Whether the engine `docker` runs against has an image by that name.
fn has_image(mut docker: Command, image: &str) -> bool {
    docker
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every container of `app` on the engine `docker` runs against, whichever node made it.
fn app_containers(mut docker: Command, app: &str) -> Vec<String> {
    sh(docker.args(["ps", "-aq", "--filter", &format!("label=berth.app={app}")]))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The machine's own engine still runs a container.
fn main_engine_runs_a_container() {
    sh(docker_cli(None).args(["run", "--rm", BASE_IMAGE, "true"]))
        .expect("the main engine runs a container after the extra engines stopped");
}

async fn three_nodes(f: &mut Fleet) -> anyhow::Result<()> {
    // (a) Three live nodes, each with its own ingress.
    let (s, nodes) = f.api.get("/api/v1/nodes").await?;
    assert_eq!(s, 200, "{nodes}");
    let listed = nodes.as_array().expect("a node list");
    assert_eq!(listed.len(), 3, "{nodes}");
    for n in &f.nodes {
        let info = listed
            .iter()
            .find(|l| l["name"] == n.name.as_str())
            .unwrap_or_else(|| panic!("{} listed: {nodes}", n.name));
        assert_eq!(info["status"], "ready", "{info}");
        assert_eq!(info["ingress_http"], n.ingress, "{info}");
    }

    // (b) A deployment runs on the engine of the node it names, and only there.
    let src = TempDir::with_prefix("fleet-src")?;
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    let app = unique("fleet");
    let host = format!("{app}.localhost");
    f.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await?;
    let t = Instant::now();
    let (id, d) = f.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(d["status"], "succeeded", "{d}\n{}", f.api.log(&id).await?);
    eprintln!("fleet: deployed in {:?}", t.elapsed());
    let node = d["node"].as_str().expect("the deployment names its node");
    let i = f.node_index(node).expect("a node of this fleet");
    let engine = &f.nodes[i].engine;
    assert_eq!(engine.running_containers(&app, node)?.len(), 1);
    assert!(
        has_image(engine.docker(), &format!("berth/{app}:{id}")),
        "the image is on the engine that built it"
    );
    for (j, other) in f.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
        assert!(
            app_containers(other.engine.docker(), &app).is_empty(),
            "no container of {app} on node {j}'s engine"
        );
        assert!(
            sh(other
                .engine
                .docker()
                .args(["images", "-q", &format!("berth/{app}")]))?
            .is_empty(),
            "node {j}'s engine has no image of {app}: the engines share nothing"
        );
    }
    assert!(
        app_containers(docker_cli(None), &app).is_empty(),
        "no container of {app} on the main engine"
    );
    // The routing mesh: every node's Caddy carries the route, to the one replica on node i.
    for j in 0..f.nodes.len() {
        f.serves(j, &host, &version_marker("1")).await?;
    }

    // The helpers later fleet tests lose a server with: kill its berth process and its engine
    // (with the app's container), then bring both back.
    f.kill_node(i);
    assert!(!f.nodes[i].engine.running());
    assert!(
        !f.nodes[i]
            .engine
            .docker()
            .arg("info")
            .output()?
            .status
            .success(),
        "a killed engine does not answer"
    );
    // Its Caddy waits for an upstream its dead responder cannot name: no 200, whether it
    // answers 503 or the client gives up first.
    let status = berth_tests::ingress_get(f.nodes[i].ingress, &host).await;
    assert!(
        !matches!(status, Ok((200, _))),
        "the app died with its engine"
    );
    // No registry here: the failover cannot run the release anywhere else, and says why.
    let failover = berth_tests::eventually("the failover to end", DEPLOY, || async {
        let (_, list) = f
            .api
            .get(&format!("/api/v1/apps/{app}/deployments"))
            .await
            .ok()?;
        let d = list
            .as_array()?
            .iter()
            .find(|d| d["kind"] == "failover")?
            .clone();
        (d["status"] == "failed").then_some(d)
    })
    .await?;
    let error = failover["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("{node}: down"))
            && error.contains(&format!("the release's image is only on {node}'s engine")),
        "{failover}"
    );
    let t = Instant::now();
    f.restart_node(i).await?;
    eprintln!("fleet: node back in {:?}", t.elapsed());
    let engine = &f.nodes[i].engine;
    assert!(has_image(engine.docker(), BASE_IMAGE), "its images survive");
    assert_eq!(
        engine.containers(&app, node)?.len(),
        1,
        "its container is still there"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_each_deploy_on_their_own_engine() {
    let t = Instant::now();
    let mut f = Fleet::start(3).await.expect("a fleet of 3");
    eprintln!("fleet: 3 nodes up in {:?}", t.elapsed());
    three_nodes(&mut f)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));
    let t = Instant::now();
    drop(f);
    eprintln!("fleet: dropped in {:?}", t.elapsed());
    main_engine_runs_a_container();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_share_an_image_only_through_the_registry() {
    let t = Instant::now();
    let (a, b, registry) =
        tokio::try_join!(Engine::start(), Engine::start(), Registry::start()).expect("start");
    eprintln!(
        "registry: two engines and a registry up in {:?}",
        t.elapsed()
    );

    // An image only engine A has: the base image plus a file.
    let mark = unique("mark");
    let image = format!("{}/berth/shared:{mark}", registry.addr());
    let maker = unique("maker");
    sh(a.docker().args([
        "run",
        "--name",
        &maker,
        BASE_IMAGE,
        "sh",
        "-c",
        &format!("echo {mark} > /mark"),
    ]))
    .unwrap();
    sh(a.docker().args(["commit", &maker, &image])).unwrap();
    assert!(!has_image(b.docker(), &image), "B does not have it yet");
    assert!(!has_image(docker_cli(None), &image), "nor the main engine");

    let t = Instant::now();
    sh(a.docker().args(["push", &image]))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", registry.log_text()));
    sh(b.docker().args(["pull", &image]))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", registry.log_text()));
    eprintln!("registry: pushed and pulled in {:?}", t.elapsed());
    let out = sh(b.docker().args(["run", "--rm", &image, "cat", "/mark"])).unwrap();
    assert_eq!(out, mark, "B runs what A made");
    assert!(
        !has_image(docker_cli(None), &image),
        "the main engine took no part"
    );

    drop((a, b, registry));
    main_engine_runs_a_container();
}

/// The example app (`drain_s` 1), created under a fresh name from `prefix` and deployed once:
/// its source dir (keep it), name, deployment id and record.
async fn hello_deployed(
    f: &mut Fleet,
    prefix: &str,
) -> anyhow::Result<(TempDir, GitRepo, String, String, serde_json::Value)> {
    let src = TempDir::with_prefix(prefix)?;
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    let app = unique(prefix);
    f.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await?;
    let (id, d) = f.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(d["status"], "succeeded", "{d}\n{}", f.api.log(&id).await?);
    Ok((src, repo, app, id, d))
}

/// Waits for a `failover` deployment of `app` that succeeded (other than `not`).
async fn succeeded_failover(
    f: &Fleet,
    app: &str,
    not: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    berth_tests::eventually("a failover deployment", DEPLOY, || async {
        let path = format!("/api/v1/apps/{app}/deployments");
        let (_, list) = f.api.get(&path).await.ok()?;
        list.as_array()?
            .iter()
            .find(|d| {
                d["kind"] == "failover" && d["status"] == "succeeded" && d["id"].as_str() != not
            })
            .cloned()
    })
    .await
}

/// Kill a node (its berth process and its engine) under an app it serves: its upstream leaves
/// every route, and the release runs again on another node, pulled from the registry.
async fn losing_a_node(f: &mut Fleet, registry: &Registry) -> anyhow::Result<()> {
    let (_src, _, app, id, d) = hello_deployed(f, "loss").await?;
    let host = format!("{app}.localhost");
    let image = d["image"].as_str().unwrap_or_default().to_string();
    let prefix = format!("127.0.0.1:{}/berth/{app}:", registry.port);
    assert!(
        image.starts_with(&prefix),
        "pushed to the registry: {image}"
    );
    let lost = d["node"].as_str().unwrap().to_string();
    let i = f.node_index(&lost).unwrap();
    for j in 0..f.nodes.len() {
        f.serves(j, &host, &version_marker("1")).await?;
    }

    let t = Instant::now();
    f.kill_node(i);
    // Every surviving Caddy serves the app again, from another node.
    let survivors: Vec<usize> = (0..f.nodes.len()).filter(|j| *j != i).collect();
    let failover = succeeded_failover(f, &app, None).await?;
    for j in &survivors {
        f.serves(*j, &host, &version_marker("1")).await?;
    }
    eprintln!(
        "fleet: app served again {:?} after its node was killed",
        t.elapsed()
    );
    let moved = failover["node"].as_str().unwrap_or_default();
    assert!(moved != lost && f.node_index(moved).is_some(), "{failover}");
    assert_eq!(failover["image"], image.as_str(), "{failover}");
    assert_eq!(failover["rollback_of"], id.as_str(), "{failover}");
    let fid = failover["id"].as_str().unwrap();
    let log = f.api.log(fid).await?;
    assert!(log.contains(&format!("node {lost} went down")), "{log}");
    assert!(
        log.contains("pulled"),
        "the image came from the registry: {log}"
    );
    // The dead node's upstream is gone from the route every node carries.
    let routes = f.redis_cli(&["HKEYS", "berth:routes"])?;
    assert!(routes.contains(&host), "{routes}");
    // Exactly one failover, however many passes saw the node down.
    let (_, list) = f
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await?;
    let failovers = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "failover");
    assert_eq!(failovers.count(), 1, "{list}");

    // Now only the daemon of the node serving it dies; its engine keeps the replica running.
    // The app moves again; when that daemon comes back, it stops the replica no route names
    // any more: one replica runs in the whole fleet, not two.
    f.restart_node(i).await?;
    let k = f.node_index(moved).unwrap();
    f.kill_berth(k);
    let second = succeeded_failover(f, &app, failover["id"].as_str()).await?;
    assert_ne!(second["node"], moved, "{second}");
    f.restart_node(k).await?;
    let engine = &f.nodes[k].engine;
    berth_tests::eventually(
        "the restarted node to stop its stale replica",
        DEPLOY,
        || async {
            engine
                .running_containers(&app, moved)
                .ok()?
                .is_empty()
                .then_some(())
        },
    )
    .await?;
    let running: usize = f
        .nodes
        .iter()
        .map(|n| {
            n.engine
                .running_containers(&app, &n.name)
                .map_or(0, |c| c.len())
        })
        .sum();
    assert_eq!(running, 1, "one replica in the fleet");
    for j in 0..f.nodes.len() {
        f.serves(j, &host, &version_marker("1")).await?;
    }
    Ok(())
}

/// Drain the node an app runs on while a kept-alive client that never retries goes through
/// another node's Caddy: the app moves (health-gated), the node ends cordoned with nothing of the
/// app running, and no request fails.
async fn draining(f: &mut Fleet) -> anyhow::Result<()> {
    let (_src, _, app, _, d) = hello_deployed(f, "drain").await?;
    let host = format!("{app}.localhost");
    let node = d["node"].as_str().unwrap().to_string();
    let i = f.node_index(&node).unwrap();
    let j = (0..f.nodes.len()).find(|j| *j != i).unwrap();
    f.serves(j, &host, &version_marker("1")).await?;

    let load = Load::start(f.nodes[j].ingress, &host, 4, Duration::ZERO);
    let (s, v) = f
        .api
        .post(&format!("/api/v1/nodes/{node}/drain"), json!({}))
        .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["cordoned"], true, "{v}");
    // Every app the node served moves (an earlier test's app may have landed there too); this
    // app's move is one of them.
    let moves = v["deployments"].as_array().unwrap().clone();
    let mut mine = None;
    for id in moves.iter().filter_map(|m| m.as_str()) {
        let m = f.api.wait_terminal(id, DEPLOY).await?;
        assert_eq!(m["status"], "succeeded", "{m}\n{}", f.api.log(id).await?);
        if m["app"] == app.as_str() {
            mine = Some(id.to_string());
        }
    }
    let mid = mine.unwrap_or_else(|| panic!("a move of {app}: {v}"));
    let mid = mid.as_str();
    let m = f.api.wait_terminal(mid, DEPLOY).await?;
    assert_eq!(m["status"], "succeeded", "{m}\n{}", f.api.log(mid).await?);
    assert_eq!(m["kind"], "failover", "{m}");
    assert_ne!(m["node"], node.as_str(), "{m}");
    let log = f.api.log(mid).await?;
    assert!(
        log.contains(&format!("node {node} is being drained")),
        "{log}"
    );
    // The old replica drains, then stops; the load went on throughout.
    let engine = &f.nodes[i].engine;
    berth_tests::eventually("the drained node's container to stop", DEPLOY, || async {
        engine
            .running_containers(&app, &node)
            .ok()?
            .is_empty()
            .then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = load.finish().await;
    eprintln!("fleet: drain under load: {n:?}");
    assert!(n.ok > 100, "{n:?}");
    anyhow::ensure!((n.failed, n.retried) == (0, 0), "no request failed: {n:?}");
    let (_, nodes) = f.api.get("/api/v1/nodes").await?;
    let me = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node.as_str());
    assert_eq!(me.unwrap()["cordoned"], true, "{nodes}");
    // Uncordoned again for what follows.
    let (s, v) = f
        .api
        .post(&format!("/api/v1/nodes/{node}/uncordon"), json!({}))
        .await?;
    assert_eq!(s, 200, "{v}");
    Ok(())
}

/// Whether the registry has the manifest `berth/<app>:<tag>`.
async fn in_registry(registry: &Registry, app: &str, tag: &str) -> anyhow::Result<bool> {
    let url = format!(
        "http://127.0.0.1:{}/v2/berth/{app}/manifests/{tag}",
        registry.port
    );
    let r = berth_tests::http_client()
        .build()
        .expect("an HTTP client")
        .head(url)
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await?;
    Ok(r.status().is_success())
}

/// Retention reaches the registry: with `keep_releases` 1, the release a deploy replaced is
/// deleted from the registry as it is pruned from the engines.
async fn registry_retention(f: &mut Fleet, registry: &Registry) -> anyhow::Result<()> {
    let (_src, repo, app, first, _) = hello_deployed(f, "keep").await?;
    assert!(in_registry(registry, &app, &first).await?);
    let path = format!("/api/v1/apps/{app}");
    let (s, v) = f.api.patch(&path, json!({"keep_releases": 1})).await?;
    assert_eq!(s, 200, "{v}");
    // The same commit again: the same image, so its manifest must stay for the kept release.
    let (again, d) = f.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(d["status"], "succeeded", "{d}");
    repo.write("www/index.html", &hello_page("2"))?;
    repo.commit("v2")?;
    let (second, d) = f.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(d["status"], "succeeded", "{d}");
    berth_tests::eventually(
        "the replaced release to leave the registry",
        DEPLOY,
        || async { (!in_registry(registry, &app, &first).await.ok()?).then_some(()) },
    )
    .await?;
    assert!(
        !in_registry(registry, &app, &again).await?,
        "{again} went with {first}"
    );
    assert!(
        in_registry(registry, &app, &second).await?,
        "the kept release stays"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_drains_a_node_and_survives_losing_one() {
    let registry = Registry::start().await.expect("a registry");
    let url = format!("127.0.0.1:{}", registry.port);
    let mut f = Fleet::start_with(3, &[("BERTH_REGISTRY__URL", &url)])
        .await
        .expect("a fleet of 3");
    registry_retention(&mut f, &registry)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));
    draining(&mut f)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));
    losing_a_node(&mut f, &registry)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));
    rebuilt_elsewhere(&mut f)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));
    drop(f);
    main_engine_runs_a_container();
}

/// The app's replicas as `GET /apps/{name}/replicas` lists them: (role, node, container,
/// deployment) of each.
async fn replicas_of(
    f: &Fleet,
    app: &str,
) -> anyhow::Result<Vec<(String, String, String, String)>> {
    let (s, v) = f.api.get(&format!("/api/v1/apps/{app}/replicas")).await?;
    anyhow::ensure!(s == 200, "replicas of {app}: {s} {v}");
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        text(r, "role"),
                        text(r, "node"),
                        text(r, "container"),
                        text(r, "deployment"),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The serving replicas' (node, deployment) pairs, sorted.
fn serving(list: &[(String, String, String, String)]) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = list
        .iter()
        .filter(|r| r.0 == "serving")
        .map(|r| (r.1.clone(), r.3.clone()))
        .collect();
    s.sort();
    s
}

/// An app of 3 replicas on 3 engines: a deploy rolls over them (kept-alive load through one
/// Caddy sees no failure), a rollback to the release on standby is a route change, a deploy
/// whose second replica fails its health check leaves every replica on the release before, a
/// lost node's replica is started again on the two others, and a scale down takes one out.
async fn replicas(f: &mut Fleet) -> anyhow::Result<()> {
    let src = TempDir::with_prefix("replicas")?;
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    let app = unique("rep");
    let host = format!("{app}.localhost");
    f.create_app(json!({
        "name": app, "repo": repo.url(), "port": 8080, "drain_s": 1,
        "replicas": 3, "standby_s": 120,
        "health_check": {"deadline_s": 8},
    }))
    .await?;

    // (a) Three replicas, one per engine, each serving through every Caddy.
    let (v1, d) = f.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(d["status"], "succeeded", "{d}\n{}", f.api.log(&v1).await?);
    let list = replicas_of(f, &app).await?;
    let on: Vec<(String, String)> = serving(&list);
    assert_eq!(on.len(), 3, "{list:?}");
    let mut nodes: Vec<&str> = on.iter().map(|(n, _)| n.as_str()).collect();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one replica per node: {list:?}");
    assert!(on.iter().all(|(_, dep)| dep == &v1), "{list:?}");
    for n in &f.nodes {
        assert_eq!(
            n.engine.running_containers(&app, &n.name)?.len(),
            1,
            "{} runs one replica on its own engine",
            n.name
        );
    }
    for j in 0..f.nodes.len() {
        f.serves(j, &host, &version_marker("1")).await?;
    }

    // (b) A rolling deploy under a kept-alive load that never retries.
    let load = Load::start(f.nodes[0].ingress, &host, 4, Duration::ZERO);
    repo.write("www/index.html", &hello_page("2"))?;
    repo.commit("v2")?;
    let (v2, d) = f.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(d["status"], "succeeded", "{d}\n{}", f.api.log(&v2).await?);
    let log = f.api.log(&v2).await?;
    assert!(log.contains("replica r2 switched in"), "{log}");
    let list = replicas_of(f, &app).await?;
    assert!(serving(&list).iter().all(|(_, dep)| dep == &v2), "{list:?}");
    let standby = list
        .iter()
        .filter(|r| r.0 == "standby" && r.3 == v1)
        .count();
    assert_eq!(
        standby, 3,
        "the previous release waits on standby: {list:?}"
    );
    for j in 0..f.nodes.len() {
        f.serves(j, &host, &version_marker("2")).await?;
    }

    // (c) Back to v1, whose replicas are on standby: only a route change.
    let t = Instant::now();
    let (s, r) = f
        .api
        .post(&format!("/api/v1/apps/{app}/rollback"), json!({}))
        .await?;
    assert!(s == 200 || s == 201 || s == 202, "{s} {r}");
    let rid = r["id"].as_str().expect("a rollback deployment").to_string();
    f.serves(0, &host, &version_marker("1")).await?;
    eprintln!("replicas: standby rollback served in {:?}", t.elapsed());
    let rb = f.api.wait_terminal(&rid, DEPLOY).await?;
    assert_eq!(rb["status"], "succeeded", "{rb}");
    let log = f.api.log(&rid).await?;
    assert!(log.contains("rolled back by a route change"), "{log}");
    let n = load.finish().await;
    eprintln!("replicas: load across a rolling deploy and a standby rollback: {n:?}");
    assert!(n.ok > 100, "{n:?}");
    anyhow::ensure!((n.failed, n.retried) == (0, 0), "no request failed: {n:?}");

    // (d) A release that is healthy only on the engine that builds it: its first replica
    // passes, the second fails, and every replica goes back to the release before.
    let (_, list) = f
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await?;
    let builder = list
        .as_array()
        .unwrap()
        .iter()
        .find_map(|d| d["node"].as_str())
        .unwrap()
        .to_string();
    let b = f.node_index(&builder).unwrap();
    let (_, subnet) = f.nodes[b].engine.bridge();
    let prefix = subnet.trim_end_matches("0/24");
    repo.write("www/index.html", &hello_page("3"))?;
    repo.write(
        "Dockerfile",
        &format!(
            "FROM busybox\nCOPY www /www\nCMD [\"sh\", \"-c\", \"if grep -q '^{prefix}' /etc/hosts; then exec httpd -f -p 8080 -h /www; else exec sleep 3600; fi\"]\n"
        ),
    )?;
    repo.commit("v3: healthy on one engine only")?;
    let before = serving(&replicas_of(f, &app).await?);
    let (v3, d) = f.api.deploy_and_wait(&app, None, DEPLOY).await?;
    let log = f.api.log(&v3).await?;
    assert_eq!(d["status"], "failed", "{d}\n{log}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("replica r1") && error.contains("back on the previous release"),
        "{d}\n{log}"
    );
    assert!(
        log.contains("replica r0 switched in"),
        "r0 served a while: {log}"
    );
    assert_eq!(serving(&replicas_of(f, &app).await?), before);
    for j in 0..f.nodes.len() {
        f.serves(j, &host, &version_marker("1")).await?;
    }
    // The failed release's containers go.
    berth_tests::eventually("the failed release's replicas to go", DEPLOY, || async {
        let left: usize = f
            .nodes
            .iter()
            .map(|n| {
                sh(n.engine.docker().args([
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=berth.deployment={v3}"),
                ]))
                .map_or(1, |o| o.lines().count())
            })
            .sum();
        (left == 0).then_some(())
    })
    .await?;

    // (e) Lose a node: its replica is started again on the two others; requests through the
    // surviving Caddies keep succeeding.
    let dead = 2;
    let survivor = 0;
    let load = Load::start(f.nodes[survivor].ingress, &host, 4, Duration::ZERO);
    let t = Instant::now();
    let lost = f.nodes[dead].name.clone();
    f.kill_node(dead);
    let fo = succeeded_failover(f, &app, None).await?;
    eprintln!(
        "replicas: failover succeeded {:?} after the kill",
        t.elapsed()
    );
    let list = replicas_of(f, &app).await?;
    let on = serving(&list);
    assert_eq!(on.len(), 3, "{fo}\n{list:?}");
    assert!(on.iter().all(|(n, _)| n != &lost), "{list:?}");
    assert!(
        list.iter()
            .filter(|r| r.0 == "serving")
            .all(|r| r.1 != lost),
        "{list:?}"
    );
    for j in [0, 1] {
        f.serves(j, &host, &version_marker("1")).await?;
    }
    let n = load.finish().await;
    eprintln!("replicas: load through a survivor while a node died: {n:?}");
    assert!(n.ok > 100, "{n:?}");
    assert_eq!(n.failed, 0, "no request failed: {n:?}");

    // (f) Scale down to 2 without a build.
    let (s, v) = f
        .api
        .patch(&format!("/api/v1/apps/{app}"), json!({"replicas": 2}))
        .await?;
    assert_eq!(s, 200, "{v}");
    let scaled = berth_tests::eventually("a scale deployment", DEPLOY, || async {
        let (_, list) = f
            .api
            .get(&format!("/api/v1/apps/{app}/deployments"))
            .await
            .ok()?;
        list.as_array()?
            .iter()
            .find(|d| d["kind"] == "scale" && d["status"] == "succeeded")
            .cloned()
    })
    .await?;
    assert_eq!(serving(&replicas_of(f, &app).await?).len(), 2, "{scaled}");
    f.serves(survivor, &host, &version_marker("1")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_roll_over_three_engines_and_outlive_one() {
    let registry = Registry::start().await.expect("a registry");
    let url = format!("127.0.0.1:{}", registry.port);
    let mut f = Fleet::start_with(3, &[("BERTH_REGISTRY__URL", &url)])
        .await
        .expect("a fleet of 3");
    replicas(&mut f)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));
    drop(f);
    main_engine_runs_a_container();
}

/// Kill the node that is building a deployment: the build runs again on another node, the
/// deployment log says so, and it succeeds there; when the dead node comes back, its stale job
/// changes nothing.
async fn rebuilt_elsewhere(f: &mut Fleet) -> anyhow::Result<()> {
    let src = TempDir::with_prefix("rebuild")?;
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    repo.write(
        "Dockerfile",
        "FROM busybox\nRUN sleep 6\nCOPY www /www\nEXPOSE 8080\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )?;
    repo.commit("a slow build")?;
    let app = unique("rebuild");
    let host = format!("{app}.localhost");
    f.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await?;
    let id = f.api.deploy(&app, None).await?;
    let building = berth_tests::eventually("the build to start", DEPLOY, || async {
        let (_, d) = f.api.get(&format!("/api/v1/deployments/{id}")).await.ok()?;
        (d["status"] == "building" && d["commit"].is_string()).then_some(d)
    })
    .await?;
    let node = building["node"].as_str().unwrap().to_string();
    let i = f.node_index(&node).unwrap();
    f.kill_node(i);
    let d = f.api.wait_terminal(&id, DEPLOY).await?;
    let log = f.api.log(&id).await?;
    assert_eq!(d["status"], "succeeded", "{d}\n{log}");
    assert_ne!(d["node"], node.as_str(), "{d}");
    assert_eq!(d["attempt"], 1, "{d}");
    assert!(
        log.contains(&format!(
            "node {node} went down while the deployment was building: the build runs again on node"
        )),
        "{log}"
    );
    for j in (0..f.nodes.len()).filter(|j| *j != i) {
        f.serves(j, &host, &version_marker("1")).await?;
    }
    // The dead node returns with the job still pending in its stream: nothing changes.
    f.restart_node(i).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, again) = f.api.get(&format!("/api/v1/deployments/{id}")).await?;
    assert_eq!(again, d, "the record is as it was");
    // (The succeeded node may still log its pruning; the dead one adds nothing.)
    let later = f.api.log(&id).await?;
    let added = later.strip_prefix(log.as_str()).unwrap_or(&later);
    assert!(
        !added.contains("failed") && !added.contains("interrupted"),
        "nothing from the stale job: {added}"
    );
    for j in 0..f.nodes.len() {
        f.serves(j, &host, &version_marker("1")).await?;
    }
    Ok(())
}
