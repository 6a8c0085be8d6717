//! Metrics over HTTP: `GET /api/v1/apps/{name}/metrics` (an app's resource series, JSON) and
//! `GET /metrics` (Prometheus text, same bearer token as the API).
//!
//! The cluster's figures come from the coordinator as plain numbers (read from Redis at each
//! scrape); this module turns them into Prometheus families ([`cluster_families`]: names, help
//! texts, labels and types live here). The one thing measured here, in-process, is the
//! duration of every HTTP request (`berth_api_request_duration_seconds{method,code}`), recorded
//! from the request log filter that wraps all routes.

use std::collections::HashMap;

use berth_coordinator::metrics::ClusterFigures;
use berth_coordinator::{api, Coordinator};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{HistogramOpts, HistogramVec, Registry, TextEncoder};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::error::ApiError;

/// The request-duration histogram and the registry it lives in (one per `routes`).
#[derive(Clone)]
pub struct HttpMetrics {
    registry: Registry,
    requests: HistogramVec,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "berth_api_request_duration_seconds",
                "Time to answer an HTTP request of the API, by method and status code.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "code"],
        )
        .expect("static histogram options are valid");
        registry
            .register(Box::new(requests.clone()))
            .expect("one registration in a fresh registry");
        HttpMetrics { registry, requests }
    }

    /// Records one answered request.
    pub fn observe(&self, method: &str, code: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, &code.to_string()])
            .observe(seconds);
    }
}

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

/// The cluster's figures as Prometheus families (every one, even those without samples).
pub fn cluster_families(f: &ClusterFigures) -> Vec<MetricFamily> {
    let mut out = vec![
        family(
            "berth_apps",
            "Apps defined.",
            MetricType::GAUGE,
            vec![gauge(&[], f.apps as f64)],
        ),
        family(
            "berth_deployments",
            "Deployments not finished yet, by status.",
            MetricType::GAUGE,
            f.active
                .iter()
                .map(|(s, n)| gauge(&[("status", s.as_str())], *n as f64))
                .collect(),
        ),
        family(
            "berth_deployments_total",
            "Deployments that ended, by outcome.",
            MetricType::COUNTER,
            f.outcomes
                .iter()
                .map(|(s, n)| counter(&[("status", s.as_str())], *n as f64))
                .collect(),
        ),
    ];

    let up = f.nodes.iter().filter(|n| n.up).count();
    out.push(family(
        "berth_nodes",
        "Registered nodes, by liveness (heartbeat age).",
        MetricType::GAUGE,
        vec![
            gauge(&[("status", "up")], up as f64),
            gauge(&[("status", "down")], (f.nodes.len() - up) as f64),
        ],
    ));
    out.push(family(
        "berth_node_up",
        "1 when the node's heartbeat is fresh, else 0.",
        MetricType::GAUGE,
        f.nodes
            .iter()
            .map(|n| gauge(&[("node", &n.name)], if n.up { 1.0 } else { 0.0 }))
            .collect(),
    ));
    out.push(family(
        "berth_job_queue_depth",
        "Jobs on a node's stream not yet acknowledged (undelivered + pending).",
        MetricType::GAUGE,
        f.nodes
            .iter()
            .map(|n| gauge(&[("node", &n.name)], n.queue_depth as f64))
            .collect(),
    ));

    let b = &f.build_seconds;
    let mut h = Histogram::default();
    // No explicit +Inf bucket: the encoder writes `le="+Inf"` from the count (it would print
    // an infinite bound as `inf`).
    h.set_bucket(
        b.buckets
            .iter()
            .map(|(bound, n)| {
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*bound as f64);
                bucket.set_cumulative_count(*n);
                bucket
            })
            .collect(),
    );
    h.set_sample_count(b.count);
    h.set_sample_sum(b.sum);
    let mut m = Metric::default();
    m.set_histogram(h);
    out.push(family(
        "berth_build_duration_seconds",
        "Time deployments spent building (from entering building to leaving it).",
        MetricType::HISTOGRAM,
        vec![m],
    ));

    out.push(family(
        "berth_dead_letters_total",
        "Stream entries that could not be handled and went to berth:dead:<stream>, by stream.",
        MetricType::COUNTER,
        f.dead_letters
            .iter()
            .map(|(s, n)| counter(&[("stream", s)], *n as f64))
            .collect(),
    ));

    out.push(family(
        "berth_leader_epoch",
        "The epoch (fencing token) of the coordinator holding the leader lease, by its name.",
        MetricType::GAUGE,
        f.leader
            .iter()
            .map(|(holder, epoch)| gauge(&[("coordinator", holder)], *epoch as f64))
            .collect(),
    ));
    let r = &f.redis;
    out.push(family(
        "berth_redis_primary",
        "1 when the Redis the coordinator writes to says it is the primary (role master), else \
         0 (a replica: writes fail until Sentinel's promotion reaches the coordinator), by its \
         address.",
        MetricType::GAUGE,
        vec![gauge(
            &[("addr", &r.addr)],
            if r.role == "master" { 1.0 } else { 0.0 },
        )],
    ));
    out.push(family(
        "berth_redis_replicas",
        "Replicas connected to the Redis the coordinator writes to, and in sync (state online).",
        MetricType::GAUGE,
        vec![gauge(
            &[],
            r.replicas.iter().filter(|x| x.state == "online").count() as f64,
        )],
    ));
    out.push(family(
        "berth_redis_replica_lag_seconds",
        "Seconds since a replica last acknowledged the primary's stream, by replica.",
        MetricType::GAUGE,
        r.replicas
            .iter()
            .map(|x| gauge(&[("replica", &x.addr)], x.lag_s as f64))
            .collect(),
    ));
    out.push(family(
        "berth_redis_replica_behind_bytes",
        "Bytes of the primary's replication stream a replica has not acknowledged, by replica.",
        MetricType::GAUGE,
        r.replicas
            .iter()
            .map(|x| gauge(&[("replica", &x.addr)], x.behind_bytes as f64))
            .collect(),
    ));
    out.push(family(
        "berth_actor_restarts_total",
        "Times a supervisor started an actor again after it died (a panic), by process \
         (coordinator, node:<name>) and actor.",
        MetricType::COUNTER,
        f.restarts
            .iter()
            .map(|(p, a, n)| counter(&[("process", p), ("actor", a)], *n as f64))
            .collect(),
    ));
    out.push(family(
        "berth_redis_unreplicated_writes_total",
        "Writes that must survive a failover of Redis which its replicas did not acknowledge \
         within redis.replica_ack_timeout_ms (redis.min_replicas_acked), by process (coordinator, \
         node:<name>): each was reported not done (the API answered 503) or done again.",
        MetricType::COUNTER,
        f.unreplicated
            .iter()
            .map(|(p, n)| counter(&[("process", p)], *n as f64))
            .collect(),
    ));
    out
}

