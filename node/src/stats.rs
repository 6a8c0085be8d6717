//! The `Stats` actor: every `stats_interval` it samples, concurrently, the node's running app
//! containers (Docker stats) and the host (`/proc/stat`, `/proc/meminfo`, statvfs of `data_dir`).
//!
//! Each container sample goes to its app's stream `berth:metrics:<app>` (XADD with `MINID ~`
//! one hour back, and the key expires an hour after its last sample); the host figures go to the
//! heartbeat through a `watch` channel. A failure is logged and the next round goes on: stats
//! never stop anything else.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;
use berth_bus::Redis;
use berth_protocol::metrics::{ContainerSample, SamplePoint, RETENTION_MS, SAMPLE_KIND};
use berth_protocol::{envelope, keys, now_ms, HostStats};
use bollard::models::{ContainerCpuStats, ContainerStatsResponse};
use bollard::query_parameters::StatsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::containers::{LABEL_APP, LABEL_DEPLOYMENT};
use crate::image_build::docker_error_text;

/// What the `Stats` actor works with.
#[derive(Clone)]
pub struct StatsConfig {
    pub docker: Docker,
    pub redis: Redis,
    pub node: String,
    /// The host's disk figures are those of the file system holding this directory.
    pub data_dir: PathBuf,
    pub interval: Duration,
    /// Where the latest host figures go (the heartbeat reads them).
    pub host_tx: watch::Sender<Option<HostStats>>,
}

/// The stats actor.
pub struct Stats {
    cfg: Option<StatsConfig>,
}

impl Stats {
    pub fn new(cfg: StatsConfig) -> Self {
        Stats { cfg: Some(cfg) }
    }
}

impl Actor for Stats {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(cfg) = self.cfg.take() else { return };
        // The loop lives in the actor's context: it ends when the actor stops.
        ctx.spawn(run(cfg).into_actor(self));
    }
}

berth_bus::injectable!(Stats);

/// Stop sampling.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopStats;

impl Handler<StopStats> for Stats {
    type Result = ();

