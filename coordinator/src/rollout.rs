//! Rollouts: a deployment of an app with several replicas (or a standby release), driven by the
//! coordinator replica by replica.
//!
//! ```text
//! plan ─▶ place a slot ─▶ its node starts and probes it ─▶ switch it in ─▶ … ─▶ succeeded
//!              (at most `surge` at once)      │ a slot fails, a node dies, the deadline
//!                                             └──▶ the route goes back to `previous` ─▶ failed
//! ```
//! The plan (kept in the deployment record, [`Rollout`]) says how many replicas the app has at
//! the end (`target`), which upstreams of the route the new ones replace, and one slot per new
//! replica. A slot's job runs on the node it was placed on: pull or build, start, probe, report
//! healthy with where it serves (`DeploymentUpdate::replica`) — the node never touches the route.
//! The coordinator then switches it in: the route's desired state is computed from the plan and
//! written with a compare-and-set ([`Store::edit_routes`]), so a repeated tick (or a restarted
//! coordinator) writes the same route, never a second change. A replica it replaces leaves the
//! upstreams for the route's `standby` list, kept running until the rollout ends: a failure
//! restores `previous` by a route change alone. A deploy starts `surge` (`max_surge`) replicas
//! at a time, the first of them building the image; a rollback starts them all and switches
//! them together; a failover or a scale adds what is missing and removes what is replaced once
//! the new ones serve. At the end the replaced replicas stay on standby for the app's
//! `standby_s` (a rollback to them is then only a route change) or leave, and each node stops
//! what no route names after its drain time (`node/src/pipeline/retire.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use berth_bus::Live;
use berth_protocol::api::NodeView;
use berth_protocol::{
    keys, now_ms, App, Deployment, DeploymentKind, DeploymentStatus, DeploymentUpdate, LogStream,
    NodeStatus, Rollout, Route, Slot, SlotState, Upstream,
};

use crate::deployment::{Deadlines, Spec, ATTEMPTS};
use crate::error::Result;
use crate::ledger::{EditRollout, Ledger, Transition};
use crate::registry::{NodeRegistry, Place};
use crate::scheduler;
use crate::store::Store;

/// What a rollout step works with.
pub(crate) struct Ctx<'a> {
    pub store: &'a Store,
    pub ledger: &'a Live<Ledger>,
    pub registry: &'a Live<NodeRegistry>,
    pub dl: Deadlines,
    pub shared_images: bool,
    /// Whether this actor sent the jobs of the slots starting now (a fresh one re-sends them).
    pub sent: bool,
}

