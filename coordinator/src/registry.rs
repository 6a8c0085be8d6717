//! `NodeRegistry`: which nodes exist and which are alive.
//!
//! Nodes write their own heartbeat records (`berth:node:<name>`) every few seconds; a node whose
//! last heartbeat is older than `node_timeout` is `down`. The registry reads Redis on every
//! question, so it holds no state of its own and a restarted coordinator sees the fleet at once.

use std::time::Duration;

use actix::prelude::*;
use berth_protocol::api::NodeView;
use berth_protocol::{now_ms, NodeInfo, NodeStatus};

use crate::error::Result;
use crate::store::Store;

pub struct NodeRegistry {
    store: Store,
    node_timeout: Duration,
}

impl NodeRegistry {
    pub fn new(store: Store, node_timeout: Duration) -> Self {
        NodeRegistry {
            store,
            node_timeout,
        }
    }
}

impl Actor for NodeRegistry {
    type Context = Context<Self>;
}

/// Liveness of one heartbeat record at time `now`.
pub fn status_of(info: &NodeInfo, now: u64, timeout: Duration) -> NodeStatus {
    if now.saturating_sub(info.last_heartbeat) <= timeout.as_millis() as u64 {
        NodeStatus::Ready
    } else {
        NodeStatus::Down
    }
}

/// Every registered node with its liveness.
#[derive(Message)]
#[rtype(result = "Result<Vec<NodeView>>")]
pub struct Nodes;

/// Only the live nodes.
#[derive(Message)]
#[rtype(result = "Result<Vec<NodeInfo>>")]
pub struct LiveNodes;

/// Every registered node with its liveness now.
async fn views(store: Store, timeout: Duration) -> Result<Vec<NodeView>> {
    let now = now_ms();
    Ok(store
        .nodes()
        .await?
        .into_iter()
        .map(|info| NodeView {
            status: status_of(&info, now, timeout),
            info,
        })
        .collect())
}

impl Handler<Nodes> for NodeRegistry {
    type Result = ResponseFuture<Result<Vec<NodeView>>>;

    fn handle(&mut self, _: Nodes, _: &mut Context<Self>) -> Self::Result {
        Box::pin(views(self.store.clone(), self.node_timeout))
    }
}

impl Handler<LiveNodes> for NodeRegistry {
    type Result = ResponseFuture<Result<Vec<NodeInfo>>>;

    fn handle(&mut self, _: LiveNodes, _: &mut Context<Self>) -> Self::Result {
        let all = views(self.store.clone(), self.node_timeout);
        Box::pin(async move {
            Ok(all
                .await?
                .into_iter()
                .filter(|v| v.status == NodeStatus::Ready)
                .map(|v| v.info)
                .collect())
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
            started_at: 0,
            last_heartbeat: 10_000,
            running_jobs: 0,
            host: None,
        };
        let t = Duration::from_secs(5);
        assert_eq!(status_of(&n, 14_000, t), NodeStatus::Ready);
        assert_eq!(status_of(&n, 15_001, t), NodeStatus::Down);
        n.last_heartbeat = 20_000; // a clock slightly ahead is not "down"
        assert_eq!(status_of(&n, 15_001, t), NodeStatus::Ready);
    }
}
