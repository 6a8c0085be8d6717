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
    /// (or to end the rollout): retiring leaves them alone.
    pub pending: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}
