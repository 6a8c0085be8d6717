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
