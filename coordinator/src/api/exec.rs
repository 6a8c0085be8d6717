//! Exec: run a command in a running replica of an app (`POST /api/v1/apps/{name}/exec`).
//!
//! The replica is chosen from the route of the app's first domain (as `replicas` reads it): the
//! first serving one whose node is ready (else suspect), or the one `node` / `container` name.
//! The job goes to that node's job stream; the output comes back on the exec's stream, which
//! [`crate::exec::Execs`] follows.

use std::collections::HashMap;

use actix::prelude::*;
use berth_protocol::api::{CreateExec, ExecStarted, NodeView};
use berth_protocol::exec::{self, ExecJob};
use berth_protocol::{now_ms, NodeStatus, Route, Upstream};

use super::{load_app, Api};
use crate::error::{Error, Result};
use crate::registry::NodesNow;

/// Queues a command on the node of one of the app's replicas; answers where (202).
#[derive(Message)]
#[rtype(result = "Result<ExecStarted>")]
pub struct StartExec(pub String, pub CreateExec);

impl Handler<StartExec> for Api {
    type Result = ResponseFuture<Result<ExecStarted>>;

    fn handle(&mut self, msg: StartExec, _: &mut Context<Self>) -> Self::Result {
        let (store, registry) = (self.store.clone(), self.registry.clone());
        Box::pin(async move {
            let StartExec(name, req) = msg;
            exec::check_cmd(&req.cmd).map_err(Error::BadRequest)?;
            let timeout_s = exec::timeout_s(req.timeout_s).map_err(Error::BadRequest)?;
            let app = load_app(&store, &name).await?;
            let route = match app.domains.first() {
                Some(d) => store.route(d).await?,
                None => None,
            };
            let nodes = registry.send(NodesNow).await??;
            let want = Want {
                node: req.node.as_deref().filter(|n| !n.is_empty()),
                container: req.container.as_deref().filter(|c| !c.is_empty()),
            };
            let chosen = choose(&name, route.as_ref(), &nodes, want, now_ms())?;
            let id = new_id();
            let now = now_ms();
            let job = ExecJob {
                exec_id: id.clone(),
                app: name.clone(),
                container: chosen.container.clone(),
                cmd: req.cmd,
                timeout_s,
                pickup_by_ms: now + exec::PICKUP_S * 1000,
            };
            crate::exec::queue(&store, &chosen.node, &job).await?;
            tracing::info!(exec = %id, app = %name, node = %chosen.node, "exec queued");
            Ok(ExecStarted {
                id,
                app: name,
                node: chosen.node,
                container: chosen.container,
                deployment: chosen.deployment,
                timeout_s,
            })
        })
    }
}

/// An exec id: `x`, the second in hex, 8 random hex digits (like a deployment's, with `x`).
fn new_id() -> String {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    format!("x{:x}{}", now_ms() / 1000, &uuid[..8])
}

/// Which replica the request asks for.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Want<'a> {
    pub node: Option<&'a str>,
    /// A container id or a prefix of it.
    pub container: Option<&'a str>,
}

