//! After a successful switch, in the background: drain and stop the previous release, remove
//! older containers, and prune images no longer offered for rollback.

use std::time::Duration;

use berth_protocol::DeployJob;

use super::deploy::Ready;
use super::{short, Services};
use crate::containers;
use crate::log_sink::LogSink;

/// After the switch: lets the previous release drain, stops it (keeping it, stopped, so a
/// rollback to it is a start rather than a create — unless a rollback took it back meanwhile),
/// removes older containers but one stopped container of each kept release, and prunes images
/// of releases no longer offered for rollback. Failures are only logged.
///
/// Which containers are old is decided here, under the app's lock; the waiting and stopping run
/// in the background (a task of the node's shutdown tracker), so the next deployment of the app
/// does not wait for them, and nothing created after this deployment's container is touched.
///
/// When the node shuts down meanwhile, the drain is cut short: the previous release is stopped
/// at once (so it does not run on beside the new one until the next deployment), and removing
/// old containers and pruning images are left to the app's next deployment.
///
/// A replica of a rollout (`stop_old` false) stops nothing: the coordinator decides which
/// replicas leave the route, and each node retires what no route names (`retire.rs`).
pub(super) async fn drain_previous(
    svc: &Services,
    job: &DeployJob,
    log: &LogSink,
    ready: &Ready,
    stop_old: bool,
) {
    let keep = ready.container.clone();
    let all = match containers::app_containers_state(&svc.docker, &job.app.name, &svc.node).await {
        Ok(all) => all,
        Err(e) => {
            log.system(format!("could not list previous containers: {e}"))
                .await;
            return;
        }
    };
    let Some(keep_created) = all.iter().find(|c| c.id == keep).map(|c| c.created) else {
        return;
    };
    let running_old: Vec<String> = all
        .iter()
        .filter(|c| stop_old && c.id != keep && c.running)
        .map(|c| c.id.clone())
        .collect();
    let (docker, log, node) = (svc.docker.clone(), log.clone(), svc.node.clone());
    let builder = svc.builder.clone();
    let app = job.app.name.clone();
    let drain = Duration::from_secs(job.app.drain_s);
    let keep_images = job.keep_images.clone();
    let new_image = ready.image.clone();
    let shutdown = svc.shutdown.clone();
    let (registry, http) = (svc.registry.clone(), svc.probe_http.clone());
    let this = job.deployment_id.clone();
    let in_use = svc.in_use.clone();
    let (router, pending, stopping) = (
        svc.router.clone(),
        svc.pending.clone(),
        svc.stopping.clone(),
    );
    svc.shutdown.spawn(async move {
        if !running_old.is_empty() {
            log.system(format!(
                "draining the previous release for {} s before stopping it",
                drain.as_secs()
            ))
            .await;
            tokio::select! {
                () = tokio::time::sleep(drain) => {}
                () = shutdown.cancelled() => {
                    log.system("the node is shutting down: stopping the previous release now")
                        .await;
                }
            }
            // What a rollback took back meanwhile (or is taking) serves again: not stopped.
            let routes = router.send(crate::router::Routes).await.unwrap_or_default();
            let now = berth_protocol::now_ms();
            for c in &running_old {
                let serving = super::services::routed(&routes, &node, c, now);
                let claim = match serving {
                    true => None,
                    false => super::services::claim_stop(&pending, &stopping, c),
                };
                let Some(_stopping) = claim else {
                    if serving || super::services::marked(&pending, c) {
                        log.system(format!(
                            "previous container {} serves again (a rollback took it): left running",
                            short(c)
                        ))
                        .await;
                    }
                    continue;
                };
                log.system(format!("stopping previous container {}", short(c)))
                    .await;
                if let Err(e) = containers::stop(&docker, c, 10).await {
                    log.system(format!("could not stop {}: {e}", short(c)))
                        .await;
                }
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        // Stopped containers older than ours are kept for a rollback to be a `docker start`:
        // the newest (the previous release) and one of each release whose image is kept.
        let Ok(all) = containers::app_containers_state(&docker, &app, &node).await else {
            return;
        };
        let older_stopped = all
            .iter()
            .filter(|c| c.id != keep && !c.running && c.created <= keep_created);
        let mut images_kept = std::collections::HashSet::new();
        let mut first = true;
        for c in older_stopped {
            let of_kept_release = match (&keep_images, &c.image) {
                (Some(k), Some(image)) => k.contains(image) && images_kept.insert(image.clone()),
                _ => false,
            };
            if std::mem::take(&mut first) || of_kept_release {
                if let Some(image) = &c.image {
                    images_kept.insert(image.clone());
                }
                continue;
            }
            // Not one a rollback is taking again meanwhile.
            let Some(_removing) = super::services::claim_stop(&pending, &stopping, &c.id) else {
                continue;
            };
            containers::bounded(
                "removing an old container",
                containers::remove_force(&docker, &c.id),
            )
            .await;
        }
        let Some(keep_images) = keep_images else {
            return;
        };
        // Not while a build runs here: removing an image removes its untagged parents, which a
        // build may be using as cache.
        let removal = tokio::select! {
            r = builder.removal(Duration::from_secs(600)) => r,
            () = shutdown.cancelled() => return,
        };
        let Some(_no_builds) = removal else {
            log.system("old images not pruned: builds kept running for 10 minutes; the next deployment prunes them")
                .await;
            return;
        };
        let Ok(images) = containers::app_images(&docker, &app).await else {
            return;
        };
        for (image, created) in images {
            if shutdown.is_cancelled() {
                return;
            }
            let held = super::services::held(&in_use, &image);
            if image != new_image && !keep_images.contains(&image) && created <= keep_created && !held {
                match containers::remove_image(&docker, &image).await {
                    Ok(()) => log.system(format!("pruned {image}")).await,
                    Err(e) => tracing::debug!(%image, error = %e, "image kept"),
                }

            }
        }
        // The registry keeps what the engines keep: every tag of the app older than this
        // deployment (ids are time-ordered: a newer build elsewhere is never touched) that is
        // not a kept release goes.
        let Some(reg) = registry else { return };
        let tags = match crate::registry::tags(&http, &reg, &app).await {
            Ok(t) => t,
            Err(e) => return log.system(format!("{e}")).await,
        };
        // A rebuild of the same commit can give the same image: never delete a digest a kept
        // release has (deleting a manifest deletes every tag of it).
        let mut kept = std::collections::HashSet::new();
        // Nor one a job here is building or about to run (an identical rebuild shares it).
        let held: Vec<String> = in_use
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for image in keep_images.iter().chain([&new_image]).chain(&held) {
            if reg.holds(image) {
                match crate::registry::digest(&http, &reg, image).await {
                    Ok(Some(d)) => {
                        kept.insert(d);
                    }
                    Ok(None) => {}
                    Err(e) => return log.system(format!("{e}")).await,
                }
            }
        }
        for tag in tags.into_iter().filter(|t| t.as_str() < this.as_str()) {
            let image = format!("{}:{tag}", reg.repository(&app));
            if image == new_image
                || keep_images.contains(&image)
                || super::services::held(&in_use, &image)
                || shutdown.is_cancelled()
            {
                continue;
            }
            let deleted = match crate::registry::digest(&http, &reg, &image).await {
                Ok(Some(d)) if !kept.contains(&d) => {
                    crate::registry::delete(&http, &reg, &image, &d).await
                }
                Ok(_) => continue,
                Err(e) => Err(e),
            };
            match deleted {
                Ok(()) => log.system(format!("deleted {image} from the registry")).await,
                Err(e) => log.system(format!("{e}")).await,
            }
        }
    });
}
