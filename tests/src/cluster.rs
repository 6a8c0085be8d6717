//! [`Cluster`]: a whole Berth (`berth up`, or a separate coordinator and node with their own
//! Redis and Caddy) on free ports in a temporary directory, and GET through its ingress. The
//! pieces a [`Fleet`](crate::Fleet) shares with it (the environment of `berth` processes, the
//! store's Redis options, waiting for nodes to be ready, following a node restart) are here too.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{
    berth_bin, docker_cleanup, eventually, free_port, sh, start_caddy, start_redis, unique, Api,
    Proc, TempDir,
};

/// The options a test's own Redis gets when it is a cluster's store: persistence as `berth up`
/// runs it.
pub(crate) const STORE_REDIS_ARGS: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "everysec"];

/// When the node process named `node` started, from the API's node list.
async fn node_started_at(api: &Api, node: &str) -> Option<u64> {
    let (_, v) = api.get("/api/v1/nodes").await.ok()?;
    v.as_array()?.iter().find(|n| n["name"] == node)?["started_at"].as_u64()
}

/// Waits (30 s at most) until `node` heartbeats from a process other than the one that started
/// at `before` (after a node restart the old heartbeat is still fresh for a while); fails at
/// once, with its output, when `proc` (the new process) exits.
pub(crate) async fn wait_new_heartbeat(
    api: &Api,
    node: &str,
    before: Option<u64>,
    proc: &mut Proc,
) -> Result<()> {
    let timeout = Duration::from_secs(30);
    let deadline = Instant::now() + timeout;
    loop {
        let now = node_started_at(api, node).await;
        if now.is_some() && now != before {
            return Ok(());
        }
        // The old process's heartbeat is still fresh, so a new process that exits at start
        // would otherwise only show as a timeout: say so at once, with what it printed.
        if proc.exited() {
            bail!(
                "the restarted {} exited before its first heartbeat:\n{}",
                proc.name,
                proc.log_text()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {timeout:?} waiting for the restarted node {node}'s heartbeat; \
                 {} printed:\n{}",
                proc.name,
                proc.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET through Caddy's ingress port with a Host header; returns status and body.
pub async fn ingress_get(port: u16, host: &str) -> Result<(u16, String)> {
    ingress_get_path(port, host, "/").await
}

/// [`ingress_get`] of `path` (starting with `/`).
pub async fn ingress_get_path(port: u16, host: &str, path: &str) -> Result<(u16, String)> {
    let client = crate::http_client()
        .timeout(Duration::from_secs(5))
        .build()?;
    let r = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// Waits (10 s at most) until the Caddy with ingress `port` serves a 200 page containing
/// `needle` for `host`.
pub(crate) async fn serves(port: u16, host: &str, needle: &str) -> Result<String> {
    eventually(
        &format!("{host} to serve {needle:?} on port {port}"),
        Duration::from_secs(10),
        || async {
            match ingress_get(port, host).await {
                Ok((200, body)) if body.contains(needle) => Some(body),
                _ => None,
            }
        },
    )
    .await
}

/// The environment every `berth` process of a cluster (or fleet) in `dir` gets: home and XDG
/// directories and a data dir in `dir`, the API on 127.0.0.1:`api_port` with `token`, local
/// repositories allowed.
pub(crate) fn berth_env(dir: &Path, api_port: u16, token: &str) -> Vec<(String, String)> {
    let d = dir.to_string_lossy();
    vec![
        ("HOME".into(), d.to_string()),
        ("XDG_CONFIG_HOME".into(), format!("{d}/config")),
        ("XDG_DATA_HOME".into(), format!("{d}/data")),
        ("BERTH_DATA_DIR".into(), format!("{d}/berth")),
        ("BERTH_API__LISTEN".into(), format!("127.0.0.1:{api_port}")),
        ("BERTH_API__TOKEN".into(), token.to_string()),
        // Test apps live in local repositories: `berth coordinator` and `berth node` refuse
        // them unless told (`berth up` allows them by default).
        ("BERTH_ALLOW_LOCAL_REPOS".into(), "true".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

/// The environment that makes a `berth` process node `name`, with its Caddy's admin API on
/// 127.0.0.1:`admin` and its ingress on `ingress`.
pub(crate) fn node_env(name: &str, admin: u16, ingress: u16) -> Vec<(String, String)> {
    vec![
        ("BERTH_NODE__NAME".into(), name.to_string()),
        (
            "BERTH_NODE__CADDY_ADMIN".into(),
            format!("127.0.0.1:{admin}"),
        ),
        ("BERTH_NODE__INGRESS_HTTP".into(), ingress.to_string()),
        // Its own DNS responder for its Caddy (the default port would collide across tests).
        (
            "BERTH_NODE__RESOLVER_LISTEN".into(),
            format!("127.0.0.1:{}", crate::free_port()),
        ),
    ]
}

/// `berth` with exactly `env` (and `PATH`).
pub(crate) fn berth_command(env: &[(String, String)]) -> Command {
    let mut c = Command::new(berth_bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

/// `redis-cli` against the Redis at `url`.
pub(crate) fn redis_cli_url(url: &str) -> Command {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-u", url]);
    cmd
}

/// Waits (60 s at most) until the API lists every one of `nodes` as ready; fails at once when
/// one of `procs` exits, with its output.
pub(crate) async fn wait_ready(api: &Api, procs: &mut [Proc], nodes: &[&str]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for p in procs.iter_mut() {
            if p.exited() {
                bail!("{} exited at start:\n{}", p.name, p.log_text());
            }
        }
        if let Ok((200, v)) = api.get("/api/v1/nodes").await {
            let ready = |node: &&str| {
                v.as_array().is_some_and(|ns| {
                    ns.iter()
                        .any(|n| n["name"] == *node && n["status"] == "ready")
                })
            };
            if nodes.iter().all(ready) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("not ready in 60 s:\n{}", procs_logs(procs));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything `procs` printed (for failure messages).
pub(crate) fn procs_logs(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(|p| format!("----- {} -----\n{}", p.name, p.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A cluster: either `berth up`, or separate `berth coordinator` + `berth node` processes with a
/// Redis and a Caddy started by the test.
pub struct Cluster {
    pub dir: TempDir,
    pub api: Api,
    pub node: String,
    pub ingress: u16,
    /// Environment every `berth` process (and CLI call) of this cluster gets.
    pub env: Vec<(String, String)>,
    pub procs: Vec<Proc>,
    /// Apps whose images are removed at the end.
    pub apps: Vec<String>,
}

impl Cluster {
    /// A cluster not started yet: a temp dir, a node name, free API and ingress ports, a token,
    /// and the environment of its `berth` processes (Caddy's admin API on `admin`; the Redis on
    /// `redis_port` if the test runs its own; then `extra`).
    fn new(
        prefix: &str,
        admin: u16,
        redis_port: Option<u16>,
        extra: &[(&str, &str)],
    ) -> Result<Cluster> {
        let dir = TempDir::with_prefix(prefix)?;
        let node = unique("node");
        let (ingress, api_port) = (free_port(), free_port());
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut env = berth_env(dir.path(), api_port, &token);
        env.extend(node_env(&node, admin, ingress));
        if let Some(port) = redis_port {
            env.push((
                "BERTH_REDIS__URL".into(),
                format!("redis://127.0.0.1:{port}/"),
            ));
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Ok(Cluster {
            api: Api::new(format!("http://127.0.0.1:{api_port}"), token),
            dir,
            node,
            ingress,
            env,
            procs: Vec::new(),
            apps: Vec::new(),
        })
    }

    /// Runs `redis-cli` against this cluster's Redis (the Unix socket of `berth up`, or the URL
    /// of a separate cluster); its output, trimmed.
    pub fn redis_cli(&self, args: &[&str]) -> Result<String> {
        sh(self.redis_cli_command().args(args))
    }

    /// Sends `commands` (each a list of binary-safe arguments, e.g. msgpack records) to this
    /// cluster's Redis in one `redis-cli --pipe`; fails if Redis refused any.
    pub fn redis_pipe(&self, commands: &[Vec<Vec<u8>>]) -> Result<()> {
        use std::io::Write;
        let mut resp = Vec::new();
        for args in commands {
            write!(resp, "*{}\r\n", args.len())?;
            for a in args {
                write!(resp, "${}\r\n", a.len())?;
                resp.extend_from_slice(a);
                resp.extend_from_slice(b"\r\n");
            }
        }
        let mut child = self
            .redis_cli_command()
            .arg("--pipe")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child.stdin.take().expect("stdin").write_all(&resp)?;
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success() && text.contains("errors: 0"),
            "redis-cli --pipe: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn redis_cli_command(&self) -> Command {
        match self.env.iter().find(|(k, _)| k == "BERTH_REDIS__URL") {
            Some((_, url)) => {
                // redis-cli 7.0 reads no password from a `rediss://` URI: spell it out.
                let Some(rest) = url.strip_prefix("rediss://") else {
                    return redis_cli_url(url);
                };
                let (auth, addr) = rest.split_once('@').unwrap_or(("", rest));
                let (host, port) = addr
                    .trim_end_matches('/')
                    .rsplit_once(':')
                    .expect("host:port");
                let mut cmd = Command::new("redis-cli");
                cmd.args(["--tls", "-h", host, "-p", port, "--no-auth-warning"]);
                if let Some((_, password)) = auth.split_once(':') {
                    cmd.args(["-a", password]);
                }
                if let Some((_, ca)) = self.env.iter().find(|(k, _)| k == "SSL_CERT_FILE") {
                    cmd.args(["--cacert", ca]);
                }
                cmd
            }
            None => {
                let mut cmd = Command::new("redis-cli");
                cmd.arg("-s")
                    .arg(self.dir.path().join("berth/redis/redis.sock"));
                cmd
            }
        }
    }

    /// `berth` with this cluster's environment (a server role or a CLI call).
    pub fn berth(&self) -> Command {
        berth_command(&self.env)
    }

    /// `berth up` with everything on free ports.
    pub async fn up() -> Result<Cluster> {
        Self::up_with(&[]).await
    }

    /// `berth up` with extra environment (e.g. `BERTH_GITHUB__WEBHOOK_SECRET`).
    pub async fn up_with(extra: &[(&str, &str)]) -> Result<Cluster> {
        let mut c = Self::new("berth-up", free_port(), None, extra)?;
        let mut cmd = c.berth();
        cmd.arg("up");
        let log = c.dir.path().join("berth-up.log");
        c.procs.push(Proc::spawn("berth up", cmd, log)?);
        c.wait_ready().await?;
        Ok(c)
    }

    /// Redis and Caddy started here; `berth coordinator` and `berth node` as two processes.
    pub async fn separate() -> Result<Cluster> {
        Self::separate_with(&[]).await
    }

    /// [`Cluster::separate`] with extra environment for the berth processes.
    pub async fn separate_with(extra: &[(&str, &str)]) -> Result<Cluster> {
        Self::separate_with_redis(&[], None, extra).await
    }

    /// [`Cluster::separate_with`] whose Redis gets `redis_args` too, and whose URL carries
    /// `password` (`redis://:<password>@…`) when given (pair it with `--requirepass`).
    pub async fn separate_with_redis(
        redis_args: &[&str],
        password: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Cluster> {
        let (admin, redis_port) = (free_port(), free_port());
        let mut c = Self::new("berth-sep", admin, Some(redis_port), extra)?;
        if let Some(pw) = password {
            for (k, v) in c.env.iter_mut() {
                if k == "BERTH_REDIS__URL" {
                    *v = format!("redis://:{pw}@127.0.0.1:{redis_port}/");
                }
            }
        }
        let d = c.dir.path().to_path_buf();
        let args: Vec<&str> = STORE_REDIS_ARGS.iter().chain(redis_args).copied().collect();
        c.procs.push(start_redis(&d, redis_port, &args).await?);
        c.start_separate(admin).await?;
        Ok(c)
    }

    /// Caddy, `berth coordinator` and `berth node` as in [`Cluster::separate`], on the Redis
    /// under `sentinels` (`BERTH_REDIS__SENTINELS`, `BERTH_REDIS__MASTER_NAME`), with `extra`.
    pub async fn separate_on_sentinels(
        sentinels: &crate::RedisSentinels,
        extra: &[(&str, &str)],
    ) -> Result<Cluster> {
        let admin = free_port();
        let mut c = Self::new("berth-sentinel", admin, None, extra)?;
        c.env
            .push(("BERTH_REDIS__SENTINELS".into(), sentinels.env()));
        c.env
            .push(("BERTH_REDIS__MASTER_NAME".into(), sentinels.master.clone()));
        c.start_separate(admin).await?;
        Ok(c)
    }

    /// [`Cluster::separate`] whose Redis speaks only TLS (a certificate of a CA made for the
    /// test) and wants a password: the daemons get `rediss://:<password>@127.0.0.1:<port>/` and
    /// the CA through `SSL_CERT_FILE`.
    pub async fn separate_tls() -> Result<Cluster> {
        let (admin, redis_port) = (free_port(), free_port());
        let mut c = Self::new("berth-tls", admin, None, &[])?;
        let d = c.dir.path().to_path_buf();
        let ca = crate::test_ca(&d.join("tls"))?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        let port = redis_port.to_string();
        let (ca_path, cert, key) = (
            ca.ca.display().to_string(),
            ca.cert.display().to_string(),
            ca.key.display().to_string(),
        );
        let mut args = vec![
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca_path,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            &password,
        ];
        args.extend(STORE_REDIS_ARGS);
        c.procs.push(start_redis(&d, redis_port, &args).await?);
        c.env.push((
            "BERTH_REDIS__URL".into(),
            format!("rediss://:{password}@127.0.0.1:{redis_port}/"),
        ));
        c.env.push(("SSL_CERT_FILE".into(), ca_path.clone()));
        c.start_separate(admin).await?;
        Ok(c)
    }

    /// Starts a separate cluster's Caddy (admin API on `admin`), `berth coordinator` and
    /// `berth node`, and waits until the node is ready.
    async fn start_separate(&mut self, admin: u16) -> Result<()> {
        let c = self;
        let d = c.dir.path().to_path_buf();
        c.procs.push(start_caddy(&d.join("caddy"), admin).await?);
        let mut coord = c.berth();
        coord.arg("coordinator");
        c.procs.push(Proc::spawn(
            "berth coordinator",
            coord,
            d.join("coordinator.log"),
        )?);
        let mut node_cmd = c.berth();
        node_cmd.arg("node");
        c.procs
            .push(Proc::spawn("berth node", node_cmd, d.join("node.log"))?);
        c.wait_ready().await
    }

    /// Stops the `berth coordinator` process and starts a new one (a coordinator restart).
    pub async fn restart_coordinator(&mut self) -> Result<()> {
        self.restart("coordinator").await
    }

    /// Stops the `berth node` process and starts a new one (a node restart; app containers keep
    /// running).
    pub async fn restart_node(&mut self) -> Result<()> {
        self.restart("node").await
    }

    async fn restart(&mut self, role: &str) -> Result<()> {
        self.kill_restart(role, false).await
    }

    /// Stops the `berth <role>` process (`role` is `node` or `coordinator`) — with SIGKILL when
    /// `hard`, as a crash would, else SIGTERM — and starts a new one; returns once the API lists
    /// the node as ready (after a node restart: with the new process's heartbeat).
    pub async fn kill_restart(&mut self, role: &str, hard: bool) -> Result<()> {
        let name = format!("berth {role}");
        let i = self.proc_index(&name)?;
        let started = self.node_started_at().await;
        match hard {
            true => self.procs[i].kill(),
            false => self.procs[i].stop(),
        }
        let mut cmd = self.berth();
        cmd.arg(role);
        let log = self
            .dir
            .path()
            .join(format!("{role}-{}.log", unique("restart")));
        self.procs[i] = Proc::spawn(&name, cmd, log)?;
        self.wait_ready().await?;
        if role == "node" {
            // The old heartbeat is still fresh: wait for the new process's own.
            wait_new_heartbeat(&self.api, &self.node, started, &mut self.procs[i]).await?;
        }
        Ok(())
    }

    /// Restarts the `berth node` process while its Caddy cannot set the node's config up: stops
    /// this separate cluster's Caddy, holds its ingress port with a listener of the test's,
    /// starts Caddy again (same admin port and storage, its boot config only) — it answers, and
    /// refuses the berth server (the port is taken) — then a new node process, and lets the
    /// port go only after `taken`. Fails when the new node exits meanwhile; returns once it
    /// heartbeats.
    pub async fn restart_node_while_ingress_is_taken(&mut self, taken: Duration) -> Result<()> {
        let caddy = self.proc_index("caddy")?;
        let node = self.proc_index("berth node")?;
        let admin: u16 = self
            .env
            .iter()
            .find(|(k, _)| k == "BERTH_NODE__CADDY_ADMIN")
            .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
            .context("this cluster's Caddy admin port")?;
        let started = self.node_started_at().await;
        self.procs[node].stop();
        self.procs[caddy].stop();
        let holder = std::net::TcpListener::bind(("0.0.0.0", self.ingress))
            .context("holding the ingress port")?;
        self.procs[caddy] = start_caddy(&self.dir.path().join("caddy"), admin).await?;
        let mut cmd = self.berth();
        cmd.arg("node");
        let log = self
            .dir
            .path()
            .join(format!("node-{}.log", unique("taken")));
        self.procs[node] = Proc::spawn("berth node", cmd, log)?;
        tokio::time::sleep(taken).await;
        if self.procs[node].exited() {
            bail!(
                "the node exited while its Caddy could not take the ingress port:\n{}",
                self.procs[node].log_text()
            );
        }
        drop(holder);
        wait_new_heartbeat(&self.api, &self.node, started, &mut self.procs[node]).await
    }

    /// Where the process `name` (`berth coordinator`, `berth node`) is in `procs`.
    pub fn proc_index(&self, name: &str) -> Result<usize> {
        self.procs
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("no {name} process in this separate cluster"))
    }

    /// Starts another `berth coordinator` on this separate cluster's Redis, named `name` (its
    /// `Proc`'s name, its log's and its data dir's stem): its own data dir and API port
    /// (`port`, or a free one), the cluster's token and secret key. Answers the process and its
    /// API once that answers. Started again with the same `name` and `port`, it is the same
    /// coordinator back.
    pub async fn spawn_coordinator(&self, name: &str, port: Option<u16>) -> Result<(Proc, Api)> {
        let key = std::fs::read_to_string(self.dir.path().join("berth/secret.key"))
            .context("the cluster's secret key")?;
        let port = port.unwrap_or_else(free_port);
        let mut cmd = self.berth();
        cmd.arg("coordinator")
            .env("BERTH_DATA_DIR", self.dir.path().join(name))
            .env("BERTH_API__LISTEN", format!("127.0.0.1:{port}"))
            .env("BERTH_SECRET_KEY", key.trim());
        let log = self
            .dir
            .path()
            .join(format!("{name}-{}.log", unique("start")));
        let mut proc = Proc::spawn(&format!("berth {name}"), cmd, log)?;
        let api = Api::new(format!("http://127.0.0.1:{port}"), self.api.token.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if proc.exited() {
                bail!("{} exited at start:\n{}", proc.name, proc.log_text());
            }
            if matches!(api.get("/api/v1/apps").await, Ok((200, _))) {
                return Ok((proc, api));
            }
            if Instant::now() > deadline {
                bail!(
                    "{}'s API did not answer in 30 s:\n{}",
                    proc.name,
                    proc.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `(holder, epoch)` of the coordinators' leader lease, if one holds it.
    pub fn leader(&self) -> Option<(String, u64)> {
        let v = self
            .redis_cli(&["GET", berth_protocol::keys::LEADER])
            .ok()?;
        let (holder, epoch) = v.trim().split_once(' ')?;
        Some((holder.to_string(), epoch.parse().ok()?))
    }

    /// The port of this separate cluster's own Redis (`None` for `berth up`, whose Redis is
    /// its own child on a Unix socket).
    pub fn redis_port(&self) -> Option<u16> {
        let (_, url) = self.env.iter().find(|(k, _)| k == "BERTH_REDIS__URL")?;
        url.trim_end_matches('/').rsplit(':').next()?.parse().ok()
    }

    /// Restarts a separate cluster's Redis: [`Cluster::stop_redis`] (Redis writes its AOF and
    /// exits), then [`Cluster::start_redis_again`] on the same port and files.
    pub async fn restart_redis(&mut self) -> Result<()> {
        self.stop_redis()?;
        self.start_redis_again().await
    }

    /// Stops this separate cluster's Redis as an operator or a crash of its host would take it
    /// away: SIGTERM (it syncs its append-only file and exits), then waits until its port refuses
    /// connections. [`Cluster::start_redis_again`] brings it back.
    pub fn stop_redis(&mut self) -> Result<()> {
        let port = self
            .redis_port()
            .context("no separate Redis in this cluster")?;
        let p = self
            .procs
            .iter_mut()
            .find(|p| p.name == "redis")
            .context("no redis process in this cluster")?;
        p.stop();
        anyhow::ensure!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "Redis still accepts connections on port {port} after it stopped"
        );
        Ok(())
    }

    /// Starts this separate cluster's Redis again after [`Cluster::stop_redis`]: the same port,
    /// data dir and options (AOF `everysec`), so it loads what it had. Its earlier log is kept
    /// as `redis-<n>.log`.
    pub async fn start_redis_again(&mut self) -> Result<()> {
        let port = self
            .redis_port()
            .context("no separate Redis in this cluster")?;
        let i = self
            .procs
            .iter()
            .position(|p| p.name == "redis")
            .context("no redis process in this cluster")?;
        anyhow::ensure!(self.procs[i].exited(), "Redis is still running");
        let d = self.dir.path().to_path_buf();
        let kept = (1..)
            .map(|n| d.join(format!("redis-{n}.log")))
            .find(|p| !p.exists())
            .expect("a free log name");
        std::fs::rename(d.join("redis.log"), kept)?;
        self.procs[i] = start_redis(&d, port, &STORE_REDIS_ARGS).await?;
        Ok(())
    }

    async fn node_started_at(&self) -> Option<u64> {
        node_started_at(&self.api, &self.node).await
    }

    /// Waits for the API and for the node to be listed as ready.
    async fn wait_ready(&mut self) -> Result<()> {
        wait_ready(&self.api, &mut self.procs, &[&self.node]).await
    }

    /// Everything the cluster's processes printed (for failure messages).
    pub fn logs(&self) -> String {
        procs_logs(&self.procs)
    }

    /// Waits (10 s at most) until Caddy serves a 200 page containing `needle` for `host`.
    pub async fn serves(&self, host: &str, needle: &str) -> Result<String> {
        serves(self.ingress, host, needle).await
    }

    /// Registers an app for image cleanup and creates it.
    pub async fn create_app(&mut self, body: Value) -> Result<Value> {
        if let Some(n) = body["name"].as_str() {
            self.apps.push(n.to_string());
        }
        self.api.create_app(body).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop berth processes first (newest first), so `berth up` stops what it started.
        while let Some(mut p) = self.procs.pop() {
            p.stop();
        }
        let apps: Vec<&str> = self.apps.iter().map(String::as_str).collect();
        docker_cleanup(&self.node, &apps);
    }
}
