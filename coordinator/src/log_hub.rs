//! `LogHub`: one blocking reader per followed log stream, shared by all of its followers.
//!
//! A follower must learn of a new entry the moment Redis has it, which takes a blocking
//! `XREAD BLOCK` — and a blocking read needs a connection of its own. Instead of one connection
//! per follower, the hub keeps one reader task (and connection) per stream that has followers.
//! The reader only says "there is news" through a `watch` channel; each follower then reads the
//! entries after its own last id with a non-blocking `XREAD` on the coordinator's shared
//! connection. So 200 followers of one app hold one extra Redis connection, not 200.
//!
//! No entry can be missed between a follower's read and its wait: the follower marks the channel
//! seen *before* it reads, so news that arrives after that read wakes it at once. The reader
//! starts after the newest entry that exists when it starts, reads with `COUNT 1` and then asks
//! for the newest id (`XREVRANGE + - COUNT 1`), so it never moves the entries' contents itself.
//! A reader whose stream has no follower left stops within one block interval. If Redis fails,
//! the reader reconnects after a pause; followers still re-read at least every block interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::sync::watch;

use crate::store::connect_blocking;

/// Longest wait of one `XREAD BLOCK` of a reader.
pub const BLOCK: Duration = Duration::from_millis(500);
/// Pause before a reader reconnects after Redis failed.
const RETRY: Duration = Duration::from_secs(1);

/// The readers of the streams being followed; cheap to clone.
#[derive(Clone)]
pub struct LogHub {
    redis_url: String,
    readers: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl LogHub {
    pub fn new(redis_url: String) -> Self {
        LogHub {
            redis_url,
            readers: Arc::default(),
        }
    }

    /// A receiver that changes whenever entries are added to the stream `key`; starts the
    /// stream's reader if it has none. Must be called inside a Tokio runtime.
    pub fn subscribe(&self, key: &str) -> watch::Receiver<u64> {
        let mut readers = self.readers.lock().unwrap();
        if let Some(tx) = readers.get(key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(0);
        readers.insert(key.to_string(), tx.clone());
        tokio::spawn(read(self.clone(), key.to_string(), tx));
        rx
    }

    /// How many streams have a reader now.
    pub fn readers(&self) -> usize {
        self.readers.lock().unwrap().len()
    }

    /// Removes the reader of `key` if nobody listens; says whether it did.
    fn retire_if_unused(&self, key: &str, tx: &watch::Sender<u64>) -> bool {
        let mut readers = self.readers.lock().unwrap();
        if tx.receiver_count() > 0 {
            return false;
        }
        readers.remove(key);
        true
    }
}

/// The reader of one stream: bumps `tx` after each batch of new entries.
async fn read(hub: LogHub, key: String, tx: watch::Sender<u64>) {
    let mut conn = None;
    let mut last: Option<String> = None;
    while !hub.retire_if_unused(&key, &tx) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect_blocking(&hub.redis_url).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "log hub: cannot connect; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        let step = async {
            let after = match last.clone() {
                Some(id) => id,
                // Start after the newest entry there is now: followers read what came before.
                None => newest(c, &key).await?,
            };
            last = Some(after.clone());
            let opts = StreamReadOptions::default()
                .count(1)
                .block(BLOCK.as_millis() as usize);
            let reply: Option<StreamReadReply> = c
                .xread_options(&[key.as_str()], &[after.as_str()], &opts)
                .await?;
            let got = reply.is_some_and(|r| r.keys.iter().any(|k| !k.ids.is_empty()));
            if got {
                last = Some(newest(c, &key).await?);
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
            redis::RedisResult::Ok(())
        };
        if let Err(e) = step.await {
            tracing::warn!(%key, error = %e, "log hub: reading failed; reconnecting");
            conn = None;
            tokio::time::sleep(RETRY).await;
        }
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
