//! Apps: create, list, show, patch, delete.
//!
//! Creating an app, and changing its repository or branch, first checks that the
//! repository and branch can be reached ([`git_check`], up to 15 s): outside the actor's
//! one-at-a-time section, which then stores the change.
//!
//! Deleting an app decides the fate of its unfinished deployments (`cancel`, set NX like a
//! cancel, so a deployment between its health check and its switch never takes traffic), then
//! has every node remove the app's routes, containers and images, then deletes its records.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use berth_bus::Live;
use berth_protocol::api::{
    self, app_status, app_urls, AppStatus, AppView, Ingress, LatestDeployment,
};
use berth_protocol::secret::{seal_webhook_secret, GitCredential};
use berth_protocol::{keys, repo_url, App, DeploymentStatus, Job, NodeStatus, Route};
use serde::ser::SerializeSeq;
use serde::Serialize;

use super::{load_app, Api};
use crate::error::{Error, Result};
use crate::ledger::{self, Transition};
use crate::registry::{NodeRegistry, Nodes, NodesNow};
use crate::store::{PutApp, Store};
use crate::{apps, git_check};

/// `POST /api/v1/apps`.
#[derive(Message)]
#[rtype(result = "Result<AppView>")]
pub struct CreateApp(pub api::CreateApp);

/// `GET /api/v1/apps`.
#[derive(Message)]
#[rtype(result = "Result<AppViews>")]
pub struct ListApps;

/// `GET /api/v1/apps/{name}`.
#[derive(Message)]
#[rtype(result = "Result<AppView>")]
pub struct GetApp(pub String);

/// `PATCH /api/v1/apps/{name}`.
#[derive(Message)]
#[rtype(result = "Result<AppView>")]
pub struct PatchApp(pub String, pub api::PatchApp);

/// What an app's answers add to its record (the fields of [`AppView`] beside `app`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Derived {
    urls: Vec<String>,
    status: AppStatus,
    release: Option<String>,
    latest: Option<LatestDeployment>,
}

/// The answer of `GET /apps`: the (cached, shared) app list and what is derived for each app,
/// serialized as a list of [`AppView`] without copying the records.
pub struct AppViews {
    apps: Arc<Vec<App>>,
    derived: Vec<Derived>,
}

impl Serialize for AppViews {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct ViewRef<'a> {
            #[serde(flatten)]
            app: &'a App,
            #[serde(flatten)]
            derived: &'a Derived,
        }
        let mut seq = s.serialize_seq(Some(self.apps.len()))?;
        for (app, derived) in self.apps.iter().zip(&self.derived) {
            seq.serialize_element(&ViewRef { app, derived })?;
        }
        seq.end()
    }
}

/// How apps' URLs reach them: the ingress (HTTPS port, or plain HTTP port) most ready nodes
/// report (ties: plain HTTP, then the lowest port); of every known node when none is ready;
/// plain HTTP on `fallback` (the coordinator's `node.ingress_http`) when no node is known.
pub(crate) fn ingress(nodes: &[api::NodeView], fallback: u16) -> Ingress {
    let most_common = |ready_only: bool| {
        let mut counts: BTreeMap<Ingress, usize> = BTreeMap::new();
        for n in nodes {
            if !ready_only || n.status == NodeStatus::Ready {
                *counts.entry(Ingress::of(&n.info)).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(port, _)| port)
    };
    most_common(true)
        .or_else(|| most_common(false))
        .unwrap_or(Ingress::http(fallback))
}

/// The deployment whose containers are most of a route's upstreams (ties: the newest id, ids
/// being time-ordered); `None` when nothing serves.
pub(crate) fn serving_deployment(route: &Route) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for u in &route.upstreams {
        *counts.entry(u.deployment.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)))
        .map(|(id, _)| id.to_string())
}

/// What `app`'s answers add to it, given its newest deployment and the route of its first
/// domain.
pub(crate) fn derive(
    app: &App,
    port: Ingress,
    latest: Option<LatestDeployment>,
    route: Option<&Route>,
) -> Derived {
    let release = route
        .filter(|r| r.app == app.name)
        .and_then(serving_deployment);
    Derived {
        urls: app_urls(&app.domains, port),
        status: match app.stopped {
            true => AppStatus::Stopped,
            false => app_status(latest.as_ref().map(|l| l.status), release.is_some()),
        },
        release,
        latest,
    }
}

