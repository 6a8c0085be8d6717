//! Replicas: what runs an app now, read from the route of its first domain — the upstreams
//! (`serving`) and the standby replicas still kept (`standby`) — with each one's release (its
//! deployment's image) and its node's liveness.

use std::collections::HashMap;

use actix::prelude::*;
use berth_protocol::api::{NodeView, ReplicaView};
use berth_protocol::{now_ms, Deployment, NodeStatus, Route, Upstream};

use super::{load_app, Api};
use crate::error::Result;
use crate::registry::NodesNow;

/// `GET /api/v1/apps/{name}/replicas`: serving replicas first, then standby ones, each in the
/// route's order; empty while the app has no route.
#[derive(Message)]
#[rtype(result = "Result<Vec<ReplicaView>>")]
pub struct ListReplicas(pub String);

impl Handler<ListReplicas> for Api {
    type Result = ResponseFuture<Result<Vec<ReplicaView>>>;

    fn handle(&mut self, msg: ListReplicas, _: &mut Context<Self>) -> Self::Result {
        let (store, registry) = (self.store.clone(), self.registry.clone());
        Box::pin(async move {
            let app = load_app(&store, &msg.0).await?;
            let Some(domain) = app.domains.first() else {
                return Ok(Vec::new());
            };
            let Some(route) = store.route(domain).await? else {
                return Ok(Vec::new());
            };
            let now = now_ms();
            let mut ids: Vec<String> = Vec::new();
            for u in route.upstreams.iter().chain(route.standby_at(now)) {
                if !ids.contains(&u.deployment) {
                    ids.push(u.deployment.clone());
                }
            }
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let deployments = store.deployments(&ids).await?;
            let nodes = registry.send(NodesNow).await??;
            Ok(replica_views(&route, &deployments, &nodes, now))
        })
    }
}

/// The replicas `route` names at `now`, given the records of their deployments and the nodes
/// as the registry sees them.
pub(crate) fn replica_views(
    route: &Route,
    deployments: &[Deployment],
    nodes: &[NodeView],
    now: u64,
) -> Vec<ReplicaView> {
    let records: HashMap<&str, &Deployment> =
        deployments.iter().map(|d| (d.id.as_str(), d)).collect();
    let status: HashMap<&str, NodeStatus> = nodes
        .iter()
        .map(|n| (n.info.name.as_str(), n.status))
        .collect();
    let view = |u: &Upstream, role: &str| ReplicaView {
        node: u.node.clone(),
        container: u.container.clone(),
        deployment: u.deployment.clone(),
        image: records
            .get(u.deployment.as_str())
            .and_then(|d| d.image.clone()),
        role: role.to_string(),
        health: health(status.get(u.node.as_str()).copied()).to_string(),
        upstream: u.dial.clone(),
        since: records
            .get(u.deployment.as_str())
            .and_then(|d| d.finished_at.or(d.started_at)),
    };
    let serving = route.upstreams.iter().map(|u| view(u, "serving"));
    let standby = route.standby_at(now).iter().map(|u| view(u, "standby"));
    serving.chain(standby).collect()
}

/// A replica's health from its node's liveness: it passed its check when it was switched in,
/// so it counts as healthy while its node heartbeats on time.
fn health(node: Option<NodeStatus>) -> &'static str {
    match node {
        Some(NodeStatus::Ready) => "healthy",
        Some(NodeStatus::Suspect) => "suspect",
        Some(NodeStatus::Down) => "down",
        None => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(n: u32, node: &str, deployment: &str) -> Upstream {
        Upstream {
            dial: format!("10.0.0.{n}:3000{n}"),
            node: node.into(),
            container: format!("c{n}"),
            deployment: deployment.into(),
        }
    }

    fn deployment(id: &str, image: Option<&str>) -> Deployment {
        let mut d = crate::ledger::tests::queued();
        d.id = id.into();
        d.image = image.map(Into::into);
        d
    }

    fn node(name: &str, status: NodeStatus) -> NodeView {
        let mut info = crate::registry::tests::node_info();
        info.name = name.into();
        NodeView {
            info,
            status,
            cordoned: false,
        }
    }

    fn route(upstreams: Vec<Upstream>, standby: Vec<Upstream>, until: u64) -> Route {
        Route {
            domain: "a.localhost".into(),
            app: "a".into(),
            upstreams,
            updated_at: 1,
            drain_s: Some(10),
            standby,
            standby_until: until,
        }
    }

    #[test]
    fn serving_then_kept_standby_with_image_and_node_health() {
        let r = route(
            vec![upstream(1, "n1", "d2"), upstream(2, "n2", "d2")],
            vec![upstream(3, "n3", "d1")],
            2_000,
        );
        let ds = [
            deployment("d1", Some("img:1")),
            deployment("d2", Some("img:2")),
        ];
        let nodes = [
            node("n1", NodeStatus::Ready),
            node("n2", NodeStatus::Suspect),
            // A cordoned node that heartbeats is still healthy.
            NodeView {
                cordoned: true,
                ..node("n3", NodeStatus::Ready)
            },
        ];
        let got = replica_views(&r, &ds, &nodes, 1_000);
        let want = |n: u32, deployment: &str, image: &str, role: &str, health: &str| ReplicaView {
            node: format!("n{n}"),
            container: format!("c{n}"),
            deployment: deployment.into(),
            image: Some(image.into()),
            role: role.into(),
            health: health.into(),
            upstream: format!("10.0.0.{n}:3000{n}"),
            since: None,
        };
        assert_eq!(
            got,
            vec![
                want(1, "d2", "img:2", "serving", "healthy"),
                want(2, "d2", "img:2", "serving", "suspect"),
                want(3, "d1", "img:1", "standby", "healthy"),
            ]
        );
    }

    #[test]
    fn expired_standby_unknown_nodes_and_missing_records() {
        let r = route(
            vec![upstream(1, "gone", "d9"), upstream(2, "n2", "d2")],
            vec![upstream(3, "n3", "d1")],
            2_000,
        );
        let nodes = [node("n2", NodeStatus::Down)];
        let got = replica_views(&r, &[deployment("d2", None)], &nodes, 2_000);
        assert_eq!(got.len(), 2, "the standby expired at 2000: {got:?}");
        assert_eq!(
            (got[0].health.as_str(), got[0].image.as_deref()),
            ("unknown", None)
        );
        assert_eq!(
            (got[1].health.as_str(), got[1].image.as_deref()),
            ("down", None)
        );
        assert!(replica_views(&route(vec![], vec![], 0), &[], &[], 0).is_empty());
    }
}