/// One step of a rollout; answers whether the deployment is terminal now.
pub(crate) async fn step(
    cx: &Ctx<'_>,
    mut d: Deployment,
    app: App,
    nodes: &Arc<Vec<NodeView>>,
) -> Result<bool> {
    let down: HashSet<&str> = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Down)
        .map(|n| n.info.name.as_str())
        .collect();
    let age = Duration::from_millis(now_ms().saturating_sub(d.created_at));
    if age > cx.dl.deploy_timeout + cx.dl.grace {
        let why = format!(
            "timed out after {}s while {}",
            cx.dl.deploy_timeout.as_secs(),
            d.status
        );
        return end(cx, &d, &app, &down, why).await;
    }
    let planned = d.rollout.as_ref().is_some_and(|r| r.planned);
    if !planned {
        // One rollout of an app at a time: a newer one waits for the older ones to end.
        let older = cx
            .store
            .list_deployments(&d.app, 20)
            .await?
            .into_iter()
            .any(|o| !o.status.is_terminal() && (o.created_at, &o.id) < (d.created_at, &d.id));
        if older {
            return Ok(false);
        }
        let route = cx.store.route(&app.domains[0]).await?;
        if d.kind == DeploymentKind::Rollback {
            if let Some(route) = &route {
                if standby_swap(cx, &d, &app, route).await? {
                    return Ok(true);
                }
            }
        }
        let drain_node = d.rollout.as_ref().and_then(|r| r.drain_node.clone());
        let plan = plan(&d, &app, route.as_ref(), &down, drain_node);
        let line = describe(&plan, &d);
        let Some(nd) = cx
            .ledger
            .send(EditRollout::new(&d.id, move |r| {
                if r.rollout.as_ref().is_some_and(|r| r.planned) {
                    return false;
                }
                r.rollout = Some(plan.clone());
                true
            }))
            .await??
        else {
            return Ok(false);
        };
        cx.store.append_log(&d.id, LogStream::System, &line).await?;
        d = nd;
    }
    let Some(ro) = d.rollout.clone() else {
        return Ok(false);
    };

    // A slot that failed, or whose node died before it served, ends the rollout.
    if let Some(s) = ro.slots.iter().find(|s| s.state == SlotState::Failed) {
        let why = format!(
            "replica r{} on node {} failed: {}",
            s.slot,
            s.node.as_deref().unwrap_or("?"),
            s.error.as_deref().unwrap_or("failed")
        );
        return end(cx, &d, &app, &down, why).await;
    }
    // A slot whose attempt an infrastructure fault interrupted — its node died before it
    // served, or reported it interrupted — starts again (a build is built again), up to its
    // last attempt.
    let lost: Vec<(u32, String, String)> = ro
        .slots
        .iter()
        .filter(|s| matches!(s.state, SlotState::Starting | SlotState::Ready))
        .filter_map(|s| {
            let node = s.node.clone()?;
            let cause = match &s.interrupted {
                Some(i) => format!(
                    "attempt {} of replica r{} on node {node} was interrupted ({})",
                    s.attempt + 1,
                    s.slot,
                    i.cause
                ),
                None if down.contains(node.as_str()) => format!(
                    "node {node} went down while replica r{} was starting",
                    s.slot
                ),
                None => return None,
            };
            Some((s.slot, node, cause, s.attempt))
        })
        .filter_map(|(slot, node, cause, attempt)| {
            (attempt + 1 < ATTEMPTS).then_some((slot, node, cause))
        })
        .collect();
    if let Some(s) = ro.slots.iter().find(|s| {
        s.interrupted.is_some()
            && s.attempt + 1 >= ATTEMPTS
            && matches!(s.state, SlotState::Starting | SlotState::Ready)
    }) {
        let why = format!(
            "attempt {} of replica r{} on node {} was interrupted ({}); that was its last attempt ({ATTEMPTS} in all)",
            s.attempt + 1,
            s.slot,
            s.node.as_deref().unwrap_or("?"),
            s.interrupted.as_ref().map(|i| i.cause.as_str()).unwrap_or("?")
        );
        return end(cx, &d, &app, &down, why).await;
    }
    if !lost.is_empty() {
        let again = lost.clone();
        let Some(nd) = cx
            .ledger
            .send(EditRollout::new(&d.id, move |r| {
                let dead: Vec<&String> = again.iter().map(|(_, n, _)| n).collect();
                if r.node.as_ref().is_some_and(|n| dead.contains(&n)) && r.image.is_none() {
                    r.node = None;
                }
                let Some(ro) = r.rollout.as_mut() else {
                    return false;
                };
                for (slot, node, _) in &again {
                    if let Some(s) = ro.slots.iter_mut().find(|s| s.slot == *slot) {
                        *s = Slot {
                            slot: *slot,
                            attempt: s.attempt + 1,
                            retry_from: Some(node.clone()),
                            ..Default::default()
                        };
                    }
                }
                true
            }))
            .await??
        else {
            return Ok(false);
        };
        for (slot, _, cause) in &lost {
            let attempt = nd
                .rollout
                .as_ref()
                .and_then(|ro| ro.slots.iter().find(|s| s.slot == *slot))
                .map_or(0, |s| s.attempt);
            let line = format!(
                "{cause}: it starts again (attempt {} of {ATTEMPTS}){}",
                attempt + 1,
                if *slot == 0 && nd.image.is_none() {
                    "; the image is built again"
                } else {
                    ""
                }
            );
            cx.store.append_log(&d.id, LogStream::System, &line).await?;
        }
        return Ok(false);
    }
    if let Some(s) = ro.slots.iter().find(|s| {
        matches!(
            s.state,
            SlotState::Starting | SlotState::Ready | SlotState::Serving
        ) && s.node.as_deref().is_some_and(|n| down.contains(n))
    }) {
        let why = format!(
            "node {} went down while replica r{} was {}",
            s.node.as_deref().unwrap_or("?"),
            s.slot,
            match s.state {
                SlotState::Serving => "serving",
                _ => "starting",
            }
        );
        return end(cx, &d, &app, &down, why).await;
    }

    // Switch in what is healthy: one by one, or (a rollback) all together.
    let ready: Vec<u32> = ro
        .slots
        .iter()
        .filter(|s| s.state == SlotState::Ready)
        .map(|s| s.slot)
        .collect();
    let together = matches!(d.kind, DeploymentKind::Rollback | DeploymentKind::Start);
    let all_ready = ro
        .slots
        .iter()
        .all(|s| matches!(s.state, SlotState::Ready | SlotState::Serving));
    if !ready.is_empty() && (!together || all_ready) {
        if !claim_switch(cx, &d).await? {
            return Ok(true);
        }
        let mut next = ro.clone();
        for s in next.slots.iter_mut().filter(|s| ready.contains(&s.slot)) {
            s.state = SlotState::Serving;
        }
        next.switched = true;
        let hold = d.created_at + (cx.dl.deploy_timeout + cx.dl.grace).as_millis() as u64;
        let route = write_route(cx, &app, &next, &down, Finish::Running { hold }).await?;
        let switching = ready.clone();
        let Some(nd) = cx
            .ledger
            .send(EditRollout::new(&d.id, move |r| {
                let ready = &switching;
                let Some(cur) = r.rollout.as_mut() else {
                    return false;
                };
                for s in cur.slots.iter_mut().filter(|s| ready.contains(&s.slot)) {
                    s.state = SlotState::Serving;
                }
                cur.switched = true;
                true
            }))
            .await??
        else {
            return Ok(false);
        };
        for s in nd.rollout.iter().flat_map(|r| &r.slots) {
            if let (true, Some(u)) = (ready.contains(&s.slot), &s.upstream) {
                let line = format!(
                    "replica r{} switched in: {} on node {} ({} serving)",
                    s.slot,
                    u.dial,
                    u.node,
                    route.as_ref().map_or(0, |r| r.upstreams.len())
                );
                cx.store.append_log(&d.id, LogStream::System, &line).await?;
            }
        }
        d = nd;
    }
    let Some(ro) = d.rollout.clone() else {
        return Ok(false);
    };
    if ro.slots.iter().all(|s| s.state == SlotState::Serving) {
        return finish(cx, &d, &app, &ro, &down).await;
    }

    // Start what the surge allows.
    let starting = ro
        .slots
        .iter()
        .filter(|s| matches!(s.state, SlotState::Starting | SlotState::Ready))
        .count() as u32;
    if !cx.sent {
        for s in ro.slots.iter().filter(|s| s.state == SlotState::Starting) {
            if let Some(node) = &s.node {
                send(cx, &d, &app, node, s).await?;
            }
        }
    }
    let room = ro.surge.saturating_sub(starting);
    let builds = d.kind == DeploymentKind::Deploy && d.image.is_none();
    let mut taken: Vec<Slot> = ro
        .slots
        .iter()
        .filter(|s| s.node.is_some())
        .cloned()
        .collect();
    for s in ro
        .slots
        .iter()
        .filter(|s| s.state == SlotState::Pending)
        .take(room as usize)
    {
        // The first slot of a deploy builds the image; the others wait for it.
        let build = builds && s.slot == 0;
        if builds && !build {
            break;
        }
        if builds && starting > 0 {
            break;
        }
        // A slot whose attempt was interrupted goes to another node where one can take it
        // (the fleet without that node is copied only then: it is every node's record).
        let elsewhere = match &s.retry_from {
            Some(from) => {
                let others: Arc<Vec<NodeView>> = Arc::new(
                    nodes
                        .iter()
                        .filter(|n| &n.info.name != from)
                        .cloned()
                        .collect(),
                );
                place(cx, &d, &app, &ro, &taken, &others, build).await?.ok()
            }
            None => None,
        };
        let placed = match elsewhere {
            Some(node) => Ok(node),
            None => place(cx, &d, &app, &ro, &taken, nodes, build).await?,
        };
        let node = match placed {
            Ok(node) => node,
            Err(why) if why.any_ready(nodes) => {
                let why = format!("cannot place replica r{}: {why}", s.slot);
                return end(cx, &d, &app, &down, why).await;
            }
            Err(why) if age > cx.dl.node_wait => {
                let why = format!(
                    "no ready node to run replica r{} for {}s ({why})",
                    s.slot,
                    cx.dl.node_wait.as_secs()
                );
                return end(cx, &d, &app, &down, why).await;
            }
            Err(_) => return Ok(false),
        };
        let (slot, n) = (s.slot, node.clone());
        let runtime = match &d.runtime {
            Some(r) => r.clone(),
            None => crate::deployment::runtime_of(cx.store, &app).await?,
        };
        let Some(nd) = cx
            .ledger
            .send(EditRollout::new(&d.id, move |r| {
                if r.runtime.is_none() {
                    r.runtime = Some(runtime.clone());
                }
                if r.node.is_none() {
                    r.node = Some(n.clone());
                }
                let Some(s) = r
                    .rollout
                    .as_mut()
                    .and_then(|ro| ro.slots.iter_mut().find(|s| s.slot == slot))
                else {
                    return false;
                };
                if s.state != SlotState::Pending {
                    return false;
                }
                s.state = SlotState::Starting;
                s.node = Some(n.clone());
                true
            }))
            .await??
        else {
            return Ok(false);
        };
        cx.store
            .append_log(
                &d.id,
                LogStream::System,
                &format!(
                    "replica r{slot}: scheduled on node {node}{}",
                    if build { " (it builds the image)" } else { "" }
                ),
            )
            .await?;
        let placed = nd
            .rollout
            .as_ref()
            .and_then(|r| r.slots.iter().find(|s| s.slot == slot))
            .cloned()
            .unwrap_or_default();
        send(cx, &nd, &app, &node, &placed).await?;
        taken.push(Slot {
            slot,
            node: Some(node),
            ..Default::default()
        });
        d = nd;
    }
    Ok(false)
}