/// Derives the views of `apps`: three reads (the fleet snapshot, one HMGET of the newest
/// deployments, one of the routes), however many apps there are.
async fn derive_all(
    store: &Store,
    registry: &Live<NodeRegistry>,
    fallback_port: u16,
    apps: &[App],
) -> Result<Vec<Derived>> {
    let nodes = registry.send(Nodes).await??;
    let port = ingress(&nodes, fallback_port);
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    let latest = store.latest_deployments(&names).await?;
    let domains: Vec<&str> = apps
        .iter()
        .map(|a| a.domains.first().map(String::as_str).unwrap_or(""))
        .collect();
    let routes = store.routes_of(&domains).await?;
    Ok(apps
        .iter()
        .zip(latest)
        .zip(routes)
        .map(|((app, latest), route)| derive(app, port, latest, route.as_ref()))
        .collect())
}

/// One app's view.
async fn view_of(
    store: &Store,
    registry: &Live<NodeRegistry>,
    fallback_port: u16,
    app: App,
) -> Result<AppView> {
    let d = derive_all(store, registry, fallback_port, std::slice::from_ref(&app))
        .await?
        .pop()
        .expect("one app, one view");
    Ok(AppView {
        app,
        urls: d.urls,
        status: d.status,
        release: d.release,
        latest: d.latest,
    })
}

/// `DELETE /api/v1/apps/{name}`.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct DeleteApp(pub String);

/// Fails when another app already has one of `app`'s domains, in any case (one HMGET of the
/// domain index). The quick refusal before the git check; the write checks again, atomically.
async fn check_domains_free(store: &Store, app: &App) -> Result<()> {
    let owners = store.domain_owners(&app.domains).await?;
    for (d, owner) in app.domains.iter().zip(owners) {
        if let Some(owner) = owner.filter(|o| *o != app.name) {
            return Err(taken(d, &owner));
        }
    }
    Ok(())
}

fn taken(domain: &str, owner: &str) -> Error {
    Error::Conflict(format!(
        "domain {domain} is already used by app {owner} (domains are compared ignoring case)"
    ))
}

/// Cancels the app's unfinished deployments like a cancel does: each node stops its job before
/// the switch (a job that claimed the switch already finishes it).
pub(super) async fn cancel_unfinished(
    store: &Store,
    ledger: &Live<ledger::Ledger>,
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

/// Queues `job` on every node the registry knows (each may run a container of the app).
pub(super) async fn to_every_node(
    store: &Store,
    registry: &Live<NodeRegistry>,
    job: &Job,
) -> Result<()> {
    for node in registry.send(NodesNow).await?? {
        store
            .send_job(&node.info.name, &ledger::new_id(), job)
            .await?;
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
    type Result = ResponseFuture<Result<AppView>>;

    /// Validates and checks the repository outside the actor's one-at-a-time section (the git
    /// check may take seconds), then stores the app in it.
    fn handle(&mut self, msg: CreateApp, ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let base = self.base_domain.clone();
        let reserved = self.reserved_domains.clone();
        let allow_local = self.allow_local_repos;
        let addr = ctx.address();
        Box::pin(async move {
            let app = apps::build(msg.0.clone(), &base, &reserved).map_err(Error::BadRequest)?;
            // No repository: the app deploys uploads only, and there is nothing to reach.
            let has_repo = !app.repo.is_empty();
            if !has_repo && msg.0.git_credential.is_some() {
                return Err(no_repo_for_credential());
            }
            if has_repo {
                repo_url::check(&app.repo, allow_local, app.git_credential.as_deref())
                    .map_err(Error::BadRequest)?;
            }
            // The quick refusals first; the atomic part checks again.
            if store.get_app(&app.name).await?.is_some() {
                return Err(exists(&app.name));
            }
            check_domains_free(&store, &app).await?;
            let learned = if has_repo {
                git_check::check(
                    &app.repo,
                    &app.branch,
                    msg.0.git_credential.as_ref(),
                    allow_local,
                )
                .await
                .map_err(Error::Unprocessable)?
            } else {
                None
            };
            let mut req = msg.0;
            // Trust on first use: the SSH host keys the check saw are pinned from now on.
            if let (Some(pinned), Some(c)) = (learned, &req.git_credential) {
                req.git_credential = Some(c.with_known_hosts(pinned));
            }
            addr.send(StoreNewApp(req)).await?
        })
    }
}

fn no_repo_for_credential() -> Error {
    Error::BadRequest(
        "git_credential needs a repo: an app without one deploys only uploaded directories".into(),
    )
}

fn exists(name: &str) -> Error {
    Error::Conflict(format!("an app named {name:?} exists already"))
}

/// The part of a create that runs one at a time with the other app changes.
#[derive(Message)]
#[rtype(result = "Result<AppView>")]
struct StoreNewApp(api::CreateApp);

impl Handler<StoreNewApp> for Api {
    type Result = AtomicResponse<Self, Result<AppView>>;

    fn handle(&mut self, msg: StoreNewApp, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let (registry, port) = (self.registry.clone(), self.ingress_http);
        let base = self.base_domain.clone();
        let reserved = self.reserved_domains.clone();
        let key = self.secret_key.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let sealed = msg
                    .0
                    .git_credential
                    .as_ref()
                    .map(|c| c.seal(&key, &msg.0.name));
                let hook = msg
                    .0
                    .webhook_secret
                    .as_deref()
                    .map(|s| seal_webhook_secret(&key, &msg.0.name, s));
                let mut app = apps::build(msg.0, &base, &reserved).map_err(Error::BadRequest)?;
                // The record says the app has its own webhook secret only once the secret is
                // stored (below): a crash in between leaves the app on the shared endpoint.
                app.webhook_secret = false;
                match store.put_app_domains(&app, true, &[]).await? {
                    PutApp::Stored => {}
                    PutApp::Exists => return Err(exists(&app.name)),
                    PutApp::Taken { domain, owner } => return Err(taken(&domain, &owner)),
                }
                store.put_credential(&app.name, sealed.as_ref()).await?;
                if let Some(h) = &hook {
                    store.put_webhook_secret(&app.name, Some(h)).await?;
                    app.webhook_secret = true;
                    store.put_app(&app, false).await?;
                }
                store
                    .confirm(
                        &format!("app {} was created", app.name),
                        &format!(
                            "look for it (`berth apps show {}`) before creating it again",
                            app.name
                        ),
                    )
                    .await?;
                view_of(&store, &registry, port, app).await
            }
            .into_actor(self),
        ))
    }
}

