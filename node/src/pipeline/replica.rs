//! One replica of a rollout on this node: the coordinator drives the rollout (placement, the
//! route, the end), the node runs what a deploy runs up to a healthy container and reports it
//! (`DeploymentUpdate::replica`), then waits in the background for the deployment to end. If it
//! succeeded, the app's images are pruned as after any deploy (the replaced replicas are the
//! coordinator's to take out of the route, and `retire.rs` stops them); if it failed, the
//! replica goes unless a route names it.

use std::sync::Arc;
use std::time::Duration;

use berth_protocol::envelope::{decode, kind};
use berth_protocol::{
    keys, now_ms, DeployJob, Deployment, DeploymentStatus, DeploymentUpdate, ReplicaReport,
    Upstream,
};
use redis::AsyncCommands;

use super::deploy::{Ready, TAIL_LINES};
use super::drain::drain_previous;
use super::fail::replica_failed;
use super::{short, Services};
use crate::containers;
use crate::error::Result;
use crate::log_sink::LogSink;
use crate::router::Routes;

/// How often the end of the rollout is looked for.
const POLL: Duration = Duration::from_millis(500);

/// Reports the replica's outcome; a healthy replica waits for the rollout's end in a tracked
/// task, out of the app's lock (the rollout may need another replica of the app on this node
/// before it ends). `created` is the container of a failed replica, if one was made.
pub(super) async fn report(
    svc: &Arc<Services>,
    job: &DeployJob,
    slot: u32,
    log: &LogSink,
    outcome: Result<Ready>,
    created: Option<String>,
) {
    let id = job.deployment_id.as_str();
    match outcome {
        Ok(mut ready) => {
            let dial = format!("{}:{}", svc.address, ready.host_port);
            lock(&svc.pending).insert(ready.container.clone());
            // A release's container taken again was held already: it stays held, now as a
            // replica waiting for the rollout.
            if let Some(h) = ready.held.take() {
                h.disarm();
            }
            log.system(format!(
                "replica r{slot} is healthy at {dial} (container {}); the coordinator switches it in",
                short(&ready.container)
            ))
            .await;
            log.flush(svc.shutdown.token()).await;
            let upstream = Upstream {
                dial,
                node: svc.node.clone(),
                container: ready.container.clone(),
                deployment: id.to_string(),
            };
            svc.events
                .deployment(DeploymentUpdate {
                    commit: ready.commit.clone(),
                    image: Some(ready.image.clone()),
                    replica: Some(Box::new(ReplicaReport {
                        slot,
                        upstream: Some(upstream),
                        error: None,
                    })),
                    ..DeploymentUpdate::new(id, DeploymentStatus::Deploying)
                })
                .await;
            let (svc, job, log) = (svc.clone(), job.clone(), log.clone());
            let tracker = svc.shutdown.clone();
            tracker.spawn(async move { settle(&svc, &job, &log, ready).await });
        }
        Err(e) => {
            let text = log.mask(e.to_string());
            if let Some(c) = created {
                containers::copy_tail(&svc.docker, &c, TAIL_LINES, log).await;
                log.system(format!("removing the replica's container {}", short(&c)))
                    .await;
                containers::bounded(
                    "removing the failed container",
                    containers::remove_force(&svc.docker, &c),
                )
                .await;
            }
            if e.is_infrastructure() {
                // Not the app's fault: the coordinator places the replica again.
                return super::interrupted(svc, job, text).await;
            }
            log.system(format!("replica r{slot} failed: {text}")).await;
            log.flush(svc.shutdown.token()).await;
            svc.events.deployment(replica_failed(id, slot, text)).await;
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The deployment's status, as its record says.
async fn status(svc: &Services, id: &str) -> Option<DeploymentStatus> {
    let raw: Option<Vec<u8>> = svc
        .redis
        .clone()
        .get(keys::deployment(id))
        .await
        .ok()
        .flatten();
    decode::<Deployment>(&raw?, kind::DEPLOYMENT)
        .ok()
        .map(|d| d.status)
}

/// Waits until the rollout ended (or well past its deadline), then prunes or removes.
async fn settle(svc: &Arc<Services>, job: &DeployJob, log: &LogSink, ready: Ready) {
    let id = job.deployment_id.as_str();
    let give_up = job.deadline_ms + 120_000;
    let ended = loop {
        match status(svc, id).await {
            Some(s) if s.is_terminal() => break Some(s),
            _ if now_ms() > give_up => break None,
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            // The container stays; after a restart, retiring decides from the route.
            () = svc.shutdown.cancelled() => return,
        }
    };
    lock(&svc.pending).remove(&ready.container);
    if ended == Some(DeploymentStatus::Succeeded) {
        drain_previous(svc, job, log, &ready, false).await;
        return;
    }
    let routed = match svc.router.send(Routes).await {
        Ok(routes) => routes
            .iter()
            .any(|r| r.upstreams.iter().any(|u| u.container == ready.container)),
        Err(_) => true,
    };
    if routed {
        return;
    }
    log.system(format!(
        "removing replica container {}: the deployment ended {}",
        short(&ready.container),
        ended.map_or("nowhere (past its deadline)".to_string(), |s| s.to_string())
    ))
    .await;
    containers::bounded(
        "removing a replica of a failed rollout",
        containers::remove_force(&svc.docker, &ready.container),
    )
    .await;
}
