//! Deployments: create (the newest of an app wins), list, show, cancel.

use actix::prelude::*;
use berth_bus::Live;
use berth_protocol::api;
use berth_protocol::{keys, validate, Deployment, DeploymentStatus};

use super::{load_app, Api};
use crate::deployment::{place_new, Deadlines, Placer};
use crate::error::{Error, Result};
use crate::ledger::{self, Ledger, Transition};
use crate::reconciler::{Reconciler, Track};
use crate::registry::NodeRegistry;
use crate::store::Store;

/// `POST /api/v1/apps/{name}/deployments`.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct CreateDeployment(pub String, pub api::CreateDeployment);

/// `POST /api/v1/apps/{name}/uploads`: a tar archive of a directory (`berth deploy --dir`),
/// kept in Redis and deployed like a commit.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct DeployUpload {
    pub app: String,
    pub archive: bytes::Bytes,
    pub no_cache: bool,
}

/// `GET /api/v1/apps/{name}/deployments`, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<Deployment>>")]
pub struct ListDeployments(pub String);

/// `GET /api/v1/deployments/{id}`.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct GetDeployment(pub String);

/// `POST /api/v1/deployments/{id}/cancel`.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct Cancel(pub String);

/// What queueing a deployment takes: the store, the one writer of records, and the reconciler
/// that watches the new deployment. Cheap to clone into a handler's future.
#[derive(Clone)]
pub(super) struct Queue {
    pub(super) store: Store,
    ledger: Live<Ledger>,
    reconciler: Live<Reconciler>,
    registry: Live<NodeRegistry>,
    deadlines: Deadlines,
    shared_images: bool,
}

impl Api {
    pub(super) fn queue(&self) -> Queue {
        Queue {
            store: self.store.clone(),
            ledger: self.ledger.clone(),
            reconciler: self.reconciler.clone(),
            registry: self.registry.clone(),
            deadlines: self.deadlines,
            shared_images: self.shared_images,
        }
    }
}

impl Queue {
    /// Records a new deployment, starts watching it, and cancels the app's older unfinished
    /// ones: the newest deployment of an app wins. An older one whose node already claimed the
    /// switch (`berth:fate:<id>` = `switch`) is left to finish; the newer one replaces it right
    /// after.
    pub(super) async fn deployment(&self, create: ledger::Create) -> Result<Deployment> {
        self.deployment_of(create, None).await
    }

    /// [`Queue::deployment`], given the app as the caller just read it: the deployment is
    /// placed with that before its record is written, and its record, node and job go in one
    /// write (`deployment::place_new`, `ledger::CreateRecord`); when it cannot be placed at once
    /// it is created unplaced, and its first look places it (or waits, or fails it with why).
    pub(super) async fn deployment_of(
        &self,
        create: ledger::Create,
        app: Option<berth_protocol::App>,
    ) -> Result<Deployment> {
        let (store, ledger) = (&self.store, &self.ledger);
        let mut queued = create.record();
        let job = match &app {
            Some(app) => {
                let placer = Placer {
                    store: store.clone(),
                    registry: self.registry.clone(),
                    dl: self.deadlines,
                    shared_images: self.shared_images,
                };
                // Its success trims the release index to what its job keeps.
                place_new(&placer, &mut queued.d, app)
                    .await
                    .map(|job| (job, app.keep_releases))
            }
            None => None,
        };
        let sent = job.is_some();
        let ledger::Created {
            deployment: d,
            recent,
        } = ledger.send(ledger::CreateRecord { queued, job }).await??;
        // The app's unfinished deployments among its newest, as the create read them.
        let others: Vec<String> = recent.iter().filter(|id| **id != d.id).cloned().collect();
        self.reconciler.do_send(Track {
            deployment: d.clone(),
            app,
            recent: Some(recent),
            sent,
        });
        for old in store.active_among(others).await? {
            let older = (old.created_at, &old.id) < (d.created_at, &d.id);
            if !older {
                continue;
            }
            if store
                .claim_once(
                    &keys::deployment_fate(&old.id),
                    keys::FATE_CANCEL,
                    keys::MARKER_TTL_S,
                )
                .await?
            {
                ledger
                    .send(Transition::ended(
                        &old.id,
                        DeploymentStatus::Cancelled,
                        format!("superseded by {}", d.id),
                    ))
                    .await??;
            }
        }
        // One wait covers the record and the cancels of the ones it superseded.
        if !store.confirms() {
            return Ok(d);
        }
        store
            .confirm(
                &format!("deployment {} of app {} was queued", d.id, d.app),
                &format!(
                    "look for it \
                     (`berth deployment {id}`, GET /api/v1/deployments/{id}) before deploying again",
                    id = d.id
                ),
            )
            .await?;
        Ok(d)
    }
}

fn deployment_not_found(id: &str) -> Error {
    Error::NotFound(format!("deployment {id:?} not found"))
}

