//! The API as a contract (issue 15), on a real `berth up`: the OpenAPI document is served at
//! `/api/v1/openapi.json` without a token and lists exactly the server's endpoints
//! (`berth_web::auth::ENDPOINTS`), each with the scope `auth::required` gives it; and every
//! operation it lists answers as documented: 401 without a token (but the documented open ones),
//! 403 naming the scope needed for each smaller scope, and with a token of that scope (or more)
//! it is routed — neither 401 nor 403 nor the unrouted 404. A method a path does not document is
//! not routed either.

use std::collections::BTreeSet;

use berth_protocol::api::Scope;
use berth_tests::Cluster;
use berth_web::auth::{required, sample_path, ENDPOINTS};
use serde_json::{json, Value};

/// A request with `token` (none: no header), a JSON body `{}` for a method that takes one;
/// status, the error message (empty when there is none) and the `WWW-Authenticate` header.
async fn call(c: &Cluster, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = c
        .api
        .http
        .request(method.clone(), format!("{}{path}", c.api.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
        r = r.json(&json!({}));
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let www = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.unwrap();
    let error = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, error, www)
}

/// Whether an answer is the router's own "no such endpoint" (or wrong method), not an answer of
/// a route (e.g. a route's "app … not found").
fn unrouted(status: u16, error: &str) -> bool {
    (status == 404 && error.contains("no such endpoint"))
        || (status == 405 && error.contains("not allowed on this path"))
}

async fn token(c: &Cluster, scope: Scope) -> String {
    let (s, v) = c
        .api
        .post(
            "/api/v1/tokens",
            json!({"name": format!("contract-{scope}"), "scope": scope}),
        )
        .await
        .unwrap();
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_as_documented() {
    let c = Cluster::up().await.unwrap();

    // The document, without a token.
    let r = c
        .api
        .http
        .get(format!("{}/api/v1/openapi.json", c.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );

    // Exactly the server's endpoints.
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, o) in item.as_object().unwrap() {
            documented.push((method.to_ascii_uppercase(), path.clone(), o.clone()));
        }
    }
    let have: BTreeSet<(String, String)> = documented
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let known: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_string()))
        .collect();
    assert_eq!(have, known, "the document and auth::ENDPOINTS differ");

    // The router's 404 is told apart from a route's by its message.
    let admin = c.api.token.clone();
    let (s, e, _) = call(&c, "GET", "/api/v1/no-such-endpoint", Some(&admin)).await;
    assert!(unrouted(s, &e), "{s} {e}");
    let (s, e, _) = call(&c, "GET", "/api/v1/apps/no-such-name", Some(&admin)).await;
    assert_eq!(s, 404, "{e}");
    assert!(!unrouted(s, &e), "{e}");

    let tokens = [
        (Scope::Metrics, token(&c, Scope::Metrics).await),
        (Scope::Read, token(&c, Scope::Read).await),
        (Scope::Deploy, token(&c, Scope::Deploy).await),
        (Scope::Admin, admin.clone()),
    ];
    let mut checked = 0;
    for (method, template, o) in &documented {
        let path = sample_path(template);
        let what = format!("{method} {path}");
        let endpoint = ENDPOINTS
            .iter()
            .find(|e| e.method == method && e.path == template)
            .unwrap();
        if o.get("security") == Some(&json!([])) {
            // Open: no token needed, so none of the token's answers.
            assert!(!endpoint.token, "{what} is documented open");
            let (s, e, www) = call(&c, method, &path, None).await;
            assert!(www.is_empty() && !e.contains("token"), "{what}: {s} {e}");
            assert!(!unrouted(s, &e), "{what}: {s} {e}");
            checked += 1;
            continue;
        }
        assert!(endpoint.token, "{what} needs no token but documents one");
        let needed = match o["x-berth-scope"].as_str() {
            Some("metrics") => Scope::Metrics,
            Some("read") => Scope::Read,
            Some("deploy") => Scope::Deploy,
            Some("admin") => Scope::Admin,
            other => panic!("{what}: x-berth-scope {other:?}"),
        };
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(needed, required(&m, &path), "{what}");

        let (s, e, www) = call(&c, method, &path, None).await;
        assert_eq!((s, www.as_str()), (401, "Bearer"), "{what}: {e}");
        assert!(e.contains("Authorization: Bearer"), "{what}: {e}");
        for (scope, t) in &tokens {
            let (s, e, _) = call(&c, method, &path, Some(t)).await;
            if *scope < needed {
                assert_eq!(s, 403, "{what} with a {scope} token: {e}");
                assert!(
                    e.contains(&format!("scope is {scope}"))
                        && e.contains(&format!("needs {needed}")),
                    "{what} with a {scope} token: {e}"
                );
            } else {
                assert!(
                    s != 401 && s != 403 && !unrouted(s, &e),
                    "{what} with a {scope} token: {s} {e}"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, ENDPOINTS.len());

    // A method a documented path does not list is not routed.
    for path in have.iter().map(|(_, p)| p).collect::<BTreeSet<_>>() {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if have.contains(&(method.to_string(), path.clone())) {
                continue;
            }
            let (s, e, _) = call(&c, method, &sample_path(path), Some(&admin)).await;
            assert!(
                unrouted(s, &e),
                "{method} {path} is routed but not documented: {s} {e}"
            );
            // A 405 says which methods the path takes (RFC 9110's `Allow`), the documented ones.
            if s == 405 {
                let resp = c
                    .api
                    .http
                    .request(
                        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                        format!("{}{}", c.api.base, sample_path(path)),
                    )
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap();
                let allow = resp
                    .headers()
                    .get("allow")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let mut want: Vec<&str> = have
                    .iter()
                    .filter(|(_, p)| p == path)
                    .map(|(m, _)| m.as_str())
                    .collect();
                let mut got: Vec<&str> = allow.split(", ").collect();
                want.sort();
                got.sort();
                assert_eq!(got, want, "Allow of {method} {path}");
            }
        }
    }
}
