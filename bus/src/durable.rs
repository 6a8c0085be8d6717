//! The durability promise: a write that must survive a failover of Redis is acknowledged only
//! once `n` replicas have it (`redis.min_replicas_acked`), when that is asked for.
//!
//! Redis replicates asynchronously: a write its primary acknowledged can be lost when a replica
//! is promoted in its place. [`Replicas::confirm`] is called after such a write (creating a
//! deployment, a fate or claim marker, a job handed to a node, …): it returns once `n` replicas
//! have acknowledged everything the primary had when it was called, or says that they did not
//! within `redis.replica_ack_timeout_ms` ([`Unreplicated`]) — the write is then on the primary
//! only, and the caller must not report it durable.
//!
//! **How.** `WAIT n timeout` covers the writes made earlier *on the connection it is sent on*;
//! and it blocks that connection until it answers — on the daemon's shared multiplexed
//! connection, a replica that is away would stall every other command behind each `WAIT` for the
//! whole timeout. So the waits go on a connection of their own ([`Redis::connect_blocking`], which
//! follows the link's state), each preceded by a `PUBLISH` to [`keys::REPLICATED`]: a write
//! Redis propagates to its replicas, ordered after every write the primary had acknowledged
//! when it was sent, so the `WAIT` that follows covers them — the caller's among them, whatever
//! connection carried it. One task makes the rounds: the callers that ask while a round is under
//! way are answered together by the next one (one `PUBLISH` + `WAIT` for all of them), so a
//! replica that is away costs each caller at most two timeouts, not one per caller ahead of it.
//!
//! **Fewer replicas than asked for.** Each round first asks `ROLE` how many replicas the
//! primary has connected, and waits for that many at most: right after a failover of a primary
//! with one replica there are none, and a covered write is then confirmed at once — the daemon
//! carries on, and no replica that could be promoted lacks the write. The task logs when the
//! primary falls short and when it has enough again. (Redis's `min-replicas-to-write` is the
//! refusal for who wants it: [`lacks_replicas`].)
//!
//! **Off by default.** With `n` = 0 ([`Replicas::off`]) no task, no connection, no command:
//! `confirm` answers at once, so `berth up` and single-Redis users pay nothing.
//!
//! Writes not confirmed are counted in `berth:stats:unreplicated` (field: the process), which
//! `/metrics` shows as `berth_redis_unreplicated_writes_total`.

use std::sync::Arc;
use std::time::Duration;

use berth_protocol::keys;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{Redis, Shutdown};

/// What a daemon asks of Redis's replicas (`redis.min_replicas_acked`,
/// `redis.replica_ack_timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Replicas that must acknowledge a covered write; 0: none, no `WAIT` at all.
    pub replicas: u32,
    /// How long to wait for them.
    pub timeout: Duration,
}

impl Default for Durability {
    fn default() -> Self {
        Durability {
            replicas: 0,
            timeout: Duration::from_millis(1000),
        }
    }
}

/// A covered write the replicas did not confirm: it reached Redis's primary, which may lose it
/// if a replica is promoted now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Unreplicated {
    /// Replicas that acknowledged it (0 when the wait itself failed).
    pub acked: u32,
    pub wanted: u32,
    pub timeout: Duration,
    /// Why the wait could not be made, when it could not (Redis unreachable, the wait's
    /// connection refused, shutting down).
    pub cause: Option<String>,
}

impl Unreplicated {
    fn describe(&self) -> String {
        match &self.cause {
            None => format!(
                "it reached Redis's primary, but only {} of the {} replica(s) asked for (redis.min_replicas_acked) \
                 acknowledged it within {} ms, so a failover of Redis now could lose it",
                self.acked,
                self.wanted,
                self.timeout.as_millis()
            ),
            Some(cause) => format!(
                "it reached Redis's primary, but whether {} replica(s) have it (redis.min_replicas_acked) could not \
                 be checked ({cause}), so a failover of Redis now could lose it",
                self.wanted
            ),
        }
    }
}

/// The handle covered writes are confirmed through; cheap to clone. See the module docs.
#[derive(Clone, Default)]
pub struct Replicas {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("Replicas(off)"),
            Some(i) => write!(
                f,
                "Replicas({} within {} ms)",
                i.wanted,
                i.timeout.as_millis()
            ),
        }
    }
}

