//! `NodeRegistry`: which nodes exist, how alive they are, and which are cordoned.
//!
//! Nodes write their own heartbeat records (`berth:node:<name>`) every second
//! (`node/src/heartbeat.rs`). A node is `ready` while its last beat is recent, `suspect` once a
//! beat is late (`suspect_after`: nothing new is placed on it), and `down` when none came for
//! `down_after` (`node.down_after_s`). Cordons are the operator's, kept by the coordinator in
//! `berth:nodes:cordoned`.
//!
//! The fleet is read from Redis (the node set, one MGET of every heartbeat record, the cordons)
//! and nothing else: a restarted coordinator sees the fleet at once. Placement and every
//! in-flight deployment's deadline check ask for it ([`Nodes`]) on each tick — every 500 ms per
//! deployment — so they share a snapshot at most [`SNAPSHOT_MAX_AGE`] old: one read of the fleet
//! per 250 ms however many deployments are in flight (with 1,000 nodes and 2,000 deployments in
//! flight, reading it on every tick took the coordinator's whole core; BENCHMARKS.md). Liveness
//! in a snapshot is as of when it was read, so a node turns suspect or down up to 250 ms later
//! than its heartbeat age says, against 2.5 s and 5 s. A cordon clears the snapshot, so the next
//! placement sees it. The API ([`NodesNow`]) reads the fleet afresh and refreshes the snapshot.
//!
//! A Redis outage silences every node at once, and the coordinator cannot tell that from nodes
//! dying: so the time the coordinator could not reach Redis (its last outage, from the first
//! failed command to the probe that got an answer, plus [`REHEARD`] for the nodes to reconnect
//! and beat again) does not count in a heartbeat's age ([`status_of`]). Without that, every
//! node would be `down` the moment Redis returned from an outage longer than `down_after`, and
//! their deployments would fail or move and their replicas leave the routes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How long after an outage nodes are given to be heard again: a node's link probes Redis at
/// least every second and it beats every second.
pub const REHEARD: Duration = Duration::from_secs(2);

/// How old a snapshot of the fleet [`Nodes`] may answer with.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(250);

pub struct NodeRegistry {
    store: Store,
    liveness: Liveness,
    snapshot: Snapshot,
    decoded: Decoded,
    /// When jobs were placed on each node lately: a node's heartbeat counts a job only once
    /// the node has read it (a second or so later), so placement adds these meanwhile, and a
    /// burst of deployments spreads instead of landing on one node. A hint, not a record: a
    /// restarted coordinator starts without it.
    placed: Recent,
}

/// The placements of the last [`RECENT`]: in the order they were made, and counted per node.
/// Expiring them takes the oldest off the front (one clock read however many there are), so
/// asking costs the number of nodes placed on, not the number of placements. The counts are
/// also kept laid out by the positions of the fleet snapshot placed over last ([`Aligned`]), so
/// ranking a thousand nodes looks up no name: only a new snapshot (at most one per
/// [`SNAPSHOT_MAX_AGE`]) is indexed by name.
#[derive(Default)]
struct Recent {
    order: std::collections::VecDeque<(Instant, String)>,
    counts: HashMap<String, u32>,
    aligned: Option<Aligned>,
}

/// [`Recent`]'s counts by position in one snapshot of the fleet, with what placement reads of
/// its nodes laid out densely.
struct Aligned {
    nodes: Arc<Vec<NodeView>>,
    /// The placement table of `nodes` (each node's position by name among it).
    table: crate::scheduler::Table,
    counts: Vec<u32>,
}

impl Aligned {
    fn bump(&mut self, node: &str, up: bool) {
        if let Some(i) = self.table.position(node) {
            let c = &mut self.counts[i];
            *c = if up { *c + 1 } else { c.saturating_sub(1) };
        }
    }
}

impl Recent {
    fn add(&mut self, node: String, at: Instant) {
        *self.counts.entry(node.clone()).or_default() += 1;
        if let Some(a) = &mut self.aligned {
            a.bump(&node, true);
        }
        self.order.push_back((at, node));
    }

