//! What a job needs from the node: the [`Services`] handed to every pipeline step.

use std::path::PathBuf;

use std::future::Future;
use std::time::Duration;

use berth_bus::{Backoff, Redis, Shutdown};
use berth_protocol::now_ms;
use berth_protocol::secret::SecretKey;
use bollard::Docker;

use crate::error::Result;
use crate::event_sink::EventSink;
use crate::image_build::Builder;
use crate::log_sink::LogSink;
use crate::registry::RegistryConfig;
use crate::router::Router;

/// Everything a job needs from the node.
pub struct Services {
    pub node: String,
    /// Address containers' ports are published on and Caddy dials.
    pub address: String,
    /// Where checkouts go: `<data_dir>/node/builds`.
    pub builds_dir: PathBuf,
    pub docker: Docker,
    /// Whether the engine went away under a step: such a failure is not the app's.
    pub engine: crate::engine_watch::EngineWatch,
    pub redis: Redis,
    /// Confirms the claims that must survive a failover of Redis (`redis.min_replicas_acked`;
    /// off by default).
    pub replicas: berth_bus::Replicas,
    pub router: berth_bus::Live<Router>,
    pub events: EventSink,
    pub builder: Builder,
    pub probe_http: reqwest::Client,
    /// Opens sealed git credentials (same key as the coordinator's).
    pub secret_key: Option<SecretKey>,
    /// The process's shutdown: every task a job spawns is tracked by it.
    pub shutdown: Shutdown,
    /// The registry built images are pushed to and other nodes' images pulled from.
    pub registry: Option<RegistryConfig>,
    /// Replicas of rollouts that are healthy and wait for the coordinator to switch them in
    /// (or to end the rollout), and a release's container a rollback is taking again: retiring
    /// and draining leave them alone.
    pub pending: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Containers a drain is stopping or removing (locked after `pending`, never before): a
    /// rollback does not take one of them, and a drain does not stop or remove one a rollback
    /// holds.
    pub stopping: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Images a job is building, pulling or about to run (name → how many jobs): pruning
    /// leaves them alone. (A build the layer cache answers gives an image as old as the one it
    /// matches, and untagging a name another tag shares succeeds even while it is wanted.)
    pub in_use: InUse,
    /// Test-only hooks are on (the `test_hooks` setting): see `test_pause`.
    pub test_hooks: bool,
    /// Whether apps may deploy from repositories on this machine (`allow_local_repos`).
    pub allow_local_repos: bool,
    /// The limits of an app container whose app sets none.
    pub limits: crate::containers::LimitDefaults,
    /// The host's CPUs: no container is given more.
    pub cpus: u32,
    /// The Docker network app containers and builds join (`node.app_network`).
    pub app_network: String,
    /// The base images of generated Dockerfiles (`[packs]`).
    pub pack_images: berth_packs::Images,
}

/// The images jobs hold (see [`Services::in_use`]).
pub type InUse = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

/// Holds image names for a job until dropped.
pub struct Held {
    set: InUse,
    names: Vec<String>,
}

impl Services {
    /// Runs `op` — a step that needs Redis, such as claiming the switch or writing the route —
    /// and runs it again while it fails because Redis is away (capped backoff, at once when
    /// Redis answers again), until `until_ms` (epoch ms; `None`: no limit) or the node's
    /// shutdown: a Redis outage delays the deployment instead of failing it. Says so in the
    /// deployment's log once (`what`: "to claim the switch").
    pub async fn through_outage<T, F, Fut>(
        &self,
        log: &LogSink,
        what: &str,
        until_ms: Option<u64>,
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut said = false;
        loop {
            let e = match op().await {
                Err(e) if e.is_redis_away() => e,
                r => return r,
            };
            if until_ms.is_some_and(|t| now_ms() >= t) || self.shutdown.is_cancelled() {
                return Err(e);
            }
            if !said {
                said = true;
                log.system(format!("{e}: waiting for it {what}")).await;
            }
            tokio::select! {
                () = backoff.wait() => {}
                () = self.redis.back() => {}
                () = self.shutdown.cancelled() => return Err(e),
            }
        }
    }

    /// Marks `names` in use until the answer is dropped.
    pub fn hold_images(&self, names: Vec<String>) -> Held {
        let mut set = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        for n in &names {
            *set.entry(n.clone()).or_default() += 1;
        }
        Held {
            set: self.in_use.clone(),
            names,
        }
    }
}

/// Keeps a container in [`Services::pending`] until dropped.
pub struct HeldContainer {
    set: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// `None` once disarmed: the mark then stays for whoever took it over.
    id: Option<String>,
}

impl HeldContainer {
    /// Leaves the container in [`Services::pending`] when dropped: a rollout's replica keeps
    /// it there until the rollout ends (`replica.rs` removes it then).
    pub fn disarm(mut self) {
        self.id = None;
    }
}

impl Services {
    /// Marks the container as taken by a job (neither stopped by a drain nor retired) until the
    /// answer is dropped; `None` when a drain is stopping it.
    pub fn try_hold_container(&self, id: &str) -> Option<HeldContainer> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let stopping = self.stopping.lock().unwrap_or_else(|p| p.into_inner());
        if stopping.iter().any(|s| super::deploy::same_id(s, id)) {
            return None;
        }
        pending.insert(id.to_string());
        Some(HeldContainer {
            set: self.pending.clone(),
            id: Some(id.to_string()),
        })
    }

    /// Whether a job holds the container (see [`Services::hold_container`]) or it is a replica
    /// waiting to be switched in.
    pub fn container_held(&self, id: &str) -> bool {
        marked(&self.pending, id)
    }
}

/// Whether `set` (`Services::pending` or `Services::stopping`) names the container.
pub fn marked(set: &std::sync::Mutex<std::collections::HashSet<String>>, id: &str) -> bool {
    set.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|s| super::deploy::same_id(s, id))
}

/// Whether a route names this node's container `id` at `now`, serving or on standby.
pub fn routed(routes: &[berth_protocol::Route], node: &str, id: &str, now: u64) -> bool {
    routes.iter().any(|r| {
        r.upstreams
            .iter()
            .chain(r.standby_at(now))
            .any(|u| u.node == node && super::deploy::same_id(&u.container, id))
    })
}

impl Drop for HeldContainer {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            self.set
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
    }
}

/// Marks a container as being stopped (or removed) by a drain unless a job holds it (see
/// [`Services::try_hold_container`]); the answer unmarks it when dropped.
pub fn claim_stop(
    pending: &std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    stopping: &std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    id: &str,
) -> Option<StopClaim> {
    let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    if pending.iter().any(|p| super::deploy::same_id(p, id)) {
        // A job holds it (checked under the lock a hold takes, not with `marked`).
        return None;
    }
    // Another drain stopping (or removing) it already does the work.
    if !stopping
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.to_string())
    {
        return None;
    }
    Some(StopClaim {
        set: stopping.clone(),
        id: id.to_string(),
    })
}

/// A drain's mark on a container it stops (see [`claim_stop`]).
pub struct StopClaim {
    set: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    id: String,
}

impl Drop for StopClaim {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Whether a job holds `image`.
pub fn held(set: &InUse, image: &str) -> bool {
    set.lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(image)
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        for n in &self.names {
            if let Some(c) = set.get_mut(n) {
                *c -= 1;
                if *c == 0 {
                    set.remove(n);
                }
            }
        }
    }
}
