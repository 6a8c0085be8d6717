//! `GET /api/v1/events`: what changes, as Server-Sent Events, for as long as the client stays
//! (the dashboard's live lists). Events: `deployment` (a `DeploymentChange`: one appeared, moved
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

use crate::logs::SyncStream;

pub fn route(coord: Coordinator) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("events")
        .and(warp::get())
        // Nothing to ask for, but a query is parsed like everywhere else (an unknown parameter
        // is ignored, as on the other streams).
        .and(crate::query::query::<HashMap<String, String>>())
        .map(move |_: HashMap<String, String>| {
            let events = coord
                .changes
                .follow()
                .map(|c| Ok::<Event, Infallible>(event(&c)));
            warp::sse::reply(warp::sse::keep_alive().stream(SyncStream::new(events.boxed())))
                .into_response()
        })
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
