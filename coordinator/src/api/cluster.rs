//! The cluster: its health, nodes and metrics.

use actix::prelude::*;
use berth_protocol::api::{NodeView, RedisView};

use super::{load_app, Api};
use crate::error::{Error, Result};
use crate::registry::{Cordon, NodesNow};

/// `GET /healthz`: whether the coordinator can reach Redis (one `PING`; at once while Redis is
/// known to be away). `Error::Unavailable` says why not.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct Health;

/// `GET /api/v1/redis`: the Redis written to and its replicas.
#[derive(Message)]
#[rtype(result = "Result<RedisView>")]
pub struct RedisStatus;

/// `GET /api/v1/nodes`.
#[derive(Message)]
#[rtype(result = "Result<Vec<NodeView>>")]
pub struct ListNodes;

/// `POST /api/v1/nodes/{name}/cordon` (`on`) and `…/uncordon`: no new work is placed on a
/// cordoned node; what runs there keeps running.
#[derive(Message)]
#[rtype(result = "Result<NodeView>")]
pub struct CordonNode {
    pub node: String,
    pub on: bool,
}

/// `POST /api/v1/nodes/{name}/drain`: cordon the node, then move every replica it serves to
/// other nodes (health-gated, so no request fails). Answers the node and the deployments queued.
#[derive(Message)]
#[rtype(result = "Result<DrainNode>")]
pub struct Drain(pub String);

/// What `POST /nodes/{name}/drain` answers.
#[derive(Debug, serde::Serialize)]
pub struct DrainNode {
    #[serde(flatten)]
    pub node: NodeView,
    /// The deployments that move its replicas (follow them like any deployment).
    pub deployments: Vec<String>,
}

/// `GET /api/v1/apps/{name}/metrics?window=…`: the app's samples of the window (default 15m,
/// at most 1h; a bad window is a 400).
#[derive(Message)]
#[rtype(result = "Result<berth_protocol::metrics::AppMetrics>")]
pub struct GetAppMetrics {
    pub app: String,
    pub window: Option<String>,
}

/// `GET /metrics`: the cluster's figures, read from Redis now (web/ encodes them).
#[derive(Message)]
#[rtype(result = "Result<crate::metrics::ClusterFigures>")]
pub struct ClusterMetrics;

impl Handler<Health> for Api {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, _: Health, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { store.ping().await })
    }
}

impl Handler<RedisStatus> for Api {
    type Result = ResponseFuture<Result<RedisView>>;

    fn handle(&mut self, _: RedisStatus, _: &mut Context<Self>) -> Self::Result {
        let conn = self.store.conn();
        Box::pin(async move { Ok(berth_bus::replication::replication(&conn).await?) })
    }
}

impl Handler<ListNodes> for Api {
    type Result = ResponseFuture<Result<Vec<NodeView>>>;

    fn handle(&mut self, _: ListNodes, _: &mut Context<Self>) -> Self::Result {
        let registry = self.registry.clone();
        Box::pin(async move { registry.send(NodesNow).await? })
    }
}

impl Handler<CordonNode> for Api {
    type Result = ResponseFuture<Result<NodeView>>;

    fn handle(&mut self, msg: CordonNode, _: &mut Context<Self>) -> Self::Result {
        let (registry, store) = (self.registry.clone(), self.store.clone());
        Box::pin(async move {
            let CordonNode { node, on } = msg;
            let view = registry
                .send(Cordon {
                    node: node.clone(),
                    on,
                })
                .await??;
            store
                .confirm(
                    &format!(
                        "node {node} was {}",
                        if on { "cordoned" } else { "uncordoned" }
                    ),
                    "a failover of Redis now could undo it: look at `berth nodes` and ask again if needed",
                )
                .await?;
            Ok(view)
        })
    }
}

impl Handler<Drain> for Api {
    type Result = ResponseFuture<Result<DrainNode>>;

    fn handle(&mut self, Drain(node): Drain, _: &mut Context<Self>) -> Self::Result {
        let (registry, store) = (self.registry.clone(), self.store.clone());
        let (ledger, reconciler) = (self.ledger.clone(), self.reconciler.clone());
        Box::pin(async move {
            let cordon = Cordon {
                node: node.clone(),
                on: true,
            };
            let view = registry.send(cordon).await??;
            let deployments = crate::failover::drain(&store, &ledger, &reconciler, &node).await?;
            store
                .confirm(
                    &format!(
                        "node {node} was cordoned and {} failover deployment(s) queued ({})",
                        deployments.len(),
                        deployments.join(", ")
                    ),
                    "a failover of Redis now could lose them: look at `berth nodes` and the apps' \
                     deployments, and drain again if needed (a drain queues only what is not moved yet)",
                )
                .await?;
            Ok(DrainNode {
                node: view,
                deployments,
            })
        })
    }
}

impl Handler<GetAppMetrics> for Api {
    type Result = ResponseFuture<Result<berth_protocol::metrics::AppMetrics>>;

    fn handle(&mut self, msg: GetAppMetrics, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let window_s = berth_protocol::metrics::parse_window(msg.window.as_deref())
                .map_err(Error::BadRequest)?;
            let app = load_app(&store, &msg.app).await?;
            let now = berth_protocol::now_ms();
            let route = match app.domains.first() {
                Some(domain) => store.route(domain).await?.filter(|r| r.app == app.name),
                None => None,
            };
            crate::metrics::app_metrics(&store, &app.name, route.as_ref(), window_s, now).await
        })
    }
}

impl Handler<ClusterMetrics> for Api {
    type Result = ResponseFuture<Result<crate::metrics::ClusterFigures>>;

    fn handle(&mut self, _: ClusterMetrics, _: &mut Context<Self>) -> Self::Result {
        let (store, registry) = (self.store.clone(), self.registry.clone());
        Box::pin(async move {
            let nodes = registry.send(NodesNow).await??;
            crate::metrics::cluster_figures(&store, &nodes).await
        })
    }
}