struct Inner {
    wanted: u32,
    timeout: Duration,
    asks: mpsc::UnboundedSender<oneshot::Sender<Result<(), Unreplicated>>>,
}

type Ask = oneshot::Sender<Result<(), Unreplicated>>;

impl Replicas {
    /// No confirmation: every write is acknowledged by the primary alone.
    pub fn off() -> Self {
        Replicas { inner: None }
    }

    /// Confirms covered writes as `durability` says, through `redis` — or [`Replicas::off`]
    /// when it asks for no replica. `process` names the daemon in `berth:stats:unreplicated`
    /// (`coordinator`, `node:<name>`). The task that makes the rounds is one of `shutdown`'s,
    /// and stops with it.
    pub fn new(redis: &Redis, durability: Durability, process: &str, shutdown: &Shutdown) -> Self {
        Self::until(
            redis,
            durability,
            process,
            shutdown,
            shutdown.token().clone(),
        )
    }

    /// [`Replicas::new`] whose task stops when `stop` is cancelled (a node's, after its jobs
    /// drained: their outcomes are still confirmed during the drain).
    pub fn until(
        redis: &Redis,
        durability: Durability,
        process: &str,
        shutdown: &Shutdown,
        stop: CancellationToken,
    ) -> Self {
        if durability.replicas == 0 {
            return Replicas::off();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        shutdown.spawn(rounds(
            redis.clone(),
            durability,
            process.to_string(),
            rx,
            stop,
        ));
        Replicas {
            inner: Some(Arc::new(Inner {
                wanted: durability.replicas,
                timeout: durability.timeout,
                asks: tx,
            })),
        }
    }

    /// Whether covered writes are confirmed at all.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Returns once the configured number of replicas have every write the primary had
    /// acknowledged before this call; at once when off. [`Unreplicated`] when they did not
    /// within the timeout (or the wait could not be made): the caller's write is on the primary
    /// only.
    pub async fn confirm(&self) -> Result<(), Unreplicated> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let gone = || Unreplicated {
            acked: 0,
            wanted: inner.wanted,
            timeout: inner.timeout,
            cause: Some("the process is shutting down".into()),
        };
        let (tx, rx) = oneshot::channel();
        inner.asks.send(tx).map_err(|_| gone())?;
        rx.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// The task behind [`Replicas`]: takes every ask waiting, makes one `PUBLISH` + `WAIT` for all
/// of them on its own connection, answers them, again.
async fn rounds(
    redis: Redis,
    d: Durability,
    process: String,
    mut asks: mpsc::UnboundedReceiver<Ask>,
    stop: CancellationToken,
) {
    let mut conn = None;
    let mut short = false;
    let timeout_ms = d.timeout.as_millis() as u64;
    loop {
        let first = tokio::select! {
            a = asks.recv() => match a { Some(a) => a, None => return },
            _ = stop.cancelled() => return,
        };
        let mut batch = vec![first];
        while let Ok(a) = asks.try_recv() {
            batch.push(a);
        }
        let answer = round(&redis, &mut conn, d, timeout_ms, &mut short).await;
        if let Err(e) = &answer {
            tracing::warn!(writes = batch.len(), error = %e, "writes not confirmed by Redis's replicas");
            count(&redis, &process, batch.len()).await;
        }
        for a in batch {
            let _ = a.send(answer.clone());
        }
    }
}

/// One round: `ROLE` (the replicas the primary has now), then `PUBLISH` + `WAIT` for as many
/// of them as are asked for, at most — none connected, nothing to wait for; the connection is
/// made again at the next round after a failure. `short` is whether the primary has fewer
/// replicas than asked for (logged when that starts and ends).
async fn round(
    redis: &Redis,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    d: Durability,
    timeout_ms: u64,
    short: &mut bool,
) -> Result<(), Unreplicated> {
    let failed = |cause: String| Unreplicated {
        acked: 0,
        wanted: d.replicas,
        timeout: d.timeout,
        cause: Some(cause),
    };
    if conn.is_none() {
        *conn = Some(
            redis
                .connect_blocking(d.timeout)
                .await
                .map_err(|e| failed(e.to_string()))?,
        );
    }
    let c = conn.as_mut().expect("made above");
    let role: redis::RedisResult<redis::Value> = redis::cmd("ROLE").query_async(c).await;
    let connected = match redis.observed(role) {
        Ok(v) => match primary_replicas(&v) {
            Some(n) => n,
            None => return Err(failed("the Redis written to is not the primary".into())),
        },
        Err(e) => {
            *conn = None;
            return Err(failed(e.to_string()));
        }
    };
    let wanted = d.replicas.min(connected);
    if (wanted < d.replicas) != *short {
        *short = wanted < d.replicas;
        match *short {
            true => tracing::warn!(
                connected,
                asked = d.replicas,
                "Redis's primary has fewer replicas than redis.min_replicas_acked asks for: \
                 covered writes wait for the ones it has (none: for nothing) until more are back"
            ),
            false => tracing::info!(
                connected,
                "Redis's primary has the replicas redis.min_replicas_acked asks for again"
            ),
        }
    }
    if wanted == 0 {
        return Ok(());
    }
    let r: redis::RedisResult<(i64, i64)> = redis::pipe()
        .cmd("PUBLISH")
        .arg(keys::REPLICATED)
        .arg(1)
        .cmd("WAIT")
        .arg(wanted)
        .arg(timeout_ms)
        .query_async(c)
        .await;
    match redis.observed(r) {
        Ok((_, acked)) if acked >= i64::from(wanted) => Ok(()),
        Ok((_, acked)) => Err(Unreplicated {
            acked: acked.max(0) as u32,
            wanted,
            timeout: d.timeout,
            cause: None,
        }),
        Err(e) => {
            *conn = None;
            Err(failed(e.to_string()))
        }
    }
}

/// How many replicas a `ROLE` answer says the primary has connected; `None` when it is not a
/// primary's answer (`master`, offset, replicas).
fn primary_replicas(role: &redis::Value) -> Option<u32> {
    use redis::Value as V;
    let V::Array(items) = role else { return None };
    let is_master = matches!(items.first(), Some(V::BulkString(b)) if b.as_slice() == b"master");
    match (is_master, items.get(2)) {
        (true, Some(V::Array(replicas))) => Some(replicas.len() as u32),
        _ => None,
    }
}

/// Adds `n` to this process's count of writes not confirmed (best effort: a count that cannot
/// be written is only logged).
async fn count(redis: &Redis, process: &str, n: usize) {
    let r: redis::RedisResult<i64> = redis::cmd("HINCRBY")
        .arg(keys::STATS_UNREPLICATED)
        .arg(process)
        .arg(n)
        .query_async(&mut redis.clone())
        .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "could not count writes not confirmed by replicas");
    }
}

