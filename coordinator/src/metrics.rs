//! Metrics: an app's resource series (from the samples nodes write to `berth:metrics:<app>`),
//! the cluster's figures for `/metrics` (plain numbers; web/ encodes them for Prometheus), and
//! the counters the `Ledger` keeps in Redis.
//!
//! Nothing here is kept in memory: the deployment-outcome counters and the build-duration
//! histogram are Redis hashes written by the Ledger in the same script as the record that caused
//! them ([`ledger_commands`]), so they survive a coordinator restart; everything else is read
//! from Redis at each scrape.

use std::collections::{BTreeMap, HashMap};

use berth_protocol::api::NodeView;
use berth_protocol::envelope::{decode, STREAM_FIELD};
use berth_protocol::metrics::{
    AppMetrics, ContainerSample, ReplicaSeries, SamplePoint, TotalPoint, SAMPLE_KIND,
};
use berth_protocol::{keys, Deployment, DeploymentStatus, NodeStatus, Route, Upstream};
use redis::AsyncCommands;

use crate::error::Result;
use crate::store::Store;

/// Upper bounds (seconds) of the build-duration histogram; `+Inf` comes on top.
pub const BUILD_BUCKETS: [u64; 9] = [1, 2, 5, 10, 30, 60, 120, 300, 600];

/// Bucket width of `total` when the data does not show the sampling interval (one sample per
/// replica): the nodes' default interval.
const DEFAULT_BUCKET_MS: u64 = 5_000;

// ---- the Ledger's counters ----

/// The Redis commands that account for one change of a deployment record: a terminal outcome
/// counts in `berth:stats:deployments`; leaving `building` records the build's duration (from
/// `started_at`, when it entered `building`, to `at`) in `berth:stats:build_seconds`.
pub fn ledger_commands(before: DeploymentStatus, after: &Deployment, at: u64) -> Vec<redis::Cmd> {
    let mut cmds = Vec::new();
    if before == after.status {
        return cmds;
    }
    if after.status.is_terminal() {
        let mut c = redis::cmd("HINCRBY");
        c.arg(keys::STATS_DEPLOYMENTS)
            .arg(after.status.as_str())
            .arg(1);
        cmds.push(c);
    }
    if before == DeploymentStatus::Building {
        if let Some(started) = after.started_at {
            let ms = at.saturating_sub(started);
            // One bucket, the smallest the build fits in (none past the last bound: that is
            // `count` less the buckets); the read side adds them up (`build_histogram`).
            if let Some(field) = build_bucket_field(ms as f64 / 1000.0) {
                let mut c = redis::cmd("HINCRBY");
                c.arg(keys::STATS_BUILD_SECONDS).arg(field).arg(1);
                cmds.push(c);
            }
            let mut c = redis::cmd("HINCRBY");
            c.arg(keys::STATS_BUILD_SECONDS).arg("sum_ms").arg(ms);
            cmds.push(c);
            let mut c = redis::cmd("HINCRBY");
            c.arg(keys::STATS_BUILD_SECONDS).arg("count").arg(1);
            cmds.push(c);
        }
    }
    cmds
}

/// The one bucket field a build of `secs` is counted in: `in_<bound>` for the smallest bound of
/// [`BUILD_BUCKETS`] it fits under, `None` past the last. (Each build is written once, not once
/// per cumulative bucket: fewer writes on the Ledger's hot path. Data written before this kept
/// cumulative `le_<bound>` fields, which `build_histogram` still adds in.)
pub fn build_bucket_field(secs: f64) -> Option<String> {
    BUILD_BUCKETS
        .iter()
        .find(|b| secs <= **b as f64)
        .map(|b| format!("in_{b}"))
}

// ---- an app's series ----

