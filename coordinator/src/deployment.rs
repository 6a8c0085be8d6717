//! `DeploymentActor`: one per in-flight deployment, watching it until it is terminal.
//!
//! ```text
//! queued ─▶ building ─▶ deploying ─▶ succeeded
//!    │          │            │
//!    └──────────┴────────────┴──▶ failed | cancelled
//! ```
//! The node drives the forward steps and reports them as events (folded in by the `Ledger`). This
//! actor does what the node cannot: it places the deployment on a live node and queues the job,
//! and it enforces the deadlines — no live node within `node_wait`, the node's heartbeat stopping,
//! or the whole deployment overrunning `deploy_timeout` — so that every deployment ends terminal.
//! It keeps no state that is not in Redis: a fresh actor for the same id (after a coordinator
//! restart or a crash) picks up where the last one was, re-sending a job that may not have left.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use berth_bus::Live;
use berth_protocol::api::NodeView;
use berth_protocol::{
    keys, now_ms, App, DeployJob, Deployment, DeploymentKind, DeploymentStatus, Job, NodeStatus,
    RuntimeSpec, SealedEnv,
};

use crate::error::{Error, Result};
use crate::ledger::{Assign, Ledger, Quarantine, Reassign, Transition};
use crate::registry::{self, NodeRegistry, Nodes, Place};
use crate::releases;
use crate::rollout;
use crate::scheduler;
use crate::store::{DeployReads, Store};

/// How many attempts a deployment (or a replica of a rollout) gets in all: an attempt that an
/// infrastructure fault interrupts before it switched traffic — its node went down, or the
/// node reported it interrupted (it restarted, its Docker engine or Redis went away mid-way) —
/// runs again, on another ready node or the same one, until the last, which fails it.
pub const ATTEMPTS: u32 = 3;

/// Deadlines every deployment is held to.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From creation to terminal.
    pub deploy_timeout: Duration,
    /// How long a deployment may wait for any live node.
    pub node_wait: Duration,
    /// Extra time the coordinator gives a node to report its own timeout before failing it.
    pub grace: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            deploy_timeout: Duration::from_secs(900),
            node_wait: Duration::from_secs(30),
            grace: Duration::from_secs(10),
        }
    }
}

pub struct DeploymentActor {
    id: String,
    store: Store,
    ledger: Live<Ledger>,
    registry: Live<NodeRegistry>,
    deadlines: Deadlines,
    /// True while a tick's future runs, so ticks never overlap.
    busy: bool,
    /// Whether this actor has (re)sent the job; a fresh actor re-sends a queued, assigned job.
    sent: bool,
    /// Whether the last tick failed: a tick that keeps failing (an unreadable record) is
    /// reported once, not twice a second.
    failing: bool,
    /// Whether the nodes share images through a registry; without one, a release runs only
    /// on the node that has its image.
    shared_images: bool,
    /// A look was asked for while a tick ran: one more right after it.
    again: bool,
    /// Since when every tick found the record unreadable: after `node_wait` of that, the
    /// record is replaced by a `failed` one (`Quarantine`), so the deployment still ends.
    unreadable_since: Option<Instant>,
    /// Its supervisor's side of the link: see [`Link`].
    link: Link,
    /// The record as last read, and when: while it only waits on its node, a tick decides from
    /// it (and the fleet) without reading it again — see [`REREAD`].
    known: Option<(Arc<Deployment>, Instant)>,
    /// The record as the API created it, for the first look only (then it is read), with what
    /// its creator read with it; or the record as the Ledger just wrote it, given by a [`Look`]
    /// that starts a look at once.
    created: Option<Box<First>>,
}

/// What a look starts from instead of reading: a record (as just created, or just written) and,
/// from a deployment's creator, the app as it read it and its app's newest deployment ids as the
/// create read them (`ledger::Created::recent`).
pub struct First {
    pub d: Deployment,
    pub app: Option<App>,
    pub recent: Option<Vec<String>>,
    /// Whether the record was created with its job (placed by its creator, [`place_new`]): the
    /// actor does not send it again.
    pub sent: bool,
}

impl First {
    fn written(d: Deployment) -> First {
        First {
            d,
            app: None,
            recent: None,
            sent: false,
        }
    }
}

/// How long a tick may decide from the record it read last instead of reading it again. Every
/// change a node reports pokes the actor ([`Look`]), which reads it at once; this bounds what a
/// change that pokes no one (a cancel through the API) waits to be seen.
pub const REREAD: Duration = Duration::from_secs(5);

