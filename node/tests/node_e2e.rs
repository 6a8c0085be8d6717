//! End-to-end test of the node against real processes: a redis-server and a `caddy run` started
//! on free ports in a temp dir, the machine's Docker engine (with the local `busybox:latest`
//! image) and a local bare git repository. It deploys an app twice (zero-downtime switch), fails
//! a deployment on its health check and on a bad ref (the old version keeps serving), survives a
//! Caddy restart (routes re-pushed from Redis) and removes the app.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_node::{start, NodeConfig};
use berth_protocol::{
    envelope, keys, now_ms, App, DeployJob, DeploymentStatus, EnvVars, Event, HealthCheck, Job,
    EVENT_KIND, JOB_KIND,
};
use berth_tests::{
    containers, docker_cleanup, eventually, free_port, ingress_get, running_containers,
    start_caddy, start_redis, GitRepo, TempDir,
};
use redis::aio::MultiplexedConnection;

/// Removes the test node's containers and the app's images, even when the test panics.
struct DockerCleanup {
    node: String,
    app: String,
}
impl Drop for DockerCleanup {
    fn drop(&mut self) {
        docker_cleanup(&self.node, &[&self.app]);
    }
}

/// Commits a version of the test app (serving "hello <version> <GREETING> <MSG>") and pushes it.
fn commit_version(repo: &GitRepo, version: &str) {
    repo.write(
        "app/Dockerfile",
        &format!(
            "FROM busybox\nARG GREETING=none\nCOPY start.sh /start.sh\n\
             RUN mkdir -p /www && echo \"{version} $GREETING\" > /www/version\n\
             CMD [\"sh\", \"/start.sh\"]\n"
        ),
    )
    .unwrap();
    repo.write(
        "app/start.sh",
        "echo \"hello $(cat /www/version) $MSG\" > /www/index.html\necho app starting\n\
         if [ -n \"$CRASH\" ]; then echo crashing >&2; exit \"$CRASH\"; fi\nexec httpd -f -p 8080 -h /www\n",
    )
    .unwrap();
    repo.commit(version).unwrap();
}

fn app(name: &str, repo: &Path, domain: &str) -> App {
    App {
        name: name.into(),
        repo: repo.display().to_string(),
        branch: "main".into(),
        dockerfile: "Dockerfile".into(),
        context: "app".into(),
        port: 8080,
        domains: vec![domain.into()],
        env: EnvVars {
            runtime: BTreeMap::from([("MSG".into(), "rt".into())]),
            build: BTreeMap::from([("GREETING".into(), "bt".into())]),
            ..Default::default()
        },
        health_check: HealthCheck {
            path: "/".into(),
            interval_ms: 100,
            timeout_ms: 1000,
            retries: 2,
            deadline_s: 30,
            port: None,
            healthy_threshold: 1,
        },
        auto_deploy: true,
        drain_s: 0,
        keep_releases: 10,
        placement: Default::default(),
        replicas: 1,
        max_surge: 1,
        standby_s: 0,
        stopped: false,
        limits: Default::default(),
        git_credential: None,
        webhook_secret: false,
        build_pack: Default::default(),
        static_dir: None,
        created_at: now_ms(),
        updated_at: now_ms(),
    }
}

async fn push_job(conn: &mut MultiplexedConnection, node: &str, job: &Job) {
    let bytes = envelope::encode(JOB_KIND, &now_ms().to_string(), job).unwrap();
    redis::cmd("XADD")
        .arg(keys::jobs(node))
        .arg("*")
        .arg("m")
        .arg(bytes)
        .query_async::<String>(conn)
        .await
        .unwrap();
}

/// The value of `field` in every entry of stream `key` that has it as a string, oldest first.
async fn stream_field(conn: &mut MultiplexedConnection, key: &str, field: &str) -> Vec<Vec<u8>> {
    let v: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    v.ids
        .into_iter()
        .filter_map(|mut e| match e.map.remove(field) {
            Some(redis::Value::BulkString(b)) => Some(b),
            _ => None,
        })
        .collect()
}

