//! Reporting a deployment as failed from outside the deploy steps: a restart interrupted it, or
//! its task crashed.

use berth_protocol::{DeploymentStatus, DeploymentUpdate, ReplicaReport};

use super::Services;
use crate::log_sink::LogSink;

/// Reports a deployment (or, with `slot`, one replica of its rollout) as failed without
/// running it.
pub async fn fail(svc: &Services, deployment_id: &str, slot: Option<u32>, error: String) {
    let log = LogSink::redis(svc.redis.clone(), deployment_id);
    let update = match slot {
        Some(slot) => {
            log.system(format!("replica r{slot} failed: {error}")).await;
            replica_failed(deployment_id, slot, error)
        }
        None => {
            log.system(format!("deployment failed: {error}")).await;
            DeploymentUpdate::ended(deployment_id, DeploymentStatus::Failed, error)
        }
    };
    log.flush(svc.shutdown.token()).await;
    svc.events.deployment(update).await;
}

/// The report of a replica of a rollout that failed: the coordinator ends the deployment.
pub(super) fn replica_failed(deployment_id: &str, slot: u32, error: String) -> DeploymentUpdate {
    DeploymentUpdate {
        replica: Some(Box::new(ReplicaReport {
            slot,
            upstream: None,
            error: Some(error),
        })),
        ..DeploymentUpdate::new(deployment_id, DeploymentStatus::Deploying)
    }
}
