//! Placement: which live node runs a deployment.
//!
//! A pure function over the registry's view, so it can be tested without a cluster. Today it
//! takes the live node with the fewest jobs in progress (ties by name, for determinism); the
//! fleet's filters (labels, capacity, cordon) slot in here as further steps.

use berth_protocol::NodeInfo;

/// Picks a node among `live` (already filtered to heartbeating ones), or `None` if there is none.
pub fn place<'a>(live: &'a [NodeInfo], extra_load: &dyn Fn(&str) -> u32) -> Option<&'a NodeInfo> {
    live.iter()
        .min_by_key(|n| (n.running_jobs + extra_load(&n.name), n.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, jobs: u32) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            address: "127.0.0.1".into(),
            ingress_http: 80,
            version: "t".into(),
            started_at: 0,
            last_heartbeat: 0,
            running_jobs: jobs,
            host: None,
        }
    }

    #[test]
    fn none_without_nodes() {
        assert!(place(&[], &|_| 0).is_none());
    }

    #[test]
    fn least_loaded_wins_ties_by_name() {
        let nodes = [node("b", 1), node("c", 0), node("a", 0)];
        assert_eq!(place(&nodes, &|_| 0).unwrap().name, "a");
        assert_eq!(
            place(&nodes, &|n| u32::from(n == "a") * 5).unwrap().name,
            "c"
        );
    }
}
