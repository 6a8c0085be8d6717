//! The HTTP API (warp on hyper): JSON in and out, `Authorization: Bearer <token>` on everything
//! but `/healthz`, the dashboard's files (`/`, `/ui/…`; [`dashboard`]), whose page sends the
//! token with each API call it makes, the GitHub webhooks (signed instead) and
//! `/api/v1/openapi.json`, the OpenAPI document of all of it ([`openapi`]; every route here is in
//! [`auth::ENDPOINTS`] and in it).
//!
//! Each endpoint turns a request into one message to the coordinator's `Api` actor and its answer
//! into a response. Errors are `{"error": "..."}`: client mistakes map to 4xx with the
//! coordinator's message; Redis being away to 503 with a message that says so (every endpoint,
//! `/healthz` included, promptly: the coordinator's connection fails commands at once while it
//! knows Redis is away); internal failures to 500 with a generic text (details go to the log).

pub mod auth;
pub mod body;
pub mod cors;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod exec;
pub mod github;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod query;
pub mod server;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_bus::Shutdown;
use berth_coordinator::{api, Coordinator};
use berth_protocol::api::{Analyze, CreateApp, CreateDeployment, CreateExec, PatchApp, PutEnv};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub use cors::Cors;
pub use error::{ApiError, Unauthorized};
pub use server::Limits;
pub use tls::{Tls, TlsError};

/// Largest request body accepted.
const BODY_LIMIT: u64 = 1024 * 1024;

#[derive(Clone)]
struct Ctx {
    coord: Coordinator,
    /// The bearer token every `/api` request must carry.
    token: Arc<str>,
}

/// How long an upload's body may take to arrive (at least; `api.body_timeout_s` if longer).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// How the API is served beyond its routes: its limits and the origins a browser may call it
/// from.
#[derive(Debug, Clone, Default)]
pub struct Serving {
    pub limits: Limits,
    pub cors: Cors,
}

