//! Redis connections: [`Redis`], the handle every part of a daemon uses, and the dedicated
//! connections of blocking readers it opens.
//!
//! redis-rs 1.x gives async connections a 500 ms response timeout by default, which breaks
//! `XREADGROUP … BLOCK` and poisons the next command; and a blocking command stalls every other
//! command on a shared multiplexed connection. So ordinary commands share one reconnecting
//! multiplexed connection (a `ConnectionManager`) and each blocking reader opens a connection
//! of its own ([`Redis::connect_blocking`]) whose response timeout is its `BLOCK` plus a margin.
//!
//! **Outages.** While Redis is away, a command must fail at once with a message that says so —
//! not hang, and not look like a bug. [`Redis`] keeps the link's state (`Link`): the first
//! command that fails because Redis cannot be reached (refused, reset, timed out, loading its
//! data) marks the link down, and from then on commands fail at once with
//! "Redis is unreachable at <addr>: <cause>" ([`is_unavailable`] tells such an error) instead of
//! each waiting for a reconnect of its own. One command at a time is let through as a probe —
//! the next one at once (a merely dropped connection is made again straight away), then paced
//! by a [`Backoff`] (100 ms doubling to 1 s): a `PING` on the shared connection (reconnecting),
//! or under Sentinel a new connection to the primary; its answer marks the link up and the
//! command goes on. The outage is logged once when it
//! starts and once when it ends (how long, how many probes), not per command or per loop: every
//! loop that retries against Redis logs an unavailability at `debug` only
//! ([`crate::Failing`]). [`Redis::back`] lets a loop that waits out an outage wake as soon as
//! Redis answers again.
//!
//! **Sentinel.** With [`Sentinels`] ([`Redis::connect_with`]) there is no fixed address: the
//! Sentinels are asked, each in turn, which node is the primary, and that node must say so
//! itself (`ROLE`) — a Sentinel that has not seen a failover yet names the old primary. A
//! primary that dies or becomes a replica (`READONLY`, `MASTERDOWN`) makes commands fail as in
//! any outage; the probe then asks the Sentinels again and replaces the shared connection with
//! one to the node they name now, and blocking readers' connections are made to it from then on.
//! Without Sentinel the probe is a `PING` then a `ROLE` on the shared connection: a node that
//! has become a replica keeps the link down.
//!
//! Timeouts: a connection attempt gives up after 2 s (`CONNECT_TIMEOUT`), so a Redis that is
//! gone (a refused connection fails at once; a host that does not answer, after 2 s) is known
//! within that; a command on a live connection waits up to 10 s (`RESPONSE_TIMEOUT`) — a
//! Redis that is alive but slow (a large `MGET`, an fsync stall) is not taken for gone; a
//! connection whose peer vanished without closing it (a network partition) costs that 10 s
//! once, then the link is down and commands fail at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::watch;

use crate::retry::Backoff;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command on the shared connection may wait for its answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The margin a blocking reader's response timeout leaves above its `BLOCK`.
const BLOCK_MARGIN: Duration = Duration::from_secs(10);
/// How long a probe's `PING` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A probe's `PING` that fails faster than this may only report an earlier reconnect's
/// failure: it is sent once more.
const STALE: Duration = Duration::from_millis(100);
/// The probes' pauses while Redis is away.
const PROBE_FIRST: Duration = Duration::from_millis(100);
const PROBE_MAX: Duration = Duration::from_secs(1);

/// Whether `e` means Redis could not be reached (or cannot serve yet), rather than that it
/// refused a command: a connection refused, reset or dropped, a timeout, `LOADING` (a
/// restarted Redis reading its append-only file), an answer of a node that is not (or no
/// longer) the primary: `READONLY` (a replica, e.g. the old primary after a failover) and
/// `MASTERDOWN` (a replica that lost its primary), or `NOREPLICAS` (a primary with
/// `min-replicas-to-write` that has too few replicas: it refuses writes until they are back,
/// though it answers — so that one does not mark the link down, see `Link::failed`).
pub fn is_unavailable(e: &RedisError) -> bool {
    use redis::ServerErrorKind as S;
    crate::durable::lacks_replicas(e)
        || e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(S::BusyLoading | S::ReadOnly | S::MasterDown)
        )
        // A transaction (or pipeline) whose commands a replica refused.
        || matches!(e.kind(), ErrorKind::Server(S::ExecAbort))
            && e.clone().into_server_errors().is_some_and(|errs| {
                errs.iter().any(|(_, se)| {
                    matches!(se.kind(), Some(S::BusyLoading | S::ReadOnly | S::MasterDown))
                })
            })
}