/// What ties a deployment actor to the `Reconciler` that supervises it: `parent` is cancelled
/// when that reconciler goes (stopped or panicked), and the actor stops with it — the next
/// reconciler starts its own; `done` is set when the actor decides to stop (its deployment
/// ended, or its parent went), so a closed mailbox without it means the actor died. (Not in
/// `stopped`: actix runs that even for an actor whose handler panicked, as it drops it.)
#[derive(Clone, Default)]
pub(crate) struct Link {
    pub parent: tokio_util::sync::CancellationToken,
    pub done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DeploymentActor {
    pub fn new(
        id: String,
        store: Store,
        ledger: Live<Ledger>,
        registry: Live<NodeRegistry>,
        deadlines: Deadlines,
        shared_images: bool,
        link: Link,
    ) -> Self {
        DeploymentActor {
            link,
            shared_images,
            id,
            store,
            ledger,
            registry,
            deadlines,
            busy: false,
            again: false,
            sent: false,
            failing: false,
            unreadable_since: None,
            known: None,
            created: None,
        }
    }

    /// Starts from `d`, the record as just created (its first look does not read it back),
    /// and from the app as its creator read it, if given.
    pub fn created(mut self, first: Option<First>) -> Self {
        self.created = first.filter(|f| f.d.id == self.id).map(Box::new);
        self.sent = self.created.as_ref().is_some_and(|f| f.sent);
        self
    }

    fn schedule_tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            self.again = true;
            return;
        }
        self.again = false;
        self.busy = true;
        let quarantine = self
            .unreadable_since
            .is_some_and(|t| t.elapsed() >= self.deadlines.node_wait);
        let known = self
            .known
            .as_ref()
            .filter(|(_, at)| at.elapsed() < REREAD)
            .map(|(d, _)| d.clone());
        let fut = tick(
            Tick {
                id: self.id.clone(),
                store: self.store.clone(),
                ledger: self.ledger.clone(),
                registry: self.registry.clone(),
                dl: self.deadlines,
                sent: self.sent,
                quarantine,
                shared_images: self.shared_images,
            },
            known,
            self.created.take(),
        );
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.busy = false;
            let res = match res {
                Ok((step, read)) => {
                    if let Some(d) = read {
                        act.known = Some((Arc::new(d), Instant::now()));
                    }
                    Ok(step)
                }
                Err(e) => {
                    act.known = None;
                    Err(e)
                }
            };
            if act.again && matches!(res, Ok(Step::Sent | Step::Wait)) {
                ctx.notify(Look(None));
            }
            act.unreadable_since = match &res {
                Err(Error::Unreadable(_)) if !quarantine => {
                    Some(act.unreadable_since.unwrap_or_else(Instant::now))
                }
                _ => None,
            };
            act.failing = match res {
                Ok(Step::Done) => {
                    act.link.done.store(true, std::sync::atomic::Ordering::SeqCst);
                    ctx.stop();
                    false
                }
                Ok(Step::Sent) => {
                    act.sent = true;
                    false
                }
                Ok(Step::Wait) => false,
                // Redis is away: the coordinator's connection logs the outage, once.
                Err(Error::Unavailable(e)) => {
                    tracing::debug!(deployment = %act.id, error = %e, "deployment tick waits for Redis");
                    act.failing
                }
                Err(e) if !act.failing => {
                    tracing::error!(deployment = %act.id, error = %e, "deployment tick failed; retrying every 500 ms");
                    true
                }
                Err(e) => {
                    tracing::debug!(deployment = %act.id, error = %e, "deployment tick failed again");
                    true
                }
            }
        }));
    }
}

enum Step {
    Wait,
    Sent,
    Done,
}

fn fail(id: &str, error: String) -> Transition {
    Transition::ended(id, DeploymentStatus::Failed, error)
}

/// What one tick works with, copied out of the actor so that its future owns it.
struct Tick {
    id: String,
    store: Store,
    ledger: Live<Ledger>,
    registry: Live<NodeRegistry>,
    dl: Deadlines,
    /// Whether this actor has (re)sent the job already.
    sent: bool,
    /// Whether to replace an unreadable record first.
    quarantine: bool,
    shared_images: bool,
}

/// One look at the deployment: from `known` (the record as read at most [`REREAD`] ago) while
/// all it does is wait on its node, else from the record read now. Answers the step and the
/// record it read now, if it did (for the next look).
///
/// `created` is the record as the API created it, given to the first look: a queued record that
/// nothing else has touched yet, so it is decided from as read (the Ledger's `Assign` compares
/// it with what Redis holds anyway). Or the record the Ledger has just written for a node's
/// event (`Poke`): what a read now would find, unless another change followed it, which pokes
/// this actor again (and every change the actor asks for is decided again by the Ledger on
/// what Redis holds).
async fn tick(
    t: Tick,
    known: Option<Arc<Deployment>>,
    created: Option<Box<First>>,
) -> Result<(Step, Option<Deployment>)> {
    if t.quarantine && t.ledger.send(Quarantine(t.id.clone())).await??.is_some() {
        return Ok((Step::Done, None));
    }
    if let Some(d) = known {
        let nodes = t.registry.send(Nodes).await??;
        if waits_on_its_node(&d, &nodes, t.sent, t.dl) {
            return Ok((Step::Wait, None));
        }
    }
    let first = match created {
        Some(c) => c,
        None => match t.store.get_deployment(&t.id).await? {
            Some(d) => Box::new(First::written(d)),
            None => return Ok((Step::Done, None)),
        },
    };
    let d = first.d.clone();
    // Boxed: a look that only waits (above) does not carry the size of a decision's future.
    let step = Box::pin(decide(t, first)).await?;
    Ok((step, Some(d)))
}

/// Whether a look at `d` (as read earlier) would only wait: its job went to a node that is not
/// down, nothing interrupted it, it is not a rollout (which acts on its replicas' progress) and
/// its deadline is not near. Anything else is decided on the record read again.
fn waits_on_its_node(d: &Deployment, nodes: &[NodeView], sent: bool, dl: Deadlines) -> bool {
    let Some(node) = &d.node else {
        return false;
    };
    let up = registry::find(nodes, node).is_some_and(|n| n.status != NodeStatus::Down);
    let age = Duration::from_millis(now_ms().saturating_sub(d.created_at));
    !d.status.is_terminal()
        && d.rollout.is_none()
        && d.interrupted.is_none()
        && (sent || d.status != DeploymentStatus::Queued)
        && up
        && age + REREAD < dl.deploy_timeout
}