    fn handle(&mut self, _: StopStats, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

async fn run(cfg: StatsConfig) {
    let interval = cfg.interval.max(Duration::from_millis(100));
    // The first round needs a CPU reading to compare with: take it now, sample one interval on.
    let mut prev_cpu = read_host(cfg.data_dir.clone()).await.ok().map(|h| h.cpu);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // Samples that cannot be stored (Redis away) are dropped: a gap in the charts, logged once.
    let mut storing = berth_bus::Failing::new("storing container stats");
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let ts = now_ms();
        // Docker's one-off stats wait for a second reading (that is how it has `precpu_stats`),
        // so a round is bounded by a timeout rather than by the interval.
        let deadline = interval.max(Duration::from_secs(10));
        let (host, containers) = tokio::join!(
            read_host(cfg.data_dir.clone()),
            tokio::time::timeout(deadline, sample_containers(&cfg.docker, &cfg.node, ts)),
        );
        let running = match containers {
            Ok(Ok((running, samples))) => {
                match write_samples(&cfg.redis, &samples, ts).await {
                    Ok(()) => storing.ok(),
                    Err(e) => storing.failed(&e, e.is_redis_away()),
                }
                Some(running)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot sample container stats");
                None
            }
            Err(_) => {
                tracing::warn!("sampling container stats timed out");
                None
            }
        };
        match host {
            Ok(h) => {
                let cpu_pct = prev_cpu.map_or(0.0, |p| host_cpu_pct(p, h.cpu));
                prev_cpu = Some(h.cpu);
                let containers = running.unwrap_or_else(|| {
                    cfg.host_tx
                        .borrow()
                        .as_ref()
                        .map_or(0, |old| old.containers)
                });
                cfg.host_tx.send_replace(Some(HostStats {
                    ts,
                    cpu_pct,
                    mem_total_bytes: h.mem_total,
                    mem_available_bytes: h.mem_available,
                    disk_total_bytes: h.disk_total,
                    disk_available_bytes: h.disk_available,
                    containers,
                }));
            }
            Err(e) => tracing::warn!(error = %e, "cannot sample host stats"),
        }
    }
}

/// Writes one round of samples, each to its app's stream, in one round trip.
async fn write_samples(
    redis: &Redis,
    samples: &[(String, ContainerSample)],
    ts: u64,
) -> crate::Result<()> {
    if samples.is_empty() {
        return Ok(());
    }
    let min_id = ts.saturating_sub(RETENTION_MS);
    let mut pipe = redis::pipe();
    for (app, s) in samples {
        let id = format!("{}-{}", s.node, s.container);
        let bytes = envelope::encode(SAMPLE_KIND, &id, s)?;
        let key = keys::app_metrics(app);
        pipe.cmd("XADD")
            .arg(&key)
            .arg("MINID")
            .arg("~")
            .arg(min_id)
            .arg("*")
            .arg(envelope::STREAM_FIELD)
            .arg(bytes)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(RETENTION_MS)
            .ignore();
    }
    pipe.query_async::<()>(&mut redis.clone()).await?;
    Ok(())
}

/// Samples every running app container of this node, concurrently. Returns how many run and
/// the samples that could be read (app, sample); a container whose stats fail is skipped.
async fn sample_containers(
    docker: &Docker,
    node: &str,
    ts: u64,
) -> crate::Result<(u32, Vec<(String, ContainerSample)>)> {
    let list = crate::containers::running_app_containers(docker, node).await?;
    let running = list.len() as u32;
    let reads = list.into_iter().filter_map(|c| {
        let labels = c.labels.unwrap_or_default();
        let app = labels.get(LABEL_APP)?.clone();
        let deployment = labels.get(LABEL_DEPLOYMENT).cloned().unwrap_or_default();
        let id = c.id?;
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| id.clone());
        Some(async move {
            let opts = StatsOptions {
                stream: false,
                one_shot: false,
            };
            let mut stream = docker.stats(&id, Some(opts));
            match stream.next().await {
                Some(Ok(resp)) => {
                    let f = figures(&resp);
                    Some((
                        app,
                        ContainerSample {
                            node: node.to_string(),
                            container: name,
                            deployment,
                            container_id: Some(id.clone()),
                            point: SamplePoint {
                                ts,
                                cpu_pct: f.cpu_pct,
                                mem_bytes: f.mem_bytes,
                                mem_limit_bytes: f.mem_limit_bytes,
                                net_rx_bytes: f.net_rx_bytes,
                                net_tx_bytes: f.net_tx_bytes,
                            },
                        },
                    ))
                }
                Some(Err(e)) => {
                    tracing::warn!(container = %name, error = %docker_error_text(&e), "container stats failed");
                    None
                }
                None => None,
            }
        })
    });
    let samples = futures_util::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect();
    Ok((running, samples))
}

/// One container's figures from a Docker stats answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub cpu_pct: f64,
    pub mem_bytes: u64,
    pub mem_limit_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// Reads CPU %, memory (cache excluded) and network totals the way `docker stats` does.
pub fn figures(s: &ContainerStatsResponse) -> Figures {
    let empty = ContainerCpuStats::default();
    let cpu = s.cpu_stats.as_ref().unwrap_or(&empty);
    let pre = s.precpu_stats.as_ref().unwrap_or(&empty);
    let total = |c: &ContainerCpuStats| c.cpu_usage.as_ref().and_then(|u| u.total_usage);
    let online = cpu.online_cpus.filter(|n| *n > 0).or_else(|| {
        cpu.cpu_usage
            .as_ref()
            .and_then(|u| u.percpu_usage.as_ref())
            .map(|p| p.len() as u32)
    });
    let cpu_pct = docker_cpu_pct(
        total(pre).unwrap_or(0),
        total(cpu).unwrap_or(0),
        pre.system_cpu_usage.unwrap_or(0),
        cpu.system_cpu_usage.unwrap_or(0),
        online.unwrap_or(0),
    );
    let (mem_bytes, mem_limit_bytes) = match &s.memory_stats {
        Some(m) => (
            mem_without_cache(m.usage.unwrap_or(0), m.stats.as_ref()),
            m.limit.unwrap_or(0),
        ),
        None => (0, 0),
    };
    let (mut rx, mut tx) = (0u64, 0u64);
    for n in s.networks.iter().flat_map(|n| n.values()) {
        rx = rx.saturating_add(n.rx_bytes.unwrap_or(0));
        tx = tx.saturating_add(n.tx_bytes.unwrap_or(0));
    }
    Figures {
        cpu_pct,
        mem_bytes,
        mem_limit_bytes,
        net_rx_bytes: rx,
        net_tx_bytes: tx,
    }
}

