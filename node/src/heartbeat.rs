//! The `Heartbeat` actor: tells the coordinator this node is alive and how busy it is.
//!
//! Every second it rewrites `berth:node:<name>` with a [`NodeInfo`] envelope and adds the name to
//! `berth:nodes`. The first beat is written by [`beat`] during start-up, so a node that cannot
//! reach Redis fails to start instead of looking alive. While Redis is away later, a beat fails
//! at once (the node's connection knows; it logs the outage) and the next second's beat tries
//! again: the first beat after Redis answers tells the coordinator the node is still there.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use berth_bus::Redis;
use berth_protocol::{envelope, keys, now_ms, HostStats, NodeInfo};
use tokio::sync::watch;

use crate::error::Result;

/// Envelope kind of a node record.
use berth_protocol::envelope::kind::NODE as NODE_KIND;
/// Time between two heartbeats. The coordinator calls a node suspect after 2.5 s without one
/// and down after `node.down_after_s` (5 s): ARCHITECTURE.md says why these figures.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

/// What a heartbeat says about this node.
#[derive(Clone)]
pub struct Beat {
    pub name: String,
    pub address: String,
    pub ingress_http: u16,
    /// The HTTPS port of its Caddy, when `node.https` is on.
    pub ingress_https: Option<u16>,
    pub started_at: u64,
    pub labels: BTreeMap<String, String>,
    pub cpus: u32,
    pub build_slots: u32,
    /// The Docker engine's version (read once at start).
    pub engine: Option<String>,
}

/// Writes one heartbeat, with the host's latest figures when the `Stats` actor has them.
pub async fn beat(
    conn: &Redis,
    b: &Beat,
    running_jobs: u32,
    host: Option<HostStats>,
) -> Result<()> {
    let info = NodeInfo {
        name: b.name.clone(),
        address: b.address.clone(),
        ingress_http: b.ingress_http,
        ingress_https: b.ingress_https,
        version: env!("CARGO_PKG_VERSION").to_string(),
        labels: b.labels.clone(),
        cpus: b.cpus,
        build_slots: b.build_slots,
        engine: b.engine.clone(),
        started_at: b.started_at,
        last_heartbeat: now_ms(),
        running_jobs,
        host,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let bytes = envelope::encode(NODE_KIND, &id, &info)?;
    let mut conn = conn.clone();
    redis::pipe()
        .cmd("SET")
        .arg(keys::node(&b.name))
        .arg(bytes)
        .ignore()
        .cmd("SADD")
        .arg(keys::NODES)
        .arg(&b.name)
        .ignore()
        .query_async::<()>(&mut conn)
        .await?;
    Ok(())
}

/// The heartbeat actor.
pub struct Heartbeat {
    conn: Redis,
    beat: Beat,
    /// Number of jobs in progress, kept by the deployer.
    running: watch::Receiver<u32>,
    /// The host's latest figures, kept by the `Stats` actor.
    host: watch::Receiver<Option<HostStats>>,
    /// A run of failed beats, logged when it starts and ends.
    failing: std::sync::Arc<std::sync::Mutex<berth_bus::Failing>>,
}

impl Heartbeat {
    pub fn new(
        conn: Redis,
        beat: Beat,
        running: watch::Receiver<u32>,
        host: watch::Receiver<Option<HostStats>>,
    ) -> Self {
        Heartbeat {
            conn,
            beat,
            running,
            host,
            failing: std::sync::Arc::new(std::sync::Mutex::new(berth_bus::Failing::new(
                "heartbeat",
            ))),
        }
    }
}

impl Actor for Heartbeat {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(BEAT_EVERY, |act, ctx| {
            let conn = act.conn.clone();
            let b = act.beat.clone();
            let running = *act.running.borrow();
            let host = act.host.borrow().clone();
            let failing = act.failing.clone();
            // `wait`: one beat at a time, a slow Redis never piles beats up.
            ctx.wait(
                async move {
                    let r = beat(&conn, &b, running, host).await;
                    let mut failing = failing.lock().unwrap_or_else(|p| p.into_inner());
                    match r {
                        Ok(()) => failing.ok(),
                        Err(e) => failing.failed(&e, e.is_redis_away()),
                    }
                }
                .into_actor(act),
            );
        });
    }
}

berth_bus::injectable!(Heartbeat);

/// Stop beating.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopHeartbeat;

impl Handler<StopHeartbeat> for Heartbeat {
    type Result = ();

    fn handle(&mut self, _: StopHeartbeat, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
