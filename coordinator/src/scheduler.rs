//! Placement: which node runs a deployment.
//!
//! A pure function over the registry's view, so it can be tested without a cluster. First the
//! filters — the node is `ready` (not `suspect` or `down`), not cordoned, its labels satisfy the
//! app's constraints, and it has the memory the app reserves available — then the ranking of
//! what passed: `spread` (default) takes the node with the fewest replicas of the app, then the
//! fewest jobs in progress, then the most memory available; `binpack` the least memory available
//! that still fits; ties go to the node listed first (the registry lists them by name). A build
//! goes to the node that built the app last (its layer cache) when that node passes and has a
//! free build slot. When nothing passes, the answer says which filter removed which node.

use std::collections::HashMap;
use std::fmt;

use berth_protocol::api::NodeView;
use berth_protocol::{Constraint, NodeInfo, NodeStatus, Placement, Strategy};

/// Build slots of a node that does not announce them.
const DEFAULT_BUILD_SLOTS: u32 = 2;

/// What is placed, beside the nodes.
pub struct Request<'a> {
    pub placement: &'a Placement,
    /// Replicas of the app each node runs now (what `spread` evens out), by the node's position
    /// in the slice placed over (a node past the end runs none). By position, not name: ranking
    /// a thousand nodes then reads neither their names nor their records, only [`Table`]'s rows.
    pub replicas_on: &'a [u32],
    /// Jobs placed on a node that its heartbeat does not count yet (by position, as above).
    pub extra_load: &'a [u32],
    /// The node that built the app last: taken first when it passes and has a free build slot.
    pub prefer: Option<&'a str>,
    /// The only node that can run it: the one whose engine has the release's image, when the
    /// nodes share no registry.
    pub only: Option<&'a str>,
}

/// Why nothing could be placed: each node with the filter that removed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub rejected: Vec<(String, String)>,
}

impl Unplaced {
    /// Whether some node is ready: then waiting will not help unless the fleet or the app
    /// changes, so the deployment fails at once.
    pub fn any_ready(&self, nodes: &[NodeView]) -> bool {
        nodes.iter().any(|n| n.status == NodeStatus::Ready)
    }
}

impl fmt::Display for Unplaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rejected.is_empty() {
            return write!(f, "no node has registered");
        }
        write!(f, "no node can run it: ")?;
        for (i, (node, why)) in self.rejected.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{node}: {why}")?;
        }
        Ok(())
    }
}

fn mem_available(n: &NodeInfo) -> Option<u64> {
    n.host.as_ref().map(|h| h.mem_available_bytes)
}

/// The first filter `n` fails, if any.
fn rejection(v: &NodeView, constraints: &[Constraint], memory_mb: u64) -> Option<String> {
    match v.status {
        NodeStatus::Down => return Some("down (no heartbeat)".into()),
        NodeStatus::Suspect => return Some("suspect (a heartbeat is late)".into()),
        NodeStatus::Ready => {}
    }
    if v.cordoned {
        return Some("cordoned".into());
    }
    let labels = &v.info.labels;
    if let Some(c) = constraints.iter().find(|c| !c.holds(labels)) {
        return Some(match labels.get(&c.key) {
            Some(have) => format!("constraint {c} does not hold ({}={have})", c.key),
            None => format!("constraint {c} does not hold (no label {})", c.key),
        });
    }
    let wanted = memory_mb.saturating_mul(1024 * 1024);
    match mem_available(&v.info) {
        Some(have) if have < wanted => Some(format!(
            "{} MiB of memory available, the app reserves {memory_mb} MiB",
            have / (1024 * 1024)
        )),
        _ => None,
    }
}

/// What placement reads of every node, laid out densely, with each node's position by name.
/// A thousand heartbeat records are a few hundred kilobytes that the filters and the ranking
/// would walk for every job; these rows are a few pages. Built once per snapshot of the fleet
/// by the registry (the snapshot changes at most four times a second, placements thousands of
/// times); [`place`] builds one itself when it is given none.
pub struct Table {
    rows: Vec<Row>,
    at: HashMap<String, usize>,
}

/// One node's row: what its filters and its rank need, but its labels and its name.
#[derive(Clone, Copy)]
struct Row {
    /// `ready` and not cordoned.
    open: bool,
    mem_available: Option<u64>,
    running_jobs: u32,
    build_slots: u32,
}

impl Table {
    pub fn of(nodes: &[NodeView]) -> Table {
        Table {
            rows: nodes
                .iter()
                .map(|v| Row {
                    open: v.status == NodeStatus::Ready && !v.cordoned,
                    mem_available: mem_available(&v.info),
                    running_jobs: v.info.running_jobs,
                    build_slots: v.info.build_slots,
                })
                .collect(),
            at: nodes
                .iter()
                .enumerate()
                .map(|(i, v)| (v.info.name.clone(), i))
                .collect(),
        }
    }