/// All routes of the API; `limits.body_timeout` bounds how long reading a request body may take,
/// `limits.upload_max` how large an uploaded directory may be; `cors` adds the CORS headers for
/// the listed origins ([`cors`]).
pub fn routes(
    coord: Coordinator,
    token: &str,
    webhook_secret: Option<String>,
    serving: Serving,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let Serving { limits, cors } = serving;
    let body_timeout = limits.body_timeout;
    let ctx = Ctx {
        coord,
        token: Arc::from(token),
    };

    // Whether the coordinator can reach Redis: 200 `{"status": "ok"}`, else 503
    // `{"status": "unavailable", "error": "Redis is unreachable at …"}`.
    let healthz = {
        let coord = ctx.coord.clone();
        warp::path!("healthz").and(warp::get()).then(move || {
            let coord = coord.clone();
            async move {
                match flatten(coord.api.send(api::Health).await) {
                    Ok(()) => {
                        warp::reply::json(&serde_json::json!({"status": "ok"})).into_response()
                    }
                    Err(e) => warp::reply::with_status(
                        warp::reply::json(
                            &serde_json::json!({"status": "unavailable", "error": e.message}),
                        ),
                        e.status,
                    )
                    .into_response(),
                }
            }
        })
    };

    let webhook = github::route(ctx.coord.clone(), webhook_secret, body_timeout);
    let with = {
        let ctx = ctx.clone();
        move || {
            let ctx = ctx.clone();
            warp::any().map(move || ctx.clone())
        }
    };
    let principal = auth::principal(
        ctx.coord.clone(),
        ctx.token.clone(),
        auth::LastUse::default(),
    );
    let api = warp::path!("api" / "v1" / ..).and(principal.clone());
    let http_metrics = metrics::HttpMetrics::new();
    let prometheus = metrics::prometheus_route(ctx.coord.clone(), principal, http_metrics.clone());
    let app_metrics = metrics::app_route(ctx.coord.clone());
    let events = events::route(ctx.coord.clone());

    let list_apps = warp::path!("apps")
        .and(warp::get())
        .and(with())
        .then(
            |c: Ctx| async move { respond(c.coord.api.send(api::ListApps).await, StatusCode::OK) },
        );
    let create_app = warp::path!("apps")
        .and(warp::post())
        .and(json_body(body_timeout))
        .and(with())
        .then(|body: Result<CreateApp, ApiError>, c: Ctx| async move {
            match body {
                Ok(b) => respond(
                    c.coord.api.send(api::CreateApp(b)).await,
                    StatusCode::CREATED,
                ),
                Err(e) => e.into_response(),
            }
        });
    let get_app = warp::path!("apps" / String)
        .and(warp::get())
        .and(with())
        .then(|name, c: Ctx| async move {
            respond(c.coord.api.send(api::GetApp(name)).await, StatusCode::OK)
        });
    let patch_app = warp::path!("apps" / String)
        .and(warp::patch())
        .and(json_body(body_timeout))
        .and(with())
        .then(
            |name, body: Result<PatchApp, ApiError>, c: Ctx| async move {
                match body {
                    Ok(b) => respond(
                        c.coord.api.send(api::PatchApp(name, b)).await,
                        StatusCode::OK,
                    ),
                    Err(e) => e.into_response(),
                }
            },
        );
    let delete_app = warp::path!("apps" / String)
        .and(warp::delete())
        .and(with())
        .then(|name, c: Ctx| async move {
            match flatten(c.coord.api.send(api::DeleteApp(name)).await) {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => e.into_response(),
            }
        });
    let create_deployment = warp::path!("apps" / String / "deployments")
        .and(warp::post())
        .and(optional_json_body(body_timeout))
        .and(with())
        .then(
            |name, body: Result<CreateDeployment, ApiError>, c: Ctx| async move {
                match body {
                    Ok(b) => respond(
                        c.coord.api.send(api::CreateDeployment(name, b)).await,
                        StatusCode::ACCEPTED,
                    ),
                    Err(e) => e.into_response(),
                }
            },
        );
    // A tar archive of a directory (`berth deploy --dir`), deployed; `?no_cache=true` builds
    // with no cached layer.
    let upload = warp::path!("apps" / String / "uploads")
        .and(warp::post())
        .and(query::query::<UploadQuery>())
        .and(body::read(
            limits.upload_max,
            body_timeout.max(UPLOAD_TIMEOUT),
        ))
        .and(with())
        .then(|name, q: UploadQuery, archive: Bytes, c: Ctx| async move {
            respond(
                c.coord
                    .api
                    .send(api::DeployUpload {
                        app: name,
                        archive,
                        no_cache: q.no_cache,
                    })
                    .await,
                StatusCode::ACCEPTED,
            )
        });
    let list_deployments = warp::path!("apps" / String / "deployments")
        .and(warp::get())
        .and(with())
        .then(|name, c: Ctx| async move {
            respond(
                c.coord.api.send(api::ListDeployments(name)).await,
                StatusCode::OK,
            )
        });
    let get_deployment = warp::path!("deployments" / String)
        .and(warp::get())
        .and(with())
        .then(|id, c: Ctx| async move {
            respond(
                c.coord.api.send(api::GetDeployment(id)).await,
                StatusCode::OK,
            )
        });
    let deployment_log = logs::deployment_route(ctx.coord.clone());
    let app_log = logs::app_route(ctx.coord.clone());
    let rollback = warp::path!("apps" / String / "rollback")
        .and(warp::post())
        .and(optional_json_body(body_timeout))
        .and(with())
        .then(
            |name, body: Result<berth_protocol::api::Rollback, ApiError>, c: Ctx| async move {
                match body {
                    Ok(b) => respond(
                        c.coord.api.send(api::Rollback(name, b)).await,
                        StatusCode::ACCEPTED,
                    ),
                    Err(e) => e.into_response(),
                }
            },
        );
    let releases = warp::path!("apps" / String / "releases")
        .and(warp::get())
        .and(with())
        .then(|name, c: Ctx| async move {
            respond(
                c.coord.api.send(api::ListReleases(name)).await,
                StatusCode::OK,
            )
        });
    let replicas = warp::path!("apps" / String / "replicas")
        .and(warp::get())
        .and(with())
        .then(|name, c: Ctx| async move {
            respond(
                c.coord.api.send(api::ListReplicas(name)).await,
                StatusCode::OK,
            )
        });
    let cancel = warp::path!("deployments" / String / "cancel")
        .and(warp::post())
        .and(with())
        .then(|id, c: Ctx| async move {
            respond(c.coord.api.send(api::Cancel(id)).await, StatusCode::OK)
        });
    let nodes = warp::path!("nodes")
        .and(warp::get())
        .and(with())
        .then(
            |c: Ctx| async move { respond(c.coord.api.send(api::ListNodes).await, StatusCode::OK) },
        );
    let redis =
        warp::path!("redis")
            .and(warp::get())
            .and(with())
            .then(|c: Ctx| async move {
                respond(c.coord.api.send(api::RedisStatus).await, StatusCode::OK)
            });
    // `POST /nodes/{name}/cordon` and `…/uncordon`.
    let cordon = |verb: &'static str, on: bool| {
        warp::path("nodes")
            .and(warp::path::param::<String>())
            .and(warp::path(verb))
            .and(warp::path::end())
            .and(warp::post())
            .and(with())
            .then(move |node, c: Ctx| async move {
                let msg = api::CordonNode { node, on };
                respond(c.coord.api.send(msg).await, StatusCode::OK)
            })
            .boxed()
    };

    // An app's life without a build: `restart`, `stop`, `start`.
    let restart = warp::path!("apps" / String / "restart")
        .and(warp::post())
        .and(with())
        .then(|name, c: Ctx| async move {
            respond(
                c.coord.api.send(api::Restart(name)).await,
                StatusCode::ACCEPTED,
            )
        });
    let stop = warp::path!("apps" / String / "stop")
        .and(warp::post())
        .and(with())
        .then(|name, c: Ctx| async move {
            respond(c.coord.api.send(api::StopApp(name)).await, StatusCode::OK)
        });
    let start = warp::path!("apps" / String / "start")
        .and(warp::post())
        .and(with())
        .then(|name, c: Ctx| async move {
            respond(
                c.coord.api.send(api::StartApp(name)).await,
                StatusCode::ACCEPTED,
            )
        });

    // An app's variables: `GET /apps/{name}/env`, `PUT` and `DELETE /apps/{name}/env/{KEY}`.
    let list_env = warp::path!("apps" / String / "env")
        .and(warp::get())
        .and(with())
        .then(|name, c: Ctx| async move {
            respond(c.coord.api.send(api::ListEnv(name)).await, StatusCode::OK)
        });
    let put_env =
        warp::path!("apps" / String / "env" / String)
            .and(warp::put())
            .and(deploy_query())
            .and(json_body(body_timeout))
            .and(with())
            .then(
                |app,
                 key,
                 deploy: Result<bool, ApiError>,
                 body: Result<PutEnv, ApiError>,
                 c: Ctx| async move {
                    match (deploy, body) {
                        (Ok(deploy), Ok(mut body)) => {
                            if deploy {
                                body.deploy = Some(true);
                            }
                            let msg = api::PutEnv { app, key, body };
                            respond(c.coord.api.send(msg).await, StatusCode::OK)
                        }
                        (Err(e), _) | (_, Err(e)) => e.into_response(),
                    }
                },
            );
    let delete_env = warp::path!("apps" / String / "env" / String)
        .and(warp::delete())
        .and(deploy_query())
        .and(with())
        .then(
            |app, key, deploy: Result<bool, ApiError>, c: Ctx| async move {
                match deploy {
                    Ok(deploy) => {
                        let msg = api::DeleteEnv { app, key, deploy };
                        respond(c.coord.api.send(msg).await, StatusCode::OK)
                    }
                    Err(e) => e.into_response(),
                }
            },
        );

    let drain = warp::path!("nodes" / String / "drain")
        .and(warp::post())
        .and(with())
        .then(|node, c: Ctx| async move {
            respond(c.coord.api.send(api::Drain(node)).await, StatusCode::OK)
        });

    let start_exec = warp::path!("apps" / String / "exec")
        .and(warp::post())
        .and(json_body(body_timeout))
        .and(with())
        .then(|name, body: Result<CreateExec, ApiError>, c: Ctx| exec::start(c.coord, name, body));
    let follow_exec = exec::follow_route(ctx.coord.clone());
    // What a build pack would build from a repository (a shallow clone on the coordinator).
    let analyze = warp::path!("analyze")
        .and(warp::post())
        .and(json_body(body_timeout))
        .and(with())
        .then(|body: Result<Analyze, ApiError>, c: Ctx| async move {
            match body {
                Ok(b) => respond(c.coord.api.send(api::Analyze(b)).await, StatusCode::OK),
                Err(e) => e.into_response(),
            }
        });

    let create_token = warp::path!("tokens")
        .and(warp::post())
        .and(json_body(body_timeout))
        .and(with())
        .then(
            |body: Result<berth_protocol::api::CreateToken, ApiError>, c: Ctx| async move {
                match body {
                    Ok(b) => respond(
                        c.coord.api.send(api::CreateApiToken(b)).await,
                        StatusCode::CREATED,
                    ),
                    Err(e) => e.into_response(),
                }
            },
        );
    let list_tokens =
        warp::path!("tokens")
            .and(warp::get())
            .and(with())
            .then(|c: Ctx| async move {
                respond(c.coord.api.send(api::ListTokens).await, StatusCode::OK)
            });
    let revoke_token = warp::path!("tokens" / String)
        .and(warp::delete())
        .and(with())
        .then(|id, c: Ctx| async move {
            match flatten(c.coord.api.send(api::RevokeToken(id)).await) {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => e.into_response(),
            }
        });
    let audit = warp::path!("audit")
        .and(warp::get())
        .and(query::query::<AuditQuery>())
        .and(with())
        .then(|q: AuditQuery, c: Ctx| async move {
            let limit = q.limit.unwrap_or(100);
            if !(1..=1000).contains(&limit) {
                return ApiError::bad_request(format!(
                    "limit={limit} is not valid: give 1 to 1000"
                ))
                .into_response();
            }
            respond(
                c.coord.api.send(api::ListAudit { limit }).await,
                StatusCode::OK,
            )
        });

    // Every route here is in `auth::ENDPOINTS` and `openapi::operations` (tests hold them
    // together). Every route is boxed before they are joined: a long `.or()` chain of unboxed filters
    // makes rustc's type checking explode (minutes per added route).
    let v1_routes: Vec<BoxedFilter<(Response,)>> = vec![
        list_apps.boxed(),
        create_app.boxed(),
        get_app.boxed(),
        patch_app.boxed(),
        delete_app.boxed(),
        create_deployment.boxed(),
        upload.boxed(),
        list_deployments.boxed(),
        get_deployment.boxed(),
        deployment_log.boxed(),
        app_log.boxed(),
        rollback.boxed(),
        releases.boxed(),
        replicas.boxed(),
        cancel.boxed(),
        nodes.boxed(),
        redis.boxed(),
        cordon("cordon", true),
        cordon("uncordon", false),
        drain.boxed(),
        restart.boxed(),
        stop.boxed(),
        start.boxed(),
        app_metrics.boxed(),
        start_exec.boxed(),
        follow_exec.boxed(),
        analyze.boxed(),
        create_token.boxed(),
        list_tokens.boxed(),
        revoke_token.boxed(),
        audit.boxed(),
        list_env.boxed(),
        put_env.boxed(),
        delete_env.boxed(),
        events.boxed(),
    ];
    let audit_coord = ctx.coord.clone();
    let v1 = api
        .and(warp::method())
        .and(warp::path::full())
        .and(any_of(v1_routes))
        .then(
            move |who: auth::Principal,
                  method: warp::http::Method,
                  path: warp::path::FullPath,
                  resp: Response| {
                let coord = audit_coord.clone();
                async move { record_audit(&coord, who, &method, path.as_str(), resp).await }
            },
        );
    // The OpenAPI document needs no token: it comes before the authenticated `/api/v1` filter.
    let all = healthz
        .or(dashboard::routes())
        .unify()
        .or(webhook)
        .unify()
        .or(openapi::route())
        .unify()
        .or(v1)
        .unify()
        .or(prometheus)
        .unify()
        .or(wrong_method())
        .unify()
        .recover(error::recover)
        .unify();
    let preflight = cors.preflight();
    let decorated = warp::header::headers_cloned()
        .and(all)
        .map(move |headers, resp| cors.decorate(&headers, resp));
    preflight
        .or(decorated)
        .unify()
        .with(warp::log::custom(move |info| {
            let (method, code) = (info.method().as_str(), info.status().as_u16());
            http_metrics.observe(method, code, info.elapsed().as_secs_f64());
            tracing::debug!(method = %info.method(), path = info.path(), status = info.status().as_u16(), "request");
        }))
}

