//! `Api`: the coordinator's face to web/ — one message per API operation.
//!
//! Reads run concurrently; changes to apps run one at a time (`AtomicResponse`) so that two
//! creates of one name or two patches of one app cannot interleave. Deployment records are
//! changed only through the `Ledger`.

use actix::prelude::*;
use berth_protocol::api::{self, NodeView};
use berth_protocol::{
    keys, validate, App, Deployment, DeploymentKind, DeploymentStatus, Job, Release,
};

use berth_protocol::secret::SecretKey;

use crate::apps;
use crate::error::{Error, Result};
use crate::ledger::{self, Ledger, Transition};
use crate::reconciler::{Reconciler, Track};
use crate::registry::{NodeRegistry, Nodes};
use crate::store::Store;

pub struct Api {
    store: Store,
    base_domain: String,
    /// Seals git credentials before they are stored.
    secret_key: SecretKey,
    ledger: Addr<Ledger>,
    registry: Addr<NodeRegistry>,
    reconciler: Addr<Reconciler>,
}

impl Api {
    pub fn new(
        store: Store,
        base_domain: String,
        secret_key: SecretKey,
        ledger: Addr<Ledger>,
        registry: Addr<NodeRegistry>,
        reconciler: Addr<Reconciler>,
    ) -> Self {
        Api {
            store,
            base_domain,
            secret_key,
            ledger,
            registry,
            reconciler,
        }
    }
}

impl Actor for Api {
    type Context = Context<Self>;
}

fn app_not_found(name: &str) -> Error {
    Error::NotFound(format!("app {name:?} not found"))
}

async fn load_app(store: &Store, name: &str) -> Result<App> {
    store
        .get_app(name)
        .await?
        .ok_or_else(|| app_not_found(name))
}

