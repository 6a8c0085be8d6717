//! The server commands: `berth up` (everything on one machine), `berth coordinator`, `berth node`.
//!
//! Each runs an actix `System`; the coordinator and the node never call each other even when they
//! share the process — they meet only in Redis.
//!
//! Shutdown (Ctrl-C or SIGTERM) follows one pattern: one [`Shutdown`] (a cancellation token and
//! a task tracker) is created here and passed to `coordinator::start`, `node::start` and
//! `web::serve`; every task they spawn is tracked by it. On the signal the token is cancelled
//! (the API stops accepting, log follows end, the job and event readers stop), the node drains
//! its jobs (`NodeHandle::shutdown`), then the tracked tasks are waited for until
//! [`SHUTDOWN_DEADLINE`] after the signal; how many were still running is logged and they are
//! abandoned. Then the services `up` started are stopped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_bus::Shutdown;
use berth_coordinator::{CoordinatorConfig, Deadlines};
use berth_node::NodeConfig;
use berth_protocol::secret::SecretKey;
use rand::RngExt;

use crate::lock::{DataDirLock, Role};
use crate::services;
use crate::settings::{client_config_path, HttpsMode, Settings};

/// How long after Ctrl-C or SIGTERM the process waits for its work to end: the node's jobs get
/// the first 10 s of it (then they are aborted, and reported interrupted at the next start),
/// every other tracked task the rest. Tasks still running then are counted in the log and
/// abandoned.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