/// The routes joined with `or`, tried in their order, as a balanced tree of pairs: the future
/// of a request is nested about log2(n) `or`s deep instead of up to n (a left fold put a route
/// near the front of the list under every later one, and each poll of its handler went down
/// through all of them). Which rejection answers a request that no route takes does not depend
/// on the shape: warp keeps the most telling one, the first of equals.
fn any_of(mut routes: Vec<BoxedFilter<(Response,)>>) -> BoxedFilter<(Response,)> {
    while routes.len() > 1 {
        let mut pairs = Vec::with_capacity(routes.len().div_ceil(2));
        let mut it = routes.into_iter();
        while let Some(a) = it.next() {
            pairs.push(match it.next() {
                Some(b) => a.or(b).unify().boxed(),
                None => a,
            });
        }
        routes = pairs;
    }
    routes.pop().expect("at least one route")
}

/// Last of the routes: a method no endpoint serves on a path some endpoint has is a 405 with
/// `Allow` (RFC 9110) listing the ones it serves; anything else goes on as not found.
fn wrong_method() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::method().and(warp::path::full()).and_then(
        |m: warp::http::Method, p: warp::path::FullPath| async move {
            let allowed = auth::allowed(p.as_str());
            if allowed.is_empty() || allowed.contains(&m.as_str()) {
                return Err(warp::reject::not_found());
            }
            let list = allowed.join(", ");
            let mut r = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} is not allowed on this path; it takes {list}"),
            )
            .into_response();
            if let Ok(v) = warp::http::HeaderValue::from_str(&list) {
                r.headers_mut().insert(warp::http::header::ALLOW, v);
            }
            Ok(r)
        },
    )
}

