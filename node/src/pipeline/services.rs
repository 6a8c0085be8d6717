//! What a job needs from the node: the [`Services`] handed to every pipeline step.

use std::path::PathBuf;

use actix::Addr;
use berth_bus::Shutdown;
use berth_protocol::secret::SecretKey;
use bollard::Docker;
use redis::aio::ConnectionManager;

use crate::event_sink::EventSink;
use crate::image_build::Builder;
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
    pub redis: ConnectionManager,
    pub router: Addr<Router>,
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
    /// Images a job is building, pulling or about to run (name → how many jobs): pruning
    /// leaves them alone. (A build the layer cache answers gives an image as old as the one it
    /// matches, and untagging a name another tag shares succeeds even while it is wanted.)
    pub in_use: InUse,
}

/// The images jobs hold (see [`Services::in_use`]).
pub type InUse = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

/// Holds image names for a job until dropped.
pub struct Held {
    set: InUse,
    names: Vec<String>,
}

impl Services {
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
    id: String,
}

impl Services {
    /// Marks the container as taken by a job (neither stopped by a drain nor retired) until the
    /// answer is dropped.
    pub fn hold_container(&self, id: &str) -> HeldContainer {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        HeldContainer {
            set: self.pending.clone(),
            id: id.to_string(),
        }
    }

    /// Whether a job holds the container (see [`Services::hold_container`]) or it is a replica
    /// waiting to be switched in.
    pub fn container_held(&self, id: &str) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|p| super::deploy::same_id(p, id))
    }
}

impl Drop for HeldContainer {
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
