//! GitHub deliveries as GitHub sends them: the `push` payload with every field GitHub's
//! documentation lists, signed with `X-Hub-Signature-256`.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::GitRepo;

/// The setting that turns `POST /api/v1/webhooks/github` on, checking signatures with `secret`:
/// the `extra` of [`crate::Cluster::up_with`] and [`crate::Cluster::separate_with`].
pub fn webhook_secret(secret: &str) -> [(&'static str, &str); 1] {
    [("BERTH_GITHUB__WEBHOOK_SECRET", secret)]
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, computed here independently of Berth's code.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A `push` event payload. `clone_url` is where the code is (a `file://` URL in tests); the
/// other URLs are GitHub-shaped.
pub fn push_payload(
    clone_url: &str,
    git_ref: &str,
    before: &str,
    after: &str,
    message: &str,
) -> Value {
    let deleted = after.bytes().all(|b| b == b'0');
    let commit = json!({
        "id": after,
        "tree_id": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "distinct": true,
        "message": message,
        "timestamp": "2026-11-25T10:00:00+00:00",
        "url": format!("https://github.com/octo/hello/commit/{after}"),
        "author": {"name": "Mona Lisa", "email": "mona@example.com", "username": "octocat"},
        "committer": {"name": "Mona Lisa", "email": "mona@example.com", "username": "octocat"},
        "added": [],
        "removed": [],
        "modified": ["www/index.html"]
    });
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "created": false,
        "deleted": deleted,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/octo/hello/compare/{}...{}", &before[..12], &after[..12]),
        "commits": if deleted { json!([]) } else { json!([commit]) },
        "head_commit": if deleted { Value::Null } else { commit },
        "repository": {
            "id": 1296269,
            "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
            "name": "hello",
            "full_name": "octo/hello",
            "private": false,
            "owner": {
                "name": "octo", "email": "octo@example.com", "login": "octo", "id": 1,
                "node_id": "MDQ6VXNlcjE=", "avatar_url": "https://github.com/images/error/octocat_happy.gif",
                "gravatar_id": "", "url": "https://api.github.com/users/octo", "html_url": "https://github.com/octo",
                "type": "User", "site_admin": false
            },
            "html_url": "https://github.com/octo/hello",
            "description": "the example app",
            "fork": false,
            "url": "https://github.com/octo/hello",
            "git_url": "git://github.com/octo/hello.git",
            "ssh_url": "git@github.com:octo/hello.git",
            "clone_url": clone_url,
            "svn_url": "https://github.com/octo/hello",
            "homepage": null,
            "size": 108,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": "HTML",
            "has_issues": true,
            "has_projects": true,
            "has_downloads": true,
            "has_wiki": true,
            "has_pages": false,
            "forks_count": 0,
            "archived": false,
            "disabled": false,
            "open_issues_count": 0,
            "license": null,
            "allow_forking": true,
            "is_template": false,
            "topics": [],
            "visibility": "public",
            "forks": 0,
            "open_issues": 0,
            "watchers": 0,
            "default_branch": "main",
            "stargazers": 0,
            "master_branch": "main",
            "created_at": 1700000000,
            "updated_at": "2026-11-25T10:00:00Z",
            "pushed_at": 1795600000
        },
        "pusher": {"name": "octocat", "email": "mona@example.com"},
        "sender": {
            "login": "octocat", "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==",
            "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4", "gravatar_id": "",
            "url": "https://api.github.com/users/octocat", "html_url": "https://github.com/octocat",
            "type": "User", "site_admin": false
        }
    })
}

/// A [`push_payload`] for `repo` (its `file://` clone URL), serialized.
pub fn push_body(
    repo: &GitRepo,
    git_ref: &str,
    before: &str,
    after: &str,
    message: &str,
) -> Vec<u8> {
    let clone_url = format!("file://{}", repo.url());
    serde_json::to_vec(&push_payload(&clone_url, git_ref, before, after, message))
        .expect("a JSON value serializes")
}

/// Sends a `push` delivery of a JSON `body` signed with `secret`: returns status and JSON body.
pub async fn deliver_push(
    base: &str,
    secret: &str,
    delivery: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Value)> {
    deliver(
        base,
        Some(secret),
        "push",
        delivery,
        body,
        "application/json",
    )
    .await
}

/// The id of the one deployment a delivery's answer (`{"deployments": [id]}`) says it queued;
/// panics unless it names exactly one.
pub fn queued_one(answer: &Value) -> String {
    match answer["deployments"].as_array().map(Vec::as_slice) {
        Some([id]) => id.as_str().expect("a deployment id").to_string(),
        _ => panic!("one queued deployment expected: {answer}"),
    }
}

/// Sends a delivery: returns status and JSON body.
pub async fn deliver(
    base: &str,
    secret: Option<&str>,
    event: &str,
    delivery: &str,
    body: &[u8],
    content_type: &str,
) -> anyhow::Result<(u16, Value)> {
    let http = crate::http_client().build()?;
    deliver_via(&http, base, secret, event, delivery, body, content_type).await
}

/// [`deliver`] through `http` (e.g. a client that trusts a test CA, for an `https://` base).
pub async fn deliver_via(
    http: &reqwest::Client,
    base: &str,
    secret: Option<&str>,
    event: &str,
    delivery: &str,
    body: &[u8],
    content_type: &str,
) -> anyhow::Result<(u16, Value)> {
    deliver_at(
        http,
        &format!("{base}/api/v1/webhooks/github"),
        secret,
        event,
        delivery,
        body,
        content_type,
    )
    .await
}

/// [`deliver_via`] to the endpoint at `url` (an app's own: `{base}/api/v1/apps/{app}/webhooks/github`).
pub async fn deliver_at(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&str>,
    event: &str,
    delivery: &str,
    body: &[u8],
    content_type: &str,
) -> anyhow::Result<(u16, Value)> {
    let mut r = http
        .post(url)
        .header("content-type", content_type)
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("user-agent", "GitHub-Hookshot/abc123")
        .body(body.to_vec());
    if let Some(s) = secret {
        r = r.header("x-hub-signature-256", signature(s, body));
    }
    let resp = r.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}
