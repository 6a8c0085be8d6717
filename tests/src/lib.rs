//! Test support: start the real things (the `berth` binary, Redis, Caddy, git repositories) on
//! free loopback ports in a temporary directory, talk to them, and clean up after.
//!
//! Nothing here sleeps and hopes: every wait polls a condition with a deadline ([`eventually`]).
//!
//! One module per helper, everything re-exported here:
//! - `ports`: [`free_port`];
//! - `process`: [`Proc`], [`berth_bin`], [`sh`];
//! - `git_repo`: [`GitRepo`]; `git_server`: [`private_git_server`], [`private_https_remote`];
//! - `services`: [`start_redis`], [`start_caddy`] for tests that run their own;
//! - `cluster`: [`Cluster`], [`ingress_get`]; `api`: [`Api`];
//! - `docker`: the Docker look-ups and clean-up by a node's label ([`running_containers`], …);
//! - `fleet`: [`Fleet`] (N nodes, each with its own Docker [`Engine`] and Caddy), [`Registry`];
//! - `load`: [`Load`], [`LoadCount`]; `sse`: [`Sse`];
//! - `example`: the examples/hello app; [`github`]: webhook deliveries;
//! - [`chaos`]: the fault-injection suite's scenarios and trial checker (issue 12).

#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

mod api;
pub mod chaos;
mod cluster;
mod docker;
mod example;
mod fleet;
mod git_repo;
mod git_server;
pub mod github;
mod load;
mod ports;
mod process;
mod seed;
mod services;
mod sse;

pub use api::Api;
pub use cluster::{ingress_get, ingress_get_path, Cluster};
pub use docker::{containers, docker_cleanup, docker_cli, running_containers};
pub use example::{hello_page, repo_root, slow_dockerfile, version_marker};
pub use fleet::{Engine, Fleet, FleetNode, Registry, BASE_IMAGE};
pub use git_repo::GitRepo;
pub use git_server::{private_git_server, private_https_remote};
pub use load::{Load, LoadCount};
pub use ports::free_port;
pub use process::{berth_bin, sh, Proc};
pub use services::{
    pause, redis_role, start_caddy, start_redis, start_replica, start_sentinel, test_ca,
    RedisSentinels, TestCa,
};
pub use sse::Sse;
/// A temporary directory removed on drop: `TempDir::with_prefix("name")`, then `.path()`.
pub use tempfile::TempDir;

/// `reqwest::Client::builder()` once the process has its TLS crypto provider (rustls with
/// `ring`, as in Berth's own processes): reqwest panics building a client without one. Every
/// client a test makes starts here.
pub fn http_client() -> reqwest::ClientBuilder {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
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

/// A Lua script (`EVAL … 1 <key>`) that reads one key whole, whatever its type, as one flat list
/// of byte strings (`unread type …` for a type it does not know): what the secret scans read.
pub const REDIS_DUMP_KEY: &str = r#"
local k = KEYS[1]
local t = redis.call('TYPE', k).ok
if t == 'string' then return {redis.call('GET', k)} end
if t == 'hash' then return redis.call('HGETALL', k) end
if t == 'list' then return redis.call('LRANGE', k, 0, -1) end
if t == 'set' then return redis.call('SMEMBERS', k) end
if t == 'zset' then return redis.call('ZRANGE', k, 0, -1, 'WITHSCORES') end
if t == 'stream' then
  local out = {}
  for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do
    table.insert(out, e[1])
    for _, f in ipairs(e[2]) do table.insert(out, f) end
  end
  return out
end
if t == 'none' then return {} end
return {'unread type ' .. t}
"#;
