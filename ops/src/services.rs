//! The programs `berth up` runs beside itself: a Redis (AOF on) and a Caddy. Each is started only
//! when needed, waited for with a deadline, and stopped on exit — and nothing else is.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_bus::Backoff;

/// A child process that is terminated (and reaped) when dropped.
pub struct Service {
    name: &'static str,
    child: Child,
    /// How long it gets to exit after SIGTERM before it is killed.
    grace: Duration,
}

impl Service {
    /// Takes charge of `child`: stopped on drop, SIGTERM then SIGKILL after `grace`.
    pub fn new(name: &'static str, child: Child, grace: Duration) -> Self {
        Service { name, child, grace }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stop(&mut self) {
        // SIGTERM first (Redis flushes its AOF on it), then SIGKILL if it lingers.
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        // The child is not reaped before `try_wait` sees it exit, so its pid is still its own.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        tracing::warn!(service = self.name, "did not stop on SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// Polls `ready` until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(100));
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::park_timeout(backoff.next_delay());
    }
    bail!("{what} did not become ready within {}s", timeout.as_secs())
}

/// Starts `redis-server` with its data (AOF, `appendfsync everysec`) under `dir`, listening only
/// on a Unix socket there. Returns the service and its URL.
pub fn start_redis(dir: &Path) -> Result<(Service, String)> {
    let bin = which("redis-server").context(
        "redis-server is not installed: run scripts/setup.sh (or apt-get install redis-server), \
         or point redis.url / BERTH_REDIS__URL at a running Redis",
    )?;
    crate::lock::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sock = dir.join("redis.sock");
    let _ = std::fs::remove_file(&sock);
    let log = std::fs::File::create(dir.join("redis.log"))?;
    let child = Command::new(bin)
        .args(["--port", "0", "--unixsocketperm", "700", "--save", ""])
        .arg("--unixsocket")
        .arg(&sock)
        .arg("--dir")
        .arg(dir)
        .args(["--appendonly", "yes", "--appendfsync", "everysec"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting redis-server")?;
    let mut svc = Service::new("redis", child, Duration::from_secs(5));
    let url = format!("redis+unix://{}", sock.display());
    let client = redis::Client::open(url.as_str())?;
    wait_for("redis-server", Duration::from_secs(15), || {
        if let Ok(Some(status)) = svc.child.try_wait() {
            tracing::error!(%status, "redis-server exited; see {}", dir.join("redis.log").display());
            return false;
        }
        client
            .get_connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    })
    .with_context(|| format!("see {}", dir.join("redis.log").display()))?;
    if let Ok(Some(_)) = svc.child.try_wait() {
        bail!(
            "redis-server exited at start; see {}",
            dir.join("redis.log").display()
        );
    }
    svc.name = "redis";
    Ok((svc, url))
}

/// Whether a Caddy admin API answers at `admin` (host:port).
pub fn caddy_answers(admin: &str) -> bool {
    let Ok(addr) = admin.parse::<std::net::SocketAddr>() else {
        return std::net::TcpStream::connect(admin).is_ok();
    };
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Starts `caddy run` with only its admin address set; the node configures the rest through the
/// admin API. Caddy's own state (autosave, certificates) goes under `dir`.
pub fn start_caddy(dir: &Path, admin: &str) -> Result<Service> {
    let bin = which("caddy")
        .context("caddy is not installed: run scripts/setup.sh (or apt-get install caddy)")?;
    crate::lock::create_private_dir(dir)?;
    let boot = dir.join("bootstrap.json");
    std::fs::write(
        &boot,
        serde_json::json!({"admin": {"listen": admin}}).to_string(),
    )?;
    let log = std::fs::File::create(dir.join("caddy.log"))?;
    let child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(&boot)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting caddy")?;
    let mut svc = Service::new("caddy", child, Duration::from_secs(5));
    wait_for("caddy", Duration::from_secs(15), || {
        matches!(svc.child.try_wait(), Ok(None)) && caddy_answers(admin)
    })
    .with_context(|| format!("see {}", dir.join("caddy.log").display()))?;
    Ok(svc)
}