/// The Sentinels that name a daemon's Redis primary (`redis.sentinels`): every connection goes
/// to the node they name for `master_name`, checked to be a primary, and moves when they fail
/// over. `redis.url` still says how to speak to the data nodes (user, password, TLS, db); its
/// host is not used.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Sentinels {
    /// `host:port` of each Sentinel, asked in this order.
    pub addrs: Vec<String>,
    /// The name the Sentinels monitor the primary under.
    pub master_name: String,
    /// Credentials for the Sentinels themselves (their `requirepass` / ACL user), if any.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinels")
            .field("addrs", &self.addrs)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "****"))
            .finish()
    }
}

/// How long one Sentinel may take to accept a connection, and to answer.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);

/// The reconnecting connection a daemon shares for ordinary commands, and the state of its link
/// to Redis (see the module docs). Cheap to clone: clones share both.
#[derive(Clone)]
pub struct Redis {
    /// The connection to the primary now; a probe under Sentinel replaces it.
    current: Arc<Mutex<Current>>,
    link: Arc<Link>,
}

/// The client of the node commands go to, and the shared connection to it.
#[derive(Clone)]
struct Current {
    client: redis::Client,
    mgr: ConnectionManager,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("addr", &self.link.addr())
            .finish()
    }
}

impl Redis {
    /// Connects to the Redis at `url` (fails when it cannot be reached now). `role` names the
    /// daemon in the outage's log lines (`coordinator`, `node`).
    pub async fn connect(url: &str, role: &'static str) -> RedisResult<Redis> {
        Redis::connect_with(url, None, role).await
    }

    /// Connects to the Redis at `url`, or, with `sentinels`, to the primary they name (spoken to
    /// as `url` says: user, password, TLS, db). Fails when it cannot be reached now.
    pub async fn connect_with(
        url: &str,
        sentinels: Option<&Sentinels>,
        role: &'static str,
    ) -> RedisResult<Redis> {
        use redis::IntoConnectionInfo;
        let Some(sentinels) = sentinels else {
            let client = redis::Client::open(url)?;
            let mgr = client
                .get_connection_manager_with_config(manager_config())
                .await?;
            let addr = client.get_connection_info().addr().to_string();
            return Ok(Redis::new(client, mgr, Link::new(addr, role)));
        };
        let template = url.into_connection_info()?;
        let (client, addr) = find_primary(&template, sentinels).await?;
        let mgr = client
            .get_connection_manager_with_config(manager_config())
            .await?;
        let mut link = Link::new(addr, role);
        link.sentinels = Some((template, sentinels.clone()));
        Ok(Redis::new(client, mgr, link))
    }

    fn new(client: redis::Client, mgr: ConnectionManager, link: Link) -> Redis {
        Redis {
            current: Arc::new(Mutex::new(Current { client, mgr })),
            link: Arc::new(link),
        }
    }

