//! Request and response bodies of the HTTP API, declared once for the server (web/) and the
//! client (ops/). Validation of what a person sends lives in [`crate::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{
    App, BuildPack, Deployment, DeploymentKind, DeploymentStatus, EnvScope, EnvVars, HealthCheck,
    Limits, Placement,
};
use crate::secret::GitCredential;

/// `POST /api/v1/apps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// A DNS label.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    )]
    pub name: String,
    /// Empty (or left out): the app has no repository and deploys only uploaded directories
    /// (`POST /api/v1/apps/{name}/uploads`, `berth deploy <app> --dir`).
    #[serde(default)]
    pub repo: String,
    pub branch: Option<String>,
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: u32,
    /// At least one (left out on create: `<name>.<base_domain>`).
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub domains: Option<Vec<String>>,
    pub env: Option<EnvVars>,
    pub health_check: Option<HealthCheckPatch>,
    pub auto_deploy: Option<bool>,
    /// How nodes authenticate to a private repository; stored sealed, never returned.
    pub git_credential: Option<GitCredential>,
    /// The app's own GitHub webhook secret: its pushes are then taken only at
    /// `/api/v1/apps/{name}/webhooks/github`, signed with it. Stored sealed, never returned.
    pub webhook_secret: Option<String>,
    pub drain_s: Option<u64>,
    pub keep_releases: Option<u32>,
    /// Replaces the placement whole (missing fields take their defaults).
    pub placement: Option<Placement>,
    pub replicas: Option<u32>,
    pub max_surge: Option<u32>,
    pub standby_s: Option<u64>,
    /// Replaces the limits whole (missing fields: the node's defaults).
    pub limits: Option<Limits>,
    /// `dockerfile` (default), `auto` or `static`.
    pub build_pack: Option<BuildPack>,
    /// The directory the `static` pack serves, relative to `context` (default: the one the
    /// analysis finds).
    pub static_dir: Option<String>,
}

/// `PATCH /api/v1/apps/{name}`: every field optional; what is given replaces what was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PatchApp {
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: Option<u32>,
    /// At least one (left out on create: `<name>.<base_domain>`).
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub domains: Option<Vec<String>>,
    pub env: Option<EnvPatch>,
    pub health_check: Option<HealthCheckPatch>,
    pub auto_deploy: Option<bool>,
    /// Replaces the git credential.
    pub git_credential: Option<GitCredential>,
    /// `true` removes the git credential.
    pub remove_git_credential: Option<bool>,
    /// Replaces the app's own webhook secret.
    pub webhook_secret: Option<String>,
    /// `true` removes the app's own webhook secret (its pushes go to the shared endpoint again).
    pub remove_webhook_secret: Option<bool>,
    pub drain_s: Option<u64>,
    pub keep_releases: Option<u32>,
    /// Replaces the placement whole (missing fields take their defaults).
    pub placement: Option<Placement>,
    pub replicas: Option<u32>,
    pub max_surge: Option<u32>,
    pub standby_s: Option<u64>,
    /// Replaces the limits whole (missing fields: the node's defaults).
    pub limits: Option<Limits>,
    /// `dockerfile` (default), `auto` or `static`.
    pub build_pack: Option<BuildPack>,
    /// The directory the `static` pack serves, relative to `context` (default: the one the
    /// analysis finds).
    pub static_dir: Option<String>,
}

/// Replaces the runtime and/or build variables (each map whole, when given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvPatch {
    pub runtime: Option<BTreeMap<String, String>>,
    pub build: Option<BTreeMap<String, String>>,
}

/// `POST /api/v1/analyze`: what Berth would build from a repository — give `repo` (and
/// optionally `ref`, a branch or tag; default: the repository's default branch), or `app` (its
/// repository, branch, context and build pack, with its git credential).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Analyze {
    pub repo: Option<String>,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub app: Option<String>,
    /// The directory to analyse, relative to the repository root (default `.`, or the app's).
    pub context: Option<String>,
    /// `auto` (default) or `static` (what the `dockerfile` pack would use is the repository's
    /// own file: nothing to analyse).
    pub build_pack: Option<BuildPack>,
    pub static_dir: Option<String>,
}

