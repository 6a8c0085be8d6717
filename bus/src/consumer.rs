//! `StreamConsumer`: the one way Berth reads a Redis stream in a consumer group.
//!
//! Used by the coordinator's event ingest (`berth:events`, entries handled one at a time, in
//! order) and by each node's job consumer (`berth:jobs:<node>`, entries handled concurrently).
//! What it guarantees, for either:
//! - the group (and the stream) exist before the first read (`XGROUP CREATE … MKSTREAM`);
//! - at start and after every reconnect it first re-reads the entries delivered to this consumer
//!   but never acknowledged (id `0`), then new ones (`>`), on a connection of its own without a
//!   response timeout (`BLOCK` bounds each read);
//! - an entry is acknowledged only after its handler said [`Outcome::Done`];
//! - each delivery carries how often Redis has delivered the entry (`XPENDING`), so a handler
//!   that keeps failing on one entry ([`Outcome::Failed`]) does so at most `max_deliveries`
//!   times: then the entry moves to the dead-letter stream `berth:dead:<stream>` with the
//!   reason, is counted in `berth:stats:dead_letters`, logged, and acknowledged in one
//!   `MULTI`, and the reader moves on. [`Outcome::Reject`] (an entry that can never be handled,
//!   e.g. undecodable) goes there at once; [`Outcome::Retry`] (a transient failure: Redis away)
//!   is never dead-lettered;
//! - in [`Mode::Sequential`] a failing entry holds back the ones behind it (their order
//!   matters), retried with backoff from the oldest pending one; [`Mode::Keyed`] does the same
//!   per key (the entries of one deployment in order, different deployments at once); in
//!   [`Mode::Concurrent`] each entry runs in its own task and a failed one is delivered again
//!   at the next pending scan.
//!
//! When Redis goes away the session ends; the loop reconnects with capped backoff (200 ms to
//! 5 s, or at once when the daemon's connection sees Redis answer again, [`Redis::back`]) and
//! logs the run of failures once ([`Failing`]), then re-reads its pending entries first as at
//! start. Nothing is lost meanwhile: an entry not acknowledged stays pending in Redis.
//!
//! The loop stops when its `CancellationToken` is cancelled; what is in flight stays pending.
//! The tasks of [`Mode::Concurrent`] are tracked by the [`Shutdown`] given to
//! [`StreamConsumer::new`], so a shutdown waits for their acknowledgements.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_protocol::{envelope::STREAM_FIELD, keys, now_ms};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::streams::{
    StreamPendingCountReply, StreamPendingReply, StreamReadOptions, StreamReadReply,
};
use tokio_util::sync::CancellationToken;

use crate::conn::Redis;
use crate::retry::{Backoff, Failing};
use crate::Shutdown;

/// How entries are handed to the handler.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// One at a time, in stream order; a failing entry holds back the rest.
    Sequential,
    /// In stream order per key (what the function answers for an entry: the deployment an
    /// event is about), the keys of a batch at once; a failing entry holds back the rest of
    /// its key. Entries without a key share one.
    Keyed(fn(&Delivery) -> Option<String>),
    /// Each entry in its own task; the entry is acknowledged when its task says so.
    Concurrent,
}

/// What a consumer reads and how.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub stream: String,
    pub group: String,
    pub consumer: String,
    /// Entries read at a time.
    pub batch: usize,
    /// How long one read blocks in Redis.
    pub block: Duration,
    /// After this many deliveries an entry whose handler still says [`Outcome::Failed`] is
    /// dead-lettered.
    pub max_deliveries: u64,
    pub mode: Mode,
    /// How often this consumer's pending entries are read again (in [`Mode::Concurrent`], where
    /// a failed entry is not retried at once).
    pub rescan_pending_every: Duration,
    /// For a stream whose one reader is this group: at most this often, the entries before the
    /// group's oldest unacknowledged one (or before the last one read, when none is pending)
    /// are trimmed (`XTRIM MINID ~`), when entries were read since the last trim or it left
    /// some pending (an idle reader sends none). Its writers then need no length cap close to
    /// what is read, which would drop entries not read yet when the reader falls behind.
    /// `None`: the stream is left as its writers cap it.
    pub trim_acked_every: Option<Duration>,
}

impl ConsumerConfig {
    pub fn new(
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
        mode: Mode,
    ) -> Self {
        ConsumerConfig {
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            batch: 100,
            block: Duration::from_secs(5),
            max_deliveries: 5,
            mode,
            rescan_pending_every: Duration::from_secs(30),
            trim_acked_every: None,
        }
    }
}

/// One delivery of a stream entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: String,
    /// The entry's envelope (field `m`); `None` when the entry was trimmed away while pending.
    pub payload: Option<Vec<u8>>,
    /// How many times Redis has delivered this entry, this time included.
    pub deliveries: u64,
    /// It was delivered to this consumer before this process started (found pending at start).
    pub recovered: bool,
}