    /// A handle that connects at its first command (tests of what only sometimes uses Redis).
    pub fn lazy(url: &str, role: &'static str) -> RedisResult<Redis> {
        let client = redis::Client::open(url)?;
        let mgr = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())?;
        let addr = client.get_connection_info().addr().to_string();
        Ok(Redis::new(client, mgr, Link::new(addr, role)))
    }

    fn current(&self) -> Current {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The shared connection to the primary now. Only it is cloned (an `Arc`): the client
    /// beside it holds the connection's settings, whose clone allocates, and every command
    /// goes through here.
    fn manager(&self) -> ConnectionManager {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .mgr
            .clone()
    }

    /// The client of the primary now, for connections of another kind (pub/sub).
    pub fn client(&self) -> redis::Client {
        self.current().client
    }

    /// A connection of its own for one blocking reader, to the primary now: nothing else shares
    /// it, and its response timeout is `block` plus a margin (a read that outlives its `BLOCK`
    /// by that much means the peer is gone). Refused at once while Redis is known to be away.
    pub async fn connect_blocking(&self, block: Duration) -> RedisResult<MultiplexedConnection> {
        let probe = self.link.admit()?;
        if probe {
            self.probe().await?;
        }
        let cfg = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(block + BLOCK_MARGIN))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let r = self
            .client()
            .get_multiplexed_async_connection_with_config(&cfg)
            .await;
        self.observed(r)
    }

    /// Takes note of what a command on another connection of this daemon (a blocking reader's,
    /// a subscription's) answered: an unavailability marks the link down, and comes back worded
    /// as every other command's does.
    pub fn observed<T>(&self, r: RedisResult<T>) -> RedisResult<T> {
        r.map_err(|e| self.link.failed(e))
    }

    /// Whether Redis is known to be away now.
    pub fn is_down(&self) -> bool {
        self.link.state().down.is_some()
    }

    /// Where commands go now (`host:port`, and under Sentinel the primary's name).
    pub fn addr(&self) -> String {
        self.link.addr()
    }

    /// The last outage this daemon saw, once it is over: (from, to) in epoch ms — from the first
    /// command that failed to the probe that got an answer. The coordinator does not count that
    /// time against a node's heartbeats: nobody could beat or read beats then.
    pub fn last_outage(&self) -> Option<(u64, u64)> {
        self.link.state().last_outage
    }

    /// Resolves when Redis answers again after an outage; never while there is none (a loop
    /// selects on it beside its own backoff, so it resumes as soon as Redis is back).
    pub async fn back(&self) {
        let mut rx = self.link.up.subscribe();
        if *rx.borrow_and_update() {
            std::future::pending::<()>().await;
        }
        let _ = rx.wait_for(|up| *up).await;
    }

    /// Checks that Redis answers (`PING`).
    pub async fn ping(&self) -> RedisResult<()> {
        redis::cmd("PING").query_async(&mut self.clone()).await
    }

    /// One probe while the link is down, marking the link up when it succeeds. Under Sentinel:
    /// the Sentinels are asked for the primary again, and a new shared connection to it
    /// replaces the old one ([`find_primary`]). Otherwise a `PING` on the shared connection
    /// (which reconnects) — twice when the first fails at once, which may only report the
    /// reconnect that failed before it (so a probe takes at most `PROBE_TIMEOUT`, plus that
    /// instant) — then a `ROLE`: a node that became a replica is not taken back.
    async fn probe(&self) -> RedisResult<()> {
        // A probe whose future is dropped half-way (its caller's select or timeout chose
        // something else) must not leave the link refusing every command for good.
        let guard = Probing(Some(&self.link));
        if let Some((template, sentinels)) = &self.link.sentinels {
            let r = async {
                let (client, addr) = find_primary(template, sentinels).await?;
                let mgr = client
                    .get_connection_manager_with_config(manager_config())
                    .await?;
                Ok::<_, RedisError>((Current { client, mgr }, addr))
            }
            .await;
            guard.disarm();
            return match r {
                Ok((current, addr)) => {
                    *self.current.lock().unwrap_or_else(|p| p.into_inner()) = current;
                    self.link.moved_to(addr);
                    self.link.answered();
                    Ok(())
                }
                Err(e) => Err(self.link.probe_failed(e)),
            };
        }
        let mut again = true;
        loop {
            let started = Instant::now();
            let mut mgr = self.manager();
            let r = match tokio::time::timeout(PROBE_TIMEOUT, ping_role(&mut mgr)).await {
                Ok(r) => r,
                Err(_) => Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to PING within {}s", PROBE_TIMEOUT.as_secs()),
                ))),
            };
            match r {
                // Failed at once: the reconnect it started deserves a look.
                Err(e) if is_unavailable(&e) && again && started.elapsed() < STALE => {
                    again = false;
                }
                Err(e) if is_unavailable(&e) => {
                    guard.disarm();
                    return Err(self.link.probe_failed(e));
                }
                // A replica: its connection is made anew at the next probe (a host name that
                // now names the new primary is looked up again).
                Ok(Some(role)) if role != "master" => {
                    let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
                    if let Ok(mgr) = ConnectionManager::new_lazy_with_config(
                        cur.client.clone(),
                        manager_config(),
                    ) {
                        cur.mgr = mgr;
                    }
                    drop(cur);
                    guard.disarm();
                    return Err(self
                        .link
                        .probe_failed(not_primary(&self.link.addr(), &role)));
                }
                // Redis answered (a primary, or of a role it would not say): it is there.
                Ok(_) | Err(_) => {
                    guard.disarm();
                    self.link.answered();
                    return Ok(());
                }
            }
        }
    }

    /// Sends a command on the shared connection — the one to the primary as of after the
    /// probe, when this command is one.
    async fn run<T, F, Fut>(&self, send: F) -> RedisResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let probe = self.link.admit()?;
        if probe {
            // Boxed: a probe's future (finding the primary, connecting) is some 3 KB, and held
            // inline it made every command's future that large — copied into its box on each
            // command — for a path taken only while Redis is away.
            Box::pin(self.probe()).await?;
        }
        let mgr = self.manager();
        self.observed(send(mgr).await)
    }
}

