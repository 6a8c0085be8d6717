//! The `JobConsumer` actor: reads this node's job stream and hands each job to the
//! [`Deployer`](crate::deployer::Deployer).
//!
//! It reads `berth:jobs:<node>` in consumer group `node` as consumer `<node>` through the shared
//! [`berth_bus::StreamConsumer`] in concurrent mode: its own connection for the blocking reads,
//! this consumer's pending entries first (flagged `recovered` at start, so the deployer can tell
//! a job a restart interrupted), then new ones, each job in its own task (tracked by the
//! node's shutdown tracker; the read loop stops on a child of its token). An entry is
//! acknowledged once its job finished, successfully or not; a job that could not start (its
//! claim failed, the node is shutting down) stays pending and is delivered again; an entry that
//! does not decode goes to the dead-letter stream `berth:dead:berth:jobs:<node>`. Once a second
//! while jobs come in, it trims from the stream what it acknowledged (`trim_acked_every`), so
//! the stream holds the jobs not finished yet, not the last [`keys::STREAM_MAXLEN`] of them.

use actix::prelude::*;
use berth_bus::{ConsumerConfig, Delivery, Live, Mode, Outcome, Redis, Shutdown, StreamConsumer};
use berth_protocol::{envelope, keys, Job, JOB_KIND};
use tokio_util::sync::CancellationToken;

use crate::deployer::{Deployer, RunJob};

/// Entries read at a time.
const BATCH: usize = 16;
/// How often, at most, the acknowledged jobs are trimmed from the stream.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The job-reading actor.
pub struct JobConsumer {
    consumer: Option<StreamConsumer>,
    deployer: Live<Deployer>,
    /// Stops the read loop (jobs in progress go on); a child of the shutdown token.
    stop: CancellationToken,
}

impl JobConsumer {
    /// The reader of this node's job stream. Every incarnation of the actor (its supervisor
    /// restarts it) gets a clone of the same `consumer`, so they share its jobs in flight.
    pub fn new(consumer: StreamConsumer, deployer: Live<Deployer>, shutdown: &Shutdown) -> Self {
        JobConsumer {
            consumer: Some(consumer),
            deployer,
            stop: shutdown.child_token(),
        }
    }

    /// The consumer of `berth:jobs:<node>` the node's job consumers share.
    pub fn stream_consumer(node: &str, conn: Redis, shutdown: &Shutdown) -> StreamConsumer {
        let mut cfg =
            ConsumerConfig::new(keys::jobs(node), keys::JOBS_GROUP, node, Mode::Concurrent);
        cfg.batch = BATCH;
        cfg.trim_acked_every = Some(TRIM_EVERY);
        StreamConsumer::new(cfg, conn, shutdown.clone())
    }
}

/// Hands one delivered job to the deployer.
async fn handle(deployer: Live<Deployer>, d: Delivery) -> Outcome {
    let Some(bytes) = d.payload else {
        return Outcome::Reject("the job was trimmed from the stream before it ran".into());
    };
    let job = match envelope::decode::<Job>(&bytes, JOB_KIND) {
        Ok(job) => job,
        Err(e) => return Outcome::Reject(format!("undecodable job: {e}")),
    };
    match deployer
        .send(RunJob {
            job,
            recovered: d.recovered,
        })
        .await
    {
        Ok(true) => Outcome::Done,
        Ok(false) => {
            Outcome::Retry("the job did not run to its end (claim failed, or shutdown)".into())
        }
        Err(e) => Outcome::Retry(format!("deployer unavailable: {e}")),
    }
}

impl Actor for JobConsumer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(consumer) = self.consumer.take() {
            let deployer = self.deployer.clone();
            let run = consumer.run(self.stop.clone(), move |d| handle(deployer.clone(), d));
            ctx.spawn(run.into_actor(self));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.stop.cancel();
    }
}

berth_bus::injectable!(JobConsumer);

/// Stop reading jobs (jobs in progress go on).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopConsumer;

impl Handler<StopConsumer> for JobConsumer {
    type Result = ();

    fn handle(&mut self, _: StopConsumer, ctx: &mut Self::Context) {
        self.stop.cancel();
        ctx.stop();
    }
}
