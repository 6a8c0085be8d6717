//! A test fleet on one machine: [`Engine`] (an extra Docker engine with its own data, exec root,
//! socket and bridge, so nodes share no images), [`Fleet`] (one Redis, one coordinator and N
//! nodes, each with its own engine and Caddy) and [`Registry`] (a CNCF distribution registry on
//! loopback, the only way two engines share an image).
//!
//! Only root can run these (`dockerd`, `ip link`), as the rest of the suite.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::cluster::{
    berth_command, berth_env, node_env, procs_logs, redis_cli_url, serves, wait_new_heartbeat,
    wait_ready, STORE_REDIS_ARGS,
};
use crate::docker::{app_containers, docker_cleanup_on, docker_cli};
use crate::{eventually, free_port, sh, start_caddy, start_redis, unique, Api, Proc, TempDir};

/// The base image every engine gets from the main one at start (scripts/base-image.sh makes it).
pub const BASE_IMAGE: &str = "busybox:latest";

/// How long an engine may take to answer after `dockerd` starts (it takes ~0.2–2 s).
const ENGINE_START: Duration = Duration::from_secs(30);

/// The main engine's storage driver and cgroup driver (`docker info`); every extra engine uses
/// the same.
fn main_engine_drivers() -> Result<(String, String)> {
    static DRIVERS: OnceLock<(String, String)> = OnceLock::new();
    if let Some(d) = DRIVERS.get() {
        return Ok(d.clone());
    }
    let out = sh(docker_cli(None).args(["info", "--format", "{{.Driver}} {{.CgroupDriver}}"]))?;
    let Some((storage, cgroup)) = out.split_once(' ') else {
        bail!("the main Docker engine names no storage and cgroup drivers: {out:?}");
    };
    let d = (storage.to_string(), cgroup.to_string());
    Ok(DRIVERS.get_or_init(|| d).clone())
}

/// A Linux bridge of one engine's own, with a /24 of 10.100.0.0–10.199.255.0; removed on drop.
///
/// Slot `k` is bridge `bfleet<k>` with subnet `10.(100 + k / 256).(k % 256).0/24`, so creating
/// the bridge (which fails when the name exists) claims the subnet too, atomically across test
/// processes. Slots are tried from a point derived from the pid, and one whose subnet the host
/// already routes is given back.
struct Bridge {
    name: String,
    subnet: String,
}

impl Bridge {
    const SLOTS: u32 = 100 * 256;