/// The shared connection's settings.
fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        // One attempt per reconnect: the link's probes are the retries, paced by a Backoff.
        .set_number_of_retries(0)
}

/// A `PING` (a node still loading its data answers `LOADING`: not there yet), then what
/// [`role_on`] says.
async fn ping_role<C: ConnectionLike>(conn: &mut C) -> RedisResult<Option<String>> {
    match conn.req_packed_command(&redis::cmd("PING")).await {
        Err(e) if is_unavailable(&e) => Err(e),
        // Redis answered, if only with an error: it is there.
        Ok(_) | Err(_) => role_on(conn).await,
    }
}

/// What `ROLE` says a node is (`master`, `slave`, `sentinel`); `None` when it answered with an
/// error (an ACL that does not allow `ROLE`): it is there, of a role unknown.
async fn role_on<C: ConnectionLike>(conn: &mut C) -> RedisResult<Option<String>> {
    let r: RedisResult<Value> = redis::cmd("ROLE").query_async(conn).await;
    match r {
        Ok(Value::Array(items)) => Ok(items.first().and_then(|v| match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        })),
        Ok(_) => Ok(None),
        Err(e) if is_unavailable(&e) => Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "ROLE refused; the node's role is not checked");
            Ok(None)
        }
    }
}

/// The error of a node that answers but is not the primary.
fn not_primary(addr: &str, role: &str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        format!("{addr} is a {role}, not the primary: it refuses writes"),
    ))
}

/// Asks the Sentinels, each in turn, for the primary of `sentinels.master_name`
/// (`SENTINEL get-master-addr-by-name`), and takes the first answer whose node says it is a
/// primary (`ROLE`): a Sentinel that has not yet seen a failover names the old primary, which
/// may be gone or a replica by now. Returns a client for it (spoken to as `template` says: user,
/// password, TLS, db) and its address for messages. Each Sentinel gets `SENTINEL_TIMEOUT` to
/// connect and to answer, each node `CONNECT_TIMEOUT` and `PROBE_TIMEOUT`, so this is bounded.
async fn find_primary(
    template: &redis::ConnectionInfo,
    sentinels: &Sentinels,
) -> RedisResult<(redis::Client, String)> {
    let name = &sentinels.master_name;
    let mut why: Vec<String> = Vec::new();
    // Nodes already found wanting in this round, by address.
    let mut checked: Vec<String> = Vec::new();
    for sentinel in &sentinels.addrs {
        let (host, port) = match ask_sentinel(sentinel, template, sentinels).await {
            Ok(Some(hp)) => hp,
            Ok(None) => {
                why.push(format!(
                    "sentinel {sentinel} knows no primary named {name:?}"
                ));
                continue;
            }
            Err(e) => {
                why.push(format!("sentinel {sentinel}: {e}"));
                continue;
            }
        };
        let addr = format!("{host}:{port}");
        if checked.contains(&addr) {
            continue;
        }
        let node = template.clone().set_addr(match template.addr() {
            redis::ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => redis::ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => redis::ConnectionAddr::Tcp(host.clone(), port),
        });
        let client = redis::Client::open(node)?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(PROBE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let role = match client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        {
            Ok(mut c) => ping_role(&mut c).await,
            Err(e) => Err(e),
        };
        match role {
            Ok(Some(role)) if role != "master" => {
                why.push(format!(
                    "sentinel {sentinel} names {}",
                    not_primary(&addr, &role)
                ));
            }
            Ok(_) => return Ok((client, format!("{addr} (primary {name:?})"))),
            Err(e) => why.push(format!("sentinel {sentinel} names {addr}: {e}")),
        }
        checked.push(addr);
    }
    Err(RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        format!(
            "no Sentinel named a primary for {name:?} that answers as one: {}",
            why.join("; ")
        ),
    )))
}