/// The API token: configured, or generated once into `<data_dir>/token` (mode 0600).
fn token(s: &Settings) -> Result<String> {
    if let Some(t) = &s.api.token {
        if t.len() < 16 {
            bail!("api.token must be at least 16 characters long");
        }
        return Ok(t.clone());
    }
    let path = s.data_dir.join("token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let bytes: [u8; 24] = rand::rng().random();
    let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let stored = create_private_once(&path, &t)?.trim().to_string();
    if stored.is_empty() {
        // An empty file left by an older version's interrupted write: replace it.
        write_private(&path, &t)?;
        return Ok(t);
    }
    Ok(stored)
}

/// The key sealing git credentials: configured, or `<data_dir>/secret.key` (created when
/// `create`, mode 0600). `None` when neither exists and creating is not allowed (a node).
fn secret_key(s: &Settings, create: bool) -> Result<Option<SecretKey>> {
    if let Some(k) = &s.secret_key {
        return SecretKey::from_hex(k)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("secret_key: {e}"));
    }
    let path = s.data_dir.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => SecretKey::from_hex(&text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let text = create_private_once(&path, &SecretKey::generate().to_hex())?;
            SecretKey::from_hex(&text)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// Creates `path` (mode 0600) holding `contents` unless it exists, and returns what it holds.
///
/// Atomic: the file appears whole or not at all (written to a temporary file, then hard-linked
/// into place, which fails if `path` exists). A coordinator and a node starting together on one
/// data directory once raced here: the node read the key file the coordinator had created but
/// not yet written, and refused to start. If another process created `path` first, its contents
/// win, so both use the same key.
fn create_private_once(path: &Path, contents: &str) -> Result<String> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    write_private(&tmp, contents)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(contents.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) => Err(anyhow::anyhow!("creating {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        crate::lock::create_private_dir(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// The host of `api.listen` when it is a name (`berth.example.com:7700`); an address needs no
/// reserving (apps may never take an IP address).
fn api_host(listen: &str) -> Option<String> {
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return None;
    }
    let (host, _port) = listen.rsplit_once(':')?;
    (!host.is_empty()).then(|| host.trim_matches(['[', ']']).to_ascii_lowercase())
}

fn coordinator_config(s: &Settings, redis_url: &str, key: SecretKey) -> CoordinatorConfig {
    let mut c = CoordinatorConfig::new(redis_url, key);
    c.base_domain = s.base_domain.clone();
    c.api_host = api_host(&s.api.listen);
    c.deadlines = Deadlines {
        deploy_timeout: s.deploy_timeout(),
        ..Deadlines::default()
    };
    c.liveness.down_after = Duration::from_secs(s.node.down_after_s);
    c.shared_images = s.registry.url.is_some();
    c.ingress_http = s.node.ingress_http;
    c.test_hooks = s.test_hooks;
    c.allow_local_repos = s.allow_local_repos.unwrap_or(false);
    c.lease = Duration::from_secs(s.leader_lease_s);
    c.pack_images = s.packs.clone();
    c.redis_sentinels = s.redis.sentinels();
    c.durability = s.redis.durability();
    c
}

fn node_config(s: &Settings, redis_url: &str, key: Option<SecretKey>) -> NodeConfig {
    NodeConfig {
        secret_key: key,
        name: s.node.name.clone(),
        redis_url: redis_url.to_string(),
        redis_sentinels: s.redis.sentinels(),
        caddy_admin: s.node.caddy_admin.clone(),
        ingress_http: s.node.ingress_http,
        https: s.node.https(),
        docker_host: s.node.docker_host.clone(),
        address: s.node.advertise.clone(),
        data_dir: s.data_dir.clone(),
        stats_interval: Duration::from_secs(s.node.stats_interval_s),
        labels: s.node.labels.clone(),
        build_slots: s.node.build_slots,
        resolver_listen: s.node.resolver_listen,
        registry: s
            .registry
            .url
            .clone()
            .map(|url| berth_node::registry::RegistryConfig {
                url,
                username: s.registry.username.clone(),
                password: s.registry.password.clone(),
            }),
        test_hooks: s.test_hooks,
        build_context_max: s.node.build_context_max_mb.saturating_mul(1024 * 1024),
        allow_local_repos: s.allow_local_repos.unwrap_or(false),
        app_limits: berth_node::containers::LimitDefaults {
            memory_mb: s.node.app_memory_mb,
            millicpus: s.node.app_millicpus,
            pids: s.node.app_pids,
        },
        build_limits: berth_node::image_build::BuildLimits {
            memory_mb: s.node.build_memory_mb,
            millicpus: s.node.build_millicpus,
            timeout: std::time::Duration::from_secs(s.node.build_timeout_s),
        },
        app_network: s.node.app_network.clone(),
        pack_images: s.packs.clone(),
        durability: s.redis.durability(),
    }
}

/// Resolves when the process gets Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

struct Roles {
    coordinator: bool,
    node: bool,
}

/// Runs the chosen roles in one actix System until a shutdown signal.
fn run(
    s: &Settings,
    redis_url: &str,
    roles: Roles,
    on_ready: impl FnOnce(&Serving, &str),
) -> Result<()> {
    let token = if roles.coordinator {
        token(s)?
    } else {
        String::new()
    };
    // The coordinator creates the key if there is none; a node only reads it.
    let key = secret_key(s, roles.coordinator)?;
    let listen: SocketAddr = s.api.listen.parse().with_context(|| {
        format!(
            "api.listen {:?} is not an address like 127.0.0.1:7700",
            s.api.listen
        )
    })?;
    // Settings::load checked it parses.
    let webhook_listen = s
        .api
        .webhook_listen
        .as_deref()
        .map(str::parse)
        .transpose()?;
    let system = actix_rt::System::new();
    system.block_on(async move {
        let listen = Listen {
            api: listen,
            webhook: webhook_listen,
        };
        let started = start_and_serve(s, redis_url, roles, listen, token, key, on_ready).await;
        if started.is_err() {
            // Actors started before the failure have not run yet: let them start (and stop with
            // the System) inside the runtime. Dropped unstarted, actix starts them while the
            // runtime is torn down, outside any reactor, and their timers panic ("there is no
            // reactor running").
            actix::System::current().stop();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started
    })
}

/// The addresses the coordinator role listens on.
struct Listen {
    api: SocketAddr,
    /// `api.webhook_listen`: a listener serving only the GitHub webhook.
    webhook: Option<SocketAddr>,
}

/// What the coordinator role serves, once it listens: the URLs to print and record.
struct Serving {
    /// The API's base URL (`https://` when it speaks TLS), with the address really bound.
    api: String,
    /// The webhook listener's delivery URL, when there is one.
    webhook: Option<String>,
}

/// The body of [`run`], inside the System: start the roles, serve until a shutdown signal,
/// shut down.
async fn start_and_serve(
    s: &Settings,
    redis_url: &str,
    roles: Roles,
    listen: Listen,
    token: String,
    key: Option<SecretKey>,
    on_ready: impl FnOnce(&Serving, &str),
) -> Result<()> {
    {
        let shutdown = Shutdown::new();
        let mut web = None;
        if roles.coordinator {
            let k = key.clone().context("no secret key")?;
            // The certificate and the addresses first: a bad file or a taken address stops the
            // start before any actor exists.
            let tls = s.api.tls()?;
            let listener = berth_web::bind(listen.api).await?;
            let webhook_listener = match listen.webhook {
                Some(a) => Some(
                    berth_web::bind_for(a, "api.webhook_listen / BERTH_API__WEBHOOK_LISTEN")
                        .await?,
                ),
                None => None,
            };
            let coord = berth_coordinator::start(coordinator_config(s, redis_url, k), &shutdown)
                .await
                .context("starting the coordinator")?;
            let addr = listener.local_addr()?;
            let tok = token.clone();
            let secret = s.github.webhook_secret.clone();
            let sd = shutdown.clone();
            let serving_api = s.api.serving();
            let limits = serving_api.limits;
            let scheme = s.api.scheme();
            let mut serving = Serving {
                api: format!("{scheme}://{addr}"),
                webhook: None,
            };
            if let Some(l) = webhook_listener {
                serving.webhook = Some(format!(
                    "{scheme}://{}/api/v1/webhooks/github",
                    l.local_addr()?
                ));
                let (coord, secret, tls, sd) =
                    (coord.clone(), secret.clone(), tls.clone(), sd.clone());
                shutdown.spawn(async move {
                    berth_web::serve_webhook(l, coord, secret, limits, tls, &sd).await;
                });
            }
            shutdown.spawn(async move {
                berth_web::serve(listener, coord, &tok, secret, serving_api, tls, &sd).await;
            });
            web = Some(serving);
        }
        let node = if roles.node {
            Some(
                berth_node::start(node_config(s, redis_url, key.clone()), &shutdown)
                    .await
                    .context("starting the node")?,
            )
        } else {
            None
        };
        if let Some(serving) = &web {
            on_ready(serving, &token);
        } else {
            tracing::info!(node = %s.node.name, "node running");
        }
        // A signal, or a supervisor giving up on an actor (it cancels the shutdown token).
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = shutdown.cancelled() => {}
        }
        tracing::info!("shutting down");
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
        shutdown.cancel();
        if let Some(n) = node {
            n.shutdown().await;
        }
        let abandoned = shutdown.wait_until(deadline).await;
        if abandoned.count > 0 {
            tracing::warn!(
                abandoned = abandoned.count,
                tasks = %abandoned,
                deadline_s = SHUTDOWN_DEADLINE.as_secs(),
                "tasks still running at the shutdown deadline; abandoning them"
            );
        }
        tracing::info!(abandoned = abandoned.count, "shut down");
        if let Some(why) = shutdown.escalation() {
            bail!("{why}");
        }
        anyhow::Ok(())
    }
}

/// `berth up`.
pub fn up(mut s: Settings) -> Result<()> {
    // One machine, often deploying a local checkout: local repositories unless turned off.
    s.allow_local_repos.get_or_insert(true);
    // Before anything starts: a second `berth up` on this data dir stops here.
    let lock = DataDirLock::acquire(&s.data_dir, Role::Up, Some(&configured_api(&s)))?;
    // Services are stopped when these guards drop, after the System ends.
    let mut _redis = None;
    let redis_url = match s.redis.data_url() {
        Some(u) => u,
        None => {
            let (svc, url) = services::start_redis(&s.data_dir.join("redis"))?;
            _redis = Some(svc);
            url
        }
    };
    let _caddy = if services::caddy_answers(&s.node.caddy_admin) {
        tracing::info!(admin = %s.node.caddy_admin, "using the Caddy that answers there");
        None
    } else {
        Some(services::start_caddy(
            &s.data_dir.join("caddy"),
            &s.node.caddy_admin,
        )?)
    };
    let roles = Roles {
        coordinator: true,
        node: true,
    };
    run(&s, &redis_url, roles, |serving, token| {
        let url = &serving.api;
        if let Err(e) = lock.record(Some(url)) {
            tracing::warn!(error = %e, "cannot write the data dir's lock file");
        }
        if let Err(e) = write_private(
            &client_config_path(),
            &format!("api = {url:?}\ntoken = {token:?}\n"),
        ) {
            tracing::warn!(error = %e, "cannot write the client config");
        }
        println!("Berth is up.");
        println!("  API:     {url}");
        if let Some(w) = &serving.webhook {
            println!("  webhook: {w}");
        }
        println!("  token:   {token}");
        println!(
            "  dashboard: {} (signs in; `berth open` prints it again)",
            crate::client::dashboard_link(url, token)
        );
        match s.node.https {
            HttpsMode::Off => println!(
                "  ingress: http://<app>.{}:{}/",
                s.base_domain, s.node.ingress_http
            ),
            _ => println!(
                "  ingress: https://<app>.{}:{}/ (http on port {} redirects there)",
                s.base_domain, s.node.ingress_https, s.node.ingress_http
            ),
        }
        println!("  client config: {}", client_config_path().display());
        println!("Press Ctrl-C to stop.");
    })
}

/// The API address as configured (the one really bound is recorded once it is known).
fn configured_api(s: &Settings) -> String {
    format!("{}://{}", s.api.scheme(), s.api.listen)
}

fn require_redis(s: &Settings) -> Result<String> {
    s.redis.data_url().context(
        "redis.url is not set: set BERTH_REDIS__URL (e.g. redis://127.0.0.1:6379/), or redis.sentinels \
         and redis.master_name for a Redis under Sentinel",
    )
}

/// `berth coordinator`.
pub fn coordinator(s: Settings) -> Result<()> {
    let url = require_redis(&s)?;
    let lock = DataDirLock::acquire(&s.data_dir, Role::Coordinator, Some(&configured_api(&s)))?;
    let roles = Roles {
        coordinator: true,
        node: false,
    };
    run(&s, &url, roles, |serving, _| {
        if let Err(e) = lock.record(Some(&serving.api)) {
            tracing::warn!(error = %e, "cannot write the data dir's lock file");
        }
        match &serving.webhook {
            Some(w) => println!("Berth coordinator is up. API: {} webhook: {w}", serving.api),
            None => println!("Berth coordinator is up. API: {}", serving.api),
        }
    })
}

/// `berth node`.
pub fn node(s: Settings) -> Result<()> {
    let url = require_redis(&s)?;
    let _lock = DataDirLock::acquire(&s.data_dir, Role::Node, None)?;
    if !services::caddy_answers(&s.node.caddy_admin) {
        bail!(
            "no Caddy admin API answers at {}: start Caddy (e.g. `systemctl start caddy`) or set node.caddy_admin",
            s.node.caddy_admin
        );
    }
    let roles = Roles {
        coordinator: false,
        node: true,
    };
    run(&s, &url, roles, |_, _| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_host_is_reserved_only_when_it_is_a_name() {
        assert_eq!(api_host("127.0.0.1:7700"), None);
        assert_eq!(api_host("[::1]:7700"), None);
        assert_eq!(api_host("0.0.0.0:80"), None);
        assert_eq!(
            api_host("Berth.Example.com:7700").as_deref(),
            Some("berth.example.com")
        );
        assert_eq!(api_host("localhost:7700").as_deref(), Some("localhost"));
    }

    #[test]
    fn a_private_file_is_created_once_whole_and_the_first_writer_wins() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("berth-once-{}", uuid_like()));
        let path = dir.join("secret.key");
        assert_eq!(create_private_once(&path, "first").unwrap(), "first");
        // A second process finding no file a moment earlier gets the first one's contents.
        assert_eq!(create_private_once(&path, "second").unwrap(), "first");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn uuid_like() -> String {
        let n: u64 = rand::rng().random();
        format!("{n:016x}")
    }
}
