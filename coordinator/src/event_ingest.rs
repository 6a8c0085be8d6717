//! `EventIngest`: folds the nodes' events (`berth:events`) into deployment records.
//!
//! It reads through the consumer group `coordinator` with the shared
//! [`berth_bus::StreamConsumer`], in stream order per deployment (a deployment's events must
//! apply in the order its node wrote them; those of different deployments apply at once, as the
//! `Ledger` allows). An entry is acknowledged only after the `Ledger`
//! applied it, so a crash in between means redelivery, which the ledger's forward-only rule makes
//! harmless. A failure is classified: Redis or an actor away is transient and retried as long as
//! it lasts; an event the Ledger cannot apply (its deployment's record is unreadable: corrupted,
//! or written by a newer version) is retried a few times and then dead-lettered to
//! `berth:dead:berth:events`, reported in that deployment's log and counted in `/metrics` — the
//! events behind it are not held up for longer than those few retries.

use actix::prelude::*;
use berth_bus::{ConsumerConfig, Delivery, Live, Mode, Outcome, Shutdown, StreamConsumer};
use berth_protocol::envelope::decode;
use berth_protocol::{keys, Event, LogStream, EVENT_KIND};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::ledger::{Ledger, Transition};
use crate::reconciler::{Poke, Reconciler};
use crate::store::Store;

const CONSUMER: &str = "coordinator";

/// The read loop's configuration for `berth:events`: the events of one deployment in order,
/// different deployments' at once.
pub fn consumer_config() -> ConsumerConfig {
    let mut cfg = ConsumerConfig::new(
        keys::EVENTS,
        keys::EVENTS_GROUP,
        CONSUMER,
        Mode::Keyed(deployment_of),
    );
    // The group is the stream's one reader: what it acknowledged goes (the nodes' cap,
    // `EVENTS_MAXLEN`, is only a safety net, far above what a burst puts it behind).
    cfg.trim_acked_every = Some(std::time::Duration::from_secs(1));
    cfg
}

/// The deployment an event is about (`None`: not a deployment's, or undecodable).
fn deployment_of(d: &Delivery) -> Option<String> {
    let key = decode::<EventKey>(d.payload.as_deref()?, EVENT_KIND).ok()?;
    (key.kind == "deployment").then_some(key.deployment_id?)
}

/// What the key of an [`Event`] needs, decoded from its bytes alone: the variant's name (an
/// `Event` is tagged by its `type` field) and a deployment's id; every other field is skipped.
/// The event itself is decoded once, when it is applied: an internally tagged enum is decoded
/// through a copy of all its fields, which the key does not need.
#[derive(serde::Deserialize)]
struct EventKey {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    deployment_id: Option<String>,
}

pub struct EventIngest {
    store: Store,
    ledger: Live<Ledger>,
    reconciler: Live<Reconciler>,
    /// Stops the read loop when the actor stops; a child of the shutdown token.
    stop: CancellationToken,
    /// The loop reads only while this coordinator leads.
    leadership: crate::lease::Leadership,
    tasks: Shutdown,
}

impl EventIngest {
    /// The read loop stops when `shutdown` is cancelled (or the actor stops).
    pub fn new(
        store: Store,
        ledger: Live<Ledger>,
        reconciler: Live<Reconciler>,
        shutdown: &Shutdown,
        leadership: crate::lease::Leadership,
    ) -> Self {
        EventIngest {
            leadership,
            store,
            ledger,
            reconciler,
            stop: shutdown.child_token(),
            tasks: shutdown.clone(),
        }
    }
}

impl Actor for EventIngest {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (conn, tasks) = (self.store.conn(), self.tasks.clone());
        let (store, ledger) = (self.store.clone(), self.ledger.clone());
        let reconciler = self.reconciler.clone();
        let (mut leadership, stop) = (self.leadership.clone(), self.stop.clone());
        // Events are applied by the leading coordinator only: the read loop runs while this one
        // leads, under the group's one consumer name, so a new leader takes over the pending
        // entries of the last one. In the actor's context: it ends with the actor.
        let run = async move {
            loop {
                while !leadership.is_leader() {
                    tokio::select! {
                        _ = leadership.changed() => {}
                        _ = stop.cancelled() => return,
                    }
                }
                let cfg = consumer_config();
                let max = cfg.max_deliveries;
                let consumer = StreamConsumer::new(cfg, conn.clone(), tasks.clone());
                let term = stop.child_token();
                let (store, ledger, reconciler) =
                    (store.clone(), ledger.clone(), reconciler.clone());
                let reading = consumer.run(term.clone(), move |d| {
                    handle(store.clone(), ledger.clone(), reconciler.clone(), d, max)
                });
                tokio::pin!(reading);
                loop {
                    tokio::select! {
                        _ = &mut reading => return,
                        _ = leadership.changed() => if !leadership.is_leader() {
                            term.cancel();
                            (&mut reading).await;
                            break;
                        },
                    }
                }
            }
        };
        ctx.spawn(run.into_actor(self));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stop.cancel();
    }
}

