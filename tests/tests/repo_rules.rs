//! Which repositories git may reach (`berth_protocol::repo_url`): the coordinator refuses an app
//! whose repository is local (unless `allow_local_repos`), uses another git transport, holds a
//! password, or would carry a credential over plain http:// — a 400 that says why, nothing
//! stored — and a node refuses to fetch such a repository even when the record got past the
//! coordinator.

use std::time::Duration;

use berth_tests::{repo_root, unique, Cluster, GitRepo, TempDir};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_repositories_are_refused_at_create_and_patch() {
    let c = Cluster::separate_with(&[("BERTH_ALLOW_LOCAL_REPOS", "false")])
        .await
        .unwrap();
    let src = TempDir::with_prefix("rules-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let marker = src.path().join("ext-ran");
    let token = json!({"kind": "https_token", "token": "tok-never-sent"});
    let cases = [
        (json!(repo.url()), None, "set allow_local_repos"),
        (
            json!(format!("file://{}", repo.url())),
            None,
            "set allow_local_repos",
        ),
        (
            json!(format!("ext::sh -c touch% {}", marker.display())),
            None,
            "git's ext transport, which Berth does not allow",
        ),
        (json!("git://127.0.0.1/x.git"), None, "git transport"),
        (
            json!("http://192.0.2.1/x.git"),
            Some(token.clone()),
            "would send the git credential unencrypted",
        ),
        (
            json!("https://someone:hunter2pass@192.0.2.1/x.git"),
            None,
            "give the secret as git_credential instead",
        ),
        (
            json!("https://ghp_inurl@192.0.2.1/x.git"),
            None,
            "give the secret as git_credential instead",
        ),
    ];
    for (repo_url, cred, says) in &cases {
        let mut body = json!({"name": unique("bad"), "repo": repo_url, "port": 8080});
        if let Some(cred) = cred {
            body["git_credential"] = cred.clone();
        }
        let (s, v) = c.api.post("/api/v1/apps", body).await.unwrap();
        assert_eq!(s, 400, "{repo_url}: {v}");
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.contains(says), "{repo_url}: {e}");
        assert!(
            !e.contains("hunter2pass") && !e.contains("ghp_inurl"),
            "{e}"
        );
    }
    assert!(!marker.exists(), "ext:: ran a command");
    let (_, apps) = c.api.get("/api/v1/apps").await.unwrap();
    assert_eq!(apps.as_array().map(Vec::len), Some(0), "{apps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_local_repository_when_not_allowed() {
    let mut c = Cluster::separate().await.unwrap();
    let src = TempDir::with_prefix("rules-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("local");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    // PATCH is held to the same rule, and a refused one changes nothing.
    let token = json!({"kind": "https_token", "token": "tok-never-sent"});
    for (body, says) in [
        (json!({"repo": "ext::sh -c true"}), "ext transport"),
        (
            json!({"repo": "http://192.0.2.1/x.git", "git_credential": token}),
            "unencrypted",
        ),
        (
            json!({"repo": "https://someone:hunter2pass@192.0.2.1/x.git"}),
            "git_credential instead",
        ),
    ] {
        let (s, v) = c
            .api
            .patch(&format!("/api/v1/apps/{app}"), body)
            .await
            .unwrap();
        assert_eq!(s, 400, "{v}");
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.contains(says) && !e.contains("hunter2pass"), "{e}");
    }
    let (_, v) = c.api.get(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert_eq!(v["repo"], repo.url(), "nothing changed: {v}");
    assert!(v["git_credential"].is_null(), "{v}");

    // The coordinator allowed it; this node does not (a record that got past the coordinator).
    c.env
        .push(("BERTH_ALLOW_LOCAL_REPOS".into(), "false".into()));
    c.restart_node().await.unwrap();
    let (id, d) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(d["status"], "failed", "{d}");
    let error = d["error"].as_str().unwrap_or_default();
    assert!(error.contains("set allow_local_repos"), "{d}");
    let log = c.api.log(&id).await.unwrap();
    assert!(!log.contains("checked out"), "{log}");
}