/// What the analysis of a source tree found: the answer of `POST /api/v1/analyze` and of
/// `berth analyze DIR`, and what an `auto` or `static` build logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Analysis {
    /// What was detected: `static`, `node`, `python`, `go` or `rust`.
    pub kind: String,
    /// Why, one sentence per file that decided it ("found package.json with a start script: …").
    pub reasons: Vec<String>,
    /// The port the app listens on in its container (the generated image sets `PORT` to it).
    pub port: u16,
    /// The command the image starts.
    pub start: String,
    /// The Dockerfile Berth generates.
    pub dockerfile: String,
}

/// One variable of `GET /api/v1/apps/{name}/env`. A plain variable whose build and runtime
/// values differ (possible through the `env: {runtime, build}` form) is listed once per scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvVar {
    pub key: String,
    pub scope: EnvScope,
    pub secret: bool,
    /// The value; never given for a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl EnvVar {
    /// Every variable of `env`, by name (a secret shows no value).
    pub fn list(env: &EnvVars) -> Vec<EnvVar> {
        let mut out = Vec::new();
        let plain = |key: &String, scope, value: &String| EnvVar {
            key: key.clone(),
            scope,
            secret: false,
            value: Some(value.clone()),
        };
        for (k, v) in &env.runtime {
            match env.build.get(k) {
                Some(b) if b == v => out.push(plain(k, EnvScope::Both, v)),
                _ => out.push(plain(k, EnvScope::Runtime, v)),
            }
        }
        for (k, v) in &env.build {
            if env.runtime.get(k) != Some(v) {
                out.push(plain(k, EnvScope::Build, v));
            }
        }
        for (k, scope) in &env.secret {
            out.push(EnvVar {
                key: k.clone(),
                scope: *scope,
                secret: true,
                value: None,
            });
        }
        out.sort_by(|a, b| (&a.key, a.scope.as_str()).cmp(&(&b.key, b.scope.as_str())));
        out
    }
}

/// `PUT /api/v1/apps/{name}/env/{KEY}`: sets the variable, replacing whatever `KEY` was (plain
/// in either scope, or secret).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PutEnv {
    pub value: String,
    /// Default `runtime`.
    #[serde(default)]
    pub scope: Option<EnvScope>,
    /// Default `false`. A secret is stored sealed and never shown again.
    #[serde(default)]
    pub secret: Option<bool>,
    /// `true` (or `?deploy=true`): queue a deployment of the app at once.
    #[serde(default)]
    pub deploy: Option<bool>,
}

/// `?deploy=true` on `PUT` and `DELETE /api/v1/apps/{name}/env/{KEY}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvQuery {
    #[serde(default)]
    pub deploy: Option<bool>,
}

/// The answer to a change of an app's variables: the variables now, what happens next, and
/// the deployment queued when one was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvChange {
    pub message: String,
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
}

/// A partial health check; missing fields keep their current (or default) values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthCheckPatch {
    pub path: Option<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub deadline_s: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
    pub port: Option<u16>,
    pub healthy_threshold: Option<u32>,
}

impl HealthCheckPatch {
    pub fn apply(&self, base: &HealthCheck) -> HealthCheck {
        HealthCheck {
            path: self.path.clone().unwrap_or_else(|| base.path.clone()),
            interval_ms: self.interval_ms.unwrap_or(base.interval_ms),
            timeout_ms: self.timeout_ms.unwrap_or(base.timeout_ms),
            retries: self.retries.unwrap_or(base.retries),
            deadline_s: self.deadline_s.unwrap_or(base.deadline_s),
            port: self.port.or(base.port),
            healthy_threshold: self.healthy_threshold.unwrap_or(base.healthy_threshold),
        }
    }
}

/// `POST /api/v1/apps/{name}/deployments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// Build every step again, using no cached layer of earlier builds.
    #[serde(default)]
    pub no_cache: bool,
}

/// The answer to a webhook delivery: what was queued, or why nothing was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookOutcome {
    pub deployments: Vec<String>,
    pub message: String,
}

/// `POST /api/v1/apps/{name}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The deployment whose release to bring back; default: the release before the current one.
    pub to: Option<String>,
}