/// Reads an app's samples of the last `window_s` seconds (up to `now`) and assembles them.
/// Only the samples of replicas that run now — those `route` names, serving or on standby —
/// are kept: a replaced release's containers drop out of the list as soon as they leave the
/// route. `route: None` (the app has none) keeps nothing.
pub async fn app_metrics(
    store: &Store,
    app: &str,
    route: Option<&Route>,
    window_s: u64,
    now: u64,
) -> Result<AppMetrics> {
    let start = now.saturating_sub(window_s * 1000);
    let reply: redis::streams::StreamRangeReply = store
        .conn()
        .xrange(keys::app_metrics(app), start.to_string(), "+")
        .await?;
    let mut samples = Vec::with_capacity(reply.ids.len());
    for entry in reply.ids {
        let Some(bytes) = entry.get::<Vec<u8>>(STREAM_FIELD) else {
            continue;
        };
        match decode::<ContainerSample>(&bytes, SAMPLE_KIND) {
            Ok(s) if s.point.ts >= start && runs_now(&s, route, now) => samples.push(s),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%app, entry = %entry.id, error = %e, "skipping undecodable sample")
            }
        }
    }
    Ok(assemble(app, window_s, samples))
}

/// Whether `route` names the container a sample is of: the same node and container id (by
/// prefix: either side may be short), or, for a sample of an older node without the id, the same
/// node and deployment.
pub fn runs_now(s: &ContainerSample, route: Option<&Route>, now: u64) -> bool {
    let Some(route) = route else { return false };
    let same = |u: &Upstream| {
        u.node == s.node
            && match &s.container_id {
                Some(id) => {
                    !id.is_empty()
                        && !u.container.is_empty()
                        && (id.starts_with(&u.container) || u.container.starts_with(id.as_str()))
                }
                None => u.deployment == s.deployment,
            }
    };
    route
        .upstreams
        .iter()
        .chain(route.standby_at(now))
        .any(same)
}

/// Groups samples by replica (node and container), oldest first, and sums them into `total`.
pub fn assemble(app: &str, window_s: u64, samples: Vec<ContainerSample>) -> AppMetrics {
    let mut by_replica: BTreeMap<(String, String), ReplicaSeries> = BTreeMap::new();
    for s in samples {
        let series = by_replica
            .entry((s.node.clone(), s.container.clone()))
            .or_insert_with(|| ReplicaSeries {
                node: s.node.clone(),
                container: s.container.clone(),
                deployment: s.deployment.clone(),
                samples: Vec::new(),
            });
        series.samples.push(s.point);
    }
    let mut replicas: Vec<ReplicaSeries> = by_replica.into_values().collect();
    for r in &mut replicas {
        r.samples.sort_by_key(|p| p.ts);
    }
    let width = bucket_width_ms(&replicas);
    AppMetrics {
        app: app.to_string(),
        window_s,
        bucket_s: width.div_ceil(1000),
        total: totals(&replicas, width),
        replicas,
    }
}

/// The sampling interval the data shows: the largest of the replicas' median gaps between
/// samples, in whole seconds (at least one).
pub fn bucket_width_ms(replicas: &[ReplicaSeries]) -> u64 {
    replicas
        .iter()
        .filter_map(|r| {
            let mut gaps: Vec<u64> = r
                .samples
                .windows(2)
                .map(|w| w[1].ts.saturating_sub(w[0].ts))
                .collect();
            if gaps.is_empty() {
                return None;
            }
            gaps.sort_unstable();
            Some(gaps[gaps.len() / 2])
        })
        .max()
        .map(|g| (g.saturating_add(500) / 1000).max(1) * 1000)
        .unwrap_or(DEFAULT_BUCKET_MS)
}

/// Sums the replicas per bucket of `width` ms: each sample goes to the bucket whose start (on a
/// grid from the oldest sample) is nearest, and per bucket the latest sample of each replica
/// counts once.
pub fn totals(replicas: &[ReplicaSeries], width: u64) -> Vec<TotalPoint> {
    let width = width.max(1);
    let Some(origin) = replicas
        .iter()
        .filter_map(|r| r.samples.first().map(|s| s.ts))
        .min()
    else {
        return Vec::new();
    };
    // bucket index → replica index → latest sample in the bucket
    let mut buckets: BTreeMap<u64, HashMap<usize, &SamplePoint>> = BTreeMap::new();
    for (i, r) in replicas.iter().enumerate() {
        for s in &r.samples {
            let k = (s.ts - origin + width / 2) / width;
            let slot = buckets.entry(k).or_default().entry(i).or_insert(s);
            if s.ts >= slot.ts {
                *slot = s;
            }
        }
    }
    buckets
        .into_iter()
        .map(|(k, per_replica)| {
            let mut t = TotalPoint {
                ts: origin + k * width,
                cpu_pct: 0.0,
                mem_bytes: 0,
                net_rx_bytes: 0,
                net_tx_bytes: 0,
                replicas: per_replica.len() as u32,
            };
            for s in per_replica.values() {
                t.cpu_pct += s.cpu_pct;
                t.mem_bytes = t.mem_bytes.saturating_add(s.mem_bytes);
                t.net_rx_bytes = t.net_rx_bytes.saturating_add(s.net_rx_bytes);
                t.net_tx_bytes = t.net_tx_bytes.saturating_add(s.net_tx_bytes);
            }
            t
        })
        .collect()
}