/// Serves the API on `listener` as `serving` says (over TLS only, when `tls` is given) until
/// `shutdown` is cancelled: then it stops accepting and returns once the requests in progress are
/// answered (log follows end with the shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    coord: Coordinator,
    token: &str,
    webhook_secret: Option<String>,
    serving: Serving,
    tls: Option<Tls>,
    shutdown: &Shutdown,
) {
    let limits = serving.limits;
    let routes = routes(coord, token, webhook_secret, serving);
    server::run(listener, routes, limits, tls, shutdown).await
}

/// The webhook listener (`api.webhook_listen`): only `POST /api/v1/webhooks/github`, every other
/// request a 404, so GitHub can reach this address while the rest of the API stays private. Same
/// limits and TLS as the API's listener.
pub async fn serve_webhook(
    listener: tokio::net::TcpListener,
    coord: Coordinator,
    webhook_secret: Option<String>,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: &Shutdown,
) {
    let routes = github::route(coord, webhook_secret, limits.body_timeout)
        .recover(error::recover)
        .unify()
        .with(warp::log::custom(|info| {
            tracing::debug!(method = %info.method(), path = info.path(), status = info.status().as_u16(), "webhook listener request");
        }));
    server::run(listener, routes, limits, tls, shutdown).await
}

/// Binds the API's address, with a message a person can act on when it is taken.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    bind_for(addr, "api.listen / BERTH_API__LISTEN").await
}