berth_bus::injectable!(EventIngest);

async fn handle(
    store: Store,
    ledger: Live<Ledger>,
    reconciler: Live<Reconciler>,
    d: Delivery,
    max: u64,
) -> Outcome {
    let Some(bytes) = d.payload else {
        return Outcome::Reject(
            "the entry was trimmed from the stream before it was applied".into(),
        );
    };
    let ev = match decode::<Event>(&bytes, EVENT_KIND) {
        Ok(ev) => ev,
        Err(e) => return Outcome::Reject(format!("undecodable event: {e}")),
    };
    match ev {
        Event::Deployment(update) => {
            let id = update.deployment_id.clone();
            let status = update.status;
            match ledger.send(Transition(update)).await {
                Ok(Ok(d)) => {
                    // Its actor looks at once, at the record as it is now: a rollout acts on
                    // its replicas' reports, and an actor that waits on its node decides from
                    // the record it read last until a change pokes it.
                    if let Some(d) = d {
                        reconciler.do_send(Poke(d));
                    }
                    Outcome::Done
                }
                Err(e) => Outcome::Retry(format!("ledger unavailable: {e}")),
                Ok(Err(e)) if e.is_transient() => Outcome::Retry(e.to_string()),
                Ok(Err(e)) => {
                    let why = format!("deployment {id}: the {status} event cannot be applied: {e}");
                    if d.deliveries >= max {
                        report_unapplied(&store, &id, &why).await;
                    }
                    Outcome::Failed(why)
                }
            }
        }
        Event::AppRemoved { app, node, .. } => {
            tracing::info!(%app, %node, "app removed from node");
            Outcome::Done
        }
    }
}

/// Tells whoever reads the deployment's log that an event of it was given up on.
async fn report_unapplied(store: &Store, id: &str, why: &str) {
    tracing::error!(deployment = %id, %why, "deployment event dead-lettered");
    let line = format!(
        "coordinator: an event of this deployment could not be applied and was moved to {}: {why}",
        keys::dead_letters(keys::EVENTS)
    );
    if let Err(e) = store.append_log(id, LogStream::System, &line).await {
        tracing::warn!(deployment = %id, error = %e, "could not write to the deployment log");
    }
}

impl Error {
    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable(_) | Error::Mailbox(_) => true,
            Error::Redis(e) => berth_bus::is_unavailable(e),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::{envelope, DeploymentStatus, DeploymentUpdate};

    fn delivery(payload: Option<Vec<u8>>) -> Delivery {
        Delivery {
            id: "1-0".into(),
            payload,
            deliveries: 1,
            recovered: false,
        }
    }

    fn event(ev: &Event) -> Delivery {
        delivery(Some(envelope::encode(EVENT_KIND, "e1", ev).unwrap()))
    }

    /// The key read from the bytes alone is the deployment's id of a deployment's event (full
    /// of other fields), none for any other event or bytes that are not an event.
    #[test]
    fn an_event_is_keyed_by_its_deployment() {
        let mut update = DeploymentUpdate::new("d1", DeploymentStatus::Succeeded);
        update.node = Some("n1".into());
        update.image = Some("berth/a:d1".into());
        update.error = Some("no".into());
        assert_eq!(
            deployment_of(&event(&Event::Deployment(update))).as_deref(),
            Some("d1")
        );
        let removed = Event::AppRemoved {
            app: "a".into(),
            node: "n1".into(),
            at: 1,
        };
        assert_eq!(deployment_of(&event(&removed)), None);
        assert_eq!(deployment_of(&delivery(None)), None);
        assert_eq!(deployment_of(&delivery(Some(b"junk".to_vec()))), None);
        let job = envelope::encode(
            berth_protocol::JOB_KIND,
            "j1",
            &berth_protocol::Job::StopApp { app: "a".into() },
        )
        .unwrap();
        assert_eq!(deployment_of(&delivery(Some(job))), None);
    }
}
