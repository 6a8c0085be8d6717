//! `berth bench scheduler`: how fast the coordinator places deployments and queues their jobs,
//! and what it costs while a large fleet only heartbeats (issue 10; results in BENCHMARKS.md).
//!
//! What runs:
//! - a Redis, started as `berth up` starts it (`services::start_redis`: a Unix socket in a
//!   temporary directory, AOF on), or `--redis-url` (an empty database: the bench refuses one
//!   that holds keys, and flushes it between its scenarios);
//! - the real coordinator as a child `berth coordinator` process (this binary), so its CPU time
//!   and RSS are its own: read from `/proc/<pid>/stat` and `/proc/<pid>/status`;
//! - N simulated nodes in this process. Each writes its heartbeat every second with the node's
//!   own code (`berth_node::heartbeat::beat`: the `berth:node:<name>` envelope and `SADD
//!   berth:nodes`), and reads its job stream (`berth:jobs:<node>`, group `node`, itself the
//!   consumer) with a blocking `XREADGROUP` on a connection of its own, as a node's
//!   `JobConsumer` does (trimming what it acknowledged once a second, as it does); it
//!   acknowledges each job at once and reports it the way a node's
//!   `EventSink` does, on `berth:events` (the acknowledgements and events of all the simulated
//!   nodes share one multiplexed connection): `building`, then
//!   `succeeded` (`--outcome failed`: `failed`, "simulated node"). So the Ledger does a real
//!   deployment's writes (the release index included) and every `DeploymentActor` stops.
//!
//! Load: one app per deployment is created through the HTTP API (a second deployment of an app
//! would supersede the first), then `--jobs` deployments are created from `--clients`
//! concurrent clients as fast as the API takes them. The dispatch latency of a job runs from
//! just before its POST to the moment a simulated node read it from its stream (matched by the
//! deployment id in the job); jobs/s is the jobs dispatched over the time from the first POST to
//! the last read. Each node count (`--nodes 100,1000`) runs against a fresh Redis and
//! coordinator. Then, on the largest fleet, with `--idle-apps` apps (those the load created plus
//! ones written straight into Redis, as `tests/src/seed.rs` does) and the app list read once
//! through the API (so the coordinator holds its cached copy), the coordinator's and Redis's CPU
//! and RSS are read over `--idle-s` seconds of heartbeats only.
//!
//! Run it from a release build: `cargo build --release -p berth && target/release/berth bench
//! scheduler` (`--json`: the results as one JSON object). `--quick` (20 nodes, 200 jobs, no idle phase) is what the test runs. It exits
//! non-zero when a job was never dispatched or a deployment did not end terminal.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_bus::Redis;
use berth_node::heartbeat::{beat, Beat, BEAT_EVERY};
use berth_node::job_consumer;
use berth_protocol::envelope::{self, kind, STREAM_FIELD};
use berth_protocol::{
    keys, now_ms, App, Deployment, DeploymentStatus, DeploymentUpdate, Event, HostStats,
    EVENT_KIND, JOB_KIND,
};
use clap::{Args, ValueEnum};
use rand::RngExt;
use redis::AsyncCommands;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::services::{self, Service};

/// How long the bench waits for the last job to be read, then for every deployment to end.
const SETTLE: Duration = Duration::from_secs(120);
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks: 100 a second on Linux.
const TICKS_PER_S: f64 = 100.0;

#[derive(Args, Clone)]
pub struct SchedulerArgs {
    /// Simulated node counts, one scenario each (fresh Redis and coordinator).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    nodes: Vec<usize>,
    /// Deployments created per scenario (one app each).
    #[arg(long, default_value_t = 5_000)]
    jobs: usize,
    /// Concurrent API clients creating them.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Offer the deployments at this many a second (each POST starts at its slot, and its
    /// latencies count from that slot, so a coordinator that falls behind is charged for the
    /// wait) instead of as fast as the API answers: the latency at a given load.
    #[arg(long)]
    rate: Option<f64>,
    /// Apps in Redis during the idle measurement (the load's, topped up straight into Redis).
    #[arg(long, default_value_t = 10_000)]
    idle_apps: usize,
    /// Seconds of the idle measurement (heartbeats only) on the largest fleet; 0 skips it.
    #[arg(long, default_value_t = 20)]
    idle_s: u64,
    /// How the simulated nodes end each deployment.
    #[arg(long, value_enum, default_value_t = Outcome::Succeeded)]
    outcome: Outcome,
    /// Use this Redis (an empty database; flushed between scenarios) instead of starting one.
    #[arg(long)]
    redis_url: Option<String>,
    /// CI-sized: 20 nodes, 200 jobs, 8 clients, no idle phase.
    #[arg(long)]
    quick: bool,
    /// Run this `berth` binary's coordinator instead of this one's (a build of another commit,
    /// for a baseline measured side by side with the same bench).
    #[arg(long)]
    coordinator_bin: Option<PathBuf>,
    /// How many nice steps (0–19) below the Redis and coordinator it starts, which keep this
    /// process's priority, the load generator and the simulated fleet run. On a real fleet the
    /// nodes are other machines: on one machine they should not take the system under test's
    /// CPU when both want it (they still get every cycle the coordinator and Redis leave).
    /// 0: the same priority.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    fleet_nice: i32,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// `building`, then `succeeded` with an image: a real deployment's writes.
    Succeeded,
    /// `failed` with the error "simulated node".
    Failed,
}

