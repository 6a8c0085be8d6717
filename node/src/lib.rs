//! The Berth node daemon: one per server. It takes deployment jobs from its Redis stream, builds
//! and runs app containers on the local Docker engine, probes them, and points its Caddy at the
//! healthy ones, reporting every step back to the coordinator through Redis.
//!
//! Actors (actix 0.13, one file each): [`job_consumer::JobConsumer`] reads jobs,
//! [`deployer::Deployer`] runs them (the steps live in [`pipeline`]), [`router::Router`] is the
//! only writer of the node's Caddy, [`heartbeat::Heartbeat`] reports liveness,
//! [`log_shipper::LogShipper`] ships the app containers' output, [`stats::Stats`] samples them.
//! Each runs under the supervision tree (`berth_bus::Tree`, process `node:<name>`), which starts
//! it again when it dies. [`start`] must be called inside a running actix `System`.
//!
//! Shutdown: [`start`] takes the process's [`berth_bus::Shutdown`]. Every task the node spawns
//! (jobs, their background drain and prune, Caddy checks, log follows, the job consumer's
//! handlers) is tracked by it; the job consumer stops reading on (a child of) its token;
//! [`NodeHandle::shutdown`] then drains the jobs and stops the actors.

pub mod build_pack;
pub mod caddy;
pub mod containers;
pub mod deployer;
pub mod dockerignore;
pub mod engine_watch;
pub mod error;
pub mod event_sink;
pub mod exec;
pub mod heartbeat;
pub mod image_build;
pub mod job_consumer;
pub mod log_shipper;
pub mod log_sink;
pub mod pipeline;
pub mod ports;
pub mod probe;
pub mod registry;
pub mod resolver;
pub mod router;
pub mod source;
pub mod stats;
pub mod upload;
pub mod upstream_guard;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use berth_bus::{Live, Redis, Shutdown};
use bollard::Docker;
use tokio::sync::watch;

pub use error::{Error, Result};

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node name: its job stream, heartbeat key and container label.
    pub name: String,
    /// e.g. `redis://127.0.0.1:6379/`.
    pub redis_url: String,
    /// The Sentinels that name the Redis primary (`redis.sentinels`); `redis_url` then says how
    /// to speak to the data nodes only.
    pub redis_sentinels: Option<berth_bus::Sentinels>,
    /// `host:port` of the Caddy admin API, e.g. `127.0.0.1:2019`.
    pub caddy_admin: String,
    /// Port Caddy serves apps on.
    pub ingress_http: u16,
    /// Whether Caddy serves apps over HTTPS too, on which port, with which issuer (`node.https`).
    pub https: caddy::Https,
    /// `None`: the local engine; else `unix:///path` or `tcp://host:port`.
    pub docker_host: Option<String>,
    /// Address containers' published ports bind to and Caddy dials (default `127.0.0.1`).
    pub address: String,
    /// The node works under `data_dir/node/...` (build checkouts).
    pub data_dir: PathBuf,
    /// Opens apps' sealed git credentials; must equal the coordinator's key.
    pub secret_key: Option<berth_protocol::secret::SecretKey>,
    /// Time between two samples of container and host figures (the `Stats` actor).
    pub stats_interval: Duration,
    /// Labels announced in the heartbeat, which app placement constraints test.
    pub labels: BTreeMap<String, String>,
    /// Builds this node runs at once before the scheduler prefers others; 0: its CPU count.
    pub build_slots: u32,
    /// Where the DNS responder Caddy reads upstreams from listens (UDP and TCP; loopback).
    pub resolver_listen: std::net::SocketAddr,
    /// The registry nodes share images through (`registry.url`); `None`: one engine.
    pub registry: Option<registry::RegistryConfig>,
    /// Test-only: the supervision tree takes panics to inject from Redis (`test_hooks`).
    pub test_hooks: bool,
    /// Largest build context a build sends to Docker, in bytes; larger fails the deployment.
    pub build_context_max: u64,
    /// Whether apps may deploy from repositories on this machine (`allow_local_repos`; see
    /// `berth_protocol::repo_url`): checked again before every fetch.
    pub allow_local_repos: bool,
    /// The limits of an app container whose app sets none (`node.app_*`).
    pub app_limits: containers::LimitDefaults,
    /// What each build may use (`node.build_*`).
    pub build_limits: image_build::BuildLimits,
    /// The Docker network app containers and builds join (`node.app_network`).
    pub app_network: String,
    /// The base images of the Dockerfiles the `auto` and `static` build packs generate
    /// (`[packs]`).
    pub pack_images: berth_packs::Images,
    /// How many of Redis's replicas must acknowledge a claim (a job's, the switch's, an exec's)
    /// before the node acts on it (`redis.min_replicas_acked`; none by default).
    pub durability: berth_bus::Durability,
}