// ---- the cluster's figures ----

/// The cluster-wide figures of `GET /metrics`, read from Redis at each scrape. Plain numbers:
/// web/ turns them into Prometheus families (and adds the request-duration histogram it
/// measures itself).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterFigures {
    /// Apps defined (`berth:apps`).
    pub apps: u64,
    /// Deployments not finished yet: every non-terminal status, by name, with its count.
    pub active: Vec<(DeploymentStatus, u64)>,
    /// Deployments that ended: every terminal status, in [`DeploymentStatus::ALL`] order, with
    /// its count (`berth:stats:deployments`).
    pub outcomes: Vec<(DeploymentStatus, u64)>,
    /// Every registered node, in the registry's order.
    pub nodes: Vec<NodeFigures>,
    /// Time deployments spent building (`berth:stats:build_seconds`).
    pub build_seconds: BuildHistogram,
    /// Entries dead-lettered, by stream name: every stream a consumer reads (at 0 until one of
    /// its entries is dead-lettered) and any other counted in `berth:stats:dead_letters`.
    pub dead_letters: Vec<(String, u64)>,
    /// Actor restarts by a supervisor (`berth:stats:restarts`): process (`coordinator`,
    /// `node:<name>`), actor, count — only those restarted at least once.
    pub restarts: Vec<(String, String, u64)>,
    /// The coordinator holding the leader lease and its epoch (`berth:leader`), if one does.
    pub leader: Option<(String, u64)>,
    /// The Redis written to and its replicas (`INFO replication`).
    pub redis: berth_protocol::api::RedisView,
    /// Covered writes Redis's replicas did not confirm in time, by process
    /// (`berth:stats:unreplicated`; `redis.min_replicas_acked`).
    pub unreplicated: Vec<(String, u64)>,
}

/// One registered node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFigures {
    pub name: String,
    /// Its heartbeat is fresh.
    pub up: bool,
    /// Jobs on its stream not yet acknowledged (undelivered + pending).
    pub queue_depth: u64,
}

/// A cumulative histogram: `(upper bound in seconds, observations ≤ it)` for each bound of
/// [`BUILD_BUCKETS`] (no `+Inf` bucket: that one is `count`), the sum and the count.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildHistogram {
    pub buckets: Vec<(u64, u64)>,
    pub sum: f64,
    pub count: u64,
}

/// The build-duration histogram from its Redis hash: `in_<bound>` (builds counted in that
/// bound's bucket only), `sum_ms` and `count`, plus what older versions wrote there
/// (cumulative `le_<bound>`, a `sum` in seconds). A field missing or unreadable counts 0.
pub fn build_histogram(hash: &HashMap<String, String>) -> BuildHistogram {
    let int = |k: &str| hash.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut below = 0;
    BuildHistogram {
        buckets: BUILD_BUCKETS
            .iter()
            .map(|b| {
                below += int(&format!("in_{b}"));
                (*b, below + int(&format!("le_{b}")))
            })
            .collect(),
        sum: hash
            .get("sum")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            + int("sum_ms") as f64 / 1000.0,
        count: int("count"),
    }
}

/// Jobs of a node's stream not yet acknowledged: entries its group has not been given (`lag`)
/// plus those given but not acknowledged (`pending`).
async fn queue_depth(store: &Store, node: &str) -> Result<u64> {
    let mut c = store.conn();
    let key = keys::jobs(node);
    let exists: bool = c.exists(&key).await?;
    if !exists {
        return Ok(0);
    }
    let reply: redis::streams::StreamInfoGroupsReply = c.xinfo_groups(&key).await?;
    let Some(g) = reply
        .groups
        .into_iter()
        .find(|g| g.name == keys::JOBS_GROUP)
    else {
        // No consumer ever attached: every entry waits.
        let len: u64 = c.xlen(&key).await?;
        return Ok(len);
    };
    let lag = match g.lag {
        Some(l) => l as u64,
        // Redis could not tell (entries deleted): count what follows the last delivered id.
        None => {
            let after: redis::streams::StreamRangeReply = c
                .xrange(&key, format!("({}", g.last_delivered_id), "+")
                .await?;
            after.ids.len() as u64
        }
    };
    Ok(lag + g.pending as u64)
}

