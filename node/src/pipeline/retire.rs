//! Retiring replicas that no longer serve: a running container of this node that no route
//! names any more (its app moved to another node — a drain, a failover, a deploy placed
//! elsewhere — or it is left over from before a restart) is stopped once it has been out of the
//! route for the route's `drain_s` (15 s at least), and kept stopped for a rollback. A replica
//! on the route's standby list (until `standby_until`) or of a rollout waiting to be switched in
//! (`Services::pending`) is not out.
//!
//! A pass runs every few seconds. It looks only at apps that have a route (an app still being
//! deployed for the first time has none; a deleted app is `removal.rs`'s), and only while no job
//! of the app runs here: it takes the app's lock without waiting, so it never races a deploy that
//! is starting a container or draining its predecessor itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Services;
use crate::containers::{self, LABEL_APP};
use crate::error::Result;
use crate::router::Routes;

/// How long a replica out of the route keeps running when its route does not say.
const DEFAULT_DRAIN: Duration = Duration::from_secs(10);
/// The least time a replica is out of the route before this pass stops it. A deployment on this
/// node stops its own predecessor after `drain_s` in a background task, and a rollback may start
/// a stopped release again meanwhile; this pass is for what no job here will stop (an app moved
/// to another node, leftovers after a restart), so it leaves the quick cases to the jobs.
const MIN_OUT: Duration = Duration::from_secs(15);

/// When each running container was first seen out of its app's route.
pub type OutSince = Arc<Mutex<HashMap<String, Instant>>>;

/// The app locks of the deployer (one per app name).
pub type AppLocks = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One pass: stops this node's running containers that have been out of their app's route for
/// its drain time.
pub async fn pass(svc: &Services, locks: &AppLocks, out_since: &OutSince) -> Result<()> {
    // The router's copy of the desired table (it keeps it equal to Redis's).
    let routes = svc.router.send(Routes).await?;
    // App → (the containers it serves from on this node, its drain time). By container, not
    // by deployment: a rollback serves from the release's own (restarted) container, which
    // keeps the label of the deployment that created it.
    let mut routed: HashMap<String, (HashSet<String>, Duration)> = HashMap::new();
    let now = berth_protocol::now_ms();
    for route in routes {
        let drain = route.drain_s.map_or(DEFAULT_DRAIN, Duration::from_secs);
        let entry = routed
            .entry(route.app.clone())
            .or_insert_with(|| (HashSet::new(), drain));
        entry.1 = entry.1.max(drain);
        // A replica on standby (the previous release, or one a rollout replaced while it
        // runs) is kept until its time is up.
        let kept = route.upstreams.iter().chain(route.standby_at(now));
        for u in kept.filter(|u| u.node == svc.node) {
            entry.0.insert(u.container.clone());
        }
    }
    let running = containers::running_app_containers(&svc.docker, &svc.node).await?;
    let mut seen = HashSet::new();
    for c in running {
        let (Some(id), Some(labels)) = (c.id, c.labels) else {
            continue;
        };
        let Some(app) = labels.get(LABEL_APP) else {
            continue;
        };
        let Some((serving, drain)) = routed.get(app) else {
            continue;
        };
        // A replica of a rollout waiting to be switched in.
        if svc
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
        {
            continue;
        }
        // Ids may be full or short on either side.
        if serving
            .iter()
            .any(|s| !s.is_empty() && (s.starts_with(&id) || id.starts_with(s.as_str())))
        {
            continue;
        }
        seen.insert(id.clone());
        let since = *lock(out_since)
            .entry(id.clone())
            .or_insert_with(Instant::now);
        if since.elapsed() < (*drain).max(MIN_OUT) {
            continue;
        }
        // Only while no job of the app runs here.
        let app_lock = lock(locks).entry(app.clone()).or_default().clone();
        let Ok(_guard) = app_lock.try_lock() else {
            continue;
        };
        tracing::info!(%app, container = %id, "stopping a replica no route names any more");
        if let Err(e) = containers::stop(&svc.docker, &id, 10).await {
            tracing::warn!(%app, container = %id, error = %e, "could not stop a retired replica");
        }
    }
    lock(out_since).retain(|id, _| seen.contains(id));
    Ok(())
}