/// The text of `/metrics`: the cluster's families, then the request-duration histogram.
fn render(figures: &ClusterFigures, http: &HttpMetrics) -> prometheus::Result<String> {
    let mut families = cluster_families(figures);
    families.extend(http.registry.gather());
    // The text encoder refuses a family without samples (e.g. no node yet).
    families.retain(|f| !f.get_metric().is_empty());
    TextEncoder::new().encode_to_string(&families)
}

/// `GET /metrics`, behind a token of scope `metrics` (or more).
pub(crate) fn prometheus_route(
    coord: Coordinator,
    auth: impl Filter<Extract = (crate::auth::Principal,), Error = Rejection>
        + Clone
        + Send
        + Sync
        + 'static,
    http: HttpMetrics,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(auth)
        .then(move |_who| {
            let (coord, http) = (coord.clone(), http.clone());
            async move {
                let figures = match super::flatten(coord.api.send(api::ClusterMetrics).await) {
                    Ok(f) => f,
                    Err(e) => return e.into_response(),
                };
                match render(&figures, &http) {
                    Ok(text) => {
                        warp::reply::with_header(text, "content-type", prometheus::TEXT_FORMAT)
                            .into_response()
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode metrics");
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "cannot encode the metrics; the coordinator's log has the details",
                        )
                        .into_response()
                    }
                }
            }
        })
}

/// `GET /api/v1/apps/{name}/metrics?window=15m` (mounted under the API prefix).
pub(crate) fn app_route(
    coord: Coordinator,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("apps" / String / "metrics")
        .and(warp::get())
        .and(crate::query::query::<HashMap<String, String>>())
        .then(move |app: String, q: HashMap<String, String>| {
            let coord = coord.clone();
            async move {
                let msg = api::GetAppMetrics {
                    app,
                    window: q.get("window").cloned(),
                };
                super::respond(coord.api.send(msg).await, StatusCode::OK)
            }
        })
}

#[cfg(test)]
mod tests {
    use berth_coordinator::metrics::{BuildHistogram, NodeFigures};
    use berth_protocol::DeploymentStatus::*;

    use super::*;

