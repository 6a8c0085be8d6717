//! The Redis and the Caddy that a test runs itself (a separate cluster's, or the node's own
//! end-to-end test's), each on a port of the test's choosing and ready to answer when returned.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{eventually, Proc};

/// Starts `redis-server` on 127.0.0.1:`port` without snapshots, its files and `redis.log` in
/// `dir`, with `args` as further options (e.g. `["--appendonly", "no"]`); returns once the port
/// accepts connections.
pub async fn start_redis(dir: &Path, port: u16, args: &[&str]) -> Result<Proc> {
    let mut redis = Command::new("redis-server");
    redis
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(args)
        .arg("--dir")
        .arg(dir);
    let mut proc = Proc::spawn("redis", redis, dir.join("redis.log"))?;
    if args.contains(&"--tls-port") {
        // A plain PING gets no answer over TLS: the port accepting is all that is checked.
        listening("redis", port).await?;
    } else {
        answering(&mut proc, port).await?;
    }
    Ok(proc)
}

/// Starts a `redis-sentinel` on 127.0.0.1:`port` that monitors the primary at
/// 127.0.0.1:`primary` under the name `master` (quorum 2; down after 1 s; a failover given 5 s),
/// its config file (Sentinel rewrites it) and `sentinel.log` in `dir` (created); returns once the
/// port accepts connections. Fails, saying so, when Debian's `redis-sentinel` is not installed.
pub async fn start_sentinel(dir: &Path, port: u16, master: &str, primary: u16) -> Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
             sentinel monitor {master} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {master} 1000\n\
             sentinel failover-timeout {master} 5000\n\
             sentinel parallel-syncs {master} 1\n",
            dir = dir.display()
        ),
    )?;
    let mut sentinel = Command::new("redis-sentinel");
    sentinel.arg(&conf);
    let mut proc = Proc::spawn("redis-sentinel", sentinel, dir.join("sentinel.log"))
        .context("is Debian's redis-sentinel installed? (scripts/setup.sh installs it)")?;
    answering(&mut proc, port).await?;
    Ok(proc)
}

/// A Redis under Sentinel on loopback, as a fleet would run it on three hosts: a primary, its
/// replica, and three `redis-sentinel`s watching them under the name `master` (quorum 2), each
/// process's files in a directory of its own under `dir`.
pub struct RedisSentinels {
    dir: PathBuf,
    pub master: String,
    pub primary: Proc,
    pub primary_port: u16,
    pub replica: Proc,
    pub replica_port: u16,
    pub sentinels: Vec<Proc>,
    /// `127.0.0.1:<port>` of each Sentinel.
    pub addrs: Vec<String>,
}

