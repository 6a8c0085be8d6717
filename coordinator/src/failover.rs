//! `Failover`: what the coordinator does when a node goes `down`.
//!
//! Every second it looks for down nodes. First their upstreams leave every route of the desired
//! table (`berth:routes`, published to every node's router), so no Caddy sends a request to a
//! dead server any more. Then each app that is left without a serving replica gets a deployment
//! of kind `failover`: the release that served there runs again on a ready node — placed by the
//! scheduler like any deployment (so never on the down node), its image pulled from the registry,
//! health-gated, and switched in like a rollback. An app with a deployment in flight is left to
//! it. One failover per lost replica: `berth:failover:<deployment>:<node>` is claimed `SET NX`.
//! [`drain`] moves replicas off a live node the same way (`berth nodes drain`): the new replica
//! is healthy and switched in before the old one drains, so no request fails.
//!
//! Nothing here is state of its own: a restarted coordinator finds the same down nodes and the
//! same routes in Redis, and the claim keeps it from queueing a failover twice.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use berth_bus::Live;
use berth_protocol::{keys, now_ms, App, DeploymentKind, NodeStatus, Rollout, Upstream};

use crate::error::{Error, Result};
use crate::ledger::{Create, Ledger};
use crate::reconciler::{Reconciler, Track};
use crate::registry::{NodeRegistry, Nodes};
use crate::store::Store;

/// How often down nodes are looked for.
const EVERY: Duration = Duration::from_secs(1);

pub struct Failover {
    store: Store,
    ledger: Live<Ledger>,
    registry: Live<NodeRegistry>,
    reconciler: Live<Reconciler>,
    /// Passes run only while this coordinator leads.
    leadership: crate::lease::Leadership,
    /// True while a pass runs, so passes never overlap.
    busy: bool,
    /// A run of failed passes, logged when it starts and ends (not every second).
    failing: berth_bus::Failing,
}

impl Failover {
    pub fn new(
        store: Store,
        ledger: Live<Ledger>,
        registry: Live<NodeRegistry>,
        reconciler: Live<Reconciler>,
        leadership: crate::lease::Leadership,
    ) -> Self {
        Failover {
            leadership,
            store,
            ledger,
            registry,
            reconciler,
            busy: false,
            failing: berth_bus::Failing::new("failover pass"),
        }
    }
}

impl Actor for Failover {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(EVERY, |act, ctx| {
            // Only the leading coordinator acts on lost nodes.
            if act.busy || !act.leadership.is_leader() {
                return;
            }
            act.busy = true;
            let fut = pass(
                act.store.clone(),
                act.ledger.clone(),
                act.registry.clone(),
                act.reconciler.clone(),
            );
            ctx.spawn(fut.into_actor(act).map(|res, act, _| {
                act.busy = false;
                match res {
                    Ok(()) => act.failing.ok(),
                    Err(e) => {
                        let away = matches!(e, Error::Unavailable(_));
                        act.failing.failed(&e, away)
                    }
                }
            }));
        });
    }
}

berth_bus::injectable!(Failover);

/// One look at the fleet: routes off down nodes, then a failover per app left unserved.
async fn pass(
    store: Store,
    ledger: Live<Ledger>,
    registry: Live<NodeRegistry>,
    reconciler: Live<Reconciler>,
) -> Result<()> {
    let nodes = registry.send(Nodes).await??;
    let down: HashSet<String> = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Down)
        .map(|n| n.info.name.clone())
        .collect();
    if down.is_empty() {
        return Ok(());
    }
    // App → the upstreams it lost, and how many it has left.
    let mut unserved: BTreeMap<String, (Vec<Upstream>, usize)> = BTreeMap::new();
    for mut route in store.routes().await? {
        let (lost, kept): (Vec<Upstream>, Vec<Upstream>) = route
            .upstreams
            .drain(..)
            .partition(|u| down.contains(&u.node));
        if lost.is_empty() {
            continue;
        }
        tracing::warn!(domain = %route.domain, upstreams = lost.len(), nodes = ?down, "taking a down node's upstreams out of the route");
        let left = kept.len();
        let domains = [route.domain.clone()];
        store
            .edit_routes(&domains, |cur| {
                let mut r = cur?;
                r.upstreams.retain(|u| !down.contains(&u.node));
                r.standby.retain(|u| !down.contains(&u.node));
                r.updated_at = now_ms();
                Some(r)
            })
            .await?;
        let entry = unserved.entry(route.app.clone()).or_default();
        entry.0.extend(lost);
        entry.1 = left;
    }
    for (app, (lost, left)) in unserved {
        let Some(up) = lost.first() else { continue };
        let Some(a) = store.get_app(&app).await? else {
            continue;
        };
        // One replica: only an app left unserved moves (its node switches it in). Several:
        // what is missing is started elsewhere (a rollout adding replicas).
        let rollout = match a.rolls_out() {
            true if left < a.replicas as usize => Some(Rollout::default()),
            false if left == 0 => None,
            _ => continue,
        };
        let reason = format!("node {} went down", up.node);
        if let Err(e) = reschedule(&store, &ledger, &reconciler, &app, up, &reason, rollout).await {
            tracing::warn!(%app, error = %e, "could not queue a failover");
        }
    }
    Ok(())
}

