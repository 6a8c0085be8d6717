//! Who is asking, and whether they may: a request's bearer token resolved to a [`Principal`]
//! (the configured `api.token` — admin, checked here without Redis — or a token made with
//! `POST /api/v1/tokens`, looked up by its hash), the scope each endpoint needs ([`required`]),
//! the failed-authentication allowance per client address (429 with `Retry-After` past it),
//! and which requests the audit log records ([`audited`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_coordinator::{api, Coordinator};
use berth_protocol::api::Scope;
use berth_protocol::now_ms;
use subtle::ConstantTimeEq;
use warp::http::Method;
use warp::{Filter, Rejection};

use crate::error::{Forbidden, TooManyFailures, Unauthorized};

/// Who a request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id; `config` for `api.token`.
    pub id: String,
    pub name: String,
    pub scope: Scope,
}

impl Principal {
    fn config() -> Principal {
        Principal {
            id: "config".into(),
            name: "api.token".into(),
            scope: Scope::Admin,
        }
    }
}

/// The segments of an API path after `/api/v1/` (empty for other paths).
fn segments(path: &str) -> Option<Vec<&str>> {
    path.strip_prefix("/api/v1/")
        .map(|rest| rest.split('/').filter(|s| !s.is_empty()).collect())
}

/// The scope a request needs: `/metrics` needs `metrics`; under `/api/v1/`, reading needs
/// `read` (tokens and the audit log: `admin`); deploying, rolling back, restarting, cancelling
/// and analysing need `deploy`; every other change needs `admin`.
pub fn required(method: &Method, path: &str) -> Scope {
    let Some(s) = segments(path) else {
        return if path == "/metrics" {
            Scope::Metrics
        } else {
            Scope::Admin
        };
    };
    let s: Vec<&str> = s;
    if matches!(s.first(), Some(&"tokens") | Some(&"audit")) {
        return Scope::Admin;
    }
    if method == Method::GET || method == Method::HEAD {
        return Scope::Read;
    }
    if method == Method::POST {
        let deploy = matches!(
            s.as_slice(),
            ["apps", _, "deployments"]
                | ["apps", _, "uploads"]
                | ["apps", _, "rollback"]
                | ["apps", _, "restart"]
                | ["deployments", _, "cancel"]
                | ["analyze"]
        );
        if deploy {
            return Scope::Deploy;
        }
    }
    Scope::Admin
}

/// One endpoint the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub method: &'static str,
    /// The path, each parameter written `{name}`.
    pub path: &'static str,
    /// Whether it needs a token (then [`required`] says of which scope); `false`: `/healthz`,
    /// the GitHub webhooks (signed instead) and the OpenAPI document.
    pub token: bool,
}

const fn ep(method: &'static str, path: &'static str) -> Endpoint {
    Endpoint {
        method,
        path,
        token: true,
    }
}

const fn open(method: &'static str, path: &'static str) -> Endpoint {
    Endpoint {
        method,
        path,
        token: false,
    }
}

/// The methods an endpoint serves `path` with (the `Allow` of a 405), in [`ENDPOINTS`]' order;
/// empty for a path no endpoint has. `{…}` in an endpoint's path takes any one segment.
pub fn allowed(path: &str) -> Vec<&'static str> {
    let want: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for e in ENDPOINTS {
        let have: Vec<&str> = e.path.split('/').collect();
        let fits = have.len() == want.len()
            && have.iter().zip(&want).all(|(h, w)| {
                if h.starts_with('{') {
                    !w.is_empty()
                } else {
                    h == w
                }
            });
        if fits && !out.contains(&e.method) {
            out.push(e.method);
        }
    }
    out
}