impl Handler<ListApps> for Api {
    type Result = ResponseFuture<Result<AppViews>>;

    fn handle(&mut self, _: ListApps, _: &mut Context<Self>) -> Self::Result {
        let (store, registry, port) =
            (self.store.clone(), self.registry.clone(), self.ingress_http);
        Box::pin(async move {
            let apps = store.list_apps().await?;
            let derived = derive_all(&store, &registry, port, &apps).await?;
            Ok(AppViews { apps, derived })
        })
    }
}

impl Handler<GetApp> for Api {
    type Result = ResponseFuture<Result<AppView>>;

    fn handle(&mut self, msg: GetApp, _: &mut Context<Self>) -> Self::Result {
        let (store, registry, port) =
            (self.store.clone(), self.registry.clone(), self.ingress_http);
        Box::pin(async move {
            let app = load_app(&store, &msg.0).await?;
            view_of(&store, &registry, port, app).await
        })
    }
}

impl Handler<PatchApp> for Api {
    type Result = ResponseFuture<Result<AppView>>;

    /// When the repository or branch changes, checks that they can be reached (with the
    /// credential the app will have — none when the repository moves to another host and none
    /// is given again; outside the one-at-a-time section), then patches in it.
    fn handle(&mut self, mut msg: PatchApp, ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let key = self.secret_key.clone();
        let reserved = self.reserved_domains.clone();
        let allow_local = self.allow_local_repos;
        let addr = ctx.address();
        Box::pin(async move {
            let p = &msg.1;
            // Only a change of where the source is: a credential can always be replaced or
            // removed (revoking a leaked token must not depend on the remote).
            let reaches = p.repo.is_some() || p.branch.is_some();
            if reaches || p.git_credential.is_some() {
                // Where the credential would go: a new one is never sent over plain http://.
                let app = load_app(&store, &msg.0).await?;
                let patched = apps::patch(app, p.clone(), &reserved).map_err(Error::BadRequest)?;
                if patched.repo.is_empty() {
                    if p.git_credential.is_some() {
                        return Err(no_repo_for_credential());
                    }
                    return addr.send(StorePatch(msg.0, msg.1)).await?;
                }
                repo_url::check(
                    &patched.repo,
                    allow_local,
                    patched.git_credential.as_deref(),
                )
                .map_err(Error::BadRequest)?;
            }
            if reaches {
                let app = load_app(&store, &msg.0).await?;
                let drops = apps::drops_credential(&app, p);
                let patched = apps::patch(app, p.clone(), &reserved).map_err(Error::BadRequest)?;
                check_domains_free(&store, &patched).await?;
                let stored;
                let remove = p.remove_git_credential == Some(true) || drops;
                let cred = match (&p.git_credential, remove) {
                    (Some(c), _) => Some(c),
                    (None, true) => None,
                    (None, false) => {
                        // The coordinator opens the stored credential for this check only.
                        stored = match store.get_credential(&msg.0).await? {
                            Some(sealed) => Some(
                                GitCredential::open(&key, &msg.0, &sealed)
                                    .map_err(Error::Internal)?,
                            ),
                            None => None,
                        };
                        stored.as_ref()
                    }
                };
                let learned = git_check::check(&patched.repo, &patched.branch, cred, allow_local)
                    .await
                    .map_err(Error::Unprocessable)?;
                // Trust on first use: the SSH host keys the check saw are pinned in the
                // credential stored with the patch (the given one, or the stored one again).
                if let (Some(pinned), Some(c)) = (learned, cred) {
                    let pinned = c.with_known_hosts(pinned);
                    msg.1.git_credential = Some(pinned);
                }
            }
            addr.send(StorePatch(msg.0, msg.1)).await?
        })
    }
}