    fn figures() -> ClusterFigures {
        ClusterFigures {
            apps: 3,
            active: vec![(Building, 1), (Deploying, 0), (Queued, 2)],
            outcomes: vec![(Succeeded, 7), (Failed, 2), (Cancelled, 0)],
            nodes: vec![
                NodeFigures {
                    name: "n1".into(),
                    up: true,
                    queue_depth: 4,
                },
                NodeFigures {
                    name: "n2".into(),
                    up: false,
                    queue_depth: 0,
                },
            ],
            build_seconds: BuildHistogram {
                buckets: vec![(1, 0), (5, 1), (10, 2), (600, 3)],
                sum: 712.5,
                count: 4,
            },
            dead_letters: vec![
                ("berth:events".into(), 3),
                ("berth:jobs:n1".into(), 0),
                ("berth:jobs:n2".into(), 1),
            ],
            restarts: vec![("node:n1".into(), "router".into(), 2)],
            unreplicated: vec![("coordinator".into(), 4)],
            leader: Some(("host-1-abc".into(), 3)),
            redis: berth_protocol::api::RedisView {
                addr: "10.0.0.10:6379".into(),
                role: "master".into(),
                offset: 900,
                replicas: vec![berth_protocol::api::RedisReplica {
                    addr: "10.0.0.11:6379".into(),
                    state: "online".into(),
                    behind_bytes: 100,
                    lag_s: 1,
                }],
            },
        }
    }

    #[test]
    fn figures_render_as_prometheus_text() {
        let http = HttpMetrics::new();
        http.observe("GET", 200, 0.003);
        let text = render(&figures(), &http).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "# HELP berth_apps Apps defined.",
            "# TYPE berth_apps gauge",
            "berth_apps 3",
            "# TYPE berth_deployments gauge",
            "berth_deployments{status=\"queued\"} 2",
            "# HELP berth_deployments_total Deployments that ended, by outcome.",
            "# TYPE berth_deployments_total counter",
            "berth_deployments_total{status=\"succeeded\"} 7",
            "berth_deployments_total{status=\"cancelled\"} 0",
            "berth_nodes{status=\"up\"} 1",
            "berth_nodes{status=\"down\"} 1",
            "berth_node_up{node=\"n2\"} 0",
            "berth_job_queue_depth{node=\"n1\"} 4",
            "# TYPE berth_build_duration_seconds histogram",
            "berth_build_duration_seconds_bucket{le=\"10\"} 2",
            "berth_build_duration_seconds_bucket{le=\"+Inf\"} 4",
            "berth_build_duration_seconds_sum 712.5",
            "berth_build_duration_seconds_count 4",
            "# HELP berth_dead_letters_total Stream entries that could not be handled and went to \
             berth:dead:<stream>, by stream.",
            "# TYPE berth_dead_letters_total counter",
            "berth_dead_letters_total{stream=\"berth:events\"} 3",
            "berth_dead_letters_total{stream=\"berth:jobs:n2\"} 1",
            "berth_actor_restarts_total{process=\"node:n1\",actor=\"router\"} 2",
            "berth_redis_unreplicated_writes_total{process=\"coordinator\"} 4",
            "berth_leader_epoch{coordinator=\"host-1-abc\"} 3",
            "berth_redis_primary{addr=\"10.0.0.10:6379\"} 1",
            "berth_redis_replicas 1",
            "berth_redis_replica_lag_seconds{replica=\"10.0.0.11:6379\"} 1",
            "berth_redis_replica_behind_bytes{replica=\"10.0.0.11:6379\"} 100",
            "berth_api_request_duration_seconds_count{code=\"200\",method=\"GET\"} 1",
        ] {
            assert!(lines.contains(&want), "no line {want:?} in:\n{text}");
        }
        // The order of the families and of their series is the figures' order.
        let names: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(
            names,
            [
                "berth_apps",
                "berth_deployments",
                "berth_deployments_total",
                "berth_nodes",
                "berth_node_up",
                "berth_job_queue_depth",
                "berth_build_duration_seconds",
                "berth_dead_letters_total",
                "berth_leader_epoch",
                "berth_redis_primary",
                "berth_redis_replicas",
                "berth_redis_replica_lag_seconds",
                "berth_redis_replica_behind_bytes",
                "berth_actor_restarts_total",
                "berth_redis_unreplicated_writes_total",
                "berth_api_request_duration_seconds",
            ]
        );
    }

    #[test]
    fn families_without_samples_are_left_out() {
        let f = ClusterFigures {
            nodes: Vec::new(),
            dead_letters: vec![("berth:events".into(), 0)],
            restarts: Vec::new(),
            unreplicated: Vec::new(),
            leader: None,
            ..figures()
        };
        let text = render(&f, &HttpMetrics::new()).unwrap();
        assert!(!text.contains("berth_node_up"), "{text}");
        assert!(!text.contains("berth_job_queue_depth"), "{text}");
        assert!(!text.contains("berth_actor_restarts_total"), "{text}");
        assert!(
            !text.contains("berth_api_request_duration_seconds"),
            "{text}"
        );
        assert!(text.contains("berth_nodes{status=\"up\"} 0\n"), "{text}");
        assert!(text.contains("berth_dead_letters_total{stream=\"berth:events\"} 0\n"));
    }
}