/// Whether Redis refused a write for want of replicas (`NOREPLICAS`: a primary configured with
/// `min-replicas-to-write` that has fewer good replicas). Nothing was written; Redis answers,
/// and takes the write again once its replicas are back — an unavailability
/// ([`crate::is_unavailable`]), not an outage of the link.
pub fn lacks_replicas(e: &redis::RedisError) -> bool {
    e.code() == Some("NOREPLICAS")
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value as V;

    fn bulk(s: &str) -> V {
        V::BulkString(s.as_bytes().to_vec())
    }

    /// `ROLE` of a primary lists its connected replicas; a replica's answer is no primary's.
    #[test]
    fn the_replicas_a_primary_has_are_read_from_role() {
        let replica = V::Array(vec![bulk("127.0.0.1"), bulk("6380"), bulk("100")]);
        let two = V::Array(vec![
            bulk("master"),
            V::Int(100),
            V::Array(vec![replica.clone(), replica]),
        ]);
        assert_eq!(primary_replicas(&two), Some(2));
        let none = V::Array(vec![bulk("master"), V::Int(0), V::Array(vec![])]);
        assert_eq!(primary_replicas(&none), Some(0));
        let a_replica = V::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            V::Int(6379),
            bulk("connected"),
            V::Int(100),
        ]);
        assert_eq!(primary_replicas(&a_replica), None);
        assert_eq!(primary_replicas(&V::Nil), None);
    }
}
