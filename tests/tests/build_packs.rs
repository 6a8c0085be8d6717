//! Build packs on a real engine (issue 14): a repository with no Dockerfile deploys with the
//! `static` pack and with `auto` (a static site: the one kind whose base image, busybox, exists
//! here) and is served through Caddy; the deployment record keeps the Dockerfile used and only
//! its own GET returns it; `POST /api/v1/analyze` clones a repository and answers what `auto`
//! would build (a Node app: its analysis only, no node image here), or why it cannot; `berth
//! analyze DIR` does the same for a local directory without the API.

use std::time::Duration;

use berth_tests::{hello_page, unique, Cluster, GitRepo, TempDir};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);

/// A repository holding only `files`.
fn repo(dir: &TempDir, files: &[(&str, &str)]) -> GitRepo {
    let repo = GitRepo::init(dir.path()).unwrap();
    for (path, text) in files {
        repo.write(path, text).unwrap();
    }
    repo.commit("no Dockerfile").unwrap();
    repo
}

/// Deploys `body`'s app, checks it is served through Caddy with `page`, and answers the
/// deployment's record and log.
async fn deploys_and_serves(c: &mut Cluster, body: Value, page: &str) -> (String, Value, String) {
    let app = body["name"].as_str().unwrap().to_string();
    c.create_app(body).await.unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    let log = c.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{log}\n{}", c.logs());
    c.serves(&format!("{app}.localhost"), page)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{log}"));
    (id, d, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_without_a_dockerfile_deploy_and_the_analysis_says_why() {
    let mut c = Cluster::up().await.unwrap();

    // The static pack: public/index.html only, served by busybox httpd.
    let dir = TempDir::with_prefix("pack-static").unwrap();
    let page = hello_page("static-pack");
    let r = repo(&dir, &[("public/index.html", &page)]);
    let app = unique("static");
    let (id, d, log) = deploys_and_serves(
        &mut c,
        json!({"name": app, "repo": r.url(), "port": 8080, "build_pack": "static"}),
        "static-pack",
    )
    .await;
    assert!(
        log.contains("build pack static: detected static (port 8080"),
        "{log}"
    );
    assert!(log.contains("found public/index.html"), "{log}");
    let used = d["dockerfile"].as_str().unwrap_or_else(|| panic!("{d}"));
    assert!(used.contains("FROM busybox:latest\n"), "{used}");
    assert!(used.contains("COPY public/ /srv/www/\n"), "{used}");
    // Listings leave it out; `berth deployment` shows it.
    let (s, list) = c
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    assert!(list[0].get("dockerfile").is_none(), "{list}");
    let out = c.berth().args(["deployment", &id]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("  dockerfile:\n") && text.contains("    COPY public/ /srv/www/\n"),
        "{text}"
    );
    let out = c.berth().args(["apps", "show", &app]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("build pack:"), "{text}");
    assert!(text.contains("static: generated from the source"), "{text}");

    // The auto pack: index.html at the root, on another port (the generated image follows the
    // app's port).
    let dir = TempDir::with_prefix("pack-auto").unwrap();
    let page = hello_page("auto-pack");
    let r = repo(&dir, &[("index.html", &page), ("about.html", "about")]);
    let app = unique("auto");
    let (_, d, log) = deploys_and_serves(
        &mut c,
        json!({"name": app, "repo": r.url(), "port": 8081, "build_pack": "auto"}),
        "auto-pack",
    )
    .await;
    assert!(
        log.contains("build pack auto: detected static (port 8081"),
        "{log}"
    );
    let used = d["dockerfile"].as_str().unwrap_or_default();
    assert!(
        used.contains("COPY . /srv/www/\n") && used.contains("\"8081\""),
        "{used}"
    );

    // The app records its pack, and its analysis is the one its build used (its repository,
    // branch and port).
    let (s, a) = c.api.get(&format!("/api/v1/apps/{app}")).await.unwrap();
    assert_eq!((s, a["build_pack"].as_str()), (200, Some("auto")), "{a}");
    let (s, a) = c
        .api
        .post("/api/v1/analyze", json!({"app": app}))
        .await
        .unwrap();
    assert_eq!(
        (s, &a["kind"], &a["port"]),
        (200, &json!("static"), &json!(8081)),
        "{a}"
    );
    assert_eq!(a["dockerfile"].as_str(), Some(used), "{a}");

    // The analysis of a Node repository: what auto would build, nothing built.
    let dir = TempDir::with_prefix("pack-node").unwrap();
    let pkg = r#"{"name": "web", "scripts": {"start": "node server.js"}}"#;
    let node = repo(&dir, &[("package.json", pkg), ("server.js", "")]);
    let (s, a) = c
        .api
        .post(
            "/api/v1/analyze",
            json!({"repo": node.url(), "ref": "main"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        (&a["kind"], &a["port"], &a["start"]),
        (&json!("node"), &json!(3000), &json!("npm start")),
        "{a}"
    );
    assert!(a["dockerfile"]
        .as_str()
        .unwrap_or_default()
        .contains("FROM node:22-slim\n"));
    assert_eq!(
        a["reasons"][0],
        "found package.json with a start script: node server.js"
    );

    // A repository Berth cannot build without a Dockerfile: one sentence naming what it
    // looked for.
    let dir = TempDir::with_prefix("pack-unknown").unwrap();
    let unknown = repo(&dir, &[("README.md", "nothing to build")]);
    let (s, e) = c
        .api
        .post("/api/v1/analyze", json!({"repo": unknown.url()}))
        .await
        .unwrap();
    assert_eq!(s, 422, "{e}");
    let msg = e["error"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "found nothing Berth can build without a Dockerfile: it looks for index.html"
        ),
        "{msg}"
    );
    // Neither repo nor app: 400.
    let (s, e) = c.api.post("/api/v1/analyze", json!({})).await.unwrap();
    assert_eq!(s, 400, "{e}");

    // `berth analyze DIR`: the same analysis, here, without the API.
    let out = c
        .berth()
        .args(["analyze"])
        .arg(&node.work)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "pack:  node (build pack auto)\n",
        "  - found package.json with a start script: node server.js\n",
        "port:  3000\n",
        "start: npm start\n",
        "  FROM node:22-slim\n",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    // A repository (here a local bare one) goes through the API.
    let out = c
        .berth()
        .args(["analyze", "--json", "--ref", "main"])
        .arg(&node.bare)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(
        (&v["kind"], &v["start"]),
        (&json!("node"), &json!("npm start")),
        "{v}"
    );
    let out = c
        .berth()
        .args(["analyze"])
        .arg(&unknown.work)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: found nothing Berth can build"),
        "{err}"
    );
}
