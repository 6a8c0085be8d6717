//! Reporting to the coordinator: entries on the `berth:events` stream.
//!
//! Terminal events matter most (a deployment must always end), so writes are retried a few times
//! with a short back-off before the node gives up and logs the loss locally.

use std::time::Duration;

use berth_protocol::{
    envelope, keys, now_ms, DeploymentStatus, DeploymentUpdate, Event, EVENT_KIND,
};
use redis::aio::ConnectionManager;

use crate::error::Result;

/// Optional fields of a deployment status event.
#[derive(Debug, Default, Clone)]
pub struct EventFields {
    pub commit: Option<String>,
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    pub image: Option<String>,
    pub container: Option<String>,
    pub error: Option<String>,
}

/// Writes events of this node.
#[derive(Clone)]
pub struct EventSink {
    conn: ConnectionManager,
    node: String,
}

impl EventSink {
    pub fn new(conn: ConnectionManager, node: impl Into<String>) -> Self {
        EventSink {
            conn,
            node: node.into(),
        }
    }

    /// Reports that a deployment moved to `status`.
    pub async fn deployment(&self, deployment_id: &str, status: DeploymentStatus, f: EventFields) {
        let ev = Event::Deployment(DeploymentUpdate {
            node: Some(self.node.clone()),
            commit: f.commit,
            commit_message: f.commit_message,
            commit_author: f.commit_author,
            image: f.image,
            container: f.container,
            error: f.error,
            ..DeploymentUpdate::new(deployment_id, status)
        });
        self.emit(&ev).await;
    }

    /// Reports that a `RemoveApp` job is done.
    pub async fn app_removed(&self, app: &str) {
        let ev = Event::AppRemoved {
            app: app.to_string(),
            node: self.node.clone(),
            at: now_ms(),
        };
        self.emit(&ev).await;
    }

    async fn emit(&self, ev: &Event) {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=5 {
            match self.try_emit(ev).await {
                Ok(()) => return,
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %e, attempt, "could not write event; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => tracing::error!(error = %e, event = ?ev, "event lost"),
            }
        }
    }

    async fn try_emit(&self, ev: &Event) -> Result<()> {
        let id = uuid::Uuid::new_v4().to_string();
        let bytes = envelope::encode(EVENT_KIND, &id, ev)?;
        let mut conn = self.conn.clone();
        redis::cmd("XADD")
            .arg(keys::EVENTS)
            .arg("MAXLEN")
            .arg("~")
            .arg(keys::STREAM_MAXLEN)
            .arg("*")
            .arg(envelope::STREAM_FIELD)
            .arg(bytes)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}