/// What a look at the record `first.d` (read now) does; on the first look only, `first` also
/// has the app as the deployment's creator read it just before, and the app's newest deployment
/// ids as its create read them.
async fn decide(t: Tick, first: Box<First>) -> Result<Step> {
    let First { d, app, recent, .. } = *first;
    let Tick {
        id,
        store,
        ledger,
        registry,
        dl,
        sent,
        quarantine,
        shared_images,
    } = t;
    if d.status.is_terminal() {
        return Ok(Step::Done);
    }
    let now = now_ms();
    let age = Duration::from_millis(now.saturating_sub(d.created_at));
    // (A rollout reverts its route before it fails: `rollout::step` keeps its own deadline.)
    if age > dl.deploy_timeout + dl.grace && d.rollout.is_none() {
        ledger
            .send(fail(
                &id,
                format!(
                    "timed out after {}s while {}",
                    dl.deploy_timeout.as_secs(),
                    d.status
                ),
            ))
            .await??;
        return Ok(Step::Done);
    }
    let nodes = registry.send(Nodes).await??;
    // The app, read once, when the deployment is still to be placed or is rolled out.
    let given = app.filter(|a| a.name == d.app && !a.stopped);
    let app = match d.rollout.is_some() || d.node.is_none() {
        true if given.is_some() => given,
        true => match app_or_cancel(&store, &ledger, &d).await? {
            Some(app) => Some(app),
            None => return Ok(Step::Done),
        },
        false => None,
    };
    // An app with several replicas (or a standby) is rolled out replica by replica from here.
    let rolls = d.rollout.is_some()
        || (d.status == DeploymentStatus::Queued && app.as_ref().is_some_and(App::rolls_out));
    if rolls {
        let Some(app) = app else {
            return Ok(Step::Wait);
        };
        let cx = rollout::Ctx {
            store: &store,
            ledger: &ledger,
            registry: &registry,
            dl,
            shared_images,
            sent,
        };
        // Boxed: a rollout's step is most of this future's size, and most looks are not one.
        return Ok(match Box::pin(rollout::step(&cx, d, app, &nodes)).await? {
            true => Step::Done,
            false => Step::Sent,
        });
    }
    match (&d.node, app) {
        (None, None) => Ok(Step::Wait),
        (None, Some(app)) => {
            let node = match placement(
                &store,
                &registry,
                &nodes,
                &app,
                &d,
                Known::from(recent),
                shared_images,
            )
            .await?
            {
                Ok(node) => node,
                // Some node is ready but none passes: waiting will not help.
                Err(why) if why.any_ready(&nodes) => {
                    ledger
                        .send(fail(&id, format!("cannot place it: {why}")))
                        .await??;
                    return Ok(Step::Done);
                }
                Err(why) if age > dl.node_wait => {
                    ledger
                        .send(fail(
                            &id,
                            format!(
                                "no ready node to run it for {}s ({why}): start one with `berth node` (or `berth up`)",
                                dl.node_wait.as_secs()
                            ),
                        ))
                        .await??;
                    return Ok(Step::Done);
                }
                Err(_) => return Ok(Step::Wait),
            };
            let runtime = match d.runtime.clone() {
                Some(r) => r,
                None => runtime_of(&store, &app).await?,
            };
            // The job goes with the assignment, in its write: one script call, and a record
            // that names its node always has its job queued. It is made from the record as
            // it will be written (only the node and the runtime change).
            let mut assigned = d.clone();
            assigned.node = Some(node.clone());
            assigned.runtime.get_or_insert_with(|| runtime.clone());
            let spec = Spec::of(rollback_image(&assigned), None, assigned.attempt);
            let job = job_of(&store, &assigned, app.clone(), dl, spec, None).await?;
            let job = store.job_command(&node, &d.id, &job)?;
            let Some((d, queued)) = ledger
                .send(Assign {
                    id: id.clone(),
                    node: node.clone(),
                    runtime,
                    known: Some(d.clone()),
                    job: Some(job),
                })
                .await??
            else {
                return Ok(Step::Wait);
            };
            match queued {
                true => store.job_queued(&node, &d.id).await?,
                // The record was not as this actor held it: the job is made again from the
                // record as assigned.
                false => {
                    let image = rollback_image(&d);
                    send_job(&store, &d, app, &node, dl, Spec::of(image, None, d.attempt)).await?
                }
            }
            Ok(Step::Sent)
        }
        (Some(node), _) => {
            let view = registry::find(&nodes, node);
            let down = view.is_none_or(|n| n.status == NodeStatus::Down);
            if down || d.interrupted.is_some() {
                // Boxed, as a rare path: the common looks do not carry its size.
                return Box::pin(retry(
                    Tick {
                        id,
                        store,
                        ledger,
                        registry,
                        dl,
                        sent,
                        quarantine,
                        shared_images,
                    },
                    &d,
                    node,
                    view.map(|n| n.info.last_heartbeat),
                    &nodes,
                ))
                .await;
            }
            if !sent && d.status == DeploymentStatus::Queued {
                // A job queued by an earlier actor may not have reached the stream; the node's
                // claim makes a second copy harmless.
                let Some(app) = app_or_cancel(&store, &ledger, &d).await? else {
                    return Ok(Step::Done);
                };
                let image = rollback_image(&d);
                send_job(&store, &d, app, node, dl, Spec::of(image, None, d.attempt)).await?;
                return Ok(Step::Sent);
            }
            Ok(Step::Wait)
        }
    }
}