/// The part of a patch that runs one at a time with the other app changes.
#[derive(Message)]
#[rtype(result = "Result<AppView>")]
struct StorePatch(String, api::PatchApp);

impl Handler<StorePatch> for Api {
    type Result = AtomicResponse<Self, Result<AppView>>;

    fn handle(&mut self, msg: StorePatch, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let (registry, port) = (self.registry.clone(), self.ingress_http);
        let key = self.secret_key.clone();
        let reserved = self.reserved_domains.clone();
        let (ledger, reconciler) = (self.ledger.clone(), self.reconciler.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let app = load_app(&store, &msg.0).await?;
                let from = app.replicas;
                let old_domains = app.domains.clone();
                let new_credential = msg.1.git_credential.as_ref().map(|c| c.seal(&key, &msg.0));
                let new_hook = msg
                    .1
                    .webhook_secret
                    .as_deref()
                    .map(|s| seal_webhook_secret(&key, &msg.0, s));
                // A repository on another host does not get the credential of the old one.
                let remove = msg.1.remove_git_credential == Some(true)
                    || apps::drops_credential(&app, &msg.1);
                let had_hook = app.webhook_secret;
                let app = apps::patch(app, msg.1, &reserved).map_err(Error::BadRequest)?;
                // A new secret is stored before the record that says the app has one; a removed
                // one goes after the record that says it has none.
                if let Some(h) = &new_hook {
                    store.put_webhook_secret(&app.name, Some(h)).await?;
                }
                if app.domains == old_domains {
                    if new_credential.is_some() || remove {
                        store
                            .put_credential(&app.name, new_credential.as_ref())
                            .await?;
                    }
                    store.put_app(&app, false).await?;
                } else {
                    // The record with its domains first: a refusal leaves the app as it was,
                    // credential included.
                    match store.put_app_domains(&app, false, &old_domains).await? {
                        PutApp::Stored | PutApp::Exists => {}
                        PutApp::Taken { domain, owner } => return Err(taken(&domain, &owner)),
                    }
                    if new_credential.is_some() || remove {
                        store
                            .put_credential(&app.name, new_credential.as_ref())
                            .await?;
                    }
                }
                if had_hook && !app.webhook_secret {
                    store.put_webhook_secret(&app.name, None).await?;
                }
                if app.domains != old_domains && !app.stopped {
                    move_routes(&store, &old_domains, &app.domains).await?;
                }
                // A stopped app takes the count with it when it starts.
                if app.replicas != from && !app.stopped {
                    crate::failover::scale(&store, &ledger, &reconciler, &app, from).await?;
                }
                store
                    .confirm(
                        &format!("the change of app {} was stored", app.name),
                        &format!(
                            "look at the app (`berth apps show {}`) and send the change again if it is not there",
                            app.name
                        ),
                    )
                    .await?;
                view_of(&store, &registry, port, app).await
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
                to_every_node(&store, &registry, &job).await?;
                store.delete_app(&app.name, &app.domains).await?;
                store
                    .confirm(
                        &format!("app {} was deleted", app.name),
                        "a failover of Redis now could bring it back: delete it again if `berth apps list` shows it",
                    )
                    .await
            }
            .into_actor(self),
        ))
    }
}

#[cfg(test)]
mod tests {
    use berth_protocol::api::NodeView;
    use berth_protocol::{DeploymentKind, Upstream};