/// The plan of a rollout from the app and its route now.
fn plan(
    d: &Deployment,
    app: &App,
    route: Option<&Route>,
    down: &HashSet<&str>,
    drain_node: Option<String>,
) -> Rollout {
    let current: Vec<Upstream> = route
        .map(|r| r.upstreams.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|u| !down.contains(u.node.as_str()))
        .collect();
    let target = app.replicas.max(1);
    let replace: Vec<Upstream> = match (d.kind, &drain_node) {
        (
            DeploymentKind::Deploy
            | DeploymentKind::Rollback
            | DeploymentKind::Restart
            | DeploymentKind::Start,
            _,
        ) => current.clone(),
        (_, Some(node)) => current
            .iter()
            .filter(|u| &u.node == node)
            .cloned()
            .collect(),
        (DeploymentKind::Scale, None) => {
            // The surplus, from the nodes that run the most of them.
            let mut per_node: HashMap<&str, u32> = HashMap::new();
            for u in &current {
                *per_node.entry(&u.node).or_default() += 1;
            }
            let mut order = current.clone();
            order.sort_by_key(|u| std::cmp::Reverse(per_node[u.node.as_str()]));
            order
                .into_iter()
                .take(current.len().saturating_sub(target as usize))
                .collect()
        }
        (DeploymentKind::Failover, None) => Vec::new(),
    };
    let kept = current.len() - replace.len();
    let new = (target as usize).saturating_sub(kept) as u32;
    let surge = match d.kind {
        DeploymentKind::Deploy | DeploymentKind::Restart => app.max_surge.max(1),
        _ => new.max(1),
    };
    Rollout {
        planned: true,
        drain_node,
        target,
        surge,
        previous: current,
        replace,
        slots: (0..new)
            .map(|slot| Slot {
                slot,
                ..Default::default()
            })
            .collect(),
        switched: false,
    }
}

