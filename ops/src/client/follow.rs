//! Following a Server-Sent Events stream of the API: the one resume loop behind `berth log -f`,
//! `berth logs -f` and `berth deploy --follow`.
//!
//! The server never ends a follow on its own (a deployment's ends with an `end` event), so a
//! dropped or closed connection — a coordinator restart, say — is resumed with `Last-Event-ID`,
//! pausing between attempts as [`Backoff`] says, until the pauses since the last event add up to
//! [`RESUME_FOR`]: no line is printed twice or lost. The events are split by the pure parser
//! [`berth_protocol::sse`], which the tests share.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_bus::Backoff;
use berth_protocol::sse::{SseEvent, SseParser};
use berth_protocol::{DeploymentStatus, LogEntry};
use futures_util::StreamExt;

use super::http::Client;

/// How long (in pauses between attempts that brought no event) a broken follow keeps trying to
/// resume.
const RESUME_FOR: Duration = Duration::from_secs(30);
/// The first and the longest pause between two attempts to resume.
const RESUME_FIRST: Duration = Duration::from_millis(200);
const RESUME_MAX: Duration = Duration::from_secs(5);

impl Client {
    /// Follows the SSE endpoint `/api/v1/<path…>?<query>`, calling `on_event` for each event until
    /// it returns false.
    pub(super) async fn follow(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
        mut on_event: impl FnMut(&SseEvent) -> Result<bool>,
    ) -> Result<()> {
        let url = self.url(path, query)?;
        let mut last_id: Option<String> = None;
        // Whether the last attempt brought no event: then the next one waits first. A stream
        // that brought events and broke is resumed at once.
        let mut fruitless = false;
        let mut backoff = Backoff::new(RESUME_FIRST, RESUME_MAX);
        // Pauses taken since the last event.
        let mut paused = Duration::ZERO;
        let mut connected_once = false;
        loop {
            if fruitless {
                if paused >= RESUME_FOR {
                    bail!("the log stream broke and could not be resumed");
                }
                let pause = backoff.next_delay();
                paused += pause;
                tokio::time::sleep(pause).await;
            }
            let mut req = self
                .streaming
                .get(&url)
                .bearer_auth(&self.token)
                .header("accept", "text/event-stream");
            if let Some(id) = &last_id {
                req = req.header("last-event-id", id);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if connected_once => {
                    tracing::debug!(error = %e, "resuming the log stream");
                    fruitless = true;
                    continue;
                }
                Err(e) => return Err(self.unreachable(e)),
            };
            let status = resp.status();
            if status.is_server_error() && connected_once {
                fruitless = true;
                continue;
            }
            if !status.is_success() {
                return Err(self.failure(status, resp.text().await.unwrap_or_default()));
            }
            connected_once = true;
            let mut parser = SseParser::default();
            let mut body = resp.bytes_stream();
            fruitless = true;
            while let Some(chunk) = body.next().await {
                let bytes = match chunk {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(error = %e, "log stream interrupted");
                        break;
                    }
                };
                for ev in parser.push(&bytes) {
                    fruitless = false;
                    paused = Duration::ZERO;
                    backoff.reset();
                    if let Some(id) = &ev.id {
                        last_id = Some(id.clone());
                    }
                    if !on_event(&ev)? {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// How a followed deployment ended.
#[derive(serde::Deserialize)]
pub(super) struct End {
    pub(super) status: DeploymentStatus,
}

/// Prints a deployment's log live until it ends; returns how it ended.
pub(super) async fn follow_deployment(c: &Client, id: &str) -> Result<End> {
    let mut end = None;
    c.follow(&["deployments", id, "logs"], &[("follow", "1")], |ev| {
        match ev.event.as_str() {
            "end" => {
                end = Some(serde_json::from_str::<End>(&ev.data)?);
                return Ok(false);
            }
            "error" => bail!("the log stream failed: {}", ev.data),
            _ => {
                if let Some(e) = ev.json::<LogEntry>() {
                    println!("{}", super::render::for_output(&e.line.line));
                }
            }
        }
        Ok(true)
    })
    .await?;
    end.context("the log stream closed before the deployment ended")
}
