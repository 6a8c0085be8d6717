//! An app's replicas as the API and the CLI list them (`GET /apps/{name}/replicas`, `berth
//! replicas`), and `berth apps scale`, through the real cluster.

use std::time::Duration;

use berth_tests::{repo_root, unique, version_marker, Cluster, GitRepo, TempDir};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_app_lists_its_one_serving_replica() {
    let mut c = Cluster::up().await.expect("berth up");
    flow(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
}

async fn flow(c: &mut Cluster) -> anyhow::Result<()> {
    let src = TempDir::with_prefix("replicas-src")?;
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
    let app = unique("replicas");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await?;

    // Before any deploy the app has no route: no replica.
    let (s, v) = c.api.get(&format!("/api/v1/apps/{app}/replicas")).await?;
    assert_eq!((s, &v), (200, &json!([])));

    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await?;
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.api.log(&id).await?);

    let (s, v) = c.api.get(&format!("/api/v1/apps/{app}/replicas")).await?;
    assert_eq!(s, 200, "{v}");
    let list = v.as_array().expect("an array").clone();
    assert_eq!(list.len(), 1, "{v}");
    let r = &list[0];
    assert_eq!(r["role"], "serving", "{r}");
    assert_eq!(r["health"], "healthy", "{r}");
    assert_eq!(r["node"], c.node.as_str(), "{r}");
    assert_eq!(r["deployment"], id.as_str(), "{r}");
    assert!(d["container"].is_string(), "{d}");
    assert_eq!(r["container"], d["container"], "{r}\n{d}");
    assert!(d["image"].is_string(), "{d}");
    assert_eq!(r["image"], d["image"], "{r}\n{d}");

    // Its upstream is the address Caddy dials: it answers with the app's page.
    let dial = r["upstream"].as_str().expect("upstream").to_string();
    let body = reqwest::get(format!("http://{dial}/"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    assert!(body.contains(&version_marker("1")), "{dial}: {body}");

    // The CLI's --json prints the same list; its table shows the same replica.
    let out = c.berth().args(["replicas", &app, "--json"]).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(printed, v);
    let out = c.berth().args(["replicas", &app]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let container = d["container"].as_str().unwrap_or_default();
    for needle in [
        "NODE",
        "UPSTREAM",
        c.node.as_str(),
        &container[..12.min(container.len())],
        id.as_str(),
        "serving",
        "healthy",
        dial.as_str(),
    ] {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }

    // An unknown app: 404 with the usual error body, and exit code 1 from the CLI.
    let missing = unique("no-such-app");
    let (s, v) = c
        .api
        .get(&format!("/api/v1/apps/{missing}/replicas"))
        .await?;
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains(&missing)),
        "{v}"
    );
    let out = c.berth().args(["replicas", &missing]).output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 404"));

    // `berth apps scale` patches the replica count (here on an app never deployed, so
    // nothing reacts to it) and says so.
    let idle = unique("scale");
    c.create_app(json!({"name": idle, "repo": repo.url(), "port": 8080}))
        .await?;
    let out = c.berth().args(["apps", "scale", &idle, "3"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), format!("app {idle}: 3 replicas"));
    let (_, a) = c.api.get(&format!("/api/v1/apps/{idle}")).await?;
    assert_eq!(a["replicas"], 3, "{a}");
    let out = c.berth().args(["apps", "scale", &idle, "0"]).output()?;
    assert_eq!(out.status.code(), Some(1), "0 replicas is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("replicas must be 1 to 100"));

    // On one engine, scaling the deployed app to 2 starts a second replica of its release
    // beside the first (no build); back to 1 takes one out of the route.
    let out = c.berth().args(["apps", "scale", &app, "2"]).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serving = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["role"] == "serving")
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let two = berth_tests::eventually("a second replica", DEPLOY, || async {
        let (_, v) = c
            .api
            .get(&format!("/api/v1/apps/{app}/replicas"))
            .await
            .ok()?;
        let s = serving(&v);
        (s.len() == 2).then_some(s)
    })
    .await?;
    assert!(
        two.iter().all(|r| r["image"] == d["image"]),
        "the same release: {two:?}"
    );
    assert_ne!(two[0]["upstream"], two[1]["upstream"], "{two:?}");
    for r in &two {
        let dial = r["upstream"].as_str().unwrap_or_default();
        let body = reqwest::get(format!("http://{dial}/"))
            .await?
            .text()
            .await?;
        assert!(body.contains(&version_marker("1")), "{dial}: {body}");
    }
    let (_, list) = c
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await?;
    let scale = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "scale")
        .cloned();
    let scale = scale.expect("a scale deployment");
    assert_eq!(scale["status"], "succeeded", "{scale}");
    let out = c.berth().args(["apps", "scale", &app, "1"]).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    berth_tests::eventually("one replica again", DEPLOY, || async {
        let (_, v) = c
            .api
            .get(&format!("/api/v1/apps/{app}/replicas"))
            .await
            .ok()?;
        (serving(&v).len() == 1).then_some(())
    })
    .await?;
    Ok(())
}