/// After the app's replica count changed: a `scale` deployment adds replicas of the serving
/// release (or takes the surplus out of the route). `None` when nothing serves the app yet (its
/// next deploy starts as many as it asks for).
pub(crate) async fn scale(
    store: &Store,
    ledger: &Live<Ledger>,
    reconciler: &Live<Reconciler>,
    app: &App,
    from: u32,
) -> Result<Option<String>> {
    let Some(route) = store.route(&app.domains[0]).await? else {
        return Ok(None);
    };
    let Some(up) = route.upstreams.first() else {
        return Ok(None);
    };
    let Some(serving) = store.get_deployment(&up.deployment).await? else {
        return Ok(None);
    };
    let d = ledger
        .send(Create {
            app: app.name.clone(),
            kind: DeploymentKind::Scale,
            rollback_of: Some(serving.id.clone()),
            image: serving.image.clone(),
            commit: serving.commit.clone(),
            commit_message: serving.commit_message.clone(),
            runtime: serving.runtime.clone(),
            reason: Some(format!(
                "scale from {from} to {} replica(s) of the release of {}",
                app.replicas, serving.id
            )),
            rollout: Some(Rollout::default()),
            ..Default::default()
        })
        .await??
        .deployment;
    reconciler.do_send(Track::new(d.clone()));
    Ok(Some(d.id))
}

/// Moves every replica off `node` (which the caller cordoned): each app served there gets a
/// `failover` deployment of its serving release on another node, switched in health-gated like a
/// rollback, after which the node stops its old container. Returns the deployments queued.
pub(crate) async fn drain(
    store: &Store,
    ledger: &Live<Ledger>,
    reconciler: &Live<Reconciler>,
    node: &str,
) -> Result<Vec<String>> {
    let mut queued = Vec::new();
    for route in store.routes().await? {
        let Some(up) = route.upstreams.iter().find(|u| u.node == node) else {
            continue;
        };
        let reason = format!("node {node} is being drained");
        let rollout = match store.get_app(&route.app).await? {
            Some(a) if a.rolls_out() => Some(Rollout {
                drain_node: Some(node.to_string()),
                ..Default::default()
            }),
            _ => None,
        };
        if let Some(id) =
            reschedule(store, ledger, reconciler, &route.app, up, &reason, rollout).await?
        {
            queued.push(id);
        }
    }
    Ok(queued)
}

/// Queues a `failover` deployment of the release `up` serves for `app`, somewhere else; `None`
/// when the app is gone, has a deployment in flight, or this replica was moved already.
async fn reschedule(
    store: &Store,
    ledger: &Live<Ledger>,
    reconciler: &Live<Reconciler>,
    app: &str,
    up: &Upstream,
    reason: &str,
    rollout: Option<Rollout>,
) -> Result<Option<String>> {
    if store.get_app(app).await?.is_none() {
        return Ok(None);
    }
    let in_flight = store
        .list_deployments(app, 20)
        .await?
        .into_iter()
        .any(|d| !d.status.is_terminal());
    if in_flight {
        return Ok(None);
    }
    let Some(serving) = store.get_deployment(&up.deployment).await? else {
        return Ok(None);
    };
    let Some(image) = serving.image.clone() else {
        return Ok(None);
    };
    let key = keys::failover_claim(&serving.id, &up.node);
    if !store.claim_once(&key, "queued", keys::MARKER_TTL_S).await? {
        return Ok(None);
    }
    let d = ledger
        .send(Create {
            app: app.to_string(),
            kind: DeploymentKind::Failover,
            rollback_of: Some(serving.id.clone()),
            image: Some(image),
            commit: serving.commit.clone(),
            commit_message: serving.commit_message.clone(),
            runtime: serving.runtime.clone(),
            reason: Some(reason.to_string()),
            rollout,
            ..Default::default()
        })
        .await??
        .deployment;
    tracing::warn!(%app, deployment = %d.id, node = %up.node, %reason, "replica moved");
    reconciler.do_send(Track::new(d.clone()));
    Ok(Some(d.id))
}