/// A running node; [`NodeHandle::shutdown`] stops it.
pub struct NodeHandle {
    /// Ends the event sink's retries once jobs are drained (an outcome not written by then stays
    /// in the outbox for the next start). Not a child of the shutdown token: the jobs draining
    /// after the signal still get their outcomes out.
    stop_events: tokio_util::sync::CancellationToken,
    consumer: Live<job_consumer::JobConsumer>,
    deployer: Live<deployer::Deployer>,
    router: Live<router::Router>,
    heartbeat: Live<heartbeat::Heartbeat>,
    stats: Live<stats::Stats>,
    shipper: Live<log_shipper::LogShipper>,
}

/// How long shutdown waits for jobs in progress before aborting them.
const DRAIN_JOBS: Duration = Duration::from_secs(10);

impl NodeHandle {
    /// Stops reading jobs, waits (bounded) for jobs in progress, then stops every actor. A job
    /// cut off here stays pending in its stream and is reported as interrupted on the next start.
    pub async fn shutdown(self) {
        let steps = async {
            let _ = self.consumer.send(job_consumer::StopConsumer).await;
            let _ = self.deployer.send(deployer::Drain(DRAIN_JOBS)).await;
            self.stop_events.cancel();
            let _ = self.heartbeat.send(heartbeat::StopHeartbeat).await;
            let _ = self.stats.send(stats::StopStats).await;
            let _ = self.router.send(router::StopRouter).await;
            let _ = self.shipper.send(log_shipper::StopShipper).await;
        };
        if tokio::time::timeout(DRAIN_JOBS + Duration::from_secs(5), steps)
            .await
            .is_err()
        {
            tracing::warn!("node shutdown timed out");
        }
    }
}

/// How often a node's start tries to bring its Caddy to the route table before it gives up.
const RESYNC_TRIES: u32 = 5;