/// One Sentinel's answer to `SENTINEL get-master-addr-by-name`: the primary's host and port, or
/// `None` when it monitors no such name. Spoken to over TLS when the data nodes are.
async fn ask_sentinel(
    sentinel: &str,
    template: &redis::ConnectionInfo,
    sentinels: &Sentinels,
) -> RedisResult<Option<(String, u16)>> {
    use redis::IntoConnectionInfo;
    let (host, port) = split_host_port(sentinel).ok_or_else(|| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "not host:port",
            sentinel.to_string(),
        ))
    })?;
    let addr = match template.addr() {
        redis::ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => redis::ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => redis::ConnectionAddr::Tcp(host, port),
    };
    let mut settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(u) = &sentinels.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &sentinels.password {
        settings = settings.set_password(p);
    }
    let info = addr.into_connection_info()?.set_redis_settings(settings);
    let cfg = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(SENTINEL_TIMEOUT))
        .set_connection_timeout(Some(SENTINEL_TIMEOUT));
    let mut c = redis::Client::open(info)?
        .get_multiplexed_async_connection_with_config(&cfg)
        .await?;
    redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(&sentinels.master_name)
        .query_async(&mut c)
        .await
}

/// `host:port` or `[v6]:port` split; `None` when it is neither.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(':') && !s.starts_with('[') {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.run(|mut mgr| async move {
                let v = mgr.req_packed_command(cmd).await?;
                match not_serving(&v) {
                    Some(e) => Err(e),
                    None => Ok(v),
                }
            })
            .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.run(|mut mgr| async move {
                let vs = mgr.req_packed_commands(cmd, offset, count).await?;
                match vs.iter().find_map(not_serving) {
                    Some(e) => Err(e),
                    None => Ok(vs),
                }
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        self.manager().get_db()
    }
}

/// The error in an answer that says the node cannot serve: `READONLY` (a replica), `MASTERDOWN`,
/// `LOADING`. redis-rs hands a command's error reply back as a value (`Value::ServerError`) and
/// makes it an error only when the caller decodes it, so the link looks at the values itself
/// (also inside an array: a pipeline's or a transaction's replies).
fn not_serving(v: &Value) -> Option<RedisError> {
    use redis::ServerErrorKind as S;
    match v {
        Value::ServerError(e)
            if matches!(e.kind(), Some(S::ReadOnly | S::MasterDown | S::BusyLoading)) =>
        {
            Some(e.clone().into())
        }
        Value::Array(items) => items.iter().find_map(not_serving),
        _ => None,
    }
}

/// The state of a daemon's link to Redis.
struct Link {
    /// Where commands go (`host:port`); under Sentinel it changes at a failover.
    addr: Mutex<String>,
    /// Under Sentinel: how to speak to the data nodes (`redis.url`), and the Sentinels.
    sentinels: Option<(redis::ConnectionInfo, Sentinels)>,
    /// The daemon, for the log lines.
    role: &'static str,
    state: Mutex<LinkState>,
    /// `true` while Redis answers; [`Redis::back`] waits on it.
    up: watch::Sender<bool>,
}

#[derive(Default)]
struct LinkState {
    down: Option<Down>,
    last_outage: Option<(u64, u64)>,
}

/// An outage in progress.
struct Down {
    since: Instant,
    since_ms: u64,
    /// What the last failure said (the first, then each failed probe's).
    cause: String,
    kind: std::io::ErrorKind,
    probes: u32,
    /// When the next probe may go.
    next_probe: Instant,
    /// A probe is under way: the others are refused meanwhile.
    probing: bool,
    pace: Backoff,
}

impl Link {
    fn new(addr: String, role: &'static str) -> Self {
        Link {
            addr: Mutex::new(addr),
            sentinels: None,
            role,
            state: Mutex::default(),
            up: watch::channel(true).0,
        }
    }

