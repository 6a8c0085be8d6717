//! `GET /api/v1/events`: where changes stand (JSON: the apps' counter and the deployments in
//! flight) or, followed (`follow=1` or `Accept: text/event-stream`), what changes, as Server-Sent
//! Events, for as long as the client stays (the dashboard's live lists). Events: `deployment` (a `DeploymentChange`: one appeared, moved
//! on or ended), `apps` (an `AppsChange`: an app was created, changed or deleted) and `resync`
//! (changes were missed: read again). The coordinator reads Redis once a second while anybody
//! watches (`berth_coordinator::changes`); nothing is replayed, so a client reads what it shows
//! first and then follows. Keep-alive comments while quiet; it ends with the server's shutdown.

use std::collections::HashMap;
use std::convert::Infallible;

use berth_coordinator::changes::Change;
use berth_coordinator::Coordinator;
use futures_util::StreamExt;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use warp::reply::Response;

use crate::error::ApiError;
use crate::logs::SyncStream;

pub fn route(coord: Coordinator) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("events")
        .and(warp::get())
        // As on the log streams: an unknown parameter is ignored.
        .and(crate::query::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("accept"))
        .then(move |q: HashMap<String, String>, accept: Option<String>| {
            let coord = coord.clone();
            async move {
                match follows(&q, accept.as_deref()) {
                    Err(e) => e.into_response(),
                    Ok(false) => match coord.changes.now().await {
                        Ok(now) => warp::reply::json(&now).into_response(),
                        Err(e) => ApiError::from(e).into_response(),
                    },
                    Ok(true) => {
                        let events = coord
                            .changes
                            .follow()
                            .map(|c| Ok::<Event, Infallible>(event(&c)));
                        warp::sse::reply(
                            warp::sse::keep_alive().stream(SyncStream::new(events.boxed())),
                        )
                        .into_response()
                    }
                }
            }
        })
}

/// Whether the request follows: `follow=1` (or `true`, or empty) or `Accept: text/event-stream`.
fn follows(q: &HashMap<String, String>, accept: Option<&str>) -> Result<bool, ApiError> {
    let follow = match q.get("follow").map(String::as_str) {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") | Some("") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "follow must be 1 or 0, not {other:?}"
            )))
        }
    };
    Ok(follow || accept.is_some_and(|a| a.contains("text/event-stream")))
}

fn event(c: &Change) -> Event {
    let (name, data) = match c {
        Change::Deployment(d) => ("deployment", serde_json::to_string(d)),
        Change::Apps(a) => ("apps", serde_json::to_string(a)),
        Change::Resync => ("resync", Ok("{}".to_string())),
    };
    Event::default()
        .event(name)
        .data(data.unwrap_or_else(|_| "{}".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::api::{AppsChange, DeploymentChange};
    use berth_protocol::model::{DeploymentKind, DeploymentStatus};

    #[test]
    fn follows_when_asked() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert!(!follows(&HashMap::new(), None).unwrap());
        assert!(follows(&HashMap::new(), Some("text/event-stream")).unwrap());
        assert!(follows(&q("follow", "1"), None).unwrap());
        assert!(!follows(&q("follow", "0"), Some("application/json")).unwrap());
        assert!(follows(&q("follow", "yes"), None).is_err());
    }

    #[test]
    fn events_are_named_and_carry_json() {
        let d = Change::Deployment(DeploymentChange {
            id: "d1".into(),
            app: "web".into(),
            status: DeploymentStatus::Building,
            kind: DeploymentKind::Deploy,
        });
        let text = event(&d).to_string();
        assert!(text.contains("event:deployment\n"), "{text}");
        assert!(
            text.contains(r#"data:{"id":"d1","app":"web","status":"building","kind":"deploy"}"#),
            "{text}"
        );
        let text = event(&Change::Apps(AppsChange { version: 7 })).to_string();
        assert!(text.contains("event:apps\n") && text.contains(r#"data:{"version":7}"#));
        assert!(event(&Change::Resync)
            .to_string()
            .contains("event:resync\n"));
    }
}
