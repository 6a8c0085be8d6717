//! `POST /api/v1/webhooks/github` (every app without a secret of its own, signed with
//! `github.webhook_secret`) and `POST /api/v1/apps/{name}/webhooks/github` (one app, signed with
//! its own secret): push-to-deploy, authenticated by signature, not by token.
//!
//! The signature (`X-Hub-Signature-256`) is checked over the raw body before anything is parsed,
//! in constant time. Without a configured secret every delivery is refused: an unsigned delivery
//! is never accepted. Deliveries are deduplicated by `X-GitHub-Delivery` in the coordinator,
//! and pushes by what they ask for (a replayed body under a new delivery id queues nothing).
//!
//! A client whose deliveries failed the signature check `FAILURES_ALLOWED` times within
//! `FAILURE_WINDOW_S` gets 429 until the window ends, before any HMAC is computed: guessing
//! signatures costs a few attempts a minute, not the API's CPU. Counted per peer address by the
//! coordinator, in Redis (a proxy in front of Berth makes its own address the peer).

use std::net::SocketAddr;

use berth_coordinator::webhook::{read_push, verify_signature, FAILURES_ALLOWED, FAILURE_WINDOW_S};
use berth_coordinator::{api, Coordinator};
use berth_protocol::api::WebhookOutcome;
use bytes::Bytes;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::error::ApiError;

/// Largest delivery accepted (GitHub caps payloads at 25 MB; pushes are far smaller).
const LIMIT: u64 = 5 * 1024 * 1024;

pub fn route(
    coord: Coordinator,
    secret: Option<String>,
    body_timeout: std::time::Duration,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let shared = warp::path!("api" / "v1" / "webhooks" / "github")
        .map(move || Scope::Shared(secret.clone()));
    // An app with a webhook secret of its own takes its pushes here, signed with it.
    let own = warp::path!("api" / "v1" / "apps" / String / "webhooks" / "github").map(Scope::App);
    shared
        .or(own)
        .unify()
        .and(warp::post())
        .and(crate::server::peer())
        .and(warp::header::optional::<String>("x-hub-signature-256"))
        .and(warp::header::optional::<String>("x-github-event"))
        .and(warp::header::optional::<String>("x-github-delivery"))
        .and(warp::header::optional::<String>("content-type"))
        // The size is judged on `Content-Length` before a byte of the body is read.
        .and(crate::body::read(LIMIT, body_timeout))
        .then(
            move |scope: Scope,
                  peer: Option<SocketAddr>,
                  sig: Option<String>,
                  event: Option<String>,
                  delivery: Option<String>,
                  ctype: Option<String>,
                  body: Bytes| {
                let coord = coord.clone();
                async move {
                    let client = peer.map(|p| p.ip().to_string());
                    if let Some(c) = &client {
                        match coord.api.send(api::SignatureBlocked(c.clone())).await {
                            Ok(Ok(None)) => {}
                            Ok(Ok(Some(wait))) => return too_many(wait),
                            Ok(Err(e)) => return ApiError::from(e).into_response(),
                            Err(e) => {
                                return ApiError::from(berth_coordinator::Error::from(e))
                                    .into_response()
                            }
                        }
                    }
                    match handle(coord.clone(), scope, sig, event, delivery, ctype, body).await {
                        Ok(r) => r,
                        Err(e) => {
                            if let (StatusCode::UNAUTHORIZED, Some(c)) = (e.status, client) {
                                match coord.api.send(api::SignatureFailed(c)).await {
                                    Ok(Ok(())) => {}
                                    Ok(Err(err)) => tracing::warn!(error = %err, "could not count a failed webhook signature"),
                                    Err(err) => tracing::warn!(error = %err, "could not count a failed webhook signature"),
                                }
                            }
                            e.into_response()
                        }
                    }
                }
            },
        )
}

/// Which endpoint took a delivery, and so which secret signs it.
enum Scope {
    /// `/api/v1/webhooks/github`: `github.webhook_secret`, for every app without its own.
    Shared(Option<String>),
    /// `/api/v1/apps/{name}/webhooks/github`: the app's own secret, for that app only.
    App(String),
}

/// 429 with `Retry-After`, for a client that sent too many bad signatures.
fn too_many(secs: u64) -> Response {
    let secs = secs.max(1);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many deliveries with a wrong signature from this address \
             ({FAILURES_ALLOWED} within {FAILURE_WINDOW_S} s); try again in {secs} s"
        ),
    )
    .into_response();
    r.headers_mut().insert(
        warp::http::header::RETRY_AFTER,
        warp::http::HeaderValue::from(secs),
    );
    r
}

fn accepted(message: impl Into<String>, deployments: Vec<String>) -> Response {
    warp::reply::with_status(
        warp::reply::json(&WebhookOutcome {
            deployments,
            message: message.into(),
        }),
        StatusCode::ACCEPTED,
    )
    .into_response()
}

async fn handle(
    coord: Coordinator,
    scope: Scope,
    sig: Option<String>,
    event: Option<String>,
    delivery: Option<String>,
    ctype: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (secret, app) = match scope {
        Scope::Shared(secret) => {
            let Some(secret) = secret.filter(|s| !s.is_empty()) else {
                tracing::warn!("GitHub delivery refused: no github.webhook_secret configured");
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "GitHub webhooks are off: set github.webhook_secret (BERTH_GITHUB__WEBHOOK_SECRET) and the same secret in GitHub",
                ));
            };
            (secret.into_bytes(), None)
        }
        Scope::App(name) => {
            let secret = match coord.api.send(api::AppWebhookSecret(name.clone())).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => return Err(berth_coordinator::Error::from(e).into()),
            };
            let Some(secret) = secret else {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "app {name} has no webhook secret of its own: set one (`berth apps set {name} --webhook-secret-file FILE`), or deliver to /api/v1/webhooks/github"
                    ),
                ));
            };
            (secret, Some(name))
        }
    };
    if let Err(why) = verify_signature(&secret, &body, sig.as_deref()) {
        tracing::warn!(
            delivery = delivery.as_deref().unwrap_or("-"),
            app = app.as_deref().unwrap_or("-"),
            reason = why,
            "GitHub delivery rejected"
        );
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("webhook signature rejected: {why}"),
        ));
    }
    let event = event.unwrap_or_default();
    match event.as_str() {
        "ping" => {
            return Ok(warp::reply::json(&serde_json::json!({"message": "pong"})).into_response());
        }
        "push" => {}
        "" => return Err(ApiError::bad_request("missing X-GitHub-Event header")),
        other => {
            return Ok(accepted(
                format!("event {other:?} is not a push; nothing queued"),
                vec![],
            ))
        }
    }
    let delivery = delivery
        .filter(|d| !d.is_empty() && d.len() <= 128)
        .ok_or_else(|| ApiError::bad_request("missing X-GitHub-Delivery header"))?;
    let push = read_push(ctype.as_deref(), &body).map_err(ApiError::bad_request)?;
    let outcome = match coord
        .api
        .send(api::GithubPush {
            delivery,
            push,
            app,
        })
        .await
    {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(berth_coordinator::Error::from(e).into()),
    };
    Ok(accepted(outcome.message, outcome.deployments))
}
