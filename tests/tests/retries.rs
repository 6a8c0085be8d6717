//! Retry instead of fail (issue 12): an attempt that an infrastructure fault interrupts runs
//! again, each attempt and its cause in the deployment's log, and the number of attempts is
//! bounded. The chaos suite (`tests/tests/chaos.rs`) checks that faults end in success; this
//! checks the rule itself, on one node killed again and again mid-build.

use std::time::Duration;

use berth_tests::{repo_root, unique, version_marker, Cluster, GitRepo, TempDir};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// Kills the node (SIGKILL) once the current attempt's build is under way, and starts it again.
async fn kill_during_build(c: &mut Cluster, id: &str, attempt: u32) {
    let marker = format!("(attempt {attempt} of 3)");
    if attempt > 1 {
        c.api
            .wait_log("the next attempt", id, &marker, WAIT)
            .await
            .unwrap();
    }
    berth_tests::eventually("the attempt's build step", WAIT, || async {
        let log = c.api.log(id).await.ok()?;
        // The build step of this attempt: after its own "attempt N of 3" line, if any.
        let since = match attempt {
            1 => log.as_str(),
            _ => log.split(&marker).nth(1)?,
        };
        since.contains("RUN sleep").then_some(())
    })
    .await
    .unwrap();
    c.kill_restart("node", true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_build_retries_the_job_three_attempts_at_most() {
    let mut c = Cluster::separate().await.unwrap();
    let src = TempDir::with_prefix("retries").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("retries");
    let host = format!("{app}.localhost");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await
        .unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, WAIT).await.unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}",
        c.api.log(&id).await.unwrap()
    );
    repo.write(
        "Dockerfile",
        "FROM busybox\nCOPY www /www\nRUN sleep 4\nEXPOSE 8080\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    repo.write("www/index.html", &berth_tests::hello_page("2"))
        .unwrap();
    repo.commit("a slow build").unwrap();

    // Killed once: the build runs again on the same node (the only one) and succeeds.
    let id = c.api.deploy(&app, None).await.unwrap();
    kill_during_build(&mut c, &id, 1).await;
    let d = c.api.wait_terminal(&id, WAIT).await.unwrap();
    let log = c.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{log}\n{}", c.logs());
    assert_eq!(d["attempt"], 1, "{d}");
    assert!(
        log.contains(&format!(
            "attempt 1 on node {} was interrupted (node {} restarted while working on it): the build runs again on node {} (attempt 2 of 3)",
            c.node, c.node, c.node
        )),
        "{log}"
    );
    c.serves(&host, &version_marker("2")).await.unwrap();

    // Killed at every attempt: the third is the last, and the deployment fails saying so; the
    // app still serves what it served.
    repo.write("www/index.html", &berth_tests::hello_page("3"))
        .unwrap();
    repo.commit("version 3").unwrap();
    let id = c.api.deploy(&app, None).await.unwrap();
    for attempt in 1..=3 {
        kill_during_build(&mut c, &id, attempt).await;
    }
    let d = c.api.wait_terminal(&id, WAIT).await.unwrap();
    let log = c.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "failed", "{d}\n{log}");
    assert_eq!(d["attempt"], 2, "{d}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("attempt 3 on node")
            && error.contains("restarted while working on it")
            && error.contains("that was its last attempt (3 in all)"),
        "{d}"
    );
    for n in 1..=2 {
        assert!(
            log.contains(&format!("(attempt {} of 3)", n + 1)),
            "attempt {n}'s retry is in the log:\n{log}"
        );
    }
    c.serves(&host, &version_marker("2")).await.unwrap();
}

/// The Docker engine restarts under a build, then under a health check (its own `dockerd`, as a
/// fleet node's): the build it cut off ("transport is closing", or "the client connection is
/// closing: context canceled") and the container it stopped ("exited with code 143") are not
/// the app's fault — the attempt is interrupted and runs again, on the same node once its
/// engine answers. On the same engine, up all along, the app's own faults fail at the first
/// attempt: a build step that fails, a container that crashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_restart_is_retried_and_the_app_s_own_faults_are_not() {
    let mut f = berth_tests::Fleet::start(1).await.unwrap();
    let src = TempDir::with_prefix("retries-engine").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    // Its build takes 3 s in a step of its own and the app listens 4 s after it starts: long
    // enough to restart the engine under either.
    repo.write(
        "Dockerfile",
        "FROM busybox\nCOPY www /www\nRUN sleep 3\nEXPOSE 8080\nCMD [\"sh\", \"-c\", \"sleep 4; exec httpd -f -p 8080 -h /www\"]\n",
    )
    .unwrap();
    repo.commit("an app slow to listen").unwrap();
    let app = unique("engine");
    let host = format!("{app}.localhost");
    f.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await
        .unwrap();
    let (id, d) = f.api.deploy_and_wait(&app, None, WAIT).await.unwrap();
    let log = f.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{log}\n{}", f.logs());

    // Restarted during the build (its `RUN sleep` step), then during the health check.
    for (v, phase, marker) in [
        ("2", "the build", "RUN sleep"),
        (
            "3",
            "the health check",
            "waiting for the app to accept connections",
        ),
    ] {
        repo.write("www/index.html", &berth_tests::hello_page(v))
            .unwrap();
        repo.commit(&format!("version {v}")).unwrap();
        let id = f.api.deploy(&app, None).await.unwrap();
        f.api.wait_log(phase, &id, marker, WAIT).await.unwrap();
        f.nodes[0].engine.restart().await.unwrap();
        let d = f.api.wait_terminal(&id, WAIT).await.unwrap();
        let log = f.api.log(&id).await.unwrap();
        assert_eq!(
            d["status"],
            "succeeded",
            "{phase}: {d}\n{log}\n{}",
            f.logs()
        );
        assert_eq!(d["attempt"], 1, "{phase}: {d}\n{log}");
        assert!(
            log.contains("was interrupted on node") && log.contains("the Docker engine"),
            "{phase}: the engine's restart is the attempt's cause:\n{log}"
        );
        f.serves(0, &host, &version_marker(v)).await.unwrap();
    }

    // The app's own faults, the engine up all along: failed at the first attempt, no retry.
    for (dockerfile, error) in [
        (
            "FROM busybox\nRUN echo building && exit 3\n",
            "non-zero code: 3",
        ),
        (
            "FROM busybox\nCMD [\"sh\", \"-c\", \"echo about to crash; exit 7\"]\n",
            "exited with code 7",
        ),
    ] {
        repo.write("Dockerfile", dockerfile).unwrap();
        repo.commit("broken").unwrap();
        let (id, d) = f.api.deploy_and_wait(&app, None, WAIT).await.unwrap();
        let log = f.api.log(&id).await.unwrap();
        assert_eq!(d["status"], "failed", "{d}\n{log}");
        assert_eq!(d["attempt"], 0, "{d}\n{log}");
        assert!(
            d["error"].as_str().unwrap_or_default().contains(error),
            "{d}"
        );
        assert!(!log.contains("interrupted"), "{log}");
    }
    f.serves(0, &host, &version_marker("3")).await.unwrap();
}