/// `docker stats`' CPU %: the container's share of the host's CPU time between two readings,
/// times the number of CPUs (so one busy core is 100).
pub fn docker_cpu_pct(
    pre_total: u64,
    total: u64,
    pre_system: u64,
    system: u64,
    online_cpus: u32,
) -> f64 {
    let cpu_delta = total as f64 - pre_total as f64;
    let system_delta = system as f64 - pre_system as f64;
    if cpu_delta > 0.0 && system_delta > 0.0 && online_cpus > 0 {
        cpu_delta / system_delta * online_cpus as f64 * 100.0
    } else {
        0.0
    }
}

/// Memory in use without the page cache that can be dropped: `usage - total_inactive_file`
/// (cgroup v1) or `usage - inactive_file` (cgroup v2), as `docker stats` shows it.
pub fn mem_without_cache(usage: u64, stats: Option<&HashMap<String, u64>>) -> u64 {
    let inactive = stats.and_then(|s| {
        s.get("total_inactive_file")
            .or_else(|| s.get("inactive_file"))
            .copied()
    });
    match inactive {
        Some(v) if v < usage => usage - v,
        _ => usage,
    }
}

/// Cumulative CPU time counters of the host (jiffies, all CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat`: `user nice system idle iowait irq softirq
/// steal [guest guest_nice]`. Idle time is `idle + iowait`; guest time is already counted in
/// `user` and `nice`, so it is left out.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