/// What the handler made of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: acknowledge it.
    Done,
    /// A transient failure (Redis away, shutting down): deliver it again later, however often.
    Retry(String),
    /// A failure that may be permanent: deliver it again, up to `max_deliveries` times in all,
    /// then dead-letter it with this reason.
    Failed(String),
    /// It can never be handled (e.g. undecodable): dead-letter it now.
    Reject(String),
}

/// Reads one stream in one consumer group; see the module docs. Clones share the set of entries
/// in flight: the consumer of a restarted actor, made from a clone, does not hand out again the
/// entries whose handlers are still running.
#[derive(Clone)]
pub struct StreamConsumer {
    cfg: ConsumerConfig,
    /// Ordinary commands (acknowledgements and dead letters); it opens the blocking reads' own
    /// connection.
    conn: Redis,
    /// Ids handed to a handler and not finished (only [`Mode::Concurrent`] has any across
    /// reads): a pending scan does not hand them out twice.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// Tracks the handler tasks of [`Mode::Concurrent`] (the loop itself stops on the token
    /// given to [`StreamConsumer::run`]).
    tasks: Shutdown,
}

/// The handler, boxed once so the read loop is not generic over it.
type Handler = Arc<dyn Fn(Delivery) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// Whether handling a batch went through or stopped at a sequential failure.
enum Flow {
    Continue,
    Stalled,
}

/// Creates the consumer group (and the stream) if missing.
pub async fn ensure_group<C: ConnectionLike>(
    conn: &mut C,
    stream: &str,
    group: &str,
) -> redis::RedisResult<()> {
    let r: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
        _ => Ok(()),
    }
}

impl StreamConsumer {
    /// A consumer whose [`Mode::Concurrent`] handler tasks are tracked by `tasks`.
    pub fn new(cfg: ConsumerConfig, conn: Redis, tasks: Shutdown) -> Self {
        StreamConsumer {
            cfg,
            conn,
            in_flight: Arc::default(),
            tasks,
        }
    }