/// The answer to `POST /api/v1/apps/{name}/start`: the app, and the deployment that brings its
/// serving release back (`None` when it has no release yet: nothing to start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartOutcome {
    pub app: crate::model::App,
    pub deployment: Option<crate::model::Deployment>,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /api/v1/redis`: the Redis the coordinator writes to, and its replicas, as that Redis's
/// `INFO replication` tells them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedisView {
    /// Where the coordinator reaches it: `host:port` or a socket path (never a password).
    pub addr: String,
    /// Its role, as it says: `master` (the primary) or `slave` (a replica, which refuses writes).
    pub role: String,
    /// Its replication offset, in bytes.
    #[serde(default)]
    pub offset: u64,
    /// The replicas connected to it (a primary's).
    #[serde(default)]
    pub replicas: Vec<RedisReplica>,
}

/// One replica of [`RedisView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedisReplica {
    /// `ip:port` as the primary sees it.
    pub addr: String,
    /// `online` once in sync; `wait_bgsave`, `send_bulk` while it catches up.
    pub state: String,
    /// Bytes of the primary's stream it has not acknowledged yet.
    #[serde(default)]
    pub behind_bytes: u64,
    /// Seconds since it last acknowledged (replicas acknowledge every second).
    #[serde(default)]
    pub lag_s: u64,
}

/// `GET /api/v1/nodes` items: the heartbeat record plus liveness as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeView {
    #[serde(flatten)]
    pub info: crate::model::NodeInfo,
    pub status: crate::model::NodeStatus,
    /// Whether an operator cordoned it: no new work is placed on it.
    #[serde(default)]
    pub cordoned: bool,
}

/// `GET /api/v1/apps/{name}/replicas` items: one running replica of the app, from its route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplicaView {
    pub node: String,
    pub container: String,
    /// The deployment that started it, and its image (the release).
    pub deployment: String,
    pub image: Option<String>,
    /// `serving` (in the route) or `standby` (out of it, kept running for an instant rollback).
    pub role: String,
    /// `healthy` while its node heartbeats (it passed its check when it was switched in),
    /// else the node's liveness (`suspect`, `down`).
    pub health: String,
    /// The address every node's Caddy dials.
    pub upstream: String,
    /// When its deployment ended (it has served since, or stood by), epoch ms.
    #[serde(default)]
    pub since: Option<u64>,
}

/// The answer of `GET /api/v1/apps`, `GET|PATCH /api/v1/apps/{name}` and `POST /api/v1/apps`:
/// the app's record, and what the coordinator derives from it. The derived fields are read-only
/// (a `PATCH` naming them is refused like any unknown field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppView {
    #[serde(flatten)]
    pub app: App,
    /// Where the app answers: `http://<domain>[:<port>]/` for each domain, the port being the
    /// nodes' ingress port (left out when 80).
    #[serde(default)]
    pub urls: Vec<String>,
    /// What the app is doing, from its newest deployment and its route (see [`app_status`]).
    #[serde(default)]
    pub status: AppStatus,
    /// The deployment whose containers serve the app now (the most of its route's upstreams).
    #[serde(default)]
    pub release: Option<String>,
    /// The app's newest deployment.
    #[serde(default)]
    pub latest: Option<LatestDeployment>,
}

/// An app's newest deployment, in brief.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatestDeployment {
    pub id: String,
    pub kind: DeploymentKind,
    pub status: DeploymentStatus,
    pub created_at: u64,
}

/// What an app is doing, as `berth apps list` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    /// Never deployed.
    #[default]
    NotDeployed,
    /// A deployment (a deploy, rollback, failover or scale) is in flight.
    Deploying,
    /// Its route has replicas to serve it.
    Running,
    /// Nothing serves it and its newest deployment failed.
    Failed,
    /// Nothing serves it although it was deployed (its newest deployment was cancelled, or its
    /// replicas were lost and none replaced them).
    NotServing,
    /// Taken out of service (`berth stop`); `berth start` brings it back.
    Stopped,
    /// A status this client does not know (a newer server's).
    #[serde(other)]
    Unknown,
}