/// The replica of `app` to run the command in, from its route at `now`: the serving replicas
/// (and, when a container is named, the standby ones), narrowed by `want`, the first on a ready
/// node (else a suspect one). Each refusal says what there is.
pub(crate) fn choose(
    app: &str,
    route: Option<&Route>,
    nodes: &[NodeView],
    want: Want<'_>,
    now: u64,
) -> Result<Upstream> {
    let serving: &[Upstream] = route.map(|r| r.upstreams.as_slice()).unwrap_or_default();
    let standby: &[Upstream] = match (route, want.container) {
        (Some(r), Some(_)) => r.standby_at(now),
        _ => &[],
    };
    let all: Vec<&Upstream> = serving.iter().chain(standby).collect();
    if all.is_empty() {
        return Err(Error::Conflict(format!(
            "app {app} has no running replica: deploy it with `berth deploy {app}`"
        )));
    }
    let listing = || {
        all.iter()
            .map(|u| format!("{} on {}", short(&u.container), u.node))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut found = all.clone();
    if let Some(node) = want.node {
        found.retain(|u| u.node == node);
        if found.is_empty() {
            let on = nodes_of(&all);
            return Err(Error::NotFound(format!(
                "app {app} has no replica on node {node:?}; its replicas run on: {}",
                on.join(", ")
            )));
        }
    }
    if let Some(c) = want.container {
        found.retain(|u| u.container.starts_with(c));
        match found.len() {
            0 => {
                return Err(Error::NotFound(format!(
                    "app {app} has no replica {c:?}{}; its replicas: {} (see `berth replicas {app}`)",
                    want.node.map(|n| format!(" on node {n}")).unwrap_or_default(),
                    listing()
                )))
            }
            1 => {}
            _ => {
                return Err(Error::BadRequest(format!(
                    "{c:?} names more than one replica of app {app} ({}): give more of the container id",
                    found
                        .iter()
                        .map(|u| format!("{} on {}", short(&u.container), u.node))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
    }
    let status: HashMap<&str, NodeStatus> = nodes
        .iter()
        .map(|n| (n.info.name.as_str(), n.status))
        .collect();
    let of = |u: &Upstream| status.get(u.node.as_str()).copied();
    let pick = found
        .iter()
        .find(|u| of(u) == Some(NodeStatus::Ready))
        .or_else(|| found.iter().find(|u| of(u) == Some(NodeStatus::Suspect)));
    match pick {
        Some(u) => Ok((*u).clone()),
        None => {
            let down = nodes_of(&found);
            Err(Error::Conflict(format!(
                "the node of app {app}'s replica is down ({}): no command can run there; \
                 its replicas are moved to a live node shortly (see `berth replicas {app}`, `berth nodes`)",
                down.join(", ")
            )))
        }
    }
}

/// The nodes of `ups`, each once, in order.
fn nodes_of<'a>(ups: &[&'a Upstream]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for u in ups {
        if !out.contains(&u.node.as_str()) {
            out.push(&u.node);
        }
    }
    out
}

/// A container id as `berth replicas` shows it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(node: &str, container: &str) -> Upstream {
        Upstream {
            dial: "127.0.0.1:1".into(),
            node: node.into(),
            container: container.into(),
            deployment: "d1".into(),
        }
    }

    fn route(upstreams: Vec<Upstream>, standby: Vec<Upstream>) -> Route {
        Route {
            domain: "a.localhost".into(),
            app: "a".into(),
            upstreams,
            updated_at: 1,
            drain_s: None,
            standby,
            standby_until: 2_000,
        }
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

    fn want<'a>(node: Option<&'a str>, container: Option<&'a str>) -> Want<'a> {
        Want { node, container }
    }

    #[test]
    fn the_first_serving_replica_on_a_ready_node() {
        let r = route(
            vec![up("n1", "aaa111"), up("n2", "bbb222"), up("n3", "ccc333")],
            vec![],
        );
        let nodes = [
            node("n1", NodeStatus::Down),
            node("n2", NodeStatus::Suspect),
            node("n3", NodeStatus::Ready),
        ];
        let got = choose("a", Some(&r), &nodes, Want::default(), 1_000).unwrap();
        assert_eq!(got.container, "ccc333");
        // No ready node: a suspect one.
        let got = choose("a", Some(&r), &nodes[..2], Want::default(), 1_000).unwrap();
        assert_eq!(got.container, "bbb222");
        // Only down (or unknown) nodes: refused, naming them.
        let e = choose("a", Some(&r), &nodes[..1], Want::default(), 1_000).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e}");
        assert!(e.to_string().contains("down (n1, n2, n3)"), "{e}");
    }

    #[test]
    fn no_replica_says_to_deploy() {
        for r in [None, Some(route(vec![], vec![up("n1", "sss")]))] {
            let e = choose("web", r.as_ref(), &[], Want::default(), 1_000).unwrap_err();
            assert!(matches!(e, Error::Conflict(_)));
            assert_eq!(
                e.to_string(),
                "app web has no running replica: deploy it with `berth deploy web`"
            );
        }
    }

    #[test]
    fn a_named_node_or_container_and_what_there_is_when_it_is_not_there() {
        let r = route(
            vec![up("n1", "aaa111"), up("n2", "aab222")],
            vec![up("n3", "sss333")],
        );
        let nodes = [
            node("n1", NodeStatus::Ready),
            node("n2", NodeStatus::Ready),
            node("n3", NodeStatus::Ready),
        ];
        let pick = |w: Want<'_>, now: u64| choose("a", Some(&r), &nodes, w, now);
        assert_eq!(pick(want(Some("n2"), None), 0).unwrap().container, "aab222");
        assert_eq!(
            pick(want(None, Some("aaa")), 0).unwrap().container,
            "aaa111"
        );
        assert_eq!(
            pick(want(Some("n2"), Some("aa")), 0).unwrap().container,
            "aab222"
        );
        // A standby replica may be named while it is kept.
        assert_eq!(pick(want(None, Some("sss")), 0).unwrap().node, "n3");
        let e = pick(want(None, Some("sss")), 2_000).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        // Standby replicas are not picked by default, nor by node alone.
        let e = pick(want(Some("n3"), None), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "app a has no replica on node \"n3\"; its replicas run on: n1, n2"
        );
        let e = pick(want(None, Some("zzz")), 0).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert!(
            e.to_string()
                .contains("its replicas: aaa111 on n1, aab222 on n2, sss333 on n3"),
            "{e}"
        );
        let e = pick(want(None, Some("aa")), 0).unwrap_err();
        assert!(matches!(e, Error::BadRequest(_)), "{e}");
        assert!(e.to_string().contains("more than one"), "{e}");
    }
}