/// Latency figures, in milliseconds.
#[derive(Serialize, Default)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Latency {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Latency {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

#[derive(Serialize)]
struct LoadResult {
    nodes: usize,
    jobs: usize,
    clients: usize,
    /// Deployment POSTs the API refused or that failed.
    api_errors: usize,
    /// Jobs a simulated node read (each counted once).
    dispatched: usize,
    /// Jobs read more than once (a re-sent job).
    duplicates: usize,
    /// Distinct nodes that received jobs.
    nodes_used: usize,
    /// The offered rate (`--rate`), or `None`: as fast as the API answers.
    rate: Option<f64>,
    jobs_per_s: f64,
    /// Deployments ended (every one terminal) per second, from the first POST until none was
    /// active: what the coordinator sustains with the nodes' events applied.
    ended_per_s: f64,
    dispatch_ms: Latency,
    /// The POST alone (request to response).
    post_ms: Latency,
    /// Deployments by status once settled.
    statuses: BTreeMap<String, usize>,
    /// Every deployment the load created ended terminal.
    all_terminal: bool,
    /// Creating the apps beforehand, through the API.
    apps_per_s: f64,
    /// Coordinator CPU (% of one core) from the first POST to the last read, and its peak RSS.
    coordinator_cpu_pct: f64,
    coordinator_peak_rss_mb: f64,
    /// CPU time per deployment, from the first POST until none is active.
    cpu_ms_per_deployment: WorkMs,
}

/// CPU milliseconds per deployment: the coordinator, Redis (from its `INFO cpu`) and this
/// process (the API clients and the simulated nodes).
#[derive(Serialize, Clone, Copy)]
struct WorkMs {
    coordinator: f64,
    redis: f64,
    bench: f64,
}

/// CPU seconds used so far by the coordinator, Redis and this process.
struct Work {
    coordinator: ProcUsage,
    redis_s: f64,
    bench: ProcUsage,
}

impl Work {
    async fn read(conn: &Redis, coordinator: i32) -> Result<Work> {
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut conn.clone())
            .await?;
        let redis_s = info
            .lines()
            .filter_map(|l| {
                l.strip_prefix("used_cpu_sys:")
                    .or_else(|| l.strip_prefix("used_cpu_user:"))
            })
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .sum();
        Ok(Work {
            coordinator: ProcUsage::read(coordinator)?,
            redis_s,
            bench: ProcUsage::read(std::process::id() as i32)?,
        })
    }

    fn per_deployment_ms(&self, before: &Work, n: usize) -> WorkMs {
        let per = |s: f64| s * 1e3 / n.max(1) as f64;
        WorkMs {
            coordinator: per(self.coordinator.secs_since(&before.coordinator)),
            redis: per(self.redis_s - before.redis_s),
            bench: per(self.bench.secs_since(&before.bench)),
        }
    }
}

#[derive(Serialize)]
struct IdleResult {
    nodes: usize,
    apps: usize,
    seconds: f64,
    coordinator_cpu_pct: f64,
    coordinator_rss_mb: f64,
    coordinator_peak_rss_mb: f64,
    /// `None` with `--redis-url` (not this bench's process).
    redis_cpu_pct: Option<f64>,
    redis_rss_mb: Option<f64>,
    /// This process: the simulated nodes' heartbeats.
    bench_cpu_pct: f64,
}

#[derive(Serialize)]
struct Report {
    outcome: Outcome,
    /// `--fleet-nice`: how many nice steps below the coordinator and Redis the simulated fleet
    /// and load generator ran.
    fleet_nice: i32,
    load: Vec<LoadResult>,
    idle: Option<IdleResult>,
}

pub fn run(mut args: SchedulerArgs, json: bool) -> Result<()> {
    if args.quick {
        args.nodes = vec![20];
        args.jobs = 200;
        args.clients = 8;
        args.idle_s = 0;
    }
    if args.nodes.is_empty() || args.nodes.contains(&0) || args.jobs == 0 || args.clients == 0 {
        bail!("--nodes, --jobs and --clients must be positive");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of deployments a second");
    }
    let most = args.nodes.iter().max().copied().unwrap_or(0);
    room_for_connections(most + args.clients + 64)?;
    let dir = TempDir::new()?;
    // One thread: the load generator and the simulated fleet share the machine with the
    // coordinator and Redis, and a thread of their own costs them less than two workers handing
    // tasks to each other (their wake-ups and context switches were a fifth of its CPU).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Before this thread's priority is lowered: the processes it starts inherit its thread's.
    let launcher = Launcher::start()?;
    lower_this_threads_priority(args.fleet_nice)?;
    let report = rt.block_on(bench(&args, &dir.0, &launcher))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    let incomplete = report
        .load
        .iter()
        .any(|l| l.dispatched < l.jobs - l.api_errors || !l.all_terminal || l.api_errors > 0);
    if incomplete {
        bail!("a job was not dispatched or a deployment did not end terminal (see above)");
    }
    Ok(())
}