impl AppStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AppStatus::NotDeployed => "not deployed",
            AppStatus::Deploying => "deploying",
            AppStatus::Running => "running",
            AppStatus::Failed => "failed",
            AppStatus::NotServing => "not serving",
            AppStatus::Stopped => "stopped",
            AppStatus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for AppStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An app's status from the status of its newest deployment and whether its route has replicas
/// to serve it: a deployment in flight first, then serving, then why nothing serves.
pub fn app_status(latest: Option<DeploymentStatus>, serving: bool) -> AppStatus {
    match latest {
        Some(s) if !s.is_terminal() => AppStatus::Deploying,
        _ if serving => AppStatus::Running,
        None => AppStatus::NotDeployed,
        Some(DeploymentStatus::Failed) => AppStatus::Failed,
        Some(_) => AppStatus::NotServing,
    }
}

/// The URL of each domain behind an ingress listening on `port`: `http://<domain>/` on 80,
/// else `http://<domain>:<port>/`.
pub fn app_urls(domains: &[String], ingress: Ingress) -> Vec<String> {
    let (scheme, default) = match ingress.https {
        true => ("https", 443),
        false => ("http", 80),
    };
    domains
        .iter()
        .map(|d| match ingress.port {
            p if p == default => format!("{scheme}://{d}/"),
            p => format!("{scheme}://{d}:{p}/"),
        })
        .collect()
}

/// How apps are reached through the nodes' Caddies: over HTTPS or plain HTTP, on which port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ingress {
    pub https: bool,
    pub port: u16,
}

impl Ingress {
    pub fn http(port: u16) -> Ingress {
        Ingress { https: false, port }
    }

