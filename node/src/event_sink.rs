//! Reporting to the coordinator: entries on the `berth:events` stream.
//!
//! A deployment must always end, and a node is the only one who knows how its deployments
//! ended, so an event is never given up while the node lives: a write that fails is retried
//! with capped backoff ([`berth_bus::Backoff`], cut short when Redis answers again) until Redis
//! takes it or the node shuts down.
//! An outcome (a terminal event) is first written to the node's outbox on disk
//! (`<data_dir>/node/outbox/<deployment>.msgpack`) and removed once Redis acknowledged the
//! write; at start the node re-emits whatever the outbox holds, so an outcome survives a
//! restart too. A second copy of an event is harmless: the coordinator applies a change only
//! once (its records move forward only, and a terminal record never changes).
//! With `redis.min_replicas_acked`, "Redis acknowledged" means its replicas too: an outcome the
//! primary alone had could be lost in a failover, and the deployment would wait for it until its
//! deadline. Until they confirm it the outcome stays in the outbox and is written again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_bus::{Backoff, Redis, Replicas};
use berth_protocol::{envelope, keys, now_ms, DeploymentUpdate, Event, EVENT_KIND};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Writes events of this node.
#[derive(Clone)]
pub struct EventSink {
    conn: Redis,
    node: String,
    /// Outcomes not yet acknowledged by Redis, one file each.
    outbox: PathBuf,
    /// Ends the retries when the node shuts down (an outcome stays in the outbox).
    shutdown: CancellationToken,
    /// Confirms outcomes with Redis's replicas (`redis.min_replicas_acked`; off by default).
    replicas: Replicas,
}

impl EventSink {
    /// An event sink whose outbox is `outbox` (created if missing).
    pub fn new(
        conn: Redis,
        node: impl Into<String>,
        outbox: PathBuf,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        std::fs::create_dir_all(&outbox)
            .map_err(|e| Error::io(format!("cannot create {}", outbox.display()), e))?;
        Ok(EventSink {
            conn,
            node: node.into(),
            outbox,
            shutdown,
            replicas: Replicas::off(),
        })
    }

    /// Outcomes leave the outbox only once Redis's replicas confirm them, through `replicas`.
    pub fn with_replicas(mut self, replicas: Replicas) -> Self {
        self.replicas = replicas;
        self
    }

    /// Reports a change of a deployment (this node's name is filled in). A terminal change
    /// goes through the outbox.
    pub async fn deployment(&self, update: DeploymentUpdate) {
        // An outcome: the end of a deployment, a replica of a rollout healthy or failed, an
        // attempt interrupted.
        let terminal =
            update.status.is_terminal() || update.replica.is_some() || update.interrupted.is_some();
        let ev = Event::Deployment(DeploymentUpdate {
            node: Some(self.node.clone()),
            ..update
        });
        let bytes = match envelope::encode(EVENT_KIND, &uuid::Uuid::new_v4().to_string(), &ev) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, event = ?ev, "cannot encode an event");
                return;
            }
        };
        let parked = if terminal {
            self.park(&ev, &bytes).await
        } else {
            None
        };
        let sent = match terminal {
            true => self.emit_confirmed(&bytes).await,
            false => self.emit(&bytes).await,
        };
        if sent {
            if let Some(file) = parked {
                remove_file(&file).await;
            }
        }
    }

    /// Reports that a `RemoveApp` job is done.
    pub async fn app_removed(&self, app: &str) {
        let ev = Event::AppRemoved {
            app: app.to_string(),
            node: self.node.clone(),
            at: now_ms(),
        };
        match envelope::encode(EVENT_KIND, &uuid::Uuid::new_v4().to_string(), &ev) {
            Ok(bytes) => {
                self.emit(&bytes).await;
            }
            Err(e) => tracing::error!(error = %e, "cannot encode an event"),
        }
    }

    /// Sends every outcome left in the outbox (by an earlier run of this node); returns how
    /// many went out.
    pub async fn resend_outbox(&self) -> usize {
        let files = match list_outbox(&self.outbox).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the event outbox");
                return 0;
            }
        };
        let mut sent = 0;
        for file in files {
            let bytes = match tokio::fs::read(&file).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot read an outbox entry");
                    continue;
                }
            };
            if envelope::decode::<Event>(&bytes, EVENT_KIND).is_err() {
                tracing::warn!(file = %file.display(), "dropping an undecodable outbox entry");
                remove_file(&file).await;
                continue;
            }
            if !self.emit_confirmed(&bytes).await {
                break;
            }
            remove_file(&file).await;
            sent += 1;
        }
        if sent > 0 {
            tracing::info!(sent, "re-sent outcomes a previous run had not delivered");
        }
        sent
    }

    /// Writes the outcome to the outbox; its file, or `None` if that failed (the event is still
    /// sent).
    async fn park(&self, ev: &Event, bytes: &[u8]) -> Option<PathBuf> {
        let Event::Deployment(u) = ev else {
            return None;
        };
        let file = self.outbox.join(format!("{}.msgpack", u.deployment_id));
        let tmp = self.outbox.join(format!(".{}.tmp", u.deployment_id));
        let write = async {
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &file).await
        };
        match write.await {
            Ok(()) => Some(file),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot write to the event outbox");
                None
            }
        }
    }

    /// XADDs the event until Redis takes it; false only when the node shuts down first.
    async fn emit(&self, bytes: &[u8]) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut failing = berth_bus::Failing::new("writing an event");
        loop {
            match self.try_emit(bytes).await {
                Ok(()) => {
                    failing.ok();
                    return true;
                }
                Err(e) => failing.failed(&e, e.is_redis_away()),
            }
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    tracing::warn!("shutting down with an event not written; an outcome stays in the outbox");
                    return false;
                }
                () = backoff.wait() => {}
                // Redis answers again: write it now, not at the end of a long pause.
                () = self.conn.back() => {}
            }
        }
    }

    /// [`EventSink::emit`], then again until Redis's replicas confirm a copy (at once when none
    /// are asked for): written again each time, as the primary that had the last copy may be
    /// gone. False only when the node shuts down first.
    async fn emit_confirmed(&self, bytes: &[u8]) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            if !self.emit(bytes).await {
                return false;
            }
            let Err(e) = self.replicas.confirm().await else {
                return true;
            };
            tracing::debug!(error = %e, "an outcome not confirmed by Redis's replicas; writing it again");
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    tracing::warn!("shutting down with an outcome not confirmed by Redis's replicas; it stays in the outbox");
                    return false;
                }
                () = backoff.wait() => {}
            }
        }
    }

    async fn try_emit(&self, bytes: &[u8]) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("XADD")
            .arg(keys::EVENTS)
            .arg("MAXLEN")
            .arg("~")
            .arg(keys::EVENTS_MAXLEN)
            .arg("*")
            .arg(envelope::STREAM_FIELD)
            .arg(bytes)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

/// The outbox's entries, oldest first.
async fn list_outbox(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let path = e.path();
            if path.extension().is_some_and(|x| x == "msgpack") {
                let modified = e.metadata()?.modified()?;
                files.push((modified, path));
            }
        }
        files.sort();
        Ok(files.into_iter().map(|(_, p)| p).collect())
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn remove_file(file: &Path) {
    if let Err(e) = tokio::fs::remove_file(file).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %file.display(), error = %e, "cannot remove an outbox entry");
        }
    }
}
