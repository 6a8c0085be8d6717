//! Test support: start the real things (the `berth` binary, Redis, Caddy, git repositories) on
//! free loopback ports in a temporary directory, talk to them, and clean up after.
//!
//! Nothing here sleeps and hopes: every wait polls a condition with a deadline.

#![recursion_limit = "256"]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod github;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The `berth` binary of this workspace (built by `cargo build --workspace --bins`).
pub fn berth_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug/berth
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berth"))
        .expect("target dir");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Not an ephemeral port (bind to 0): the kernel hands those out again as the local ports of
/// outgoing connections, and with many clusters starting at once one of them took a port between
/// this call and the server's bind (the server then failed to start). These come from below the
/// ephemeral range, each at most once per test process, and are checked free by a bind.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let (low, high) = below_ephemeral_range();
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..10_000 {
        let port = low + (rand_u32() % u32::from(high - low)) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The ports tests may listen on: from 20000 up to the start of the kernel's ephemeral range.
fn below_ephemeral_range() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if start > 21000 {
        (20000, start)
    } else {
        (10000, 20000)
    }
}

fn rand_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A short random suffix for names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Polls `f` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process stopped with SIGTERM (then SIGKILL) on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let f = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.into(),
            child,
            log,
        })
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub fn stop(&mut self) {
        if self.exited() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP client of the Berth API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String, token: String) -> Api {
        Api {
            base,
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    /// Sends a request with the token; returns status and JSON body (Null when empty).
    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, v))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.req(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.req(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        self.req(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// Creates an app; panics with the API's message unless 201.
    pub async fn create_app(&self, body: Value) -> Result<Value> {
        let (s, v) = self.post("/api/v1/apps", body).await?;
        if s != 201 {
            bail!("create app: HTTP {s}: {v}");
        }
        Ok(v)
    }

    /// Queues a deployment and returns its id.
    pub async fn deploy(&self, app: &str, git_ref: Option<&str>) -> Result<String> {
        let body = match git_ref {
            Some(r) => serde_json::json!({"ref": r}),
            None => serde_json::json!({}),
        };
        let (s, v) = self
            .post(&format!("/api/v1/apps/{app}/deployments"), body)
            .await?;
        if s != 202 {
            bail!("deploy: HTTP {s}: {v}");
        }
        Ok(v["id"].as_str().context("deployment id")?.to_string())
    }

    /// Waits until a deployment is terminal and returns its record.
    pub async fn wait_terminal(&self, id: &str, timeout: Duration) -> Result<Value> {
        let api = self.clone();
        eventually(&format!("deployment {id} to end"), timeout, || {
            let api = api.clone();
            async move {
                let (s, v) = api.get(&format!("/api/v1/deployments/{id}")).await.ok()?;
                let st = v["status"].as_str()?;
                (s == 200 && matches!(st, "succeeded" | "failed" | "cancelled")).then_some(v)
            }
        })
        .await
    }

    pub async fn log(&self, id: &str) -> Result<String> {
        let r = self
            .http
            .get(format!("{}/api/v1/deployments/{id}/logs", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(r.text().await?)
    }
}

/// When the node process named `node` started, from the API's node list.
async fn node_started_at(api: &Api, node: &str) -> Option<u64> {
    let (_, v) = api.get("/api/v1/nodes").await.ok()?;
    v.as_array()?.iter().find(|n| n["name"] == node)?["started_at"].as_u64()
}

/// A Server-Sent Events connection to the API (no total timeout; each read has its own).
pub struct Sse {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: berth_protocol::sse::SseParser,
    queue: std::collections::VecDeque<berth_protocol::sse::SseEvent>,
}

impl Sse {
    /// Opens `path` with `Accept: text/event-stream` (and `Last-Event-ID` if given); fails unless
    /// the answer is 200 with that content type.
    pub async fn open(api: &Api, path: &str, last_event_id: Option<&str>) -> Result<Sse> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let mut req = http
            .get(format!("{}{path}", api.base))
            .bearer_auth(&api.token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if status != 200 || !ctype.starts_with("text/event-stream") {
            bail!("SSE {path}: HTTP {status} {ctype}: {}", resp.text().await?);
        }
        Ok(Sse {
            body: Box::pin(resp.bytes_stream()),
            parser: Default::default(),
            queue: Default::default(),
        })
    }

    /// The next event; `None` once the server closed the stream. Fails after `timeout` without one.
    pub async fn next(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<berth_protocol::sse::SseEvent>> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(Some(ev));
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => bail!("no SSE event within {timeout:?}"),
                Ok(None) => return Ok(None),
                Ok(Some(chunk)) => self.queue.extend(self.parser.push(&chunk?)),
            }
        }
    }
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

/// Runs a command and returns its stdout, failing with its stderr.
pub fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A local git repository (a bare one to deploy from, and a work tree to commit in).
pub struct GitRepo {
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl GitRepo {
    /// Copies `src` into a new work tree, commits it on `main` and pushes it to a bare repository.
    pub fn from_dir(root: &Path, src: &Path) -> Result<GitRepo> {
        let work = root.join("work");
        let bare = root.join("repo.git");
        copy_dir(src, &work)?;
        sh(Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare))?;
        sh(Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .arg(&work))?;
        let repo = GitRepo { bare, work };
        repo.git(&["remote", "add", "origin", &repo.bare.to_string_lossy()])?;
        repo.commit("initial")?;
        Ok(repo)
    }

    pub fn git(&self, args: &[&str]) -> Result<String> {
        sh(Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args([
                "-c",
                "user.name=Berth Test",
                "-c",
                "user.email=test@berth.invalid",
            ])
            .args(args))
    }

    /// Commits everything in the work tree, pushes `main`, returns the commit sha.
    pub fn commit(&self, message: &str) -> Result<String> {
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "--allow-empty", "-m", message])?;
        self.git(&["push", "-q", "origin", "main"])?;
        self.git(&["rev-parse", "HEAD"])
    }

    pub fn write(&self, rel: &str, contents: &str) -> Result<()> {
        let p = self.work.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(p, contents)?;
        Ok(())
    }

    pub fn url(&self) -> String {
        self.bare.to_string_lossy().into_owned()
    }
}

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

/// How examples/hello's page shows version `v`.
pub fn version_marker(v: &str) -> String {
    format!("<span id=\"version\">{v}</span>")
}

/// The example app's page with its version replaced.
pub fn hello_page(version: &str) -> String {
    let page = std::fs::read_to_string(repo_root().join("examples/hello/www/index.html"))
        .expect("examples/hello/www/index.html");
    page.replace(
        "<span id=\"version\">1</span>",
        &format!("<span id=\"version\">{version}</span>"),
    )
}

/// Running app containers of one app on one node (from the Docker engine itself).
pub fn running_containers(app: &str, node: &str) -> Result<Vec<String>> {
    let out = sh(Command::new("docker").args([
        "ps",
        "-q",
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
    fn base_env(
        dir: &Path,
        node: &str,
        ingress: u16,
        api_port: u16,
        admin: u16,
        token: &str,
    ) -> Vec<(String, String)> {
        let d = dir.to_string_lossy().to_string();
        vec![
            ("HOME".into(), d.clone()),
            ("XDG_CONFIG_HOME".into(), format!("{d}/config")),
            ("XDG_DATA_HOME".into(), format!("{d}/data")),
            ("BERTH_DATA_DIR".into(), format!("{d}/berth")),
            ("BERTH_API__LISTEN".into(), format!("127.0.0.1:{api_port}")),
            ("BERTH_API__TOKEN".into(), token.into()),
            ("BERTH_NODE__NAME".into(), node.into()),
            (
                "BERTH_NODE__CADDY_ADMIN".into(),
                format!("127.0.0.1:{admin}"),
            ),
            ("BERTH_NODE__INGRESS_HTTP".into(), ingress.to_string()),
            ("RUST_LOG".into(), "info".into()),
        ]
    }

    /// Runs `redis-cli` against this cluster's Redis (the Unix socket of `berth up`, or the URL
    /// of a separate cluster); its output, trimmed.
    pub fn redis_cli(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("redis-cli");
        match self.env.iter().find(|(k, _)| k == "BERTH_REDIS__URL") {
            Some((_, url)) => cmd.args(["-u", url]),
            None => cmd
                .arg("-s")
                .arg(self.dir.path().join("berth/redis/redis.sock")),
        };
        sh(cmd.args(args))
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
        let dir = TempDir::new("berth-up");
        let node = unique("node");
        let (ingress, api_port, admin) = (free_port(), free_port(), free_port());
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut env = Self::base_env(dir.path(), &node, ingress, api_port, admin, &token);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut c = Cluster {
            api: Api::new(format!("http://127.0.0.1:{api_port}"), token),
            dir,
            node,
            ingress,
            env,
            procs: Vec::new(),
            apps: Vec::new(),
        };
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
        let dir = TempDir::new("berth-sep");
        let node = unique("node");
        let (ingress, api_port, admin, redis_port) =
            (free_port(), free_port(), free_port(), free_port());
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut env = Self::base_env(dir.path(), &node, ingress, api_port, admin, &token);
        env.push((
            "BERTH_REDIS__URL".into(),
            format!("redis://127.0.0.1:{redis_port}/"),
        ));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut c = Cluster {
            api: Api::new(format!("http://127.0.0.1:{api_port}"), token),
            dir,
            node,
            ingress,
            env,
            procs: Vec::new(),
            apps: Vec::new(),
        };
        let d = c.dir.path().to_path_buf();
        let mut redis = Command::new("redis-server");
        redis
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .arg("--dir")
            .arg(&d);
        c.procs
            .push(Proc::spawn("redis", redis, d.join("redis.log"))?);
        let caddy_dir = d.join("caddy");
        std::fs::create_dir_all(&caddy_dir)?;
        let boot = caddy_dir.join("boot.json");
        std::fs::write(
            &boot,
            format!("{{\"admin\":{{\"listen\":\"127.0.0.1:{admin}\"}}}}"),
        )?;
        let mut caddy = Command::new("caddy");
        caddy
            .arg("run")
            .arg("--config")
            .arg(&boot)
            .env("HOME", &caddy_dir)
            .env("XDG_CONFIG_HOME", caddy_dir.join("config"))
            .env("XDG_DATA_HOME", caddy_dir.join("data"));
        c.procs
            .push(Proc::spawn("caddy", caddy, d.join("caddy.log"))?);
        eventually("redis and caddy", Duration::from_secs(20), || async {
            let r = std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_ok();
            let a = std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok();
            (r && a).then_some(())
        })
        .await?;
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

/// Serves `repo` (whose bare repository lies in `root`) as a private HTTPS-token remote: git's
/// dumb-HTTP files are prepared and a [`private_git_server`] demands Basic auth with user
/// `x-access-token` and `token`. Returns the clone URL and the Basic value, computed by the
/// system's `base64`, independent of Berth's code.
pub async fn private_https_remote(
    root: &Path,
    repo: &GitRepo,
    token: &str,
) -> Result<(String, String)> {
    sh(Command::new("git")
        .arg("-C")
        .arg(&repo.bare)
        .arg("update-server-info"))?;
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' 'x-access-token:{token}' | base64 -w0"))
        .output()?;
    let basic = String::from_utf8(out.stdout)?;
    let port = private_git_server(root.to_path_buf(), basic.clone()).await?;
    let name = repo
        .bare
        .file_name()
        .context("bare repository path")?
        .to_string_lossy();
    Ok((format!("http://127.0.0.1:{port}/{name}"), basic))
}

/// A git "dumb HTTP" server for one directory that demands `Authorization: Basic <b64>` on every
/// request (a private repository). Runs until the test's runtime ends.
pub async fn private_git_server(root: PathBuf, basic: String) -> Result<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (root, basic) = (root.clone(), basic.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let mut request = String::new();
                    if r.read_line(&mut request).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut authorized = false;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("authorization")
                                && v.trim() == format!("Basic {basic}")
                            {
                                authorized = true;
                            }
                        }
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("/");
                    let path = path
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .trim_start_matches('/');
                    let file = root.join(path);
                    let (status, body) = if !authorized {
                        (
                            "401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"",
                            Vec::new(),
                        )
                    } else if path.contains("..") {
                        ("403 Forbidden", Vec::new())
                    } else {
                        match tokio::fs::read(&file).await {
                            Ok(b) => ("200 OK", b),
                            Err(_) => ("404 Not Found", Vec::new()),
                        }
                    };
                    let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n", body.len());
                    if w.write_all(head.as_bytes()).await.is_err()
                        || w.write_all(&body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Constant HTTP load through Caddy's ingress for one host: `workers` loops of GET on kept-alive
/// connections until stopped; counts answers and failures (non-2xx or connection errors).
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests completed so far, by every worker.
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<LoadCount>>,
}

/// What a load run saw.
#[derive(Debug, Default, Clone)]
pub struct LoadCount {
    pub ok: u64,
    pub failed: u64,
    /// Requests that failed on a kept-alive connection the server closed before answering, and
    /// then succeeded on a fresh one (what browsers and HTTP clients do for idempotent requests;
    /// RFC 9112 §9.3.1). Counted apart so the figure stays visible.
    pub retried: u64,
    /// The first few failures, for the assertion message.
    pub examples: Vec<String>,
    /// How many answers contained each marker, in order of first sight.
    pub versions: Vec<(String, u64)>,
}

/// A kept-alive connection closed by the server before any answer (reset, or EOF before the
/// response): the request never reached the app, so repeating a GET is safe.
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        let text = format!("{s:?}");
        if text.contains("IncompleteMessage") || text.contains("ConnectionReset") {
            return true;
        }
        src = s.source();
    }
    false
}

impl Load {
    /// Starts the load; `marker` extracts the version shown in a body (for the record).
    pub fn start(port: u16, host: &str, workers: usize, pause: Duration) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, host, sent) = (stop.clone(), host.to_string(), sent.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .expect("client");
                    let mut n = LoadCount::default();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let send = || {
                            http.get(format!("http://127.0.0.1:{port}/"))
                                .header("host", &host)
                                .send()
                        };
                        let mut r = send().await;
                        if r.as_ref().is_err_and(closed_before_answer) {
                            n.retried += 1;
                            r = send().await;
                        }
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match r {
                            Ok(resp) if resp.status().is_success() => {
                                let body = resp.text().await.unwrap_or_default();
                                let v = body
                                    .split("<span id=\"version\">")
                                    .nth(1)
                                    .and_then(|t| t.split('<').next())
                                    .unwrap_or("?")
                                    .to_string();
                                match n.versions.iter_mut().find(|(k, _)| *k == v) {
                                    Some((_, c)) => *c += 1,
                                    None => n.versions.push((v, 1)),
                                }
                                n.ok += 1;
                            }
                            Ok(resp) => {
                                n.failed += 1;
                                if n.examples.len() < 5 {
                                    n.examples.push(format!("HTTP {}", resp.status()));
                                }
                            }
                            Err(e) => {
                                n.failed += 1;
                                if n.examples.len() < 5 {
                                    n.examples.push(format!("{e:?}"));
                                }
                            }
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    n
                })
            })
            .collect();
        Load { stop, sent, tasks }
    }

    /// Requests completed so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the load and sums what every worker saw.
    pub async fn finish(self) -> LoadCount {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = LoadCount::default();
        for t in self.tasks {
            if let Ok(n) = t.await {
                total.ok += n.ok;
                total.failed += n.failed;
                total.retried += n.retried;
                total.examples.extend(n.examples);
                for (v, c) in n.versions {
                    match total.versions.iter_mut().find(|(k, _)| *k == v) {
                        Some((_, t)) => *t += c,
                        None => total.versions.push((v, c)),
                    }
                }
            }
        }
        total
    }
}
