//! What changes, for whoever watches (`GET /api/v1/events`, which keeps the dashboard's lists
//! live): a deployment that appears, moves on (`queued` → `building` → `deploying`) or ends, and
//! the apps changing (one created, changed or deleted).
//!
//! One watcher per coordinator process, and only while somebody watches: once a second it reads
//! the apps' change counter (`berth:apps:version`), the outcome counters
//! (`berth:stats:deployments`), the set of active deployments and their records — the ones in
//! flight only — and a record once more when it leaves the set (how it ended). A deployment that
//! appeared and ended between two reads is never in the set it reads; the outcome counters tell
//! that one ended, and then the apps' newest deployments (`berth:apps:latest`) say which. It
//! writes nothing and the deploy path does nothing for it, so a coordinator nobody watches reads
//! nothing. It reads Redis, so it sees what every coordinator did (any of them may have applied
//! a node's event). A watcher that falls behind gets [`Change::Resync`] (read everything again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_bus::Shutdown;
use berth_protocol::api::{AppsChange, DeploymentChange, EventsNow};
use berth_protocol::keys;
use berth_protocol::model::Deployment;
use futures_util::Stream;
use tokio::sync::broadcast;

use redis::AsyncCommands;

use crate::store::{parse_latest, Store};

/// How often the watcher reads.
const EVERY: Duration = Duration::from_secs(1);

/// One thing a watcher is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Deployment(DeploymentChange),
    Apps(AppsChange),
    /// Changes were missed (the watcher fell behind): read what you show again.
    Resync,
}

/// The process's watcher of changes; cheap to clone.
#[derive(Clone)]
pub struct Changes {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tx: broadcast::Sender<Change>,
    /// Whether the reading task runs (it stops when nobody has watched for a read).
    running: AtomicBool,
    shutdown: Shutdown,
}

impl Changes {
    pub fn new(store: Store, shutdown: Shutdown) -> Self {
        let (tx, _) = broadcast::channel(1024);
        Changes {
            inner: Arc::new(Inner {
                store,
                tx,
                running: AtomicBool::new(false),
                shutdown,
            }),
        }
    }

    /// Where changes stand now: the apps' counter and the deployments in flight (by id).
    pub async fn now(&self) -> crate::error::Result<EventsNow> {
        let seen = read(&self.inner.store, None).await?;
        let mut active: Vec<DeploymentChange> = seen.active.into_values().collect();
        active.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(EventsNow {
            version: seen.version,
            active,
        })
    }

    /// The changes from now on, until the process shuts down.
    pub fn follow(&self) -> impl Stream<Item = Change> + Send + 'static {
        let rx = self.inner.tx.subscribe();
        if !self.inner.running.swap(true, Ordering::SeqCst) {
            let inner = self.inner.clone();
            self.inner.shutdown.spawn(watch(inner));
        }
        let token = self.inner.shutdown.child_token();
        futures_util::stream::unfold((rx, token), |(mut rx, token)| async move {
            let next = tokio::select! {
                _ = token.cancelled() => return None,
                next = rx.recv() => next,
            };
            match next {
                Ok(c) => Some((c, (rx, token))),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Change::Resync, (rx, token))),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }
}

