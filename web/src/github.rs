//! `POST /api/v1/webhooks/github`: push-to-deploy, authenticated by signature, not by token.
//!
//! The signature (`X-Hub-Signature-256`) is checked over the raw body before anything is parsed,
//! in constant time. Without a configured secret every delivery is refused: an unsigned delivery
//! is never accepted. Deliveries are deduplicated by `X-GitHub-Delivery` in the coordinator,
//! and pushes by what they ask for (a replayed body under a new delivery id queues nothing).
//!
//! A client whose deliveries failed the signature check [`FAILURES_ALLOWED`] times within
//! [`FAILURE_WINDOW`] gets 429 until the window ends, before any HMAC is computed: guessing
//! signatures costs a few attempts a minute, not the API's CPU. Counted per peer address in
//! this process's memory (a proxy in front of Berth makes its own address the peer).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_coordinator::webhook::{verify_signature, Push};
use berth_coordinator::{api, Coordinator};
use berth_protocol::api::WebhookOutcome;
use bytes::Bytes;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::error::ApiError;

/// Largest delivery accepted (GitHub caps payloads at 25 MB; pushes are far smaller).
const LIMIT: u64 = 5 * 1024 * 1024;

/// Failed signatures a client may send within [`FAILURE_WINDOW`] before it gets 429.
pub const FAILURES_ALLOWED: u32 = 10;
/// The window failed signatures are counted in, from a client's first failure.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at most; past it, ended windows are dropped first (then the oldest).
const TRACKED_MAX: usize = 10_000;

/// Failed signatures per client address: when its window started, and how many.
#[derive(Clone, Default)]
pub struct Failures {
    by_client: Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

impl Failures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.by_client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `client` must wait, when it used up its failures in the current window.
    pub fn blocked(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.lock();
        let (start, count) = map.get(&client)?;
        let ends = *start + FAILURE_WINDOW;
        (*count >= FAILURES_ALLOWED && now < ends).then(|| ends - now)
    }

    /// Counts one failed signature of `client`.
    pub fn failed(&self, client: IpAddr, now: Instant) {
        let mut map = self.lock();
        if map.len() >= TRACKED_MAX && !map.contains_key(&client) {
            map.retain(|_, (start, _)| now < *start + FAILURE_WINDOW);
            if map.len() >= TRACKED_MAX {
                if let Some(oldest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(ip, _)| *ip) {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(client).or_insert((now, 0));
        if now >= entry.0 + FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

pub fn route(
    coord: Coordinator,
    secret: Option<String>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let failures = Failures::default();
    warp::path!("api" / "v1" / "webhooks" / "github")
        .and(warp::post())
        .and(warp::addr::remote())
        .and(warp::header::optional::<String>("x-hub-signature-256"))
        .and(warp::header::optional::<String>("x-github-event"))
        .and(warp::header::optional::<String>("x-github-delivery"))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::content_length_limit(LIMIT))
        .and(warp::body::bytes())
        .then(
            move |peer: Option<SocketAddr>,
                  sig: Option<String>,
                  event: Option<String>,
                  delivery: Option<String>,
                  ctype: Option<String>,
                  body: Bytes| {
                let coord = coord.clone();
                let secret = secret.clone();
                let failures = failures.clone();
                async move {
                    let client = peer.map(|p| p.ip());
                    if let Some(wait) = client.and_then(|c| failures.blocked(c, Instant::now())) {
                        return too_many(wait);
                    }
                    match handle(coord, secret, sig, event, delivery, ctype, body).await {
                        Ok(r) => r,
                        Err(e) => {
                            if e.status == StatusCode::UNAUTHORIZED {
                                if let Some(c) = client {
                                    failures.failed(c, Instant::now());
                                }
                            }
                            e.into_response()
                        }
                    }
                }
            },
        )
}

/// 429 with `Retry-After`, for a client that sent too many bad signatures.
fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many deliveries with a wrong signature from this address \
             ({FAILURES_ALLOWED} within {} s); try again in {secs} s",
            FAILURE_WINDOW.as_secs()
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
    secret: Option<String>,
    sig: Option<String>,
    event: Option<String>,
    delivery: Option<String>,
    ctype: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        tracing::warn!("GitHub delivery refused: no github.webhook_secret configured");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "GitHub webhooks are off: set github.webhook_secret (BERTH_GITHUB__WEBHOOK_SECRET) and the same secret in GitHub",
        ));
    };
    if let Err(why) = verify_signature(secret.as_bytes(), &body, sig.as_deref()) {
        tracing::warn!(
            delivery = delivery.as_deref().unwrap_or("-"),
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
    let json: Bytes = if ctype
        .as_deref()
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid form body: {e}")))?;
        let payload = form
            .into_iter()
            .find(|(k, _)| k == "payload")
            .ok_or_else(|| ApiError::bad_request("form delivery without a payload field"))?;
        Bytes::from(payload.1)
    } else {
        body
    };
    let push: Push = serde_json::from_slice(&json).map_err(|e| {
        ApiError::bad_request(format!("push payload is not what GitHub sends: {e}"))
    })?;
    let outcome = match coord.api.send(api::GithubPush { delivery, push }).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(berth_coordinator::Error::from(e).into()),
    };
    Ok(accepted(outcome.message, outcome.deployments))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_blocked_after_its_failures_until_the_window_ends() {
        let f = Failures::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..FAILURES_ALLOWED {
            assert_eq!(f.blocked(a, t0), None, "after {i} failures");
            f.failed(a, t0);
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            f.blocked(a, later),
            Some(FAILURE_WINDOW - Duration::from_secs(10))
        );
        assert_eq!(f.blocked(b, later), None, "another client is not blocked");
        let after = t0 + FAILURE_WINDOW;
        assert_eq!(f.blocked(a, after), None, "the window ended");
        f.failed(a, after);
        assert_eq!(
            f.blocked(a, after),
            None,
            "a new window starts at one failure"
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let f = Failures::default();
        let t0 = Instant::now();
        for i in 0..(TRACKED_MAX as u32 + 5) {
            f.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(f.lock().len() <= TRACKED_MAX);
    }
}
