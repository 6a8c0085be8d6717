//! Execs: queueing a command on a node ([`queue`]) and following its output stream
//! (`berth:exec:<id>`) for the API ([`Execs::follow`]).
//!
//! A follow reads the stream with `XREAD BLOCK` on a connection of its own (an exec has one
//! follower, its CLI, so a shared reader as for logs would save nothing) and ends after the
//! stream's `end` entry. It never waits forever: when it has been quiet for a second it checks
//! that somebody will still write that end, and writes it itself when nobody will —
//! - no node claimed the exec within [`exec::PICKUP_S`]: the follow claims it as `expired` (the
//!   node, if it comes back, then skips the job) and ends it "not picked up";
//! - the node that claimed it is `down`;
//! - the command's timeout passed with a grace and no end came.
//!
//! The end is written to the stream, so every follower (and a resumed one) sees the same. A follow
//! ends without `end` when the process shuts down; the client resumes it with its last id.

use std::collections::VecDeque;
use std::time::Duration;

use berth_bus::{Live, Shutdown};
use berth_protocol::exec::{self, ExecEntry, ExecJob};
use berth_protocol::{envelope, keys, now_ms, stream_id_order, Job, NodeStatus, JOB_KIND};
use futures_util::Stream;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use crate::error::{Error, Result};
use crate::registry::{NodeRegistry, NodesNow};
use crate::store::Store;

/// Longest wait of one read; between two, the follow checks that an end will come.
const BLOCK: Duration = Duration::from_secs(1);
/// How long after its timeout a command's node has to report its end.
const END_GRACE_S: u64 = 30;

/// Queues `job` on `node`'s job stream, after the exec's first entry (`queued`, with the
/// stream's TTL), in one MULTI.
pub(crate) async fn queue(store: &Store, node: &str, job: &ExecJob) -> Result<()> {
    let key = keys::exec_output(&job.exec_id);
    let queued = ExecEntry::Queued {
        node: node.to_string(),
        container: job.container.clone(),
        timeout_s: job.timeout_s,
    };
    let run_until = job.pickup_by_ms + job.timeout_s * 1000;
    let bytes = envelope::encode(JOB_KIND, &job.exec_id, &Job::Exec(Box::new(job.clone())))?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    let xadd = pipe.cmd("XADD").arg(&key).arg("*");
    for (k, v) in queued.fields() {
        xadd.arg(k).arg(v);
    }
    xadd.ignore();
    pipe.cmd("EXPIRE")
        .arg(&key)
        .arg(exec::stream_ttl_s(run_until, now_ms()))
        .ignore();
    pipe.cmd("XADD")
        .arg(keys::jobs(node))
        .arg("MAXLEN")
        .arg("~")
        .arg(keys::STREAM_MAXLEN)
        .arg("*")
        .arg(envelope::STREAM_FIELD)
        .arg(bytes)
        .ignore();
    let _: () = pipe.query_async(&mut store.conn()).await?;
    Ok(())
}

/// One item of an exec follow.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecFollowed {
    /// An entry of the stream and its id (an `end` is the last item).
    Entry { id: String, entry: ExecEntry },
    /// Reading failed; nothing follows (the client may reconnect with the last id it saw).
    Failed(String),
}

/// Follows exec streams; cheap to clone.
#[derive(Clone)]
pub struct Execs {
    store: Store,
    registry: Live<NodeRegistry>,
    shutdown: Shutdown,
}

/// What the `queued` entry says.
#[derive(Debug, Clone)]
struct Queued {
    node: String,
    at_ms: u64,
    timeout_s: u64,
}

impl Execs {
    pub(crate) fn new(store: Store, registry: Live<NodeRegistry>, shutdown: Shutdown) -> Self {
        Execs {
            store,
            registry,
            shutdown,
        }
    }

    /// Follows exec `id` from its first entry, or from after `after`, to its `end`.
    pub async fn follow(
        &self,
        id: &str,
        after: Option<String>,
    ) -> Result<impl Stream<Item = ExecFollowed> + Send + 'static> {
        let key = keys::exec_output(id);
        let first: StreamRangeReply = self.store.conn().xrange_count(&key, "-", "+", 1).await?;
        let Some(first) = first.ids.first() else {
            return Err(Error::NotFound(format!(
                "exec {id:?} not found (an exec's output is kept {} minutes after it ends)",
                exec::KEEP_S / 60
            )));
        };
        let at_ms = stream_id_order(&first.id).map_or(0, |(ms, _)| ms);
        let queued = match entry(first) {
            Some(ExecEntry::Queued {
                node, timeout_s, ..
            }) => Queued {
                node,
                at_ms,
                timeout_s,
            },
            // The `queued` entry was trimmed away (much output): the command started long ago.
            _ => Queued {
                node: "its node".into(),
                at_ms,
                timeout_s: exec::MAX_TIMEOUT_S,
            },
        };
        let state = Follow {
            execs: self.clone(),
            id: id.to_string(),
            key,
            last: after.unwrap_or_else(|| "0-0".into()),
            queued,
            conn: None,
            pending: VecDeque::new(),
            done: false,
        };
        Ok(follow(state))
    }
}

