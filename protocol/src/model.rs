//! Records stored in Redis and returned by the HTTP API: apps, deployments, nodes, routes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a node decides that a freshly started container is ready for traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct HealthCheck {
    /// HTTP path requested on the container port; any 2xx or 3xx answer is healthy.
    pub path: String,
    /// Pause between two probes once the container accepts connections. Until then the node
    /// probes every few milliseconds, so a fast app is switched to as soon as it answers.
    pub interval_ms: u64,
    /// Timeout of one probe request.
    pub timeout_ms: u64,
    /// How many answered-but-unhealthy probes (bad status, timeout) fail the deployment.
    pub retries: u32,
    /// Overall deadline from container start to healthy.
    pub deadline_s: u64,
    /// Container port probed; `None`: the app's port.
    pub port: Option<u16>,
    /// Consecutive healthy answers needed.
    pub healthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/".into(),
            interval_ms: 250,
            timeout_ms: 2_000,
            retries: 3,
            deadline_s: 60,
            port: None,
            healthy_threshold: 1,
        }
    }
}

/// Environment variables of an app: given to `docker build` as build args, or to the container.
/// `runtime` and `build` hold the plain (non-secret) values; a secret variable is only named
/// here, with its scope (`secret`): its value is sealed under `berth:app:<name>:env_secrets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct EnvVars {
    pub runtime: BTreeMap<String, String>,
    pub build: BTreeMap<String, String>,
    /// The app's secret variables and their scope; never their values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secret: BTreeMap<String, EnvScope>,
}

impl EnvVars {
    /// The names of the secret variables the build gets.
    pub fn secret_build(&self) -> impl Iterator<Item = &String> {
        self.secret
            .iter()
            .filter(|(_, s)| s.build())
            .map(|(k, _)| k)
    }

    /// The names of the secret variables the container gets.
    pub fn secret_runtime(&self) -> impl Iterator<Item = &String> {
        self.secret
            .iter()
            .filter(|(_, s)| s.runtime())
            .map(|(k, _)| k)
    }

    /// Whether `key` is defined at all (plain in either scope, or secret).
    pub fn has(&self, key: &str) -> bool {
        self.runtime.contains_key(key)
            || self.build.contains_key(key)
            || self.secret.contains_key(key)
    }

    /// Drops every definition of `key`; answers whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let r = self.runtime.remove(key).is_some();
        let b = self.build.remove(key).is_some();
        let s = self.secret.remove(key).is_some();
        r || b || s
    }
}

/// Where a variable goes: the build (`docker build` build args), the container, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EnvScope {
    #[default]
    Runtime,
    Build,
    Both,
}

impl EnvScope {
    pub fn build(self) -> bool {
        matches!(self, EnvScope::Build | EnvScope::Both)
    }

    pub fn runtime(self) -> bool {
        matches!(self, EnvScope::Runtime | EnvScope::Both)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EnvScope::Runtime => "runtime",
            EnvScope::Build => "build",
            EnvScope::Both => "both",
        }
    }

    /// Parses `build`, `runtime` or `both`, saying what is accepted otherwise.
    pub fn parse(s: &str) -> Result<EnvScope, String> {
        match s {
            "runtime" => Ok(EnvScope::Runtime),
            "build" => Ok(EnvScope::Build),
            "both" => Ok(EnvScope::Both),
            _ => Err(format!("scope {s:?} is not one of build, runtime, both")),
        }
    }
}

/// The secret runtime variables of a deployment: their names, and the app's secret values
/// sealed bound to the app ([`crate::secret::seal_env`]) as they were when the deployment was
/// placed. Kept in the deployment record and its release, so a rollback, a restart of a release
/// or a failover runs with them; only a node (or the log shipper, to mask them) opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SealedEnv {
    pub names: Vec<String>,
    pub sealed: crate::secret::Sealed,
}