async fn events(conn: &mut MultiplexedConnection) -> Vec<Event> {
    stream_field(conn, keys::EVENTS, "m")
        .await
        .iter()
        .filter_map(|b| envelope::decode::<Event>(b, EVENT_KIND).ok())
        .collect()
}

/// Waits for the terminal event of a deployment; returns (status, container, error).
async fn terminal(
    conn: &MultiplexedConnection,
    id: &str,
) -> (DeploymentStatus, Option<String>, Option<String>) {
    eventually(
        &format!("deployment {id} to end"),
        Duration::from_secs(180),
        || {
            let mut c = conn.clone();
            async move {
                events(&mut c).await.into_iter().find_map(|e| match e {
                    Event::Deployment(u) if u.deployment_id == id && u.status.is_terminal() => {
                        Some((u.status, u.container, u.error))
                    }
                    _ => None,
                })
            }
        },
    )
    .await
    .unwrap()
}

/// Pushes a deploy job and asserts that it succeeds (its log in the message if not); returns the
/// new container.
async fn succeeds(conn: &mut MultiplexedConnection, node: &str, job: &Job) -> String {
    let Job::Deploy(d) = job else {
        panic!("not a deploy job")
    };
    push_job(conn, node, job).await;
    let (status, container, err) = terminal(conn, &d.deployment_id).await;
    assert_eq!(
        status,
        DeploymentStatus::Succeeded,
        "{err:?}\n{}",
        log_text(conn, &d.deployment_id).await
    );
    container.unwrap()
}

async fn get(ingress: u16, host: &str) -> Option<(u16, String)> {
    ingress_get(ingress, host).await.ok()
}