    /// Forgets the placements older than `RECENT` at `now`.
    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < RECENT {
                break;
            }
            let Some((_, node)) = self.order.pop_front() else {
                break;
            };
            if let Some(n) = self.counts.get_mut(&node) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&node);
                }
            }
            if let Some(a) = &mut self.aligned {
                a.bump(&node, false);
            }
        }
    }

    /// The counts of placements younger than `RECENT` at `now`.
    #[cfg(test)]
    fn counts(&mut self, now: Instant) -> &HashMap<String, u32> {
        self.expire(now);
        &self.counts
    }

    /// The counts of placements younger than `RECENT` at `now`, by position in `nodes`, and
    /// the placement table of `nodes`.
    fn over(&mut self, nodes: &Arc<Vec<NodeView>>, now: Instant) -> &Aligned {
        self.expire(now);
        let fresh = match &self.aligned {
            Some(a) => !Arc::ptr_eq(&a.nodes, nodes),
            None => true,
        };
        if fresh {
            let counts = nodes
                .iter()
                .map(|v| self.counts.get(&v.info.name).copied().unwrap_or(0))
                .collect();
            self.aligned = Some(Aligned {
                nodes: nodes.clone(),
                table: crate::scheduler::Table::of(nodes),
                counts,
            });
        }
        self.aligned.as_ref().expect("laid out above")
    }
}

/// How long a placement counts as load the node's heartbeat may not show yet.
const RECENT: Duration = Duration::from_secs(2);

impl NodeRegistry {
    pub fn new(store: Store, liveness: Liveness) -> Self {
        NodeRegistry {
            store,
            liveness,
            snapshot: Snapshot::default(),
            decoded: Decoded::default(),
            placed: Recent::default(),
        }
    }
}

/// The fleet as last read, with when its read began. One read at a time: callers that find it
/// too old while a read is under way wait for that read instead of starting their own.
#[derive(Clone, Default)]
struct Snapshot(Arc<tokio::sync::Mutex<Option<Taken>>>);

/// A snapshot: when its read began, and what it read.
type Taken = (Instant, Arc<Vec<NodeView>>);

impl Snapshot {
    /// The snapshot if it is younger than `max_age`, else what `read` answers (kept as the new
    /// snapshot; an error is not kept).
    async fn get<F, Fut>(&self, max_age: Duration, read: F) -> Result<Arc<Vec<NodeView>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<NodeView>>>,
    {
        let mut cell = self.0.lock().await;
        if let Some((at, views)) = cell.as_ref() {
            if at.elapsed() < max_age {
                return Ok(views.clone());
            }
        }
        let at = Instant::now();
        let views = Arc::new(read().await?);
        *cell = Some((at, views.clone()));
        Ok(views)
    }

    /// Forgets the snapshot: the next [`Snapshot::get`] reads.
    async fn clear(&self) {
        *self.0.lock().await = None;
    }
}

impl Actor for NodeRegistry {
    type Context = Context<Self>;
}

berth_bus::injectable!(NodeRegistry);

/// Liveness of one heartbeat record at time `now` (epoch ms), not counting the time the
/// coordinator could not see Redis (`blind`: the last outage, from–to, epoch ms; [`REHEARD`] is
/// added to its end here).
pub fn status_of(info: &NodeInfo, now: u64, l: Liveness, blind: Option<(u64, u64)>) -> NodeStatus {
    let from = info.last_heartbeat;
    let mut age = now.saturating_sub(from);
    if let Some((b0, b1)) = blind {
        let b1 = b1 + REHEARD.as_millis() as u64;
        // The part of [from, now] the coordinator was blind for.
        let overlap = b1.min(now).saturating_sub(b0.max(from));
        age = age.saturating_sub(overlap);
    }
    if age > l.down_after.as_millis() as u64 {
        NodeStatus::Down
    } else if age > l.suspect_after.as_millis() as u64 {
        NodeStatus::Suspect
    } else {
        NodeStatus::Ready
    }
}

/// Every registered node with its liveness and cordon, from a snapshot at most
/// [`SNAPSHOT_MAX_AGE`] old (placement and deadline checks).
#[derive(Message)]
#[rtype(result = "Result<Arc<Vec<NodeView>>>")]
pub struct Nodes;

/// Every registered node with its liveness and cordon, read now (the API).
#[derive(Message)]
#[rtype(result = "Result<Vec<NodeView>>")]
pub struct NodesNow;