/// An attempt of `d` on `node` that an infrastructure fault interrupted — the node reported
/// it (`d.interrupted`), or it went down (it beat last at `last_beat`) — runs again on a ready
/// node (the same one too), up to [`ATTEMPTS`] in all. Until a node can take it, it waits, for
/// `node_wait` from the fault at most. One exception: a node taken for dead after it claimed
/// the switch may have moved traffic already, which only it can tell: it is waited for
/// (`node_wait`), and when it comes back it finishes the deployment or reports the attempt
/// interrupted itself (`pipeline::resume`).
async fn retry(
    t: Tick,
    d: &Deployment,
    node: &str,
    last_beat: Option<u64>,
    nodes: &Arc<Vec<NodeView>>,
) -> Result<Step> {
    let Tick {
        id,
        store,
        ledger,
        registry,
        dl,
        shared_images,
        ..
    } = t;
    let now = now_ms();
    let (cause, since) = match &d.interrupted {
        Some(i) => (
            format!(
                "attempt {} on node {node} was interrupted ({})",
                d.attempt + 1,
                i.cause
            ),
            i.at,
        ),
        None => (
            format!(
                "node {node} went down while the deployment was {}",
                d.status
            ),
            last_beat.unwrap_or(now),
        ),
    };
    let waited = Duration::from_millis(now.saturating_sub(since));
    let fate = store.get_string(&keys::deployment_fate(&id)).await?;
    let switched = d.interrupted.is_none() && fate.as_deref() == Some(keys::FATE_SWITCH);
    let why = if switched {
        if waited < dl.node_wait {
            return Ok(Step::Wait);
        }
        format!(
            "; it had claimed the switch, so only that node could finish it, and it did not come back within {}s",
            dl.node_wait.as_secs()
        )
    } else if d.attempt + 1 < ATTEMPTS {
        let Some(app) = app_or_cancel(&store, &ledger, d).await? else {
            return Ok(Step::Done);
        };
        // Another node where one can take it; else the same one again (it restarted, its
        // engine came back).
        let others: Arc<Vec<NodeView>> = Arc::new(
            nodes
                .iter()
                .filter(|n| n.info.name != node)
                .cloned()
                .collect(),
        );
        let placed = match placement(
            &store,
            &registry,
            &others,
            &app,
            d,
            Known::Nothing,
            shared_images,
        )
        .await?
        {
            Ok(to) => Ok(to),
            Err(_) => {
                placement(
                    &store,
                    &registry,
                    nodes,
                    &app,
                    d,
                    Known::Nothing,
                    shared_images,
                )
                .await?
            }
        };
        match placed {
            Ok(to) => {
                let moved = ledger
                    .send(Reassign {
                        id: id.clone(),
                        from: node.to_string(),
                        to: to.clone(),
                        attempt: d.attempt,
                        cause,
                    })
                    .await??;
                let Some(d) = moved else {
                    return Ok(Step::Wait);
                };
                let image = rollback_image(&d);
                send_job(&store, &d, app, &to, dl, Spec::of(image, None, d.attempt)).await?;
                return Ok(Step::Sent);
            }
            Err(_) if waited < dl.node_wait => return Ok(Step::Wait),
            Err(e) => format!(
                "; no node could take it within {}s ({e})",
                dl.node_wait.as_secs()
            ),
        }
    } else {
        format!("; that was its last attempt ({ATTEMPTS} in all)")
    };
    ledger.send(fail(&id, format!("{cause}{why}"))).await??;
    Ok(Step::Done)
}

/// What the caller of [`placement`] read already of the app's keys.
enum Known<'a> {
    Nothing,
    /// The app's newest deployment ids, as a create read them.
    Recent(Vec<String>),
    /// What was read with the app ([`Store::app_for_deploy`]).
    Reads(&'a DeployReads),
}

impl From<Option<Vec<String>>> for Known<'_> {
    fn from(recent: Option<Vec<String>>) -> Self {
        recent.map_or(Known::Nothing, Known::Recent)
    }
}

/// Where a deployment of `app` goes: the scheduler's pick among `nodes`. A build prefers the
/// node that ran the app's latest deployment (its layer cache); a rollback (or failover) the node
/// of the release it brings back, which has its image — and without a registry only that node
/// can run it; spread counts the app's replicas per node from its route. `known`: what the
/// caller read of these already (the app's newest ids, its route), not read again.
async fn placement(
    store: &Store,
    registry: &Live<NodeRegistry>,
    nodes: &Arc<Vec<NodeView>>,
    app: &App,
    d: &Deployment,
    known: Known<'_>,
    shared_images: bool,
) -> Result<std::result::Result<String, scheduler::Unplaced>> {
    let pre = match &known {
        Known::Reads(pre) => Some(*pre),
        _ => None,
    };
    // Both reads at once (one round trip on the multiplexed connection), or taken from what
    // the caller read.
    let prefer = async {
        Ok::<_, Error>(match &d.rollback_of {
            Some(of) => store.get_deployment(of).await?.and_then(|r| r.node),
            None => match known {
                Known::Recent(ids) => last_builder_among(store, d, ids).await?,
                Known::Reads(pre) => last_builder_among(store, d, pre.ids.clone()).await?,
                Known::Nothing => last_builder(store, d).await?,
            },
        })
    };
    let route = async {
        match app.domains.first() {
            Some(domain) => match pre.and_then(|p| p.route.as_ref()) {
                Some((read, route)) if read == domain => Ok(route.clone()),
                _ => store.route(domain).await,
            },
            None => Ok(None),
        }
    };
    let (prefer, route) = futures_util::try_join!(prefer, route)?;
    let mut replicas: HashMap<String, u32> = HashMap::new();
    for u in route.into_iter().flat_map(|r| r.upstreams) {
        *replicas.entry(u.node).or_default() += 1;
    }
    // Without a registry a release's image is only on the engine that ran it.
    let only = prefer
        .clone()
        .filter(|_| d.rollback_of.is_some() && !shared_images);
    // The registry picks (and counts the pick at once, see `Place`).
    Ok(registry
        .send(Place {
            nodes: nodes.clone(),
            placement: app.placement.clone(),
            replicas,
            prefer,
            only,
        })
        .await?)
}

/// What placing a deployment takes besides the record and its app.
pub(crate) struct Placer {
    pub store: Store,
    pub registry: Live<NodeRegistry>,
    pub dl: Deadlines,
    pub shared_images: bool,
}