fn describe(plan: &Rollout, d: &Deployment) -> String {
    format!(
        "rollout: {} new replica(s), {} at a time{}; {} replica(s) serve the app at the end{}",
        plan.slots.len(),
        plan.surge,
        if matches!(d.kind, DeploymentKind::Rollback | DeploymentKind::Start) {
            ", switched in together"
        } else {
            ""
        },
        plan.target,
        if plan.replace.is_empty() {
            String::new()
        } else {
            format!(", replacing {} now serving", plan.replace.len())
        }
    )
}

/// What the route should be at a point of a rollout.
enum Finish {
    /// Still rolling: replaced replicas wait on standby until `hold` (the deadline).
    Running { hold: u64 },
    /// Succeeded: the replaced replicas stay on standby until `until` (0: they leave).
    Done { until: u64 },
    /// Failed: `previous` again.
    Revert,
}

/// The route an app should have for the plan `ro` at `finish`, computed from the plan alone, so
/// that writing it twice changes nothing: the upstreams are the plan's `previous` without the
/// replaced ones (one per new replica serving, all at the end), plus the new replicas serving.
fn desired(
    mut route: Route,
    ro: &Rollout,
    down: &HashSet<&str>,
    finish: &Finish,
    now: u64,
) -> Route {
    let serving: Vec<Upstream> = ro
        .slots
        .iter()
        .filter(|s| s.state == SlotState::Serving)
        .filter_map(|s| s.upstream.clone())
        .collect();
    let new_ids: HashSet<&str> = serving.iter().map(|u| u.container.as_str()).collect();
    let is = |a: &Upstream, b: &Upstream| a.container == b.container && a.node == b.node;
    // Ordered so a slot replaces an upstream of its own node first, then any.
    let out: Vec<Upstream> = match finish {
        Finish::Revert => Vec::new(),
        Finish::Done { .. } => ro.replace.clone(),
        Finish::Running { .. } => {
            let mut left = ro.replace.clone();
            let mut out = Vec::new();
            for u in &serving {
                let pick = left
                    .iter()
                    .position(|r| r.node == u.node)
                    .or(if left.is_empty() { None } else { Some(0) });
                if let Some(i) = pick {
                    out.push(left.remove(i));
                }
            }
            out
        }
    };
    let mut upstreams: Vec<Upstream> = Vec::new();
    // What serves now that the plan does not know of (a replica another deployment added) stays,
    // except the new replicas of this rollout on revert.
    for u in route.upstreams.iter().chain(&ro.previous) {
        let replaced = out.iter().any(|o| is(o, u));
        let mine = new_ids.contains(u.container.as_str())
            || ro
                .slots
                .iter()
                .any(|s| s.upstream.as_ref().is_some_and(|x| is(x, u)));
        if replaced || mine || down.contains(u.node.as_str()) {
            continue;
        }
        if !upstreams.iter().any(|x| is(x, u)) {
            upstreams.push(u.clone());
        }
    }
    if !matches!(finish, Finish::Revert) {
        for u in &serving {
            if !upstreams.iter().any(|x| is(x, u)) {
                upstreams.push(u.clone());
            }
        }
    }
    let replaced_or_new = |u: &Upstream| {
        ro.replace.iter().chain(&ro.previous).any(|o| is(o, u))
            || new_ids.contains(u.container.as_str())
    };
    let (standby, until) = match finish {
        Finish::Running { hold } => {
            let mut s: Vec<Upstream> = route.standby_at(now).to_vec();
            s.retain(|u| !upstreams.iter().any(|x| is(x, u)));
            for o in &out {
                if !s.iter().any(|x| is(x, o)) {
                    s.push(o.clone());
                }
            }
            (s, (*hold).max(route.standby_until))
        }
        Finish::Done { until } if *until > now => (out.clone(), *until),
        // A failover or a scale keeps the standby of the last deploy (without what it moved).
        Finish::Done { .. } => {
            let s: Vec<Upstream> = route
                .standby_at(now)
                .iter()
                .filter(|u| !replaced_or_new(u))
                .cloned()
                .collect();
            let until = if s.is_empty() { 0 } else { route.standby_until };
            (s, until)
        }
        Finish::Revert => (Vec::new(), 0),
    };
    route.upstreams = upstreams;
    route.standby = standby;
    route.standby_until = until;
    route.updated_at = now;
    route
}

