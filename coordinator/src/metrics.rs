//! Metrics: an app's resource series (from the samples nodes write to `berth:metrics:<app>`),
//! the cluster's Prometheus families, and the counters the `Ledger` keeps in Redis.
//!
//! Nothing here is kept in memory: the deployment-outcome counters and the build-duration
//! histogram are Redis hashes written by the Ledger in the same MULTI as the record that caused
//! them ([`ledger_commands`]), so they survive a coordinator restart; everything else is read
//! from Redis at each scrape.

use std::collections::{BTreeMap, HashMap};

use berth_protocol::api::NodeView;
use berth_protocol::envelope::{decode, STREAM_FIELD};
use berth_protocol::metrics::{
    AppMetrics, ContainerSample, ReplicaSeries, SamplePoint, TotalPoint, SAMPLE_KIND,
};
use berth_protocol::{keys, Deployment, DeploymentStatus, NodeStatus};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
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
            let secs = at.saturating_sub(started) as f64 / 1000.0;
            for field in build_bucket_fields(secs) {
                let mut c = redis::cmd("HINCRBY");
                c.arg(keys::STATS_BUILD_SECONDS).arg(field).arg(1);
                cmds.push(c);
            }
            let mut c = redis::cmd("HINCRBYFLOAT");
            c.arg(keys::STATS_BUILD_SECONDS).arg("sum").arg(secs);
            cmds.push(c);
            let mut c = redis::cmd("HINCRBY");
            c.arg(keys::STATS_BUILD_SECONDS).arg("count").arg(1);
            cmds.push(c);
        }
    }
    cmds
}

/// The cumulative bucket fields a build of `secs` counts in: every `le_<bound>` it fits under,
/// and `le_+Inf`.
pub fn build_bucket_fields(secs: f64) -> Vec<String> {
    BUILD_BUCKETS
        .iter()
        .filter(|b| secs <= **b as f64)
        .map(|b| format!("le_{b}"))
        .chain(std::iter::once("le_+Inf".to_string()))
        .collect()
}

// ---- an app's series ----

/// Reads an app's samples of the last `window_s` seconds (up to `now`) and assembles them.
pub async fn app_metrics(store: &Store, app: &str, window_s: u64, now: u64) -> Result<AppMetrics> {
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
            Ok(s) if s.ts >= start => samples.push(s),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%app, entry = %entry.id, error = %e, "skipping undecodable sample")
            }
        }
    }
    Ok(assemble(app, window_s, samples))
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
        series.samples.push(SamplePoint {
            ts: s.ts,
            cpu_pct: s.cpu_pct,
            mem_bytes: s.mem_bytes,
            mem_limit_bytes: s.mem_limit_bytes,
            net_rx_bytes: s.net_rx_bytes,
            net_tx_bytes: s.net_tx_bytes,
        });
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

// ---- Prometheus ----

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn gauge(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::from_label(labels(pairs));
    m.set_gauge(g);
    m
}