    fn claim() -> Result<Bridge> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let start = std::process::id().wrapping_mul(97);
        for _ in 0..500 {
            let k = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % Self::SLOTS;
            let name = format!("bfleet{k}");
            let net = format!("10.{}.{}", 100 + k / 256, k % 256);
            let added = Command::new("ip")
                .args(["link", "add", &name, "type", "bridge"])
                .output()
                .context("running ip")?;
            if !added.status.success() {
                let err = String::from_utf8_lossy(&added.stderr);
                if err.contains("exists") {
                    continue;
                }
                bail!("ip link add {name} type bridge: {}", err.trim());
            }
            let bridge = Bridge {
                name,
                subnet: format!("{net}.0/24"),
            };
            let routes = sh(Command::new("ip").args(["-4", "route", "show"]))?;
            if routes.contains(&format!("{net}.")) {
                continue; // in use by something else: dropping the bridge gives the slot back
            }
            sh(Command::new("ip").args([
                "addr",
                "add",
                &format!("{net}.1/24"),
                "dev",
                &bridge.name,
            ]))?;
            sh(Command::new("ip").args(["link", "set", &bridge.name, "up"]))?;
            return Ok(bridge);
        }
        bail!(
            "no free bridge slot among bfleet0..bfleet{}",
            Self::SLOTS - 1
        )
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

/// A Docker engine of its own beside the machine's: `dockerd` with its own `--config-file` (the
/// main engine's storage driver, since the system daemon.json also sets the data root, which a
/// second engine must not share), `--data-root`, `--exec-root`, `--pidfile`, socket and bridge,
/// with [`BASE_IMAGE`] loaded from the main engine. It does not touch iptables
/// (`--iptables=false`: an engine that does flushes the main engine's `DOCKER` chains at start);
/// ports it publishes on loopback are served by its `docker-proxy`.
///
/// Dropped: its containers are removed, `dockerd` is stopped (SIGTERM, then SIGKILL), whatever
/// of it still runs is killed, its mounts are taken away, and its bridge and directory removed.
pub struct Engine {
    /// `unix:///…/docker.sock`: what `docker -H` and `BERTH_NODE__DOCKER_HOST` take.
    pub host: String,
    cgroup_parent: Option<String>,
    dockerd: Option<Proc>,
    boots: u32,
    bridge: Bridge,
    dir: TempDir,
}

impl Engine {
    /// Starts an engine and loads [`BASE_IMAGE`] into it; returns once it answers.
    pub async fn start() -> Result<Engine> {
        let (driver, cgroup_driver) = main_engine_drivers()?;
        let bridge = Bridge::claim()?;
        // Short: containerd's sockets live under the exec root (a socket path has 108 bytes).
        let dir = TempDir::with_prefix("berth-engine")?;
        std::fs::write(
            dir.path().join("daemon.json"),
            serde_json::json!({ "storage-driver": driver }).to_string(),
        )?;
        // With cgroupfs, its containers' cgroups go under a parent of its own, which the drop
        // removes: a killed engine's containers leave theirs behind. (systemd removes its own.)
        let cgroup_parent = (cgroup_driver == "cgroupfs").then(|| format!("berth-{}", bridge.name));
        let mut engine = Engine {
            host: format!("unix://{}/docker.sock", dir.path().display()),
            cgroup_parent,
            dockerd: None,
            boots: 0,
            bridge,
            dir,
        };
        engine.boot().await?;
        let load = format!("docker save {BASE_IMAGE} | docker -H {} load", engine.host);
        sh(Command::new("bash").args(["-o", "pipefail", "-c", &load]))
            .with_context(|| format!("loading {BASE_IMAGE} into the engine"))?;
        Ok(engine)
    }

    /// Starts `dockerd` and waits until it answers.
    async fn boot(&mut self) -> Result<()> {
        let d = self.dir.path();
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args(["-H", &self.host, "--bridge", &self.bridge.name])
            .arg("--iptables=false");
        if let Some(parent) = &self.cgroup_parent {
            cmd.arg("--cgroup-parent").arg(format!("/{parent}"));
        }
        self.boots += 1;
        let log = d.join(format!("dockerd-{}.log", self.boots));
        let proc = self.dockerd.insert(Proc::spawn("dockerd", cmd, log)?);
        let host = self.host.clone();
        eventually("the engine to answer", ENGINE_START, || {
            let state = if proc.exited() {
                Some(Err(anyhow!("dockerd exited:\n{}", proc.log_text())))
            } else {
                let info = docker_cli(Some(&host))
                    .args(["info", "--format", "{{.ID}}"])
                    .output();
                info.is_ok_and(|o| o.status.success()).then_some(Ok(()))
            };
            async move { state }
        })
        .await?
    }

    /// The `docker` CLI against this engine.
    pub fn docker(&self) -> Command {
        docker_cli(Some(&self.host))
    }

    /// The engine's directory (`data/`, `exec/`, `docker.sock`, `dockerd-<boot>.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A loopback address of this engine's own (`127.x.y.1` for its subnet `10.x.y.0/24`),
    /// which its node advertises.
    pub fn loopback(&self) -> String {
        let net = self.bridge.subnet.trim_start_matches("10.");
        let mut parts = net.split('.');
        let (x, y) = (parts.next().unwrap_or("100"), parts.next().unwrap_or("0"));
        format!("127.{x}.{y}.1")
    }