/// An application: where its source is, how to build it, how to run and route it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct App {
    pub name: String,
    /// Any URL or path `git` accepts (https, ssh, `file://`, a local path).
    pub repo: String,
    pub branch: String,
    /// Path of the Dockerfile, relative to `context` (the `dockerfile` build pack).
    pub dockerfile: String,
    /// Build context directory, relative to the repository root.
    pub context: String,
    /// The port the app listens on inside its container.
    pub port: u16,
    pub domains: Vec<String>,
    #[serde(default)]
    pub env: EnvVars,
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Whether a signed push to `branch` deploys the app.
    #[serde(default = "yes")]
    pub auto_deploy: bool,
    /// The kind of git credential the app has (`https_token`, `ssh_key`), if any. The credential
    /// itself is stored sealed under its own key and never returned.
    #[serde(default)]
    pub git_credential: Option<String>,
    /// Whether the app has its own GitHub webhook secret (kept sealed beside the record, never
    /// shown): its pushes are then taken only at its own endpoint, signed with it.
    #[serde(default)]
    pub webhook_secret: bool,
    /// Seconds the previous release keeps running after traffic moved, for requests in flight.
    #[serde(default = "ten")]
    pub drain_s: u64,
    /// How many releases (succeeded deployments) keep their image for rollback.
    #[serde(default = "ten_u32")]
    pub keep_releases: u32,
    /// Which nodes may run the app, and how its replicas are spread over them.
    #[serde(default)]
    pub placement: Placement,
    /// How many replicas serve the app, spread over the nodes by `placement`.
    #[serde(default = "one")]
    pub replicas: u32,
    /// During a deploy, how many new replicas start at once (each health-gated before the
    /// next ones).
    #[serde(default = "one")]
    pub max_surge: u32,
    /// Seconds the previous release's replicas stay running, out of the route, after a deploy
    /// or a rollback: rolling back to it within that time is only a route change. 0: none.
    #[serde(default)]
    pub standby_s: u64,
    /// Taken out of service by `berth stop`: no route, its containers stopped (kept with its
    /// releases); no deployment runs until `berth start`.
    #[serde(default)]
    pub stopped: bool,
    /// What each of its containers may use (memory, CPU, processes) and whether its root file
    /// system is read-only; what it leaves unset, the node's defaults give.
    #[serde(default)]
    pub limits: Limits,
    /// How the image is made: the app's Dockerfile, or one Berth generates from the source.
    #[serde(default)]
    pub build_pack: BuildPack,
    /// The directory the `static` pack serves, relative to `context`; `None`: the one the
    /// analysis finds (`.`, `public`, `dist` or `build`, whichever holds `index.html`).
    #[serde(default)]
    pub static_dir: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// How an app's image is made from its source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BuildPack {
    /// The app's own Dockerfile (`dockerfile`, relative to `context`).
    #[default]
    Dockerfile,
    /// Berth reads the source (see the `berth-packs` crate) and generates a Dockerfile for what
    /// it finds: a static site, Node, Python, Go or Rust.
    Auto,
    /// A directory of files served by busybox `httpd` (`static_dir`).
    Static,
}

impl BuildPack {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildPack::Dockerfile => "dockerfile",
            BuildPack::Auto => "auto",
            BuildPack::Static => "static",
        }
    }
}

impl std::fmt::Display for BuildPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BuildPack {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dockerfile" => Ok(BuildPack::Dockerfile),
            "auto" => Ok(BuildPack::Auto),
            "static" => Ok(BuildPack::Static),
            _ => Err(format!(
                "build pack {s:?} is not one of dockerfile (the app's own Dockerfile), auto (Berth \
                 reads the source and generates one) or static (serve a directory)"
            )),
        }
    }
}

impl App {
    /// Whether the coordinator drives the app's deployments replica by replica (a
    /// [`Rollout`]): more than one replica, or a standby release to keep. One replica without
    /// standby is deployed by its node alone, which switches its route itself.
    pub fn rolls_out(&self) -> bool {
        self.replicas > 1 || self.standby_s > 0
    }
}

/// The limits of an app's containers. `None`: the node's default (`node.app_memory_mb`,
/// `node.app_millicpus`, `node.app_pids`), so an app that sets nothing is still limited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory a container may use, in MiB (no swap beyond it): above it the kernel kills the app.
    pub memory_mb: Option<u64>,
    /// CPU time, in thousandths of a CPU (500: half of one CPU, 2000: two CPUs).
    pub millicpus: Option<u32>,
    /// Processes and threads a container may run at once.
    pub pids: Option<u32>,
    /// The root file system is read-only (`/tmp` is a small writable tmpfs).
    pub read_only: bool,
}

/// Where an app may run. The scheduler filters nodes by it, then ranks what is left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Placement {
    /// Conditions on node labels, all of which must hold: `key=value` or `key!=value` (a node
    /// without the label fails `=` and passes `!=`).
    pub constraints: Vec<String>,
    pub strategy: Strategy,
    /// Memory reserved for each replica, in MiB: a node must have that much available. 0: none.
    pub memory_mb: u64,
}

/// One placement constraint: a node label must (or must not) have a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub key: String,
    pub value: String,
    /// `key!=value`: a node passes unless its label has that value.
    pub negated: bool,
}

