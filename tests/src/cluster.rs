//! [`Cluster`]: a whole Berth (`berth up`, or a separate coordinator and node with their own
//! Redis and Caddy) on free ports in a temporary directory; GET through its ingress, and the
//! Docker look-ups and clean-up of what its node made.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{
    berth_bin, eventually, free_port, sh, start_caddy, start_redis, unique, Api, Proc, TempDir,
};

/// When the node process named `node` started, from the API's node list.
async fn node_started_at(api: &Api, node: &str) -> Option<u64> {
    let (_, v) = api.get("/api/v1/nodes").await.ok()?;
    v.as_array()?.iter().find(|n| n["name"] == node)?["started_at"].as_u64()
}

/// GET through Caddy's ingress port with a Host header; returns status and body.
pub async fn ingress_get(port: u16, host: &str) -> Result<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let r = client
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", host)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// Running app containers of one app on one node (from the Docker engine itself).
pub fn running_containers(app: &str, node: &str) -> Result<Vec<String>> {
    app_containers(app, node, "-q")
}

/// Every app container of one app on one node, running or stopped.
pub fn containers(app: &str, node: &str) -> Result<Vec<String>> {
    app_containers(app, node, "-aq")
}

fn app_containers(app: &str, node: &str, flags: &str) -> Result<Vec<String>> {
    let out = sh(Command::new("docker").args([
        "ps",
        flags,
        "--filter",
        &format!("label=berth.app={app}"),
        "--filter",
        &format!("label=berth.node={node}"),
    ]))?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Removes every container a node made, and the images of the given apps.
pub fn docker_cleanup(node: &str, apps: &[&str]) {
    if let Ok(ids) = sh(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        &format!("label=berth.node={node}"),
    ])) {
        for id in ids.lines() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
    }
    for app in apps {
        if let Ok(imgs) = sh(Command::new("docker").args(["images", "-q", &format!("berth/{app}")]))
        {
            for img in imgs.lines() {
                let _ = Command::new("docker").args(["rmi", "-f", img]).output();
            }
        }
    }
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
        let d = dir.path().to_string_lossy().to_string();
        let mut env: Vec<(String, String)> = vec![
            ("HOME".into(), d.clone()),
            ("XDG_CONFIG_HOME".into(), format!("{d}/config")),
            ("XDG_DATA_HOME".into(), format!("{d}/data")),
            ("BERTH_DATA_DIR".into(), format!("{d}/berth")),
            ("BERTH_API__LISTEN".into(), format!("127.0.0.1:{api_port}")),
            ("BERTH_API__TOKEN".into(), token.clone()),
            ("BERTH_NODE__NAME".into(), node.clone()),
            (
                "BERTH_NODE__CADDY_ADMIN".into(),
                format!("127.0.0.1:{admin}"),
            ),
            ("BERTH_NODE__INGRESS_HTTP".into(), ingress.to_string()),
            ("RUST_LOG".into(), "info".into()),
        ];
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
        let mut cmd = Command::new("redis-cli");
        match self.env.iter().find(|(k, _)| k == "BERTH_REDIS__URL") {
            Some((_, url)) => cmd.args(["-u", url]),
            None => cmd
                .arg("-s")
                .arg(self.dir.path().join("berth/redis/redis.sock")),
        };
        cmd
    }

    pub fn berth(&self) -> Command {
        let mut c = Command::new(berth_bin());
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
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
        let (admin, redis_port) = (free_port(), free_port());
        let mut c = Self::new("berth-sep", admin, Some(redis_port), extra)?;
        let d = c.dir.path().to_path_buf();
        let redis_args = ["--appendonly", "yes", "--appendfsync", "everysec"];
        c.procs
            .push(start_redis(&d, redis_port, &redis_args).await?);
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
        c.wait_ready().await?;
        Ok(c)
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
        let name = format!("berth {role}");
        let i = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("no separate {role} in this cluster"))?;
        let started = self.node_started_at().await;
        self.procs[i].stop();
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
            let api = self.api.clone();
            let node = self.node.clone();
            eventually(
                "the restarted node's heartbeat",
                Duration::from_secs(30),
                || {
                    let (api, node) = (api.clone(), node.clone());
                    async move {
                        let now = node_started_at(&api, &node).await;
                        (now.is_some() && now != started).then_some(())
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn node_started_at(&self) -> Option<u64> {
        node_started_at(&self.api, &self.node).await
    }

    /// Waits for /healthz and for the node to be listed as ready.
    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for p in &mut self.procs {
                if p.exited() {
                    bail!("{} exited at start:\n{}", p.name, p.log_text());
                }
            }
            if let Ok((200, v)) = self.api.get("/api/v1/nodes").await {
                let ready = v.as_array().is_some_and(|ns| {
                    ns.iter()
                        .any(|n| n["name"] == self.node.as_str() && n["status"] == "ready")
                });
                if ready {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("cluster not ready in 60 s:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the cluster's processes printed (for failure messages).
    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("----- {} -----\n{}", p.name, p.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits (10 s at most) until Caddy serves a 200 page containing `needle` for `host`.
    pub async fn serves(&self, host: &str, needle: &str) -> Result<String> {
        eventually(
            &format!("{host} to serve {needle:?}"),
            Duration::from_secs(10),
            || async {
                match ingress_get(self.ingress, host).await {
                    Ok((200, body)) if body.contains(needle) => Some(body),
                    _ => None,
                }
            },
        )
        .await
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