    use super::*;

    fn node(port: u16, status: NodeStatus) -> NodeView {
        let mut info = crate::registry::tests::node_info();
        info.ingress_http = port;
        NodeView {
            info,
            status,
            cordoned: false,
        }
    }

    fn route(app: &str, deployments: &[&str]) -> Route {
        let upstreams = deployments
            .iter()
            .enumerate()
            .map(|(i, d)| Upstream {
                dial: format!("127.0.0.1:{}", 30000 + i),
                node: "n".into(),
                container: format!("c{i}"),
                deployment: d.to_string(),
            })
            .collect();
        Route {
            domain: format!("{app}.localhost"),
            app: app.into(),
            upstreams,
            updated_at: 1,
            drain_s: None,
            standby: vec![],
            standby_until: 0,
        }
    }

    #[test]
    fn the_ingress_is_the_most_common_among_ready_nodes() {
        use NodeStatus::*;
        let ingress_port = |nodes: &[NodeView], fallback| {
            let i = ingress(nodes, fallback);
            assert!(!i.https);
            i.port
        };
        assert_eq!(ingress_port(&[], 8080), 8080, "no node: the configured one");
        let nodes = [
            node(81, Ready),
            node(8080, Ready),
            node(8080, Ready),
            node(9000, Down),
            node(9000, Down),
            node(9000, Suspect),
        ];
        assert_eq!(ingress_port(&nodes, 1), 8080);
        assert_eq!(ingress_port(&nodes[..2], 1), 81, "a tie: the lowest");
        assert_eq!(ingress_port(&nodes[3..], 1), 9000, "none ready: all count");
        assert_eq!(ingress_port(&[node(80, Ready)], 8080), 80);
        // Nodes with HTTPS: their HTTPS port, when most ready nodes have it.
        let tls = |port, https, status| {
            let mut n = node(port, status);
            n.info.ingress_https = Some(https);
            n
        };
        let fleet = [tls(80, 443, Ready), tls(80, 443, Ready), node(80, Ready)];
        assert_eq!(
            ingress(&fleet, 1),
            Ingress {
                https: true,
                port: 443
            }
        );
        assert_eq!(
            ingress(&fleet[1..], 1),
            Ingress::http(80),
            "a tie: plain HTTP"
        );
    }

    #[test]
    fn the_release_is_the_deployment_with_most_upstreams() {
        assert_eq!(serving_deployment(&route("a", &[])), None);
        assert_eq!(
            serving_deployment(&route("a", &["d1", "d2", "d2"])).as_deref(),
            Some("d2")
        );
        assert_eq!(
            serving_deployment(&route("a", &["d2", "d1"])).as_deref(),
            Some("d2"),
            "a tie: the newest"
        );
    }

    #[test]
    fn a_view_derives_urls_status_and_release() {
        let app = crate::apps::tests::app();
        let latest = LatestDeployment {
            id: "d9".into(),
            kind: DeploymentKind::Deploy,
            status: DeploymentStatus::Failed,
            created_at: 5,
        };
        let r = route(&app.name, &["d1"]);
        let d = derive(&app, Ingress::http(8080), Some(latest.clone()), Some(&r));
        assert_eq!(d.urls, app_urls(&app.domains, Ingress::http(8080)));
        assert_eq!(d.status, AppStatus::Running);
        assert_eq!(d.release.as_deref(), Some("d1"));
        let d = derive(&app, Ingress::http(80), Some(latest), None);
        assert_eq!((d.status, d.release), (AppStatus::Failed, None));
        // Another app's route (not possible through the API) is not this app's release.
        let d = derive(
            &app,
            Ingress::http(80),
            None,
            Some(&route("other", &["d1"])),
        );
        assert_eq!(d.status, AppStatus::NotDeployed);
    }

    #[test]
    fn the_list_serializes_as_app_views() {
        let app = crate::apps::tests::app();
        let derived = derive(
            &app,
            Ingress::http(8080),
            None,
            Some(&route(&app.name, &["d1"])),
        );
        let views = AppViews {
            apps: Arc::new(vec![app.clone()]),
            derived: vec![derived.clone()],
        };
        let back: Vec<AppView> =
            serde_json::from_value(serde_json::to_value(&views).unwrap()).unwrap();
        assert_eq!(
            back,
            vec![AppView {
                app,
                urls: derived.urls,
                status: AppStatus::Running,
                release: Some("d1".into()),
                latest: None,
            }]
        );
    }
}