/// The node's first [`router::RouterCore::resync`], tried again (after 1, 2, 4, 8 s) when
/// Caddy answers with an error or not in time: a Caddy busy loading a config (its first HTTPS
/// one sets up its CA) or restarting beside the node must not stop the node's start. A Caddy
/// that still fails after that is a configuration error the node reports and exits on.
async fn initial_resync(router: &router::RouterCore) -> Result<()> {
    let mut pause = std::time::Duration::from_secs(1);
    for attempt in 1.. {
        match router.resync().await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < RESYNC_TRIES => {
                tracing::warn!(error = %e, attempt, "could not set up Caddy yet; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

/// Connects to Redis, Docker and Caddy, sets Caddy up, starts the actors and returns once the
/// node is running. Must be called inside a running actix `System`. Its tasks are tracked by
/// `shutdown`; cancelling it stops reading jobs.
pub async fn start(cfg: NodeConfig, shutdown: &Shutdown) -> Result<NodeHandle> {
    berth_protocol::validate::app_name(&cfg.name)
        .map_err(|e| Error::Config(format!("node name: {e}")))?;
    let Ok(address) = cfg.address.parse::<std::net::Ipv4Addr>() else {
        return Err(Error::Config(format!(
            "node.advertise must be an IPv4 address (every node's Caddy dials it), not {:?}",
            cfg.address
        )));
    };

    redis::Client::open(cfg.redis_url.as_str()).map_err(|e| {
        let url = berth_bus::redacted(&cfg.redis_url);
        Error::Config(format!("redis url {url:?}: {e}"))
    })?;
    let redis = Redis::connect_with(&cfg.redis_url, cfg.redis_sentinels.as_ref(), "node").await?;
    {
        let mut c = redis.clone();
        redis::cmd("PING").query_async::<()>(&mut c).await?;
        berth_bus::consumer::ensure_group(
            &mut c,
            &berth_protocol::keys::jobs(&cfg.name),
            berth_protocol::keys::JOBS_GROUP,
        )
        .await?;
    }

    let docker = connect_docker(cfg.docker_host.as_deref()).await?;

    let builds_dir = cfg.data_dir.join("node").join("builds");
    tokio::fs::create_dir_all(&builds_dir)
        .await
        .map_err(|e| Error::io(format!("cannot create {}", builds_dir.display()), e))?;

    let caddy = caddy::CaddyAdmin::new(&cfg.caddy_admin)?;
    let table = resolver::Table::default();
    let resolver_addr =
        resolver::start(cfg.resolver_listen, table.clone(), shutdown.child_token())?;
    let router_core = router::RouterCore::new(
        caddy,
        redis.clone(),
        caddy::Ingress {
            http: cfg.ingress_http,
            https: cfg.https.clone(),
        },
        resolver_addr.to_string(),
        table,
        upstream_guard::UpstreamGuard::new(&cfg.name, address, docker.clone(), redis.clone()),
    );
    initial_resync(&router_core).await?;
    // The supervision tree: each actor is started now and again whenever it dies; a factory
    // holds only what outlives an actor (connections, the router's Caddy state, the jobs).
    let mut tree = berth_bus::Tree::new(
        format!("node:{}", cfg.name),
        redis.clone(),
        shutdown,
        cfg.test_hooks,
    );
    let router = tree.supervise("router", {
        let (core, sd, redis) = (router_core.clone(), shutdown.clone(), redis.clone());
        move || router::Router::new(core.clone(), sd.clone(), redis.clone())
    });

    let stop_events = tokio_util::sync::CancellationToken::new();
    let (running_tx, running_rx) = watch::channel(0u32);
    let running_tx = Arc::new(running_tx);
    for (k, v) in &cfg.labels {
        berth_protocol::validate::label_key(k)
            .and_then(|_| berth_protocol::validate::label_value(v))
            .map_err(|e| Error::Config(format!("node labels: {e}")))?;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let build_slots = if cfg.build_slots == 0 {
        cpus
    } else {
        cfg.build_slots
    };
    let beat = heartbeat::Beat {
        name: cfg.name.clone(),
        address: cfg.address.clone(),
        ingress_http: cfg.ingress_http,
        ingress_https: match &cfg.https {
            caddy::Https::Off => None,
            caddy::Https::On { port, .. } => Some(*port),
        },
        started_at: berth_protocol::now_ms(),
        labels: cfg.labels.clone(),
        cpus,
        build_slots,
        engine: docker.version().await.ok().and_then(|v| v.version),
    };
    heartbeat::beat(&redis, &beat, 0, None).await?;
    let (host_tx, host_rx) = watch::channel(None);
    let heartbeat = tree.supervise("heartbeat", {
        let redis = redis.clone();
        move || {
            heartbeat::Heartbeat::new(
                redis.clone(),
                beat.clone(),
                running_rx.clone(),
                host_rx.clone(),
            )
        }
    });
    let stats_cfg = stats::StatsConfig {
        docker: docker.clone(),
        redis: redis.clone(),
        node: cfg.name.clone(),
        data_dir: cfg.data_dir.clone(),
        interval: cfg.stats_interval,
        host_tx,
    };
    let stats = tree.supervise("stats", move || stats::Stats::new(stats_cfg.clone()));

    // The claims and outcomes that must survive a failover of Redis wait for its replicas
    // when `redis.min_replicas_acked` asks. The task stops with the events, after the jobs
    // drained: their outcomes are confirmed too.
    let replicas = berth_bus::Replicas::until(
        &redis,
        cfg.durability,
        &format!("node:{}", cfg.name),
        shutdown,
        stop_events.clone(),
    );
    // Outcomes an earlier run could not deliver go out before any job is read.
    let events = event_sink::EventSink::new(
        redis.clone(),
        cfg.name.clone(),
        cfg.data_dir.join("node").join("outbox"),
        stop_events.clone(),
    )?
    .with_replicas(replicas.clone());
    events.resend_outbox().await;

    // Which failures an engine restart caused (see `engine_watch`): followed from now on.
    let engine =
        engine_watch::EngineWatch::new(docker.clone(), cfg.docker_host.as_deref(), &cfg.name);
    engine.start(shutdown);
    // Routes follow a replica that the engine restarted onto a new host port (see `ports`).
    ports::start(
        docker.clone(),
        cfg.name.clone(),
        router_core.clone(),
        &engine,
        shutdown,
    );
    let probe_http = probe::client().map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
    let shipper_cfg = log_shipper::Shipper {
        docker: docker.clone(),
        redis: redis.clone(),
        node: cfg.name.clone(),
        secret_key: cfg.secret_key.clone(),
        shutdown: shutdown.clone(),
    };
    let shipper = tree.supervise("log_shipper", move || {
        log_shipper::LogShipper::new(shipper_cfg.clone())
    });
    let svc = Arc::new(pipeline::Services {
        node: cfg.name.clone(),
        address: cfg.address.clone(),
        builds_dir,
        builder: image_build::Builder::new(
            docker.clone(),
            cfg.build_context_max,
            cfg.build_limits,
            build_slots,
            cfg.app_network.clone(),
        ),
        docker,
        engine,
        redis: redis.clone(),
        replicas: replicas.clone(),
        router: router.clone(),
        events: events.clone(),
        probe_http,
        secret_key: cfg.secret_key.clone(),
        shutdown: shutdown.clone(),
        registry: cfg.registry.clone(),
        pending: Default::default(),
        stopping: Default::default(),
        in_use: Default::default(),
        test_hooks: cfg.test_hooks,
        allow_local_repos: cfg.allow_local_repos,
        limits: cfg.app_limits,
        cpus,
        app_network: cfg.app_network.clone(),
        pack_images: cfg.pack_images.clone(),
    });
    let jobs = Arc::new(deployer::Jobs::default());
    let deployer = tree.supervise("deployer", move || {
        deployer::Deployer::new(svc.clone(), jobs.clone(), running_tx.clone())
    });
    let stream = job_consumer::JobConsumer::stream_consumer(&cfg.name, redis, shutdown);
    let consumer = tree.supervise("job_consumer", {
        let (deployer, sd) = (deployer.clone(), shutdown.clone());
        move || job_consumer::JobConsumer::new(stream.clone(), deployer.clone(), &sd)
    });
    tree.start();
    tracing::info!(node = %cfg.name, "node started");
    Ok(NodeHandle {
        stop_events,
        consumer,
        deployer,
        router,
        heartbeat,
        shipper,
        stats,
    })
}

/// Connects to the Docker engine and settles on an API version both sides speak.
async fn connect_docker(host: Option<&str>) -> Result<Docker> {
    let docker = match host {
        None => Docker::connect_with_local_defaults()?,
        Some(h) => Docker::connect_with_host(h)?,
    };
    // Builds can take long; the job deadline bounds them, not the HTTP client.
    let docker = docker.with_timeout(Duration::from_secs(3600));
    let docker = docker.negotiate_version().await?;
    docker.ping().await?;
    Ok(docker)
}
