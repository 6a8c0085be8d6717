//! Reporting a deployment as failed from outside the deploy steps: a restart interrupted it, or
//! its task crashed.

use berth_protocol::{DeploymentStatus, DeploymentUpdate};

use super::Services;
use crate::log_sink::LogSink;

/// Reports a deployment as failed without running it.
pub async fn fail(svc: &Services, deployment_id: &str, error: String) {
    LogSink::redis(svc.redis.clone(), deployment_id)
        .system(format!("deployment failed: {error}"))
        .await;
    svc.events
        .deployment(DeploymentUpdate::ended(
            deployment_id,
            DeploymentStatus::Failed,
            error,
        ))
        .await;
}
