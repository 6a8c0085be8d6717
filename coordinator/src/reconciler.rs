//! `Reconciler`: desired versus observed for deployments, and the supervisor of their actors.
//!
//! Every deployment in the active set (`berth:deployments:active`) must have a live
//! `DeploymentActor` — on the leading coordinator only (`lease.rs`): a follower runs none, and a
//! coordinator that stops leading stops its actors at once. The reconciler checks that at start and every `interval`: it starts actors
//! for deployments created by the API and adopts the ones a previous coordinator left behind. It
//! is also their supervisor: every [`CHECK_EVERY`] it looks for an actor whose mailbox closed
//! without the actor having stopped by itself (a panic: actix drops the actor and closes its
//! mailbox for good) and starts a new one at once — it reloads the record from Redis at its
//! first tick — logging and counting the restart (`coordinator/deployment` in
//! `berth:stats:restarts`). More than the [`Intensity`] of such restarts escalate: the
//! reconciler stops, its tree restarts it (a restart of `reconciler`), and the actors it
//! supervised stop with it ([`Link`]) before the new one adopts every active deployment again.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use berth_bus::supervise::{count_restart, InjectPanic, Intensity, Restarts};
use berth_bus::{Live, Shutdown};
use berth_protocol::{App, Deployment};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::deployment::{Deadlines, DeploymentActor, First, Link};
use crate::lease::Leadership;
use crate::ledger::Ledger;
use crate::registry::NodeRegistry;
use crate::store::Store;

/// How often the deployment actors' mailboxes are looked at.
const CHECK_EVERY: Duration = Duration::from_millis(250);

pub struct Reconciler {
    store: Store,
    ledger: Live<Ledger>,
    registry: Live<NodeRegistry>,
    deadlines: Deadlines,
    /// Whether the nodes share images through a registry (`registry.url`).
    shared_images: bool,
    interval: Duration,
    /// The actor watching each in-flight deployment, and its link.
    actors: HashMap<String, (Addr<DeploymentActor>, Link)>,
    /// True while a scan of the active set is under way.
    scanning: bool,
    shutdown: Shutdown,
    /// Restarts of deployment actors, against the intensity limit.
    restarts: Restarts,
    /// The parent token of every deployment actor's link, cancelled when this reconciler is
    /// dropped — stopped or panicked.
    children: CancellationToken,
    _children_guard: DropGuard,
    /// Whether this coordinator leads: deployment actors run only on the leader.
    leadership: Leadership,
    /// The epoch the current actors run under (`None`: following, no actors).
    term: Option<u64>,
}

/// What the reconciler's deployment actors work under, and how often it scans.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub deadlines: Deadlines,
    /// Whether the nodes share images through a registry (`registry.url`).
    pub shared_images: bool,
    /// How often the active set is scanned.
    pub interval: Duration,
}

impl Reconciler {
    pub fn new(
        store: Store,
        ledger: Live<Ledger>,
        registry: Live<NodeRegistry>,
        settings: Settings,
        shutdown: &Shutdown,
        leadership: Leadership,
    ) -> Self {
        let Settings {
            deadlines,
            shared_images,
            interval,
        } = settings;
        let children = CancellationToken::new();
        Reconciler {
            term: leadership.epoch(),
            leadership,
            shutdown: shutdown.clone(),
            restarts: Restarts::new(Intensity::default()),
            _children_guard: children.clone().drop_guard(),
            children,
            store,
            ledger,
            registry,
            deadlines,
            shared_images,
            interval,
            actors: HashMap::new(),
            scanning: false,
        }
    }

    fn track(&mut self, id: String, created: Option<First>) {
        if self.term.is_none() || self.actors.get(&id).is_some_and(|(a, _)| a.connected()) {
            return;
        }
        let link = Link {
            parent: self.children.clone(),
            done: Default::default(),
        };
        let actor = DeploymentActor::new(
            id.clone(),
            self.store.clone(),
            self.ledger.clone(),
            self.registry.clone(),
            self.deadlines,
            self.shared_images,
            link.clone(),
        )
        .created(created);
        self.actors.insert(id, (actor.start(), link));
    }