struct Follow {
    execs: Execs,
    id: String,
    key: String,
    /// Id of the last entry read.
    last: String,
    queued: Queued,
    /// The blocking reader's own connection (made at the first read).
    conn: Option<redis::aio::MultiplexedConnection>,
    pending: VecDeque<(String, ExecEntry)>,
    done: bool,
}

fn follow(state: Follow) -> impl Stream<Item = ExecFollowed> + Send + 'static {
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some((id, entry)) = st.pending.pop_front() {
                if matches!(entry, ExecEntry::End { .. }) {
                    st.done = true;
                }
                return Some((ExecFollowed::Entry { id, entry }, st));
            }
            if st.done || st.execs.shutdown.is_cancelled() {
                return None;
            }
            let shutdown = st.execs.shutdown.clone();
            let read = tokio::select! {
                () = shutdown.cancelled() => return None,
                read = st.read() => read,
            };
            match read {
                Ok(true) => {}
                Ok(false) => {
                    if let Err(e) = st.check_end().await {
                        st.done = true;
                        return Some((
                            ExecFollowed::Failed(format!("following the exec: {e}")),
                            st,
                        ));
                    }
                }
                Err(e) => {
                    st.done = true;
                    return Some((ExecFollowed::Failed(format!("reading the exec: {e}")), st));
                }
            }
        }
    })
}

impl Follow {
    /// Reads what follows `last`, waiting up to [`BLOCK`]; whether it got anything.
    async fn read(&mut self) -> redis::RedisResult<bool> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self
                .conn
                .insert(self.execs.store.conn().connect_blocking(BLOCK).await?),
        };
        let opts = StreamReadOptions::default()
            .count(256)
            .block(BLOCK.as_millis() as usize);
        let reply: Option<StreamReadReply> = self.execs.store.conn().observed(
            conn.xread_options(&[self.key.as_str()], &[self.last.as_str()], &opts)
                .await,
        )?;
        let ids: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        let got = !ids.is_empty();
        for e in ids {
            self.last = e.id.clone();
            if let Some(entry) = entry(&e) {
                self.pending.push_back((e.id, entry));
            }
        }
        Ok(got)
    }

    /// After a quiet read: writes the end when nobody else will.
    async fn check_end(&mut self) -> Result<()> {
        let now = now_ms();
        let q = &self.queued;
        let claim = keys::exec_claim(&self.id);
        let holder = self.execs.store.get_string(&claim).await?;
        let end = match holder {
            None if now >= q.at_ms + exec::PICKUP_S * 1000 => {
                let ttl = exec::KEEP_S;
                if self
                    .execs
                    .store
                    .claim_once(&claim, keys::EXEC_EXPIRED, ttl)
                    .await?
                {
                    Some(ExecEntry::failed(format!(
                        "node {} did not pick up the command within {} s: is it down? see `berth nodes`",
                        q.node,
                        exec::PICKUP_S
                    )))
                } else {
                    // The node claimed it just now.
                    None
                }
            }
            None => None,
            // Written by whoever claimed it so: the end is in the stream already.
            Some(h) if h == keys::EXEC_EXPIRED => None,
            Some(h) => {
                let node = h.strip_prefix("node:").unwrap_or(&h).to_string();
                let nodes = self.execs.registry.send(NodesNow).await??;
                let down = nodes
                    .iter()
                    .any(|n| n.info.name == node && n.status == NodeStatus::Down);
                let overdue = now > q.at_ms + (exec::PICKUP_S + q.timeout_s + END_GRACE_S) * 1000;
                if down {
                    Some(ExecEntry::failed(format!(
                        "node {node} went down while the command ran"
                    )))
                } else if overdue {
                    Some(ExecEntry::failed(format!(
                        "node {node} reported no end {END_GRACE_S} s after the command's timeout"
                    )))
                } else {
                    None
                }
            }
        };
        if let Some(end) = end {
            self.write(&end).await?;
        }
        Ok(())
    }

    /// Appends `entry` to the stream (kept [`exec::KEEP_S`] from now).
    async fn write(&self, entry: &ExecEntry) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let xadd = pipe.cmd("XADD").arg(&self.key).arg("*");
        for (k, v) in entry.fields() {
            xadd.arg(k).arg(v);
        }
        xadd.ignore();
        pipe.cmd("EXPIRE").arg(&self.key).arg(exec::KEEP_S).ignore();
        let _: () = pipe.query_async(&mut self.execs.store.conn()).await?;
        Ok(())
    }
}

fn entry(e: &StreamId) -> Option<ExecEntry> {
    ExecEntry::from_fields(|k| e.get::<String>(k))
}