    fn addr(&self) -> String {
        self.addr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A probe found the primary at `addr` (it may have moved: logged when it did).
    fn moved_to(&self, addr: String) {
        let mut a = self.addr.lock().unwrap_or_else(|p| p.into_inner());
        if *a != addr {
            tracing::warn!(role = self.role, from = %*a, to = %addr, "Redis primary moved (Sentinel failover)");
            *a = addr;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a command may go: `Ok(false)` while Redis answers, `Ok(true)` when it is the
    /// outage's next probe, an error (at once) otherwise.
    fn admit(&self) -> RedisResult<bool> {
        let mut s = self.state();
        let Some(d) = s.down.as_mut() else {
            return Ok(false);
        };
        if !d.probing && Instant::now() >= d.next_probe {
            d.probing = true;
            return Ok(true);
        }
        Err(self.unreachable(d.kind, &d.cause))
    }

    /// The error every command gets while Redis is away.
    fn unreachable(&self, kind: std::io::ErrorKind, cause: &str) -> RedisError {
        RedisError::from(std::io::Error::new(
            kind,
            format!("Redis is unreachable at {}: {cause}", self.addr()),
        ))
    }

    /// A command failed: an unavailability marks the link down (logged once per outage) and is
    /// worded as such; any other error is Redis's answer, passed on as it is.
    fn failed(&self, e: RedisError) -> RedisError {
        if !is_unavailable(&e) || crate::durable::lacks_replicas(&e) {
            return e;
        }
        let cause = cause_of(&e);
        if cause.starts_with("Redis is unreachable at ") {
            return e;
        }
        let kind = io_kind(&e);
        let mut s = self.state();
        if s.down.is_none() {
            tracing::warn!(role = self.role, addr = %self.addr(), %cause,
                "Redis is unreachable; commands fail at once until it answers a probe again (every second at most)");
            let now = Instant::now();
            s.down = Some(Down {
                since: now,
                since_ms: berth_protocol::now_ms(),
                // The next command probes at once: a connection that was merely dropped (Redis
                // restarted quickly, an idle connection closed) is made again straight away.
                next_probe: now,
                cause: cause.clone(),
                kind,
                probes: 0,
                probing: false,
                pace: Backoff::new(PROBE_FIRST, PROBE_MAX),
            });
            self.up.send_replace(false);
        }
        self.unreachable(kind, &cause)
    }

    /// A probe got no answer: the next one is due after the next pause.
    fn probe_failed(&self, e: RedisError) -> RedisError {
        let cause = cause_of(&e);
        let kind = io_kind(&e);
        let mut s = self.state();
        if let Some(d) = s.down.as_mut() {
            d.probing = false;
            d.probes += 1;
            d.next_probe = Instant::now() + d.pace.next_delay();
            if cause != d.cause {
                tracing::debug!(role = self.role, addr = %self.addr(), %cause, "Redis still unreachable");
                d.cause = cause.clone();
                d.kind = kind;
            }
        }
        self.unreachable(kind, &cause)
    }

    /// A probe was answered: the outage is over.
    fn answered(&self) {
        let mut s = self.state();
        if let Some(d) = s.down.take() {
            let took = d.since.elapsed();
            tracing::info!(role = self.role, addr = %self.addr(),
                after_s = format!("{:.1}", took.as_secs_f64()), probes = d.probes + 1,
                "Redis answers again");
            s.last_outage = Some((d.since_ms, berth_protocol::now_ms()));
        }
        drop(s);
        self.up.send_replace(true);
    }
}

/// Ends a probe that did not finish (its future was dropped): the next one may go.
struct Probing<'a>(Option<&'a Link>);

impl Probing<'_> {
    /// The probe finished and said so to the link.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.0 {
            if let Some(d) = link.state().down.as_mut() {
                d.probing = false;
            }
        }
    }
}

/// What an unavailability error says, without redis-rs's decoration.
fn cause_of(e: &RedisError) -> String {
    e.to_string()
}

/// The I/O kind of an unavailability (`TimedOut`, `ConnectionRefused`, …), kept in the errors
/// the link makes so that callers classify them as they would the original.
fn io_kind(e: &RedisError) -> std::io::ErrorKind {
    use std::io::ErrorKind as K;
    if e.is_connection_refusal() {
        K::ConnectionRefused
    } else if e.is_timeout() {
        K::TimedOut
    } else if e.is_connection_dropped() {
        K::ConnectionReset
    } else {
        K::NotConnected
    }
}

