//! Which upstreams of a route this node's responder hands to its Caddy.
//!
//! A route comes from Redis, and whoever can write Redis could point a domain anywhere: at the
//! Caddy admin API on a node's loopback, at Redis itself, at a host inside the private network.
//! Redis is guarded (a password, TLS, never reachable from app containers), and this is the
//! second line: an upstream is served only if
//! - its address is the advertised address of the node it names (this node's own setting, the
//!   others' from their heartbeats), and
//! - its port is, on this node, a host port published by a running Berth container of this
//!   engine (asked of Docker), or, on another node, within the kernel's ephemeral port range
//!   (`/proc/sys/net/ipv4/ip_local_port_range`), where Docker publishes container ports — so
//!   never an infrastructure port such as 2019 (Caddy's admin), 6379 (Redis) or 22.
//!
//! Anything else is left out of the answer and logged once per (domain, dial). What this
//! cannot stop: a Redis writer pointing one domain at another app's container on a fleet node.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_bus::Redis;
use berth_protocol::envelope::kind::NODE as NODE_KIND;
use berth_protocol::{envelope, keys, NodeInfo, Route};
use bollard::Docker;
use redis::AsyncCommands;

use crate::containers;
use crate::resolver::upstream_addr;

/// How often at most one refused dial (or unknown node) makes the guard ask again (Docker for
/// this node's ports, Redis for the fleet's addresses): a route naming something that does not
/// exist must not turn every apply into a query, while a container started a moment ago is
/// asked about at once.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_millis(500);

/// Docker's default when the kernel's range cannot be read.
const DEFAULT_EPHEMERAL: RangeInclusive<u16> = 32768..=60999;

/// What the guard knows; refreshed by [`UpstreamGuard::refresh`] and on misses.
#[derive(Default)]
struct Known {
    /// Node name → advertised address, from the heartbeats.
    fleet: HashMap<String, Ipv4Addr>,
    /// Host ports published by this engine's running Berth containers.
    local_ports: HashSet<u16>,
    /// (domain, dial) pairs already logged as refused.
    warned: HashSet<(String, String)>,
    /// When a refused local dial (`local <dial>`) or an unknown node (`node <name>`) last made
    /// the guard ask again.
    asked: HashMap<String, Instant>,
}

impl Known {
    /// Whether `what` may make the guard ask again now (and notes that it does).
    fn may_ask(&mut self, what: String) -> bool {
        let now = Instant::now();
        match self.asked.get(&what) {
            Some(t) if now.duration_since(*t) < REFRESH_AT_MOST_EVERY => false,
            _ => {
                if self.asked.len() > 10_000 {
                    self.asked
                        .retain(|_, t| now.duration_since(*t) < REFRESH_AT_MOST_EVERY);
                }
                self.asked.insert(what, now);
                true
            }
        }
    }
}

/// Why an upstream is refused, or `None` if it may be served: the pure rule (see the module
/// docs), over what the guard knows.
fn refusal(
    me: (&str, Ipv4Addr),
    fleet: &HashMap<String, Ipv4Addr>,
    local_ports: &HashSet<u16>,
    ephemeral: &RangeInclusive<u16>,
    node: &str,
    addr: SocketAddrV4,
) -> Option<String> {
    let expected = if node == me.0 {
        Some(me.1)
    } else {
        fleet.get(node).copied()
    };
    match expected {
        None => return Some(format!("node {node:?} is not in the fleet")),
        Some(ip) if ip != *addr.ip() => {
            return Some(format!("node {node:?} advertises {ip}, not {}", addr.ip()))
        }
        Some(_) => {}
    }
    if node == me.0 {
        (!local_ports.contains(&addr.port())).then(|| {
            format!(
                "port {} is not published by a running Berth container here",
                addr.port()
            )
        })
    } else {
        (!ephemeral.contains(&addr.port())).then(|| {
            format!(
                "port {} is outside the range container ports are published in ({}-{})",
                addr.port(),
                ephemeral.start(),
                ephemeral.end()
            )
        })
    }
}

/// The kernel's ephemeral port range, where Docker publishes container ports.
fn ephemeral_range() -> RangeInclusive<u16> {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return DEFAULT_EPHEMERAL;
    };
    let mut it = text
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) if a <= b => a..=b,
        _ => DEFAULT_EPHEMERAL,
    }
}

/// Decides which of a route's upstreams the responder serves (see the module docs).
pub struct UpstreamGuard {
    node: String,
    address: Ipv4Addr,
    docker: Docker,
    redis: Redis,
    ephemeral: RangeInclusive<u16>,
    known: Mutex<Known>,
}