/// Writes the app's routes for the plan at `finish`.
async fn write_route(
    cx: &Ctx<'_>,
    app: &App,
    ro: &Rollout,
    down: &HashSet<&str>,
    finish: Finish,
) -> Result<Option<Route>> {
    let now = now_ms();
    let drain_s = app.drain_s;
    let name = app.name.clone();
    cx.store
        .edit_routes(&app.domains, |cur| {
            if cur.is_none() && ro.slots.iter().all(|s| s.state != SlotState::Serving) {
                return None;
            }
            let base = cur.unwrap_or_else(|| Route {
                domain: String::new(),
                app: name.clone(),
                upstreams: Vec::new(),
                updated_at: now,
                drain_s: Some(drain_s),
                standby: Vec::new(),
                standby_until: 0,
            });
            let mut r = desired(base, ro, down, &finish, now);
            r.drain_s = Some(drain_s);
            Some(r)
        })
        .await
}

/// Claims the deployment's fate `switch` (the rollout changes the route); false if it was
/// cancelled first, which ends it (the canceller wrote the record).
async fn claim_switch(cx: &Ctx<'_>, d: &Deployment) -> Result<bool> {
    let key = keys::deployment_fate(&d.id);
    let ours = cx
        .store
        .claim_once(&key, keys::FATE_SWITCH, keys::MARKER_TTL_S)
        .await?
        || cx.store.get_string(&key).await?.as_deref() == Some(keys::FATE_SWITCH);
    // No route changes before Redis's replicas have the claim (when `redis.min_replicas_acked`
    // asks): one lost in a failover would let a cancel win after traffic moved. Not confirmed,
    // the tick fails and the next one claims (finds it ours) and waits again.
    if ours {
        cx.store
            .confirm(
                &format!("the switch of deployment {} was claimed", d.id),
                "claimed again at the next look",
            )
            .await?;
    }
    Ok(ours)
}

