//! An app's life without a build: restart it (new containers of the serving release with the
//! app's current settings), stop it (out of service, its releases kept), start it again.
//!
//! Stopping runs one at a time with the other app changes (`AtomicResponse`): the app is marked
//! `stopped` first, so no deployment queued from then on is placed (a queued one is cancelled
//! when the coordinator looks at it, see `deployment::app_or_cancel`); then the unfinished ones
//! are cancelled, the routes leave the desired table (every node's Caddy drops them) and every
//! node stops the app's containers, keeping them and the images for `berth start`.

use actix::prelude::*;
use berth_protocol::api::StartOutcome;
use berth_protocol::{App, Deployment, DeploymentKind, Job, Release};

use super::apps::{cancel_unfinished, to_every_node};
use super::{load_app, Api};
use crate::error::{Error, Result};
use crate::ledger;
use crate::releases::releases;
use crate::store::Store;

/// `POST /api/v1/apps/{name}/restart`.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct Restart(pub String);

/// `POST /api/v1/apps/{name}/stop`.
#[derive(Message)]
#[rtype(result = "Result<App>")]
pub struct StopApp(pub String);

/// `POST /api/v1/apps/{name}/start`.
#[derive(Message)]
#[rtype(result = "Result<StartOutcome>")]
pub struct StartApp(pub String);

/// The release serving the app (the newest of its index), or why there is none.
async fn serving(store: &Store, app: &App) -> Result<Option<Release>> {
    Ok(releases(store, app).await?.into_iter().next())
}

fn no_release(app: &App, what: &str) -> Error {
    Error::Conflict(format!(
        "app {} has no release to {what} yet: deploy it first with `berth deploy {}`",
        app.name, app.name
    ))
}

pub(super) fn stopped(app: &App) -> Error {
    Error::Conflict(format!(
        "app {} is stopped: `berth start {}` brings it back",
        app.name, app.name
    ))
}

/// A deployment that runs `release` again without a build. `rollback_of` is the deployment that
/// served it last: its node holds the image (and, for a start, the stopped container).
fn rerun(app: &App, release: Release, kind: DeploymentKind) -> ledger::Create {
    ledger::Create {
        app: app.name.clone(),
        kind,
        rollback_of: release
            .deployments
            .first()
            .cloned()
            .or(Some(release.deployment)),
        image: Some(release.image),
        commit: release.commit,
        commit_message: release.commit_message,
        // A restart runs with the app's settings of now; a start with the release's.
        runtime: match kind {
            DeploymentKind::Restart => None,
            _ => release.runtime,
        },
        ..Default::default()
    }
}

impl Handler<Restart> for Api {
    type Result = ResponseFuture<Result<Deployment>>;

    fn handle(&mut self, msg: Restart, _: &mut Context<Self>) -> Self::Result {
        let q = self.queue();
        Box::pin(async move {
            let app = load_app(&q.store, &msg.0).await?;
            if app.stopped {
                return Err(stopped(&app));
            }
            let release = serving(&q.store, &app)
                .await?
                .ok_or_else(|| no_release(&app, "restart"))?;
            q.deployment(rerun(&app, release, DeploymentKind::Restart))
                .await
        })
    }
}

impl Handler<StopApp> for Api {
    type Result = AtomicResponse<Self, Result<App>>;

    fn handle(&mut self, msg: StopApp, _: &mut Context<Self>) -> Self::Result {
        let (store, ledger, registry) = (
            self.store.clone(),
            self.ledger.clone(),
            self.registry.clone(),
        );
        AtomicResponse::new(Box::pin(
            async move {
                let mut app = load_app(&store, &msg.0).await?;
                if !app.stopped {
                    app.stopped = true;
                    app.updated_at = berth_protocol::now_ms();
                    store.put_app(&app, false).await?;
                }
                // Again on a repeated stop: whatever a half-done one left is finished.
                cancel_unfinished(&store, &ledger, &app.name, "the app was stopped").await?;
                store.delete_routes(&app.domains).await?;
                let job = Job::StopApp {
                    app: app.name.clone(),
                };
                to_every_node(&store, &registry, &job).await?;
                store
                    .confirm(
                        &format!("app {} was stopped", app.name),
                        &format!(
                            "a failover of Redis now could undo it: stop it again if `berth apps show {}` does not say stopped",
                            app.name
                        ),
                    )
                    .await?;
                Ok(app)
            }
            .into_actor(self),
        ))
    }
}

impl Handler<StartApp> for Api {
    type Result = AtomicResponse<Self, Result<StartOutcome>>;

    fn handle(&mut self, msg: StartApp, _: &mut Context<Self>) -> Self::Result {
        let q = self.queue();
        AtomicResponse::new(Box::pin(
            async move {
                let mut app = load_app(&q.store, &msg.0).await?;
                if !app.stopped {
                    return Err(Error::Conflict(format!(
                        "app {} is not stopped (`berth restart {}` runs it anew)",
                        app.name, app.name
                    )));
                }
                app.stopped = false;
                app.updated_at = berth_protocol::now_ms();
                q.store.put_app(&app, false).await?;
                let deployment = match serving(&q.store, &app).await? {
                    Some(release) => Some(
                        q.deployment(rerun(&app, release, DeploymentKind::Start))
                            .await?,
                    ),
                    // A deployment's queueing waited for the replicas already.
                    None => {
                        q.store
                            .confirm(
                                &format!("app {} was started", app.name),
                                &format!(
                                    "a failover of Redis now could undo it: start it again if `berth apps show {}` says stopped",
                                    app.name
                                ),
                            )
                            .await?;
                        None
                    }
                };
                Ok(StartOutcome { app, deployment })
            }
            .into_actor(self),
        ))
    }
}
