//! Following a Server-Sent Events stream of the API: the one resume loop behind `berth log -f`,
//! `berth logs -f` and `berth deploy --follow`.
//!
//! The server never ends a follow on its own (a deployment's ends with an `end` event), so a
//! dropped or closed connection — a coordinator restart, say — is resumed with `Last-Event-ID`
//! for up to [`RESUME_FOR`] of failed attempts: no line is printed twice or lost. The events are
//! split by the pure parser [`berth_protocol::sse`], which the tests share.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_protocol::sse::{SseEvent, SseParser};
use berth_protocol::{DeploymentStatus, LogEntry};
use futures_util::StreamExt;

use super::http::{failure, Client};

/// How long (in failed attempts, one a second) a broken follow keeps trying to resume.
const RESUME_FOR: Duration = Duration::from_secs(30);

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
        // Consecutive attempts that brought no event.
        let mut retries = 0u32;
        let mut connected_once = false;
        loop {
            if retries > 0 {
                if retries > RESUME_FOR.as_secs() as u32 {
                    bail!("the log stream broke and could not be resumed");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
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
                    retries += 1;
                    continue;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot reach the Berth API at {}", self.base))
                }
            };
            let status = resp.status();
            if status.is_server_error() && connected_once {
                retries += 1;
                continue;
            }
            if !status.is_success() {
                return Err(failure(status, resp.text().await.unwrap_or_default()));
            }
            connected_once = true;
            let mut parser = SseParser::default();
            let mut body = resp.bytes_stream();
            retries += 1;
            while let Some(chunk) = body.next().await {
                let bytes = match chunk {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(error = %e, "log stream interrupted");
                        break;
                    }
                };
                for ev in parser.push(&bytes) {
                    retries = 0;
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
                    println!("{}", e.line.line);
                }
            }
        }
        Ok(true)
    })
    .await?;
    end.context("the log stream closed before the deployment ended")
}