impl Constraint {
    /// Parses `key=value` or `key!=value`, saying what is wrong otherwise.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (key, value, negated) = match s.split_once("!=") {
            Some((k, v)) => (k, v, true),
            None => match s.split_once('=') {
                Some((k, v)) => (k, v, false),
                None => return Err(format!("constraint {s:?} must be key=value or key!=value")),
            },
        };
        let (key, value) = (key.trim(), value.trim());
        crate::validate::label_key(key).map_err(|e| format!("constraint {s:?}: {e}"))?;
        crate::validate::label_value(value).map_err(|e| format!("constraint {s:?}: {e}"))?;
        Ok(Constraint {
            key: key.into(),
            value: value.into(),
            negated,
        })
    }

    /// Whether a node with `labels` passes.
    pub fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        let equal = labels.get(&self.key) == Some(&self.value);
        equal != self.negated
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.negated { "!=" } else { "=" };
        write!(f, "{}{op}{}", self.key, self.value)
    }
}

/// How the scheduler ranks the nodes that passed the filters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The node with the fewest replicas of the app, then the least busy: replicas on as many
    /// hosts as there are, so losing one loses the fewest.
    #[default]
    Spread,
    /// The node with the least memory available that still fits: fills nodes one by one.
    Binpack,
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

fn ten() -> u64 {
    10
}

fn ten_u32() -> u32 {
    10
}

/// What a deployment runs with besides its image: kept with every release, so a rollback runs
/// the old image with the settings it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuntimeSpec {
    /// The plain runtime variables; secret ones are in `secrets`, sealed.
    pub env: BTreeMap<String, String>,
    pub port: u16,
    pub health_check: HealthCheck,
    /// The secret runtime variables, sealed; never shown in plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SealedEnv>,
}

/// Whether a deployment builds a commit or reuses an earlier release's image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeploymentKind {
    #[default]
    Deploy,
    Rollback,
    /// The coordinator runs the serving release again on another node because its node went
    /// down (no build, like a rollback).
    Failover,
    /// The app's replica count changed: replicas of the serving release are added or removed,
    /// without a build.
    Scale,
    /// `berth restart`: the serving release's image again, in new containers with the app's
    /// current runtime settings (environment, port, health check), health-gated like a deploy.
    Restart,
    /// `berth start`: a stopped app's serving release back in service (its stopped containers
    /// started again where they are kept, like a rollback).
    Start,
}

impl DeploymentKind {
    /// Its name as serde writes it (and the API and the CLI spell it).
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentKind::Deploy => "deploy",
            DeploymentKind::Rollback => "rollback",
            DeploymentKind::Failover => "failover",
            DeploymentKind::Scale => "scale",
            DeploymentKind::Restart => "restart",
            DeploymentKind::Start => "start",
        }
    }
}

/// A release: an image kept for rollback, listed once however often it served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Release {
    /// The deployment that first released the image (its commit and settings are the release's).
    pub deployment: String,
    pub kind: DeploymentKind,
    pub image: String,
    pub commit: Option<String>,
    pub commit_message: Option<String>,
    /// When the image last started serving (its first deployment or a rollback to it).
    pub released_at: u64,
    /// The release serving now.
    pub current: bool,
    pub runtime: Option<RuntimeSpec>,
    /// Every deployment that served this image, newest first; a rollback may name any of them.
    #[serde(default)]
    pub deployments: Vec<String>,
}

/// Where a deployment is in its life. Every deployment ends in one of the terminal states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    Queued,
    Building,
    Deploying,
    Succeeded,
    Failed,
    Cancelled,
}

