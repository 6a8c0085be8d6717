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

/// Claims the right to switch traffic: fails if the deployment was cancelled first.
pub(super) async fn claim_switch(svc: &Services, id: &str) -> Result<()> {
    let mut c = svc.redis.clone();
    let set: Option<String> = redis::cmd("SET")
        .arg(keys::deployment_fate(id))
        .arg(keys::FATE_SWITCH)
        .arg("NX")
        .arg("EX")
        .arg(keys::MARKER_TTL_S)
        .query_async(&mut c)
        .await?;
    if set.is_some() || fate(svc, id).await.as_deref() == Some(keys::FATE_SWITCH) {
        Ok(())
    } else {
        Err(Error::Cancelled("before switching traffic".into()))
    }
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

/// `SET berth:claim:<id> <node> NX EX 7d`: a deployment runs at most once.
pub async fn claim(svc: &Services, deployment_id: &str) -> Result<Claim> {
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
