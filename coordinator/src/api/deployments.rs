//! Deployments: create (the newest of an app wins), list, show, cancel.

use actix::prelude::*;
use berth_bus::Live;
use berth_protocol::api;
use berth_protocol::{keys, validate, Deployment, DeploymentStatus};

use super::{load_app, Api};
use crate::deployment::{place_new, Deadlines, Placer, Prefetched, LAYER_CACHE_LOOKBACK};
use crate::error::{Error, Result};
use crate::ledger::{self, Ledger, Transition};
use crate::reconciler::{Reconciler, Track};
use crate::registry::{NodeRegistry, Nodes};
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

/// Each app's first domain as the last deploy through this API read it. A new deployment's
/// placement reads the route of its app's first domain; with a guess of that domain the read
/// goes with the app's record (one round trip, `Store::app_for_deploy`) instead of after it. A
/// hint, never trusted: a guess that is not the record's first domain only costs the read after
/// it. Without one the guess is the app's default domain (`<app>.<base domain>`), which most
/// apps keep.
#[derive(Clone, Default)]
pub struct DomainGuesses(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
);

/// Past this many apps the guesses start over (a hint: forgetting costs a read a deploy).
const MOST_GUESSES: usize = 100_000;

impl DomainGuesses {
    fn guess(&self, app: &str, base_domain: &str) -> Option<String> {
        let known = self.lock().get(app).cloned();
        known.or_else(|| validate::normalize_domain(&format!("{app}.{base_domain}"), &[]).ok())
    }

    fn learn(&self, app: &berth_protocol::App) {
        let Some(first) = app.domains.first() else {
            return;
        };
        let mut known = self.lock();
        if known.get(&app.name) == Some(first) {
            return;
        }
        if known.len() >= MOST_GUESSES {
            known.clear();
        }
        known.insert(app.name.clone(), first.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
        self.deployment_of(create, None, None).await
    }

    /// [`Queue::deployment`], given the app as the caller just read it: the deployment is
    /// placed with that before its record is written, and its record, node and job go in one
    /// write (`deployment::place_new`, `ledger::CreateRecord`); when it cannot be placed at once
    /// it is created unplaced, and its first look places it (or waits, or fails it with why).
    /// `pre`: what its placement reads, if the caller read it with the app.
    pub(super) async fn deployment_of(
        &self,
        create: ledger::Create,
        app: Option<berth_protocol::App>,
        pre: Option<Prefetched>,
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
                place_new(&placer, &mut queued.d, app, pre)
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
        let guesses = self.domain_guesses.clone();
        let guess = guesses.guess(&msg.0, &self.base_domain);
        Box::pin(async move {
            // The app with what its deployment's placement and job read, and the fleet, at
            // once: one round trip to Redis before the create's write instead of two.
            let (found, nodes) = futures_util::join!(
                q.store
                    .app_for_deploy(&msg.0, LAYER_CACHE_LOOKBACK, guess.as_deref()),
                q.registry.send(Nodes),
            );
            let Some((app, reads)) = found? else {
                return Err(Error::NotFound(format!("app {:?} not found", msg.0)));
            };
            guesses.learn(&app);
            // Without the fleet now (or the reads), the deployment is placed as if nothing had
            // been read (or by its actor).
            let pre = match (nodes, reads) {
                (Ok(Ok(nodes)), Some(reads)) => Some(Prefetched { nodes, reads }),
                _ => None,
            };
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
            q.deployment_of(create, Some(app), pre).await
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
            q.deployment_of(create, Some(app), None).await
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