/// Cordon (`on: true`) or uncordon a node; `NotFound` when no node has that name.
#[derive(Message)]
#[rtype(result = "Result<NodeView>")]
pub struct Cordon {
    pub node: String,
    pub on: bool,
}

/// The heartbeat records as the last read of the fleet decoded them, by node, with the bytes
/// they came from: a read decodes only the records whose bytes changed since, and takes a copy
/// of the rest. A node beats once a second and under load the fleet is read four times a second
/// ([`SNAPSHOT_MAX_AGE`]), so most records are the bytes of the read before; decoding them was
/// most of a read's cost (a thousand records per read with a thousand nodes).
#[derive(Clone, Default)]
struct Decoded(Arc<std::sync::Mutex<HashMap<String, Held>>>);

/// A heartbeat record's bytes and what they decode to.
type Held = (Vec<u8>, NodeInfo);

impl Decoded {
    /// The records of `names` (by name) from their bytes `raw`: from the last read's where the
    /// bytes are the same, else decoded. A node without a record, or whose record cannot be
    /// read, is left out (and the latter logged), as [`Store::nodes`] does. Keeps only these.
    fn infos(&self, names: Vec<String>, raw: Vec<Option<Vec<u8>>>) -> Vec<NodeInfo> {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept = HashMap::with_capacity(names.len());
        let mut infos = Vec::with_capacity(names.len());
        for (name, bytes) in names.into_iter().zip(raw) {
            let Some(bytes) = bytes else { continue };
            let info = match last.remove(&name) {
                Some((was, info)) if was == bytes => info,
                _ => match Store::decode_node(&name, &bytes) {
                    Ok(info) => info,
                    Err(e) => {
                        tracing::error!(error = %e, "left out of a list");
                        continue;
                    }
                },
            };
            infos.push(info.clone());
            kept.insert(name, (bytes, info));
        }
        *last = kept;
        infos
    }
}

/// Every registered node with its liveness now, by name (placement gives ties to the first).
async fn views(store: Store, l: Liveness, decoded: Decoded) -> Result<Vec<NodeView>> {
    let now = now_ms();
    let blind = store.conn().last_outage();
    let cordoned = store.cordoned().await?;
    let (names, raw) = store.node_records().await?;
    Ok(decoded
        .infos(names, raw)
        .into_iter()
        .map(|info| NodeView {
            status: status_of(&info, now, l, blind),
            cordoned: cordoned.contains(&info.name),
            info,
        })
        .collect())
}

/// The node named `name` in a fleet as [`Nodes`] answers it (listed by name): a binary search,
/// not a name compare per node.
pub fn find<'a>(nodes: &'a [NodeView], name: &str) -> Option<&'a NodeView> {
    let i = nodes.binary_search_by(|n| n.info.name.as_str().cmp(name));
    i.ok().map(|i| &nodes[i])
}

impl Handler<Nodes> for NodeRegistry {
    type Result = ResponseFuture<Result<Arc<Vec<NodeView>>>>;

    fn handle(&mut self, _: Nodes, _: &mut Context<Self>) -> Self::Result {
        let (store, l, snapshot) = (self.store.clone(), self.liveness, self.snapshot.clone());
        let decoded = self.decoded.clone();
        Box::pin(async move {
            snapshot
                .get(SNAPSHOT_MAX_AGE, || views(store, l, decoded))
                .await
        })
    }
}

/// Place a job: [`crate::scheduler::place`] over `nodes`, with the placements of the last 2 s added to
/// each node's load, and the one it makes counted at once — so ticks placing at the same time
/// each see the others' choices (asking for the counts, then telling the choice, lets every
/// tick of a burst pick the same node).
#[derive(Message)]
#[rtype(result = "std::result::Result<String, crate::scheduler::Unplaced>")]
pub struct Place {
    pub nodes: Arc<Vec<NodeView>>,
    pub placement: berth_protocol::Placement,
    /// The app's replicas per node now.
    pub replicas: HashMap<String, u32>,
    pub prefer: Option<String>,
    pub only: Option<String>,
}

impl Handler<Place> for NodeRegistry {
    type Result = MessageResult<Place>;