    /// Reads and handles entries until `shutdown` is cancelled.
    pub async fn run<H, F>(self, shutdown: CancellationToken, handler: H)
    where
        H: Fn(Delivery) -> F + Send + Sync + 'static,
        F: Future<Output = Outcome> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |d| Box::pin(handler(d)));
        let mut startup = true;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut failing = Failing::new(format!("reading {}", self.cfg.stream));
        loop {
            let r = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.session(&mut startup, &handler, &mut backoff, &mut failing) => r,
            };
            if let Err(e) = r {
                failing.failed(&e, crate::is_unavailable(&e));
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = backoff.wait() => {}
                () = self.conn.back() => {}
            }
        }
    }

    /// One connection's life: pending entries first, then new ones, until an error.
    async fn session(
        &self,
        startup: &mut bool,
        handler: &Handler,
        backoff: &mut Backoff,
        failing: &mut Failing,
    ) -> redis::RedisResult<()> {
        let mut conn = self.conn.connect_blocking(self.cfg.block).await?;
        let group = ensure_group(&mut conn, &self.cfg.stream, &self.cfg.group).await;
        self.conn.observed(group)?;
        self.scan_pending(&mut conn, *startup, handler, backoff)
            .await?;
        *startup = false;
        backoff.reset();
        failing.ok();
        let mut last_scan = Instant::now();
        let (mut last_read, mut last_trim) = (None, Instant::now());
        // Whether a trim may find something to drop: entries were read since the last one, or
        // it left some pending. An idle reader (a node without jobs) sends no trims.
        let mut untrimmed = false;
        loop {
            let batch = self.read(&mut conn, ">", true).await?;
            if let Some((id, _)) = batch.last() {
                last_read = Some(id.clone());
                untrimmed = true;
            }
            let delivered = batch
                .into_iter()
                .map(|(id, payload)| Delivery {
                    id,
                    payload,
                    deliveries: 1,
                    recovered: false,
                })
                .collect();
            let stalled = matches!(self.handle(delivered, handler).await?, Flow::Stalled);
            if stalled || last_scan.elapsed() >= self.cfg.rescan_pending_every {
                if stalled {
                    backoff.wait().await;
                }
                self.scan_pending(&mut conn, false, handler, backoff)
                    .await?;
                last_scan = Instant::now();
            }
            if let (Some(every), Some(read)) = (self.cfg.trim_acked_every, &last_read) {
                if untrimmed && last_trim.elapsed() >= every {
                    untrimmed = self.trim_acked(read).await?;
                    last_trim = Instant::now();
                }
            }
        }
    }

    /// Trims the entries before the group's oldest pending one, or before `last_read` (the
    /// newest entry this loop read) when none is pending: every entry before either was
    /// acknowledged (or dead-lettered). `~`: whole nodes of the stream only, so it is cheap and
    /// keeps up to a node's worth (100 entries) more. Answers whether the group still has
    /// entries pending (so a later trim may drop more without anything new being read).
    async fn trim_acked(&self, last_read: &str) -> redis::RedisResult<bool> {
        let pending: StreamPendingReply = redis::cmd("XPENDING")
            .arg(&self.cfg.stream)
            .arg(&self.cfg.group)
            .query_async(&mut self.conn.clone())
            .await?;
        let (keep_from, pending) = match &pending {
            StreamPendingReply::Data(p) if p.count > 0 => (p.start_id.as_str(), true),
            _ => (last_read, false),
        };
        let _: i64 = redis::cmd("XTRIM")
            .arg(&self.cfg.stream)
            .arg("MINID")
            .arg("~")
            .arg(keep_from)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(pending)
    }

    /// Hands out this consumer's pending entries, oldest first. In sequential mode a failure
    /// waits (backoff) and starts the scan again from the oldest, so order is kept.
    async fn scan_pending(
        &self,
        conn: &mut MultiplexedConnection,
        recovered: bool,
        handler: &Handler,
        backoff: &mut Backoff,
    ) -> redis::RedisResult<()> {
        let mut from = "0".to_string();
        loop {
            let batch = self.read(conn, &from, false).await?;
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(());
            };
            let counts = self.delivery_counts(&first.0, &last.0).await?;
            from = last.0.clone();
            let delivered = batch
                .into_iter()
                .map(|(id, payload)| Delivery {
                    deliveries: counts.get(&id).copied().unwrap_or(1),
                    id,
                    payload,
                    recovered,
                })
                .collect();
            match self.handle(delivered, handler).await? {
                Flow::Continue => backoff.reset(),
                Flow::Stalled => {
                    backoff.wait().await;
                    from = "0".into();
                }
            }
        }
    }

    /// Hands a batch to the handler as the mode says.
    async fn handle(&self, batch: Vec<Delivery>, handler: &Handler) -> redis::RedisResult<Flow> {
        if let Mode::Keyed(key_of) = self.cfg.mode {
            return self.handle_keyed(batch, handler, key_of).await;
        }
        for d in batch {
            match self.cfg.mode {
                Mode::Sequential => {
                    let (id, deliveries, payload) = (d.id.clone(), d.deliveries, d.payload.clone());
                    let outcome = handler(d).await;
                    if !settle(&self.cfg, &self.conn, &id, deliveries, payload, outcome).await? {
                        return Ok(Flow::Stalled);
                    }
                }
                Mode::Keyed(_) => unreachable!("handled by handle_keyed"),
                Mode::Concurrent => {
                    if !lock(&self.in_flight).insert(d.id.clone()) {
                        continue;
                    }
                    let (cfg, conn) = (self.cfg.clone(), self.conn.clone());
                    let (in_flight, handler) = (self.in_flight.clone(), handler.clone());
                    self.tasks.spawn(async move {
                        let (id, deliveries, payload) =
                            (d.id.clone(), d.deliveries, d.payload.clone());
                        let outcome = handler(d).await;
                        if let Err(e) = settle(&cfg, &conn, &id, deliveries, payload, outcome).await
                        {
                            tracing::warn!(stream = %cfg.stream, entry = %id, error = %e,
                                "could not acknowledge; the entry will be delivered again");
                        }
                        lock(&in_flight).remove(&id);
                    });
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// [`Mode::Keyed`]: the batch split by key, in stream order within each; the keys at once,
    /// each one's entries one after the other until one fails (the rest of that key stays
    /// pending, to be delivered again in order). Stalled if any key stalled.
    async fn handle_keyed(
        &self,
        batch: Vec<Delivery>,
        handler: &Handler,
        key_of: fn(&Delivery) -> Option<String>,
    ) -> redis::RedisResult<Flow> {
        let mut index: HashMap<Option<String>, usize> = HashMap::new();
        let mut groups: Vec<Vec<Delivery>> = Vec::new();
        for d in batch {
            let i = *index.entry(key_of(&d)).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[i].push(d);
        }
        // The entries handled are acknowledged together, in one XACK after the batch (an entry
        // handled but not yet acknowledged when the process dies is delivered again, as it
        // would be between any handler and its XACK: handlers take a repeat).
        let done: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let runs = groups.into_iter().map(|group| {
            let done = &done;
            async move {
                for d in group {
                    let (id, deliveries, payload) = (d.id.clone(), d.deliveries, d.payload.clone());
                    match handler(d).await {
                        Outcome::Done => lock(done).push(id),
                        outcome => {
                            if !settle(&self.cfg, &self.conn, &id, deliveries, payload, outcome)
                                .await?
                            {
                                return Ok(Flow::Stalled);
                            }
                        }
                    }
                }
                redis::RedisResult::Ok(Flow::Continue)
            }
        });
        let mut flow = Flow::Continue;
        let mut failed = None;
        for r in futures_util::future::join_all(runs).await {
            match r {
                Ok(Flow::Stalled) => flow = Flow::Stalled,
                Ok(_) => {}
                Err(e) => failed = Some(e),
            }
        }
        let done = done.into_inner().unwrap_or_else(|p| p.into_inner());
        if !done.is_empty() {
            let _: i64 = redis::cmd("XACK")
                .arg(&self.cfg.stream)
                .arg(&self.cfg.group)
                .arg(&done)
                .query_async(&mut self.conn.clone())
                .await?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(flow),
        }
    }

    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        from: &str,
        block: bool,
    ) -> redis::RedisResult<Vec<(String, Option<Vec<u8>>)>> {
        let mut opts = StreamReadOptions::default()
            .group(&self.cfg.group, &self.cfg.consumer)
            .count(self.cfg.batch);
        if block {
            opts = opts.block(self.cfg.block.as_millis() as usize);
        }
        let reply: Option<StreamReadReply> = self.conn.observed(
            redis::cmd("XREADGROUP")
                .arg(&opts)
                .arg("STREAMS")
                .arg(&self.cfg.stream)
                .arg(from)
                .query_async(conn)
                .await,
        )?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|e| {
                let payload = e.get::<Vec<u8>>(STREAM_FIELD);
                (e.id, payload)
            })
            .collect())
    }

    /// How often each of this consumer's pending entries in `[first, last]` was delivered.
    async fn delivery_counts(
        &self,
        first: &str,
        last: &str,
    ) -> redis::RedisResult<HashMap<String, u64>> {
        let reply: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.cfg.stream)
            .arg(&self.cfg.group)
            .arg(first)
            .arg(last)
            .arg(self.cfg.batch)
            .arg(&self.cfg.consumer)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|p| (p.id, p.times_delivered as u64))
            .collect())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Acts on a handler's outcome; returns whether the entry is settled (acknowledged or