impl RedisSentinels {
    /// Starts them all and returns once they have settled: each Sentinel knows the replica and
    /// the two other Sentinels, so that a failover can be agreed.
    pub async fn start(dir: &Path, master: &str) -> Result<RedisSentinels> {
        let sub = |name: &str| -> Result<PathBuf> {
            let d = dir.join(name);
            std::fs::create_dir_all(&d)?;
            Ok(d)
        };
        let (primary_port, replica_port) = (crate::free_port(), crate::free_port());
        let primary = start_redis(&sub("primary")?, primary_port, &[]).await?;
        let replica = start_redis(
            &sub("replica")?,
            replica_port,
            &["--replicaof", "127.0.0.1", &primary_port.to_string()],
        )
        .await?;
        let mut sentinels = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..3 {
            let port = crate::free_port();
            sentinels.push(
                start_sentinel(&sub(&format!("sentinel{i}"))?, port, master, primary_port).await?,
            );
            addrs.push(format!("127.0.0.1:{port}"));
        }
        for a in &addrs {
            let c = redis::Client::open(format!("redis://{a}/"))?;
            eventually(
                &format!("sentinel {a} to know the replica and the other sentinels"),
                Duration::from_secs(60),
                || async {
                    let mut c = c.get_multiplexed_async_connection().await.ok()?;
                    let count = |what: &'static str| {
                        redis::cmd("SENTINEL").arg(what).arg(master).to_owned()
                    };
                    let replicas: Vec<redis::Value> =
                        count("replicas").query_async(&mut c).await.ok()?;
                    let others: Vec<redis::Value> =
                        count("sentinels").query_async(&mut c).await.ok()?;
                    (replicas.len() == 1 && others.len() == 2).then_some(())
                },
            )
            .await?;
        }
        Ok(RedisSentinels {
            dir: dir.to_path_buf(),
            master: master.to_string(),
            primary,
            primary_port,
            replica,
            replica_port,
            sentinels,
            addrs,
        })
    }

    /// The Sentinels as `redis.sentinels` takes them in the environment: `a:1,b:2,c:3`.
    pub fn env(&self) -> String {
        self.addrs.join(",")
    }

    /// Starts the (killed) primary again as it was configured, a primary by its own account:
    /// Sentinel is expected to make it a replica of the new one.
    pub async fn restart_primary(&mut self) -> Result<()> {
        self.primary = start_redis(&self.dir.join("primary"), self.primary_port, &[]).await?;
        Ok(())
    }

    /// The port of the one of the two that says it is the primary now (after failovers either
    /// may be); `None` while neither does.
    pub async fn primary_now(&self) -> Option<u16> {
        for port in [self.primary_port, self.replica_port] {
            if redis_role(port).await.as_deref() == Some("master") {
                return Some(port);
            }
        }
        None
    }

    /// `kill -9` of the one at `port`, as a crash of its host would take it.
    pub fn kill(&mut self, port: u16) {
        match port == self.primary_port {
            true => self.primary.kill(),
            false => self.replica.kill(),
        }
    }

    /// Starts the one at `port` again on its files, a primary by its own account (as a host
    /// that was the primary comes back): Sentinel makes it a replica of the primary now.
    pub async fn restart(&mut self, port: u16) -> Result<()> {
        if port == self.primary_port {
            return self.restart_primary().await;
        }
        self.replica = start_redis(&self.dir.join("replica"), self.replica_port, &[]).await?;
        Ok(())
    }

    /// Waits until the set is whole again: one primary, the other its replica in sync and
    /// acknowledging writes, and every
    /// Sentinel naming that primary and knowing the replica as up — so that another failover
    /// can be agreed. The primary's port.
    pub async fn whole(&self, timeout: Duration) -> Result<u16> {
        eventually("the Redis set whole again", timeout, || async {
            let primary = self.primary_now().await?;
            let c = redis::Client::open(format!("redis://127.0.0.1:{primary}/")).ok()?;
            let mut c = c.get_multiplexed_async_connection().await.ok()?;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut c)
                .await
                .ok()?;
            if !info.contains("connected_slaves:1") || !info.contains("state=online") {
                return None;
            }
            // The replica acknowledges writes (a replica just synced may not for a second), so
            // a write waiting for it (`redis.min_replicas_acked`) is confirmed.
            let _: i64 = redis::cmd("PUBLISH")
                .arg("berth:test:sync")
                .arg(1)
                .query_async(&mut c)
                .await
                .ok()?;
            let acked: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(100)
                .query_async(&mut c)
                .await
                .ok()?;
            if acked < 1 {
                return None;
            }
            for a in &self.addrs {
                let s = redis::Client::open(format!("redis://{a}/")).ok()?;
                let mut s = s.get_multiplexed_async_connection().await.ok()?;
                let at: Vec<String> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async(&mut s)
                    .await
                    .ok()?;
                if at.get(1).map(String::as_str) != Some(primary.to_string().as_str()) {
                    return None;
                }
                let replicas: Vec<std::collections::HashMap<String, String>> =
                    redis::cmd("SENTINEL")
                        .arg("replicas")
                        .arg(&self.master)
                        .query_async(&mut s)
                        .await
                        .ok()?;
                let up = replicas.iter().any(|r| {
                    r.get("flags").is_some_and(|f| f == "slave")
                        && r.get("master-link-status").is_some_and(|l| l == "ok")
                });
                if !up {
                    return None;
                }
            }
            Some(primary)
        })
        .await
    }
}

/// What `ROLE` says the Redis at 127.0.0.1:`port` is (`master`, `slave`); `None` when it does
/// not answer.
pub async fn redis_role(port: u16) -> Option<String> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut c = c.get_multiplexed_async_connection().await.ok()?;
    let v: redis::Value = redis::cmd("ROLE").query_async(&mut c).await.ok()?;
    match v {
        redis::Value::Array(items) => match items.first()? {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        },
        _ => None,
    }
}

