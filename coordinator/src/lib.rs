//! The coordinator: API-facing state, placement, and the watch over every deployment.
//!
//! It talks to nodes only through Redis streams (jobs out, events in) and keeps no state that
//! Redis does not hold, so it can restart at any time and pick up where it was. Actors:
//! - [`api::Api`] — one message per HTTP API operation (web/ sends them);
//! - [`ledger::Ledger`] — the single writer of deployment records;
//! - [`registry::NodeRegistry`] — node heartbeats and liveness;
//! - [`deployment::DeploymentActor`] — one per in-flight deployment: placement, job, deadlines;
//! - [`reconciler::Reconciler`] — keeps an actor on every active deployment (supervision);
//! - [`event_ingest::EventIngest`] — folds node events into records (through the shared
//!   `berth_bus::StreamConsumer`).
//!
//! Each runs under the supervision tree (`berth_bus::Tree`, process `coordinator`), which starts
//! it again when it dies; the others reach it through a `berth_bus::Live` handle.
//!
//! Log reads and follows are not an actor: [`logs::Logs`] reads the streams nodes write, each
//! follow on a Redis connection of its own; so is [`exec::Execs`], which follows the output of
//! a command run in a replica.
//!
//! Shutdown: [`start`] takes the process's [`berth_bus::Shutdown`]. The event ingest stops on
//! (a child of) its token, log follows end and their readers stop; the readers are tasks of its
//! tracker. The actors themselves end with the actix `System`.

pub(crate) mod analyze;
pub mod api;
pub(crate) mod apps;
pub mod changes;
pub(crate) mod deployment;
pub mod error;
pub(crate) mod event_ingest;
pub mod exec;
pub(crate) mod failover;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod git_check;
pub(crate) mod lease;
pub(crate) mod ledger;
pub(crate) mod log_hub;
pub mod logs;
pub mod metrics;
pub(crate) mod reconciler;
pub(crate) mod registry;
pub(crate) mod releases;
pub(crate) mod rollout;
pub(crate) mod scheduler;
pub(crate) mod store;
pub mod upload;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use berth_bus::{Live, Shutdown};
use berth_protocol::secret::SecretKey;

pub use deployment::Deadlines;
pub use error::{Error, Result};
pub use registry::Liveness;

/// What the coordinator needs to run.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub redis_url: String,
    /// The Sentinels that name the Redis primary (`redis.sentinels`); `redis_url` then says how
    /// to speak to the data nodes only.
    pub redis_sentinels: Option<berth_bus::Sentinels>,
    /// App `foo` gets `foo.<base_domain>` unless it names its domains.
    pub base_domain: String,
    /// The API's own host name (`api.listen`'s host when it is a name, not an address): no app
    /// may take it, nor the bare `base_domain`.
    pub api_host: Option<String>,
    pub deadlines: Deadlines,
    /// When a node whose heartbeats stopped is suspect, then down.
    pub liveness: registry::Liveness,
    /// Whether the nodes share images through a registry (`registry.url`): without one, a
    /// release runs only on the engine that built it.
    pub shared_images: bool,
    /// Seals git credentials at rest; nodes open them with the same key.
    pub secret_key: SecretKey,
    /// The ingress port apps' URLs name while no node has reported its own (`node.ingress_http`).
    pub ingress_http: u16,
    /// Test-only: the supervision tree takes panics to inject from Redis (`test_hooks`).
    pub test_hooks: bool,
    /// Whether apps may deploy from repositories on this machine (`allow_local_repos`; see
    /// `berth_protocol::repo_url`).
    pub allow_local_repos: bool,
    /// How long the leader lease lasts without renewal (`leader_lease_s`): another coordinator
    /// leads within about this long after the leader dies.
    pub lease: Duration,
    /// The base images of the Dockerfiles `POST /api/v1/analyze` shows (`[packs]`, as the
    /// nodes have them).
    pub pack_images: berth_packs::Images,
    /// How many of Redis's replicas must acknowledge a write that has to survive a failover
    /// before it is reported done (`redis.min_replicas_acked`, `redis.replica_ack_timeout_ms`;
    /// none by default).
    pub durability: berth_bus::Durability,
}

impl CoordinatorConfig {
    pub fn new(redis_url: impl Into<String>, secret_key: SecretKey) -> Self {
        CoordinatorConfig {
            secret_key,
            redis_url: redis_url.into(),
            redis_sentinels: None,
            base_domain: "localhost".into(),
            api_host: None,
            deadlines: Deadlines::default(),
            liveness: registry::Liveness::default(),
            shared_images: false,
            ingress_http: 80,
            test_hooks: false,
            allow_local_repos: false,
            lease: lease::DEFAULT_TTL,
            pack_images: Default::default(),
            durability: Default::default(),
        }
    }
}

/// A running coordinator: the addresses web/ needs. Its Redis layer (`store`) and its actors
/// other than `Api` are private to this crate, so web/ cannot touch Redis: the compiler keeps
/// that invariant, not habit. Cheap to clone (a few `Arc`s): web/'s routes clone it for every
/// request, once per route tried.
#[derive(Clone)]
pub struct Coordinator {
    pub api: Live<api::Api>,
    /// Reads and follows deployment and app logs.
    pub logs: Arc<logs::Logs>,
    /// Follows the output of commands run in replicas (`berth exec`).
    pub exec: Arc<exec::Execs>,
    /// Tells what changes: deployments and apps (`GET /api/v1/events`).
    pub changes: changes::Changes,
}