/// The rollout has every new replica serving: the replaced ones leave the route (or wait on
/// standby) and the deployment succeeds.
async fn finish(
    cx: &Ctx<'_>,
    d: &Deployment,
    app: &App,
    ro: &Rollout,
    down: &HashSet<&str>,
) -> Result<bool> {
    if !claim_switch(cx, d).await? {
        return Ok(true);
    }
    let keeps = matches!(
        d.kind,
        DeploymentKind::Deploy | DeploymentKind::Rollback | DeploymentKind::Restart
    );
    let until = if keeps && app.standby_s > 0 && !ro.replace.is_empty() {
        now_ms() + app.standby_s * 1000
    } else {
        0
    };
    let route = write_route(cx, app, ro, down, Finish::Done { until }).await?;
    let first = ro.slots.first().and_then(|s| s.upstream.clone());
    let line = format!(
        "rolled out: {} replica(s) serve the app{}",
        route.as_ref().map_or(0, |r| r.upstreams.len()),
        if until > 0 {
            format!(
                "; the {} replaced stay on standby for {} s",
                ro.replace.len(),
                app.standby_s
            )
        } else {
            String::new()
        }
    );
    cx.store.append_log(&d.id, LogStream::System, &line).await?;
    succeed(cx, d, first).await
}

/// Ends a rollout `succeeded`, naming the node and container of its first replica.
///
/// The first replica may run on another node than the record names (it was placed again after
/// its node went down), and a status change that names another node is a stale report of a node
/// the deployment left: so the record is pointed at the replica first, then turns succeeded.
async fn succeed(cx: &Ctx<'_>, d: &Deployment, first: Option<Upstream>) -> Result<bool> {
    if let Some(u) = first {
        cx.ledger
            .send(EditRollout::new(&d.id, move |d| {
                let changed = d.node.as_deref() != Some(u.node.as_str())
                    || d.container.as_deref() != Some(u.container.as_str());
                d.node = Some(u.node.clone());
                d.container = Some(u.container.clone());
                changed
            }))
            .await??;
    }
    cx.ledger
        .send(Transition(DeploymentUpdate::new(
            &d.id,
            DeploymentStatus::Succeeded,
        )))
        .await??;
    Ok(true)
}

/// Ends a rollout that cannot succeed: if it changed the route, the route goes back to what
/// served before (the replaced replicas are still running on standby); the nodes remove the new
/// replicas once they see the deployment failed.
async fn end(
    cx: &Ctx<'_>,
    d: &Deployment,
    app: &App,
    down: &HashSet<&str>,
    why: String,
) -> Result<bool> {
    let key = keys::deployment_fate(&d.id);
    let cancelled = cx
        .store
        .claim_once(&key, keys::FATE_CANCEL, keys::MARKER_TTL_S)
        .await?;
    let mut why = why;
    if let (false, Some(ro)) = (cancelled, &d.rollout) {
        write_route(cx, app, ro, down, Finish::Revert).await?;
        let previous = cx
            .store
            .deployments(
                &ro.previous
                    .iter()
                    .map(|u| u.deployment.clone())
                    .collect::<Vec<_>>(),
            )
            .await?
            .into_iter()
            .find_map(|p| p.image);
        why = match previous {
            Some(image) => {
                format!("{why}; every replica is back on the previous release ({image})")
            }
            None => format!("{why}; the new replicas left the route"),
        };
    }
    cx.ledger
        .send(Transition::ended(&d.id, DeploymentStatus::Failed, why))
        .await??;
    Ok(true)
}