async fn log_text(conn: &mut MultiplexedConnection, id: &str) -> String {
    stream_field(conn, &keys::deployment_log(id), "line")
        .await
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[actix_rt::test]
async fn deploys_switches_fails_safely_and_removes() {
    let tmp = TempDir::with_prefix("berth-node-e2e").unwrap();
    let redis_port = free_port();
    let _redis = start_redis(tmp.path(), redis_port, &["--appendonly", "no"])
        .await
        .unwrap();
    let admin = free_port();
    let caddy_dir = tmp.path().join("caddy");
    let mut caddy = start_caddy(&caddy_dir, admin).await.unwrap();
    let ingress = free_port();
    let suffix = format!("{}{}", std::process::id(), now_ms() % 100_000);
    let node = format!("n{suffix}");
    let app_name = format!("e2e{suffix}");
    let domain = format!("{app_name}.localhost");
    let _cleanup = DockerCleanup {
        node: node.clone(),
        app: app_name.clone(),
    };

    let repo = GitRepo::init(tmp.path()).unwrap();
    commit_version(&repo, "v1");

    let redis_url = format!("redis://127.0.0.1:{redis_port}/");
    let shutdown = berth_bus::Shutdown::new();
    let handle = start(
        NodeConfig {
            name: node.clone(),
            redis_url: redis_url.clone(),
            redis_sentinels: None,
            caddy_admin: format!("127.0.0.1:{admin}"),
            ingress_http: ingress,
            https: Default::default(),
            docker_host: None,
            address: "127.0.0.1".into(),
            data_dir: tmp.path().join("data"),
            secret_key: None,
            stats_interval: Duration::from_secs(5),
            labels: Default::default(),
            build_slots: 0,
            resolver_listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            registry: None,
            test_hooks: false,
            build_context_max: 512 * 1024 * 1024,
            allow_local_repos: true,
            app_limits: Default::default(),
            build_limits: Default::default(),
            app_network: berth_node::containers::APP_NETWORK.into(),
            pack_images: Default::default(),
            durability: Default::default(),
        },
        &shutdown,
    )
    .await
    .expect("node starts");
    let mut conn = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let hb: Option<Vec<u8>> = redis::cmd("GET")
        .arg(keys::node(&node))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(hb.is_some(), "first heartbeat written at start");
    assert_eq!(
        get(ingress, &domain).await.map(|r| r.0),
        Some(404),
        "catch-all before any deploy"
    );

    let deploy = |id: &str, git_ref: Option<&str>, a: App| {
        Job::Deploy(Box::new(DeployJob {
            deployment_id: id.into(),
            app: a,
            git_ref: git_ref.map(String::from),
            deadline_ms: now_ms() + 170_000,
            credential: None,
            env_secrets: None,
            runtime_secrets: None,
            image: None,
            reuse_container_of: None,
            keep_images: None,
            slot: None,
            attempt: 0,
            upload: None,
            no_cache: false,
        }))
    };
    let base = app(&app_name, &repo.bare, &domain);
    // The domain is the app's in the domain index, as the coordinator records it when the app
    // is created: a node routes only domains the index gives to the job's app.
    let _: () = redis::cmd("HSET")
        .arg(keys::DOMAINS)
        .arg(&domain)
        .arg(&app_name)
        .query_async(&mut conn)
        .await
        .unwrap();

    // 1. First deployment.
    let c1 = succeeds(&mut conn, &node, &deploy("d1", None, base.clone())).await;
    assert_eq!(
        get(ingress, &domain).await,
        Some((200, "hello v1 bt rt\n".into()))
    );

    // 2. Second version: traffic switches, the old container goes.
    commit_version(&repo, "v2");
    let c2 = succeeds(&mut conn, &node, &deploy("d2", None, base.clone())).await;
    assert_eq!(
        get(ingress, &domain).await,
        Some((200, "hello v2 bt rt\n".into()))
    );
    // The old container is stopped right after the switch (it may take the app's stop grace
    // time to go); the previous release is kept stopped for rollback.
    let left = eventually("one running container", Duration::from_secs(30), || async {
        running_containers(&app_name, &node)
            .ok()
            .filter(|c| c.len() == 1)
    })
    .await
    .unwrap();
    assert_eq!(left.len(), 1);
    assert!(c2.starts_with(&left[0]) && !c1.starts_with(&left[0]));

    // 3. A failing health check leaves v2 serving.
    let mut bad = base.clone();
    bad.health_check.path = "/missing".into();
    push_job(&mut conn, &node, &deploy("d3", None, bad)).await;
    let (status, _, err) = terminal(&conn, "d3").await;
    assert_eq!(status, DeploymentStatus::Failed);
    let err = err.unwrap();
    assert!(err.contains("HTTP 404"), "{err}");
    let log3 = log_text(&mut conn, "d3").await;
    assert!(
        log3.contains("app starting"),
        "container output copied:\n{log3}"
    );
    assert_eq!(
        get(ingress, &domain).await,
        Some((200, "hello v2 bt rt\n".into()))
    );
    assert_eq!(running_containers(&app_name, &node).unwrap().len(), 1);

    // 3b. A container that exits fails fast with its exit code.
    let mut crash = base.clone();
    crash.env.runtime.insert("CRASH".into(), "3".into());
    crash.health_check.deadline_s = 60;
    let t = Instant::now();
    push_job(&mut conn, &node, &deploy("d3b", None, crash)).await;
    let (status, _, err) = terminal(&conn, "d3b").await;
    assert_eq!(status, DeploymentStatus::Failed);
    // Caught by the probe, or already at start if it exited that fast.
    let err = err.unwrap_or_default();
    assert!(err.ends_with("container exited with code 3"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(40));
    assert!(log_text(&mut conn, "d3b").await.contains("crashing"));

    // 3c. A job past its deadline fails without running; a redelivered job is skipped.
    let mut late = deploy("d3c", None, base.clone());
    if let Job::Deploy(d) = &mut late {
        d.deadline_ms = now_ms() - 1;
    }
    push_job(&mut conn, &node, &late).await;
    let (status, _, err) = terminal(&conn, "d3c").await;
    assert_eq!(status, DeploymentStatus::Failed);
    assert_eq!(
        err.as_deref(),
        Some("deadline exceeded while waiting in the queue")
    );
    let d2_events = |evs: Vec<Event>| {
        evs.into_iter()
            .filter(|e| matches!(e, Event::Deployment(u) if u.deployment_id == "d2"))
            .count()
    };
    let before = d2_events(events(&mut conn).await);
    push_job(&mut conn, &node, &deploy("d2", None, base.clone())).await;

    // 4. A bad ref fails with git's words.
    push_job(
        &mut conn,
        &node,
        &deploy("d4", Some("no-such-branch"), base.clone()),
    )
    .await;
    let (status, _, err) = terminal(&conn, "d4").await;
    assert_eq!(status, DeploymentStatus::Failed);
    assert!(
        err.as_deref().unwrap_or("").starts_with("git fetch failed"),
        "{err:?}"
    );
    // d4 ran after the duplicate d2 (same app, in order): d2 did not run again.
    assert_eq!(d2_events(events(&mut conn).await), before);
    assert_eq!(
        get(ingress, &domain).await,
        Some((200, "hello v2 bt rt\n".into()))
    );

    // 5. Caddy restarts and loses its config: the router puts routes back.
    caddy.child.kill().unwrap();
    let _ = caddy.child.wait();
    caddy = start_caddy(&caddy_dir, admin).await.unwrap();
    eventually(
        "routes re-pushed after a Caddy restart",
        Duration::from_secs(15),
        || async {
            (get(ingress, &domain).await == Some((200, "hello v2 bt rt\n".into()))).then_some(())
        },
    )
    .await
    .unwrap();

    // 6. Remove the app.
    push_job(
        &mut conn,
        &node,
        &Job::RemoveApp {
            app: app_name.clone(),
            domains: vec![domain.clone()],
        },
    )
    .await;
    eventually("app removed", Duration::from_secs(60), || {
        let mut c = conn.clone();
        let app_name = app_name.clone();
        async move {
            events(&mut c)
                .await
                .into_iter()
                .any(|e| matches!(e, Event::AppRemoved { ref app, .. } if *app == app_name))
                .then_some(())
        }
    })
    .await
    .unwrap();
    assert!(containers(&app_name, &node).unwrap().is_empty());
    assert_eq!(get(ingress, &domain).await.map(|r| r.0), Some(404));
    let routes: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(keys::ROUTES)
        .arg(&domain)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(routes.is_none());
    eventually("every job acknowledged", Duration::from_secs(10), || {
        let mut c = conn.clone();
        let stream = keys::jobs(&node);
        async move {
            let pending: redis::Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(keys::JOBS_GROUP)
                .query_async(&mut c)
                .await
                .ok()?;
            match pending {
                redis::Value::Array(v) => (v.first() == Some(&redis::Value::Int(0))).then_some(()),
                _ => None,
            }
        }
    })
    .await
    .unwrap();

    // The node trims what it acknowledged from its job stream (`trim_acked_every`): after 250
    // more jobs (stops of apps it does not run), the stream holds at most a stream node's
    // worth (100 entries) of them, not all.
    for i in 0..250 {
        push_job(
            &mut conn,
            &node,
            &Job::StopApp {
                app: format!("gone-{i}"),
            },
        )
        .await;
    }
    eventually(
        "the acknowledged jobs trimmed",
        Duration::from_secs(30),
        || {
            let mut c = conn.clone();
            let stream = keys::jobs(&node);
            async move {
                let len: usize = redis::cmd("XLEN")
                    .arg(stream)
                    .query_async(&mut c)
                    .await
                    .ok()?;
                (len <= 150).then_some(())
            }
        },
    )
    .await
    .unwrap();

    let builds = std::fs::read_dir(tmp.path().join("data/node/builds"))
        .unwrap()
        .count();
    assert_eq!(builds, 0, "checkouts are removed");
    let t = Instant::now();
    shutdown.cancel();
    handle.shutdown().await;
    // Every task the node spawned ends with it.
    let abandoned = shutdown
        .wait_until(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(abandoned.count, 0, "still running: {abandoned}");
    assert!(t.elapsed() < Duration::from_secs(5));
    caddy.stop();
}