/// Starts `redis-server` on 127.0.0.1:`port` as a replica of the Redis on 127.0.0.1:`primary`
/// (`--replicaof`; its files and `redis.log` in `dir`, created); returns once its link to the
/// primary is up and it acknowledges a write (`PUBLISH` + `WAIT 1 100` answers 1 — after a
/// diskless sync a primary streams nothing to the replica until its first acknowledgement, up to
/// a second later), i.e. it has the primary's data and takes part in `WAIT`. (Give the primary
/// `--repl-diskless-sync-delay 0`, or the first sync waits 5 s for more replicas.)
pub async fn start_replica(dir: &Path, port: u16, primary: u16) -> Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let proc = start_redis(
        dir,
        port,
        &["--replicaof", "127.0.0.1", &primary.to_string()],
    )
    .await?;
    let info = |port: u16| {
        Command::new("redis-cli")
            .args(["-p", &port.to_string(), "INFO", "replication"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    eventually(
        "the replica to be in sync",
        Duration::from_secs(30),
        || async {
            if !info(port).contains("master_link_status:up") {
                return None;
            }
            let mut cli = Command::new("redis-cli")
                .args(["-p", &primary.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .ok()?;
            use std::io::Write;
            cli.stdin
                .take()?
                .write_all(b"PUBLISH berth:test:sync 1\nWAIT 1 100\n")
                .ok()?;
            let out = cli.wait_with_output().ok()?;
            (String::from_utf8_lossy(&out.stdout).lines().last() == Some("1")).then_some(())
        },
    )
    .await?;
    Ok(proc)
}

/// Pauses (SIGSTOP) or resumes (SIGCONT) `proc`: a Redis replica that stops answering without
/// closing its connections, as a hung or partitioned machine would.
pub fn pause(proc: &Proc, paused: bool) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    let signal = if paused {
        Signal::SIGSTOP
    } else {
        Signal::SIGCONT
    };
    kill(nix::unistd::Pid::from_raw(proc.pid() as i32), signal)?;
    Ok(())
}

/// Starts `caddy run` with nothing but its admin API on 127.0.0.1:`admin`: its boot config, home,
/// config, data and `caddy.log` in `dir` (created). Returns once the admin API accepts
/// connections.
pub async fn start_caddy(dir: &Path, admin: u16) -> Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let boot = dir.join("boot.json");
    std::fs::write(
        &boot,
        format!("{{\"admin\":{{\"listen\":\"127.0.0.1:{admin}\"}}}}"),
    )?;
    let mut caddy = Command::new("caddy");
    caddy
        .arg("run")
        .arg("--config")
        .arg(&boot)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"));
    let proc = Proc::spawn("caddy", caddy, dir.join("caddy.log"))?;
    listening("caddy's admin API", admin).await?;
    Ok(proc)
}

/// Waits (20 s at most) until the Redis (or Sentinel) `proc` started answers a `PING` on
/// 127.0.0.1:`port` — with any reply, `-LOADING` and `-NOAUTH` included: it is there — and
/// fails at once, with its log, if it exits. A port that accepts a connection is not enough:
/// twice in one CI run a test's first connection right after that was reset by peer.
async fn answering(proc: &mut Proc, port: u16) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if proc.exited() {
            anyhow::bail!(
                "{} exited at start; its log:\n{}",
                proc.name,
                proc.log_text()
            );
        }
        let ping = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(b"PING\r\n").await?;
            let mut first = [0u8; 1];
            s.read_exact(&mut first).await?;
            Ok::<u8, std::io::Error>(first[0])
        };
        let last = match tokio::time::timeout(Duration::from_secs(2), ping).await {
            Ok(Ok(b'+' | b'-')) => return Ok(()),
            Ok(Ok(b)) => format!("a reply starting {:?}", b as char),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no reply in 2 s".into(),
        };
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "{} on port {port} did not answer a PING in 20 s (last: {last})",
                proc.name
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (20 s at most) until 127.0.0.1:`port` accepts a connection.
async fn listening(what: &str, port: u16) -> Result<()> {
    eventually(what, Duration::from_secs(20), || async {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()
            .then_some(())
    })
    .await
}

/// The files of a certificate authority made for one test: `ca` (its root, PEM) signed `cert`
/// and `key`, a server certificate for `127.0.0.1` (an IP SAN; no host name).
pub struct TestCa {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Makes a throwaway CA and a server certificate it signed for 127.0.0.1, in `dir` (created),
/// with `openssl` (P-256 keys, valid 2 days).
pub fn test_ca(dir: &Path) -> Result<TestCa> {
    std::fs::create_dir_all(dir)?;
    let p = |f: &str| dir.join(f);
    let ext = p("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    crate::sh(
        Command::new("openssl")
            .args(["req", "-x509", "-days", "2", "-subj", "/CN=berth test CA"])
            .args(ec)
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem")),
    )?;
    crate::sh(
        Command::new("openssl")
            .args(["req", "-subj", "/CN=127.0.0.1"])
            .args(ec)
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")),
    )?;
    crate::sh(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(p("server.pem")),
    )?;
    Ok(TestCa {
        ca: p("ca.pem"),
        cert: p("server.pem"),
        key: p("server.key"),
    })
}
