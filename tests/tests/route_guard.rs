//! A route written straight into Redis (what anyone who could write Redis could do) serves only
//! what a node's responder can vouch for: a Berth container's published port on the address of
//! the node the upstream names. A route pointing a domain at another service on the node's
//! loopback, or at a node that is not in the fleet, serves nothing; the same route pointing at
//! the app's real container serves it.

use std::time::Duration;

use berth_protocol::{envelope, keys, Route, Upstream};
use berth_tests::{eventually, ingress_get, repo_root, unique, Cluster, GitRepo, TempDir};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEPLOY: Duration = Duration::from_secs(180);
const SECRET: &str = "internal-service-not-for-the-internet";

/// Writes `route` into `berth:routes` and announces it, as a node's router does.
fn forge(c: &Cluster, route: &Route) {
    let bytes = envelope::encode(envelope::kind::ROUTE, "forged", route).unwrap();
    c.redis_pipe(&[
        vec![
            b"HSET".to_vec(),
            keys::ROUTES.as_bytes().to_vec(),
            route.domain.as_bytes().to_vec(),
            bytes,
        ],
        vec![
            b"PUBLISH".to_vec(),
            keys::ROUTES_CHANGED.as_bytes().to_vec(),
            route.domain.as_bytes().to_vec(),
        ],
    ])
    .unwrap();
}

fn route(domain: &str, app: &str, dial: &str, node: &str) -> Route {
    Route {
        domain: domain.into(),
        app: app.into(),
        upstreams: vec![Upstream {
            dial: dial.into(),
            node: node.into(),
            container: "forged".into(),
            deployment: "forged".into(),
        }],
        updated_at: 1,
        drain_s: None,
        standby: Vec::new(),
        standby_until: 0,
    }
}

/// The example app, created as `<prefix>-…` and deployed: the repository's directory (kept for
/// the test's length) and the app's name.
async fn hello_deployed(c: &mut Cluster, prefix: &str) -> (TempDir, String) {
    let src = TempDir::with_prefix(prefix).unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique(prefix);
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}",
        c.api.log(&id).await.unwrap()
    );
    (src, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_route_serves_only_a_berth_container() {
    let mut c = Cluster::up().await.unwrap();
    // A service on the node's loopback that must never be reachable through Caddy (think of
    // Caddy's admin API, or a database): it answers any request with a secret.
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_port = internal.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = internal.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = SECRET;
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    // The probe works: the service answers when asked directly.
    let (s, body) = ingress_get(internal_port, "x").await.unwrap();
    assert_eq!((s, body.as_str()), (200, SECRET));

    let (_src, app) = hello_deployed(&mut c, "guard").await;
    let (_, replicas) = c
        .api
        .get(&format!("/api/v1/apps/{app}/replicas"))
        .await
        .unwrap();
    let real = replicas[0]["upstream"].as_str().unwrap().to_string();

    let stolen = format!("{}.localhost", unique("stolen"));
    let ghost = format!("{}.localhost", unique("ghost"));
    let copy = format!("{}.localhost", unique("copy"));
    forge(
        &c,
        &route(
            &stolen,
            &app,
            &format!("127.0.0.1:{internal_port}"),
            &c.node,
        ),
    );
    forge(&c, &route(&ghost, &app, &real, "no-such-node"));
    // The control, written last through the same path: the app's real container under another
    // domain is served, so by then the forged routes were applied too.
    forge(&c, &route(&copy, &app, &real, &c.node));
    let copy_body = c
        .serves(&copy, "Hello")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert!(!copy_body.contains(SECRET));
    // Caddy has both forged domains, with no upstream it may dial: it answers with an error or
    // not at all (it waits for an upstream), and never with the secret. Twice, past the
    // responder's 100 ms refresh.
    for _ in 0..2 {
        for domain in [&stolen, &ghost] {
            if let Ok((status, body)) = ingress_get(c.ingress, domain).await {
                assert!(
                    !body.contains(SECRET) && !body.contains("Hello"),
                    "{domain}: {status} {body}"
                );
                assert!(status >= 500, "{domain}: {status} {body}");
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let logs = c.logs();
    assert!(
        logs.contains("upstream left out of the route: port")
            && logs.contains("not published by a running Berth container here"),
        "the node says why it refused the loopback service"
    );
    assert!(
        logs.contains("node \\\"no-such-node\\\" is not in the fleet")
            || logs.contains("node \"no-such-node\" is not in the fleet"),
        "the node says why it refused the unknown node"
    );
    eventually("nothing else changed", Duration::from_secs(5), || async {
        c.serves(&format!("{app}.localhost"), "Hello").await.ok()
    })
    .await
    .unwrap();
}

/// A `RemoveApp` job for an app that does not own the domain (the domain was freed and taken by
/// another app before the job ran, or the job is forged): the route stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_another_app_s_domain_leaves_its_route() {
    use berth_protocol::Job;
    let mut c = Cluster::up().await.unwrap();
    let (_src, app) = hello_deployed(&mut c, "keep").await;
    let domain = format!("{app}.localhost");
    c.serves(&domain, "Hello").await.unwrap();

    let job = Job::RemoveApp {
        app: unique("other"),
        domains: vec![domain.clone()],
    };
    let bytes = envelope::encode(envelope::kind::JOB, "forged", &job).unwrap();
    let stream = keys::jobs(&c.node);
    c.redis_pipe(&[vec![
        b"XADD".to_vec(),
        stream.as_bytes().to_vec(),
        b"*".to_vec(),
        envelope::STREAM_FIELD.as_bytes().to_vec(),
        bytes,
    ]])
    .unwrap();
    // Done when the node's group has read and acknowledged every job of its stream.
    eventually(
        "the node to finish the job",
        Duration::from_secs(30),
        || async {
            let info = c.redis_cli(&["XINFO", "GROUPS", &stream]).ok()?;
            let lines: Vec<&str> = info.lines().collect();
            let field = |name: &str| {
                let i = lines.iter().position(|l| *l == name)?;
                lines.get(i + 1).map(|v| v.to_string())
            };
            (field("pending")? == "0" && field("lag")? == "0").then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let stored = c.redis_cli(&["HEXISTS", keys::ROUTES, &domain]).unwrap();
    assert_eq!(stored, "1", "the route is still in Redis");
    assert!(c.logs().contains("route belongs to another app now"));
    for _ in 0..5 {
        c.serves(&domain, "Hello").await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
