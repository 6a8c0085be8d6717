//! Build control on a real engine (issue 14): a build past `node.build_timeout_s` is stopped and
//! its deployment fails saying so; with one build slot, a second build waits its turn and says
//! so in its log.

use std::time::Duration;

use berth_tests::{hello_page, repo_root, slow_dockerfile, unique, Cluster, GitRepo, TempDir};
use serde_json::json;

const DEPLOY: Duration = Duration::from_secs(180);

/// An app whose build takes `secs` seconds (a step the cache never answers).
async fn slow_app(c: &mut Cluster, src: &TempDir, secs: u32) -> String {
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    repo.write("Dockerfile", &slow_dockerfile(secs)).unwrap();
    repo.write("www/index.html", &hello_page("slow")).unwrap();
    repo.commit("slow build").unwrap();
    let app = unique("slow");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_past_its_timeout_fails_with_the_reason() {
    let mut c = Cluster::up_with(&[("BERTH_NODE__BUILD_TIMEOUT_S", "2")])
        .await
        .unwrap();
    let src = TempDir::with_prefix("timeout-src").unwrap();
    let app = slow_app(&mut c, &src, 60).await;
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    let log = c.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "failed", "{d}\n{log}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the build ran longer than 2 s (node.build_timeout_s)"),
        "{error}\n{log}"
    );
    assert!(log.contains("node.build_timeout_s"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_build_slot_a_second_build_waits_its_turn_and_says_so() {
    let mut c = Cluster::up_with(&[("BERTH_NODE__BUILD_SLOTS", "1")])
        .await
        .unwrap();
    let (src_a, src_b) = (
        TempDir::with_prefix("slot-a").unwrap(),
        TempDir::with_prefix("slot-b").unwrap(),
    );
    let a = slow_app(&mut c, &src_a, 5).await;
    let b = slow_app(&mut c, &src_b, 5).await;
    let (ida, idb) = (
        c.api.deploy(&a, None).await.unwrap(),
        c.api.deploy(&b, None).await.unwrap(),
    );
    let mut waited = 0;
    for id in [&ida, &idb] {
        let d = c.api.wait_terminal(id, DEPLOY).await.unwrap();
        let log = c.api.log(id).await.unwrap();
        assert_eq!(d["status"], "succeeded", "{d}\n{log}");
        if log.contains("every build slot of this node is taken: waiting for one (0 other build(s) waiting before this one)") {
            assert!(log.contains("a build slot is free: building"), "{log}");
            waited += 1;
        }
    }
    assert_eq!(
        waited, 1,
        "exactly one of the two builds waited for the slot"
    );
}