/// Binds `addr`, the value of `setting` (named in the message when the address is taken).
pub async fn bind_for(addr: SocketAddr, setting: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} ({e}); set {setting} to a free address"),
        )
    })
}

/// The query of `GET /api/v1/audit`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<usize>,
}

/// Writes the audit log's entry of a request that changed something (see [`auth::audited`]),
/// whatever its outcome, and returns its answer unchanged. A create's target is the `name` (or
/// `id`) of what its answer holds; nothing else of a body is kept (a new token's value never).
async fn record_audit(
    coord: &Coordinator,
    who: auth::Principal,
    method: &warp::http::Method,
    path: &str,
    resp: Response,
) -> Response {
    let Some((action, mut target)) = auth::audited(method, path) else {
        return resp;
    };
    let status = resp.status();
    let resp = if target.is_empty() && status.is_success() {
        use http_body_util::BodyExt;
        let (parts, body) = resp.into_parts();
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => Bytes::new(),
        };
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            target = v["name"]
                .as_str()
                .or(v["id"].as_str())
                .unwrap_or_default()
                .to_string();
            if action == "token.create" {
                target = v["id"].as_str().unwrap_or_default().to_string();
            }
        }
        Response::from_parts(parts, bytes.into())
    } else {
        resp
    };
    let entry = berth_protocol::api::AuditEntry {
        id: String::new(),
        at: berth_protocol::now_ms(),
        token_id: who.id,
        token_name: who.name,
        action,
        target,
        method: method.to_string(),
        path: path.to_string(),
        status: status.as_u16(),
    };
    // Written beside the answer, not before it: a change's answer never waits on the log.
    let coord = coord.clone();
    tokio::spawn(async move {
        if let Err(e) = flatten(coord.api.send(api::RecordAudit(entry)).await) {
            tracing::warn!(error = %e.message, "could not write the audit log");
        }
    });
    resp
}