/// dead-lettered) rather than left pending.
async fn settle(
    cfg: &ConsumerConfig,
    conn: &Redis,
    id: &str,
    deliveries: u64,
    payload: Option<Vec<u8>>,
    outcome: Outcome,
) -> redis::RedisResult<bool> {
    let mut conn = conn.clone();
    match outcome {
        Outcome::Done => {
            let _: i64 = redis::cmd("XACK")
                .arg(&cfg.stream)
                .arg(&cfg.group)
                .arg(id)
                .query_async(&mut conn)
                .await?;
            Ok(true)
        }
        Outcome::Retry(why) => {
            // Transient by definition (Redis or an actor away): what is away says so itself.
            tracing::debug!(stream = %cfg.stream, entry = %id, deliveries, %why, "will retry");
            Ok(false)
        }
        Outcome::Failed(why) if deliveries < cfg.max_deliveries => {
            tracing::warn!(stream = %cfg.stream, entry = %id, deliveries,
                max = cfg.max_deliveries, %why, "handling failed; will retry");
            Ok(false)
        }
        Outcome::Failed(why) | Outcome::Reject(why) => {
            dead_letter(cfg, &mut conn, id, deliveries, payload, &why).await?;
            Ok(true)
        }
    }
}

/// Moves an entry to `berth:dead:<stream>` with its reason, counts it and acknowledges it, in
/// one MULTI.
async fn dead_letter(
    cfg: &ConsumerConfig,
    conn: &mut Redis,
    id: &str,
    deliveries: u64,
    payload: Option<Vec<u8>>,
    why: &str,
) -> redis::RedisResult<()> {
    tracing::error!(stream = %cfg.stream, entry = %id, deliveries, reason = %why,
        dead_letters = %keys::dead_letters(&cfg.stream), "entry moved to the dead-letter stream");
    let mut add = redis::cmd("XADD");
    add.arg(keys::dead_letters(&cfg.stream))
        .arg("MAXLEN")
        .arg("~")
        .arg(keys::STREAM_MAXLEN)
        .arg("*")
        .arg("source_id")
        .arg(id)
        .arg("reason")
        .arg(why)
        .arg("deliveries")
        .arg(deliveries)
        .arg("consumer")
        .arg(&cfg.consumer)
        .arg("at")
        .arg(now_ms());
    if let Some(p) = payload {
        add.arg(STREAM_FIELD).arg(p);
    }
    let mut pipe = redis::pipe();
    pipe.atomic()
        .add_command(add)
        .ignore()
        .hincr(keys::STATS_DEAD_LETTERS, &cfg.stream, 1)
        .ignore()
        .xack(&cfg.stream, &cfg.group, &[id])
        .ignore();
    pipe.query_async::<()>(conn).await
}