/// The first line of a commit message.
fn subject(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Records a new deployment, starts watching it, and cancels the app's older unfinished ones:
/// the newest deployment of an app wins. An older one whose node already claimed the switch
/// (`berth:fate:<id>` = `switch`) is left to finish; the newer one replaces it right after.
async fn queue_deployment(
    store: &Store,
    ledger: &Addr<Ledger>,
    reconciler: &Addr<Reconciler>,
    create: ledger::Create,
) -> Result<Deployment> {
    let d = ledger.send(create).await??;
    reconciler.do_send(Track(d.id.clone()));
    for old in store.list_deployments(&d.app, 100).await? {
        let older = (old.created_at, &old.id) < (d.created_at, &d.id);
        if !older || old.status.is_terminal() {
            continue;
        }
        if store
            .claim_once(
                &keys::deployment_fate(&old.id),
                keys::FATE_CANCEL,
                FATE_TTL_S,
            )
            .await?
        {
            ledger
                .send(Transition {
                    id: old.id.clone(),
                    status: Some(DeploymentStatus::Cancelled),
                    error: Some(format!("superseded by {}", d.id)),
                    ..Default::default()
                })
                .await??;
        }
    }
    Ok(d)
}

/// How long a deployment's fate key lives (far beyond any deployment's deadline).
const FATE_TTL_S: u64 = 7 * 24 * 3600;

/// Fails when another app already serves one of `app`'s domains.
async fn check_domains_free(store: &Store, app: &App) -> Result<()> {
    for other in store.list_apps().await? {
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

/// `POST /api/v1/apps`.
#[derive(Message)]
#[rtype(result = "Result<App>")]
pub struct CreateApp(pub api::CreateApp);

/// `GET /api/v1/apps`.
#[derive(Message)]
#[rtype(result = "Result<Vec<App>>")]
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

/// `POST /api/v1/apps/{name}/deployments`.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct CreateDeployment(pub String, pub api::CreateDeployment);

/// `GET /api/v1/apps/{name}/deployments`, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<Deployment>>")]
pub struct ListDeployments(pub String);

/// `GET /api/v1/deployments/{id}`.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct GetDeployment(pub String);

/// A verified GitHub `push` delivery (the signature was checked by web/ over the raw body).
#[derive(Message)]
#[rtype(result = "Result<api::WebhookOutcome>")]
pub struct GithubPush {
    /// `X-GitHub-Delivery`: deduplicated in Redis for a week.
    pub delivery: String,
    pub push: crate::webhook::Push,
}

/// `POST /api/v1/apps/{name}/rollback`.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct Rollback(pub String, pub api::Rollback);

/// `GET /api/v1/apps/{name}/releases`, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<Release>>")]
pub struct ListReleases(pub String);

/// `POST /api/v1/deployments/{id}/cancel`.
#[derive(Message)]
#[rtype(result = "Result<Deployment>")]
pub struct Cancel(pub String);

/// `GET /api/v1/nodes`.
#[derive(Message)]
#[rtype(result = "Result<Vec<NodeView>>")]
pub struct ListNodes;

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
    type Result = ResponseFuture<Result<Vec<App>>>;

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
        AtomicResponse::new(Box::pin(
            async move {
                let app = load_app(&store, &msg.0).await?;
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
                for d in store.list_deployments(&app.name, usize::MAX).await? {
                    if !d.status.is_terminal() {
                        ledger
                            .send(Transition {
                                id: d.id,
                                status: Some(DeploymentStatus::Cancelled),
                                error: Some("the app was deleted".into()),
                                ..Default::default()
                            })
                            .await??;
                    }
                }
                // Every node that may run a container of the app cleans up after it.
                let job = Job::RemoveApp {
                    app: app.name.clone(),
                    domains: app.domains.clone(),
                };
                for node in registry.send(Nodes).await?? {
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

impl Handler<CreateDeployment> for Api {
    type Result = ResponseFuture<Result<Deployment>>;

    fn handle(&mut self, msg: CreateDeployment, _: &mut Context<Self>) -> Self::Result {
        let (store, ledger, reconciler) = (
            self.store.clone(),
            self.ledger.clone(),
            self.reconciler.clone(),
        );
        Box::pin(async move {
            let app = load_app(&store, &msg.0).await?;
            if let Some(r) = &msg.1.git_ref {
                validate::git_ref("ref", r).map_err(Error::BadRequest)?;
            }
            let create = ledger::Create {
                app: app.name,
                git_ref: msg.1.git_ref,
                ..Default::default()
            };
            queue_deployment(&store, &ledger, &reconciler, create).await
        })
    }
}

impl Handler<ListDeployments> for Api {
    type Result = ResponseFuture<Result<Vec<Deployment>>>;

    fn handle(&mut self, msg: ListDeployments, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            load_app(&store, &msg.0).await?;
            store.list_deployments(&msg.0, 100).await
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
                .ok_or_else(|| Error::NotFound(format!("deployment {:?} not found", msg.0)))
        })
    }
}

/// How long a delivery id is remembered (GitHub lets people redeliver from its page).
const DELIVERY_TTL_S: u64 = 7 * 24 * 3600;

impl Handler<GithubPush> for Api {
    type Result = ResponseFuture<Result<api::WebhookOutcome>>;

    fn handle(&mut self, msg: GithubPush, _: &mut Context<Self>) -> Self::Result {
        use crate::webhook::{normalize_repo, PushAction};
        let (store, ledger, reconciler) = (
            self.store.clone(),
            self.ledger.clone(),
            self.reconciler.clone(),
        );
        Box::pin(async move {
            let outcome = |message: String| api::WebhookOutcome {
                deployments: Vec::new(),
                message,
            };
            if !store
                .claim_once(&keys::webhook_delivery(&msg.delivery), "1", DELIVERY_TTL_S)
                .await?
            {
                return Ok(outcome(format!(
                    "delivery {} was handled before; nothing queued",
                    msg.delivery
                )));
            }
            let (branch, commit) = match msg.push.action() {
                PushAction::Ignore(reason) => return Ok(outcome(reason)),
                PushAction::Deploy { branch, commit } => (branch, commit),
            };
            let repo_keys = msg.push.repo_keys();
            let mut queued = Vec::new();
            for app in store.list_apps().await? {
                if app.branch != branch
                    || !app.auto_deploy
                    || !repo_keys.contains(&normalize_repo(&app.repo))
                {
                    continue;
                }
                let head = msg.push.head_commit.as_ref();
                let d = queue_deployment(
                    &store,
                    &ledger,
                    &reconciler,
                    ledger::Create {
                        app: app.name,
                        git_ref: Some(commit.clone()),
                        commit_message: head.map(|h| subject(&h.message)),
                        commit_author: head
                            .and_then(|h| h.author.as_ref())
                            .map(|a| format!("{} <{}>", a.name, a.email)),
                        ..Default::default()
                    },
                )
                .await?;
                queued.push(d.id);
            }
            let message = if queued.is_empty() {
                format!("no app with auto_deploy follows this repository's branch {branch}")
            } else {
                format!(
                    "queued {} deployment(s) of {}",
                    queued.len(),
                    &commit[..commit.len().min(12)]
                )
            };
            Ok(api::WebhookOutcome {
                deployments: queued,
                message,
            })
        })
    }
}

/// An app's releases: its newest succeeded deployments, `keep_releases` at most, newest first;
/// the first is the one serving.
async fn releases(store: &Store, app: &App) -> Result<Vec<Release>> {
    let mut out: Vec<Release> = Vec::new();
    for d in store.list_deployments(&app.name, 100).await? {
        if out.len() >= app.keep_releases as usize {
            break;
        }
        if d.status != DeploymentStatus::Succeeded {
            continue;
        }
        let Some(image) = d.image else { continue };
        out.push(Release {
            current: out.is_empty(),
            deployment: d.id,
            kind: d.kind,
            image,
            commit: d.commit,
            commit_message: d.commit_message,
            released_at: d.finished_at.unwrap_or(d.created_at),
            runtime: d.runtime,
        });
    }
    Ok(out)
}

impl Handler<ListReleases> for Api {
    type Result = ResponseFuture<Result<Vec<Release>>>;

    fn handle(&mut self, msg: ListReleases, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let app = load_app(&store, &msg.0).await?;
            releases(&store, &app).await
        })
    }
}

impl Handler<Rollback> for Api {
    type Result = ResponseFuture<Result<Deployment>>;

    fn handle(&mut self, msg: Rollback, _: &mut Context<Self>) -> Self::Result {
        let (store, ledger, reconciler) = (
            self.store.clone(),
            self.ledger.clone(),
            self.reconciler.clone(),
        );
        Box::pin(async move {
            let app = load_app(&store, &msg.0).await?;
            let rels = releases(&store, &app).await?;
            let target = match &msg.1.to {
                Some(to) => rels.into_iter().find(|r| &r.deployment == to).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "{to:?} is not a release of {} that can be rolled back to; see GET /api/v1/apps/{}/releases",
                        app.name, app.name
                    ))
                })?,
                None => rels.into_iter().nth(1).ok_or_else(|| {
                    Error::Conflict(format!(
                        "{} has no release before the current one to roll back to",
                        app.name
                    ))
                })?,
            };
            let create = ledger::Create {
                app: app.name.clone(),
                kind: DeploymentKind::Rollback,
                rollback_of: Some(target.deployment.clone()),
                image: Some(target.image.clone()),
                commit: target.commit.clone(),
                runtime: target.runtime.clone(),
                commit_message: target.commit_message.clone(),
                ..Default::default()
            };
            let d = queue_deployment(&store, &ledger, &reconciler, create).await?;
            Ok(d)
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
                    .ok_or_else(|| Error::NotFound(format!("deployment {id:?} not found")))?;
                if d.status.is_terminal() {
                    return Err(Error::Conflict(format!(
                        "deployment {id} is {} already; nothing to cancel",
                        d.status
                    )));
                }
                if !store
                    .claim_once(&keys::deployment_fate(&id), keys::FATE_CANCEL, FATE_TTL_S)
                    .await?
                {
                    return Err(Error::Conflict(format!(
                        "deployment {id} is switching traffic already; roll back instead"
                    )));
                }
                ledger
                    .send(Transition {
                        id: id.clone(),
                        status: Some(DeploymentStatus::Cancelled),
                        error: Some("cancelled on request".into()),
                        ..Default::default()
                    })
                    .await??;
                store
                    .get_deployment(&id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("deployment {id:?} not found")))
            }
            .into_actor(self),
        ))
    }
}

