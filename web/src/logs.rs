//! Log endpoints: a deployment's build and deploy log and an app's runtime log, as text, JSON or
//! Server-Sent Events.
//!
//! - `GET /api/v1/deployments/{id}/logs` — the whole log. With `?follow=1` or
//!   `Accept: text/event-stream` it is SSE from the start (or after `Last-Event-ID`) until the
//!   deployment is terminal; then an `end` event carries the outcome and the stream closes.
//! - `GET /api/v1/apps/{name}/logs?tail=N&since=T` — the app's runtime lines from every replica
//!   on every node, merged; `follow=1` (or the SSE `Accept`) sends them and then every new line.
//!   `T` is read by [`berth_protocol::duration::parse_since`]: a duration back from now in the one
//!   duration grammar, an RFC 3339 time, or epoch ms.
//!
//! Plain reads answer `text/plain` by default and a JSON array of entries with `?format=json`.
//! Every SSE line event has `id:` = the entry id and `data:` = the entry as JSON; a reconnecting
//! client sends the last id back as `Last-Event-ID` and gets no duplicate and no gap.

use std::collections::HashMap;
use std::convert::Infallible;

use berth_coordinator::logs::{check_last_id, AppLogQuery, Followed};
use berth_coordinator::Coordinator;
use berth_protocol::LogEntry;
use futures_util::StreamExt;
use warp::reply::Response;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use crate::error::ApiError;

/// How a log request wants its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Text,
    Json,
    Follow { after: Option<String> },
}

type Query = HashMap<String, String>;

/// Query string, `Accept` and `Last-Event-ID` of a log request.
fn mode() -> impl Filter<Extract = (Result<(Mode, Query), ApiError>,), Error = Rejection> + Clone {
    crate::query::query::<HashMap<String, String>>()
        .and(warp::header::optional::<String>("accept"))
        .and(warp::header::optional::<String>("last-event-id"))
        .map(
            |q: HashMap<String, String>, accept: Option<String>, last: Option<String>| {
                decide(&q, accept.as_deref(), last.as_deref()).map(|m| (m, q))
            },
        )
}

fn decide(
    q: &HashMap<String, String>,
    accept: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<Mode, ApiError> {
    let follow = match q.get("follow").map(|s| s.as_str()) {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") | Some("") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "follow must be 1 or 0, not {other:?}"
            )))
        }
    };
    let sse = accept.is_some_and(|a| a.contains("text/event-stream"));
    if follow || sse {
        let after = match last_event_id.map(str::trim).filter(|s| !s.is_empty()) {
            Some(id) => {
                check_last_id(id).map_err(ApiError::from)?;
                Some(id.to_string())
            }
            None => None,
        };
        return Ok(Mode::Follow { after });
    }
    match q.get("format").map(|s| s.as_str()) {
        None | Some("text") => Ok(Mode::Text),
        Some("json") => Ok(Mode::Json),
        Some(other) => Err(ApiError::bad_request(format!(
            "format must be text or json, not {other:?}"
        ))),
    }
}

/// `GET /deployments/{id}/logs`.
pub fn deployment_route(
    coord: Coordinator,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("deployments" / String / "logs")
        .and(warp::get())
        .and(mode())
        .then(move |id: String, mode: Result<(Mode, Query), ApiError>| {
            let coord = coord.clone();
            async move {
                let (mode, _) = match mode {
                    Ok(m) => m,
                    Err(e) => return e.into_response(),
                };
                let logs = &coord.logs;
                let result = match mode {
                    Mode::Follow { after } => logs
                        .follow_deployment(&id, after)
                        .await
                        .map(|s| sse(s.boxed())),
                    Mode::Json => logs.deployment(&id).await.map(|e| json(&e)),
                    Mode::Text => logs.deployment(&id).await.map(|e| text(&e, false)),
                };
                result.unwrap_or_else(|e| ApiError::from(e).into_response())
            }
        })
}