impl UpstreamGuard {
    pub fn new(node: &str, address: Ipv4Addr, docker: Docker, redis: Redis) -> Self {
        UpstreamGuard {
            node: node.to_string(),
            address,
            docker,
            redis,
            ephemeral: ephemeral_range(),
            known: Mutex::default(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the fleet's addresses and this engine's published ports again. A failed read keeps
    /// what was known (an outage of Redis or Docker does not empty the table).
    pub async fn refresh(&self) {
        self.refresh_fleet().await;
        self.refresh_local().await;
    }

    async fn refresh_fleet(&self) {
        let mut conn = self.redis.clone();
        let read = async {
            let names: Vec<String> = conn.smembers(keys::NODES).await?;
            if names.is_empty() {
                return Ok::<_, redis::RedisError>(HashMap::new());
            }
            let ks: Vec<String> = names.iter().map(|n| keys::node(n)).collect();
            let vals: Vec<Option<Vec<u8>>> = conn.mget(&ks).await?;
            Ok(vals
                .into_iter()
                .flatten()
                .filter_map(|b| envelope::decode::<NodeInfo>(&b, NODE_KIND).ok())
                .filter_map(|n| Some((n.name, n.address.parse().ok()?)))
                .collect())
        };
        match read.await {
            Ok(fleet) => {
                let mut k = self.known();
                k.fleet = fleet;
            }
            Err(e) => tracing::debug!(error = %e, "upstream guard: cannot read the fleet"),
        }
    }

    async fn refresh_local(&self) {
        match containers::running_app_containers(&self.docker, &self.node).await {
            Ok(list) => {
                let ports = list
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .filter_map(|p| p.public_port)
                    .collect();
                let mut k = self.known();
                k.local_ports = ports;
            }
            Err(e) => tracing::debug!(error = %e, "upstream guard: cannot list containers"),
        }
    }

    fn check(&self, k: &Known, node: &str, addr: SocketAddrV4) -> Option<String> {
        refusal(
            (&self.node, self.address),
            &k.fleet,
            &k.local_ports,
            &self.ephemeral,
            node,
            addr,
        )
    }

    /// The upstreams of `route` the responder may serve. On a refusal that fresher knowledge
    /// could lift (a container started a moment ago, a node that just joined), asks again once,
    /// at most every [`REFRESH_AT_MOST_EVERY`] for the same dial or node.
    pub async fn allowed(&self, route: &Route) -> Vec<SocketAddrV4> {
        let parsed: Vec<(Option<SocketAddrV4>, &berth_protocol::Upstream)> = route
            .upstreams
            .iter()
            .map(|u| (upstream_addr(&u.dial), u))
            .collect();
        let (mut stale_fleet, mut stale_local) = (false, false);
        {
            let mut k = self.known();
            for (a, u) in &parsed {
                let Some(a) = a else { continue };
                if self.check(&k, &u.node, *a).is_some() {
                    if u.node == self.node {
                        stale_local |= k.may_ask(format!("local {}", u.dial));
                    } else {
                        stale_fleet |= k.may_ask(format!("node {}", u.node));
                    }
                }
            }
        }
        if stale_fleet {
            self.refresh_fleet().await;
        }
        if stale_local {
            self.refresh_local().await;
        }
        let mut k = self.known();
        let mut out = Vec::with_capacity(parsed.len());
        for (a, u) in parsed {
            let why = match a {
                None => Some("it is not ipv4:port".to_string()),
                Some(a) => self.check(&k, &u.node, a),
            };
            match (a, why) {
                (Some(a), None) => out.push(a),
                (_, Some(why)) => {
                    if k.warned.insert((route.domain.clone(), u.dial.clone())) {
                        tracing::warn!(domain = %route.domain, dial = %u.dial, node = %u.node,
                            "upstream left out of the route: {why}");
                    }
                }
                (None, None) => unreachable!("an unparsed dial is refused"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_node_s_own_address_and_a_container_port_pass() {
        let me = ("n1", Ipv4Addr::new(10, 0, 0, 1));
        let fleet = HashMap::from([("n2".to_string(), Ipv4Addr::new(10, 0, 0, 2))]);
        let local = HashSet::from([32800u16]);
        let eph = 32768..=60999;
        let r =
            |node: &str, dial: &str| refusal(me, &fleet, &local, &eph, node, dial.parse().unwrap());
        // This node: only a port one of its Berth containers publishes.
        assert_eq!(r("n1", "10.0.0.1:32800"), None);
        assert!(r("n1", "10.0.0.1:32801").unwrap().contains("not published"));
        // Caddy's admin API or Redis, on this node's loopback or address: refused.
        assert!(r("n1", "127.0.0.1:2019")
            .unwrap()
            .contains("advertises 10.0.0.1"));
        assert!(r("n1", "10.0.0.1:6379").is_some());
        // Another node: its advertised address, a port where Docker publishes.
        assert_eq!(r("n2", "10.0.0.2:40000"), None);
        assert!(r("n2", "10.0.0.2:6379")
            .unwrap()
            .contains("outside the range"));
        assert!(r("n2", "10.0.0.9:40000")
            .unwrap()
            .contains("advertises 10.0.0.2"));
        // A node nobody knows, or a host inside the network that is no node.
        assert!(r("ghost", "10.0.0.3:40000")
            .unwrap()
            .contains("not in the fleet"));
    }

    #[test]
    fn the_kernel_s_range_is_read() {
        let r = ephemeral_range();
        assert!(r.start() >= &1024 && r.start() <= r.end(), "{r:?}");
    }
}