/// Starts the coordinator's actors. Must be called inside a running actix `System`. Its loops
/// stop when `shutdown` is cancelled; its tasks are tracked by it.
pub async fn start(cfg: CoordinatorConfig, shutdown: &Shutdown) -> Result<Coordinator> {
    let store =
        store::Store::new(store::connect(&cfg.redis_url, cfg.redis_sentinels.as_ref()).await?);
    releases::migrate(&store).await?;
    store.migrate_latest().await?;
    store.migrate_domains().await?;
    // Credentials sealed by an older version, before they were bound to their app.
    let resealed = store.reseal_credentials(&cfg.secret_key).await?;
    if resealed > 0 {
        tracing::info!(resealed, "re-sealed git credentials bound to their apps");
    }
    // The leader lease first: a coordinator alone leads from its start.
    let leadership = lease::start(store.conn(), cfg.lease, shutdown).await;
    // Every write of this coordinator's machinery carries its epoch while it leads.
    // Its covered writes wait for Redis's replicas when `redis.min_replicas_acked` asks.
    let replicas = berth_bus::Replicas::new(&store.conn(), cfg.durability, "coordinator", shutdown);
    let store = store
        .with_leadership(leadership.clone())
        .with_replicas(replicas);
    // The supervision tree: each actor is started now and again whenever it dies; a factory
    // holds only what outlives an actor (the store, other actors' live handles, settings).
    let mut tree = berth_bus::Tree::new("coordinator", store.conn(), shutdown, cfg.test_hooks);
    let ledger = tree.supervise("ledger", {
        let store = store.clone();
        move || ledger::Ledger::new(store.clone())
    });
    let registry = tree.supervise("registry", {
        let (store, liveness) = (store.clone(), cfg.liveness);
        move || registry::NodeRegistry::new(store.clone(), liveness)
    });
    let reconciler = tree.supervise("reconciler", {
        let (store, ledger, registry) = (store.clone(), ledger.clone(), registry.clone());
        let settings = reconciler::Settings {
            deadlines: cfg.deadlines,
            shared_images: cfg.shared_images,
            interval: Duration::from_secs(2),
        };
        let (sd, leadership) = (shutdown.clone(), leadership.clone());
        move || {
            reconciler::Reconciler::new(
                store.clone(),
                ledger.clone(),
                registry.clone(),
                settings,
                &sd,
                leadership.clone(),
            )
        }
    });
    tree.hook("deployment", {
        let reconciler = reconciler.clone();
        move || reconciler.do_send(reconciler::InjectPanicChild)
    });
    tree.supervise("failover", {
        let (store, ledger) = (store.clone(), ledger.clone());
        let (registry, reconciler) = (registry.clone(), reconciler.clone());
        let leadership = leadership.clone();
        move || {
            failover::Failover::new(
                store.clone(),
                ledger.clone(),
                registry.clone(),
                reconciler.clone(),
                leadership.clone(),
            )
        }
    });
    tree.supervise("event_ingest", {
        let (store, ledger, reconciler) = (store.clone(), ledger.clone(), reconciler.clone());
        let (sd, leadership) = (shutdown.clone(), leadership.clone());
        move || {
            event_ingest::EventIngest::new(
                store.clone(),
                ledger.clone(),
                reconciler.clone(),
                &sd,
                leadership.clone(),
            )
        }
    });
    let logs = logs::Logs::new(store.clone(), shutdown.clone());
    let exec = exec::Execs::new(store.clone(), registry.clone(), shutdown.clone());
    let changes = changes::Changes::new(store.clone(), shutdown.clone());
    let api = tree.supervise("api", {
        let store = store.clone();
        let (base_domain, ingress_http) = (cfg.base_domain, cfg.ingress_http);
        let reserved_domains: Vec<String> = std::iter::once(base_domain.clone())
            .chain(cfg.api_host)
            .map(|d| d.to_ascii_lowercase())
            .collect();
        let secret_key = cfg.secret_key;
        let allow_local_repos = cfg.allow_local_repos;
        let pack_images = cfg.pack_images;
        let (deadlines, shared_images) = (cfg.deadlines, cfg.shared_images);
        // Outlives a restart of the Api actor (a hint only: a wrong one costs a read).
        let domain_guesses = api::DomainGuesses::default();
        move || api::Api {
            domain_guesses: domain_guesses.clone(),
            deadlines,
            shared_images,
            allow_local_repos,
            pack_images: pack_images.clone(),
            store: store.clone(),
            base_domain: base_domain.clone(),
            reserved_domains: reserved_domains.clone(),
            ingress_http,
            secret_key: secret_key.clone(),
            ledger: ledger.clone(),
            registry: registry.clone(),
            reconciler: reconciler.clone(),
        }
    });
    tree.start();
    Ok(Coordinator {
        api,
        logs: Arc::new(logs),
        exec: Arc::new(exec),
        changes,
    })
}
