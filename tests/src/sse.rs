//! [`Sse`]: a Server-Sent Events connection to the Berth API, read event by event.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::Api;

/// A Server-Sent Events connection to the API (no total timeout; each read has its own).
pub struct Sse {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: berth_protocol::sse::SseParser,
    queue: std::collections::VecDeque<berth_protocol::sse::SseEvent>,
}

impl Sse {
    /// Opens `path` with `Accept: text/event-stream` (and `Last-Event-ID` if given); fails unless
    /// the answer is 200 with that content type.
    pub async fn open(api: &Api, path: &str, last_event_id: Option<&str>) -> Result<Sse> {
        let http = crate::http_client()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let mut req = http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&api.token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if status != 200 || !ctype.starts_with("text/event-stream") {
            bail!("SSE {path}: HTTP {status} {ctype}: {}", resp.text().await?);
        }
        Ok(Sse {
            body: Box::pin(resp.bytes_stream()),
            parser: Default::default(),
            queue: Default::default(),
        })
    }

    /// The next event; `None` once the server closed the stream. Fails after `timeout` without one.
    pub async fn next(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<berth_protocol::sse::SseEvent>> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(Some(ev));
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => bail!("no SSE event within {timeout:?}"),
                Ok(None) => return Ok(None),
                Ok(Some(chunk)) => self.queue.extend(self.parser.push(&chunk?)),
            }
        }
    }
}