    fn handle(&mut self, m: Place, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let recent = self.placed.over(&m.nodes, now);
        // The app's replicas by position too (an app runs on few nodes: a lookup each).
        let mut replicas = Vec::new();
        if !m.replicas.is_empty() {
            replicas = vec![0; m.nodes.len()];
            for (node, c) in &m.replicas {
                if let Some(i) = recent.table.position(node) {
                    replicas[i] = *c;
                }
            }
        }
        let req = crate::scheduler::Request {
            placement: &m.placement,
            replicas_on: &replicas,
            extra_load: &recent.counts,
            prefer: m.prefer.as_deref(),
            only: m.only.as_deref(),
        };
        let placed =
            crate::scheduler::place(&m.nodes, Some(&recent.table), &req).map(|n| n.name.clone());
        if let Ok(node) = &placed {
            self.placed.add(node.clone(), now);
        }
        MessageResult(placed)
    }
}

impl Handler<NodesNow> for NodeRegistry {
    type Result = ResponseFuture<Result<Vec<NodeView>>>;

    fn handle(&mut self, _: NodesNow, _: &mut Context<Self>) -> Self::Result {
        let (store, l, snapshot) = (self.store.clone(), self.liveness, self.snapshot.clone());
        let decoded = self.decoded.clone();
        Box::pin(async move {
            let views = snapshot
                .get(Duration::ZERO, || views(store, l, decoded))
                .await?;
            Ok(views.as_ref().clone())
        })
    }
}

impl Handler<Cordon> for NodeRegistry {
    type Result = ResponseFuture<Result<NodeView>>;