/// `GET /apps/{name}/logs`.
pub fn app_route(
    coord: Coordinator,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("apps" / String / "logs")
        .and(warp::get())
        .and(mode())
        .then(move |app: String, mode: Result<(Mode, Query), ApiError>| {
            let coord = coord.clone();
            async move {
                let (mode, q) = match mode {
                    Ok(m) => m,
                    Err(e) => return e.into_response(),
                };
                let query = match AppLogQuery::parse(
                    q.get("tail").map(String::as_str),
                    q.get("since").map(String::as_str),
                ) {
                    Ok(q) => q,
                    Err(e) => return ApiError::from(e).into_response(),
                };
                let logs = &coord.logs;
                let result = match mode {
                    Mode::Follow { after: Some(after) } => {
                        logs.follow_app(&app, after).await.map(|s| sse(s.boxed()))
                    }
                    Mode::Follow { after: None } => {
                        // The requested tail first, then everything after where it ends
                        // (with `tail=0`: only the lines that come next).
                        match logs.app_head(&app, &query).await {
                            Ok((tail, after)) => logs.follow_app(&app, after).await.map(|s| {
                                let head = futures_util::stream::iter(
                                    tail.into_iter().map(Followed::Line),
                                );
                                sse(head.chain(s).boxed())
                            }),
                            Err(e) => Err(e),
                        }
                    }
                    Mode::Json => logs.app(&app, &query).await.map(|e| json(&e)),
                    Mode::Text => logs.app(&app, &query).await.map(|e| text(&e, true)),
                };
                result.unwrap_or_else(|e| ApiError::from(e).into_response())
            }
        })
}

fn json(entries: &[LogEntry]) -> Response {
    warp::reply::json(&entries).into_response()
}

/// One line per entry; runtime lines are prefixed with `node/container`.
fn text(entries: &[LogEntry], tagged: bool) -> Response {
    let mut out = String::new();
    for e in entries {
        if tagged {
            out.push_str(e.line.node.as_deref().unwrap_or("?"));
            out.push('/');
            out.push_str(e.line.container.as_deref().unwrap_or("?"));
            out.push(' ');
        }
        out.push_str(&e.line.line);
        out.push('\n');
    }
    warp::reply::with_header(out, "content-type", "text/plain; charset=utf-8").into_response()
}

/// Turns a follow into an SSE response (with keep-alive comments while it is quiet).
fn sse(follow: futures_util::stream::BoxStream<'static, Followed>) -> Response {
    let events =
        SyncStream(std::sync::Mutex::new(follow)).map(|item| Ok::<Event, Infallible>(event(item)));
    warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response()
}

/// Makes a `Send` stream `Sync`, as warp's SSE body asks: polling needs `&mut self`, so the
/// mutex is never actually locked (`Mutex::get_mut`).
pub(crate) struct SyncStream<S>(std::sync::Mutex<S>);

impl<S> SyncStream<S> {
    pub(crate) fn new(stream: S) -> Self {
        SyncStream(std::sync::Mutex::new(stream))
    }
}

impl<S: futures_util::Stream + Unpin> futures_util::Stream for SyncStream<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        let inner = match self.get_mut().0.get_mut() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::pin::Pin::new(inner).poll_next(cx)
    }
}

fn event(item: Followed) -> Event {
    match item {
        Followed::Line(e) => Event::default()
            .id(e.id.clone())
            .data(serde_json::to_string(&e).unwrap_or_default()),
        Followed::End { status, error } => Event::default()
            .event("end")
            .data(serde_json::json!({"status": status, "error": error}).to_string()),
        Followed::Failed(error) => Event::default()
            .event("error")
            .data(serde_json::json!({ "error": error }).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn decides_how_to_answer() {
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
            Option<&'a str>,
            Result<Mode, &'a str>,
        );
        let cases: &[Case] = &[
            (&[], None, None, Ok(Mode::Text)),
            (&[("format", "json")], None, None, Ok(Mode::Json)),
            (&[("format", "xml")], None, None, Err("format")),
            (
                &[("follow", "1")],
                None,
                None,
                Ok(Mode::Follow { after: None }),
            ),
            (&[("follow", "0")], None, None, Ok(Mode::Text)),
            (&[("follow", "yes")], None, None, Err("follow")),
            (
                &[],
                Some("text/event-stream"),
                Some("17-3"),
                Ok(Mode::Follow {
                    after: Some("17-3".into()),
                }),
            ),
            (&[("follow", "1")], None, Some("nope"), Err("Last-Event-ID")),
        ];
        for (query, accept, last, want) in cases {
            let got = decide(&q(query), *accept, *last);
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w, "{query:?}"),
                (Err(e), Err(w)) => assert!(e.message.contains(w), "{}", e.message),
                (g, w) => panic!("{query:?}: got {g:?}, want {w:?}"),
            }
        }
    }
}
