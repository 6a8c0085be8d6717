//! `NodeRegistry`: which nodes exist, how alive they are, and which are cordoned.
//!
//! Nodes write their own heartbeat records (`berth:node:<name>`) every second
//! (`node/src/heartbeat.rs`). A node is `ready` while its last beat is recent, `suspect` once a
//! beat is late (`suspect_after`: nothing new is placed on it), and `down` when none came for
//! `down_after` (`node.down_after_s`). Cordons are the operator's, kept by the coordinator in
//! `berth:nodes:cordoned`. The registry reads Redis on every question, so it holds no state of
//! its own and a restarted coordinator sees the fleet at once.

use std::time::Duration;

use actix::prelude::*;
use berth_protocol::api::NodeView;
use berth_protocol::{now_ms, NodeInfo, NodeStatus};

use crate::error::{Error, Result};
use crate::store::Store;

/// When a silent node turns suspect, then down.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// A beat is late: 2.5 heartbeat intervals without one.
    pub suspect_after: Duration,
    /// No beat for this long: the node is gone (`node.down_after_s`).
    pub down_after: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            suspect_after: Duration::from_millis(2_500),
            down_after: Duration::from_secs(5),
        }
    }
}

pub struct NodeRegistry {
    store: Store,
    liveness: Liveness,
}

impl NodeRegistry {
    pub fn new(store: Store, liveness: Liveness) -> Self {
        NodeRegistry { store, liveness }
    }
}

impl Actor for NodeRegistry {
    type Context = Context<Self>;
}

/// Liveness of one heartbeat record at time `now`.
pub fn status_of(info: &NodeInfo, now: u64, l: Liveness) -> NodeStatus {
    let age = now.saturating_sub(info.last_heartbeat);
    if age > l.down_after.as_millis() as u64 {
        NodeStatus::Down
    } else if age > l.suspect_after.as_millis() as u64 {
        NodeStatus::Suspect
    } else {
        NodeStatus::Ready
    }
}

/// Every registered node with its liveness and cordon.
#[derive(Message)]
#[rtype(result = "Result<Vec<NodeView>>")]
pub struct Nodes;

/// Cordon (`on: true`) or uncordon a node; `NotFound` when no node has that name.
#[derive(Message)]
#[rtype(result = "Result<NodeView>")]
pub struct Cordon {
    pub node: String,
    pub on: bool,
}

/// Every registered node with its liveness now.
async fn views(store: Store, l: Liveness) -> Result<Vec<NodeView>> {
    let now = now_ms();
    let cordoned = store.cordoned().await?;
    Ok(store
        .nodes()
        .await?
        .into_iter()
        .map(|info| NodeView {
            status: status_of(&info, now, l),
            cordoned: cordoned.contains(&info.name),
            info,
        })
        .collect())
}

impl Handler<Nodes> for NodeRegistry {
    type Result = ResponseFuture<Result<Vec<NodeView>>>;

    fn handle(&mut self, _: Nodes, _: &mut Context<Self>) -> Self::Result {
        Box::pin(views(self.store.clone(), self.liveness))
    }
}

impl Handler<Cordon> for NodeRegistry {
    type Result = ResponseFuture<Result<NodeView>>;

    fn handle(&mut self, msg: Cordon, _: &mut Context<Self>) -> Self::Result {
        let (store, l) = (self.store.clone(), self.liveness);
        Box::pin(async move {
            let missing = || Error::NotFound(format!("no node named {}", msg.node));
            if !store.set_cordoned(&msg.node, msg.on).await? {
                return Err(missing());
            }
            views(store, l)
                .await?
                .into_iter()
                .find(|v| v.info.name == msg.node)
                .ok_or_else(missing)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_by_heartbeat_age() {
        let mut n = NodeInfo {
            name: "n".into(),
            address: "127.0.0.1".into(),
            ingress_http: 80,
            version: "t".into(),
            labels: Default::default(),
            cpus: 2,
            build_slots: 2,
            engine: None,
            started_at: 0,
            last_heartbeat: 10_000,
            running_jobs: 0,
            host: None,
        };
        let l = Liveness {
            suspect_after: Duration::from_secs(2),
            down_after: Duration::from_secs(5),
        };
        assert_eq!(status_of(&n, 12_000, l), NodeStatus::Ready);
        assert_eq!(status_of(&n, 12_001, l), NodeStatus::Suspect);
        assert_eq!(status_of(&n, 15_000, l), NodeStatus::Suspect);
        assert_eq!(status_of(&n, 15_001, l), NodeStatus::Down);
        n.last_heartbeat = 20_000; // a clock slightly ahead is not "down"
        assert_eq!(status_of(&n, 15_001, l), NodeStatus::Ready);
    }
}