impl DeploymentStatus {
    pub const ALL: [DeploymentStatus; 6] = [
        DeploymentStatus::Queued,
        DeploymentStatus::Building,
        DeploymentStatus::Deploying,
        DeploymentStatus::Succeeded,
        DeploymentStatus::Failed,
        DeploymentStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Succeeded | DeploymentStatus::Failed | DeploymentStatus::Cancelled
        )
    }

    /// Position along `queued → building → deploying → terminal`; a status change that does
    /// not move forward is stale (a redelivered or reordered event) and is dropped.
    pub fn rank(self) -> u8 {
        match self {
            DeploymentStatus::Queued => 0,
            DeploymentStatus::Building => 1,
            DeploymentStatus::Deploying => 2,
            _ => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Queued => "queued",
            DeploymentStatus::Building => "building",
            DeploymentStatus::Deploying => "deploying",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt to build (or reuse) an image of an app and put it into service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deployment {
    pub id: String,
    pub app: String,
    pub status: DeploymentStatus,
    #[serde(default)]
    pub kind: DeploymentKind,
    /// For a rollback: the deployment whose release it brings back.
    #[serde(default)]
    pub rollback_of: Option<String>,
    /// The settings it runs with (known once it is dispatched; a rollback's from its release).
    #[serde(default)]
    pub runtime: Option<RuntimeSpec>,
    /// What was asked for: a branch, tag or commit. `None` means the app's branch.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// The commit that was checked out (known once the node fetched it).
    pub commit: Option<String>,
    /// The commit's subject line (from a push payload, or from git).
    #[serde(default)]
    pub commit_message: Option<String>,
    /// `Name <email>` of the commit's author.
    #[serde(default)]
    pub commit_author: Option<String>,
    pub image: Option<String>,
    pub node: Option<String>,
    pub container: Option<String>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub error: Option<String>,
    /// Its attempt, from 0: how many times it was run again because an infrastructure fault
    /// interrupted it (its node went down, restarted, or reported a fault of its Docker engine
    /// or of Redis) — on another node, or the same one. A job of an earlier attempt is stale:
    /// its node's events are dropped, its switch refused.
    #[serde(default)]
    pub attempt: u32,
    /// The current attempt was interrupted (as the node reported it); the coordinator runs the
    /// next one, or fails the deployment past the last (`None` again once it moved on).
    #[serde(default)]
    pub interrupted: Option<Interruption>,
    /// For an app with several replicas (or a standby): how the coordinator rolls the release
    /// over them. `None`: the deployment runs on one node, which switches the route itself.
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// The Dockerfile the build used (the app's, or the one its build pack generated), at most
    /// [`crate::messages::DOCKERFILE_MAX`] bytes. Only `GET /api/v1/deployments/{id}` returns it:
    /// listings leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Built from an uploaded directory (`berth deploy --dir`) instead of a git checkout.
    #[serde(default)]
    pub upload: Option<Upload>,
    /// Built with no cached layer of earlier builds.
    #[serde(default)]
    pub no_cache: bool,
}

/// An uploaded build source: a tar archive of a directory, kept in Redis under
/// [`crate::keys::upload`] while deployments may build it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Upload {
    /// Hex SHA-256 of the archive's bytes: what the node checks before it unpacks it.
    pub sha256: String,
    /// The archive's size in bytes.
    pub size: u64,
}

/// The plan and progress of a deployment over an app's replicas, kept in its record so a
/// restarted coordinator carries on (or reverts) from where the last one was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Rollout {
    /// Whether the plan is made (the fields below); a rollout queued by a drain is planned
    /// when it starts, once the deployments before it ended.
    pub planned: bool,
    /// A drain: the replicas on this node are the ones replaced.
    pub drain_node: Option<String>,
    /// Replicas serving the app once it succeeds.
    pub target: u32,
    /// New replicas starting at once.
    pub surge: u32,
    /// The route's upstreams when the rollout began: what a failure restores.
    pub previous: Vec<Upstream>,
    /// Upstreams the rollout takes out of the route: one for each new replica switched in, the
    /// rest at the end.
    pub replace: Vec<Upstream>,
    /// One per new replica.
    pub slots: Vec<Slot>,
    /// Whether the route was changed yet (the deployment's fate is then `switch`).
    pub switched: bool,
}

/// One new replica of a [`Rollout`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Slot {
    pub slot: u32,
    /// The node it was placed on.
    pub node: Option<String>,
    pub state: SlotState,
    /// Once it is healthy: where it serves.
    pub upstream: Option<Upstream>,
    pub error: Option<String>,
    /// How many times it was placed again because an infrastructure fault interrupted it (its
    /// node went down, restarted, or reported a fault of its engine or of Redis) before it
    /// served.
    pub attempt: u32,
    /// The current attempt was interrupted, as its node reported: the rollout places it again.
    pub interrupted: Option<Interruption>,
    /// The node its previous attempt was interrupted on: the next goes to another node when one
    /// can take it.
    pub retry_from: Option<String>,
}

/// An attempt of a deployment (or of a replica of a rollout) that an infrastructure fault
/// interrupted before it switched traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interruption {
    /// The attempt that was interrupted.
    pub attempt: u32,
    /// What interrupted it, for the deployment's log.
    pub cause: String,
    /// When it was reported, epoch ms.
    #[serde(default)]
    pub at: u64,
}

/// Where a replica of a rollout is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// Not placed yet.
    #[default]
    Pending,
    /// Its job is queued on its node: pulling or building, starting, probing.
    Starting,
    /// Healthy, not in the route yet.
    Ready,
    /// In the route.
    Serving,
    Failed,
}