/// The query of `POST /api/v1/apps/{name}/uploads`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    #[serde(default)]
    no_cache: bool,
}

/// `?deploy=true` (or `false`, or absent); anything else is refused with a sentence.
fn deploy_query() -> impl Filter<Extract = (Result<bool, ApiError>,), Error = Rejection> + Clone {
    query::query::<std::collections::HashMap<String, String>>().map(
        |q: std::collections::HashMap<String, String>| {
            if let Some(k) = q.keys().find(|k| *k != "deploy") {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?}: only deploy=true|false is accepted"
                )));
            }
            match q.get("deploy").map(String::as_str) {
                None | Some("false") => Ok(false),
                Some("true") | Some("") => Ok(true),
                Some(v) => Err(ApiError::bad_request(format!(
                    "deploy={v:?} is not valid: give deploy=true or deploy=false"
                ))),
            }
        },
    )
}

/// A JSON body; its error names the field it is at (`invalid JSON body at scope: unknown
/// variant …`).
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body at {path}: {inner}"))
        }
    })
}

fn json_body<T: DeserializeOwned + Send>(
    timeout: Duration,
) -> impl Filter<Extract = (Result<T, ApiError>,), Error = Rejection> + Clone {
    body::read(BODY_LIMIT, timeout).map(|b: Bytes| parse(&b))
}

/// A JSON body that may be absent (treated as `{}`).
fn optional_json_body<T: DeserializeOwned + Default + Send>(
    timeout: Duration,
) -> impl Filter<Extract = (Result<T, ApiError>,), Error = Rejection> + Clone {
    body::read(BODY_LIMIT, timeout).map(|b: Bytes| {
        if b.iter().all(u8::is_ascii_whitespace) {
            Ok(T::default())
        } else {
            parse(&b)
        }
    })
}

fn flatten<T>(r: Result<berth_coordinator::Result<T>, actix::MailboxError>) -> Result<T, ApiError> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::from(e)),
        Err(e) => Err(ApiError::from(berth_coordinator::Error::from(e))),
    }
}

fn respond<T: Serialize>(
    r: Result<berth_coordinator::Result<T>, actix::MailboxError>,
    ok: StatusCode,
) -> Response {
    match flatten(r) {
        Ok(v) => warp::reply::with_status(warp::reply::json(&v), ok).into_response(),
        Err(e) => e.into_response(),
    }
}