/// Every endpoint of the server (the routes of `crate::routes`). The OpenAPI document has
/// exactly these operations, each with the scope [`required`] gives it (unit tests in
/// `openapi.rs`), and `tests/tests/api_contract.rs` holds a running server to both: a route
/// added to `routes` goes here and into `openapi::operations`.
pub const ENDPOINTS: &[Endpoint] = &[
    open("GET", "/healthz"),
    ep("GET", "/metrics"),
    open("GET", "/api/v1/openapi.json"),
    open("POST", "/api/v1/webhooks/github"),
    open("POST", "/api/v1/apps/{name}/webhooks/github"),
    ep("GET", "/api/v1/apps"),
    ep("POST", "/api/v1/apps"),
    ep("GET", "/api/v1/apps/{name}"),
    ep("PATCH", "/api/v1/apps/{name}"),
    ep("DELETE", "/api/v1/apps/{name}"),
    ep("POST", "/api/v1/apps/{name}/deployments"),
    ep("POST", "/api/v1/apps/{name}/uploads"),
    ep("GET", "/api/v1/apps/{name}/deployments"),
    ep("GET", "/api/v1/deployments/{id}"),
    ep("GET", "/api/v1/deployments/{id}/logs"),
    ep("GET", "/api/v1/apps/{name}/logs"),
    ep("POST", "/api/v1/apps/{name}/rollback"),
    ep("GET", "/api/v1/apps/{name}/releases"),
    ep("GET", "/api/v1/apps/{name}/replicas"),
    ep("POST", "/api/v1/deployments/{id}/cancel"),
    ep("GET", "/api/v1/nodes"),
    ep("GET", "/api/v1/redis"),
    ep("POST", "/api/v1/nodes/{node}/cordon"),
    ep("POST", "/api/v1/nodes/{node}/uncordon"),
    ep("POST", "/api/v1/nodes/{node}/drain"),
    ep("POST", "/api/v1/apps/{name}/restart"),
    ep("POST", "/api/v1/apps/{name}/stop"),
    ep("POST", "/api/v1/apps/{name}/start"),
    ep("GET", "/api/v1/apps/{name}/metrics"),
    ep("POST", "/api/v1/apps/{name}/exec"),
    ep("GET", "/api/v1/exec/{id}"),
    ep("POST", "/api/v1/analyze"),
    ep("POST", "/api/v1/tokens"),
    ep("GET", "/api/v1/tokens"),
    ep("DELETE", "/api/v1/tokens/{id}"),
    ep("GET", "/api/v1/audit"),
    ep("GET", "/api/v1/apps/{name}/env"),
    ep("PUT", "/api/v1/apps/{name}/env/{key}"),
    ep("DELETE", "/api/v1/apps/{name}/env/{key}"),
    ep("GET", "/api/v1/events"),
];

/// `path` with each `{param}` replaced by a sample value (`no-such-<param>`; `{key}`:
/// `NO_SUCH_KEY`): names nothing that exists, so a request to it changes nothing.
pub fn sample_path(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some("key") => "NO_SUCH_KEY".to_string(),
                Some(p) => format!("no-such-{p}"),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The audit log's name of a request that changes something, and what it acts on (from the
/// path; empty when the path does not name it, e.g. a create). `None`: not audited (reads).
pub fn audited(method: &Method, path: &str) -> Option<(String, String)> {
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return None;
    }
    let s = segments(path)?;
    let (m, t) = (method.as_str(), |x: &str| x.to_string());
    let named = match (m, s.as_slice()) {
        ("POST", ["apps"]) => ("app.create", String::new()),
        ("PATCH", ["apps", a]) => ("app.update", t(a)),
        ("DELETE", ["apps", a]) => ("app.delete", t(a)),
        ("POST", ["apps", a, "deployments"]) => ("deploy", t(a)),
        ("POST", ["apps", a, "uploads"]) => ("deploy.upload", t(a)),
        ("POST", ["apps", a, "rollback"]) => ("rollback", t(a)),
        ("POST", ["apps", a, "restart"]) => ("app.restart", t(a)),
        ("POST", ["apps", a, "stop"]) => ("app.stop", t(a)),
        ("POST", ["apps", a, "start"]) => ("app.start", t(a)),
        ("POST", ["apps", a, "exec"]) => ("exec", t(a)),
        ("PUT", ["apps", a, "env", k]) => ("env.set", format!("{a}/{k}")),
        ("DELETE", ["apps", a, "env", k]) => ("env.unset", format!("{a}/{k}")),
        ("POST", ["deployments", d, "cancel"]) => ("cancel", t(d)),
        ("POST", ["nodes", n, "cordon"]) => ("node.cordon", t(n)),
        ("POST", ["nodes", n, "uncordon"]) => ("node.uncordon", t(n)),
        ("POST", ["nodes", n, "drain"]) => ("node.drain", t(n)),
        ("POST", ["tokens"]) => ("token.create", String::new()),
        ("DELETE", ["tokens", id]) => ("token.revoke", t(id)),
        ("POST", ["analyze"]) => return None,
        _ => return Some((format!("{m} {path}"), String::new())),
    };
    Some((named.0.to_string(), named.1))
}