/// What a node reports of one replica of a rollout: healthy (with where it serves) or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub slot: u32,
    pub upstream: Option<Upstream>,
    pub error: Option<String>,
}

/// Liveness of a node as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Heartbeating on time.
    Ready,
    /// A heartbeat is late: nothing new is placed on it, nothing is moved off it yet.
    Suspect,
    /// No heartbeat for `node.down_after_s`.
    Down,
}

/// A node's heartbeat record, rewritten every few seconds by the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    pub name: String,
    /// The address other hosts (and this node's Caddy) reach its published container ports on
    /// (`node.advertise`).
    pub address: String,
    pub ingress_http: u16,
    /// The port its Caddy serves apps over HTTPS on (`node.https` on); `None`: plain HTTP only.
    #[serde(default)]
    pub ingress_https: Option<u16>,
    pub version: String,
    /// The node's labels (`node.labels`), which app placement constraints test.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// CPUs of the host.
    #[serde(default)]
    pub cpus: u32,
    /// How many builds the node runs at once before the scheduler prefers other nodes.
    #[serde(default)]
    pub build_slots: u32,
    /// The Docker engine's version, as the engine reports it.
    #[serde(default)]
    pub engine: Option<String>,
    pub started_at: u64,
    pub last_heartbeat: u64,
    /// Deployment jobs this node is working on right now.
    #[serde(default)]
    pub running_jobs: u32,
    /// The host's latest figures (from the node's `Stats` actor); `None` until its first sample.
    #[serde(default)]
    pub host: Option<HostStats>,
}

/// A node host's figures at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostStats {
    /// When they were sampled (ms since the epoch).
    pub ts: u64,
    /// Busy share of all CPUs since the previous sample (from `/proc/stat`), 0–100.
    pub cpu_pct: f64,
    pub mem_total_bytes: u64,
    /// `MemAvailable` of `/proc/meminfo`.
    pub mem_available_bytes: u64,
    /// The file system holding the node's `data_dir`.
    pub disk_total_bytes: u64,
    pub disk_available_bytes: u64,
    /// Running app containers of this node.
    pub containers: u32,
}

/// One upstream of a route: a published container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Upstream {
    /// `host:port` Caddy dials.
    pub dial: String,
    pub node: String,
    pub container: String,
    pub deployment: String,
}

/// Desired state of one domain's route: every node's Caddy should carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub domain: String,
    pub app: String,
    pub upstreams: Vec<Upstream>,
    pub updated_at: u64,
    /// The app's `drain_s` when the route was written: how long a replica taken out of the
    /// route keeps running for requests in flight before its node stops it.
    #[serde(default)]
    pub drain_s: Option<u64>,
    /// Replicas out of the route that keep running until `standby_until` (the previous
    /// release, for an instant rollback, or the replicas a rollout replaced while it runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<Upstream>,
    /// Epoch ms until which `standby` is kept; after it, its replicas drain and stop.
    #[serde(default)]
    pub standby_until: u64,
}

impl Route {
    /// The standby replicas still kept at `now`.
    pub fn standby_at(&self, now: u64) -> &[Upstream] {
        if now < self.standby_until {
            &self.standby
        } else {
            &[]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_kind_s_name_is_serde_s() {
        use DeploymentKind::*;
        let all = [Deploy, Rollback, Failover, Scale, Restart, Start];
        // A kind added to the enum stops this from compiling until it is listed above.
        for k in all {
            match k {
                Deploy | Rollback | Failover | Scale | Restart | Start => {}
            }
        }
        for k in all {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str(), "{k:?}");
        }
    }

    #[test]
    fn constraints_parse_and_hold() {
        let labels: BTreeMap<String, String> = [("zone".to_string(), "eu".to_string())].into();
        for (text, holds) in [
            ("zone=eu", true),
            ("zone=us", false),
            ("zone!=us", true),
            ("zone!=eu", false),
            ("disk=ssd", false),
            ("disk!=ssd", true),
            (" zone = eu ", true),
        ] {
            let c = Constraint::parse(text).unwrap();
            assert_eq!(c.holds(&labels), holds, "{text}");
        }
        assert_eq!(
            Constraint::parse("zone!=eu").unwrap().to_string(),
            "zone!=eu"
        );
        for bad in ["zone", "=eu", "Zone=eu", "zone=e u", ""] {
            let e = Constraint::parse(bad).unwrap_err();
            assert!(e.contains("constraint"), "{bad}: {e}");
        }
    }
}