/// Starts the bench's child processes (Redis, the coordinator) from a thread of its own, which
/// keeps the priority this process started with: on Linux a thread's nice value is its own, and a
/// process started from a thread inherits that thread's (see [`lower_this_threads_priority`]).
struct Launcher(std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>);

impl Launcher {
    fn start() -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("launcher".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })?;
        Ok(Launcher(tx))
    }

    /// Runs `start` on the launcher's thread; the runtime's thread (the fleet) goes on meanwhile.
    async fn run<T: Send + 'static>(
        &self,
        start: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0
            .send(Box::new(move || {
                let _ = tx.send(start());
            }))
            .map_err(|_| anyhow::anyhow!("the launcher thread is gone"))?;
        rx.await.context("the launcher thread stopped")?
    }
}

/// Raises the calling thread's nice value by `steps` (`--fleet-nice`; at most to 19): the
/// runtime's one thread, which is the load generator and the simulated fleet. Raising it needs
/// no privilege.
fn lower_this_threads_priority(steps: i32) -> Result<()> {
    use rustix::process::{getpriority_process, setpriority_process};
    if steps == 0 {
        return Ok(());
    }
    // No pid: the caller, which on Linux is this thread (nice is a per-thread attribute there).
    let now = getpriority_process(None).context("reading this thread's nice value")?;
    setpriority_process(None, (now + steps).min(19)).context("setting the fleet's nice value")
}

/// Makes room for `n` open files: every simulated node holds a connection of its own. Raises
/// the soft limit up to the hard one when it is lower, and says so when even that is too low.
fn room_for_connections(n: usize) -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = n as u64;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= want {
        return Ok(());
    }
    if hard < want {
        bail!(
            "the simulated nodes need {want} open files (a connection each) and this process may \
             open at most {hard} (ulimit -Hn): raise it or simulate fewer nodes"
        );
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, hard)?;
    Ok(())
}

async fn bench(args: &SchedulerArgs, dir: &Path, launcher: &Launcher) -> Result<Report> {
    if let Some(url) = &args.redis_url {
        let mut c = berth_bus::Redis::connect(url, "bench").await?;
        let n: u64 = redis::cmd("DBSIZE").query_async(&mut c).await?;
        if n > 0 {
            bail!("the database at --redis-url holds {n} keys: the bench needs an empty one (it flushes it between scenarios)");
        }
    }
    let largest = args.nodes.iter().copied().max().unwrap_or(0);
    let repo = bench_repo(dir)?;
    let mut load = Vec::new();
    let mut idle = None;
    for (i, &n) in args.nodes.iter().enumerate() {
        let sdir = dir.join(format!("scenario-{i}"));
        std::fs::create_dir_all(&sdir)?;
        // Redis for this scenario: started fresh, or the given one emptied.
        let (redis, url) = match &args.redis_url {
            Some(url) => {
                let mut c = berth_bus::Redis::connect(url, "bench").await?;
                let _: () = redis::cmd("FLUSHDB").query_async(&mut c).await?;
                (None, url.clone())
            }
            None => {
                let d = sdir.join("redis");
                let (svc, url) = launcher.run(move || services::start_redis(&d)).await?;
                (Some(svc), url)
            }
        };
        let conn = berth_bus::Redis::connect(&url, "bench").await?;
        let fleet = Fleet::start(conn.clone(), n, args.outcome).await?;
        // Off the runtime's one thread: the fleet beats meanwhile.
        let (u, d, bin) = (url.clone(), sdir.clone(), args.coordinator_bin.clone());
        let coord = launcher
            .run(move || CoordinatorProcess::start(&u, &d, bin.as_deref()))
            .await?;
        eprintln!("scheduler bench: {n} nodes, {} jobs", args.jobs);
        let result = run_load(args, n, &coord, &fleet, &conn, &repo).await?;
        load.push(result);
        if n == largest && args.idle_s > 0 && idle.is_none() {
            let redis_pid = redis.as_ref().map(|r| r.pid());
            idle = Some(run_idle(args, n, &coord, redis_pid, &conn).await?);
        }
        fleet.stop().await;
        drop(coord);
        drop(redis);
    }
    Ok(Report {
        outcome: args.outcome,
        fleet_nice: args.fleet_nice,
        load,
        idle,
    })
}

