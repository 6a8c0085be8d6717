//! Apps: create, list, show, patch, delete.
//!
//! Deleting an app decides the fate of its unfinished deployments (`cancel`, set NX like a
//! cancel, so a deployment between its health check and its switch never takes traffic), then
//! has every node remove the app's routes, containers and images, then deletes its records.

use std::sync::Arc;

use actix::prelude::*;
use berth_protocol::api;
use berth_protocol::{keys, App, DeploymentStatus, Job};

use super::{load_app, Api};
use crate::apps;
use crate::error::{Error, Result};
use crate::ledger::{self, Transition};
use crate::registry::NodesNow;
use crate::store::Store;

/// `POST /api/v1/apps`.
#[derive(Message)]
#[rtype(result = "Result<App>")]
pub struct CreateApp(pub api::CreateApp);

/// `GET /api/v1/apps`.
#[derive(Message)]
#[rtype(result = "Result<Arc<Vec<App>>>")]
pub struct ListApps;

/// `GET /api/v1/apps/{name}`.
#[derive(Message)]
#[rtype(result = "Result<App>")]
pub struct GetApp(pub String);

/// `PATCH /api/v1/apps/{name}`.
#[derive(Message)]
#[rtype(result = "Result<App>")]
pub struct PatchApp(pub String, pub api::PatchApp);

/// `DELETE /api/v1/apps/{name}`.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct DeleteApp(pub String);

/// Fails when another app already serves one of `app`'s domains.
async fn check_domains_free(store: &Store, app: &App) -> Result<()> {
    for other in store.list_apps().await?.iter() {
        if other.name == app.name {
            continue;
        }
        if let Some(d) = app.domains.iter().find(|d| other.domains.contains(d)) {
            return Err(Error::Conflict(format!(
                "domain {d} is already used by app {}",
                other.name
            )));
        }
    }
    Ok(())
}

/// Cancels the app's unfinished deployments like a cancel does: each node stops its job before
/// the switch (a job that claimed the switch already finishes it).
pub(super) async fn cancel_unfinished(
    store: &Store,
    ledger: &Addr<ledger::Ledger>,
    app: &str,
    why: &str,
) -> Result<()> {
    let ids = store.deployment_ids(app, usize::MAX).await?;
    for d in store.deployments(&ids).await? {
        if d.status.is_terminal() {
            continue;
        }
        store
            .claim_once(
                &keys::deployment_fate(&d.id),
                keys::FATE_CANCEL,
                keys::MARKER_TTL_S,
            )
            .await?;
        ledger
            .send(Transition::ended(&d.id, DeploymentStatus::Cancelled, why))
            .await??;
    }
    Ok(())
}

/// When a running app's domains change, its route follows at once: each new domain gets the
/// route the app has now (same replicas), each dropped one loses its route.
async fn move_routes(store: &Store, old: &[String], new: &[String]) -> Result<()> {
    let Some(first) = old.first() else {
        return Ok(());
    };
    if let Some(route) = store.route(first).await? {
        for d in new.iter().filter(|d| !old.contains(d)) {
            let mut r = route.clone();
            r.domain = d.clone();
            r.updated_at = berth_protocol::now_ms();
            store.put_route(&r).await?;
        }
    }
    let gone: Vec<String> = old.iter().filter(|d| !new.contains(d)).cloned().collect();
    store.delete_routes(&gone).await
}

impl Handler<CreateApp> for Api {
    type Result = AtomicResponse<Self, Result<App>>;

    fn handle(&mut self, msg: CreateApp, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let base = self.base_domain.clone();
        let key = self.secret_key.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let sealed = msg.0.git_credential.as_ref().map(|c| c.seal(&key));
                let app = apps::build(msg.0, &base).map_err(Error::BadRequest)?;
                check_domains_free(&store, &app).await?;
                if !store.put_app(&app, true).await? {
                    return Err(Error::Conflict(format!(
                        "an app named {:?} exists already",
                        app.name
                    )));
                }
                store.put_credential(&app.name, sealed.as_ref()).await?;
                Ok(app)
            }
            .into_actor(self),
        ))
    }
}

impl Handler<ListApps> for Api {
    type Result = ResponseFuture<Result<Arc<Vec<App>>>>;

    fn handle(&mut self, _: ListApps, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { store.list_apps().await })
    }
}

impl Handler<GetApp> for Api {
    type Result = ResponseFuture<Result<App>>;

    fn handle(&mut self, msg: GetApp, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { load_app(&store, &msg.0).await })
    }
}

impl Handler<PatchApp> for Api {
    type Result = AtomicResponse<Self, Result<App>>;

    fn handle(&mut self, msg: PatchApp, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let key = self.secret_key.clone();
        let (ledger, reconciler) = (self.ledger.clone(), self.reconciler.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let app = load_app(&store, &msg.0).await?;
                let from = app.replicas;
                let old_domains = app.domains.clone();
                let new_credential = msg.1.git_credential.as_ref().map(|c| c.seal(&key));
                let remove = msg.1.remove_git_credential == Some(true);
                let app = apps::patch(app, msg.1).map_err(Error::BadRequest)?;
                check_domains_free(&store, &app).await?;
                if new_credential.is_some() || remove {
                    store
                        .put_credential(&app.name, new_credential.as_ref())
                        .await?;
                }
                store.put_app(&app, false).await?;
                if app.domains != old_domains && !app.stopped {
                    move_routes(&store, &old_domains, &app.domains).await?;
                }
                // A stopped app takes the count with it when it starts.
                if app.replicas != from && !app.stopped {
                    crate::failover::scale(&store, &ledger, &reconciler, &app, from).await?;
                }
                Ok(app)
            }
            .into_actor(self),
        ))
    }
}

impl Handler<DeleteApp> for Api {
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, msg: DeleteApp, _: &mut Context<Self>) -> Self::Result {
        let (store, ledger, registry) = (
            self.store.clone(),
            self.ledger.clone(),
            self.registry.clone(),
        );
        AtomicResponse::new(Box::pin(
            async move {
                let app = load_app(&store, &msg.0).await?;
                // One that claimed the switch already finishes it; the RemoveApp job below runs
                // after it on its node (jobs of an app run one at a time) and removes what it
                // routed.
                cancel_unfinished(&store, &ledger, &app.name, "the app was deleted").await?;
                // Every node that may run a container of the app cleans up after it.
                let job = Job::RemoveApp {
                    app: app.name.clone(),
                    domains: app.domains.clone(),
                };
                for node in registry.send(NodesNow).await?? {
                    store
                        .send_job(&node.info.name, &ledger::new_id(), &job)
                        .await?;
                }
                store.delete_app(&app.name).await
            }
            .into_actor(self),
        ))
    }
}