/// When each token's last use was written (at most one write a minute per token).
#[derive(Clone, Default)]
pub struct LastUse(Arc<Mutex<HashMap<String, u64>>>);

const TOUCH_EVERY_MS: u64 = 60_000;

impl LastUse {
    /// Whether token `id`'s use at `now` is worth writing.
    fn due(&self, id: &str, now: u64) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(id) {
            Some(&at) if now.saturating_sub(at) < TOUCH_EVERY_MS => false,
            _ => {
                m.insert(id.to_string(), now);
                true
            }
        }
    }
}

/// Resolves the request's token to a [`Principal`] allowed to make this request: 401 for a
/// missing, wrong, revoked or expired token; 403 for one whose scope is too small (saying
/// which scope is needed); 429 with `Retry-After` once the client's address failed
/// [`api::AUTH_FAILURES_ALLOWED`] times within [`api::AUTH_FAILURE_WINDOW_S`].
pub fn principal(
    coord: Coordinator,
    config_token: Arc<str>,
    last_use: LastUse,
) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(crate::server::peer())
        .and_then(
            move |method: Method,
                  path: warp::path::FullPath,
                  h: Option<String>,
                  peer: Option<std::net::SocketAddr>| {
                let (coord, config_token, last_use) =
                    (coord.clone(), config_token.clone(), last_use.clone());
                async move {
                    let given = h
                        .as_deref()
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .map(str::trim);
                    let Some(given) = given else {
                        return Err(warp::reject::custom(Unauthorized(
                            "missing 'Authorization: Bearer <token>' header",
                        )));
                    };
                    let who = if bool::from(given.as_bytes().ct_eq(config_token.as_bytes())) {
                        Principal::config()
                    } else {
                        let addr = peer.map(|a| a.ip().to_string()).unwrap_or_default();
                        let outcome = coord
                            .api
                            .send(api::Authenticate {
                                hash: api::token_hash(given),
                                addr: addr.clone(),
                            })
                            .await;
                        match crate::flatten(outcome) {
                            Ok(api::AuthOutcome::Token(t)) => {
                                let now = now_ms();
                                if last_use.due(&t.id, now) {
                                    coord.api.do_send(api::TouchToken {
                                        id: t.id.clone(),
                                        at: now,
                                    });
                                }
                                Principal {
                                    id: t.id,
                                    name: t.name,
                                    scope: t.scope,
                                }
                            }
                            Ok(api::AuthOutcome::Blocked(secs)) => {
                                return Err(warp::reject::custom(TooManyFailures(secs)))
                            }
                            Ok(api::AuthOutcome::Unknown) => {
                                coord.api.do_send(api::AuthFailed(addr));
                                return Err(warp::reject::custom(Unauthorized(
                                    "the API token is wrong, revoked or expired",
                                )));
                            }
                            Err(e) => return Err(warp::reject::custom(crate::error::Failed(e))),
                        }
                    };
                    let needed = required(&method, path.as_str());
                    if !who.scope.allows(needed) {
                        return Err(warp::reject::custom(Forbidden(format!(
                            "this token's scope is {}; {} {} needs {needed}",
                            who.scope,
                            method,
                            path.as_str()
                        ))));
                    }
                    Ok(who)
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_allows_the_methods_its_endpoints_serve() {
        assert_eq!(allowed("/api/v1/apps"), ["GET", "POST"]);
        assert_eq!(allowed("/api/v1/apps/web"), ["GET", "PATCH", "DELETE"]);
        assert_eq!(allowed("/api/v1/apps/web/env/KEY"), ["PUT", "DELETE"]);
        assert_eq!(allowed("/healthz"), ["GET"]);
        assert_eq!(allowed("/api/v1/webhooks/github"), ["POST"]);
        assert!(allowed("/api/v1/nope").is_empty());
        assert!(allowed("/api/v1/apps//env").is_empty());
        assert!(allowed("/").is_empty());
    }

    #[test]
    fn each_endpoint_needs_its_scope() {
        let r = |m: Method, p: &str| required(&m, p);
        assert_eq!(r(Method::GET, "/metrics"), Scope::Metrics);
        assert_eq!(r(Method::GET, "/api/v1/apps"), Scope::Read);
        assert_eq!(r(Method::GET, "/api/v1/apps/a/logs"), Scope::Read);
        assert_eq!(r(Method::GET, "/api/v1/tokens"), Scope::Admin);
        assert_eq!(r(Method::GET, "/api/v1/audit"), Scope::Admin);
        assert_eq!(r(Method::POST, "/api/v1/apps/a/deployments"), Scope::Deploy);
        assert_eq!(r(Method::POST, "/api/v1/apps/a/rollback"), Scope::Deploy);
        assert_eq!(
            r(Method::POST, "/api/v1/deployments/d/cancel"),
            Scope::Deploy
        );
        assert_eq!(r(Method::POST, "/api/v1/apps"), Scope::Admin);
        assert_eq!(r(Method::PATCH, "/api/v1/apps/a"), Scope::Admin);
        assert_eq!(r(Method::POST, "/api/v1/apps/a/exec"), Scope::Admin);
        assert_eq!(r(Method::PUT, "/api/v1/apps/a/env/K"), Scope::Admin);
        assert_eq!(r(Method::POST, "/api/v1/nodes/n/drain"), Scope::Admin);
        assert!(Scope::Read.allows(Scope::Metrics));
        assert!(!Scope::Metrics.allows(Scope::Read));
        assert!(!Scope::Deploy.allows(Scope::Admin));
    }

    #[test]
    fn changes_are_audited_by_name_and_reads_are_not() {
        let a = |m: Method, p: &str| audited(&m, p);
        assert_eq!(a(Method::GET, "/api/v1/apps"), None);
        assert_eq!(
            a(Method::POST, "/api/v1/apps/shop/rollback"),
            Some(("rollback".into(), "shop".into()))
        );
        assert_eq!(
            a(Method::DELETE, "/api/v1/tokens/tok_1"),
            Some(("token.revoke".into(), "tok_1".into()))
        );
        assert_eq!(
            a(Method::PUT, "/api/v1/apps/shop/env/KEY"),
            Some(("env.set".into(), "shop/KEY".into()))
        );
        assert_eq!(
            a(Method::POST, "/api/v1/nodes/n1/drain"),
            Some(("node.drain".into(), "n1".into()))
        );
    }

    #[test]
    fn a_token_s_use_is_written_once_a_minute() {
        let l = LastUse::default();
        assert!(l.due("t", 1_000));
        assert!(!l.due("t", 30_000));
        assert!(l.due("t", 61_001));
        assert!(l.due("u", 30_000));
    }
}