/// Busy share of the host's CPUs between two readings, 0–100.
pub fn host_cpu_pct(prev: CpuTimes, cur: CpuTimes) -> f64 {
    let total = cur.total.saturating_sub(prev.total);
    let busy = cur.busy.saturating_sub(prev.busy);
    if total == 0 {
        return 0.0;
    }
    (busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let rest = line[name.len()..].trim_start().strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        Some(match parts.next() {
            Some("kB") => n * 1024,
            _ => n,
        })
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

/// The host's raw figures at one instant.
struct HostReading {
    cpu: CpuTimes,
    mem_total: u64,
    mem_available: u64,
    disk_total: u64,
    disk_available: u64,
}

/// Reads `/proc/stat`, `/proc/meminfo` and statvfs of `data_dir` (off the actix thread).
async fn read_host(data_dir: PathBuf) -> crate::Result<HostReading> {
    tokio::task::spawn_blocking(move || {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|e| crate::Error::io(format!("reading {p}"), e))
        };
        let cpu = parse_proc_stat(&read("/proc/stat")?)
            .ok_or_else(|| crate::Error::Internal("unexpected /proc/stat".into()))?;
        let (mem_total, mem_available) = parse_meminfo(&read("/proc/meminfo")?)
            .ok_or_else(|| crate::Error::Internal("unexpected /proc/meminfo".into()))?;
        let fs = fs4::statvfs(&data_dir)
            .map_err(|e| crate::Error::io(format!("statvfs {}", data_dir.display()), e))?;
        Ok(HostReading {
            cpu,
            mem_total,
            mem_available,
            disk_total: fs.total_space(),
            disk_available: fs.available_space(),
        })
    })
    .await
    .map_err(|e| crate::Error::Internal(format!("host stats task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerCpuUsage, ContainerMemoryStats, ContainerNetworkStats};

    #[test]
    fn cpu_percent_like_docker_stats() {
        // The container used 0.5 s of CPU while the host's 4 CPUs together ran 4 s: one half core.
        assert_eq!(
            docker_cpu_pct(1_000, 500_001_000, 10, 4_000_000_010, 4),
            50.0
        );
        assert_eq!(docker_cpu_pct(5, 5, 0, 100, 2), 0.0, "no CPU used");
        assert_eq!(docker_cpu_pct(0, 5, 100, 100, 2), 0.0, "no system delta");
        assert_eq!(docker_cpu_pct(9, 5, 0, 100, 2), 0.0, "counter went back");
    }

    #[test]
    fn figures_from_a_stats_answer() {
        let cpu = |total, system| ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(total),
                percpu_usage: Some(vec![0, 0]),
                ..Default::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: None,
            ..Default::default()
        };
        let resp = ContainerStatsResponse {
            cpu_stats: Some(cpu(300, 2_000)),
            precpu_stats: Some(cpu(100, 1_000)),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(10_000),
                limit: Some(1 << 30),
                stats: Some(HashMap::from([("total_inactive_file".to_string(), 4_000)])),
                ..Default::default()
            }),
            networks: Some(HashMap::from([
                (
                    "eth0".to_string(),
                    ContainerNetworkStats {
                        rx_bytes: Some(7),
                        tx_bytes: Some(11),
                        ..Default::default()
                    },
                ),
                (
                    "eth1".to_string(),
                    ContainerNetworkStats {
                        rx_bytes: Some(3),
                        tx_bytes: None,
                        ..Default::default()
                    },
                ),
            ])),
            ..Default::default()
        };
        let f = figures(&resp);
        // 200 of 1000 system units on 2 CPUs (counted from percpu_usage) = 40 %.
        assert!((f.cpu_pct - 40.0).abs() < 1e-9, "{f:?}");
        assert_eq!(f.mem_bytes, 6_000);
        assert_eq!(f.mem_limit_bytes, 1 << 30);
        assert_eq!((f.net_rx_bytes, f.net_tx_bytes), (10, 11));
        let empty = figures(&ContainerStatsResponse::default());
        assert_eq!(empty.cpu_pct, 0.0);
        assert_eq!(empty.mem_bytes, 0);
    }

    #[test]
    fn memory_without_page_cache() {
        let v2 = HashMap::from([("inactive_file".to_string(), 30)]);
        assert_eq!(mem_without_cache(100, Some(&v2)), 70);
        let big = HashMap::from([("inactive_file".to_string(), 300)]);
        assert_eq!(mem_without_cache(100, Some(&big)), 100);
        assert_eq!(mem_without_cache(100, None), 100);
    }

    #[test]
    fn proc_stat_and_host_cpu() {
        let a = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\nintr 1 2\n";
        let b = "cpu  160 0 70 900 70 0 0 0 0 0\ncpu0 80 0 35 450 35 0 0 0 0 0\n";
        let (a, b) = (parse_proc_stat(a).unwrap(), parse_proc_stat(b).unwrap());
        assert_eq!(
            a,
            CpuTimes {
                busy: 150,
                total: 1_000
            }
        );
        // 80 busy jiffies out of 200.
        assert_eq!(host_cpu_pct(a, b), 40.0);
        assert_eq!(host_cpu_pct(a, a), 0.0);
        assert!(
            parse_proc_stat("cpu0 1 2 3 4\n").is_none(),
            "aggregate line only"
        );
        assert!(parse_proc_stat("cpu  1 x 3 4\n").is_none());
        // Old kernels: four fields.
        assert_eq!(
            parse_proc_stat("cpu 1 2 3 4\n"),
            Some(CpuTimes { busy: 6, total: 10 })
        );
    }

    #[test]
    fn meminfo() {
        let t = "MemTotal:       16384 kB\nMemFree:  100 kB\nMemAvailable:    8192 kB\n";
        assert_eq!(parse_meminfo(t), Some((16384 * 1024, 8192 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn reads_this_host() {
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let cpu = parse_proc_stat(&stat).unwrap();
        assert!(cpu.total > cpu.busy);
        let (total, avail) =
            parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap()).unwrap();
        assert!(total > 0 && avail <= total);
    }
}