/// A new deployment placed by its creator before its record is written, as its first look
/// would place it, so that the record, its node and its job go in one write
/// (`ledger::CreateRecord`) and the job is on the node's stream when the create answers. `d`
/// (not written yet) gets its node and runtime; the answer is the job's command. `None` leaves
/// `d` as it was, to be created unplaced and placed by its actor: when no node passes now (the
/// actor waits for one, or fails it with the reason), when placing fails (Redis or the
/// registry away: the actor retries, as it does for any deployment), and for what the first
/// look does otherwise — a stopped app (cancelled), one rolled out over replicas, a rollback
/// (placed by its release's node).
pub(crate) async fn place_new(
    p: &Placer,
    d: &mut Deployment,
    app: &App,
    pre: Option<Prefetched>,
) -> Option<redis::Cmd> {
    if app.stopped
        || app.name != d.app
        || app.rolls_out()
        || d.rollout.is_some()
        || d.rollback_of.is_some()
        || d.node.is_some()
    {
        return None;
    }
    let given = d.runtime.is_some();
    match try_place_new(p, d, app, pre).await {
        Ok(Some(cmd)) => Some(cmd),
        outcome => {
            if let Err(e) = outcome {
                tracing::debug!(deployment = %d.id, error = %e, "not placed as it is created: its actor places it");
            }
            // As unplaced records are: the runtime is taken when it is placed.
            if !given {
                d.runtime = None;
            }
            d.node = None;
            None
        }
    }
}

async fn try_place_new(
    p: &Placer,
    d: &mut Deployment,
    app: &App,
    pre: Option<Prefetched>,
) -> Result<Option<redis::Cmd>> {
    if d.runtime.is_none() {
        d.runtime = Some(runtime_of(&p.store, app).await?);
    }
    let (nodes, reads) = match pre {
        Some(Prefetched { nodes, reads }) => (nodes, Some(reads)),
        None => (p.registry.send(Nodes).await??, None),
    };
    // The job does not depend on the node: its reads and placement's go at once (one round
    // trip on the multiplexed connection), when they were not read with the app.
    let spec = Spec::of(rollback_image(d), None, d.attempt);
    let (placed, job) = futures_util::try_join!(
        placement(
            &p.store,
            &p.registry,
            &nodes,
            app,
            d,
            reads.as_ref().map_or(Known::Nothing, Known::Reads),
            p.shared_images,
        ),
        job_of(&p.store, d, app.clone(), p.dl, spec, reads.as_ref()),
    )?;
    let Ok(node) = placed else {
        return Ok(None);
    };
    let cmd = p.store.job_command(&node, &d.id, &job)?;
    d.node = Some(node);
    Ok(Some(cmd))
}

/// How many of an app's newest deployments are looked at for the node that built it last.
pub(crate) const LAYER_CACHE_LOOKBACK: usize = 5;

/// What a creator read for placing a new deployment before it asked ([`place_new`]): the
/// fleet, and the app's keys its placement and job read ([`Store::app_for_deploy`], made with
/// the app's record).
pub(crate) struct Prefetched {
    pub nodes: Arc<Vec<NodeView>>,
    pub reads: DeployReads,
}

/// The node of the app's latest deployment other than `d` (its layer cache), if any.
pub(crate) async fn last_builder(store: &Store, d: &Deployment) -> Result<Option<String>> {
    let ids = store.deployment_ids(&d.app, LAYER_CACHE_LOOKBACK).await?;
    last_builder_among(store, d, ids).await
}

/// [`last_builder`], given the app's newest deployment ids, newest first (of which the first
/// [`LAYER_CACHE_LOOKBACK`] are looked at).
async fn last_builder_among(
    store: &Store,
    d: &Deployment,
    mut ids: Vec<String>,
) -> Result<Option<String>> {
    ids.truncate(LAYER_CACHE_LOOKBACK);
    ids.retain(|id| *id != d.id);
    if ids.is_empty() {
        // The app's first deployment: no record to read.
        return Ok(None);
    }
    Ok(store
        .deployments(&ids)
        .await?
        .into_iter()
        .find(|p| p.node.is_some())
        .and_then(|p| p.node))
}

/// The deployment's app; if it was deleted, or stopped (`berth stop`) since the deployment was
/// queued, the deployment is cancelled and `None` returned.
async fn app_or_cancel(
    store: &Store,
    ledger: &Live<Ledger>,
    d: &Deployment,
) -> Result<Option<App>> {
    let why = match store.get_app(&d.app).await? {
        Some(app) if !app.stopped => return Ok(Some(app)),
        Some(app) => {
            // Like a cancel: one whose node claimed the switch already finishes (the stop's
            // own sweep saw it too).
            let cancel = store
                .claim_once(
                    &keys::deployment_fate(&d.id),
                    keys::FATE_CANCEL,
                    keys::MARKER_TTL_S,
                )
                .await?;
            if !cancel {
                return Ok(Some(app));
            }
            format!(
                "app {} was stopped (`berth start {}` brings it back)",
                d.app, d.app
            )
        }
        None => format!("app {} was deleted", d.app),
    };
    ledger
        .send(Transition::ended(&d.id, DeploymentStatus::Cancelled, why))
        .await??;
    Ok(None)
}

/// The image a rollback or a failover runs (it is given one; a deploy builds its own).
pub(crate) fn rollback_image(d: &Deployment) -> Option<String> {
    let rollback = matches!(
        d.kind,
        DeploymentKind::Rollback
            | DeploymentKind::Failover
            | DeploymentKind::Scale
            | DeploymentKind::Restart
            | DeploymentKind::Start
    );
    d.image.clone().filter(|_| rollback)
}

/// What a job runs besides the deployment: its image (`None`: it builds), the replica of a
/// rollout (`slot`), and the attempt.
pub(crate) struct Spec {
    pub image: Option<String>,
    pub slot: Option<u32>,
    pub attempt: u32,
}

impl Spec {
    pub(crate) fn of(image: Option<String>, slot: Option<u32>, attempt: u32) -> Spec {
        Spec {
            image,
            slot,
            attempt,
        }
    }
}