/// A git repository with one commit on `main`, for the apps to name: creating an app checks
/// that its repository and branch can be reached (the simulated nodes never clone it).
fn bench_repo(dir: &Path) -> Result<String> {
    let repo = dir.join("repo");
    let git = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args([
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@berth.invalid",
            ])
            .args(args)
            .output()
            .context("running git")?;
        if !out.status.success() {
            bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    std::fs::create_dir_all(&repo)?;
    git(&["init", "-q", "-b", "main"])?;
    git(&["commit", "-q", "--allow-empty", "-m", "bench"])?;
    Ok(repo.to_string_lossy().into_owned())
}

// ---- the load ----

async fn run_load(
    args: &SchedulerArgs,
    nodes: usize,
    coord: &CoordinatorProcess,
    fleet: &Fleet,
    conn: &Redis,
    repo: &str,
) -> Result<LoadResult> {
    let http = reqwest::Client::new();
    let api = Api {
        http: &http,
        base: &coord.api,
        token: &coord.token,
    };
    let names: Arc<Vec<String>> = Arc::new((0..args.jobs).map(|i| format!("app-{i:06}")).collect());
    // The apps, through the API.
    let started = Instant::now();
    let created = concurrently(args.clients, names.len(), |i| {
        let body = serde_json::json!({"name": names[i], "repo": repo, "port": 8080});
        let api = api.clone();
        async move { api.post("/api/v1/apps", &body).await.map(|_| ()) }
    })
    .await;
    if let Some(e) = created.iter().find_map(|r| r.as_ref().err()) {
        bail!("creating the apps: {e:#}");
    }
    let apps_per_s = names.len() as f64 / started.elapsed().as_secs_f64();

    // The deployments: as fast as the API takes them.
    let cpu_before = ProcUsage::read(coord.pid())?;
    // CPU spent on the whole of each deployment, by process (less noisy than the rates).
    let work_before = Work::read(conn, coord.pid()).await?;
    // Each POST's address parsed beforehand: the load generator's own work stays small beside
    // the coordinator's, with which it shares the machine.
    let urls = names
        .iter()
        .map(|n| api.url(&format!("/api/v1/apps/{n}/deployments")))
        .collect::<Result<Vec<_>>>()?;
    let first_post = Instant::now();
    let rate = args.rate;
    let posted = concurrently(args.clients, names.len(), |i| {
        let url = urls[i].clone();
        let api = api.clone();
        async move {
            let t0 = match rate {
                Some(r) => {
                    let slot = first_post + Duration::from_secs_f64(i as f64 / r);
                    tokio::time::sleep_until(slot.into()).await;
                    slot
                }
                None => Instant::now(),
            };
            let id = api.create_deployment(url).await?;
            anyhow::Ok((id, t0, t0.elapsed()))
        }
    })
    .await;
    let mut api_errors = 0;
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut post_ms = Vec::new();
    for r in posted {
        match r {
            Ok((id, t0, took)) => {
                sent.insert(id, t0);
                post_ms.push(took.as_secs_f64() * 1e3);
            }
            Err(e) => {
                if api_errors == 0 {
                    eprintln!("a deployment POST failed: {e:#}");
                }
                api_errors += 1;
            }
        }
    }
    // Until every job was read (or the deadline).
    let deadline = Instant::now() + SETTLE;
    let last_read = loop {
        let last = {
            let reads = fleet.reads.lock().unwrap_or_else(|p| p.into_inner());
            let done = sent.keys().all(|id| reads.contains_key(id));
            (done || Instant::now() > deadline).then(|| {
                sent.keys()
                    .filter_map(|id| reads.get(id).map(|r| r.at))
                    .max()
                    .unwrap_or(first_post)
            })
        };
        if let Some(last) = last {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu_after = ProcUsage::read(coord.pid())?;
    let (dispatch_ms, dispatched, nodes_used) = {
        let reads = fleet.reads.lock().unwrap_or_else(|p| p.into_inner());
        let mut lat = Vec::new();
        let mut used = HashSet::new();
        for (id, t0) in &sent {
            if let Some(r) = reads.get(id) {
                lat.push(r.at.duration_since(*t0).as_secs_f64() * 1e3);
                used.insert(r.node.clone());
            }
        }
        let n = lat.len();
        (Latency::of(lat), n, used.len())
    };
    let (ended, statuses) = settle(conn, &sent.keys().cloned().collect::<Vec<_>>()).await?;
    let work = Work::read(conn, coord.pid())
        .await?
        .per_deployment_ms(&work_before, sent.len());
    let terminal: usize = statuses
        .iter()
        .filter(|(s, _)| ["succeeded", "failed", "cancelled"].contains(&s.as_str()))
        .map(|(_, n)| n)
        .sum();
    let span = last_read.duration_since(first_post).as_secs_f64().max(1e-3);
    Ok(LoadResult {
        nodes,
        jobs: args.jobs,
        clients: args.clients,
        rate: args.rate,
        api_errors,
        dispatched,
        duplicates: fleet.duplicates.load(Ordering::Relaxed),
        nodes_used,
        jobs_per_s: dispatched as f64 / span,
        ended_per_s: sent.len() as f64 / ended.duration_since(first_post).as_secs_f64().max(1e-3),
        dispatch_ms,
        post_ms: Latency::of(post_ms),
        all_terminal: terminal == sent.len(),
        statuses,
        apps_per_s,
        coordinator_cpu_pct: cpu_after.pct_since(&cpu_before),
        coordinator_peak_rss_mb: proc_status_mb(coord.pid(), "VmHWM:")?,
        cpu_ms_per_deployment: work,
    })
}

/// Waits until no deployment is active (or the deadline), then counts `ids` by status.
/// Waits until no deployment is active (or the deadline); answers when that was, and the
/// deployments by status.
async fn settle(conn: &Redis, ids: &[String]) -> Result<(Instant, BTreeMap<String, usize>)> {
    let deadline = Instant::now() + SETTLE;
    let mut c = conn.clone();
    let ended = loop {
        let active: usize = redis::cmd("SCARD")
            .arg(keys::ACTIVE_DEPLOYMENTS)
            .query_async(&mut c)
            .await?;
        if active == 0 || Instant::now() > deadline {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut statuses = BTreeMap::new();
    for chunk in ids.chunks(1_000) {
        let raw: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(
                chunk
                    .iter()
                    .map(|id| keys::deployment(id))
                    .collect::<Vec<_>>(),
            )
            .query_async(&mut c)
            .await?;
        for bytes in raw {
            let status = match bytes.map(|b| envelope::decode::<Deployment>(&b, kind::DEPLOYMENT)) {
                Some(Ok(d)) => d.status.to_string(),
                Some(Err(_)) => "unreadable".into(),
                None => "missing".into(),
            };
            *statuses.entry(status).or_default() += 1;
        }
    }
    Ok((ended, statuses))
}

// ---- the idle fleet ----

async fn run_idle(
    args: &SchedulerArgs,
    nodes: usize,
    coord: &CoordinatorProcess,
    redis_pid: Option<i32>,
    conn: &Redis,
) -> Result<IdleResult> {
    let have = args.jobs;
    if args.idle_apps > have {
        seed_apps(conn, have, args.idle_apps).await?;
    }
    let mut c = conn.clone();
    let apps: usize = redis::cmd("SCARD")
        .arg(keys::APPS)
        .query_async(&mut c)
        .await?;
    // The app list once, as a dashboard would: the coordinator then holds its cached copy.
    let http = reqwest::Client::new();
    let api = Api {
        http: &http,
        base: &coord.api,
        token: &coord.token,
    };
    let listed = api.get("/api/v1/apps").await?;
    let listed = listed.as_array().map_or(0, Vec::len);
    if listed != apps {
        bail!("the API lists {listed} apps, Redis holds {apps}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let me = std::process::id() as i32;
    let (c0, r0, b0) = (
        ProcUsage::read(coord.pid())?,
        redis_pid.map(ProcUsage::read).transpose()?,
        ProcUsage::read(me)?,
    );
    eprintln!(
        "idle: {nodes} nodes heartbeating, {apps} apps, {} s",
        args.idle_s
    );
    tokio::time::sleep(Duration::from_secs(args.idle_s)).await;
    let (c1, r1, b1) = (
        ProcUsage::read(coord.pid())?,
        redis_pid.map(ProcUsage::read).transpose()?,
        ProcUsage::read(me)?,
    );
    Ok(IdleResult {
        nodes,
        apps,
        seconds: c1.at.duration_since(c0.at).as_secs_f64(),
        coordinator_cpu_pct: c1.pct_since(&c0),
        coordinator_rss_mb: proc_status_mb(coord.pid(), "VmRSS:")?,
        coordinator_peak_rss_mb: proc_status_mb(coord.pid(), "VmHWM:")?,
        redis_cpu_pct: r0.zip(r1).map(|(a, b)| b.pct_since(&a)),
        redis_rss_mb: redis_pid.map(|p| proc_status_mb(p, "VmRSS:")).transpose()?,
        bench_cpu_pct: b1.pct_since(&b0),
    })
}

/// Writes apps `app-<from>` … `app-<to - 1>` straight into Redis, as `tests/src/seed.rs` does,
/// and raises the change log's floor so the coordinator reads the list again in full.
async fn seed_apps(conn: &Redis, from: usize, to: usize) -> Result<()> {
    // A copy of the first app the API created.
    let mut c = conn.clone();
    let raw: Vec<u8> = c.get(keys::app("app-000000")).await?;
    let template: App = envelope::decode(&raw, kind::APP).context("the app template")?;
    for chunk in (from..to).collect::<Vec<_>>().chunks(1_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let mut a = template.clone();
            a.name = format!("app-{i:06}");
            a.domains = vec![format!("{}.localhost", a.name)];
            let record = envelope::encode(kind::APP, &a.name, &a)?;
            pipe.set(keys::app(&a.name), record)
                .ignore()
                .sadd(keys::APPS, &a.name)
                .ignore();
        }
        let _: () = pipe.query_async(&mut c).await?;
    }
    let _: () = redis::cmd("EVAL")
        .arg("redis.call('SET', KEYS[2], redis.call('INCR', KEYS[1]))")
        .arg(2)
        .arg(keys::APPS_VERSION)
        .arg(keys::APPS_CHANGES_FLOOR)
        .query_async(&mut c)
        .await?;
    Ok(())
}

// ---- the simulated nodes ----

/// When and where a job was read.
struct Read {
    at: Instant,
    node: String,
}

struct Fleet {
    /// Deployment id → its job's first read.
    reads: Arc<Mutex<HashMap<String, Read>>>,
    duplicates: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Registers `n` nodes (one heartbeat each, awaited), then keeps them beating and reading.
    async fn start(conn: Redis, n: usize, outcome: Outcome) -> Result<Self> {
        let names: Vec<String> = (0..n).map(|i| format!("sim-{i:04}")).collect();
        let beats: Vec<Beat> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Beat {
                name: name.clone(),
                address: "127.0.0.1".into(),
                ingress_http: 80,
                ingress_https: None,
                started_at: now_ms(),
                labels: [("zone".to_string(), ["a", "b", "c"][i % 3].to_string())].into(),
                cpus: 4,
                build_slots: 2,
                engine: Some("simulated".into()),
            })
            .collect();
        for b in &beats {
            beat(&conn, b, 0, Some(host())).await?;
        }
        let mut tasks = JoinSet::new();
        for (i, b) in beats.into_iter().enumerate() {
            let conn = conn.clone();
            // Spread over the second, as independent nodes are.
            let offset = BEAT_EVERY.mul_f64(i as f64 / n as f64);
            tasks.spawn(async move {
                tokio::time::sleep(offset).await;
                let mut every = tokio::time::interval(BEAT_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    if let Err(e) = beat(&conn, &b, 0, Some(host())).await {
                        tracing::warn!(node = %b.name, error = %e, "heartbeat failed");
                    }
                }
            });
        }
        let reads = Arc::new(Mutex::new(HashMap::new()));
        let duplicates = Arc::new(AtomicUsize::new(0));
        for node in names {
            let mut blocking = conn.connect_blocking(Duration::from_secs(1)).await?;
            let stream = keys::jobs(&node);
            let r: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(keys::JOBS_GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut blocking)
                .await;
            if let Err(e) = r {
                if e.code() != Some("BUSYGROUP") {
                    return Err(e.into());
                }
            }
            let reader = Reader {
                node,
                stream,
                conn: conn.clone(),
                reads: reads.clone(),
                duplicates: duplicates.clone(),
                outcome,
            };
            tasks.spawn(reader.run(blocking));
        }
        Ok(Fleet {
            reads,
            duplicates,
            tasks,
        })
    }

    async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What a simulated node's host reports: plenty of memory, little load.
fn host() -> HostStats {
    HostStats {
        ts: now_ms(),
        cpu_pct: 5.0,
        mem_total_bytes: 8 << 30,
        mem_available_bytes: 6 << 30,
        disk_total_bytes: 100 << 30,
        disk_available_bytes: 60 << 30,
        containers: 0,
    }
}

/// A simulated node's reading of its job stream: it acknowledges and reports each job at once.
struct Reader {
    node: String,
    stream: String,
    conn: Redis,
    reads: Arc<Mutex<HashMap<String, Read>>>,
    duplicates: Arc<AtomicUsize>,
    outcome: Outcome,
}

impl Reader {
    async fn run(self, mut blocking: redis::aio::MultiplexedConnection) {
        let mut conn = self.conn.clone();
        let mut last_trim = Instant::now();
        loop {
            let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(keys::JOBS_GROUP)
                    .arg(&self.node)
                    .arg("COUNT")
                    .arg(100)
                    .arg("BLOCK")
                    .arg(1_000)
                    .arg("STREAMS")
                    .arg(&self.stream)
                    .arg(">")
                    .query_async(&mut blocking)
                    .await;
            let at = Instant::now();
            let reply = match reply {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(node = %self.node, error = %e, "simulated node: reading jobs failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let mut pipe = redis::pipe();
            let mut got = Vec::new();
            let mut last_id = None;
            for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                pipe.xack(&self.stream, keys::JOBS_GROUP, &[&entry.id])
                    .ignore();
                last_id = Some(entry.id.clone());
                let Some(bytes) = entry.get::<Vec<u8>>(STREAM_FIELD) else {
                    continue;
                };
                let Some((deployment_id, app)) = deploy_job(&bytes) else {
                    continue;
                };
                for u in updates(&deployment_id, &app, &self.node, self.outcome) {
                    let id = format!("{}-{}", deployment_id, u.status);
                    let Ok(ev) = envelope::encode(EVENT_KIND, &id, &Event::Deployment(u)) else {
                        continue;
                    };
                    pipe.cmd("XADD")
                        .arg(keys::EVENTS)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(keys::EVENTS_MAXLEN)
                        .arg("*")
                        .arg(STREAM_FIELD)
                        .arg(ev)
                        .ignore();
                }
                got.push(deployment_id);
            }
            // What the node's job consumer sends once a second while jobs come in
            // (`trim_acked_every`): the group's pending summary, then a trim of what it
            // acknowledged (here, all it read: the acknowledgements precede it).
            if let Some(id) = last_id.filter(|_| last_trim.elapsed() >= job_consumer::TRIM_EVERY) {
                last_trim = Instant::now();
                pipe.cmd("XPENDING")
                    .arg(&self.stream)
                    .arg(keys::JOBS_GROUP)
                    .ignore();
                pipe.cmd("XTRIM")
                    .arg(&self.stream)
                    .arg("MINID")
                    .arg("~")
                    .arg(id)
                    .ignore();
            }
            {
                let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
                for id in got {
                    match reads.entry(id) {
                        Entry::Occupied(_) => {
                            self.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        Entry::Vacant(v) => {
                            v.insert(Read {
                                at,
                                node: self.node.clone(),
                            });
                        }
                    }
                }
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(error = %e, "simulated node: acknowledging or reporting failed");
            }
        }
    }
}

/// What a simulated node reads of a job: a deploy job's deployment id and app name, from an
/// envelope of the job kind and this protocol version (`None`: another job, or not a job). The
/// job's other fields are skipped unread; what they hold is the coordinator tests' concern
/// (`deployment::tests`), and a real node's decode runs on its own server.
fn deploy_job(bytes: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Key {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        deployment_id: Option<String>,
        #[serde(default)]
        app: Option<AppName>,
    }
    #[derive(serde::Deserialize)]
    struct AppName {
        name: String,
    }
    let key = envelope::decode::<Key>(bytes, JOB_KIND).ok()?;
    (key.kind == "deploy").then_some(())?;
    Some((key.deployment_id?, key.app?.name))
}

/// What a simulated node reports for a job, in order (its name is filled in as `EventSink` does).
fn updates(id: &str, app: &str, node: &str, outcome: Outcome) -> Vec<DeploymentUpdate> {
    let with_node = |mut u: DeploymentUpdate| {
        u.node = Some(node.to_string());
        u
    };
    match outcome {
        Outcome::Succeeded => {
            let mut done = DeploymentUpdate::new(id, DeploymentStatus::Succeeded);
            done.image = Some(format!("berth/{app}:{id}"));
            done.container = Some(format!("sim-{id}"));
            vec![
                with_node(DeploymentUpdate::new(id, DeploymentStatus::Building)),
                with_node(done),
            ]
        }
        Outcome::Failed => vec![with_node(DeploymentUpdate::ended(
            id,
            DeploymentStatus::Failed,
            "simulated node",
        ))],
    }
}

// ---- the coordinator process ----

/// `berth coordinator` as a child process; terminated when dropped.
struct CoordinatorProcess {
    /// Stopped on drop, with the coordinator's own shutdown deadline (and 5 s) before a kill.
    process: Service,
    api: String,
    token: String,
}

impl CoordinatorProcess {
    fn start(redis_url: &str, dir: &Path, bin: Option<&Path>) -> Result<Self> {
        let token: String = rand::rng()
            .random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let exe = match bin {
            Some(b) => b.to_path_buf(),
            None => std::env::current_exe().context("finding this binary")?,
        };
        let log_path = dir.join("coordinator.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(&exe);
        // Only what is set here configures it.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BERTH_") {
                cmd.env_remove(k);
            }
        }
        // The bench's apps name a repository on this machine: a coordinator that knows
        // `allow_local_repos` must be told (older ones, run as a baseline, refuse the key).
        if knows_setting(&exe, "allow_local_repos") {
            cmd.env("BERTH_ALLOW_LOCAL_REPOS", "true");
        }
        let mut child = cmd
            .arg("coordinator")
            .env("BERTH_REDIS__URL", redis_url)
            .env("BERTH_API__LISTEN", "127.0.0.1:0")
            .env("BERTH_API__TOKEN", &token)
            .env("BERTH_DATA_DIR", dir.join("coordinator"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting `berth coordinator`")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, api)) = line.split_once("API: ") {
                    let _ = tx.send(api.trim().to_string());
                }
            }
        });
        let grace = crate::server::SHUTDOWN_DEADLINE + Duration::from_secs(5);
        let mut p = CoordinatorProcess {
            process: Service::new("berth coordinator", child, grace),
            api: String::new(),
            token,
        };
        p.api = rx.recv_timeout(Duration::from_secs(30)).with_context(|| {
            format!(
                "the coordinator did not come up; see {}",
                log_path.display()
            )
        })?;
        Ok(p)
    }

    fn pid(&self) -> i32 {
        self.process.pid()
    }
}

// ---- HTTP ----

#[derive(Clone)]
struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
}

/// The part of a created deployment the load reads: its id (the rest is skipped unread).
#[derive(serde::Deserialize)]
struct CreatedId {
    id: String,
}

impl Api<'_> {
    fn url(&self, path: &str) -> Result<reqwest::Url> {
        reqwest::Url::parse(&format!("{}{path}", self.base)).context("an API address")
    }

    /// `POST …/deployments` with no options at `url`: the new deployment's id.
    async fn create_deployment(&self, url: reqwest::Url) -> Result<String> {
        let r = self
            .http
            .post(url)
            .bearer_auth(self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await?;
        let status = r.status();
        let bytes = r.bytes().await?;
        if !status.is_success() {
            bail!("{status}: {}", String::from_utf8_lossy(&bytes));
        }
        let created: CreatedId =
            serde_json::from_slice(&bytes).context("no deployment id in the answer")?;
        Ok(created.id)
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .json(body)
            .send()
            .await?;
        answer(r).await
    }

    async fn get(&self, path: &str) -> Result<serde_json::Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .send()
            .await?;
        answer(r).await
    }
}

async fn answer(r: reqwest::Response) -> Result<serde_json::Value> {
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// Runs `f(0) … f(n - 1)` from `clients` concurrent workers; the results in index order.
async fn concurrently<T, F, Fut>(clients: usize, n: usize, f: F) -> Vec<Result<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
    let worker = || async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            let r = f(i).await;
            results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
        }
    };
    futures_util::future::join_all((0..clients).map(|_| worker())).await;
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("not run"))))
        .collect()
}

