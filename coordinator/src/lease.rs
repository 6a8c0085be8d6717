//! The leader lease: of the coordinators sharing a Redis, one leads.
//!
//! Every coordinator serves the API; only the leader runs what acts on its own — the
//! reconciler and its deployment actors (placement, jobs, deadlines), the failover pass and the
//! event ingest. The lease is the key `berth:leader` = `<holder> <epoch>` with a time to live of
//! `ttl` (5 s): a coordinator that finds it absent takes it (one script: `INCR
//! berth:leader:epoch`, then `SET … PX ttl`), the holder renews it every `ttl / 5` and the others
//! try every `ttl / 10`, so when the leader dies another leads within the lease and a tenth.
//!
//! The epoch is the fencing token: each new leader's is larger than every earlier one. A leader
//! that cannot renew steps down on its own clock before its lease can have run out in Redis
//! (`ttl` minus a renewal period after its last successful renewal), and a leader that learns
//! another holds the lease steps down at once; [`Leadership`] tells every actor which epoch, if
//! any, this coordinator leads under now.

use std::time::Duration;

use berth_bus::{Redis, Shutdown};
use berth_protocol::keys;
use tokio::sync::watch;
use tokio::time::Instant;

/// Takes the lease when it is free or renews it when `me` holds it: answers the epoch `me`
/// leads under, or 0 when another holds it.
const ACQUIRE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local holder, epoch = string.match(cur, '^(%S+) (%d+)$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(epoch)
  end
  return 0
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch, 'PX', ARGV[2])
return epoch
";

/// Gives the lease up if `me` holds it (a clean shutdown: a follower leads at once).
const RELEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^(%S+) ') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// How long a lease lasts without renewal.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// Which epoch this coordinator leads under, if any; cheap to clone, follows every change.
#[derive(Clone)]
pub struct Leadership {
    rx: watch::Receiver<Option<u64>>,
}

impl Leadership {
    /// The epoch (fencing token) while this coordinator leads.
    pub fn epoch(&self) -> Option<u64> {
        *self.rx.borrow()
    }

    pub fn is_leader(&self) -> bool {
        self.epoch().is_some()
    }

    /// Resolves at the next change (gained or lost), or never once the lease task ended.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A unique name for this coordinator process: host, pid and a random part.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let host: String = host
        .chars()
        .filter(|c| !c.is_whitespace())
        .take(40)
        .collect();
    let r: u32 = rand::random();
    format!("{host}-{}-{r:08x}", std::process::id())
}

async fn acquire(conn: &mut Redis, me: &str, ttl: Duration) -> redis::RedisResult<u64> {
    redis::cmd("EVAL")
        .arg(ACQUIRE)
        .arg(2)
        .arg(keys::LEADER)
        .arg(keys::LEADER_EPOCH)
        .arg(me)
        .arg(ttl.as_millis() as u64)
        .query_async(conn)
        .await
}

async fn release(conn: &mut Redis, me: &str) -> redis::RedisResult<i64> {
    redis::cmd("EVAL")
        .arg(RELEASE)
        .arg(1)
        .arg(keys::LEADER)
        .arg(me)
        .query_async(conn)
        .await
}

/// Runs the lease for this coordinator in a tracked task until shutdown (then gives it up).
/// The first attempt is made before this returns, so a coordinator alone leads from its start.
pub async fn start(conn: Redis, ttl: Duration, shutdown: &Shutdown) -> Leadership {
    let me: std::sync::Arc<str> = holder_name().into();
    let (tx, rx) = watch::channel(None);
    let mut conn = conn;
    let renew = ttl / 5;
    let retry = ttl / 10;
    let mut last_ok = None;
    step(&mut conn, &me, ttl, &tx, &mut last_ok).await;
    let stop = shutdown.clone();
    let name = me;
    shutdown.spawn(async move {
        loop {
            let wait = if tx.borrow().is_some() { renew } else { retry };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => break,
            }
            step(&mut conn, &name, ttl, &tx, &mut last_ok).await;
        }
        if tx.borrow().is_some() {
            let _ = tx.send(None);
            match release(&mut conn, &name).await {
                Ok(_) => tracing::info!(coordinator = %name, "leader lease given up"),
                Err(e) => tracing::warn!(error = %e, "cannot give the leader lease up; it expires"),
            }
        }
    });
    Leadership { rx }
}

/// One attempt: take or renew, and publish what it means.
async fn step(
    conn: &mut Redis,
    me: &str,
    ttl: Duration,
    tx: &watch::Sender<Option<u64>>,
    last_ok: &mut Option<Instant>,
) {
    let now = Instant::now();
    let was = *tx.borrow();
    // A Redis that hangs is a Redis that failed: the answer must come within a renewal period.
    let answer = match tokio::time::timeout(ttl / 5, acquire(conn, me, ttl)).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "no answer within a renewal period",
        ))),
    };
    match answer {
        Ok(epoch) if epoch > 0 => {
            *last_ok = Some(now);
            if was != Some(epoch) {
                tracing::info!(coordinator = %me, epoch, "leading: this coordinator holds the leader lease");
                let _ = tx.send(Some(epoch));
            }
        }
        Ok(_) => {
            if was.is_some() {
                tracing::warn!(coordinator = %me, "another coordinator holds the leader lease; following");
                let _ = tx.send(None);
            }
        }
        Err(e) => {
            // Step down before the lease can have run out in Redis: its expiry started at the
            // last renewal Redis acknowledged, which was no earlier than `last_ok`.
            let margin = ttl / 5;
            if was.is_some() && last_ok.is_none_or(|t| now.duration_since(t) + margin >= ttl) {
                tracing::warn!(coordinator = %me, error = %e, "cannot renew the leader lease; stepping down");
                let _ = tx.send(None);
            }
        }
    }
}