    /// Restarts the deployment actors that died; stops this reconciler (an escalation) when
    /// they die too often.
    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let now = self.leadership.epoch();
        if now != self.term {
            if self.term.is_some() {
                tracing::warn!(
                    epoch = ?now,
                    "no longer leading under epoch {:?}: stopping the deployment actors",
                    self.term
                );
                // Replacing the guard cancels the old token: every actor of the term stops.
                self.children = CancellationToken::new();
                self._children_guard = self.children.clone().drop_guard();
                self.actors.clear();
            }
            self.term = now;
            if now.is_some() {
                tracing::info!(epoch = ?now, "leading: adopting every active deployment");
                self.scan(ctx);
            }
        }
        if self.term.is_none() {
            return;
        }
        let dead: Vec<String> = self
            .actors
            .iter()
            .filter(|(_, (a, link))| !a.connected() && !link.done.load(Ordering::SeqCst))
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            if self.restarts.record(Instant::now()) {
                tracing::error!(
                    deployment = %id,
                    "deployment actors died more than {} times within {} s; restarting the reconciler",
                    self.restarts.limit().max,
                    self.restarts.limit().within.as_secs()
                );
                ctx.stop();
                return;
            }
            tracing::error!(deployment = %id, "deployment actor died; starting a new one");
            count_restart(
                &self.store.conn(),
                &self.shutdown,
                "coordinator",
                "deployment",
            );
            self.track(id, None);
        }
    }

    fn scan(&mut self, ctx: &mut Context<Self>) {
        if self.scanning || self.term.is_none() {
            return;
        }
        self.scanning = true;
        let store = self.store.clone();
        ctx.spawn(
            async move { store.active_deployments().await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.scanning = false;
                    // Dead actors are restarted (and counted) first; then those that finished
                    // (stopped by themselves) are forgotten.
                    act.check(ctx);
                    if ctx.state() != ActorState::Running {
                        return;
                    }
                    act.actors.retain(|_, (a, _)| a.connected());
                    match res {
                        Ok(ids) => ids.into_iter().for_each(|id| act.track(id, None)),
                        // Redis away: the coordinator's connection logs the outage, once.
                        Err(e @ crate::error::Error::Unavailable(_)) => {
                            tracing::debug!(error = %e, "reconciler cannot read active deployments")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "reconciler cannot read active deployments")
                        }
                    }
                }),
        );
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.scan(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.scan(ctx));
        ctx.run_interval(CHECK_EVERY, |act, ctx| act.check(ctx));
    }
}

berth_bus::injectable!(Reconciler);

/// The test hook for deployment actors: one of this reconciler's panics.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanicChild;

impl Handler<InjectPanicChild> for Reconciler {
    type Result = ();

    fn handle(&mut self, _: InjectPanicChild, _: &mut Context<Self>) {
        match self.actors.values().find(|(a, _)| a.connected()) {
            Some((a, _)) => a.do_send(InjectPanic),
            None => tracing::warn!("test hook: no deployment actor to panic"),
        }
    }
}

/// Start watching a deployment now (the API calls this right after creating one), with its
/// record as created: the actor's first look starts from it instead of reading it back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Track {
    pub deployment: Deployment,
    /// The app as the creator read it just before (the API's request did): the first look
    /// places the deployment with it instead of reading it again.
    pub app: Option<App>,
    /// The app's newest deployment ids as the create read them (`ledger::Created::recent`):
    /// the first look finds the app's last builder among them instead of reading the index.
    pub recent: Option<Vec<String>>,
    /// Whether its job went with its record (the creator placed it): not sent again. Its node
    /// may then report before the actor exists; the `Poke` of that change finds no actor, and
    /// the actor decides from the record as created — which, the job sent and its node up, only
    /// waits — until it reads the record again ([`crate::deployment::REREAD`], 5 s at most).
    /// Not seen so far: this message is sent before two Redis round trips could bring an event.
    pub sent: bool,
}

impl Track {
    pub fn new(deployment: Deployment) -> Self {
        Track {
            deployment,
            app: None,
            recent: None,
            sent: false,
        }
    }
}

impl Handler<Track> for Reconciler {
    type Result = ();

    fn handle(&mut self, t: Track, _: &mut Context<Self>) {
        let first = First {
            d: t.deployment,
            app: t.app,
            recent: t.recent,
            sent: t.sent,
        };
        self.track(first.d.id.clone(), Some(first));
    }
}

/// A deployment's record changed (a node's event was applied): its actor looks now rather than
/// at its next tick, so a rollout switches a healthy replica in without waiting. It carries the
/// record as the Ledger just wrote it, which the actor decides from instead of reading it back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poke(pub Deployment);

impl Handler<Poke> for Reconciler {
    type Result = ();

    fn handle(&mut self, msg: Poke, _: &mut Context<Self>) {
        if let Some((a, _)) = self.actors.get(&msg.0.id) {
            a.do_send(crate::deployment::Look(Some(msg.0)));
        }
    }
}