// ---- /proc ----

/// CPU time a process used so far (user + system), and when it was read.
struct ProcUsage {
    ticks: u64,
    at: Instant,
}

impl ProcUsage {
    fn read(pid: i32) -> Result<ProcUsage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces) start at field 3, `state`;
        // utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Result<u64> {
            f.get(n - 3)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("/proc/{pid}/stat: no field {n}"))
        };
        Ok(ProcUsage {
            ticks: field(14)? + field(15)?,
            at: Instant::now(),
        })
    }

    /// CPU seconds used between `before` and this reading.
    fn secs_since(&self, before: &ProcUsage) -> f64 {
        self.ticks.saturating_sub(before.ticks) as f64 / TICKS_PER_S
    }

    /// CPU used between `before` and this reading, in % of one core.
    fn pct_since(&self, before: &ProcUsage) -> f64 {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
        (self.ticks.saturating_sub(before.ticks)) as f64 / TICKS_PER_S / secs * 100.0
    }
}

/// A `kB` figure of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in MB.
fn proc_status_mb(pid: i32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("/proc/{pid}/status: no {field}"))?;
    Ok(kb / 1024.0)
}

// ---- the rest ----

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let n: u64 = rand::rng().random();
        let dir = std::env::temp_dir().join(format!("berth-bench-{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn print_report(r: &Report) {
    let outcome = match r.outcome {
        Outcome::Succeeded => "building, then succeeded",
        Outcome::Failed => "failed",
    };
    println!(
        "Scheduler bench (simulated nodes report: {outcome}; the fleet and load generator {} nice steps below the coordinator and Redis)",
        r.fleet_nice
    );
    println!(
        "{:>6} {:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>6}",
        "nodes",
        "jobs",
        "jobs/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "POST p99",
        "coord CPU",
        "peak RSS",
        "dispatch",
        "used"
    );
    for l in &r.load {
        println!(
            "{:>6} {:>6} {:>8.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.0}% {:>6.1}MB {:>8} {:>6}",
            l.nodes,
            l.jobs,
            l.jobs_per_s,
            l.dispatch_ms.p50,
            l.dispatch_ms.p99,
            l.dispatch_ms.max,
            l.post_ms.p99,
            l.coordinator_cpu_pct,
            l.coordinator_peak_rss_mb,
            l.dispatched,
            l.nodes_used
        );
        println!(
            "       offered {}; statuses {:?}; API errors {}, duplicate jobs {}; apps created at {:.0}/s",
            match l.rate {
                Some(r) => format!("at {r:.0} deployments/s (--rate)"),
                None => format!("as fast as {} clients get answers", l.clients),
            },
            l.statuses,
            l.api_errors,
            l.duplicates,
            l.apps_per_s
        );
        println!(
            "       every deployment terminal at {:.0} deployments/s (first POST to none active)",
            l.ended_per_s
        );
        let w = l.cpu_ms_per_deployment;
        println!(
            "       CPU per deployment (first POST to none active): coordinator {:.3} ms, Redis {:.3} ms, this process {:.3} ms",
            w.coordinator, w.redis, w.bench
        );
    }
    if let Some(i) = &r.idle {
        println!(
            "Idle, {} nodes heartbeating, {} apps, {:.0} s: coordinator {:.1}% of a core, RSS {:.1} MB (peak {:.1} MB); Redis {}; this process (the heartbeats) {:.1}%",
            i.nodes,
            i.apps,
            i.seconds,
            i.coordinator_cpu_pct,
            i.coordinator_rss_mb,
            i.coordinator_peak_rss_mb,
            match (i.redis_cpu_pct, i.redis_rss_mb) {
                (Some(c), Some(m)) => format!("{c:.1}% of a core, RSS {m:.1} MB"),
                _ => "not measured (--redis-url)".into(),
            },
            i.bench_cpu_pct
        );
    }
}

/// Whether the `berth` binary `exe` has the setting `key` (its `up --help` lists every one).
fn knows_setting(exe: &std::path::Path, key: &str) -> bool {
    Command::new(exe)
        .args(["up", "--help"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::{DeployJob, Job};

    /// A simulated node reads a deploy job's deployment and app from the job the coordinator
    /// encodes, and nothing from another job or from bytes that are not a job.
    #[test]
    fn a_simulated_node_reads_the_deployment_and_app_of_a_deploy_job() {
        let app: App = serde_json::from_value(serde_json::json!({
            "name": "app-000001",
            "repo": "https://example.invalid/r.git",
            "branch": "main",
            "dockerfile": "Dockerfile",
            "context": ".",
            "port": 8080,
            "domains": ["app-000001.localhost"],
            "created_at": 1,
            "updated_at": 1
        }))
        .unwrap();
        let job = Job::Deploy(Box::new(DeployJob {
            deployment_id: "d1".into(),
            app,
            git_ref: Some("main".into()),
            deadline_ms: 1,
            credential: None,
            env_secrets: None,
            runtime_secrets: None,
            image: None,
            reuse_container_of: None,
            keep_images: Some(vec!["berth/app-000001:d0".into()]),
            slot: None,
            attempt: 0,
            upload: None,
            no_cache: false,
        }));
        let bytes = envelope::encode(JOB_KIND, "j1", &job).unwrap();
        assert_eq!(
            deploy_job(&bytes),
            Some(("d1".to_string(), "app-000001".to_string()))
        );
        let stop = envelope::encode(JOB_KIND, "j2", &Job::StopApp { app: "a".into() }).unwrap();
        assert_eq!(deploy_job(&stop), None);
        let event = envelope::encode(
            EVENT_KIND,
            "e1",
            &Event::Deployment(DeploymentUpdate::new("d1", DeploymentStatus::Building)),
        )
        .unwrap();
        assert_eq!(deploy_job(&event), None);
        assert_eq!(deploy_job(b"junk"), None);
    }
}
