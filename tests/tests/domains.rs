//! Domains as a security boundary (issue 13, item 3), on a real cluster: a domain serves one app
//! whatever its case, names that are not an app's to take are refused, and a domain an app drops
//! stops reaching it through Caddy at once — not at its next deploy, nor at the end of a deploy
//! that was already running.

use std::time::Duration;

use berth_tests::{
    eventually, hello_page, ingress_get, repo_root, slow_dockerfile, unique, version_marker,
    Cluster, GitRepo, TempDir,
};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);

fn error_of(v: &Value) -> String {
    v["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_is_one_app_s_in_any_case_and_leaves_caddy_when_dropped() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("domains-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    repo.write("www/index.html", &hello_page("shop")).unwrap();
    repo.commit("shop").unwrap();

    let shop = unique("shop");
    let host = format!("{shop}.localhost");
    let old = format!("old-{shop}.localhost");
    c.create_app(json!({"name": shop, "repo": repo.url(), "port": 8080,
        "domains": [host, old]}))
        .await
        .unwrap();

    // The attack: a second app claiming the first's domain in other case. Caddy matches hosts
    // ignoring case, so its route would take the first app's traffic.
    let thief = unique("thief");
    let upper = host.to_uppercase();
    let (s, v) = c
        .api
        .post(
            "/api/v1/apps",
            json!({"name": thief, "repo": repo.url(), "port": 8080, "domains": [upper]}),
        )
        .await
        .unwrap();
    assert_eq!(s, 409, "a domain in other case is the same domain: {v}");
    assert!(
        error_of(&v).contains(&format!("already used by app {shop}")),
        "{v}"
    );
    // Nor through a PATCH of an app that exists.
    c.create_app(json!({"name": thief, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (s, v) = c
        .api
        .patch(
            &format!("/api/v1/apps/{thief}"),
            json!({"domains": [format!("OLD-{shop}.LOCALHOST")]}),
        )
        .await
        .unwrap();
    assert_eq!(s, 409, "{v}");
    assert!(
        error_of(&v).contains(&format!("already used by app {shop}")),
        "{v}"
    );
    let (_, v) = c.api.get(&format!("/api/v1/apps/{thief}")).await.unwrap();
    assert_eq!(
        v["domains"],
        json!([format!("{thief}.localhost")]),
        "a refused PATCH changes nothing"
    );

    // Names that are not an app's to take: 400 with the reason, nothing stored.
    for (domain, why) in [
        ("localhost", "reserved"),
        ("LocalHost", "reserved"),
        ("127.0.0.1", "IP address"),
        ("10.0.0.7", "IP address"),
        ("[::1]", "not a valid domain"),
        ("a_b.localhost", "not a valid domain"),
    ] {
        let name = unique("bad");
        let (s, v) = c
            .api
            .post(
                "/api/v1/apps",
                json!({"name": name, "repo": repo.url(), "port": 8080, "domains": [domain]}),
            )
            .await
            .unwrap();
        assert_eq!(s, 400, "{domain}: {v}");
        assert!(error_of(&v).contains(why), "{domain}: {v}");
        let (s, _) = c.api.get(&format!("/api/v1/apps/{name}")).await.unwrap();
        assert_eq!(s, 404, "{domain}: a refused create stores nothing");
    }
    // A domain given in upper case is stored (and routed) lowercased.
    let mixed = unique("mixed");
    let v = c
        .create_app(json!({"name": mixed, "repo": repo.url(), "port": 8080,
            "domains": [format!("WWW.{mixed}.LocalHost")]}))
        .await
        .unwrap();
    assert_eq!(
        v["domains"],
        json!([format!("www.{mixed}.localhost")]),
        "{v}"
    );
    // A deleted app's domains are free again.
    let (s, v) = c
        .api
        .delete(&format!("/api/v1/apps/{mixed}"))
        .await
        .unwrap();
    assert!(s < 300, "{v}");
    c.create_app(
        json!({"name": unique("again"), "repo": repo.url(), "port": 8080,
        "domains": [format!("www.{mixed}.localhost")]}),
    )
    .await
    .unwrap();

    // Both domains serve the app; PATCH drops one: it stops reaching the app at once.
    let id = c.api.deploy(&shop, None).await.unwrap();
    let d = c.api.wait_terminal(&id, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    c.serves(&host, &version_marker("shop")).await.unwrap();
    c.serves(&old, &version_marker("shop")).await.unwrap();
    let (s, v) = c
        .api
        .patch(&format!("/api/v1/apps/{shop}"), json!({"domains": [host]}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    gone(&c, &old).await;
    let routes = c.redis_cli(&["HKEYS", "berth:routes"]).unwrap();
    assert!(
        !routes.contains(&old),
        "the dropped domain's route is gone: {routes}"
    );
    // A redeploy does not bring it back.
    let id = c.api.deploy(&shop, None).await.unwrap();
    let d = c.api.wait_terminal(&id, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    c.serves(&host, &version_marker("shop")).await.unwrap();
    let (s, body) = ingress_get(c.ingress, &old).await.unwrap();
    assert!(
        !body.contains(&version_marker("shop")),
        "{old} after a redeploy: {s} {body}"
    );
    // The dropped domain is free for another app.
    let (s, v) = c
        .api
        .patch(&format!("/api/v1/apps/{thief}"), json!({"domains": [old]}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_in_flight_does_not_route_a_domain_dropped_meanwhile() {
    let mut c = Cluster::up().await.unwrap();
    let src = TempDir::with_prefix("inflight-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    repo.write("Dockerfile", &slow_dockerfile(8)).unwrap();
    repo.write("www/index.html", &hello_page("shop")).unwrap();
    repo.commit("slow shop").unwrap();
    let shop = unique("shop");
    let host = format!("{shop}.localhost");
    let old = format!("old-{shop}.localhost");
    c.create_app(json!({"name": shop, "repo": repo.url(), "port": 8080,
        "domains": [host, old]}))
        .await
        .unwrap();

    // The job carries the app with both domains; one is dropped while its build runs.
    let id = c.api.deploy(&shop, None).await.unwrap();
    c.api
        .wait_log("the build's slow step", &id, "sleep 8", DEPLOY)
        .await
        .unwrap();
    let (s, v) = c
        .api
        .patch(&format!("/api/v1/apps/{shop}"), json!({"domains": [host]}))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let d = c.api.wait_terminal(&id, DEPLOY).await.unwrap();
    let log = c.api.log(&id).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{log}");
    c.serves(&host, &version_marker("shop")).await.unwrap();

    // The switch, after the PATCH, routed only the domain the app still has, and said so.
    let routes = c.redis_cli(&["HKEYS", "berth:routes"]).unwrap();
    assert!(routes.lines().any(|r| r == host), "{routes}");
    assert!(
        !routes.lines().any(|r| r == old),
        "the dropped domain's route came back with the deploy: {routes}"
    );
    assert!(
        log.contains(&format!("{old} belongs to no app now: not routed")),
        "{log}"
    );
    let (s, body) = ingress_get(c.ingress, &old).await.unwrap();
    assert!(
        !body.contains(&version_marker("shop")),
        "{old} serves the app after the deploy: {s} {body}"
    );
}

/// Waits (10 s at most) until Caddy no longer serves `host`'s app.
async fn gone(c: &Cluster, host: &str) {
    eventually(
        &format!("{host} to stop serving after its domain was dropped"),
        Duration::from_secs(10),
        || async {
            let (_, body) = ingress_get(c.ingress, host).await.unwrap();
            (!body.contains(&version_marker("shop"))).then_some(())
        },
    )
    .await
    .unwrap();
}
