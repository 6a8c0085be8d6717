//! Shutdown of `berth up` on SIGTERM: the process exits within its shutdown deadline, says so in
//! its log with nothing abandoned, and stops the Redis and Caddy it started — with a log follow
//! open, and with a release draining in the background.

use std::time::{Duration, Instant};

use berth_tests::{
    repo_root, running_containers, unique, version_marker, Cluster, GitRepo, Sse, TempDir,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

/// `SHUTDOWN_DEADLINE` in ops/src/server.rs (the test library depends on no Berth crate but
/// `protocol`).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

const DEPLOY: Duration = Duration::from_secs(180);

/// Sends SIGTERM to `berth up` and returns how long it took to exit (failing past the deadline
/// with some slack, so a slow exit is reported rather than waited for forever).
fn terminate(c: &mut Cluster) -> Duration {
    let p = &mut c.procs[0];
    assert_eq!(p.name, "berth up");
    let pid = Pid::from_raw(i32::try_from(p.child.id()).unwrap());
    let started = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    while started.elapsed() < SHUTDOWN_DEADLINE + Duration::from_secs(15) {
        if let Ok(Some(status)) = p.child.try_wait() {
            assert!(
                status.success(),
                "berth up exited with {status}:\n{}",
                p.log_text()
            );
            eprintln!("berth up exited {:?} after SIGTERM", started.elapsed());
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("berth up still runs long after SIGTERM:\n{}", p.log_text());
}

/// The log without terminal colours.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            // ESC [ … m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// What every clean shutdown shows: the exit in time, the log lines, Redis and Caddy gone.
fn assert_shut_down(c: &Cluster, took: Duration) {
    let log = plain(&c.procs[0].log_text());
    assert!(
        took < SHUTDOWN_DEADLINE,
        "exit took {took:?}, past the {SHUTDOWN_DEADLINE:?} deadline:\n{log}"
    );
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("shut down abandoned=0"), "{log}");
    assert!(!log.contains("abandoning them"), "{log}");
    // The Redis and the Caddy `berth up` started are gone with it.
    assert!(
        c.redis_cli(&["ping"]).is_err(),
        "Redis still answers after berth up exited"
    );
    let admin = c
        .env
        .iter()
        .find(|(k, _)| k == "BERTH_NODE__CADDY_ADMIN")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        std::net::TcpStream::connect(&admin).is_err(),
        "Caddy's admin API still answers at {admin} after berth up exited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_berth_up_within_its_deadline_with_a_log_follow_open() {
    let mut c = Cluster::up().await.expect("berth up");
    let src = TempDir::with_prefix("shutdown-src").unwrap();
    let repo = GitRepo::init(src.path()).unwrap();
    // An app's branch must exist when it is created.
    repo.commit("empty").unwrap();
    let app = unique("quiet");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    // A follow never ends by itself: it holds a connection and the stream's LogHub reader.
    let mut sse = Sse::open(&c.api, &format!("/api/v1/apps/{app}/logs?follow=1"), None)
        .await
        .unwrap();

    let took = terminate(&mut c);
    assert_shut_down(&c, took);
    // The follow was ended by the server (closed, not cut off).
    let end = sse.next(Duration::from_secs(5)).await;
    assert!(
        matches!(end, Ok(None)),
        "the follow did not end cleanly: {end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_a_background_drain_short_and_stops_the_previous_release() {
    let mut c = Cluster::up().await.expect("berth up");
    let src = TempDir::with_prefix("shutdown-hello").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("drain");
    let host = format!("{app}.localhost");
    // A drain far longer than the shutdown deadline: only the token ends it in time.
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 600}))
        .await
        .unwrap();
    for v in ["1", "2"] {
        if v == "2" {
            repo.write("www/index.html", &berth_tests::hello_page("2"))
                .unwrap();
            repo.commit("v2").unwrap();
        }
        let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
        assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
        c.serves(&host, &version_marker(v)).await.unwrap();
        if v == "2" {
            c.api
                .wait_log(
                    "the drain to start",
                    &id,
                    "draining the previous release",
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }
    assert_eq!(running_containers(&app, &c.node).unwrap().len(), 2);

    let took = terminate(&mut c);
    assert_shut_down(&c, took);
    // The previous release was stopped rather than left running beside the new one.
    let running = running_containers(&app, &c.node).unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
}
