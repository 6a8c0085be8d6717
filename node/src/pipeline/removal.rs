//! Removing an app from this node (its containers, its routes, its images — on this engine and,
//! with `registry.url`, in the registry — and its runtime log), or stopping it (`berth stop`: its
//! containers stop and stay, with its images, for a start).

use std::time::Duration;

use berth_protocol::keys;

use super::Services;
use crate::containers;
use crate::error::Result;
use crate::router::RemoveRoutes;

/// Stops every running container of `app` on this node, keeping them. The coordinator took the
/// app's routes out first, so no request is sent to them any more.
pub async fn stop_app(svc: &Services, app: &str) -> Result<()> {
    for c in containers::app_containers_state(&svc.docker, app, &svc.node).await? {
        if c.running {
            containers::stop(&svc.docker, &c.id, 10).await?;
        }
    }
    Ok(())
}

/// Removes every container of `app` on this node, the routes of `domains` and the app's images.
pub async fn remove_app(svc: &Services, app: &str, domains: &[String]) -> Result<()> {
    for id in containers::app_containers(&svc.docker, app, &svc.node).await? {
        containers::stop_and_remove(&svc.docker, &id).await?;
    }
    svc.router
        .send(RemoveRoutes {
            app: app.to_string(),
            domains: domains.to_vec(),
        })
        .await??;
    // Not while a build runs here: removing an image removes its untagged parents, which a
    // build may be using as cache.
    match svc.builder.removal(Duration::from_secs(600)).await {
        Some(_no_builds) => {
            for (image, _) in containers::app_images(&svc.docker, app).await? {
                if let Err(e) = containers::remove_image(&svc.docker, &image).await {
                    tracing::warn!(app, %image, error = %e, "could not remove an image of a deleted app");
                }
            }
        }
        None => tracing::warn!(
            app,
            "images of the deleted app kept: builds ran for 10 minutes"
        ),
    }
    if let Some(reg) = &svc.registry {
        // The registry's copies go too. Every node gets this job and tries; a tag another node
        // deleted first is simply gone (a delete of a missing manifest is fine).
        match crate::registry::tags(&svc.probe_http, reg, app).await {
            Ok(tags) => {
                for tag in tags {
                    let image = format!("{}:{tag}", reg.repository(app));
                    let deleted = match crate::registry::digest(&svc.probe_http, reg, &image).await
                    {
                        Ok(Some(d)) => {
                            crate::registry::delete(&svc.probe_http, reg, &image, &d).await
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = deleted {
                        tracing::warn!(app, %image, error = %e, "could not delete an image of a deleted app from the registry");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(app, error = %e, "could not list the deleted app's images in the registry")
            }
        }
    }
    // The containers' last lines may have recreated the app's runtime log after the coordinator
    // deleted it; with them gone, nothing writes there any more.
    let mut c = svc.redis.clone();
    if let Err(e) = redis::cmd("DEL")
        .arg(keys::app_log(app))
        .query_async::<()>(&mut c)
        .await
    {
        tracing::warn!(app, error = %e, "could not delete the app's runtime log");
    }
    svc.events.app_removed(app).await;
    Ok(())
}