/// A rollback to a release whose replicas are on standby: only a route change.
async fn standby_swap(cx: &Ctx<'_>, d: &Deployment, app: &App, route: &Route) -> Result<bool> {
    let now = now_ms();
    let standby = route.standby_at(now);
    if standby.is_empty() || d.image.is_none() {
        return Ok(false);
    }
    let ids: Vec<String> = standby.iter().map(|u| u.deployment.clone()).collect();
    let images: HashMap<String, Option<String>> = cx
        .store
        .deployments(&ids)
        .await?
        .into_iter()
        .map(|x| (x.id, x.image))
        .collect();
    let back: Vec<Upstream> = standby
        .iter()
        .filter(|u| images.get(&u.deployment).cloned().flatten() == d.image)
        .take(app.replicas as usize)
        .cloned()
        .collect();
    if back.len() < app.replicas as usize {
        return Ok(false);
    }
    if !claim_switch(cx, d).await? {
        return Ok(true);
    }
    let until = if app.standby_s > 0 {
        now + app.standby_s * 1000
    } else {
        0
    };
    let current = route.upstreams.clone();
    let back2 = back.clone();
    let written = cx
        .store
        .edit_routes(&app.domains, |cur| {
            let mut r = cur?;
            let is_back = |u: &Upstream| back2.iter().any(|b| b.container == u.container);
            if !r.standby_at(now).iter().any(is_back) {
                return None;
            }
            let out = std::mem::take(&mut r.upstreams);
            r.upstreams = back2.clone();
            r.standby = if until > 0 { out } else { Vec::new() };
            r.standby_until = until;
            r.updated_at = now;
            Some(r)
        })
        .await?;
    if written.is_none() {
        return Ok(false);
    }
    let plan = Rollout {
        planned: true,
        target: app.replicas,
        surge: 0,
        previous: current.clone(),
        replace: current,
        switched: true,
        ..Default::default()
    };
    cx.ledger
        .send(EditRollout::new(&d.id, move |r| {
            r.rollout = Some(plan.clone());
            true
        }))
        .await??;
    cx.store
        .append_log(
            &d.id,
            LogStream::System,
            &format!(
                "rolled back by a route change: the release's {} replica(s) were on standby",
                back.len()
            ),
        )
        .await?;
    succeed(cx, d, back.first().cloned()).await
}

/// Where a slot goes: the scheduler's pick, counting the app's replicas that stay and the
/// slots placed already, so replicas spread.
async fn place(
    cx: &Ctx<'_>,
    d: &Deployment,
    app: &App,
    ro: &Rollout,
    taken: &[Slot],
    nodes: &Arc<Vec<NodeView>>,
    build: bool,
) -> Result<std::result::Result<String, scheduler::Unplaced>> {
    let mut replicas: HashMap<String, u32> = HashMap::new();
    let replaced = |u: &Upstream| ro.replace.iter().any(|r| r.container == u.container);
    for u in ro.previous.iter().filter(|u| !replaced(u)) {
        *replicas.entry(u.node.clone()).or_default() += 1;
    }
    for s in taken.iter().filter(|s| s.state != SlotState::Failed) {
        if let Some(n) = &s.node {
            *replicas.entry(n.clone()).or_default() += 1;
        }
    }
    let prefer = match build {
        true => crate::deployment::last_builder(cx.store, d).await?,
        false => None,
    };
    // Without a registry an image is only on the engine that built (or first ran) it.
    let holder = match d.kind {
        DeploymentKind::Deploy => d.node.clone(),
        _ => match &d.rollback_of {
            Some(of) => cx.store.get_deployment(of).await?.and_then(|r| r.node),
            None => None,
        },
    };
    let only = holder.filter(|_| !build && !cx.shared_images);
    // The registry picks (and counts the pick at once, see `Place`).
    Ok(cx
        .registry
        .send(Place {
            nodes: nodes.clone(),
            placement: app.placement.clone(),
            replicas,
            prefer,
            only,
        })
        .await?)
}

