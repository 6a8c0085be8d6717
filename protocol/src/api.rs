//! Request and response bodies of the HTTP API, declared once for the server (web/) and the
//! client (ops/). Validation of what a person sends lives in [`crate::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{EnvVars, HealthCheck, Placement};
use crate::secret::GitCredential;

/// `POST /api/v1/apps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub name: String,
    pub repo: String,
    pub branch: Option<String>,
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    pub port: u32,
    pub domains: Option<Vec<String>>,
    pub env: Option<EnvVars>,
    pub health_check: Option<HealthCheckPatch>,
    pub auto_deploy: Option<bool>,
    /// How nodes authenticate to a private repository; stored sealed, never returned.
    pub git_credential: Option<GitCredential>,
    pub drain_s: Option<u64>,
    pub keep_releases: Option<u32>,
    /// Replaces the placement whole (missing fields take their defaults).
    pub placement: Option<Placement>,
    pub replicas: Option<u32>,
    pub max_surge: Option<u32>,
    pub standby_s: Option<u64>,
}

/// `PATCH /api/v1/apps/{name}`: every field optional; what is given replaces what was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchApp {
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    pub port: Option<u32>,
    pub domains: Option<Vec<String>>,
    pub env: Option<EnvPatch>,
    pub health_check: Option<HealthCheckPatch>,
    pub auto_deploy: Option<bool>,
    /// Replaces the git credential.
    pub git_credential: Option<GitCredential>,
    /// `true` removes the git credential.
    pub remove_git_credential: Option<bool>,
    pub drain_s: Option<u64>,
    pub keep_releases: Option<u32>,
    /// Replaces the placement whole (missing fields take their defaults).
    pub placement: Option<Placement>,
    pub replicas: Option<u32>,
    pub max_surge: Option<u32>,
    pub standby_s: Option<u64>,
}

/// Replaces the runtime and/or build variables (each map whole, when given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvPatch {
    pub runtime: Option<BTreeMap<String, String>>,
    pub build: Option<BTreeMap<String, String>>,
}

/// A partial health check; missing fields keep their current (or default) values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckPatch {
    pub path: Option<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub deadline_s: Option<u64>,
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
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
}

/// The answer to a webhook delivery: what was queued, or why nothing was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookOutcome {
    pub deployments: Vec<String>,
    pub message: String,
}

/// `POST /api/v1/apps/{name}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The deployment whose release to bring back; default: the release before the current one.
    pub to: Option<String>,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /api/v1/nodes` items: the heartbeat record plus liveness as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// `POST /api/v1/apps/{name}/exec`: run a command in a running replica of the app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateExec {
    /// The program and its arguments (no shell: use `["sh", "-c", "..."]` for one).
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
pub struct ExecStarted {
    pub id: String,
    pub app: String,
    pub node: String,
    pub container: String,
    pub deployment: String,
    pub timeout_s: u64,
}