impl Handler<ListNodes> for Api {
    type Result = ResponseFuture<Result<Vec<NodeView>>>;

    fn handle(&mut self, _: ListNodes, _: &mut Context<Self>) -> Self::Result {
        let registry = self.registry.clone();
        Box::pin(async move { registry.send(Nodes).await? })
    }
}

/// `GET /api/v1/apps/{name}/metrics?window=…`: the app's samples of the window (default 15m,
/// at most 1h; a bad window is a 400).
#[derive(Message)]
#[rtype(result = "Result<berth_protocol::metrics::AppMetrics>")]
pub struct GetAppMetrics {
    pub app: String,
    pub window: Option<String>,
}

/// `GET /metrics`: the cluster's Prometheus families, read from Redis now.
#[derive(Message)]
#[rtype(result = "Result<Vec<prometheus::proto::MetricFamily>>")]
pub struct ClusterMetrics;

impl Handler<GetAppMetrics> for Api {
    type Result = ResponseFuture<Result<berth_protocol::metrics::AppMetrics>>;

    fn handle(&mut self, msg: GetAppMetrics, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let window_s = berth_protocol::metrics::parse_window(msg.window.as_deref())
                .map_err(Error::BadRequest)?;
            let app = load_app(&store, &msg.app).await?;
            let now = berth_protocol::now_ms();
            crate::metrics::app_metrics(&store, &app.name, window_s, now).await
        })
    }
}

impl Handler<ClusterMetrics> for Api {
    type Result = ResponseFuture<Result<Vec<prometheus::proto::MetricFamily>>>;

    fn handle(&mut self, _: ClusterMetrics, _: &mut Context<Self>) -> Self::Result {
        let (store, registry) = (self.store.clone(), self.registry.clone());
        Box::pin(async move {
            let nodes = registry.send(Nodes).await??;
            crate::metrics::families(&store, &nodes).await
        })
    }
}
