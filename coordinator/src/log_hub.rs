//! `LogHub`: one blocking reader per followed log stream, shared by all of its followers.
//!
//! A follower must learn of a new entry the moment Redis has it, which takes a blocking
//! `XREAD BLOCK` — and a blocking read needs a connection of its own. Instead of one connection
//! per follower, the hub keeps one reader task (and connection) per stream that has followers.
//! The reader publishes each batch it reads, with the id it read after, on a `broadcast` channel
//! that keeps the last [`KEPT_BATCHES`]. A follower takes the part of each batch after its own
//! last id, with no Redis round trip; only a follower that finds a gap (it lagged more than the
//! channel keeps) reads after its own last id with a non-blocking `XREAD` on the shared
//! connection. So 200 followers of one app hold one extra Redis connection, not 200, and a line
//! costs one read, not one per follower.
//!
//! The reader starts after the newest entry that exists when it starts (what came before,
//! followers read themselves). A reader whose stream has no follower left stops within one block
//! interval. If Redis fails, the reader reconnects after a pause; followers still re-read at
//! least every block interval. Readers are tasks of the process's [`Shutdown`] tracker and stop
//! when its token is cancelled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_bus::{Backoff, Failing, Redis, Shutdown};
use berth_protocol::LogEntry;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::sync::broadcast;

/// Entries the reader of a stream read in one go.
#[derive(Debug, Default)]
pub struct Batch {
    /// The id the read started after: the batch follows directly on this entry.
    pub after: String,
    pub entries: Vec<LogEntry>,
}

/// What a follower receives: every batch read after it subscribed, in order.
pub type News = broadcast::Receiver<Arc<Batch>>;

/// Batches a stream's channel keeps for followers that are behind. With [`READ_COUNT`] entries
/// of at most 4 KiB a batch, a followed stream holds at most 64 MiB here (shared by all its
/// followers; about 1.6 MiB for typical lines).
pub const KEPT_BATCHES: usize = 64;

/// Longest wait of one `XREAD BLOCK` of a reader.
pub const BLOCK: Duration = Duration::from_millis(500);
/// Most entries a reader reads at once.
const READ_COUNT: usize = 256;
/// Pauses before a reader reconnects after Redis failed (`Backoff`: from the first, doubling
/// up to the most, with jitter; back to the first after a good read).
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The readers of the streams being followed; cheap to clone.
#[derive(Clone)]
pub struct LogHub {
    /// The coordinator's connection: each reader opens its own blocking one through it.
    redis: Redis,
    readers: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Batch>>>>>,
    /// Tracks the readers and stops them.
    shutdown: Shutdown,
}

impl LogHub {
    pub fn new(redis: Redis, shutdown: Shutdown) -> Self {
        LogHub {
            redis,
            readers: Arc::default(),
            shutdown,
        }
    }

    /// A receiver of the batches added to the stream `key`; starts the stream's reader if it
    /// has none. Must be called inside a Tokio runtime.
    pub fn subscribe(&self, key: &str) -> News {
        let mut readers = self.readers.lock().unwrap();
        if let Some(tx) = readers.get(key) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(KEPT_BATCHES);
        readers.insert(key.to_string(), tx.clone());
        self.shutdown.spawn(read(self.clone(), key.to_string(), tx));
        rx
    }

    /// Removes the reader of `key` if nobody listens; says whether it did.
    fn retire_if_unused(&self, key: &str, tx: &broadcast::Sender<Arc<Batch>>) -> bool {
        let mut readers = self.readers.lock().unwrap();
        if tx.receiver_count() > 0 {
            return false;
        }
        readers.remove(key);
        true
    }

    /// Removes `tx` as the reader of `key` (its reader stopped for good).
    fn forget(&self, key: &str, tx: &broadcast::Sender<Arc<Batch>>) {
        let mut readers = self.readers.lock().unwrap();
        if readers.get(key).is_some_and(|t| t.same_channel(tx)) {
            readers.remove(key);
        }
    }
}

/// The reader of one stream until it has no follower left or the shutdown starts.
async fn read(hub: LogHub, key: String, tx: broadcast::Sender<Arc<Batch>>) {
    tokio::select! {
        () = hub.shutdown.cancelled() => hub.forget(&key, &tx),
        () = read_until_unused(&hub, &key, &tx) => {}
    }
}

/// Publishes each batch of new entries of `key` on `tx` while it has receivers.
async fn read_until_unused(hub: &LogHub, key: &str, tx: &broadcast::Sender<Arc<Batch>>) {
    let mut conn = None;
    let mut last: Option<String> = None;
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut failing = Failing::new(format!("log hub: following {key}"));
    while !hub.retire_if_unused(key, tx) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match hub.redis.connect_blocking(BLOCK).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    failing.failed(&e, berth_bus::is_unavailable(&e));
                    pause(hub, &mut backoff).await;
                    continue;
                }
            },
        };
        let step = async {
            let after = match last.clone() {
                Some(id) => id,
                // Start after the newest entry there is now: followers read what came before.
                None => newest(c, key).await?,
            };
            last = Some(after.clone());
            let opts = StreamReadOptions::default()
                .count(READ_COUNT)
                .block(BLOCK.as_millis() as usize);
            let reply: Option<StreamReadReply> =
                c.xread_options(&[key], &[after.as_str()], &opts).await?;
            let entries: Vec<LogEntry> = reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .map(|e| crate::logs::entry(&e))
                .collect();
            if let Some(e) = entries.last() {
                last = Some(e.id.clone());
                // No receiver left is not an error: the loop retires the reader.
                let _ = tx.send(Arc::new(Batch { after, entries }));
            }
            redis::RedisResult::Ok(())
        };
        match hub.redis.observed(step.await) {
            Ok(()) => {
                backoff.reset();
                failing.ok();
            }
            Err(e) => {
                failing.failed(&e, berth_bus::is_unavailable(&e));
                conn = None;
                pause(hub, &mut backoff).await;
            }
        }
    }
}

/// The pause before a reader tries again: its backoff, cut short when Redis answers again.
async fn pause(hub: &LogHub, backoff: &mut Backoff) {
    tokio::select! {
        () = backoff.wait() => {}
        () = hub.redis.back() => {}
    }
}

/// The id of the newest entry of `key` ("0-0" when it is empty or missing).
async fn newest(
    c: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<String> {
    let r: StreamRangeReply = c.xrevrange_count(key, "+", "-", 1).await?;
    Ok(r.ids
        .first()
        .map(|e| e.id.clone())
        .unwrap_or_else(|| "0-0".into()))
}
