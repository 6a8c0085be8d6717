//! Keeping the routes true to where this node's replicas are published.
//!
//! A replica's container publishes the app's port on an ephemeral host port, which its routes
//! dial. When the engine starts the container again by itself — its restart policy after the
//! app crashed, or the engine's own restart bringing back what it kept (`unless-stopped`: the
//! serving replicas and those on standby) — the container comes back on a *new* ephemeral port,
//! and every route that dials the old one points at nothing. The follower here reads the host
//! ports of this node's running containers and has the router rewrite the dials that differ
//! ([`RouterCore::redial`]): at once when [`EngineWatch::moves`] says one may have moved (a
//! container of this node started, the engine answered again after an outage), again a few
//! seconds later (an engine that restarts brings its containers back while its API is still
//! coming up), and every [`SWEEP`] whatever happened (a writer that put an old dial back).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use berth_bus::Shutdown;
use bollard::models::ContainerSummary;
use bollard::Docker;

use crate::containers::{self, LABEL_PORT};
use crate::engine_watch::EngineWatch;
use crate::error::Result;
use crate::router::RouterCore;

/// How often the ports are compared with the routes when nothing said they moved.
pub const SWEEP: Duration = Duration::from_secs(10);
/// After a sign that ports moved: when to look (from the sign), and look again.
const AFTER_MOVE: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(2),
    Duration::from_secs(6),
];

/// The host port each running container publishes its app's port on (container id → port).
/// The app's port is the `berth.port` label; a container made before that label existed counts
/// when it publishes one port only.
fn published(list: Vec<ContainerSummary>) -> HashMap<String, u16> {
    let mut out = HashMap::new();
    for c in list {
        let (Some(id), Some(ports)) = (c.id, c.ports) else {
            continue;
        };
        let app_port = c
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_PORT))
            .and_then(|p| p.parse::<u16>().ok());
        // Routes dial IPv4 addresses: an IPv6 binding of the same port is not theirs.
        let mut found: Vec<(u16, u16)> = ports
            .iter()
            .filter(|p| !p.ip.as_deref().unwrap_or_default().contains(':'))
            .filter_map(|p| Some((p.private_port, p.public_port?)))
            .filter(|(private, _)| app_port.is_none_or(|a| a == *private))
            .collect();
        found.dedup();
        if let [(_, public)] = found[..] {
            out.insert(id, public);
        }
    }
    out
}

/// Compares this node's containers' host ports with the routes and rewrites the dials that
/// differ; returns the domains changed.
pub async fn repoint(docker: &Docker, node: &str, router: &RouterCore) -> Result<Vec<String>> {
    let ports = published(containers::running_app_containers(docker, node).await?);
    router.redial(node, &ports).await
}

/// Starts the follower (a task tracked by `shutdown`).
pub fn start(
    docker: Docker,
    node: String,
    router: Arc<RouterCore>,
    engine: &EngineWatch,
    shutdown: &Shutdown,
) {
    let mut moves = engine.moves();
    let token = shutdown.token().clone();
    shutdown.spawn(async move {
        let once = || async {
            match repoint(&docker, &node, &router).await {
                Ok(changed) if !changed.is_empty() => tracing::warn!(
                    domains = ?changed,
                    "replicas of this node came back on new host ports; their routes dial them now"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "could not compare host ports with the routes")
                }
            }
        };
        let follow = async {
            once().await;
            loop {
                tokio::select! {
                    r = moves.changed() => if r.is_err() { return },
                    () = tokio::time::sleep(SWEEP) => {
                        once().await;
                        continue;
                    }
                }
                // A move: look AFTER_MOVE after it. A move while looking starts the series
                // again from it, without putting off the next look past its first delay.
                let mut base = Instant::now();
                let mut next = base + AFTER_MOVE[0];
                let mut i = 0;
                while i < AFTER_MOVE.len() {
                    moves.borrow_and_update();
                    tokio::select! {
                        r = moves.changed() => {
                            if r.is_err() {
                                return;
                            }
                            base = Instant::now();
                            next = next.min(base + AFTER_MOVE[0]);
                            i = 0;
                        }
                        () = tokio::time::sleep_until(next) => {
                            once().await;
                            i += 1;
                            if let Some(d) = AFTER_MOVE.get(i) {
                                next = base + *d;
                            }
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = follow => {}
            () = token.cancelled() => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::PortSummary;

    fn container(id: &str, label: Option<&str>, ports: &[(u16, Option<u16>)]) -> ContainerSummary {
        ContainerSummary {
            id: Some(id.to_string()),
            labels: label.map(|p| HashMap::from([(LABEL_PORT.to_string(), p.to_string())])),
            ports: Some(
                ports
                    .iter()
                    .map(|(private, public)| PortSummary {
                        private_port: *private,
                        public_port: *public,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_app_s_port_is_the_labelled_one_or_the_only_one() {
        let got = published(vec![
            // The app's port and a health check's: the label tells.
            container(
                "a",
                Some("8080"),
                &[(9000, Some(32770)), (8080, Some(32771))],
            ),
            // Listed once per address family (the IPv6 binding is left out).
            ContainerSummary {
                ports: Some(vec![
                    PortSummary {
                        ip: Some("::".to_string()),
                        private_port: 8080,
                        public_port: Some(32790),
                        ..Default::default()
                    },
                    PortSummary {
                        ip: Some("0.0.0.0".to_string()),
                        private_port: 8080,
                        public_port: Some(32772),
                        ..Default::default()
                    },
                ]),
                ..container("b", Some("8080"), &[])
            },
            // No label, one port.
            container("c", None, &[(3000, Some(32773))]),
            // No label, two ports: cannot tell.
            container("d", None, &[(3000, Some(32774)), (9000, Some(32775))]),
            // Not published (yet).
            container("e", Some("8080"), &[(8080, None)]),
        ]);
        assert_eq!(
            got,
            HashMap::from([
                ("a".to_string(), 32771),
                ("b".to_string(), 32772),
                ("c".to_string(), 32773),
            ])
        );
    }
}