fn counter(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

/// The build-duration histogram from its Redis hash (`le_<bound>`, `sum`, `count`).
pub fn build_histogram(hash: &HashMap<String, String>) -> MetricFamily {
    let int = |k: &str| hash.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut h = Histogram::default();
    // No explicit +Inf bucket: the encoder writes `le="+Inf"` from the count (it would print
    // an infinite bound as `inf`); `le_+Inf` and `count` are raised together anyway.
    let buckets: Vec<Bucket> = BUILD_BUCKETS
        .iter()
        .map(|b| {
            let mut bucket = Bucket::default();
            bucket.set_upper_bound(*b as f64);
            bucket.set_cumulative_count(int(&format!("le_{b}")));
            bucket
        })
        .collect();
    h.set_bucket(buckets);
    h.set_sample_count(int("count"));
    h.set_sample_sum(
        hash.get("sum")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0),
    );
    let mut m = Metric::default();
    m.set_histogram(h);
    family(
        "berth_build_duration_seconds",
        "Time deployments spent building (from entering building to leaving it).",
        MetricType::HISTOGRAM,
        vec![m],
    )
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

/// Every cluster-wide family, read from Redis now (the HTTP request histogram is web's).
pub async fn families(store: &Store, nodes: &[NodeView]) -> Result<Vec<MetricFamily>> {
    let mut c = store.conn();
    let mut out = Vec::new();

    let apps: u64 = c.scard(keys::APPS).await?;
    out.push(family(
        "berth_apps",
        "Apps defined.",
        MetricType::GAUGE,
        vec![gauge(&[], apps as f64)],
    ));

    let mut active: BTreeMap<&str, u64> = DeploymentStatus::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| (s.as_str(), 0))
        .collect();
    for d in store
        .deployments(&store.active_deployments().await?)
        .await?
    {
        if let Some(n) = active.get_mut(d.status.as_str()) {
            *n += 1;
        }
    }
    out.push(family(
        "berth_deployments",
        "Deployments not finished yet, by status.",
        MetricType::GAUGE,
        active
            .iter()
            .map(|(s, n)| gauge(&[("status", s)], *n as f64))
            .collect(),
    ));

    let outcomes: HashMap<String, u64> = c.hgetall(keys::STATS_DEPLOYMENTS).await?;
    out.push(family(
        "berth_deployments_total",
        "Deployments that ended, by outcome.",
        MetricType::COUNTER,
        DeploymentStatus::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| {
                let n = outcomes.get(s.as_str()).copied().unwrap_or(0);
                counter(&[("status", s.as_str())], n as f64)
            })
            .collect(),
    ));

    let up = nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Ready)
        .count();
    out.push(family(
        "berth_nodes",
        "Registered nodes, by liveness (heartbeat age).",
        MetricType::GAUGE,
        vec![
            gauge(&[("status", "up")], up as f64),
            gauge(&[("status", "down")], (nodes.len() - up) as f64),
        ],
    ));
    let mut node_up = Vec::new();
    let mut depth = Vec::new();
    for n in nodes {
        let name = n.info.name.as_str();
        let live = n.status == NodeStatus::Ready;
        node_up.push(gauge(&[("node", name)], if live { 1.0 } else { 0.0 }));
        depth.push(gauge(
            &[("node", name)],
            queue_depth(store, name).await? as f64,
        ));
    }
    out.push(family(
        "berth_node_up",
        "1 when the node's heartbeat is fresh, else 0.",
        MetricType::GAUGE,
        node_up,
    ));
    out.push(family(
        "berth_job_queue_depth",
        "Jobs on a node's stream not yet acknowledged (undelivered + pending).",
        MetricType::GAUGE,
        depth,
    ));

    let build: HashMap<String, String> = c.hgetall(keys::STATS_BUILD_SECONDS).await?;
    out.push(build_histogram(&build));

    // Every stream a consumer reads is listed, at 0 until an entry of it is dead-lettered.
    let mut dead: BTreeMap<String, u64> = [keys::EVENTS.to_string()]
        .into_iter()
        .chain(nodes.iter().map(|n| keys::jobs(&n.info.name)))
        .map(|s| (s, 0))
        .collect();
    let counted: HashMap<String, u64> = c.hgetall(keys::STATS_DEAD_LETTERS).await?;
    dead.extend(counted);
    out.push(family(
        "berth_dead_letters_total",
        "Stream entries that could not be handled and went to berth:dead:<stream>, by stream.",
        MetricType::COUNTER,
        dead.iter()
            .map(|(s, n)| counter(&[("stream", s)], *n as f64))
            .collect(),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(node: &str, container: &str, ts: u64, cpu: f64, mem: u64) -> ContainerSample {
        ContainerSample {
            ts,
            node: node.into(),
            container: container.into(),
            deployment: "d1".into(),
            cpu_pct: cpu,
            mem_bytes: mem,
            mem_limit_bytes: 1000,
            net_rx_bytes: 1,
            net_tx_bytes: 2,
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
    fn build_buckets_are_cumulative() {
        assert_eq!(
            build_bucket_fields(7.5),
            vec!["le_10", "le_30", "le_60", "le_120", "le_300", "le_600", "le_+Inf"]
        );
        assert_eq!(build_bucket_fields(1.0)[0], "le_1");
        assert_eq!(build_bucket_fields(900.0), vec!["le_+Inf"]);
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
            "le_5".into(),
            "1".into()
        ]));
        assert!(!all.iter().any(|a| a[2] == "le_2"));
        assert!(all.contains(&vec![
            "HINCRBYFLOAT".into(),
            keys::STATS_BUILD_SECONDS.into(),
            "sum".into(),
            "3.5".into()
        ]));
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
        assert!(all.iter().any(|a| a[2] == "le_+Inf"));
        assert!(!all.iter().any(|a| a[2] == "le_600"));
        // queued → failed (never built) and no change: nothing about builds.
        let cmds = ledger_commands(Queued, &deployment(Failed, Some(5)), 10);
        assert_eq!(cmds.len(), 1);
        assert!(ledger_commands(Building, &deployment(Building, Some(0)), 10).is_empty());
    }

    #[test]
    fn histogram_from_its_hash_encodes() {
        let hash: HashMap<String, String> = [
            ("le_5", "1"),
            ("le_10", "2"),
            ("le_+Inf", "3"),
            ("sum", "712.5"),
            ("count", "3"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&[build_histogram(&hash)])
            .unwrap();
        assert!(
            text.contains("berth_build_duration_seconds_bucket{le=\"10\"} 2"),
            "{text}"
        );
        assert!(text.contains("berth_build_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("berth_build_duration_seconds_count 3"));
        assert!(text.contains("berth_build_duration_seconds_sum 712.5"));
    }
}