    /// What a node's Caddy offers: HTTPS when it has it (plain HTTP then only redirects).
    pub fn of(node: &crate::model::NodeInfo) -> Ingress {
        match node.ingress_https {
            Some(port) => Ingress { https: true, port },
            None => Ingress::http(node.ingress_http),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_listed_by_name_with_no_secret_value() {
        let env = EnvVars {
            runtime: [("A", "1"), ("B", "same"), ("C", "rt")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            build: [("B", "same"), ("C", "bt"), ("D", "4")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            secret: [("S".to_string(), EnvScope::Both)].into(),
        };
        let got: Vec<(String, &str, bool, Option<String>)> = EnvVar::list(&env)
            .into_iter()
            .map(|v| (v.key, v.scope.as_str(), v.secret, v.value))
            .collect();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            got,
            vec![
                ("A".into(), "runtime", false, s("1")),
                ("B".into(), "both", false, s("same")),
                ("C".into(), "build", false, s("bt")),
                ("C".into(), "runtime", false, s("rt")),
                ("D".into(), "build", false, s("4")),
                ("S".into(), "both", true, None),
            ]
        );
        let json = serde_json::to_value(EnvVar::list(&env)).unwrap();
        assert_eq!(
            json[5],
            serde_json::json!({"key": "S", "scope": "both", "secret": true})
        );
    }
    use DeploymentStatus::*;

    #[test]
    fn urls_leave_out_port_80() {
        let ds = ["a.localhost".to_string(), "a.example.com".to_string()];
        assert_eq!(
            app_urls(&ds, Ingress::http(8080)),
            ["http://a.localhost:8080/", "http://a.example.com:8080/"]
        );
        assert_eq!(
            app_urls(&ds[..1], Ingress::http(80)),
            ["http://a.localhost/"]
        );
        assert!(app_urls(&[], Ingress::http(80)).is_empty());
        let https = |port| Ingress { https: true, port };
        assert_eq!(app_urls(&ds[..1], https(443)), ["https://a.localhost/"]);
        assert_eq!(
            app_urls(&ds[..1], https(8443)),
            ["https://a.localhost:8443/"]
        );
    }

    #[test]
    fn status_from_the_newest_deployment_and_the_route() {
        assert_eq!(app_status(None, false), AppStatus::NotDeployed);
        for s in [Queued, Building, Deploying] {
            assert_eq!(app_status(Some(s), true), AppStatus::Deploying);
            assert_eq!(app_status(Some(s), false), AppStatus::Deploying);
        }
        // A failed deploy leaves the previous release serving: still running.
        for s in [Succeeded, Failed, Cancelled] {
            assert_eq!(app_status(Some(s), true), AppStatus::Running);
        }
        assert_eq!(app_status(Some(Failed), false), AppStatus::Failed);
        assert_eq!(app_status(Some(Succeeded), false), AppStatus::NotServing);
        assert_eq!(app_status(Some(Cancelled), false), AppStatus::NotServing);
        // A route without a deployment record (written by hand, or data from before the
        // summary existed) still counts as running.
        assert_eq!(app_status(None, true), AppStatus::Running);
    }

    #[test]
    fn a_status_a_client_does_not_know_reads_as_unknown() {
        let s: AppStatus = serde_json::from_str("\"hibernating\"").unwrap();
        assert_eq!(s, AppStatus::Unknown);
        assert_eq!(
            serde_json::to_string(&AppStatus::NotDeployed).unwrap(),
            "\"not_deployed\""
        );
    }
}

/// `POST /api/v1/apps/{name}/exec`: run a command in a running replica of the app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateExec {
    /// The program and its arguments (no shell: use `["sh", "-c", "..."]` for one).
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub cmd: Vec<String>,
    /// Only a replica on this node.
    pub node: Option<String>,
    /// This replica: its container id or a prefix of it (`berth replicas` shows 12 characters);
    /// a standby replica may be named too.
    pub container: Option<String>,
    /// Seconds the command may run (default [`crate::exec::DEFAULT_TIMEOUT_S`]).
    pub timeout_s: Option<u64>,
}

/// The answer to [`CreateExec`] (202): where the command was queued. Follow its output at
/// `GET /api/v1/exec/{id}` (Server-Sent Events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecStarted {
    pub id: String,
    pub app: String,
    pub node: String,
    pub container: String,
    pub deployment: String,
    pub timeout_s: u64,
}

/// What an API token may do. Each scope includes the ones before it in this order —
/// `metrics` < `read` < `deploy` < `admin` — so a `read` token may also scrape `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `GET /metrics` only (a Prometheus scraper).
    Metrics,
    /// Every `GET`: apps, deployments, logs, releases, nodes, metrics.
    Read,
    /// `read`, and deploy (a commit or an upload), roll back, restart, cancel.
    Deploy,
    /// Everything: apps, variables, nodes, tokens, the audit log.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Metrics => "metrics",
            Scope::Read => "read",
            Scope::Deploy => "deploy",
            Scope::Admin => "admin",
        }
    }

    /// Whether a token of this scope may do what needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub name: String,
    pub scope: Scope,
    /// How long the token is valid: a duration (`30d`, `12h`, `90m`); none: until revoked.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// An API token as listed: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_at: u64,
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// When it last authenticated a request (written at most once a minute).
    #[serde(default)]
    pub last_used_at: Option<u64>,
}

/// The answer to `POST /api/v1/tokens`: the only time the token's value is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// One entry of the audit log (`GET /api/v1/audit`), newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// The stream entry's id.
    pub id: String,
    pub at: u64,
    /// The token's id (`config` for `api.token`).
    pub token_id: String,
    pub token_name: String,
    /// What was done, e.g. `app.create`, `deploy`, `rollback`, `token.revoke`.
    pub action: String,
    /// What it was done to: the app, deployment, node or token named in the path.
    pub target: String,
    pub method: String,
    pub path: String,
    /// The HTTP status it was answered with.
    pub status: u16,
}

/// An event of `GET /api/v1/events` named `deployment`: a deployment that appeared, moved on
/// (`queued` → `building` → `deploying`) or ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentChange {
    pub id: String,
    pub app: String,
    pub status: DeploymentStatus,
    pub kind: DeploymentKind,
}

/// An event of `GET /api/v1/events` named `apps`: the apps changed (one was created, changed or
/// deleted); `version` is the apps' change counter after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppsChange {
    pub version: u64,
}

/// `GET /api/v1/events` without following: where changes stand now — the apps' change counter
/// and the deployments in flight. A client reads this (and what it shows), then follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventsNow {
    pub version: u64,
    pub active: Vec<DeploymentChange>,
}