    /// The engine's bridge: its name and subnet (`10.x.y.0/24`).
    pub fn bridge(&self) -> (&str, &str) {
        (&self.bridge.name, &self.bridge.subnet)
    }

    /// Whether its `dockerd` runs (false after [`Engine::kill`]).
    pub fn running(&mut self) -> bool {
        self.dockerd.as_mut().is_some_and(|p| !p.exited())
    }

    /// What `dockerd` printed in its latest boot.
    pub fn log_text(&self) -> String {
        self.dockerd
            .as_ref()
            .map(Proc::log_text)
            .unwrap_or_default()
    }

    /// Running app containers of `app` that `node` made on this engine.
    pub fn running_containers(&self, app: &str, node: &str) -> Result<Vec<String>> {
        app_containers(Some(&self.host), app, node, "-q")
    }

    /// Every app container of `app` that `node` made on this engine, running or stopped.
    pub fn containers(&self, app: &str, node: &str) -> Result<Vec<String>> {
        app_containers(Some(&self.host), app, node, "-aq")
    }

    /// Removes every container `node` made on this engine, and the images of `apps`.
    pub fn cleanup(&self, node: &str, apps: &[&str]) {
        docker_cleanup_on(Some(&self.host), node, apps);
    }

    /// Kills the engine as a power cut would: SIGKILL to `dockerd`, its containerd, every
    /// container's shim and process, at once; then its mounts are taken away, as a reboot
    /// does. Its data stays; [`Engine::restart`] boots it again.
    pub fn kill(&mut self) {
        let pids = engine_processes(self.dir.path());
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if let Some(p) = &mut self.dockerd {
            p.kill();
        }
        wait_gone(&pids);
        unmount_under(self.dir.path());
    }

    /// Boots the engine again (after [`Engine::kill`]; a running engine is stopped first). Its
    /// containers come back stopped, its images are still there.
    pub async fn restart(&mut self) -> Result<()> {
        if self.running() {
            self.stop();
        }
        self.boot().await
    }

    /// Stops `dockerd` (SIGTERM, then SIGKILL after 10 s) and whatever of the engine outlives it.
    fn stop(&mut self) {
        if let Some(p) = &mut self.dockerd {
            p.stop();
        }
        let rest = engine_processes(self.dir.path());
        for pid in &rest {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        wait_gone(&rest);
        unmount_under(self.dir.path());
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.running() {
            // Containers removed first: a stopping dockerd waits out each one's stop timeout.
            if let Ok(ids) = sh(self.docker().args(["ps", "-aq"])) {
                for id in ids.lines() {
                    let _ = self.docker().args(["rm", "-f", id]).output();
                }
            }
        }
        self.stop();
        if let Some(parent) = &self.cgroup_parent {
            remove_cgroups(parent);
        }
        // Then the directory (the bridge goes when the field drops, after dockerd is gone).
        if let Err(e) = std::fs::remove_dir_all(self.dir.path()) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "berth-tests: could not remove the engine directory {}: {e}",
                    self.dir.path().display()
                );
            }
        }
    }
}

/// The processes of the engine in `dir`: those whose command line names `dir` (dockerd, its
/// containerd, the containers' shims, fuse-overlayfs mounts, `docker -H` clients) and their
/// children (each container's first process, the `docker-proxy`s).
fn engine_processes(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let mut all: Vec<(i32, i32, bool)> = Vec::new(); // pid, ppid, names dir
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let names = String::from_utf8_lossy(&cmdline).contains(&needle);
        all.push((pid, ppid, names));
    }
    let owners: Vec<i32> = all
        .iter()
        .filter(|(pid, _, names)| *names && *pid != me)
        .map(|(pid, _, _)| *pid)
        .collect();
    let mut pids = owners.clone();
    pids.extend(
        all.iter()
            .filter(|(pid, ppid, _)| owners.contains(ppid) && !owners.contains(pid) && *pid != me)
            .map(|(pid, _, _)| *pid),
    );
    pids
}

