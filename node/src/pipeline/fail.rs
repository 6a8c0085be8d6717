//! Reporting a deployment from outside the deploy steps: failed (its task crashed), or
//! interrupted by an infrastructure fault (a restart of this node, the Docker engine or Redis
//! gone mid-way) so that the coordinator runs it again; and [`resume`], what a restarted node
//! does with a job it had claimed before.

use berth_protocol::{keys, DeployJob, DeploymentStatus, DeploymentUpdate, ReplicaReport};

use super::fate::{fate, switched_container};
use super::{short, Services};
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

/// Reports that an infrastructure fault (`cause`) interrupted this attempt of `job` before it
/// switched traffic; whatever the attempt had started is gone already. The coordinator runs
/// the next attempt (here or on another node), or fails the deployment after its last.
pub async fn interrupted(svc: &Services, job: &DeployJob, cause: String) {
    let id = job.deployment_id.as_str();
    let log = LogSink::redis(svc.redis.clone(), id);
    let what = match job.slot {
        Some(slot) => format!("replica r{slot}"),
        None => "the deployment".into(),
    };
    log.system(format!(
        "attempt {} of {what} was interrupted on node {} by an infrastructure fault: {cause}",
        job.attempt + 1,
        svc.node
    ))
    .await;
    // The status is not changed by an interruption; the record's own is kept.
    let mut update =
        DeploymentUpdate::interrupted(id, DeploymentStatus::Building, job.attempt, cause);
    if let Some(slot) = job.slot {
        update.replica = Some(Box::new(ReplicaReport {
            slot,
            upstream: None,
            error: None,
        }));
    }
    svc.events.deployment(update).await;
}

/// A job this node had claimed when it stopped (killed, crashed, or its host restarted), found
/// pending again at start. If it had switched traffic already — the route names its container —
/// it succeeded, and that is reported (the switch is not made twice); otherwise the attempt is
/// reported interrupted, and the coordinator runs it again.
pub async fn resume(svc: &Services, job: &DeployJob) {
    let id = job.deployment_id.as_str();
    if job.slot.is_none() && fate(svc, id).await.as_deref() == Some(keys::FATE_SWITCH) {
        if let Some(container) = switched_container(svc, job).await {
            let log = LogSink::redis(svc.redis.clone(), id);
            log.system(format!(
                "node {} restarted after it switched traffic to container {}: the deployment succeeded",
                svc.node,
                short(&container)
            ))
            .await;
            svc.events
                .deployment(DeploymentUpdate {
                    container: Some(container),
                    ..DeploymentUpdate::new(id, DeploymentStatus::Succeeded)
                })
                .await;
            return;
        }
    }
    // What the attempt had started goes first: its next attempt may run on another node, and
    // a replica never runs twice.
    crate::containers::bounded(
        "removing the interrupted attempt's container",
        crate::containers::remove_force(&svc.docker, &super::deploy::container_name(job)),
    )
    .await;
    interrupted(
        svc,
        job,
        format!("node {} restarted while working on it", svc.node),
    )
    .await;
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
