//! The `JobConsumer` actor: reads this node's job stream and hands each job to the
//! [`Deployer`](crate::deployer::Deployer).
//!
//! It reads `berth:jobs:<node>` in consumer group `node` as consumer `<node>` over its own
//! dedicated Redis connection (a blocking XREADGROUP would stall every other command on a shared
//! multiplexed connection; its response timeout is off, BLOCK bounds each read). At start, and
//! after every reconnect, it first re-reads its own pending entries (id `0`), then new ones
//! (`>`). An entry is acknowledged once its job finished, successfully or not; an entry that does
//! not decode is logged and acknowledged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use berth_protocol::{envelope, keys, Job, JOB_KIND};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::Value;

use crate::deployer::{Deployer, RunJob};
use crate::error::Result;

/// How long one XREADGROUP blocks in Redis.
const BLOCK_MS: u64 = 5_000;
/// Entries read at a time.
const COUNT: usize = 16;
/// Pause before reconnecting after a Redis error.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often pending entries (e.g. whose acknowledgement failed) are looked at again.
const RESCAN_PENDING_EVERY: Duration = Duration::from_secs(30);

/// One stream entry: its id and its `m` field (absent when the entry was trimmed away).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub payload: Option<Vec<u8>>,
}

/// Creates the consumer group of the job stream (and the stream), if missing.
pub async fn ensure_group<C: redis::aio::ConnectionLike>(conn: &mut C, stream: &str) -> Result<()> {
    let r: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(keys::JOBS_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Parses an XREADGROUP reply (RESP2 arrays or a RESP3 map) into entries.
pub fn parse_read_reply(v: Value) -> Vec<Entry> {
    let streams: Vec<Value> = match v {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for e in entries {
            let Value::Array(mut parts) = e else { continue };
            if parts.is_empty() {
                continue;
            }
            let fields = if parts.len() > 1 {
                parts.remove(1)
            } else {
                Value::Nil
            };
            let Some(id) = as_string(&parts[0]) else {
                continue;
            };
            out.push(Entry {
                id,
                payload: field(fields, envelope::STREAM_FIELD),
            });
        }
    }
    out
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn field(fields: Value, name: &str) -> Option<Vec<u8>> {
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => return None,
    };
    pairs
        .into_iter()
        .find_map(|(k, v)| match (as_string(&k), v) {
            (Some(k), Value::BulkString(b)) if k == name => Some(b),
            _ => None,
        })
}

async fn read(
    conn: &mut MultiplexedConnection,
    stream: &str,
    node: &str,
    from: &str,
    block: bool,
) -> redis::RedisResult<Vec<Entry>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(keys::JOBS_GROUP)
        .arg(node)
        .arg("COUNT")
        .arg(COUNT);
    if block {
        cmd.arg("BLOCK").arg(BLOCK_MS);
    }
    cmd.arg("STREAMS").arg(stream).arg(from);
    let v: Value = cmd.query_async(conn).await?;
    Ok(parse_read_reply(v))
}

/// What the read loop needs.
struct Reader {
    client: redis::Client,
    node: String,
    stream: String,
    deployer: Addr<Deployer>,
    acker: ConnectionManager,
    /// Stream ids of entries handed to the deployer and not yet acknowledged.
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl Reader {
    async fn run(self) {
        let mut startup = true;
        loop {
            if let Err(e) = self.session(&mut startup).await {
                tracing::warn!(error = %e, stream = %self.stream, "job stream read failed; reconnecting");
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    /// One connection's life: pending entries first, then new ones until an error.
    async fn session(&self, startup: &mut bool) -> Result<()> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        ensure_group(&mut conn, &self.stream).await?;
        self.pending(&mut conn, *startup).await?;
        *startup = false;
        let mut last_scan = Instant::now();
        loop {
            for e in read(&mut conn, &self.stream, &self.node, ">", true).await? {
                self.dispatch(e, false);
            }
            if last_scan.elapsed() >= RESCAN_PENDING_EVERY {
                self.pending(&mut conn, false).await?;
                last_scan = Instant::now();
            }
        }
    }

    /// Re-reads this consumer's pending entries and dispatches those not in progress.
    async fn pending(&self, conn: &mut MultiplexedConnection, recovered: bool) -> Result<()> {
        let mut from = "0".to_string();
        loop {
            let batch = read(conn, &self.stream, &self.node, &from, false).await?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            from = last.id.clone();
            for e in batch {
                self.dispatch(e, recovered);
            }
        }
    }

    fn dispatch(&self, entry: Entry, recovered: bool) {
        {
            let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if !set.insert(entry.id.clone()) {
                return;
            }
        }
        let deployer = self.deployer.clone();
        let mut acker = self.acker.clone();
        let stream = self.stream.clone();
        let in_flight = self.in_flight.clone();
        actix_rt::spawn(async move {
            let job = match entry
                .payload
                .as_deref()
                .map(|b| envelope::decode::<Job>(b, JOB_KIND))
            {
                Some(Ok(job)) => Some(job),
                Some(Err(e)) => {
                    tracing::warn!(entry = %entry.id, error = %e, "skipping undecodable job");
                    None
                }
                None => {
                    tracing::warn!(entry = %entry.id, "skipping job entry without a message (trimmed?)");
                    None
                }
            };
            let ack = match job {
                Some(job) => deployer
                    .send(RunJob { job, recovered })
                    .await
                    .unwrap_or(false),
                None => true,
            };
            if ack {
                let r: redis::RedisResult<()> = redis::cmd("XACK")
                    .arg(&stream)
                    .arg(keys::JOBS_GROUP)
                    .arg(&entry.id)
                    .query_async(&mut acker)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(entry = %entry.id, error = %e, "XACK failed; the entry will be looked at again");
                }
            }
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&entry.id);
        });
    }
}

/// The job-reading actor.
pub struct JobConsumer {
    reader: Option<Reader>,
    /// The read loop task; aborted when the actor stops.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl JobConsumer {
    pub fn new(
        client: redis::Client,
        node: &str,
        deployer: Addr<Deployer>,
        acker: ConnectionManager,
    ) -> Self {
        JobConsumer {
            reader: Some(Reader {
                client,
                node: node.to_string(),
                stream: keys::jobs(node),
                deployer,
                acker,
                in_flight: Arc::default(),
            }),
            task: None,
        }
    }
}

impl Actor for JobConsumer {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        if let Some(reader) = self.reader.take() {
            self.task = Some(actix_rt::spawn(reader.run()));
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Stop reading jobs (jobs in progress go on).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopConsumer;

impl Handler<StopConsumer> for JobConsumer {
    type Result = ();

    fn handle(&mut self, _: StopConsumer, ctx: &mut Self::Context) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn parses_resp2_reply_with_trimmed_entry() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk(b"berth:jobs:n1"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk(b"1-0"),
                    Value::Array(vec![bulk(b"m"), bulk(b"\x01\x02")]),
                ]),
                Value::Array(vec![bulk(b"2-0"), Value::Nil]),
            ]),
        ])]);
        assert_eq!(
            parse_read_reply(v),
            vec![
                Entry {
                    id: "1-0".into(),
                    payload: Some(vec![1, 2])
                },
                Entry {
                    id: "2-0".into(),
                    payload: None
                },
            ]
        );
        assert!(parse_read_reply(Value::Nil).is_empty());
    }

    #[test]
    fn parses_resp3_map_reply() {
        let v = Value::Map(vec![(
            bulk(b"s"),
            Value::Array(vec![Value::Array(vec![
                bulk(b"3-1"),
                Value::Array(vec![bulk(b"x"), bulk(b"y"), bulk(b"m"), bulk(b"z")]),
            ])]),
        )]);
        assert_eq!(
            parse_read_reply(v),
            vec![Entry {
                id: "3-1".into(),
                payload: Some(b"z".to_vec())
            }]
        );
    }
}