/// The reading task: reads once a second while anybody watches.
async fn watch(inner: Arc<Inner>) {
    let mut last = Seen::default();
    loop {
        if inner.tx.receiver_count() == 0 {
            inner.running.store(false, Ordering::SeqCst);
            // A watcher that came between the count and the store found the task running and
            // started none: this task goes on for it.
            if inner.tx.receiver_count() == 0 || inner.running.swap(true, Ordering::SeqCst) {
                return;
            }
        }
        match read(&inner.store, Some(&mut last)).await {
            Ok(now) => {
                if let Some(before) = last.taken.then_some(&last) {
                    let ended = before.ended(&now);
                    let ended = match inner.store.deployments(&ended).await {
                        Ok(records) => records,
                        Err(e) => {
                            tracing::debug!(error = %e, "changes: reading ended deployments");
                            Vec::new()
                        }
                    };
                    for c in before.changes(&now, &ended) {
                        let _ = inner.tx.send(c);
                    }
                }
                last = now;
            }
            Err(e) => tracing::debug!(error = %e, "changes: reading the active deployments"),
        }
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// What one read saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Whether this is a real read (the first read only sets where changes count from).
    taken: bool,
    version: u64,
    /// The active deployments: id → (app, status, kind).
    active: HashMap<String, DeploymentChange>,
    /// How many deployments ended so far, by outcome.
    outcomes: HashMap<String, u64>,
    /// Each app's newest deployment (`berth:apps:latest`) as last read, and whether this read
    /// read it (it is read again only when the outcomes moved).
    latest: HashMap<String, String>,
    latest_read: bool,
}

/// Reads what changes are told from: the apps' counter, the outcome counters and the
/// deployments in flight; for the watcher (`last`: its read before) also the apps' newest
/// deployments, read again only when the outcomes moved (else taken from `last`, once nothing
/// can fail).
async fn read(store: &Store, last: Option<&mut Seen>) -> crate::error::Result<Seen> {
    let mut conn = store.conn();
    let version = store
        .get_string(keys::APPS_VERSION)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let outcomes: HashMap<String, u64> = conn.hgetall(keys::STATS_DEPLOYMENTS).await?;
    let ids = store.active_deployments().await?;
    let records = store.deployments(&ids).await?;
    let mut seen = Seen {
        taken: true,
        version,
        active: records.iter().map(|d| (d.id.clone(), change(d))).collect(),
        outcomes,
        ..Seen::default()
    };
    if let Some(last) = last {
        seen.latest_read = !last.taken || seen.outcomes != last.outcomes;
        seen.latest = if seen.latest_read {
            conn.hgetall(keys::APPS_LATEST).await?
        } else {
            std::mem::take(&mut last.latest)
        };
    }
    Ok(seen)
}

fn change(d: &Deployment) -> DeploymentChange {
    DeploymentChange {
        id: d.id.clone(),
        app: d.app.clone(),
        status: d.status,
        kind: d.kind,
    }
}

impl Seen {
    /// The deployments active before and not now.
    fn ended(&self, now: &Seen) -> Vec<String> {
        let mut ids: Vec<String> = self
            .active
            .keys()
            .filter(|id| !now.active.contains_key(*id))
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// What changed from `self` to `now`, given the records of the deployments that left the
    /// active set (`ended`; one whose record is gone — its app deleted — is told by `apps`).
    fn changes(&self, now: &Seen, ended: &[Deployment]) -> Vec<Change> {
        let mut out = Vec::new();
        if now.version != self.version {
            out.push(Change::Apps(AppsChange {
                version: now.version,
            }));
        }
        let mut moved: Vec<&DeploymentChange> = now
            .active
            .values()
            .filter(|c| self.active.get(&c.id).map(|b| b.status) != Some(c.status))
            .collect();
        moved.sort_by(|a, b| a.id.cmp(&b.id));
        out.extend(moved.into_iter().cloned().map(Change::Deployment));
        out.extend(ended.iter().map(|d| Change::Deployment(change(d))));
        // Ended between the two reads without ever being seen active: an app's newest
        // deployment that is new to this watcher and already terminal.
        if now.latest_read {
            let mut quick: Vec<DeploymentChange> = now
                .latest
                .iter()
                .filter(|(app, v)| self.latest.get(*app) != Some(*v))
                .filter_map(|(app, v)| {
                    let l = parse_latest(v)?;
                    let told = self.active.contains_key(&l.id) || now.active.contains_key(&l.id);
                    (l.status.is_terminal() && !told).then(|| DeploymentChange {
                        id: l.id,
                        app: app.clone(),
                        status: l.status,
                        kind: l.kind,
                    })
                })
                .collect();
            quick.sort_by(|a, b| a.id.cmp(&b.id));
            out.extend(quick.into_iter().map(Change::Deployment));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::model::{DeploymentKind, DeploymentStatus};

    fn c(id: &str, status: DeploymentStatus) -> DeploymentChange {
        DeploymentChange {
            id: id.into(),
            app: "web".into(),
            status,
            kind: DeploymentKind::Deploy,
        }
    }

    fn seen(version: u64, active: &[DeploymentChange]) -> Seen {
        Seen {
            taken: true,
            version,
            active: active.iter().map(|d| (d.id.clone(), d.clone())).collect(),
            ..Default::default()
        }
    }

    fn record(id: &str, status: DeploymentStatus) -> Deployment {
        let mut d = crate::ledger::bare(id, "web", 1);
        d.status = status;
        d
    }

    #[test]
    fn tells_what_appeared_moved_and_ended() {
        use DeploymentStatus::*;
        let before = seen(3, &[c("a", Queued), c("b", Building)]);
        let now = seen(4, &[c("b", Deploying), c("c", Queued)]);
        assert_eq!(before.ended(&now), ["a"]);
        let got = before.changes(&now, &[record("a", Succeeded)]);
        assert_eq!(
            got,
            [
                Change::Apps(AppsChange { version: 4 }),
                Change::Deployment(c("b", Deploying)),
                Change::Deployment(c("c", Queued)),
                Change::Deployment(c("a", Succeeded)),
            ]
        );
        // Nothing changed: nothing told.
        assert!(now.changes(&now.clone(), &[]).is_empty());
    }

    /// A deployment that appeared and ended between two reads is told by the apps' newest
    /// deployments, read again because the outcomes moved; one told already is not told again.
    #[test]
    fn tells_a_deployment_that_came_and_went_between_two_reads() {
        use DeploymentStatus::*;
        let mut before = seen(1, &[c("b", Building)]);
        before.latest = HashMap::from([
            ("web".to_string(), "1 a succeeded deploy".to_string()),
            ("api".to_string(), "2 b building deploy".to_string()),
        ]);
        let mut now = seen(1, &[]);
        now.latest = HashMap::from([
            ("web".to_string(), "3 q failed rollback".to_string()),
            ("api".to_string(), "2 b succeeded deploy".to_string()),
        ]);
        now.latest_read = true;
        let got = before.changes(&now, &[record("b", Succeeded)]);
        assert_eq!(
            got,
            [
                Change::Deployment(c("b", Succeeded)),
                Change::Deployment(DeploymentChange {
                    id: "q".into(),
                    app: "web".into(),
                    status: Failed,
                    kind: DeploymentKind::Rollback,
                }),
            ]
        );
    }
}