/// `url` fit for a log line or an error: its password (`redis://user:secret@host`, or a
/// `redis+unix://…?pass=secret` query) replaced by `****`. Every place that shows a Redis URL
/// shows it through this: logs are read by more people than the configuration.
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:****@{host}"),
            // `redis://secret@host`: redis-rs reads a lone userinfo as a user name, but people
            // write passwords there; hide it too.
            None => format!("****@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _))
                        if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                    {
                        format!("{k}=****")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_redis_url_is_shown_without_its_password() {
        let cases = [
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
            (
                "redis://:hunter2@127.0.0.1:6379/0",
                "redis://:****@127.0.0.1:6379/0",
            ),
            (
                "redis://berth:hunter2@db.example:6379",
                "redis://berth:****@db.example:6379",
            ),
            (
                "rediss://hunter2@db.example/1",
                "rediss://****@db.example/1",
            ),
            ("redis://:p@ss:w@rd@h:1/", "redis://:****@h:1/"),
            (
                "redis+unix:///run/redis.sock?db=2&pass=hunter2",
                "redis+unix:///run/redis.sock?db=2&pass=****",
            ),
            ("not a url", "not a url"),
        ];
        for (url, want) in cases {
            assert_eq!(redacted(url), want, "{url}");
        }
    }
    use super::*;

    fn refused() -> RedisError {
        RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ))
    }

    #[test]
    fn what_counts_as_redis_being_away() {
        assert!(is_unavailable(&refused()));
        let timeout = RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "t"));
        assert!(is_unavailable(&timeout));
        let wrongtype = RedisError::from((
            ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "WRONGTYPE",
        ));
        assert!(!is_unavailable(&wrongtype));
        // A node that is not (or no longer) the primary.
        for kind in [
            redis::ServerErrorKind::ReadOnly,
            redis::ServerErrorKind::MasterDown,
            redis::ServerErrorKind::BusyLoading,
        ] {
            assert!(is_unavailable(&RedisError::from((
                ErrorKind::Server(kind),
                "x"
            ))));
        }
        assert!(is_unavailable(&not_primary("r:1", "slave")));
    }

    #[test]
    fn sentinel_addresses_are_host_and_port() {
        let ok = |s: &str, h: &str, p: u16| {
            assert_eq!(split_host_port(s), Some((h.to_string(), p)), "{s}");
        };
        ok("127.0.0.1:26379", "127.0.0.1", 26379);
        ok("sentinel-a.internal:26379", "sentinel-a.internal", 26379);
        ok("[::1]:26379", "::1", 26379);
        for bad in ["sentinel", ":26379", "h:port", "h:99999", "::1:26379", ""] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn an_outage_refuses_at_once_then_lets_one_probe_through_at_a_time() {
        let link = Link::new("127.0.0.1:6379".into(), "test");
        assert!(!link.admit().unwrap(), "up: commands go");
        let e = link.failed(refused());
        assert_eq!(
            e.to_string(),
            "Redis is unreachable at 127.0.0.1:6379: Connection refused (os error 111)"
        );
        assert!(is_unavailable(&e) && e.is_connection_refusal());
        assert!(!*link.up.borrow());
        // The next command probes at once; the others are refused while it runs.
        assert!(link.admit().unwrap(), "the first probe");
        let refused_now = link.admit().unwrap_err();
        assert_eq!(refused_now.to_string(), e.to_string());
        // A failed probe: refused again until the next pause has passed.
        link.probe_failed(refused());
        assert!(link.admit().is_err());
        // Failures seen on other commands meanwhile change nothing.
        link.failed(refused());
        tokio::time::sleep(PROBE_FIRST).await;
        assert!(link.admit().unwrap(), "the second probe");
        assert!(link.admit().is_err(), "one probe at a time");
        link.probe_failed(refused());
        tokio::time::sleep(PROBE_FIRST * 2).await;
        assert!(link.admit().unwrap());
        link.answered();
        assert!(!link.admit().unwrap(), "up again");
        assert!(*link.up.borrow());
        let (from, to) = link.state().last_outage.unwrap();
        assert!(from <= to);
    }

    #[tokio::test]
    async fn a_probe_dropped_half_way_lets_the_next_one_go() {
        let link = Link::new("r:1".into(), "test");
        link.failed(refused());
        assert!(link.admit().unwrap(), "the probe");
        drop(Probing(Some(&link)));
        assert!(
            link.admit().unwrap(),
            "a probe again, not a link refusing for good"
        );
        Probing(Some(&link)).disarm();
        assert!(
            link.admit().is_err(),
            "a finished probe leaves the state to the link"
        );
    }

    #[test]
    fn an_answer_from_redis_is_not_an_outage() {
        let link = Link::new("r:1".into(), "test");
        let e = link.failed(RedisError::from((
            ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "WRONGTYPE",
        )));
        assert!(!is_unavailable(&e));
        assert!(link.state().down.is_none());
    }
}