/// Queues the job of one slot on its node.
async fn send(cx: &Ctx<'_>, d: &Deployment, app: &App, node: &str, slot: &Slot) -> Result<()> {
    let build = d.kind == DeploymentKind::Deploy && slot.slot == 0 && d.image.is_none();
    let image = if build { None } else { d.image.clone() };
    let spec = Spec::of(image, Some(slot.slot), slot.attempt);
    crate::deployment::send_job(cx.store, d, app.clone(), node, cx.dl, spec).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(node: &str, c: &str) -> Upstream {
        Upstream {
            dial: format!("{node}:1"),
            node: node.into(),
            container: c.into(),
            deployment: format!("d-{c}"),
        }
    }

    fn route(ups: Vec<Upstream>) -> Route {
        Route {
            domain: "a.test".into(),
            app: "a".into(),
            upstreams: ups,
            updated_at: 0,
            drain_s: None,
            standby: Vec::new(),
            standby_until: 0,
        }
    }

    fn deploy(kind: DeploymentKind) -> Deployment {
        let mut d = crate::ledger::tests::queued();
        d.kind = kind;
        d
    }

    fn app(replicas: u32) -> App {
        let mut a = crate::apps::tests::app();
        a.replicas = replicas;
        a
    }

    fn serve(ro: &mut Rollout, slot: u32, u: Upstream) {
        let s = &mut ro.slots[slot as usize];
        s.state = SlotState::Serving;
        s.node = Some(u.node.clone());
        s.upstream = Some(u);
    }

    #[test]
    fn a_deploy_replaces_every_replica_one_by_one_and_can_go_back() {
        let old = vec![up("n1", "o1"), up("n2", "o2"), up("n3", "o3")];
        let r = route(old.clone());
        let none = HashSet::new();
        let mut ro = plan(
            &deploy(DeploymentKind::Deploy),
            &app(3),
            Some(&r),
            &none,
            None,
        );
        assert_eq!((ro.slots.len(), ro.surge, ro.replace.len()), (3, 1, 3));
        serve(&mut ro, 0, up("n2", "x0"));
        let mid = desired(r.clone(), &ro, &none, &Finish::Running { hold: 50 }, 1);
        let ids = |v: &[Upstream]| v.iter().map(|u| u.container.clone()).collect::<Vec<_>>();
        // The new replica on n2 took the place of n2's old one, which waits on standby.
        assert_eq!(ids(&mid.upstreams), ["o1", "o3", "x0"]);
        assert_eq!(ids(&mid.standby), ["o2"]);
        assert_eq!(mid.standby_until, 50);
        // Writing the same point twice changes nothing.
        let again = desired(mid.clone(), &ro, &none, &Finish::Running { hold: 50 }, 1);
        assert_eq!(ids(&again.upstreams), ids(&mid.upstreams));
        // A failure puts every old replica back and the new one out.
        let back = desired(mid.clone(), &ro, &none, &Finish::Revert, 2);
        assert_eq!(ids(&back.upstreams), ["o1", "o3", "o2"]);
        assert!(back.standby.is_empty());
        // Success with a standby keeps the old release running out of the route.
        serve(&mut ro, 1, up("n1", "x1"));
        serve(&mut ro, 2, up("n3", "x2"));
        let done = desired(mid, &ro, &none, &Finish::Done { until: 99 }, 3);
        assert_eq!(ids(&done.upstreams), ["x0", "x1", "x2"]);
        assert_eq!(ids(&done.standby), ["o1", "o2", "o3"]);
        assert_eq!(done.standby_until, 99);
    }

    #[test]
    fn a_failover_adds_what_a_dead_node_took_and_a_scale_removes_the_surplus() {
        let r = route(vec![up("n1", "o1"), up("n2", "o2")]);
        let none = HashSet::new();
        let ro = plan(
            &deploy(DeploymentKind::Failover),
            &app(3),
            Some(&r),
            &none,
            None,
        );
        assert_eq!((ro.slots.len(), ro.replace.len(), ro.surge), (1, 0, 1));
        let drain = plan(
            &deploy(DeploymentKind::Failover),
            &app(2),
            Some(&r),
            &none,
            Some("n1".into()),
        );
        assert_eq!((drain.slots.len(), drain.replace.len()), (1, 1));
        assert_eq!(drain.replace[0].container, "o1");
        let big = route(vec![up("n1", "a"), up("n1", "b"), up("n2", "c")]);
        let mut down = plan(
            &deploy(DeploymentKind::Scale),
            &app(1),
            Some(&big),
            &none,
            None,
        );
        assert_eq!((down.slots.len(), down.replace.len()), (0, 2));
        assert!(down.replace.iter().all(|u| u.node == "n1"));
        down.slots.clear();
        let done = desired(big, &down, &none, &Finish::Done { until: 0 }, 5);
        assert_eq!(done.upstreams.len(), 1);
        assert_eq!(done.upstreams[0].container, "c");
        assert!(done.standby.is_empty());
    }

    #[test]
    fn a_dead_nodes_upstreams_never_come_back() {
        let r = route(vec![up("n1", "o1"), up("n2", "o2")]);
        let dead: HashSet<&str> = ["n2"].into();
        let ro = plan(
            &deploy(DeploymentKind::Deploy),
            &app(2),
            Some(&r),
            &HashSet::new(),
            None,
        );
        let back = desired(r, &ro, &dead, &Finish::Revert, 1);
        assert_eq!(back.upstreams.len(), 1);
        assert_eq!(back.upstreams[0].node, "n1");
    }
}
