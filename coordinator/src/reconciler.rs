//! `Reconciler`: desired versus observed for deployments, and the supervisor of their actors.
//!
//! Every deployment in the active set (`berth:deployments:active`) must have a live
//! `DeploymentActor`. The reconciler checks that at start and every `interval`: it starts actors
//! for deployments created by the API, adopts the ones a previous coordinator left behind, and
//! recreates an actor that died (a panic closes an actix mailbox for good; `Addr::connected`
//! tells). So nothing is orphaned and every deployment reaches a terminal state.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;

use crate::deployment::{Deadlines, DeploymentActor};
use crate::ledger::Ledger;
use crate::registry::NodeRegistry;
use crate::store::Store;

pub struct Reconciler {
    store: Store,
    ledger: Addr<Ledger>,
    registry: Addr<NodeRegistry>,
    deadlines: Deadlines,
    /// Whether the nodes share images through a registry (`registry.url`).
    shared_images: bool,
    interval: Duration,
    /// The actor watching each in-flight deployment.
    actors: HashMap<String, Addr<DeploymentActor>>,
    /// True while a scan of the active set is under way.
    scanning: bool,
}

impl Reconciler {
    pub fn new(
        store: Store,
        ledger: Addr<Ledger>,
        registry: Addr<NodeRegistry>,
        deadlines: Deadlines,
        shared_images: bool,
        interval: Duration,
    ) -> Self {
        Reconciler {
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

    fn track(&mut self, id: String) {
        if self.actors.get(&id).is_some_and(|a| a.connected()) {
            return;
        }
        let actor = DeploymentActor::new(
            id.clone(),
            self.store.clone(),
            self.ledger.clone(),
            self.registry.clone(),
            self.deadlines,
            self.shared_images,
        );
        self.actors.insert(id, actor.start());
    }

    fn scan(&mut self, ctx: &mut Context<Self>) {
        if self.scanning {
            return;
        }
        self.scanning = true;
        let store = self.store.clone();
        ctx.spawn(
            async move { store.active_deployments().await }
                .into_actor(self)
                .map(|res, act, _| {
                    act.scanning = false;
                    // Forget actors that finished (stopped) for deployments no longer active.
                    act.actors.retain(|_, a| a.connected());
                    match res {
                        Ok(ids) => ids.into_iter().for_each(|id| act.track(id)),
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
    }
}

/// Start watching a deployment now (the API calls this right after creating one).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Track(pub String);

impl Handler<Track> for Reconciler {
    type Result = ();

    fn handle(&mut self, msg: Track, _: &mut Context<Self>) {
        self.track(msg.0);
    }
}

/// A deployment's record changed (a node's event was applied): its actor looks now rather than
/// at its next tick, so a rollout switches a healthy replica in without waiting.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poke(pub String);

impl Handler<Poke> for Reconciler {
    type Result = ();

    fn handle(&mut self, msg: Poke, _: &mut Context<Self>) {
        if let Some(a) = self.actors.get(&msg.0) {
            a.do_send(crate::deployment::Look);
        }
    }
}
