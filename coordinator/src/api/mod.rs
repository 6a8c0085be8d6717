//! `Api`: the coordinator's face to web/ — one message per API operation, one file per resource.
//!
//! Reads run concurrently; changes to apps run one at a time (`AtomicResponse`) so that two
//! creates of one name or two patches of one app cannot interleave. Deployment records are
//! changed only through the `Ledger`.
//! - [`apps`]: create, list, show, patch, delete;
//! - [`env`]: an app's variables — list, set, unset (secret values sealed, never shown);
//! - [`deployments`]: create (the newest wins), list, show, cancel;
//! - [`releases`]: list, roll back;
//! - [`lifecycle`]: restart, stop, start (no build);
//! - [`replicas`]: list an app's running replicas (serving and standby);
//! - [`exec`]: run a command in one of them;
//! - [`webhooks`]: a verified GitHub push;
//! - [`cluster`]: health, nodes and metrics;
//! - [`analyze`]: what a repository's build pack would build.

mod analyze;
mod apps;
mod cluster;
mod deployments;
mod env;
mod exec;
mod lifecycle;
mod releases;
mod replicas;
mod tokens;
mod webhooks;

use actix::prelude::*;
use berth_bus::Live;
use berth_protocol::secret::SecretKey;
use berth_protocol::App;

pub use analyze::Analyze;
pub use apps::{AppViews, CreateApp, DeleteApp, GetApp, ListApps, PatchApp};
pub use cluster::{
    ClusterMetrics, CordonNode, Drain, DrainNode, GetAppMetrics, Health, ListNodes, RedisStatus,
};
pub use deployments::{
    Cancel, CreateDeployment, DeployUpload, DomainGuesses, GetDeployment, ListDeployments,
};
pub use env::{DeleteEnv, ListEnv, PutEnv};
pub use exec::StartExec;
pub use lifecycle::{Restart, StartApp, StopApp};
pub use releases::{ListReleases, Rollback};
pub use replicas::ListReplicas;
pub use tokens::{
    token_hash, AuthFailed, AuthOutcome, Authenticate, CreateApiToken, ListAudit, ListTokens,
    RecordAudit, RevokeToken, TouchToken, AUTH_FAILURES_ALLOWED, AUTH_FAILURE_WINDOW_S,
    TOKEN_PREFIX,
};
pub use webhooks::{AppWebhookSecret, GithubPush, SignatureBlocked, SignatureFailed};

use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::reconciler::Reconciler;
use crate::registry::NodeRegistry;
use crate::store::Store;

/// Built by [`crate::start`] with a struct literal: its fields are the crate's own.
pub struct Api {
    pub(crate) store: Store,
    pub(crate) base_domain: String,
    /// Domains no app may take besides `localhost` and IP addresses: the bare base domain and
    /// the API's own host (`validate::normalize_domain`).
    pub(crate) reserved_domains: Vec<String>,
    /// The ingress port of apps' URLs while no node reports one.
    pub(crate) ingress_http: u16,
    /// Seals git credentials before they are stored.
    pub(crate) secret_key: SecretKey,
    /// Whether apps may deploy from repositories on this machine (`allow_local_repos`).
    pub(crate) allow_local_repos: bool,
    /// The base images of generated Dockerfiles (`[packs]`).
    pub(crate) pack_images: berth_packs::Images,
    pub(crate) ledger: Live<Ledger>,
    pub(crate) registry: Live<NodeRegistry>,
    pub(crate) reconciler: Live<Reconciler>,
    /// A new deployment is placed as it is created, as its actor would place it
    /// (`deployment::place_new`): with the actors' deadlines and image sharing.
    pub(crate) deadlines: crate::deployment::Deadlines,
    pub(crate) shared_images: bool,
    /// Each app's first domain as a deploy last read it: the route a new deployment's reads
    /// fetch with the app's record ([`DomainGuesses`]).
    pub(crate) domain_guesses: deployments::DomainGuesses,
}

impl Actor for Api {
    type Context = Context<Self>;
}

berth_bus::injectable!(Api);

async fn load_app(store: &Store, name: &str) -> Result<App> {
    store
        .get_app(name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("app {name:?} not found")))
}