/// What a deployment of `app` runs with when it brings no release's settings: the app's port,
/// health check and plain runtime variables, and its secret runtime variables sealed as they
/// are stored (the blob is copied, never opened: the coordinator reads no secret value here).
pub(crate) async fn runtime_of(store: &Store, app: &App) -> Result<RuntimeSpec> {
    let names: Vec<String> = app.env.secret_runtime().cloned().collect();
    let secrets = match names.is_empty() {
        true => None,
        false => store
            .get_env_secrets(&app.name)
            .await?
            .map(|sealed| SealedEnv { names, sealed }),
    };
    Ok(RuntimeSpec {
        env: app.env.runtime.clone(),
        port: app.port,
        health_check: app.health_check.clone(),
        secrets,
    })
}

/// Queues the job of an assigned deployment (or of one replica of a rollout) on its node.
pub(crate) async fn send_job(
    store: &Store,
    d: &Deployment,
    app: App,
    node: &str,
    dl: Deadlines,
    spec: Spec,
) -> Result<()> {
    let job = job_of(store, d, app, dl, spec, None).await?;
    store.send_job(node, &d.id, &job).await
}

/// The job that runs `d` (as assigned, or about to be: only its node is not read).
async fn job_of(
    store: &Store,
    d: &Deployment,
    mut app: App,
    dl: Deadlines,
    spec: Spec,
    pre: Option<&DeployReads>,
) -> Result<Job> {
    let Spec {
        image,
        slot,
        attempt,
    } = spec;
    let runtime = match &d.runtime {
        Some(rt) => rt.clone(),
        None => runtime_of(store, &app).await?,
    };
    app.env.runtime = runtime.env;
    app.port = runtime.port;
    app.health_check = runtime.health_check;
    // The runtime's variables are the release's (its secret ones travel in `runtime_secrets`):
    // a name secret now but plain in the release is plain here.
    app.env
        .secret
        .retain(|k, _| !app.env.runtime.contains_key(k) && !app.env.build.contains_key(k));
    let rollback_image = rollback_image(d);
    let builds = image.is_none() && app.env.secret_build().next().is_some();
    // The releases the index holds once this deployment succeeds keep their images.
    let keep_releases = app.keep_releases as usize;
    let (retained, credential, env_secrets) = futures_util::try_join!(
        async {
            match pre {
                Some(pre) => Ok(pre.releases.iter().take(keep_releases).cloned().collect()),
                None => releases::retained_images(store, &app.name, keep_releases).await,
            }
        },
        async {
            match pre {
                Some(pre) => Ok(pre.credential.clone()),
                None => store.get_credential(&app.name).await,
            }
        },
        async {
            match builds {
                true => store.get_env_secrets(&app.name).await,
                false => Ok(None),
            }
        },
    )?;
    let keep = releases::images_to_keep(
        retained,
        rollback_image.as_deref(),
        app.keep_releases as usize,
    );
    let job = Job::Deploy(Box::new(DeployJob {
        deployment_id: d.id.clone(),
        credential,
        env_secrets,
        runtime_secrets: runtime.secrets,
        git_ref: d.git_ref.clone(),
        deadline_ms: d.created_at + dl.deploy_timeout.as_millis() as u64,
        image,
        // A restart runs new containers (the app's settings may have changed); everything
        // else that runs a release may take the release's own container again.
        reuse_container_of: d
            .rollback_of
            .clone()
            .filter(|_| d.kind != DeploymentKind::Restart),
        keep_images: Some(keep),
        slot,
        attempt,
        upload: d.upload.clone(),
        no_cache: d.no_cache,
        app,
    }));
    Ok(job)
}

/// Tick now, reading the record again (it changed) — or deciding from the record given: the
/// one the Ledger has just written (`Poke`), as a read would have found it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Look(pub Option<Deployment>);

impl Handler<Look> for DeploymentActor {
    type Result = ();

    fn handle(&mut self, Look(written): Look, ctx: &mut Context<Self>) {
        self.known = None;
        // Only a look that starts now takes the record given: one that waits for a tick under
        // way reads the record after it (that tick may write it).
        if !self.busy && self.created.is_none() {
            self.created = written
                .filter(|d| d.id == self.id)
                .map(|d| Box::new(First::written(d)));
        }
        self.schedule_tick(ctx);
    }
}

impl Actor for DeploymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.schedule_tick(ctx);
        ctx.run_interval(Duration::from_millis(500), |act, ctx| {
            act.schedule_tick(ctx)
        });
        let parent = self.link.parent.clone();
        ctx.spawn(
            async move { parent.cancelled().await }
                .into_actor(self)
                .map(|_, act: &mut Self, ctx| {
                    act.link
                        .done
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    ctx.stop()
                }),
        );
    }
}

berth_bus::injectable!(DeploymentActor);

