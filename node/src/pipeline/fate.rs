//! The fate and claim protocol in Redis: a deployment runs on one node at most once
//! ([`claim`]), and its traffic switch and its cancellation exclude each other (the fate key,
//! `switch` or `cancel`, set once).

use std::time::Duration;

use berth_protocol::keys;

use super::Services;
use crate::error::{Error, Result};

/// The deployment's fate (`switch` or `cancel`), if decided.
pub(super) async fn fate(svc: &Services, id: &str) -> Option<String> {
    let mut c = svc.redis.clone();
    redis::cmd("GET")
        .arg(keys::deployment_fate(id))
        .query_async::<Option<String>>(&mut c)
        .await
        .ok()
        .flatten()
}

/// Resolves once the coordinator cancelled the deployment (polled; never resolves otherwise).
pub(super) async fn cancelled(svc: &Services, id: &str) {
    loop {
        tokio::time::sleep(CANCEL_POLL).await;
        if fate(svc, id).await.as_deref() == Some(keys::FATE_CANCEL) {
            return;
        }
    }
}

/// How often a running deployment checks whether it was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// Sets the fate `switch` unless it is decided, for the deployment's current attempt only:
/// 1 if the fate is `switch` now, 0 if it is `cancel`, -1 if the deployment was moved to
/// another node (a later attempt).
const CLAIM_SWITCH: &str = r"
local attempt = redis.call('GET', KEYS[2]) or '0'
if attempt ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[2] then return 1 end
return 0
";

/// Claims the right to switch traffic: fails if the deployment was cancelled first, or moved
/// to another node because this one was taken for dead (its attempt is not `attempt`).
pub(super) async fn claim_switch(svc: &Services, id: &str, attempt: u32) -> Result<()> {
    let mut c = svc.redis.clone();
    let got: i64 = redis::cmd("EVAL")
        .arg(CLAIM_SWITCH)
        .arg(2)
        .arg(keys::deployment_fate(id))
        .arg(keys::deployment_attempt(id))
        .arg(attempt.to_string())
        .arg(keys::FATE_SWITCH)
        .arg(keys::MARKER_TTL_S)
        .query_async(&mut c)
        .await?;
    match got {
        // Nothing moves before Redis's replicas have the claim (when `redis.min_replicas_acked`
        // asks): a claim lost in a failover would let a cancel win after traffic moved. Not
        // confirmed in time, it is an error the caller's `through_outage` waits out, claiming
        // again (the script answers 1 for a switch already ours).
        1 => Ok(svc.replicas.confirm().await?),
        -1 => Err(Error::Cancelled(
            "before switching traffic: the deployment was moved to another node while this one was taken for dead".into(),
        )),
        _ => Err(Error::Cancelled("before switching traffic".into())),
    }
}

/// Whether the deployment was moved to another node after this job was queued (its attempt is
/// later than the job's): the job is stale, and runs nothing. (Replicas of a rollout are
/// re-placed by the coordinator's record instead; their stale reports are dropped there.)
pub async fn superseded(svc: &Services, job: &berth_protocol::DeployJob) -> bool {
    if job.slot.is_some() {
        return false;
    }
    let mut c = svc.redis.clone();
    let current: Option<u32> = redis::cmd("GET")
        .arg(keys::deployment_attempt(&job.deployment_id))
        .query_async(&mut c)
        .await
        .ok()
        .flatten();
    current.is_some_and(|a| a > job.attempt)
}

/// The container of this node that the app's route names for deployment `job` — its traffic
/// switch happened — if any (read from Redis: a restarted node's router may not have its table
/// yet).
pub(super) async fn switched_container(
    svc: &Services,
    job: &berth_protocol::DeployJob,
) -> Option<String> {
    let domain = job.app.domains.first()?;
    let mut c = svc.redis.clone();
    let raw: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(keys::ROUTES)
        .arg(domain)
        .query_async(&mut c)
        .await
        .ok()
        .flatten();
    let route = berth_protocol::envelope::decode::<berth_protocol::Route>(
        &raw?,
        berth_protocol::envelope::kind::ROUTE,
    )
    .ok()?;
    route
        .upstreams
        .into_iter()
        .find(|u| u.deployment == job.deployment_id && u.node == svc.node)
        .map(|u| u.container)
}

/// Outcome of trying to claim a deployment job.
pub enum Claim {
    /// This node took it now.
    Taken,
    /// This node took it earlier (it was interrupted, or is a duplicate).
    Ours,
    /// Another node has it.
    Other(String),
}

/// `SET berth:claim:<id> <node> NX EX 7d`: a deployment runs at most once. A claim taken is
/// answered only once Redis's replicas have it (when `redis.min_replicas_acked` asks): one lost
/// in a failover would let a redelivered copy of the job run again. Until they confirm it, it
/// is claimed again (found ours: taken by this call) and waited for — through Redis outages
/// too, a claim taken being no longer the pending entry's to retry — until the node shuts down
/// (the pending entry is then resumed as interrupted at the next start).
pub async fn claim(svc: &Services, deployment_id: &str) -> Result<Claim> {
    let mut took = false;
    let mut backoff = berth_bus::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let failed = match claim_once(svc, deployment_id).await {
            Ok(Claim::Taken) => None,
            Ok(Claim::Ours) if took => None,
            Ok(c) => return Ok(c),
            Err(e) if took => Some(e),
            Err(e) => return Err(e),
        };
        let failed = match failed {
            Some(e) => e,
            None => match svc.replicas.confirm().await {
                Ok(()) => return Ok(Claim::Taken),
                Err(e) => Error::from(e),
            },
        };
        took = true;
        if svc.shutdown.is_cancelled() {
            return Err(failed);
        }
        tracing::debug!(deployment = %deployment_id, error = %failed, "job claimed; waiting for Redis's replicas to have the claim");
        tokio::select! {
            () = backoff.wait() => {}
            () = svc.shutdown.cancelled() => return Err(failed),
        }
    }
}

async fn claim_once(svc: &Services, deployment_id: &str) -> Result<Claim> {
    let key = keys::job_claim(deployment_id);
    let mut conn = svc.redis.clone();
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&svc.node)
        .arg("NX")
        .arg("EX")
        .arg(keys::MARKER_TTL_S)
        .query_async(&mut conn)
        .await?;
    if set.is_some() {
        return Ok(Claim::Taken);
    }
    let owner: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    Ok(match owner {
        Some(o) if o == svc.node => Claim::Ours,
        Some(o) => Claim::Other(o),
        None => Claim::Other("(expired)".into()),
    })
}
