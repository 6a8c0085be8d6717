//! Apps: create, list, show, patch, delete.
//!
//! Creating an app, and changing its repository or branch, first checks that the
//! repository and branch can be reached ([`git_check`], up to 15 s): outside the actor's
//! one-at-a-time section, which then stores the change.
//!
//! Deleting an app decides the fate of its unfinished deployments (`cancel`, set NX like a
//! cancel, so a deployment between its health check and its switch never takes traffic), then
//! has every node remove the app's routes, containers and images, then deletes its records.

use std::sync::Arc;

use actix::prelude::*;
use berth_protocol::api;
use berth_protocol::secret::GitCredential;
use berth_protocol::{keys, App, DeploymentStatus, Job};

use super::{load_app, Api};
use crate::error::{Error, Result};
use crate::ledger::{self, Transition};
use crate::registry::NodesNow;
use crate::store::Store;
use crate::{apps, git_check};

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

impl Handler<CreateApp> for Api {
    type Result = ResponseFuture<Result<App>>;

    /// Validates and checks the repository outside the actor's one-at-a-time section (the git
    /// check may take seconds), then stores the app in it.
    fn handle(&mut self, msg: CreateApp, ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let base = self.base_domain.clone();
        let addr = ctx.address();
        Box::pin(async move {
            let app = apps::build(msg.0.clone(), &base).map_err(Error::BadRequest)?;
            // The quick refusals first; the atomic part checks again.
            if store.get_app(&app.name).await?.is_some() {
                return Err(exists(&app.name));
            }
            check_domains_free(&store, &app).await?;
            git_check::check(&app.repo, &app.branch, msg.0.git_credential.as_ref())
                .await
                .map_err(Error::Unprocessable)?;
            addr.send(StoreNewApp(msg.0)).await?
        })
    }
}

fn exists(name: &str) -> Error {
    Error::Conflict(format!("an app named {name:?} exists already"))
}

/// The part of a create that runs one at a time with the other app changes.
#[derive(Message)]
#[rtype(result = "Result<App>")]
struct StoreNewApp(api::CreateApp);

impl Handler<StoreNewApp> for Api {
    type Result = AtomicResponse<Self, Result<App>>;

    fn handle(&mut self, msg: StoreNewApp, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let base = self.base_domain.clone();
        let key = self.secret_key.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let sealed = msg.0.git_credential.as_ref().map(|c| c.seal(&key));
                let app = apps::build(msg.0, &base).map_err(Error::BadRequest)?;
                check_domains_free(&store, &app).await?;
                if !store.put_app(&app, true).await? {
                    return Err(exists(&app.name));
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
    type Result = ResponseFuture<Result<App>>;

    /// When the repository or branch changes, checks that they can be reached (with the
    /// credential the app will have; outside the one-at-a-time section), then patches in it.
    fn handle(&mut self, msg: PatchApp, ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let key = self.secret_key.clone();
        let addr = ctx.address();
        Box::pin(async move {
            let p = &msg.1;
            // Only a change of where the source is: a credential can always be replaced or
            // removed (revoking a leaked token must not depend on the remote).
            let reaches = p.repo.is_some() || p.branch.is_some();
            if reaches {
                let app = load_app(&store, &msg.0).await?;
                let patched = apps::patch(app, p.clone()).map_err(Error::BadRequest)?;
                check_domains_free(&store, &patched).await?;
                let stored;
                let cred = match (&p.git_credential, p.remove_git_credential == Some(true)) {
                    (Some(c), _) => Some(c),
                    (None, true) => None,
                    (None, false) => {
                        // The coordinator opens the stored credential for this check only.
                        stored = match store.get_credential(&msg.0).await? {
                            Some(sealed) => {
                                Some(GitCredential::open(&key, &sealed).map_err(Error::Internal)?)
                            }
                            None => None,
                        };
                        stored.as_ref()
                    }
                };
                git_check::check(&patched.repo, &patched.branch, cred)
                    .await
                    .map_err(Error::Unprocessable)?;
            }
            addr.send(StorePatch(msg.0, msg.1)).await?
        })
    }
}

/// The part of a patch that runs one at a time with the other app changes.
#[derive(Message)]
#[rtype(result = "Result<App>")]
struct StorePatch(String, api::PatchApp);

impl Handler<StorePatch> for Api {
    type Result = AtomicResponse<Self, Result<App>>;

    fn handle(&mut self, msg: StorePatch, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let key = self.secret_key.clone();
        let (ledger, reconciler) = (self.ledger.clone(), self.reconciler.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let app = load_app(&store, &msg.0).await?;
                let from = app.replicas;
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
                if app.replicas != from {
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
                let ids = store.deployment_ids(&app.name, usize::MAX).await?;
                for d in store.deployments(&ids).await? {
                    if d.status.is_terminal() {
                        continue;
                    }
                    // Like a cancel: the node stops it before its switch. One that claimed the
                    // switch already finishes it; the RemoveApp job below runs after it on its
                    // node (jobs of an app run one at a time) and removes what it routed.
                    store
                        .claim_once(
                            &keys::deployment_fate(&d.id),
                            keys::FATE_CANCEL,
                            keys::MARKER_TTL_S,
                        )
                        .await?;
                    ledger
                        .send(Transition::ended(
                            &d.id,
                            DeploymentStatus::Cancelled,
                            "the app was deleted",
                        ))
                        .await??;
                }
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
