//! Removing an app from this node: its containers, its routes and its runtime log.

use berth_protocol::keys;

use super::Services;
use crate::containers;
use crate::error::Result;
use crate::router::RemoveRoutes;

/// Removes every container of `app` on this node and the routes of `domains`.
pub async fn remove_app(svc: &Services, app: &str, domains: &[String]) -> Result<()> {
    for id in containers::app_containers(&svc.docker, app, &svc.node).await? {
        containers::stop_and_remove(&svc.docker, &id).await?;
    }
    svc.router.send(RemoveRoutes(domains.to_vec())).await??;
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