/// Every cluster-wide figure, read from Redis now (the HTTP request histogram is web's).
pub async fn cluster_figures(store: &Store, nodes: &[NodeView]) -> Result<ClusterFigures> {
    let mut c = store.conn();

    let apps: u64 = c.scard(keys::APPS).await?;

    let mut active: BTreeMap<&str, (DeploymentStatus, u64)> = DeploymentStatus::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| (s.as_str(), (*s, 0)))
        .collect();
    for d in store
        .deployments(&store.active_deployments().await?)
        .await?
    {
        if let Some((_, n)) = active.get_mut(d.status.as_str()) {
            *n += 1;
        }
    }

    let counted: HashMap<String, u64> = c.hgetall(keys::STATS_DEPLOYMENTS).await?;
    let outcomes = DeploymentStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| (*s, counted.get(s.as_str()).copied().unwrap_or(0)))
        .collect();

    let mut node_figures = Vec::with_capacity(nodes.len());
    for n in nodes {
        node_figures.push(NodeFigures {
            name: n.info.name.clone(),
            up: n.status != NodeStatus::Down,
            queue_depth: queue_depth(store, &n.info.name).await?,
        });
    }

    let build: HashMap<String, String> = c.hgetall(keys::STATS_BUILD_SECONDS).await?;

    // Every stream a consumer reads is listed, at 0 until an entry of it is dead-lettered.
    let mut dead: BTreeMap<String, u64> = [keys::EVENTS.to_string()]
        .into_iter()
        .chain(nodes.iter().map(|n| keys::jobs(&n.info.name)))
        .map(|s| (s, 0))
        .collect();
    let counted: HashMap<String, u64> = c.hgetall(keys::STATS_DEAD_LETTERS).await?;
    dead.extend(counted);

    let counted: BTreeMap<String, u64> = c.hgetall(keys::STATS_RESTARTS).await?;
    let restarts = counted
        .into_iter()
        .filter_map(|(field, n)| {
            let (process, actor) = field.rsplit_once('/')?;
            Some((process.to_string(), actor.to_string(), n))
        })
        .collect();

    let lease: Option<String> = c.get(keys::LEADER).await?;
    let leader = lease.and_then(|v| {
        let (holder, epoch) = v.split_once(' ')?;
        Some((holder.to_string(), epoch.parse().ok()?))
    });

    // This coordinator's count is shown from 0 on; the other processes' once they counted one.
    let mut unreplicated: BTreeMap<String, u64> = c.hgetall(keys::STATS_UNREPLICATED).await?;
    unreplicated.entry("coordinator".into()).or_insert(0);

    Ok(ClusterFigures {
        apps,
        active: active.into_values().collect(),
        outcomes,
        nodes: node_figures,
        build_seconds: build_histogram(&build),
        dead_letters: dead.into_iter().collect(),
        restarts,
        leader,
        redis: berth_bus::replication::replication(&store.conn()).await?,
        unreplicated: unreplicated.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(node: &str, container: &str, ts: u64, cpu: f64, mem: u64) -> ContainerSample {
        ContainerSample {
            node: node.into(),
            container: container.into(),
            deployment: "d1".into(),
            container_id: None,
            point: SamplePoint {
                ts,
                cpu_pct: cpu,
                mem_bytes: mem,
                mem_limit_bytes: 1000,
                net_rx_bytes: 1,
                net_tx_bytes: 2,
            },
        }
    }

    #[test]
    fn groups_by_replica_and_sums_per_bucket() {
        // Two replicas sampled every 5 s with some jitter; b starts one interval later.
        let m = assemble(
            "a",
            900,
            vec![
                sample("n1", "b", 15_020, 2.0, 20),
                sample("n1", "a", 10_000, 1.0, 10),
                sample("n1", "a", 15_010, 3.0, 30),
                sample("n1", "a", 20_003, 5.0, 50),
                sample("n1", "b", 20_001, 4.0, 40),
            ],
        );
        assert_eq!(m.bucket_s, 5);
        assert_eq!(m.replicas.len(), 2);
        assert_eq!(m.replicas[0].container, "a");
        let ts: Vec<u64> = m.replicas[0].samples.iter().map(|s| s.ts).collect();
        assert_eq!(ts, vec![10_000, 15_010, 20_003], "oldest first");
        let t: Vec<(u64, u64, u32)> = m
            .total
            .iter()
            .map(|t| (t.ts, t.mem_bytes, t.replicas))
            .collect();
        assert_eq!(t, vec![(10_000, 10, 1), (15_000, 50, 2), (20_000, 90, 2)]);
        assert_eq!(m.total[2].cpu_pct, 9.0);
        assert_eq!(m.total[2].net_tx_bytes, 4);
    }

    #[test]
    fn latest_sample_of_a_replica_in_a_bucket_counts_once() {
        let r = ReplicaSeries {
            node: "n".into(),
            container: "c".into(),
            deployment: "d".into(),
            samples: vec![
                SamplePoint {
                    ts: 0,
                    cpu_pct: 1.0,
                    mem_bytes: 1,
                    mem_limit_bytes: 0,
                    net_rx_bytes: 0,
                    net_tx_bytes: 0,
                },
                SamplePoint {
                    ts: 1_000,
                    cpu_pct: 7.0,
                    mem_bytes: 7,
                    mem_limit_bytes: 0,
                    net_rx_bytes: 0,
                    net_tx_bytes: 0,
                },
            ],
        };
        let t = totals(&[r], 5_000);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].mem_bytes, t[0].replicas, t[0].cpu_pct), (7, 1, 7.0));
        assert!(totals(&[], 5_000).is_empty());
    }

    #[test]
    fn bucket_width_from_the_data() {
        let series = |ts: &[u64]| ReplicaSeries {
            node: "n".into(),
            container: "c".into(),
            deployment: "d".into(),
            samples: ts
                .iter()
                .map(|t| SamplePoint {
                    ts: *t,
                    cpu_pct: 0.0,
                    mem_bytes: 0,
                    mem_limit_bytes: 0,
                    net_rx_bytes: 0,
                    net_tx_bytes: 0,
                })
                .collect(),
        };
        assert_eq!(bucket_width_ms(&[series(&[0, 2_100, 4_050, 9_000])]), 2_000);
        assert_eq!(
            bucket_width_ms(&[series(&[0, 100, 200])]),
            1_000,
            "at least 1 s"
        );
        assert_eq!(bucket_width_ms(&[series(&[7])]), DEFAULT_BUCKET_MS);
        assert_eq!(
            bucket_width_ms(&[series(&[0, 1_000, 2_000]), series(&[0, 5_000, 10_000])]),
            5_000
        );
    }

    #[test]
    fn a_build_counts_in_one_bucket() {
        assert_eq!(build_bucket_field(7.5).as_deref(), Some("in_10"));
        assert_eq!(build_bucket_field(1.0).as_deref(), Some("in_1"));
        assert_eq!(build_bucket_field(0.0).as_deref(), Some("in_1"));
        assert_eq!(build_bucket_field(900.0), None);
    }

    fn deployment(status: DeploymentStatus, started_at: Option<u64>) -> Deployment {
        Deployment {
            status,
            started_at,
            ..crate::ledger::tests::queued()
        }
    }

    fn args(c: &redis::Cmd) -> Vec<String> {
        c.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<cursor>".into(),
            })
            .collect()
    }

    #[test]
    fn ledger_counts_outcomes_and_build_time() {
        use DeploymentStatus::*;
        // building → deploying after 3.5 s: a build observation, no outcome.
        let cmds = ledger_commands(Building, &deployment(Deploying, Some(1_000)), 4_500);
        let all: Vec<Vec<String>> = cmds.iter().map(args).collect();
        assert!(all.contains(&vec![
            "HINCRBY".into(),
            keys::STATS_BUILD_SECONDS.into(),
            "in_5".into(),
            "1".into()
        ]));
        assert!(all.contains(&vec![
            "HINCRBY".into(),
            keys::STATS_BUILD_SECONDS.into(),
            "sum_ms".into(),
            "3500".into()
        ]));
        // One bucket, the sum, the count.
        assert_eq!(all.len(), 3);
        assert!(!all.iter().any(|a| a[1] == keys::STATS_DEPLOYMENTS));
        // deploying → succeeded: an outcome only.
        let cmds = ledger_commands(Deploying, &deployment(Succeeded, Some(1_000)), 9_000);
        let all: Vec<Vec<String>> = cmds.iter().map(args).collect();
        assert_eq!(
            all,
            vec![vec![
                "HINCRBY".to_string(),
                keys::STATS_DEPLOYMENTS.into(),
                "succeeded".into(),
                "1".into()
            ]]
        );
        // building → failed: both.
        let cmds = ledger_commands(Building, &deployment(Failed, Some(0)), 700_000);
        let all: Vec<Vec<String>> = cmds.iter().map(args).collect();
        assert!(all
            .iter()
            .any(|a| a[1] == keys::STATS_DEPLOYMENTS && a[2] == "failed"));
        // Past the last bound: no bucket, only the sum and the count.
        assert!(!all.iter().any(|a| a[2].starts_with("in_")));
        assert!(all.iter().any(|a| a[2] == "count"));
        // queued → failed (never built) and no change: nothing about builds.
        let cmds = ledger_commands(Queued, &deployment(Failed, Some(5)), 10);
        assert_eq!(cmds.len(), 1);
        assert!(ledger_commands(Building, &deployment(Building, Some(0)), 10).is_empty());
    }

    #[test]
    fn histogram_from_its_hash() {
        let hash: HashMap<String, String> = [
            ("le_5", "1"),
            ("le_10", "2"),
            ("le_+Inf", "3"),
            ("sum", "712.5"),
            ("count", "7"),
            ("le_30", "not a number"),
            // Written since: one bucket per build, the sum in ms.
            ("in_2", "1"),
            ("in_10", "2"),
            ("in_600", "1"),
            ("sum_ms", "1500"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let h = build_histogram(&hash);
        assert_eq!(
            h.buckets,
            vec![
                (1, 0),
                (2, 1),
                (5, 2),
                (10, 5),
                (30, 3),
                (60, 3),
                (120, 3),
                (300, 3),
                (600, 4)
            ]
        );
        assert_eq!((h.sum, h.count), (714.0, 7));
        let empty = build_histogram(&HashMap::new());
        assert_eq!((empty.buckets.len(), empty.sum, empty.count), (9, 0.0, 0));
    }

    #[test]
    fn only_replicas_the_route_names_run_now() {
        let up = |node: &str, container: &str, deployment: &str| Upstream {
            dial: "127.0.0.1:1".into(),
            node: node.into(),
            container: container.into(),
            deployment: deployment.into(),
        };
        let route = Route {
            domain: "a.localhost".into(),
            app: "a".into(),
            upstreams: vec![up("n1", "abcdef0123", "d2")],
            updated_at: 1,
            drain_s: None,
            standby: vec![up("n1", "5555aaaa", "d1")],
            standby_until: 100,
        };
        let with_id = |node: &str, id: &str| ContainerSample {
            container_id: Some(id.into()),
            ..sample(node, "berth-a", 1, 1.0, 1)
        };
        // The serving container, whichever side has the short id.
        assert!(runs_now(
            &with_id("n1", "abcdef0123456789"),
            Some(&route),
            50
        ));
        assert!(runs_now(&with_id("n1", "abcdef"), Some(&route), 50));
        // Same id on another node; a replaced container; no route at all.
        assert!(!runs_now(&with_id("n2", "abcdef0123"), Some(&route), 50));
        assert!(!runs_now(&with_id("n1", "9999"), Some(&route), 50));
        assert!(!runs_now(&with_id("n1", "abcdef0123"), None, 50));
        // Standby replicas run until the standby ends.
        assert!(runs_now(&with_id("n1", "5555aaaa"), Some(&route), 50));
        assert!(!runs_now(&with_id("n1", "5555aaaa"), Some(&route), 100));
        // A sample without an id (an older node) goes by its deployment.
        let old = |deployment: &str| ContainerSample {
            deployment: deployment.into(),
            ..sample("n1", "berth-a", 1, 1.0, 1)
        };
        assert!(runs_now(&old("d2"), Some(&route), 50));
        assert!(!runs_now(&old("d0"), Some(&route), 50));
    }
}
