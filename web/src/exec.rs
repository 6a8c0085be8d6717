//! Exec endpoints: run a command in a running replica and follow its output.
//!
//! - `POST /api/v1/apps/{name}/exec` with `{"cmd": [...], "node", "container", "timeout_s"}` —
//!   202 with `{"id", "app", "node", "container", "deployment", "timeout_s"}`.
//! - `GET /api/v1/exec/{id}` — Server-Sent Events, always: `queued` and `started` (where it
//!   runs), `output` (`{"stream": "stdout|stderr", "data"}`, the bytes as the command wrote them,
//!   as UTF-8), then one `end` (`{"exit_code", "error"}`) and the stream closes. Each event has
//!   `id:` = its stream entry id; a client reconnecting with `Last-Event-ID` gets what follows.

use std::convert::Infallible;

use berth_coordinator::exec::ExecFollowed;
use berth_coordinator::logs::check_last_id;
use berth_coordinator::{api, Coordinator};
use berth_protocol::api::CreateExec;
use futures_util::StreamExt;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use crate::error::ApiError;

/// `POST /apps/{name}/exec` (the body already parsed).
pub async fn start(
    coord: Coordinator,
    app: String,
    body: Result<CreateExec, ApiError>,
) -> Response {
    match body {
        Ok(b) => crate::respond(
            coord.api.send(api::StartExec(app, b)).await,
            StatusCode::ACCEPTED,
        ),
        Err(e) => e.into_response(),
    }
}

/// `GET /exec/{id}`.
pub fn follow_route(
    coord: Coordinator,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("exec" / String)
        .and(warp::get())
        .and(warp::header::optional::<String>("last-event-id"))
        .then(move |id: String, last: Option<String>| {
            let coord = coord.clone();
            async move {
                let after = match last.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                    Some(l) => match check_last_id(l) {
                        Ok(()) => Some(l.to_string()),
                        Err(e) => return ApiError::from(e).into_response(),
                    },
                    None => None,
                };
                match coord.exec.follow(&id, after).await {
                    Ok(s) => {
                        let events = crate::logs::SyncStream::new(s.boxed())
                            .map(|item| Ok::<Event, Infallible>(event(item)));
                        warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response()
                    }
                    Err(e) => ApiError::from(e).into_response(),
                }
            }
        })
}

fn event(item: ExecFollowed) -> Event {
    match item {
        ExecFollowed::Entry { id, entry } => Event::default()
            .id(id)
            .event(entry.kind())
            .data(serde_json::to_string(&entry).unwrap_or_default()),
        ExecFollowed::Failed(error) => Event::default()
            .event("error")
            .data(serde_json::json!({ "error": error }).to_string()),
    }
}