/// Removes the cgroup `/<parent>` and those under it, in every hierarchy (v1 controllers and v2),
/// deepest first; each is empty once its processes are gone.
fn remove_cgroups(parent: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        hierarchies.extend(entries.flatten().map(|e| e.path()));
    }
    for h in hierarchies {
        let mut dirs = Vec::new();
        let mut todo = vec![h.join(parent)];
        while let Some(d) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            todo.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Waits (5 s at most) until none of `pids` exists any more.
fn wait_gone(pids: &[i32]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Detaches every mount at or under `dir`, deepest first (`umount -l`: a fuse mount whose
/// process is dead cannot be unmounted any other way).
fn unmount_under(dir: &Path) {
    for _ in 0..3 {
        let mut points = mounts_under(dir);
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(&p).output();
        }
    }
}

/// Mount points at or under `dir`, from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One node of a [`Fleet`]: its name, its Caddy's ports, its engine and its processes'
/// environment.
pub struct FleetNode {
    pub name: String,
    /// Its Caddy's HTTP ingress port.
    pub ingress: u16,
    /// Its Caddy's admin API port.
    pub caddy_admin: u16,
    pub engine: Engine,
    /// The environment of its `berth node` process (its own data dir, Caddy and engine).
    pub env: Vec<(String, String)>,
    runs: u32,
}

impl FleetNode {
    fn proc_name(&self) -> String {
        format!("berth node {}", self.name)
    }
}

/// A fleet on one machine: Redis, one `berth coordinator`, and N nodes, each a `berth node`
/// process with its own [`Engine`], Caddy and data directory. The coordinator and the nodes
/// share the cluster's secret key (`BERTH_SECRET_KEY`), as a real fleet must.
///
/// Dropped: the berth processes stop, then the Caddies and Redis; each node's containers and the
/// images of the fleet's apps are removed from its engine, then the engines go.
pub struct Fleet {
    pub dir: TempDir,
    pub api: Api,
    /// The coordinator's environment (CLI calls take it too: the API's address and token).
    pub env: Vec<(String, String)>,
    pub nodes: Vec<FleetNode>,
    /// Redis, `berth coordinator`, and per node `caddy <node>` and `berth node <node>`.
    pub procs: Vec<Proc>,
    /// Apps whose images are removed at the end.
    pub apps: Vec<String>,
}

impl Fleet {
    /// Starts a fleet of `n` nodes; returns once the API lists every node as ready.
    pub async fn start(n: usize) -> Result<Fleet> {
        Self::start_with(n, &[]).await
    }

    /// [`Fleet::start`] with extra environment for every berth process (e.g.
    /// `BERTH_REGISTRY__URL`).
    pub async fn start_with(n: usize, extra: &[(&str, &str)]) -> Result<Fleet> {
        let dir = TempDir::with_prefix("berth-fleet")?;
        let (api_port, redis_port) = (free_port(), free_port());
        let token = uuid::Uuid::new_v4().simple().to_string();
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut env = berth_env(dir.path(), api_port, &token);
        env.push((
            "BERTH_REDIS__URL".into(),
            format!("redis://127.0.0.1:{redis_port}/"),
        ));
        env.push(("BERTH_SECRET_KEY".into(), key));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let engines = futures_util::future::try_join_all((0..n).map(|_| Engine::start())).await?;
        let mut fleet = Fleet {
            api: Api::new(format!("http://127.0.0.1:{api_port}"), token),
            dir,
            env,
            nodes: Vec::new(),
            procs: Vec::new(),
            apps: Vec::new(),
        };
        let d = fleet.dir.path().to_path_buf();
        fleet
            .procs
            .push(start_redis(&d, redis_port, &STORE_REDIS_ARGS).await?);
        let mut coord = berth_command(&fleet.env);
        coord.arg("coordinator");
        fleet.procs.push(Proc::spawn(
            "berth coordinator",
            coord,
            d.join("coordinator.log"),
        )?);
        for (i, engine) in engines.into_iter().enumerate() {
            let name = unique(&format!("node{i}"));
            let (caddy_admin, ingress) = (free_port(), free_port());
            let home = d.join(&name);
            let mut caddy = start_caddy(&home.join("caddy"), caddy_admin).await?;
            caddy.name = format!("caddy {name}");
            fleet.procs.push(caddy);
            let mut env: Vec<(String, String)> = fleet
                .env
                .iter()
                .filter(|(k, _)| k != "BERTH_DATA_DIR")
                .cloned()
                .collect();
            env.push((
                "BERTH_DATA_DIR".into(),
                home.join("berth").to_string_lossy().into_owned(),
            ));
            env.extend(node_env(&name, caddy_admin, ingress));
            env.push(("BERTH_NODE__DOCKER_HOST".into(), engine.host.clone()));
            // The engine's default bridge, not a `berth-apps` network of its own: with a
            // network created in a second engine on this host, the main engine's `docker0`
            // vanished during the fleet tests (twice; cause not pinned down).
            env.push(("BERTH_NODE__APP_NETWORK".into(), "bridge".into()));
            // Each node publishes on a loopback address of its own, as servers of a fleet have
            // addresses of their own: engines pick host ports independently, and two replicas
            // on 127.0.0.1 could be given the same one.
            env.push(("BERTH_NODE__ADVERTISE".into(), engine.loopback()));
            fleet.nodes.push(FleetNode {
                name,
                ingress,
                caddy_admin,
                engine,
                env,
                runs: 0,
            });
            let proc = fleet.spawn_node(i)?;
            fleet.procs.push(proc);
        }
        let names: Vec<String> = fleet.nodes.iter().map(|n| n.name.clone()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        wait_ready(&fleet.api, &mut fleet.procs, &names).await?;
        Ok(fleet)
    }

    /// A new `berth node` process for node `i` (its log `<node>/node-<run>.log`).
    fn spawn_node(&mut self, i: usize) -> Result<Proc> {
        let d = self.dir.path().to_path_buf();
        let node = &mut self.nodes[i];
        node.runs += 1;
        let mut cmd = berth_command(&node.env);
        cmd.arg("node");
        let log = d.join(&node.name).join(format!("node-{}.log", node.runs));
        Proc::spawn(&node.proc_name(), cmd, log)
    }

    fn proc_index(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.name == name)
    }

    /// The index of the node called `name` (e.g. the one a deployment record names).
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&FleetNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// `berth` with the coordinator's environment (for CLI calls).
    pub fn berth(&self) -> Command {
        berth_command(&self.env)
    }

    /// Runs `redis-cli` against the fleet's Redis; its output, trimmed.
    pub fn redis_cli(&self, args: &[&str]) -> Result<String> {
        let url = self
            .env
            .iter()
            .find(|(k, _)| k == "BERTH_REDIS__URL")
            .map(|(_, v)| v.as_str())
            .context("the fleet's Redis URL")?;
        sh(redis_cli_url(url).args(args))
    }

    /// Everything the fleet's processes printed (for failure messages; the engines' own logs
    /// are [`Engine::log_text`]).
    pub fn logs(&self) -> String {
        procs_logs(&self.procs)
    }

    /// Waits (10 s at most) until node `i`'s Caddy serves a 200 page containing `needle` for
    /// `host`.
    pub async fn serves(&self, i: usize, host: &str, needle: &str) -> Result<String> {
        serves(self.nodes[i].ingress, host, needle).await
    }

    /// Registers an app for image cleanup and creates it.
    pub async fn create_app(&mut self, body: Value) -> Result<Value> {
        if let Some(n) = body["name"].as_str() {
            self.apps.push(n.to_string());
        }
        self.api.create_app(body).await
    }

    /// Loses node `i` as a server would: SIGKILL to its `berth node` and to its engine with
    /// every container on it ([`Engine::kill`]). Its Caddy keeps running.
    /// Kills node `i`'s `berth node` process only (SIGKILL): its engine and containers keep
    /// running, as when the daemon crashes or its host is cut off.
    pub fn kill_berth(&mut self, i: usize) {
        if let Some(p) = self.proc_index(&self.nodes[i].proc_name()) {
            self.procs[p].kill();
        }
    }

    pub fn kill_node(&mut self, i: usize) {
        if let Some(p) = self.proc_index(&self.nodes[i].proc_name()) {
            self.procs[p].kill();
        }
        self.nodes[i].engine.kill();
    }

    /// Brings node `i` back, or restarts it: boots its engine if it is down, stops its `berth
    /// node` if it runs, and starts a new one; returns once the API lists the new process's
    /// heartbeat as ready.
    pub async fn restart_node(&mut self, i: usize) -> Result<()> {
        let name = self.nodes[i].name.clone();
        let (_, list) = self.api.get("/api/v1/nodes").await?;
        let before = list
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["name"] == name.as_str())?["started_at"].as_u64());
        if !self.nodes[i].engine.running() {
            self.nodes[i].engine.restart().await?;
        }
        let at = self.proc_index(&self.nodes[i].proc_name());
        if let Some(at) = at {
            self.procs[at].stop();
        }
        let proc = self.spawn_node(i)?;
        let at = match at {
            Some(at) => {
                self.procs[at] = proc;
                at
            }
            None => {
                self.procs.push(proc);
                self.procs.len() - 1
            }
        };
        wait_new_heartbeat(&self.api, &name, before, &mut self.procs[at]).await?;
        wait_ready(
            &self.api,
            std::slice::from_mut(&mut self.procs[at]),
            &[name.as_str()],
        )
        .await
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Berth processes first (newest first), then Caddies and Redis.
        while let Some(mut p) = self.procs.pop() {
            p.stop();
        }
        // Then each node's containers and images, and its engine, all nodes at once (an engine
        // takes about a second to stop).
        let apps: Vec<&str> = self.apps.iter().map(String::as_str).collect();
        std::thread::scope(|s| {
            for mut node in self.nodes.drain(..) {
                let apps = &apps;
                s.spawn(move || {
                    if node.engine.running() {
                        node.engine.cleanup(&node.name, apps);
                    }
                    drop(node);
                });
            }
        });
    }
}

