//! GitHub push webhooks end to end: signed deliveries shaped like GitHub's, real git, Docker and
//! Caddy.

use std::time::Duration;

use berth_tests::github::{
    deliver, deliver_at, deliver_push, push_body, queued_one, webhook_secret,
};
use berth_tests::{hello_page, repo_root, unique, version_marker, Cluster, GitRepo, TempDir};
use serde_json::{json, Value};

const SECRET: &str = "It's a Secret to Everybody";
const DEPLOY: Duration = Duration::from_secs(180);
const ZERO: &str = "0000000000000000000000000000000000000000";

async fn deployment_count(c: &Cluster, app: &str) -> usize {
    let (_, v) = c
        .api
        .get(&format!("/api/v1/apps/{app}/deployments"))
        .await
        .unwrap();
    v.as_array().map(Vec::len).unwrap_or(0)
}

/// An app following a fresh copy of examples/hello on `main`.
async fn app_with_repo(c: &mut Cluster, src: &TempDir) -> (String, GitRepo) {
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    let app = unique("hook");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await
        .unwrap();
    (app, repo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_deploys_that_commit() {
    let mut c = Cluster::up_with(&webhook_secret(SECRET)).await.unwrap();
    let src = TempDir::with_prefix("hook-src").unwrap();
    let (app, repo) = app_with_repo(&mut c, &src).await;
    let before = repo.git(&["rev-parse", "HEAD"]).unwrap();
    repo.write("www/index.html", &hello_page("pushed")).unwrap();
    let sha = repo
        .commit("Ship the pushed version\n\nwith a body")
        .unwrap();

    let (s, v) = deliver(
        &c.api.base,
        Some(SECRET),
        "ping",
        &unique("d"),
        b"{\"zen\":\"hi\"}",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");

    let b = push_body(
        &repo,
        "refs/heads/main",
        &before,
        &sha,
        "Ship the pushed version\n\nwith a body",
    );
    let (s, v) = deliver_push(&c.api.base, SECRET, &unique("d"), &b)
        .await
        .unwrap();
    assert_eq!(s, 202, "{v}");
    let d = c.api.wait_terminal(&queued_one(&v), DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}\n{}", c.logs());
    assert_eq!(d["commit"], sha.as_str());
    assert_eq!(d["ref"], sha.as_str());
    assert_eq!(d["commit_message"], "Ship the pushed version");
    assert_eq!(d["commit_author"], "Mona Lisa <mona@example.com>");
    c.serves(&format!("{app}.localhost"), &version_marker("pushed"))
        .await
        .unwrap();

    // A form-encoded delivery (GitHub's other content type) of a newer commit works too.
    repo.write("www/index.html", &hello_page("form")).unwrap();
    let sha2 = repo.commit("form delivery").unwrap();
    let payload = push_body(&repo, "refs/heads/main", &sha, &sha2, "form delivery");
    let form = format!(
        "payload={}",
        urlencode(&String::from_utf8(payload).unwrap())
    );
    let (s, v) = deliver(
        &c.api.base,
        Some(SECRET),
        "push",
        &unique("d"),
        form.as_bytes(),
        "application/x-www-form-urlencoded",
    )
    .await
    .unwrap();
    assert_eq!(s, 202, "{v}");
    let d = c.api.wait_terminal(&queued_one(&v), DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
    c.serves(&format!("{app}.localhost"), &version_marker("form"))
        .await
        .unwrap();

    // A deploy by hand records the commit's message and author from git.
    let (_, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(d["commit_message"], "form delivery", "{d}");
    assert_eq!(d["commit_author"], "Berth Test <test@berth.invalid>", "{d}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_that_queue_nothing() {
    let mut c = Cluster::separate_with(&webhook_secret(SECRET))
        .await
        .unwrap();
    let src = TempDir::with_prefix("hook-src").unwrap();
    let (app, repo) = app_with_repo(&mut c, &src).await;
    let head = repo.git(&["rev-parse", "HEAD"]).unwrap();
    let base = c.api.base.clone();
    let good = push_body(&repo, "refs/heads/main", ZERO, &head, "initial");

    /// What is sent, and what must come back: (case, secret, event, body, status, text in answer).
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "bad signature",
            Some("not the secret"),
            "push",
            good.clone(),
            401,
            "signature",
        ),
        (
            "missing signature",
            None,
            "push",
            good.clone(),
            401,
            "missing",
        ),
        (
            "tag push",
            Some(SECRET),
            "push",
            push_body(&repo, "refs/tags/v1.0", ZERO, &head, "t"),
            202,
            "tag",
        ),
        (
            "branch deletion",
            Some(SECRET),
            "push",
            push_body(&repo, "refs/heads/main", &head, ZERO, "d"),
            202,
            "deleted",
        ),
        (
            "another branch",
            Some(SECRET),
            "push",
            push_body(&repo, "refs/heads/feature", ZERO, &head, "f"),
            202,
            "branch feature",
        ),
        (
            "another event",
            Some(SECRET),
            "issues",
            b"{\"action\":\"opened\"}".to_vec(),
            202,
            "not a push",
        ),
    ];
    for (what, secret, event, b, status, needle) in cases {
        let (s, v) = deliver(&base, secret, event, &unique("d"), &b, "application/json")
            .await
            .unwrap();
        assert_eq!(s, status, "{what}: {v}");
        let text = v.to_string();
        assert!(text.contains(needle), "{what}: {text}");
        assert_eq!(deployment_count(&c, &app).await, 0, "{what} queued nothing");
    }
    let logs = c.logs();
    assert!(!logs.contains(SECRET), "the secret never reaches a log");

    // A delivery id is handled once, even across a coordinator restart.
    let delivery = unique("delivery");
    let (s, v) = deliver_push(&base, SECRET, &delivery, &good).await.unwrap();
    assert_eq!(s, 202, "{v}");
    let first = queued_one(&v);
    let (s, v) = deliver_push(&base, SECRET, &delivery, &good).await.unwrap();
    assert_eq!(s, 202);
    assert_eq!(v["deployments"], json!([]), "replayed delivery: {v}");
    c.restart_coordinator().await.unwrap();
    let (s, v) = deliver_push(&c.api.base, SECRET, &delivery, &good)
        .await
        .unwrap();
    assert_eq!(s, 202);
    assert_eq!(v["deployments"], json!([]), "replayed after a restart: {v}");
    assert_eq!(deployment_count(&c, &app).await, 1);
    // The deployment queued before the restart still ends (the new coordinator adopts it).
    let d = c.api.wait_terminal(&first, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_pushes_the_newest_wins() {
    let mut c = Cluster::up_with(&webhook_secret(SECRET)).await.unwrap();
    let src = TempDir::with_prefix("hook-src").unwrap();
    let (app, repo) = app_with_repo(&mut c, &src).await;
    let mut before = repo.git(&["rev-parse", "HEAD"]).unwrap();
    let mut bodies = Vec::new();
    for v in ["q1", "q2", "q3"] {
        repo.write("www/index.html", &hello_page(v)).unwrap();
        let sha = repo.commit(v).unwrap();
        bodies.push((
            sha.clone(),
            push_body(&repo, "refs/heads/main", &before, &sha, v),
        ));
        before = sha;
    }
    let mut ids = Vec::new();
    for (_, b) in &bodies {
        let (s, v) = deliver_push(&c.api.base, SECRET, &unique("d"), b)
            .await
            .unwrap();
        assert_eq!(s, 202, "{v}");
        ids.push(queued_one(&v));
    }
    let mut ends: Vec<Value> = Vec::new();
    for id in &ids {
        ends.push(c.api.wait_terminal(id, DEPLOY).await.unwrap());
    }
    assert_eq!(ends[2]["status"], "succeeded", "{}", ends[2]);
    assert_eq!(ends[2]["commit"], bodies[2].0.as_str());
    for (i, old) in ends[..2].iter().enumerate() {
        assert_eq!(old["status"], "cancelled", "{old}");
        let by = old["error"]
            .as_str()
            .unwrap_or_default()
            .strip_prefix("superseded by ")
            .unwrap_or_default();
        assert!(
            ids[i + 1..].iter().any(|newer| newer == by),
            "superseded by a newer one: {old}"
        );
    }
    c.serves(&format!("{app}.localhost"), &version_marker("q3"))
        .await
        .unwrap();
    // Only the newest deployment switched traffic.
    let mut switched = 0;
    for id in &ids {
        if c.api.log(id).await.unwrap().contains("routed ") {
            switched += 1;
        }
    }
    assert_eq!(switched, 1);
}

/// Issue 13, item 6: a captured delivery sent again under a new delivery id (the signature
/// covers the body only, so an attacker can re-send it at will) queues nothing, and a client
/// guessing signatures is cut off with 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_signature_guessing_are_refused() {
    let mut c = Cluster::up_with(&webhook_secret(SECRET)).await.unwrap();
    let src = TempDir::with_prefix("hook-src").unwrap();
    let (app, repo) = app_with_repo(&mut c, &src).await;
    let before = repo.git(&["rev-parse", "HEAD"]).unwrap();
    repo.write("www/index.html", &hello_page("once")).unwrap();
    let sha = repo.commit("once").unwrap();
    let body = push_body(&repo, "refs/heads/main", &before, &sha, "once");
    let (s, v) = deliver_push(&c.api.base, SECRET, &unique("d"), &body)
        .await
        .unwrap();
    assert_eq!(s, 202, "{v}");
    let first = queued_one(&v);
    for _ in 0..3 {
        let (s, v) = deliver_push(&c.api.base, SECRET, &unique("replay"), &body)
            .await
            .unwrap();
        assert_eq!(s, 202, "{v}");
        assert_eq!(v["deployments"], json!([]), "a replay queues nothing: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("handled before"),
            "{v}"
        );
    }
    assert_eq!(deployment_count(&c, &app).await, 1);
    let d = c.api.wait_terminal(&first, DEPLOY).await.unwrap();
    assert_eq!(d["status"], "succeeded", "{d}");

    // Guessing: every wrong signature is a 401 until the allowance is used up, then even a
    // right one gets 429 (nothing is computed for that client during the window).
    repo.write("www/index.html", &hello_page("later")).unwrap();
    let sha2 = repo.commit("later").unwrap();
    let newer = push_body(&repo, "refs/heads/main", &sha, &sha2, "later");
    for i in 0..10 {
        let (s, v) = deliver_push(&c.api.base, &format!("guess {i}"), &unique("d"), &newer)
            .await
            .unwrap();
        assert_eq!(s, 401, "guess {i}: {v}");
    }
    let (s, v) = deliver_push(&c.api.base, SECRET, &unique("d"), &newer)
        .await
        .unwrap();
    assert_eq!(s, 429, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("too many deliveries with a wrong signature"),
        "{v}"
    );
    assert_eq!(
        deployment_count(&c, &app).await,
        1,
        "nothing queued while blocked"
    );
}

/// An app with a webhook secret of its own takes its pushes only at its own endpoint, signed
/// with its secret; the shared endpoint (and the shared secret) no longer deploy it, and the
/// secret is never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_its_own_secret_deploys_only_from_its_own_endpoint() {
    const OWN: &str = "own-secret-of-one-app-5b1e0c";
    let mut c = Cluster::up_with(&webhook_secret(SECRET)).await.unwrap();
    let src = TempDir::with_prefix("hook-src").unwrap();
    let (shared, repo) = app_with_repo(&mut c, &src).await;
    let own = unique("own");
    let (s, v) = c
        .api
        .post(
            "/api/v1/apps",
            json!({"name": own, "repo": repo.url(), "port": 8080, "webhook_secret": "short"}),
        )
        .await
        .unwrap();
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("16 to 256"), "{v}");
    c.create_app(json!({"name": own, "repo": repo.url(), "port": 8080, "webhook_secret": OWN}))
        .await
        .unwrap();
    let (_, view) = c.api.get(&format!("/api/v1/apps/{own}")).await.unwrap();
    assert_eq!(view["webhook_secret"], true, "{view}");
    assert!(!view.to_string().contains(OWN), "{view}");

    let before = repo.git(&["rev-parse", "HEAD"]).unwrap();
    repo.write("www/index.html", &hello_page("own")).unwrap();
    let sha = repo.commit("own endpoint").unwrap();
    let b = push_body(&repo, "refs/heads/main", &before, &sha, "own endpoint");
    let http = berth_tests::http_client().build().unwrap();
    let own_url = format!("{}/api/v1/apps/{own}/webhooks/github", c.api.base);
    let at = |url: String, secret: &'static str| {
        let (http, b) = (http.clone(), b.clone());
        async move {
            deliver_at(
                &http,
                &url,
                Some(secret),
                "push",
                &unique("d"),
                &b,
                "application/json",
            )
            .await
            .unwrap()
        }
    };

    // The shared endpoint deploys the app without a secret of its own, not the other.
    let (s, v) = deliver_push(&c.api.base, SECRET, &unique("d"), &b)
        .await
        .unwrap();
    assert_eq!(s, 202, "{v}");
    let d = c.api.wait_terminal(&queued_one(&v), DEPLOY).await.unwrap();
    assert_eq!(d["app"], shared.as_str(), "{d}");
    // The app's own endpoint refuses the shared secret, and takes its own: that app only.
    let (s, v) = at(own_url.clone(), SECRET).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = at(own_url.clone(), OWN).await;
    assert_eq!(s, 202, "{v}");
    let d = c.api.wait_terminal(&queued_one(&v), DEPLOY).await.unwrap();
    assert_eq!(
        (d["app"].as_str(), d["status"].as_str()),
        (Some(own.as_str()), Some("succeeded")),
        "{d}\n{}",
        c.logs()
    );
    // An app without a secret of its own has no endpoint of its own.
    let (s, v) = at(
        format!("{}/api/v1/apps/{shared}/webhooks/github", c.api.base),
        SECRET,
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v.to_string().contains("no webhook secret of its own"),
        "{v}"
    );

    // Removed, the app is back on the shared endpoint and its own is closed.
    let (s, v) = c
        .api
        .patch(
            &format!("/api/v1/apps/{own}"),
            json!({"remove_webhook_secret": true}),
        )
        .await
        .unwrap();
    assert_eq!((s, &v["webhook_secret"]), (200, &json!(false)), "{v}");
    let (s, v) = at(own_url, OWN).await;
    assert_eq!(s, 403, "{v}");
    let all = c
        .redis_cli(&["KEYS", "berth:app:*:webhook_secret"])
        .unwrap();
    assert!(all.trim().is_empty(), "{all}");
}
