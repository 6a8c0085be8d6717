//! The Redis and the Caddy that a test runs itself (a separate cluster's, or the node's own
//! end-to-end test's), each on a port of the test's choosing and ready to answer when returned.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

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
    let proc = Proc::spawn("redis", redis, dir.join("redis.log"))?;
    listening("redis", port).await?;
    Ok(proc)
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