    fn handle(&mut self, msg: Cordon, _: &mut Context<Self>) -> Self::Result {
        let (store, l, snapshot) = (self.store.clone(), self.liveness, self.snapshot.clone());
        let decoded = self.decoded.clone();
        Box::pin(async move {
            let missing = || Error::NotFound(format!("no node named {}", msg.node));
            let set = store.set_cordoned(&msg.node, msg.on).await;
            // After the write, whatever it did: a snapshot read before it is gone.
            snapshot.clear().await;
            if !set? {
                return Err(missing());
            }
            views(store, l, decoded)
                .await?
                .into_iter()
                .find(|v| v.info.name == msg.node)
                .ok_or_else(missing)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn recent_placements_count_per_node_and_expire_in_order() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut r = Recent::default();
        r.add("a".into(), at(0));
        r.add("b".into(), at(500));
        r.add("a".into(), at(1000));
        let counts = |pairs: &[(&str, u32)]| -> HashMap<String, u32> {
            pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
        };
        assert_eq!(r.counts(at(1500)), &counts(&[("a", 2), ("b", 1)]));
        // The first placement on `a` is 2 s old: gone; the second stays.
        assert_eq!(r.counts(at(2000)), &counts(&[("a", 1), ("b", 1)]));
        assert_eq!(r.counts(at(2600)), &counts(&[("a", 1)]));
        assert!(r.counts(at(3000)).is_empty());
        assert!(r.order.is_empty());
    }

    #[test]
    fn recent_counts_by_position_follow_adds_expiry_and_a_new_snapshot() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let fleet = |names: &[&str]| Arc::new(names.iter().map(|n| view(n)).collect::<Vec<_>>());
        let (one, two) = (fleet(&["a", "b", "c"]), fleet(&["c", "d", "a"]));
        let mut r = Recent::default();
        r.add("a".into(), at(0));
        assert_eq!(r.over(&one, at(0)).counts, [1, 0, 0]);
        r.add("c".into(), at(500));
        r.add("a".into(), at(1000));
        r.add("x".into(), at(1000)); // a node the snapshot does not have
        assert_eq!(r.over(&one, at(1500)).counts, [2, 0, 1]);
        assert_eq!(r.over(&one, at(2100)).counts, [1, 0, 1]);
        // Another snapshot, in another order: laid out anew from the counts.
        assert_eq!(r.over(&two, at(2100)).counts, [1, 0, 1]);
        assert_eq!(r.over(&two, at(2600)).counts, [0, 0, 1]);
        // Back to the first (an actor that read the fleet before the refresh).
        assert_eq!(r.over(&one, at(2600)).counts, [1, 0, 0]);
        assert_eq!(r.over(&one, at(3100)).counts, [0, 0, 0]);
        assert!(r.counts(at(3100)).is_empty());
    }

    /// Placement's ties and `find` rely on the fleet being listed by name, whatever order
    /// Redis keeps the set in.
    #[actix_rt::test]
    async fn the_fleet_is_listed_by_name_and_found_by_name() {
        let (_redis, conn) = crate::store::tests::real_redis("registry-sorted").await;
        let store = Store::new(conn);
        let mut conn = store.conn();
        // Names whose byte order differs from their numeric order and from the set's order.
        let names: Vec<String> = (0..300)
            .rev()
            .map(|i| format!("n{}", i * 7 % 300))
            .collect();
        for name in &names {
            let info = NodeInfo {
                name: name.clone(),
                last_heartbeat: now_ms(),
                ..node_info()
            };
            let bytes =
                berth_protocol::envelope::encode(berth_protocol::envelope::kind::NODE, "t", &info)
                    .unwrap();
            redis::pipe()
                .set(berth_protocol::keys::node(name), bytes)
                .sadd(berth_protocol::keys::NODES, name)
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
        let liveness = Liveness {
            suspect_after: Duration::from_secs(60),
            down_after: Duration::from_secs(120),
        };
        let fleet = views(store, liveness, Decoded::default()).await.unwrap();
        assert_eq!(fleet.len(), names.len());
        assert!(fleet.is_sorted_by(|a, b| a.info.name < b.info.name));
        for name in &names {
            assert_eq!(
                find(&fleet, name).map(|v| v.info.name.as_str()),
                Some(name.as_str())
            );
        }
        assert!(find(&fleet, "n300").is_none() && find(&fleet, "").is_none());
    }

    fn view(name: &str) -> NodeView {
        let mut info = node_info();
        info.name = name.into();
        NodeView {
            info,
            status: NodeStatus::Ready,
            cordoned: false,
        }
    }

    /// A read of the fleet decodes a heartbeat record only when its bytes changed since the
    /// last read, and answers what decoding the bytes answers either way: a new beat is seen,
    /// a node gone from the set is forgotten, an unreadable record is left out.
    #[test]
    fn a_fleet_read_decodes_only_the_records_that_changed() {
        use berth_protocol::envelope::{encode, kind::NODE};
        let beat = |name: &str, at: u64| {
            let mut info = node_info();
            info.name = name.into();
            info.last_heartbeat = at;
            (info.clone(), encode(NODE, name, &info).unwrap())
        };
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let decoded = Decoded::default();
        let (a1, a1b) = beat("a", 1);
        let (b1, b1b) = beat("b", 1);
        let got = decoded.infos(
            names(&["a", "b"]),
            vec![Some(a1b.clone()), Some(b1b.clone())],
        );
        assert_eq!(got, [a1.clone(), b1]);
        // The held copy of a record is what its bytes decode to: poison it, and an unchanged
        // record answers the poisoned copy (it was not decoded again), a changed one does not.
        for (_, info) in decoded.0.lock().unwrap().values_mut() {
            info.version = "held".into();
        }
        let (b2, b2b) = beat("b", 2);
        let got = decoded.infos(
            names(&["a", "b"]),
            vec![Some(a1b.clone()), Some(b2b.clone())],
        );
        assert_eq!(
            got[0].version, "held",
            "a's bytes did not change: not decoded again"
        );
        assert_eq!(got[1], b2, "b beat again: decoded");
        // A node that left the set is forgotten; a record that cannot be read is left out.
        let got = decoded.infos(
            names(&["b", "c"]),
            vec![Some(b2b.clone()), Some(b"junk".to_vec())],
        );
        assert_eq!(got, std::slice::from_ref(&b2));
        let held: Vec<String> = decoded.0.lock().unwrap().keys().cloned().collect();
        assert_eq!(held, ["b"]);
        // a again, with the same bytes as before: decoded afresh (it was forgotten).
        let got = decoded.infos(names(&["a"]), vec![Some(a1b)]);
        assert_eq!(got, [a1]);
    }

    /// A heartbeat record of node `n` (test fixture, also used by the scheduler's tests).
    pub(crate) fn node_info() -> NodeInfo {
        NodeInfo {
            name: "n".into(),
            address: "127.0.0.1".into(),
            ingress_http: 80,
            ingress_https: None,
            version: "t".into(),
            labels: Default::default(),
            cpus: 2,
            build_slots: 2,
            engine: None,
            started_at: 0,
            last_heartbeat: 10_000,
            running_jobs: 0,
            host: None,
        }
    }

    /// Reads through `s`, counting the reads, answering a fleet of one node named `name`.
    async fn read(s: &Snapshot, max_age: Duration, reads: &AtomicUsize, name: &str) -> String {
        let v = s
            .get(max_age, || async {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok(vec![view(name)])
            })
            .await
            .unwrap();
        v[0].info.name.clone()
    }

    #[tokio::test]
    async fn a_snapshot_serves_until_it_is_too_old_or_cleared() {
        let s = Snapshot::default();
        let reads = AtomicUsize::new(0);
        let long = Duration::from_secs(60);
        assert_eq!(read(&s, long, &reads, "a").await, "a");
        assert_eq!(read(&s, long, &reads, "b").await, "a");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Age zero: always read (what the API asks for), and the new read is kept.
        assert_eq!(read(&s, Duration::ZERO, &reads, "c").await, "c");
        assert_eq!(read(&s, long, &reads, "d").await, "c");
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        s.clear().await;
        assert_eq!(read(&s, long, &reads, "e").await, "e");
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(read(&s, Duration::from_millis(10), &reads, "f").await, "f");
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept_and_concurrent_callers_share_one_read() {
        let s = Snapshot::default();
        let failed = s
            .get(Duration::from_secs(60), || async {
                Err(Error::Unreadable("x".into()))
            })
            .await;
        assert!(failed.is_err());
        let reads = AtomicUsize::new(0);
        let long = Duration::from_secs(60);
        let (a, b) = tokio::join!(read(&s, long, &reads, "a"), read(&s, long, &reads, "b"));
        assert_eq!((a.as_str(), b.as_str()), ("a", "a"));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn liveness_by_heartbeat_age() {
        let mut n = node_info();
        let l = Liveness {
            suspect_after: Duration::from_secs(2),
            down_after: Duration::from_secs(5),
        };
        assert_eq!(status_of(&n, 12_000, l, None), NodeStatus::Ready);
        assert_eq!(status_of(&n, 12_001, l, None), NodeStatus::Suspect);
        assert_eq!(status_of(&n, 15_000, l, None), NodeStatus::Suspect);
        assert_eq!(status_of(&n, 15_001, l, None), NodeStatus::Down);
        n.last_heartbeat = 20_000; // a clock slightly ahead is not "down"
        assert_eq!(status_of(&n, 15_001, l, None), NodeStatus::Ready);
    }

    #[test]
    fn the_time_redis_was_away_does_not_count_against_a_heartbeat() {
        let n = node_info(); // last beat at 10 s
        let l = Liveness {
            suspect_after: Duration::from_millis(2_500),
            down_after: Duration::from_secs(5),
        };
        let rh = REHEARD.as_millis() as u64;
        // Redis away from 11 s to 41 s: just after it is back, the node is as alive as it was.
        let outage = Some((11_000, 41_000));
        assert_eq!(status_of(&n, 41_000, l, outage), NodeStatus::Ready);
        // It is given REHEARD to beat again, then its age runs on from where it stopped.
        assert_eq!(
            status_of(&n, 41_000 + rh + 1_400, l, outage),
            NodeStatus::Ready
        );
        assert_eq!(
            status_of(&n, 41_000 + rh + 1_600, l, outage),
            NodeStatus::Suspect
        );
        assert_eq!(
            status_of(&n, 41_000 + rh + 4_100, l, outage),
            NodeStatus::Down
        );
        // A node that had stopped long before the outage stays down through it.
        let mut dead = node_info();
        dead.last_heartbeat = 1_000;
        assert_eq!(status_of(&dead, 41_000, l, outage), NodeStatus::Down);
        // A beat after the outage is judged as ever.
        let mut fresh = node_info();
        fresh.last_heartbeat = 44_000;
        assert_eq!(status_of(&fresh, 44_500, l, outage), NodeStatus::Ready);
        assert_eq!(status_of(&fresh, 50_000, l, outage), NodeStatus::Down);
    }
}