impl Handler<CreateDeployment> for Api {
    type Result = ResponseFuture<Result<Deployment>>;

    fn handle(&mut self, msg: CreateDeployment, _: &mut Context<Self>) -> Self::Result {
        let q = self.queue();
        Box::pin(async move {
            let app = load_app(&q.store, &msg.0).await?;
            if app.stopped {
                return Err(super::lifecycle::stopped(&app));
            }
            if app.repo.is_empty() {
                return Err(Error::BadRequest(format!(
                    "app {} has no repository: deploy a directory with `berth deploy {} --dir \
                     DIR`, or give it one with `berth apps update {} --repo URL`",
                    app.name, app.name, app.name
                )));
            }
            if let Some(r) = &msg.1.git_ref {
                validate::git_ref("ref", r).map_err(Error::BadRequest)?;
            }
            let create = ledger::Create {
                app: app.name.clone(),
                git_ref: msg.1.git_ref,
                no_cache: msg.1.no_cache,
                ..Default::default()
            };
            q.deployment_of(create, Some(app)).await
        })
    }
}

impl Handler<DeployUpload> for Api {
    type Result = ResponseFuture<Result<Deployment>>;

    fn handle(&mut self, msg: DeployUpload, _: &mut Context<Self>) -> Self::Result {
        let q = self.queue();
        Box::pin(async move {
            let app = load_app(&q.store, &msg.app).await?;
            if app.stopped {
                return Err(super::lifecycle::stopped(&app));
            }
            // Reading every header of a large archive takes a moment: off the actor's thread.
            let archive = msg.archive.clone();
            let checked = tokio::task::spawn_blocking(move || crate::upload::check(&archive))
                .await
                .map_err(|e| Error::Internal(format!("checking the upload failed: {e}")))?
                .map_err(Error::BadRequest)?;
            let chunks: Vec<bytes::Bytes> = (0..msg.archive.len())
                .step_by(keys::UPLOAD_CHUNK)
                .map(|at| {
                    msg.archive
                        .slice(at..(at + keys::UPLOAD_CHUNK).min(msg.archive.len()))
                })
                .collect();
            q.store
                .put_upload(&app.name, &checked.sha256, &chunks)
                .await?;
            let create = ledger::Create {
                app: app.name.clone(),
                upload: Some(berth_protocol::Upload {
                    sha256: checked.sha256,
                    size: checked.size,
                }),
                no_cache: msg.no_cache,
                ..Default::default()
            };
            q.deployment_of(create, Some(app)).await
        })
    }
}

impl Handler<ListDeployments> for Api {
    type Result = ResponseFuture<Result<Vec<Deployment>>>;

    fn handle(&mut self, msg: ListDeployments, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            load_app(&store, &msg.0).await?;
            // A listing stays small: a deployment's Dockerfile is in its own GET only.
            let mut list = store.list_deployments(&msg.0, 100).await?;
            for d in &mut list {
                d.dockerfile = None;
            }
            Ok(list)
        })
    }
}

impl Handler<GetDeployment> for Api {
    type Result = ResponseFuture<Result<Deployment>>;

    fn handle(&mut self, msg: GetDeployment, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            store
                .get_deployment(&msg.0)
                .await?
                .ok_or_else(|| deployment_not_found(&msg.0))
        })
    }
}

impl Handler<Cancel> for Api {
    type Result = AtomicResponse<Self, Result<Deployment>>;

    fn handle(&mut self, msg: Cancel, _: &mut Context<Self>) -> Self::Result {
        let (store, ledger) = (self.store.clone(), self.ledger.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let id = msg.0;
                let d = store
                    .get_deployment(&id)
                    .await?
                    .ok_or_else(|| deployment_not_found(&id))?;
                if d.status.is_terminal() {
                    return Err(Error::Conflict(format!(
                        "deployment {id} is {} already; nothing to cancel",
                        d.status
                    )));
                }
                if !store
                    .claim_once(
                        &keys::deployment_fate(&id),
                        keys::FATE_CANCEL,
                        keys::MARKER_TTL_S,
                    )
                    .await?
                {
                    return Err(Error::Conflict(format!(
                        "deployment {id} is switching traffic already; roll back instead"
                    )));
                }
                ledger
                    .send(Transition::ended(
                        &id,
                        DeploymentStatus::Cancelled,
                        "cancelled on request",
                    ))
                    .await??;
                store
                    .confirm(
                        &format!("the cancel of deployment {id} was written"),
                        &format!(
                            "a failover of Redis now could let it run on: look at it \
                             (`berth deployment {id}`) and cancel it again if it is not cancelled"
                        ),
                    )
                    .await?;
                store
                    .get_deployment(&id)
                    .await?
                    .ok_or_else(|| deployment_not_found(&id))
            }
            .into_actor(self),
        ))
    }
}