#[cfg(test)]
mod tests {
    fn future_size<A, B, C, R>(_: fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every deployment in flight looks twice a second, and each look's future is a fresh
    /// allocation (then moved into place): a look that only waits on its node must not carry
    /// the decision's future (8.5 KiB) or the records inline. It carried 17.6 KiB once; the
    /// copy and the fresh pages were 12 % of an overloaded coordinator's samples.
    #[test]
    fn a_look_is_a_small_future() {
        let size = future_size(super::tick);
        assert!(size <= 2048, "a look's future is {size} bytes");
    }

    /// A deployment's first placement prefers the node of its app's latest deployment among
    /// the ids its create read (no read of the index), and finds the one a read of the index
    /// finds: the latest of the newest five that ran on a node, itself left out.
    #[actix_rt::test]
    async fn the_last_builder_is_found_among_the_ids_the_create_read() {
        use crate::ledger::{Create, Ledger};
        use crate::store::{Expect, Store};
        use actix::Actor;
        let (_redis, conn) = crate::store::tests::real_redis("last-builder").await;
        let store = Store::new(conn);
        let ledger = Ledger::new(store.clone()).start();
        let create = || Create {
            app: "a".into(),
            ..Default::default()
        };
        // The app's first deployment: no other, no preference.
        let first = ledger.send(create()).await.unwrap().unwrap();
        assert_eq!(first.recent, std::slice::from_ref(&first.deployment.id));
        let among = super::last_builder_among(&store, &first.deployment, first.recent.clone());
        assert_eq!(among.await.unwrap(), None);
        // It ran on n1; the next one prefers n1, through the ids or through a read.
        let (mut ran, raw) = store
            .read_deployment(&first.deployment.id)
            .await
            .unwrap()
            .unwrap();
        ran.node = Some("n1".into());
        let before = ran.status;
        assert!(store
            .put_deployment_with(&ran, &[], Expect::Read(&raw, before))
            .await
            .unwrap());
        for n in 0..5 {
            // Distinct creation times: the index orders by them.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let c = ledger.send(create()).await.unwrap().unwrap();
            let by_read = super::last_builder(&store, &c.deployment).await.unwrap();
            // With five unplaced ones after it, n1's is out of the five looked at.
            let want = (n < 4).then(|| "n1".to_string());
            assert_eq!(by_read, want, "after {} more", n + 1);
            let among = super::last_builder_among(&store, &c.deployment, c.recent.clone());
            assert_eq!(among.await.unwrap(), want, "after {} more", n + 1);
        }
    }

    /// What a create reads with the app's record (`Store::app_for_deploy`: the app's newest
    /// ids, release index, credential and a guessed domain's route, in the app's round trip)
    /// places the deployment and makes its job exactly as the reads after the app do: the
    /// node the route's replicas and the last build decide, the releases the job keeps, the
    /// credential. A wrong guess of the domain reads the route again (the guess is only a
    /// hint), and reads for another app change what is read.
    #[actix_rt::test]
    async fn what_a_create_reads_with_the_app_places_it_as_reading_after_the_app_does() {
        use crate::ledger::{Create, CreateRecord, Ledger};
        use crate::registry::{Liveness, NodeRegistry};
        use crate::store::Store;
        use actix::Actor;
        use berth_protocol::{envelope, keys, Route, Upstream};
        let (_redis, conn) = crate::store::tests::real_redis("place-prefetched").await;
        let store = Store::new(conn);
        let ledger = Ledger::new(store.clone()).start();
        for name in ["n1", "n2", "n3"] {
            let info = berth_protocol::NodeInfo {
                name: name.into(),
                last_heartbeat: super::now_ms(),
                ..crate::registry::tests::node_info()
            };
            let bytes = envelope::encode(envelope::kind::NODE, "t", &info).unwrap();
            redis::pipe()
                .set(keys::node(name), bytes)
                .sadd(keys::NODES, name)
                .query_async::<()>(&mut store.conn())
                .await
                .unwrap();
        }
        let mut app = crate::apps::tests::app();
        app.keep_releases = 3;
        assert!(store.put_app(&app, true).await.unwrap());
        let key = berth_protocol::secret::SecretKey::generate();
        let sealed = key.seal(b"token");
        store
            .put_credential(&app.name, Some(&sealed))
            .await
            .unwrap();
        let releases = keys::app_releases(&app.name);
        redis::pipe()
            .zadd(&releases, "img:1", 1)
            .zadd(&releases, "img:2", 2)
            .zadd(&releases, "img:3", 3)
            .zadd(&releases, "img:4", 4)
            .query_async::<()>(&mut store.conn())
            .await
            .unwrap();
        // The app runs on n1: spread puts a new replica elsewhere (n2, the first of the rest).
        let upstream = |node: &str| Upstream {
            dial: format!("{node}:1"),
            node: node.into(),
            container: "c".into(),
            deployment: "d0".into(),
        };
        // The app's route with its one replica on `node`.
        let route_on = |node: &str, updated_at: u64| {
            let (store, route) = (
                store.clone(),
                Route {
                    domain: app.domains[0].clone(),
                    app: app.name.clone(),
                    upstreams: vec![upstream(node)],
                    updated_at,
                    drain_s: None,
                    standby: Vec::new(),
                    standby_until: 0,
                },
            );
            async move { store.put_route(&route).await.unwrap() }
        };
        route_on("n1", 1).await;
        // A fresh registry for each placement: the one that places counts its pick, which would
        // change the next one's.
        let placer = || super::Placer {
            store: store.clone(),
            registry: berth_bus::Live::new(
                NodeRegistry::new(store.clone(), Liveness::default()).start(),
            ),
            dl: super::Deadlines::default(),
            shared_images: false,
        };
        // Places `d` each way, answering the node and the job's command (the same when the
        // reads are); `guess` is the domain read with the app.
        let (placer, sealed) = (&placer, &sealed);
        let place = |d: berth_protocol::Deployment, guess: String| {
            let (app, store) = (app.clone(), store.clone());
            async move {
                let after = {
                    let mut d = d.clone();
                    let cmd = super::place_new(&placer(), &mut d, &app, None).await;
                    (d.node, cmd.map(|c| c.get_packed_command()))
                };
                let p = placer();
                let (read, reads) = store
                    .app_for_deploy(&app.name, super::LAYER_CACHE_LOOKBACK, Some(&guess))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(read, app);
                let reads = reads.expect("every read decodes");
                assert_eq!(reads.credential, Some(sealed.clone()));
                let nodes = p.registry.send(super::Nodes).await.unwrap().unwrap();
                let pre = super::Prefetched { nodes, reads };
                let mut d = d.clone();
                let cmd = super::place_new(&p, &mut d, &app, Some(pre)).await;
                assert_eq!((d.node, cmd.map(|c| c.get_packed_command())), after);
                after
            }
        };
        let create = || Create {
            app: app.name.clone(),
            ..Default::default()
        };

        let (first, wrong) = (app.domains[0].clone(), "nowhere.example".to_string());
        let q = create().record();
        let (node, cmd) = place(q.d.clone(), wrong.clone()).await;
        assert_eq!(node.as_deref(), Some("n2"));
        let (node, cmd2) = place(q.d.clone(), first.clone()).await;
        assert_eq!((node.as_deref(), &cmd2), (Some("n2"), &cmd));
        // The job keeps the app's two newest releases (the new build takes the third place).
        let bytes = String::from_utf8_lossy(cmd.as_deref().unwrap()).into_owned();
        assert!(bytes.contains("img:4") && bytes.contains("img:3") && !bytes.contains("img:2"));

        // Its create makes n2 the node that built the app last; with the app's replica on n2
        // now, spread alone would pick n1: the next one goes to n2 only through the last build.
        let mut d = q.d.clone();
        let job = super::place_new(&placer(), &mut d, &app, None).await;
        let queued = crate::ledger::Queued { d, line: q.line };
        ledger
            .send(CreateRecord {
                queued,
                job: job.map(|j| (j, app.keep_releases)),
            })
            .await
            .unwrap()
            .unwrap();
        route_on("n2", 2).await;
        let next = create().record();
        let (node, _) = place(next.d.clone(), first).await;
        assert_eq!(node.as_deref(), Some("n2"), "the last builder is preferred");
        let (node, _) = place(next.d, wrong).await;
        assert_eq!(node.as_deref(), Some("n2"));
    }

    /// A new deployment of an app that a ready node can take is placed before its record is
    /// written: the one create (`ledger::CreateRecord`) writes the record with its node and
    /// runtime and queues its job on that node's stream. When no node passes (here, the only
    /// one is cordoned) it is created unplaced, as any create is: no node, no job, no runtime
    /// yet (taken when its actor places it); so it is when placing fails.
    #[actix_rt::test]
    async fn a_new_deployment_is_placed_and_queued_by_its_create() {
        use crate::ledger::{Create, CreateRecord, Ledger};
        use crate::registry::{Cordon, Liveness, NodeRegistry};
        use crate::store::Store;
        use actix::{Actor, ActorContext};
        use berth_protocol::{envelope, keys, Job, JOB_KIND};
        let (_redis, conn) = crate::store::tests::real_redis("place-new").await;
        let store = Store::new(conn);
        let ledger = Ledger::new(store.clone()).start();
        let registry = NodeRegistry::new(store.clone(), Liveness::default()).start();
        let placer = super::Placer {
            store: store.clone(),
            registry: berth_bus::Live::new(registry.clone()),
            dl: super::Deadlines::default(),
            shared_images: false,
        };
        let info = berth_protocol::NodeInfo {
            name: "n1".into(),
            last_heartbeat: super::now_ms(),
            ..crate::registry::tests::node_info()
        };
        let bytes = envelope::encode(envelope::kind::NODE, "t", &info).unwrap();
        redis::pipe()
            .set(keys::node("n1"), bytes)
            .sadd(keys::NODES, "n1")
            .query_async::<()>(&mut store.conn())
            .await
            .unwrap();
        let app = crate::apps::tests::app();
        let create = || Create {
            app: app.name.clone(),
            ..Default::default()
        };
        let jobs = || {
            let mut c = store.conn();
            async move {
                let r: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(keys::jobs("n1"))
                    .arg("-")
                    .arg("+")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                r.ids
                    .iter()
                    .map(|e| {
                        let bytes: Vec<u8> = e.get(envelope::STREAM_FIELD).unwrap();
                        match envelope::decode::<Job>(&bytes, JOB_KIND).unwrap() {
                            Job::Deploy(j) => j.deployment_id,
                            other => panic!("not a deploy job: {other:?}"),
                        }
                    })
                    .collect::<Vec<_>>()
            }
        };

        let mut q = create().record();
        let job = super::place_new(&placer, &mut q.d, &app, None).await;
        assert!(job.is_some());
        assert_eq!(q.d.node.as_deref(), Some("n1"));
        let runtime =
            q.d.runtime
                .clone()
                .expect("the runtime is taken with the node");
        assert_eq!(runtime.port, app.port);
        // Writes a record as made (with its job, if any), answering it as written and as read.
        let write = |queued, job| {
            let (ledger, store) = (ledger.clone(), store.clone());
            async move {
                let c = ledger.send(CreateRecord { queued, job }).await.unwrap();
                let d = c.unwrap().deployment;
                let stored = store.get_deployment(&d.id).await.unwrap().unwrap();
                (d, stored)
            }
        };
        let (d, stored) = write(q, job.map(|j| (j, app.keep_releases))).await;
        assert_eq!(stored, d);
        assert_eq!(stored.node.as_deref(), Some("n1"));
        assert_eq!(stored.status, berth_protocol::DeploymentStatus::Queued);
        assert_eq!(jobs().await, vec![d.id.clone()]);

        registry
            .send(Cordon {
                node: "n1".into(),
                on: true,
            })
            .await
            .unwrap()
            .unwrap();
        let mut q = create().record();
        let job = super::place_new(&placer, &mut q.d, &app, None).await;
        assert!(job.is_none());
        assert_eq!((q.d.node.as_deref(), q.d.runtime.is_some()), (None, false));
        let (_, stored) = write(q, job.map(|j| (j, app.keep_releases))).await;
        assert_eq!((stored.node, stored.runtime), (None, None));
        assert_eq!(jobs().await.len(), 1, "no job for the unplaced one");

        // The registry away (its mailbox closed): not placed, the record left as it was made.
        let gone = NodeRegistry::create(|ctx| {
            ctx.stop();
            NodeRegistry::new(store.clone(), Liveness::default())
        });
        let away = super::Placer {
            registry: berth_bus::Live::new(gone),
            ..placer
        };
        let q = create().record();
        let mut d = q.d.clone();
        assert!(super::place_new(&away, &mut d, &app, None).await.is_none());
        assert_eq!(d, q.d);
    }
}