    /// The position of the node named `name` in the nodes this table was built from.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.at.get(name).copied()
    }
}

/// The count at position `i` of counts laid out by node position (0 past the end).
fn at(counts: &[u32], i: usize) -> u32 {
    counts.get(i).copied().unwrap_or(0)
}

/// The placement's constraints, parsed. They were validated when the app was written; one that
/// no longer parses (an older record) cannot hold on any node: the error says why.
fn constraints(p: &Placement) -> Result<Vec<Constraint>, String> {
    p.constraints.iter().map(|c| Constraint::parse(c)).collect()
}

/// Picks the node for one job of an app. `table` is [`Table::of`] these `nodes`, if the
/// caller keeps one.
pub fn place<'a>(
    nodes: &'a [NodeView],
    table: Option<&Table>,
    req: &Request,
) -> Result<&'a NodeInfo, Unplaced> {
    let built;
    let table = match table {
        Some(t) if t.rows.len() == nodes.len() => t,
        _ => {
            built = Table::of(nodes);
            &built
        }
    };
    let parsed = constraints(req.placement);
    // Why node `i` is filtered out, if it is.
    let why = |i: usize| {
        let v = &nodes[i];
        match (&parsed, req.only) {
            (_, Some(only)) if only != v.info.name => Some(format!(
                "the release's image is only on {only}'s engine (set registry.url to share images)"
            )),
            (Err(e), _) => Some(e.clone()),
            (Ok(cs), _) => rejection(v, cs, req.placement.memory_mb),
        }
    };
    // The same filters from the rows alone (and the labels when there are constraints), with
    // nothing allocated; `why` is asked only for the list of reasons when no node passed.
    let only = req.only.map(|o| table.position(o));
    let wanted = req.placement.memory_mb.saturating_mul(1024 * 1024);
    let passes = |i: usize| {
        let r = &table.rows[i];
        let cs = match &parsed {
            Ok(cs) => cs,
            Err(_) => return false,
        };
        r.open
            && only.is_none_or(|at| at == Some(i))
            && r.mem_available.is_none_or(|have| have >= wanted)
            && (cs.is_empty() || cs.iter().all(|c| c.holds(&nodes[i].info.labels)))
    };
    let load = |i: usize| table.rows[i].running_jobs + at(req.extra_load, i);
    if let Some(i) = req.prefer.and_then(|p| table.position(p)) {
        if passes(i) {
            let slots = match table.rows[i].build_slots {
                0 => DEFAULT_BUILD_SLOTS,
                n => n,
            };
            if load(i) < slots {
                return Ok(&nodes[i].info);
            }
        }
    }
    // The rank of a node that passed: the lowest wins, and of equal ones the first in `nodes`
    // (the registry lists them by name, so no name is compared).
    let rank = |i: usize| {
        let mem = table.rows[i].mem_available;
        match req.placement.strategy {
            Strategy::Spread => (
                u64::from(at(req.replicas_on, i)),
                u64::from(load(i)),
                // The most memory available first.
                u64::MAX - mem.unwrap_or(0),
            ),
            Strategy::Binpack => (mem.unwrap_or(u64::MAX), u64::from(load(i)), 0),
        }
    };
    let mut best: Option<(usize, (u64, u64, u64))> = None;
    for i in 0..nodes.len() {
        if !passes(i) {
            continue;
        }
        let r = rank(i);
        if best.is_none_or(|(_, b)| r < b) {
            best = Some((i, r));
        }
    }
    match best {
        Some((i, _)) => Ok(&nodes[i].info),
        None => Err(Unplaced {
            rejected: (0..nodes.len())
                .filter_map(|i| why(i).map(|w| (nodes[i].info.name.clone(), w)))
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::HostStats;

    fn node(name: &str, jobs: u32) -> NodeView {
        NodeView {
            info: NodeInfo {
                name: name.into(),
                running_jobs: jobs,
                ..crate::registry::tests::node_info()
            },
            status: NodeStatus::Ready,
            cordoned: false,
        }
    }

    fn with_mem(mut v: NodeView, mib: u64) -> NodeView {
        v.info.host = Some(HostStats {
            ts: 0,
            cpu_pct: 0.0,
            mem_total_bytes: 8 << 30,
            mem_available_bytes: mib << 20,
            disk_total_bytes: 0,
            disk_available_bytes: 0,
            containers: 0,
        });
        v
    }

    fn with_label(mut v: NodeView, k: &str, val: &str) -> NodeView {
        v.info.labels.insert(k.into(), val.into());
        v
    }

    fn req(p: &Placement) -> Request<'_> {
        Request {
            placement: p,
            replicas_on: &[],
            extra_load: &[],
            prefer: None,
            only: None,
        }
    }

    fn name(r: Result<&NodeInfo, Unplaced>) -> String {
        match r {
            Ok(n) => n.name.clone(),
            Err(u) => u.to_string(),
        }
    }

    #[test]
    fn none_without_nodes() {
        let p = Placement::default();
        assert_eq!(name(place(&[], None, &req(&p))), "no node has registered");
    }

    #[test]
    fn least_loaded_wins_ties_by_order() {
        let nodes = [node("b", 1), node("c", 0), node("a", 0)];
        let p = Placement::default();
        // The registry lists nodes by name; in any order, ties go to the first.
        assert_eq!(name(place(&nodes, None, &req(&p))), "c");
        // The counts are laid out by position: the second node is "c".
        let r = Request {
            extra_load: &[0, 5],
            ..req(&p)
        };
        assert_eq!(name(place(&nodes, None, &r)), "a");
    }

    #[test]
    fn filters_say_which_node_each_removed() {
        let mut down = node("a", 0);
        down.status = NodeStatus::Down;
        let mut late = node("b", 0);
        late.status = NodeStatus::Suspect;
        let mut cordoned = node("c", 0);
        cordoned.cordoned = true;
        let us = with_label(node("d", 0), "zone", "us");
        let small = with_mem(with_label(node("e", 0), "zone", "eu"), 100);
        let bare = node("f", 0);
        let nodes = [down, late, cordoned, us, small, bare];
        let p = Placement {
            constraints: vec!["zone=eu".into()],
            memory_mb: 512,
            ..Placement::default()
        };
        assert_eq!(
            name(place(&nodes, None, &req(&p))),
            "no node can run it: a: down (no heartbeat); b: suspect (a heartbeat is late); \
             c: cordoned; d: constraint zone=eu does not hold (zone=us); \
             e: 100 MiB of memory available, the app reserves 512 MiB; \
             f: constraint zone=eu does not hold (no label zone)"
        );
        let big = with_mem(with_label(node("g", 3), "zone", "eu"), 1024);
        let nodes = [nodes.to_vec(), vec![big]].concat();
        assert_eq!(name(place(&nodes, None, &req(&p))), "g");
        let not_us = Placement {
            constraints: vec!["zone!=us".into()],
            ..Placement::default()
        };
        assert_eq!(name(place(&nodes, None, &req(&not_us))), "e");
    }

    #[test]
    fn spread_evens_replicas_and_binpack_fills_the_fullest() {
        let nodes = [
            with_mem(node("a", 0), 4096),
            with_mem(node("b", 1), 1024),
            with_mem(node("c", 0), 2048),
        ];
        let spread = Placement::default();
        let r = Request {
            replicas_on: &[1, 0, 1],
            ..req(&spread)
        };
        assert_eq!(name(place(&nodes, None, &r)), "b");
        // Equal replicas: the least busy, then the most memory.
        assert_eq!(name(place(&nodes, None, &req(&spread))), "a");
        let binpack = Placement {
            strategy: Strategy::Binpack,
            memory_mb: 1500,
            ..Placement::default()
        };
        assert_eq!(name(place(&nodes, None, &req(&binpack))), "c");
    }

    /// Placement as it was written before the dense table (filter every node into a list, then
    /// the least of the list): what [`place`] must answer, kept here as the reference.
    fn reference<'a>(nodes: &'a [NodeView], req: &Request) -> Result<&'a NodeInfo, Unplaced> {
        let parsed = constraints(req.placement);
        let mut rejected = Vec::new();
        let mut passed = Vec::new();
        for (i, v) in nodes.iter().enumerate() {
            let why = match (&parsed, req.only) {
                (_, Some(only)) if only != v.info.name => Some(format!(
                    "the release's image is only on {only}'s engine (set registry.url to share images)"
                )),
                (Err(e), _) => Some(e.clone()),
                (Ok(cs), _) => rejection(v, cs, req.placement.memory_mb),
            };
            match why {
                Some(why) => rejected.push((v.info.name.clone(), why)),
                None => passed.push((i, &v.info)),
            }
        }
        let load = |i: usize, n: &NodeInfo| n.running_jobs + at(req.extra_load, i);
        if let Some(p) = req.prefer {
            if let Some(&(i, n)) = passed.iter().find(|(_, n)| n.name == p) {
                let slots = if n.build_slots == 0 {
                    DEFAULT_BUILD_SLOTS
                } else {
                    n.build_slots
                };
                if load(i, n) < slots {
                    return Ok(n);
                }
            }
        }
        let best = match req.placement.strategy {
            Strategy::Spread => passed.into_iter().min_by_key(|&(i, n)| {
                let mem = std::cmp::Reverse(mem_available(n).unwrap_or(0));
                (at(req.replicas_on, i), load(i, n), mem)
            }),
            Strategy::Binpack => passed.into_iter().min_by_key(|&(i, n)| {
                let mem = mem_available(n).unwrap_or(u64::MAX);
                (mem, load(i, n))
            }),
        };
        best.map(|(_, n)| n).ok_or(Unplaced { rejected })
    }

    /// Random fleets (status, cordon, labels, memory, load, build slots, few distinct values so
    /// ties are common) and random requests: [`place`], with a table built beforehand as the
    /// registry keeps one or with none, answers what the reference answers, reasons included.
    #[test]
    fn the_dense_table_places_as_the_reference_does() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        for round in 0..2_000 {
            let n = rng.random_range(0..12usize);
            let nodes: Vec<NodeView> = (0..n)
                .map(|i| {
                    let mut v = node(&format!("n{i:02}"), rng.random_range(0..3));
                    v.status = [
                        NodeStatus::Ready,
                        NodeStatus::Ready,
                        NodeStatus::Suspect,
                        NodeStatus::Down,
                    ][rng.random_range(0..4usize)];
                    v.cordoned = rng.random_range(0..5) == 0;
                    v.info.build_slots = rng.random_range(0..3);
                    if rng.random_range(0..4) > 0 {
                        v = with_mem(v, [256, 512, 1024, 2048][rng.random_range(0..4usize)]);
                    }
                    if rng.random_range(0..3) > 0 {
                        v = with_label(v, "zone", ["eu", "us"][rng.random_range(0..2usize)]);
                    }
                    v
                })
                .collect();
            let name_of = |k: u32| format!("n{k:02}");
            let p = Placement {
                strategy: [Strategy::Spread, Strategy::Binpack][rng.random_range(0..2usize)],
                constraints: match rng.random_range(0..5) {
                    0 => vec!["zone=eu".into()],
                    1 => vec!["zone!=us".into()],
                    2 => vec!["not a constraint".into()],
                    _ => vec![],
                },
                memory_mb: [0, 512, 1024, 1500][rng.random_range(0..4usize)],
            };
            let (prefer, only) = (
                (rng.random_range(0..2) == 0).then(|| name_of(rng.random_range(0..14))),
                (rng.random_range(0..4) == 0).then(|| name_of(rng.random_range(0..14))),
            );
            let replicas: Vec<u32> = (0..rng.random_range(0..=n))
                .map(|_| rng.random_range(0..2))
                .collect();
            let extra: Vec<u32> = (0..rng.random_range(0..=n))
                .map(|_| rng.random_range(0..2))
                .collect();
            let r = Request {
                placement: &p,
                replicas_on: &replicas,
                extra_load: &extra,
                prefer: prefer.as_deref(),
                only: only.as_deref(),
            };
            let want = name(reference(&nodes, &r));
            assert_eq!(name(place(&nodes, None, &r)), want, "round {round}");
            let table = Table::of(&nodes);
            assert_eq!(name(place(&nodes, Some(&table), &r)), want, "round {round}");
            // A table of another fleet is not used.
            let other = Table::of(&nodes[..n / 2]);
            assert_eq!(name(place(&nodes, Some(&other), &r)), want, "round {round}");
        }
    }

    #[test]
    fn a_build_prefers_the_node_that_built_last_while_it_has_a_slot() {
        let nodes = [node("a", 0), node("b", 1)];
        let p = Placement::default();
        let r = Request {
            prefer: Some("b"),
            ..req(&p)
        };
        assert_eq!(name(place(&nodes, None, &r)), "b");
        let busy = [node("a", 0), node("b", 2)];
        assert_eq!(name(place(&busy, None, &r)), "a");
        let mut cordoned = node("b", 0);
        cordoned.cordoned = true;
        assert_eq!(
            name(place(&[node("a", 1), cordoned.clone()], None, &r)),
            "a"
        );
        // Without a registry, only the node with the image can run a release.
        let only_b = Request {
            only: Some("b"),
            ..r
        };
        assert_eq!(name(place(&busy, None, &only_b)), "b");
        assert_eq!(
            name(place(&[node("a", 0), cordoned], None, &only_b)),
            "no node can run it: a: the release's image is only on b's engine \
             (set registry.url to share images); b: cordoned"
        );
    }
}