/// A CNCF distribution registry (Debian's `docker-registry`) on 127.0.0.1:`port`, its storage in
/// a temporary directory, deletes enabled. Engines push and pull `127.0.0.1:<port>/…` without TLS
/// settings: Docker trusts 127.0.0.0/8 as an insecure registry. Stopped on drop.
pub struct Registry {
    pub port: u16,
    proc: Proc,
    dir: TempDir,
}

impl Registry {
    /// Starts `docker-registry serve`; returns once `GET /v2/` answers 200.
    pub async fn start() -> Result<Registry> {
        let dir = TempDir::with_prefix("berth-registry")?;
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: info\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        let mut proc = Proc::spawn("docker-registry", cmd, dir.path().join("registry.log"))
            .context("is Debian's docker-registry installed? (scripts/setup.sh installs it)")?;
        let http = crate::http_client()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://127.0.0.1:{port}/v2/");
        eventually("the registry to answer", Duration::from_secs(20), || {
            let state = if proc.exited() {
                Some(Err(anyhow!("docker-registry exited:\n{}", proc.log_text())))
            } else {
                None
            };
            let (http, url) = (http.clone(), url.clone());
            async move {
                if state.is_some() {
                    return state;
                }
                let r = http.get(&url).send().await.ok()?;
                (r.status() == 200).then_some(Ok(()))
            }
        })
        .await??;
        Ok(Registry { port, proc, dir })
    }

    /// `127.0.0.1:<port>`, the prefix of an image name in this registry.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the registry printed.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// Its storage directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
