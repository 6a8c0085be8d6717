//! Typed access to the coordinator's records in Redis: apps, deployments, logs, nodes, jobs.
//!
//! Redis is the system of record; this is a thin, stateless layer over one multiplexed connection
//! (cheap to clone): the coordinator's [`Redis`], which fails a command at once, saying Redis is
//! unreachable, while it is away (the API answers 503 with that: `Error::Unavailable`). Mutations of a deployment record go through the [`crate::ledger::Ledger`]
//! actor so that two writers never interleave a read-modify-write.

use std::sync::{Arc, Mutex};

use crate::lease::Leadership;
use berth_bus::{Redis, Replicas};
use berth_protocol::api::LatestDeployment;
use berth_protocol::envelope::{decode, encode};
use berth_protocol::secret::{GitCredential, Sealed};
use berth_protocol::{
    keys, validate, App, Deployment, DeploymentStatus, Job, LogLine, LogStream, NodeInfo, Route,
    JOB_KIND,
};
use redis::AsyncCommands;

use crate::error::{Error, Result};

use berth_protocol::envelope::kind::{
    APP as APP_KIND, CREDENTIAL as CREDENTIAL_KIND, DEPLOYMENT as DEPLOYMENT_KIND,
    NODE as NODE_KIND, ROUTE as ROUTE_KIND,
};

/// Berth's Redis layer. Cheap to clone (one `Arc`): every actor message and API request takes
/// a copy.
#[derive(Clone)]
pub struct Store(Arc<Parts>);

/// What a [`Store`] holds; its methods reach the fields through `Deref`.
pub struct Parts {
    conn: Redis,
    /// The app list as of a value of `berth:apps:version`: decoding 10,000 records on every
    /// `GET /apps` costs more than the rest of the request. Checked against Redis on every
    /// read (one GET), so it never serves what Redis no longer holds; a restart loses nothing.
    apps: Arc<Mutex<Option<CachedApps>>>,
    /// Whether this coordinator leads, and under which epoch: the writes of a leader carry it
    /// as their fencing token ([`Store::fence`]).
    leadership: Option<Leadership>,
    /// Confirms the writes that must survive a failover of Redis (`redis.min_replicas_acked`;
    /// off by default: [`Store::confirm`] then costs nothing).
    replicas: Replicas,
}

/// What a new deployment's placement and job read of its app's keys, read together with the
/// app's record ([`Store::app_for_deploy`]).
#[derive(Debug, Clone, Default)]
pub struct DeployReads {
    /// The app's newest deployment ids, newest first (the layer cache's lookback).
    pub ids: Vec<String>,
    /// The images of the app's release index, newest first (as many as an app can keep; the
    /// app's own `keep_releases` takes its first ones).
    pub releases: Vec<String>,
    /// The app's sealed git credential.
    pub credential: Option<Sealed>,
    /// The route of the domain read, and what it held; `None` when none was read.
    pub route: Option<(String, Option<Route>)>,
}

/// Opens the multiplexed connection for ordinary (non-blocking) commands: to `url`, or to the
/// primary `sentinels` name.
pub async fn connect(url: &str, sentinels: Option<&berth_bus::Sentinels>) -> Result<Redis> {
    Ok(Redis::connect_with(url, sentinels, "coordinator").await?)
}

/// The app list read under a value of `berth:apps:version`.
type CachedApps = (u64, Arc<Vec<App>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decodes a stored record; an undecodable one is reported with what it is.
/// `what` names the record in the error only (`format_args!`: nothing is formatted for a
/// record that decodes, as every record of a listing is decoded through here).
fn decode_record<T: serde::de::DeserializeOwned + serde::Serialize>(
    what: impl std::fmt::Display,
    kind: &str,
    bytes: &[u8],
) -> Result<T> {
    decode(bytes, kind)
        .map_err(|e| Error::Unreadable(format!("{what}: its record cannot be read: {e}")))
}

/// An `XADD`'s arguments after its name for a job's entry on `node`'s stream (capped).
fn job_entry(node: &str, bytes: Vec<u8>) -> impl redis::ToRedisArgs {
    (
        keys::jobs(node),
        "MAXLEN",
        "~",
        keys::STREAM_MAXLEN,
        "*",
        berth_protocol::envelope::STREAM_FIELD,
        bytes,
    )
}

/// Decodes the records an MGET returned, in order, leaving out missing ones and reporting (in
/// the coordinator's log) unreadable ones: a list is not refused for one bad record.
fn decode_listed<T: serde::de::DeserializeOwned + serde::Serialize>(
    kind: &str,
    names: &[String],
    raw: Vec<Option<Vec<u8>>>,
) -> Vec<T> {
    names
        .iter()
        .zip(raw)
        .filter_map(|(name, bytes)| {
            let bytes = bytes?;
            decode_record(format_args!("{kind} {name}"), kind, &bytes)
                .map_err(|e| tracing::error!(error = %e, "left out of a list"))
                .ok()
        })
        .collect()
}

/// Bumps `berth:apps:version` and records `name` under the new version in
/// `berth:apps:changes`, trimming that set to `APPS_CHANGES_MAX` names and raising
/// `berth:apps:changes:floor` to the newest version it trimmed: one script, so the counter and
/// the change log never disagree. Every write of an app record is followed by it (in the same
/// MULTI where it can be).
const APP_CHANGED: &str = r"
local v = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], v, ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[2])
if over > 0 then
  local last = redis.call('ZRANGE', KEYS[2], over - 1, over - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  redis.call('SET', KEYS[3], last[2])
end
return v
";

/// Writes an app record (KEYS[1]) with its domains: refuses when ARGV[3] is "1" (a create) and
/// the record exists (`{'exists'}`), or when one of the new domains (ARGV[5 .. 4+ARGV[4]],
/// lowercased) belongs to another app in the domain index KEYS[3] (`{'taken', domain, owner}`);
/// else claims the new domains, releases the old ones (the remaining ARGV) the app no longer
/// has, stores the record (ARGV[2]) and adds the name (ARGV[1]) to KEYS[2]: `{'ok'}`. One
/// script, so two apps can never both claim a domain.
const PUT_APP_DOMAINS: &str = r"
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local n = tonumber(ARGV[4])
for i = 5, 4 + n do
  local owner = redis.call('HGET', KEYS[3], ARGV[i])
  if owner and owner ~= ARGV[1] then return {'taken', ARGV[i], owner} end
end
local new = {}
for i = 5, 4 + n do
  new[ARGV[i]] = true
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[1])
end
for i = 5 + n, #ARGV do
  if not new[ARGV[i]] and redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return {'ok'}
";

/// Releases the domains ARGV[2..] of app ARGV[1] from the domain index KEYS[1] (those another
/// app holds stay: an index built from older, conflicting records gave them to it).
const RELEASE_DOMAINS: &str = r"
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
";

/// The outcome of [`Store::put_app_domains`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutApp {
    Stored,
    /// A create, and an app of that name exists.
    Exists,
    /// `domain` belongs to app `owner`.
    Taken {
        domain: String,
        owner: String,
    },
}

/// Compare-and-set of one route: writes ARGV[4] for field ARGV[1] if the field still holds ARGV[2]
/// (or is absent, when ARGV[3] is "0"), and publishes the domain on ARGV[5]. Fenced: -1 without
/// writing when the fence key ARGV[6] holds another epoch than ARGV[7] ('' = not fenced). -2
/// without writing when the domain index ARGV[8] does not give the domain to app ARGV[9]: an
/// app's domains as a writer read them may have changed since (a PATCH that dropped one deletes
/// its route, which must not come back).
const ROUTE_CAS: &str = r"
if ARGV[7] ~= '' and redis.call('GET', ARGV[6]) ~= ARGV[7] then return -1 end
if redis.call('HGET', ARGV[8], string.lower(ARGV[1])) ~= ARGV[9] then return -2 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == '0' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
";

/// `latest(k1, k2, a1, a2, a3, a4)`: records deployment `a4` as app `a1`'s newest
/// (`berth:apps:latest`, `k1`) unless the app is gone (`k2`) or the hash holds a deployment
/// created after it (`a2`, epoch ms; `a3` its id, `a4` the summary). One Lua body for [`LATEST`]
/// and [`COMMIT`]. When the hash names this very deployment already (a status change of an
/// app's newest deployment: the common case) the app is not looked up: deleting an app removes
/// its entry (`Store::delete_app`), so an entry that is there belongs to an app that is.
macro_rules! latest_fn {
    () => {
        r"
-- Globals read once into locals: a global is a table lookup on every use, and the loops below
-- use them per command (about 3 % of a write's time in the script, measured).
local call, ARGV, unpack, tonumber = redis.call, ARGV, unpack, tonumber
local function latest(k1, k2, a1, a2, a3, a4)
  local cur = call('HGET', k1, a1)
  local at, id
  if cur then at, id = string.match(cur, '^(%d+) (%S+)') end
  if id ~= a3 then
    if at and tonumber(at) > tonumber(a2) then return 0 end
    if call('EXISTS', k2) == 0 then return 0 end
  end
  call('HSET', k1, a1, a4)
  return 1
end
"
    };
}

/// `latest` as a script of its own: KEYS[1], KEYS[2], ARGV[1..4].
const LATEST: &str = concat!(
    latest_fn!(),
    "return latest(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n"
);

/// A deployment record's write with the commands that go with it, fenced and compared: one
/// script, so all of it happens or none. ARGV: the fence key (`berth:leader:epoch`), the
/// writer's epoch ('' = not a leader, not fenced), the record's key, what the writer read there
/// (`absent` = no record, `bytes` = the bytes that follow), those bytes, the
/// number of commands, then each command as its argument count and arguments (`__latest` runs
/// `latest`; `__trim_logs` deletes old deployments' logs, see [`trim_logs_command`];
/// `__recent` reads an app's newest deployment ids, see [`recent_command`]; `__trim_releases`
/// trims an app's release index, see `releases::trim_command`). Answers 1 (or,
/// with `__recent`, the ids it read); -1 without writing anything when the fence key holds
/// another epoch (a newer leader took over, and this writer's decisions are stale); -2 without
/// writing anything when the record is no longer what the writer read (another process changed
/// it in between: read it again and decide again).
const COMMIT: &str = concat!(
    latest_fn!(),
    r"
if ARGV[2] ~= '' and call('GET', ARGV[1]) ~= ARGV[2] then return -1 end
local cur = call('GET', ARGV[3])
if ARGV[4] == 'absent' then
  if cur then return -2 end
elseif cur ~= ARGV[5] then
  return -2
end
local i = 7
local answer = 1
for _ = 1, tonumber(ARGV[6]) do
  -- The command's arguments are ARGV[i + 1] .. ARGV[i + n], read in place: no table per
  -- command (copying them into one cost about as much as the command itself).
  local n = tonumber(ARGV[i])
  local name = ARGV[i + 1]
  if name == '__latest' then
    latest(ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7])
  elseif name == '__trim_logs' then
    local from = tonumber(ARGV[i + 3])
    local old = call('ZREVRANGE', ARGV[i + 2], from, from + 49)
    for j = 1, #old do old[j] = ARGV[i + 4] .. old[j] end
    if #old > 0 then call('DEL', unpack(old)) end
  elseif name == '__recent' then
    answer = call('ZREVRANGE', ARGV[i + 2], 0, tonumber(ARGV[i + 3]) - 1)
  elseif name == '__trim_releases' then
    local old = call('ZREVRANGE', ARGV[i + 2], tonumber(ARGV[i + 3]), -1)
    if #old > 0 then
      call('ZREM', ARGV[i + 2], unpack(old))
      for j = 1, #old do old[j] = ARGV[i + 4] .. old[j] end
      call('DEL', unpack(old))
    end
  else
    call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
return answer
"
);

/// The pseudo-command, for a record's write, that deletes the logs of `app`'s deployments older
/// than its newest [`keys::DEPLOYMENT_LOGS_KEPT`] (their records stay). It goes in the write
/// that creates a deployment, after the new record joins the app's index, so only the few that
/// just fell out of the window are looked at (50 at most per write).
pub fn trim_logs_command(app: &str) -> redis::Cmd {
    let mut c = redis::cmd("__trim_logs");
    c.arg(keys::app_deployments(app))
        .arg(keys::DEPLOYMENT_LOGS_KEPT)
        // A log's key is this prefix and the deployment's id.
        .arg(keys::deployment_log(""));
    c
}

/// The pseudo-command, for a record's write, that reads the ids of `app`'s newest `n`
/// deployments, newest first, as the write left the app's index: the write answers them. A
/// create takes them with it (a new deployment among them), so that what it does next — cancel
/// the app's older unfinished deployments, prefer the node that built the app last — needs no
/// read of the index of its own.
pub fn recent_command(app: &str, n: usize) -> redis::Cmd {
    let mut c = redis::cmd("__recent");
    c.arg(keys::app_deployments(app)).arg(n);
    c
}

/// The call of `script` by its hash, with no keys (the scripts here take everything as
/// arguments): push its `args` arguments (about `size` bytes) and send it with
/// [`Store::invoke`]. One command whose arguments share one buffer; `redis::ScriptInvocation`
/// allocates each argument on its own and copies them all again into the command it sends.
fn evalsha(script: &redis::Script, args: usize, size: usize) -> redis::Cmd {
    let mut call = redis::Cmd::with_capacity(args + 3, size + 64);
    call.arg("EVALSHA").arg(script.get_hash()).arg(0);
    call
}

/// A command's arguments, its name first (the commands here have no cursor arguments).
fn command_args(c: &redis::Cmd) -> impl Iterator<Item = &[u8]> {
    c.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(b) => Some(b),
        _ => None,
    })
}

/// The fence check alone before one command: -1 when fenced, else the command's answer.
/// ARGV: fence key, epoch ('' = not fenced), then the command.
const FENCED: &str = r"
if ARGV[2] ~= '' and redis.call('GET', ARGV[1]) ~= ARGV[2] then return -1 end
return redis.call(unpack(ARGV, 3))
";

/// What `berth:apps:latest` holds for a deployment: `<created_at> <id> <status> <kind>`.
fn latest_summary(d: &Deployment) -> String {
    format!(
        "{} {} {} {}",
        d.created_at,
        d.id,
        d.status.as_str(),
        d.kind.as_str()
    )
}

/// Reads a `berth:apps:latest` value back; `None` when it is not one.
pub fn parse_latest(s: &str) -> Option<LatestDeployment> {
    let mut parts = s.split(' ');
    let created_at = parts.next()?.parse().ok()?;
    let id = parts.next()?.to_string();
    let status = serde_json::from_value(serde_json::Value::from(parts.next()?)).ok()?;
    let kind = serde_json::from_value(serde_json::Value::from(parts.next()?)).ok()?;
    Some(LatestDeployment {
        id,
        kind,
        status,
        created_at,
    })
}

fn latest_command(d: &Deployment) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(LATEST).arg(2);
    latest_args(&mut cmd, d);
    cmd
}

/// `latest`'s arguments for `d`: its two keys, then its four values.
fn latest_args(cmd: &mut redis::Cmd, d: &Deployment) {
    cmd.arg(keys::APPS_LATEST)
        .arg(keys::app(&d.app))
        .arg(&d.app)
        .arg(d.created_at)
        .arg(&d.id)
        .arg(latest_summary(d));
}

/// The command that appends `line` to deployment `id`'s log: on its own ([`Store::append_log`]),
/// or in a record's write, so that the line is there exactly when the change is.
pub fn log_command(id: &str, stream: LogStream, line: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(keys::deployment_log(id))
        .arg("MAXLEN")
        .arg("~")
        .arg(keys::LOG_MAXLEN)
        .arg("*");
    for (k, v) in LogLine::new(berth_protocol::now_ms(), stream, line).fields() {
        cmd.arg(k).arg(v);
    }
    cmd
}

fn app_changed(name: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(APP_CHANGED)
        .arg(3)
        .arg(keys::APPS_VERSION)
        .arg(keys::APPS_CHANGES)
        .arg(keys::APPS_CHANGES_FLOOR)
        .arg(name)
        .arg(keys::APPS_CHANGES_MAX);
    cmd
}

/// Which of the newest summary (`berth:apps:latest`) and the active set a record's write
/// rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sets {
    Neither,
    Summary,
    Both,
}

/// What a deployment record write expects to find where it writes.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// No record: a new deployment.
    Absent,
    /// The record as it was read, byte for byte.
    Bytes(&'a [u8]),
    /// The record as it was read, byte for byte, and the status it held: a write that keeps
    /// that status leaves the newest summary and the active set alone (neither can change).
    Read(&'a [u8], DeploymentStatus),
}

impl std::ops::Deref for Store {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Store {
    pub fn new(conn: Redis) -> Self {
        Store(Arc::new(Parts {
            conn,
            apps: Arc::default(),
            leadership: None,
            replicas: Replicas::off(),
        }))
    }

    /// A store like this one whose parts `change` edits (the app cache stays shared).
    fn changed(&self, change: impl FnOnce(&mut Parts)) -> Self {
        let mut parts = Parts {
            conn: self.conn.clone(),
            apps: self.apps.clone(),
            leadership: self.leadership.clone(),
            replicas: self.replicas.clone(),
        };
        change(&mut parts);
        Store(Arc::new(parts))
    }

    /// This store's covered writes are confirmed by Redis's replicas through `replicas`.
    pub fn with_replicas(self, replicas: Replicas) -> Self {
        self.changed(|p| p.replicas = replicas)
    }

    /// Whether covered writes wait for Redis's replicas (`redis.min_replicas_acked` > 0): the
    /// paths the scheduler's throughput depends on skip even the wording of [`Store::confirm`]
    /// when they do not.
    pub fn confirms(&self) -> bool {
        self.replicas.is_on()
    }

    /// Returns once Redis's replicas (as many as `redis.min_replicas_acked` asks) have every
    /// write made before the call — at once when none are asked for. When they do not within
    /// the timeout: [`Error::Unreplicated`], saying that `what` is on the primary only, then
    /// `check` (what to look at before trying again).
    pub async fn confirm(&self, what: &str, check: &str) -> Result<()> {
        self.replicas
            .confirm()
            .await
            .map_err(|e| Error::Unreplicated(format!("{what}: {e}; {check}")))
    }

    /// This store's writes are fenced with the epoch this coordinator leads under.
    pub fn with_leadership(self, leadership: Leadership) -> Self {
        self.changed(|p| p.leadership = Some(leadership))
    }

    /// The fencing token of this coordinator's writes: its epoch while it leads. A write that
    /// carries one is refused by Redis once a newer leader took over (`Error::Fenced`); a
    /// follower's writes (the API's) carry none.
    pub fn fence(&self) -> Option<u64> {
        self.leadership.as_ref().and_then(Leadership::epoch)
    }

    /// The fence a write carries now: this coordinator's epoch while it leads, as the scripts
    /// take it ('' = no fence).
    fn fence_arg(&self) -> String {
        self.fence().map(|e| e.to_string()).unwrap_or_default()
    }

    /// The error of a write refused by its fence (`epoch`, the one it carried).
    fn fenced(what: &str, epoch: &str) -> Error {
        Error::Fenced(format!(
            "{what} refused: this coordinator's leader epoch {epoch} is no longer current (another coordinator leads)"
        ))
    }

    /// Runs `cmds` in one script behind the fence, if deployment `id`'s record is still what
    /// `expect` says: all or nothing. `Ok(None)` (nothing written) when the record changed;
    /// `Error::Fenced` when a newer leader took over; else what a `__recent` command read
    /// (empty without one).
    async fn commit(
        &self,
        what: &str,
        id: &str,
        expect: Expect<'_>,
        cmds: &[&redis::Cmd],
    ) -> Result<Option<Vec<String>>> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(COMMIT));
        let fence = self.fence_arg();
        let (mode, bytes): (&str, &[u8]) = match expect {
            Expect::Absent => ("absent", b""),
            Expect::Bytes(b) | Expect::Read(b, _) => ("bytes", b),
        };
        let (mut n, mut size) = (6, bytes.len() + 64);
        for c in cmds {
            for a in command_args(c) {
                (n, size) = (n + 1, size + a.len());
            }
            n += 1;
        }
        let mut call = evalsha(&SCRIPT, n, size);
        call.arg(keys::LEADER_EPOCH)
            .arg(&fence)
            .arg(keys::deployment(id))
            .arg(mode)
            .arg(bytes)
            .arg(cmds.len());
        for c in cmds {
            call.arg(command_args(c).count());
            for a in command_args(c) {
                call.arg(a);
            }
        }
        match self.invoke(&call, COMMIT).await? {
            redis::Value::Int(-1) => Err(Self::fenced(what, &fence)),
            redis::Value::Int(-2) => Ok(None),
            redis::Value::Int(_) => Ok(Some(Vec::new())),
            // `__recent`'s ids.
            ids => Ok(Some(
                redis::from_redis_value(ids).map_err(redis::RedisError::from)?,
            )),
        }
    }

    /// Sends a script's call built by [`evalsha`]. Redis knows a script by its hash once it
    /// was loaded; when it does not (it restarted or failed over, or its scripts were flushed),
    /// `code` is loaded and the call sent again.
    async fn invoke<T: redis::FromRedisValue>(&self, call: &redis::Cmd, code: &str) -> Result<T> {
        let mut c = self.conn.clone();
        match call.query_async(&mut c).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(code)
                    .query_async(&mut c)
                    .await?;
                Ok(call.query_async(&mut c).await?)
            }
            r => Ok(r?),
        }
    }

    pub fn conn(&self) -> Redis {
        self.conn.clone()
    }

    /// Checks that Redis answers (`PING`; the health check).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.conn.ping().await?)
    }

    // ---- apps ----

    pub async fn get_app(&self, name: &str) -> Result<Option<App>> {
        let raw: Option<Vec<u8>> = self.conn.clone().get(keys::app(name)).await?;
        raw.map(|b| decode_record(format_args!("app {name}"), APP_KIND, &b))
            .transpose()
    }

    /// An app's record with what placing and making the job of a new deployment of it read
    /// ([`DeployReads`]), all in one round trip instead of the app first and the rest after it.
    /// Of the reads only the route's key depends on the record (its first domain): `guess` is
    /// the domain it is read for, and the caller reads it again if the record names another.
    /// `None`: no such app; no reads when the credential read cannot be decoded.
    pub async fn app_for_deploy(
        &self,
        name: &str,
        lookback: usize,
        guess: Option<&str>,
    ) -> Result<Option<(App, Option<DeployReads>)>> {
        type Raw = (
            Option<Vec<u8>>,
            Vec<String>,
            Vec<String>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        );
        let mut pipe = redis::pipe();
        pipe.get(keys::app(name))
            .zrevrange(keys::app_deployments(name), 0, lookback as isize - 1)
            .zrevrange(
                keys::app_releases(name),
                0,
                validate::MAX_KEEP_RELEASES as isize - 1,
            )
            .get(keys::app_credential(name));
        let mut conn = self.conn.clone();
        let (app, ids, releases, credential, route): Raw = match guess {
            Some(domain) => {
                pipe.hget(keys::ROUTES, domain)
                    .query_async(&mut conn)
                    .await?
            }
            None => {
                let (a, i, r, c) = pipe.query_async(&mut conn).await?;
                (a, i, r, c, None)
            }
        };
        let Some(app) = app else {
            return Ok(None);
        };
        let app: App = decode_record(format_args!("app {name}"), APP_KIND, &app)?;
        // A credential or route that cannot be decoded is left to be read again where the
        // placement and the job read it otherwise (whose errors are handled there, as before),
        // not made the create's error here.
        let Ok(credential) = credential.map(|b| decode(&b, CREDENTIAL_KIND)).transpose() else {
            return Ok(Some((app, None)));
        };
        let route = guess.and_then(|domain| {
            route
                .map(|b| decode_record(format_args!("route {domain}"), ROUTE_KIND, &b))
                .transpose()
                .ok()
                .map(|r| (domain.to_string(), r))
        });
        Ok(Some((
            app,
            Some(DeployReads {
                ids,
                releases,
                credential,
                route,
            }),
        )))
    }

    /// Stores an app. With `create`, fails (returns false) when the name is taken.
    pub async fn put_app(&self, app: &App, create: bool) -> Result<bool> {
        let bytes = encode(APP_KIND, &app.name, app)?;
        let mut c = self.conn.clone();
        if create {
            let set: bool = redis::cmd("SET")
                .arg(keys::app(&app.name))
                .arg(bytes)
                .arg("NX")
                .query_async::<Option<String>>(&mut c)
                .await?
                .is_some();
            if set {
                let _: () = redis::pipe()
                    .atomic()
                    .sadd(keys::APPS, &app.name)
                    .ignore()
                    .add_command(app_changed(&app.name))
                    .ignore()
                    .query_async(&mut c)
                    .await?;
            }
            Ok(set)
        } else {
            let _: () = redis::pipe()
                .atomic()
                .set(keys::app(&app.name), bytes)
                .ignore()
                .add_command(app_changed(&app.name))
                .ignore()
                .query_async(&mut c)
                .await?;
            Ok(true)
        }
    }

    /// Stores an app whose domains may have changed (a create, or a patch of its domains): its
    /// domains are claimed in the domain index in the same script as the record is written, and
    /// `old` (the domains it had) released, then the app-list version bumped, in one MULTI.
    pub async fn put_app_domains(&self, app: &App, create: bool, old: &[String]) -> Result<PutApp> {
        let bytes = encode(APP_KIND, &app.name, app)?;
        let mut script = redis::cmd("EVAL");
        script
            .arg(PUT_APP_DOMAINS)
            .arg(3)
            .arg(keys::app(&app.name))
            .arg(keys::APPS)
            .arg(keys::DOMAINS)
            .arg(&app.name)
            .arg(bytes)
            .arg(if create { "1" } else { "0" })
            .arg(app.domains.len());
        for d in &app.domains {
            script.arg(d.to_ascii_lowercase());
        }
        for d in old {
            script.arg(d.to_ascii_lowercase());
        }
        // The version is bumped even when the script refused: a cached list then re-reads this
        // one app, which is harmless.
        let (answer, _): (Vec<String>, i64) = redis::pipe()
            .atomic()
            .add_command(script)
            .add_command(app_changed(&app.name))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(match answer.as_slice() {
            [ok] if ok == "ok" => PutApp::Stored,
            [e] if e == "exists" => PutApp::Exists,
            [t, domain, owner] if t == "taken" => PutApp::Taken {
                domain: domain.clone(),
                owner: owner.clone(),
            },
            other => {
                return Err(Error::Internal(format!(
                    "unexpected answer of the app write script: {other:?}"
                )))
            }
        })
    }

    /// The app each of `domains` belongs to (compared ignoring case), from the domain index:
    /// one HMGET.
    pub async fn domain_owners(&self, domains: &[String]) -> Result<Vec<Option<String>>> {
        if domains.is_empty() {
            return Ok(Vec::new());
        }
        let lower: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        Ok(redis::cmd("HMGET")
            .arg(keys::DOMAINS)
            .arg(lower)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Builds the domain index from the app records (data written before it existed); once per
    /// Redis. Older versions compared domains by case, so two records may hold one domain in
    /// different case: the first by name keeps it in the index, the other is logged — it keeps
    /// serving as it did, and a create or PATCH can no longer take that domain again.
    pub async fn migrate_domains(&self) -> Result<()> {
        const MIGRATION: &str = "domains-index-v1";
        let mut c = self.conn.clone();
        if c.sismember(keys::MIGRATIONS, MIGRATION).await? {
            return Ok(());
        }
        for app in self.list_apps().await?.iter() {
            for d in &app.domains {
                let d = d.to_ascii_lowercase();
                let set: bool = c.hset_nx(keys::DOMAINS, &d, &app.name).await?;
                if !set {
                    let owner: Option<String> = c.hget(keys::DOMAINS, &d).await?;
                    if owner.as_deref() != Some(app.name.as_str()) {
                        tracing::warn!(domain = %d, app = %app.name, owner = ?owner,
                            "two apps list one domain (in different case); the index gives it to the first");
                    }
                }
            }
        }
        let _: () = c.sadd(keys::MIGRATIONS, MIGRATION).await?;
        Ok(())
    }

    /// Every app, by name. One round trip while the app list is unchanged; after a change, two
    /// more that read only the apps changed since the cached copy (`berth:apps:changes`); a
    /// full read (three round trips, every record decoded) only for the first list of a
    /// coordinator or when the change log no longer reaches back to its copy.
    pub async fn list_apps(&self) -> Result<Arc<Vec<App>>> {
        let mut c = self.conn.clone();
        // The version is read before the records and bumped after them (with the change log
        // entry, by one script): a list cached under a version holds every change up to it.
        let (version, floor): (Option<u64>, Option<u64>) = redis::pipe()
            .get(keys::APPS_VERSION)
            .get(keys::APPS_CHANGES_FLOOR)
            .query_async(&mut c)
            .await?;
        let (version, floor) = (version.unwrap_or(0), floor.unwrap_or(0));
        let cached = lock(&self.apps).clone();
        let apps = match cached {
            Some((v, apps)) if v == version => return Ok(apps),
            Some((v, apps)) if floor <= v && v < version => {
                Arc::new(self.apps_changed_since(&apps, v, version).await?)
            }
            _ => {
                let mut names: Vec<String> = c.smembers(keys::APPS).await?;
                names.sort_unstable();
                let raw = self
                    .mget(names.iter().map(|n| keys::app(n)).collect())
                    .await?;
                Arc::new(decode_listed(APP_KIND, &names, raw))
            }
        };
        let mut cached = lock(&self.apps);
        if cached.as_ref().is_none_or(|(v, _)| *v <= version) {
            *cached = Some((version, apps.clone()));
        }
        Ok(apps)
    }

    /// `base` (the list as of version `since`, sorted by name) with the apps changed after
    /// `since` up to `version` read again: changed ones replaced, new ones inserted, deleted
    /// (and unreadable) ones left out.
    async fn apps_changed_since(&self, base: &[App], since: u64, version: u64) -> Result<Vec<App>> {
        let names: Vec<String> = self
            .conn
            .clone()
            .zrangebyscore(keys::APPS_CHANGES, format!("({since}"), version)
            .await?;
        let raw = self
            .mget(names.iter().map(|n| keys::app(n)).collect())
            .await?;
        let mut apps = base.to_vec();
        for (name, bytes) in names.iter().zip(raw) {
            let app = bytes.and_then(|b| {
                decode_record::<App>(&format!("app {name}"), APP_KIND, &b)
                    .map_err(|e| tracing::error!(error = %e, "left out of a list"))
                    .ok()
            });
            match (apps.binary_search_by(|a| a.name.as_str().cmp(name)), app) {
                (Ok(i), Some(app)) => apps[i] = app,
                (Ok(i), None) => {
                    apps.remove(i);
                }
                (Err(i), Some(app)) => apps.insert(i, app),
                (Err(_), None) => {}
            }
        }
        Ok(apps)
    }

    /// MGET of `keys` (none for an empty list, which MGET refuses).
    async fn mget(&self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        Ok(redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Stores (or, with `None`, deletes) app `app`'s sealed secret at `key`.
    async fn put_sealed(&self, key: &str, app: &str, sealed: Option<&Sealed>) -> Result<()> {
        let mut c = self.conn.clone();
        match sealed {
            Some(s) => {
                let bytes = encode(CREDENTIAL_KIND, app, s)?;
                let _: () = c.set(key, bytes).await?;
            }
            None => {
                let _: () = c.del(key).await?;
            }
        }
        Ok(())
    }

    /// The sealed secret at `key`, if any.
    async fn get_sealed(&self, key: &str) -> Result<Option<Sealed>> {
        let raw: Option<Vec<u8>> = self.conn.clone().get(key).await?;
        Ok(match raw {
            Some(b) => Some(decode(&b, CREDENTIAL_KIND)?),
            None => None,
        })
    }

    /// Stores (or, with `None`, deletes) an app's sealed git credential.
    pub async fn put_credential(&self, app: &str, sealed: Option<&Sealed>) -> Result<()> {
        self.put_sealed(&keys::app_credential(app), app, sealed)
            .await
    }

    pub async fn get_credential(&self, app: &str) -> Result<Option<Sealed>> {
        self.get_sealed(&keys::app_credential(app)).await
    }

    /// Stores (or, with `None`, deletes) an app's own sealed webhook secret.
    pub async fn put_webhook_secret(&self, app: &str, sealed: Option<&Sealed>) -> Result<()> {
        self.put_sealed(&keys::app_webhook_secret(app), app, sealed)
            .await
    }

    pub async fn get_webhook_secret(&self, app: &str) -> Result<Option<Sealed>> {
        self.get_sealed(&keys::app_webhook_secret(app)).await
    }

    /// Stores (or, with `None`, deletes) an app's sealed secret variable values.
    pub async fn put_env_secrets(&self, app: &str, sealed: Option<&Sealed>) -> Result<()> {
        self.put_sealed(&keys::app_env_secrets(app), app, sealed)
            .await
    }

    pub async fn get_env_secrets(&self, app: &str) -> Result<Option<Sealed>> {
        self.get_sealed(&keys::app_env_secrets(app)).await
    }

    /// Re-seals every git credential an older version stored unbound ([`Sealed::v`] 0) bound to
    /// the app it is stored under, so that it keeps working where only bound blobs open. Each
    /// one is replaced only while it is still the blob read (a PATCH that replaced it meanwhile
    /// wins). Answers how many were re-sealed.
    pub async fn reseal_credentials(
        &self,
        key: &berth_protocol::secret::SecretKey,
    ) -> Result<usize> {
        const SWAP: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
             redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";
        let mut resealed = 0;
        for app in self.list_apps().await?.iter() {
            let k = keys::app_credential(&app.name);
            let raw: Option<Vec<u8>> = self.conn.clone().get(&k).await?;
            let Some(raw) = raw else { continue };
            let sealed: Sealed = decode(&raw, CREDENTIAL_KIND)?;
            if sealed.v != berth_protocol::secret::SEALED_UNBOUND {
                continue;
            }
            let cred = match GitCredential::open_unbound(key, &sealed) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(app = %app.name, error = %e, "cannot re-seal the app's git credential");
                    continue;
                }
            };
            let bound = encode(CREDENTIAL_KIND, &app.name, &cred.seal(key, &app.name))?;
            let swapped: i64 = redis::Script::new(SWAP)
                .key(&k)
                .arg(raw)
                .arg(bound)
                .invoke_async(&mut self.conn.clone())
                .await?;
            resealed += swapped as usize;
        }
        Ok(resealed)
    }

    /// Deletes an app with its deployment records, logs and release index, and releases its
    /// Keeps an uploaded archive (its `chunks`, in order) as `berth:upload:<app>:<sha256>` for
    /// [`keys::UPLOAD_TTL_S`]: written whole in one MULTI, so a node never reads half of one.
    /// The same archive uploaded again only has its time renewed.
    pub async fn put_upload(&self, app: &str, sha256: &str, chunks: &[bytes::Bytes]) -> Result<()> {
        let key = keys::upload(app, sha256);
        let mut c = self.conn.clone();
        let renewed: bool = c.expire(&key, keys::UPLOAD_TTL_S as i64).await?;
        if renewed {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        for chunk in chunks {
            pipe.rpush(&key, chunk.as_ref()).ignore();
        }
        pipe.expire(&key, keys::UPLOAD_TTL_S as i64).ignore();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// `domains` in the domain index.
    pub async fn delete_app(&self, name: &str, domains: &[String]) -> Result<()> {
        let ids = self.deployment_ids(name, usize::MAX).await?;
        let mut c = self.conn.clone();
        let uploads: Vec<String> = {
            let mut it: redis::AsyncIter<String> = c.scan_match(keys::upload(name, "*")).await?;
            let mut v = Vec::new();
            while let Some(k) = it.next_item().await {
                v.push(k?);
            }
            v
        };
        for k in uploads {
            let _: () = c.del(k).await?;
        }
        let images: Vec<String> = c.zrange(keys::app_releases(name), 0, -1).await?;
        let mut pipe = redis::pipe();
        for image in &images {
            pipe.del(keys::release_deployments(name, image));
        }
        pipe.del(keys::app_releases(name));
        for id in &ids {
            pipe.del(keys::deployment(id))
                .del(keys::deployment_log(id))
                .srem(keys::ACTIVE_DEPLOYMENTS, id);
        }
        pipe.del(keys::app(name))
            .del(keys::app_credential(name))
            .del(keys::app_webhook_secret(name))
            .del(keys::app_env_secrets(name))
            .del(keys::app_deployments(name))
            .del(keys::app_log(name))
            .del(keys::app_metrics(name))
            .hdel(keys::APPS_LATEST, name)
            .srem(keys::APPS, name)
            .add_command(app_changed(name));
        let mut release = redis::cmd("EVAL");
        release
            .arg(RELEASE_DOMAINS)
            .arg(1)
            .arg(keys::DOMAINS)
            .arg(name);
        for d in domains {
            release.arg(d.to_ascii_lowercase());
        }
        pipe.add_command(release).ignore();
        let _: () = pipe.query_async(&mut c).await?;
        Ok(())
    }

    /// The newest deployment of each of `apps` (`None` for an app never deployed); one HMGET.
    pub async fn latest_deployments(&self, apps: &[&str]) -> Result<Vec<Option<LatestDeployment>>> {
        if apps.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(keys::APPS_LATEST)
            .arg(apps)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(raw
            .into_iter()
            .map(|v| v.as_deref().and_then(parse_latest))
            .collect())
    }

    /// The routes of `domains`, in order (`None` for a domain without one, or unreadable);
    /// one HMGET.
    pub async fn routes_of(&self, domains: &[&str]) -> Result<Vec<Option<Route>>> {
        if domains.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(keys::ROUTES)
            .arg(domains)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(domains
            .iter()
            .zip(raw)
            .map(|(domain, b)| {
                let b = b?;
                decode_record(format_args!("route {domain}"), ROUTE_KIND, &b)
                    .map_err(|e| tracing::error!(error = %e, "route left out"))
                    .ok()
            })
            .collect())
    }

    /// Fills `berth:apps:latest` for the apps it has no entry for (data written before it
    /// existed), from each one's newest deployment record; once per Redis.
    pub async fn migrate_latest(&self) -> Result<()> {
        const MIGRATION: &str = "apps-latest-v1";
        let mut c = self.conn.clone();
        if c.sismember(keys::MIGRATIONS, MIGRATION).await? {
            return Ok(());
        }
        for app in self.list_apps().await?.iter() {
            let ids = self.deployment_ids(&app.name, 1).await?;
            if let Some(d) = self.deployments(&ids).await?.into_iter().next() {
                let _: i64 = latest_command(&d).query_async(&mut c).await?;
            }
        }
        let _: () = c.sadd(keys::MIGRATIONS, MIGRATION).await?;
        Ok(())
    }

    // ---- deployments ----

    pub async fn get_deployment(&self, id: &str) -> Result<Option<Deployment>> {
        let raw: Option<Vec<u8>> = self.conn.clone().get(keys::deployment(id)).await?;
        raw.map(|b| decode_record(format_args!("deployment {id}"), DEPLOYMENT_KIND, &b))
            .transpose()
    }

    /// A deployment record with the bytes it was read from: what a write of it expects to find
    /// ([`Expect::Read`]) so that it never overwrites a change made since.
    pub async fn read_deployment(&self, id: &str) -> Result<Option<(Deployment, Vec<u8>)>> {
        let raw: Option<Vec<u8>> = self.conn.clone().get(keys::deployment(id)).await?;
        raw.map(|b| {
            decode_record(format_args!("deployment {id}"), DEPLOYMENT_KIND, &b).map(|d| (d, b))
        })
        .transpose()
    }

    /// The bytes `d` is stored as: what a write expects to find when `d` is what was read.
    pub fn deployment_bytes(&self, d: &Deployment) -> Result<Vec<u8>> {
        Ok(encode(DEPLOYMENT_KIND, &d.id, d)?)
    }

    /// Writes a deployment record with further commands in the same script (the Ledger's
    /// counters, see `metrics::ledger_commands`), if the record is still what `expect` says;
    /// keeps the active set and the app's index in step with it. `Ok(false)`, with nothing
    /// written, when the record changed since it was read.
    pub async fn put_deployment_with(
        &self,
        d: &Deployment,
        extra: &[redis::Cmd],
        expect: Expect<'_>,
    ) -> Result<bool> {
        Ok(self.write_deployment(d, extra, expect).await?.is_some())
    }

    /// [`Store::put_deployment_with`], answering the bytes written (what the next write of the
    /// record expects to find), `None` when nothing was written.
    pub async fn write_deployment(
        &self,
        d: &Deployment,
        extra: &[redis::Cmd],
        expect: Expect<'_>,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .write_deployment_read(d, extra, expect)
            .await?
            .map(|(bytes, _)| bytes))
    }

    /// [`Store::write_deployment`], also answering what a [`recent_command`] among `extra`
    /// read (nothing without one).
    pub async fn write_deployment_read(
        &self,
        d: &Deployment,
        extra: &[redis::Cmd],
        expect: Expect<'_>,
    ) -> Result<Option<(Vec<u8>, Vec<String>)>> {
        let index = matches!(expect, Expect::Absent);
        let sets = match expect {
            Expect::Read(_, before) if before == d.status => Sets::Neither,
            // A record that was not terminal is in the active set since its creation.
            Expect::Read(_, before) if !before.is_terminal() && !d.status.is_terminal() => {
                Sets::Summary
            }
            _ => Sets::Both,
        };
        let bytes = encode(DEPLOYMENT_KIND, &d.id, d)?;
        let own = self.deployment_commands(d, &bytes, index, sets);
        let cmds: Vec<&redis::Cmd> = own.iter().chain(extra).collect();
        let written = self
            .commit(
                &format!("writing deployment {}", d.id),
                &d.id,
                expect,
                &cmds,
            )
            .await?;
        Ok(written.map(|read| (bytes, read)))
    }

    /// The commands that write `d` as `bytes` (the record; the app's index when `index`; the
    /// newest summary and the active set as `sets` says); the caller's extra commands follow
    /// them in the write. A record's place in its app's index (its creation time) never
    /// changes, so only the write that creates it — or
    /// replaces an unreadable one — adds it; the others leave the index alone (and so never
    /// bring back the index of an app deleted meanwhile). The summary and the active set follow
    /// the status only, so a write that keeps the status needs neither; and membership of the
    /// active set changes only at creation and at the end, so a change between two unfinished
    /// statuses (`queued → building → deploying`) rewrites only the summary.
    fn deployment_commands(
        &self,
        d: &Deployment,
        bytes: &[u8],
        index: bool,
        sets: Sets,
    ) -> Vec<redis::Cmd> {
        let summary = sets != Sets::Neither;
        let mut cmds = vec![{
            let mut c = redis::cmd("SET");
            c.arg(keys::deployment(&d.id)).arg(bytes);
            c
        }];
        // A replaced unreadable record may not know its app.
        if !d.app.is_empty() {
            if index {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(keys::app_deployments(&d.app))
                    .arg(d.created_at)
                    .arg(&d.id);
                cmds.push(zadd);
            }
            if summary {
                let mut latest = redis::cmd("__latest");
                latest_args(&mut latest, d);
                cmds.push(latest);
            }
        }
        if sets == Sets::Both {
            let mut active = redis::cmd(if d.status.is_terminal() {
                "SREM"
            } else {
                "SADD"
            });
            active.arg(keys::ACTIVE_DEPLOYMENTS).arg(&d.id);
            cmds.push(active);
        }
        cmds
    }

    /// The stored bytes of a deployment record, undecoded.
    pub async fn raw_deployment(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.conn.clone().get(keys::deployment(id)).await?)
    }

    /// Moves an unreadable deployment record aside (to `berth:deployment:<id>:unreadable`) and
    /// writes `d` in its place, in one script (`COMMIT`), with `extra`.
    /// `Ok(false)`, with nothing written, when the record is no longer `raw`.
    pub async fn replace_unreadable_deployment(
        &self,
        d: &Deployment,
        raw: &[u8],
        extra: &[redis::Cmd],
    ) -> Result<bool> {
        let mut rename = redis::cmd("RENAME");
        rename
            .arg(keys::deployment(&d.id))
            .arg(keys::deployment_unreadable(&d.id));
        let bytes = encode(DEPLOYMENT_KIND, &d.id, d)?;
        let own = self.deployment_commands(d, &bytes, true, Sets::Both);
        let cmds: Vec<&redis::Cmd> = std::iter::once(&rename).chain(&own).chain(extra).collect();
        self.commit(
            &format!("replacing deployment {}", d.id),
            &d.id,
            Expect::Bytes(raw),
            &cmds,
        )
        .await
        .map(|written| written.is_some())
    }

    /// The app whose index holds deployment `id`, with the time it was created: one ZSCORE per
    /// app in one pipeline (for the rare record that cannot say it itself).
    pub async fn app_of_deployment(&self, id: &str) -> Result<Option<(String, u64)>> {
        let apps = self.list_apps().await?;
        if apps.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for app in apps.iter() {
            pipe.zscore(keys::app_deployments(&app.name), id);
        }
        let scores: Vec<Option<f64>> = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(apps
            .iter()
            .zip(scores)
            .find_map(|(app, score)| Some((app.name.clone(), score? as u64))))
    }

    /// Ids of an app's deployments, newest first.
    pub async fn deployment_ids(&self, app: &str, limit: usize) -> Result<Vec<String>> {
        let stop = if limit == usize::MAX {
            -1
        } else {
            limit as isize - 1
        };
        Ok(self
            .conn
            .clone()
            .zrevrange(keys::app_deployments(app), 0, stop)
            .await?)
    }

    /// An app's newest deployments, newest first; two round trips.
    pub async fn list_deployments(&self, app: &str, limit: usize) -> Result<Vec<Deployment>> {
        let ids = self.deployment_ids(app, limit).await?;
        self.deployments(&ids).await
    }

    /// The records of `ids` that exist and can be read, in order; one round trip.
    pub async fn deployments(&self, ids: &[String]) -> Result<Vec<Deployment>> {
        let raw = self
            .mget(ids.iter().map(|id| keys::deployment(id)).collect())
            .await?;
        Ok(decode_listed(DEPLOYMENT_KIND, ids, raw))
    }

    /// The unfinished deployments among `ids`, in their order: which of them are in the active
    /// set, then only those records (no round trip for no ids).
    pub async fn active_among(&self, ids: Vec<String>) -> Result<Vec<Deployment>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let active: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(keys::ACTIVE_DEPLOYMENTS)
            .arg(&ids)
            .query_async(&mut self.conn.clone())
            .await?;
        let ids: Vec<String> = ids
            .into_iter()
            .zip(active)
            .filter_map(|(id, a)| a.then_some(id))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .deployments(&ids)
            .await?
            .into_iter()
            .filter(|d| !d.status.is_terminal())
            .collect())
    }

    pub async fn active_deployments(&self) -> Result<Vec<String>> {
        Ok(self.conn.clone().smembers(keys::ACTIVE_DEPLOYMENTS).await?)
    }

    // ---- logs ----

    /// Appends one line to a deployment's log (the coordinator writes `system` lines).
    pub async fn append_log(&self, id: &str, stream: LogStream, line: &str) -> Result<()> {
        let _: Option<String> = log_command(id, stream, line)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Sets `key` to `value` if it is not set yet (with a TTL); true the first time only.
    pub async fn claim_once(&self, key: &str, value: &str, ttl_s: u64) -> Result<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("EX")
            .arg(ttl_s)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// The string at `key`, if any.
    pub async fn get_string(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.clone().get(key).await?)
    }

    /// Sets `key` to `value` with a TTL, whatever it held.
    pub async fn set_marker(&self, key: &str, value: &str, ttl_s: u64) -> Result<()> {
        let _: () = self.conn.clone().set_ex(key, value, ttl_s).await?;
        Ok(())
    }

    pub async fn delete_key(&self, key: &str) -> Result<()> {
        let _: () = self.conn.clone().del(key).await?;
        Ok(())
    }

    // ---- nodes and jobs ----

    /// Every node that ever registered and still has a heartbeat record; two round trips.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let (names, raw) = self.node_records().await?;
        Ok(decode_listed(NODE_KIND, &names, raw))
    }

    /// Every registered node's name, by name (placement gives ties to the node listed first),
    /// and the bytes of its heartbeat record (`None`: it has none), undecoded.
    pub async fn node_records(&self) -> Result<(Vec<String>, Vec<Option<Vec<u8>>>)> {
        let mut names: Vec<String> = self.conn.clone().smembers(keys::NODES).await?;
        names.sort_unstable();
        let raw = self
            .mget(names.iter().map(|n| keys::node(n)).collect())
            .await?;
        Ok((names, raw))
    }

    /// Decodes node `name`'s heartbeat record from its bytes.
    pub fn decode_node(name: &str, bytes: &[u8]) -> Result<NodeInfo> {
        decode_record(format_args!("{NODE_KIND} {name}"), NODE_KIND, bytes)
    }

    /// The desired route of a domain (written by the node that switched it).
    pub async fn route(&self, domain: &str) -> Result<Option<Route>> {
        let raw: Option<Vec<u8>> = self.conn.clone().hget(keys::ROUTES, domain).await?;
        raw.map(|b| decode_record(format_args!("route {domain}"), ROUTE_KIND, &b))
            .transpose()
    }

    /// Every route of the desired table (undecodable ones left out and logged).
    pub async fn routes(&self) -> Result<Vec<Route>> {
        let all: std::collections::HashMap<String, Vec<u8>> =
            self.conn.clone().hgetall(keys::ROUTES).await?;
        let mut routes: Vec<Route> = all
            .into_iter()
            .filter_map(|(domain, b)| {
                decode_record(format_args!("route {domain}"), ROUTE_KIND, &b)
                    .map_err(|e| tracing::error!(error = %e, "route left out"))
                    .ok()
            })
            .collect();
        routes.sort_by(|a, b| a.domain.cmp(&b.domain));
        Ok(routes)
    }

    /// Writes a route of the desired table and tells every node's router (`berth:routes:changed`).
    pub async fn put_route(&self, route: &Route) -> Result<()> {
        let bytes = encode(ROUTE_KIND, &route.domain, route)?;
        let _: () = redis::pipe()
            .hset(keys::ROUTES, &route.domain, bytes)
            .ignore()
            .publish(keys::ROUTES_CHANGED, &route.domain)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// [`Store::put_route`] if the domain index gives the route's domain to its app; false
    /// (nothing written) if not.
    pub async fn put_owned_route(&self, route: &Route) -> Result<bool> {
        let bytes = encode(ROUTE_KIND, &route.domain, route)?;
        let written: i64 = redis::cmd("EVAL")
            .arg(keys::WRITE_OWNED_ROUTE)
            .arg(3)
            .arg(keys::ROUTES)
            .arg(keys::ROUTES_CHANGED)
            .arg(keys::DOMAINS)
            .arg(&route.domain)
            .arg(bytes)
            .arg(&route.app)
            .query_async(&mut self.conn.clone())
            .await?;
        if written == 0 {
            tracing::info!(domain = %route.domain, app = %route.app, "route not written: the app no longer owns the domain");
        }
        Ok(written == 1)
    }

    /// Drops the routes of `domains` from the desired table and tells every node's router.
    pub async fn delete_routes(&self, domains: &[String]) -> Result<()> {
        if domains.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for d in domains {
            pipe.hdel(keys::ROUTES, d)
                .ignore()
                .publish(keys::ROUTES_CHANGED, d)
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Changes the routes of an app's `domains` together: `edit` gets the first domain's route
    /// (`None` if there is none) and answers the new one (`None`: leave it). The write is a
    /// compare-and-set on the first domain's stored bytes, retried on a race with another
    /// writer (a node switching, the failover pass); the other domains get a copy. Every
    /// router is told. Only domains the domain index gives to the route's app are written: a
    /// domain dropped since `domains` was read keeps no route (`None` when it is the first).
    /// Answers the route written.
    pub async fn edit_routes(
        &self,
        domains: &[String],
        mut edit: impl FnMut(Option<Route>) -> Option<Route>,
    ) -> Result<Option<Route>> {
        let Some(first) = domains.first() else {
            return Ok(None);
        };
        let fence = self.fence_arg();
        for _ in 0..20 {
            let raw: Option<Vec<u8>> = self.conn.clone().hget(keys::ROUTES, first).await?;
            let current = raw
                .as_ref()
                .map(|b| decode_record(format_args!("route {first}"), ROUTE_KIND, b))
                .transpose()?;
            let Some(mut route) = edit(current) else {
                return Ok(None);
            };
            route.domain = first.clone();
            let bytes = encode(ROUTE_KIND, first, &route)?;
            let written: i64 = redis::cmd("EVAL")
                .arg(ROUTE_CAS)
                .arg(1)
                .arg(keys::ROUTES)
                .arg(first)
                .arg(raw.as_deref().unwrap_or_default())
                .arg(if raw.is_some() { "1" } else { "0" })
                .arg(bytes)
                .arg(keys::ROUTES_CHANGED)
                .arg(keys::LEADER_EPOCH)
                .arg(&fence)
                .arg(keys::DOMAINS)
                .arg(&route.app)
                .query_async(&mut self.conn.clone())
                .await?;
            match written {
                -1 => return Err(Self::fenced(&format!("the route of {first}"), &fence)),
                -2 => {
                    tracing::info!(domain = %first, app = %route.app, "route not written: the app no longer owns the domain");
                    return Ok(None);
                }
                0 => continue,
                _ => {}
            }
            for d in &domains[1..] {
                self.put_owned_route(&Route {
                    domain: d.clone(),
                    ..route.clone()
                })
                .await?;
            }
            return Ok(Some(route));
        }
        Err(Error::Internal(format!(
            "the route of {first} kept changing under 20 attempts to edit it"
        )))
    }

    /// Names of the cordoned nodes.
    pub async fn cordoned(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self.conn.clone().smembers(keys::NODES_CORDONED).await?)
    }

    /// Cordons (`on`) or uncordons a registered node; false when no node has that name.
    pub async fn set_cordoned(&self, node: &str, on: bool) -> Result<bool> {
        let mut c = self.conn.clone();
        if !c.sismember::<_, _, bool>(keys::NODES, node).await? {
            return Ok(false);
        }
        let _: () = if on {
            c.sadd(keys::NODES_CORDONED, node).await?
        } else {
            c.srem(keys::NODES_CORDONED, node).await?
        };
        Ok(true)
    }

    /// The `XADD` that queues `job` on `node`'s stream, to run inside a record's write
    /// (`Assign`): the write's fence covers it.
    pub fn job_command(&self, node: &str, id: &str, job: &Job) -> Result<redis::Cmd> {
        let mut xadd = redis::cmd("XADD");
        xadd.arg(job_entry(node, encode(JOB_KIND, id, job)?));
        Ok(xadd)
    }

    /// Queues a job on a node's stream, on its own (fenced).
    pub async fn send_job(&self, node: &str, id: &str, job: &Job) -> Result<()> {
        let bytes = encode(JOB_KIND, id, job)?;
        let fence = self.fence_arg();
        // EVALSHA: Redis hashes an EVAL's whole text on every call.
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(FENCED));
        let size = bytes.len();
        let mut call = evalsha(&SCRIPT, 12, size);
        call.arg(keys::LEADER_EPOCH)
            .arg(&fence)
            .arg("XADD")
            .arg(job_entry(node, bytes));
        let r: redis::Value = self.invoke(&call, FENCED).await?;
        if r == redis::Value::Int(-1) {
            return Err(Self::fenced(
                &format!("the job {id} for node {node}"),
                &fence,
            ));
        }
        self.job_queued(node, id).await
    }

    /// What follows a job's `XADD` (on its own or in its assignment's write): a job lost with
    /// the primary would leave its deployment waiting until its deadline, so where Redis's
    /// replicas must have a write, an error here makes the deployment's actor send it again
    /// (the node's claim makes a second copy harmless).
    pub async fn job_queued(&self, node: &str, id: &str) -> Result<()> {
        if !self.confirms() {
            return Ok(());
        }
        self.confirm(
            &format!("the job of {id} for node {node} was queued"),
            "sending it again is harmless (a node runs a job once)",
        )
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use berth_protocol::{DeploymentKind, DeploymentStatus};

    use super::*;

    /// What a create reads with the app: the app's keys as they are, the route of the guessed
    /// domain (an absent route read as absent); a credential or route that cannot be decoded is
    /// not taken from it (its reader reads it again, and handles its error, as before); an app
    /// that is not there is `None`.
    #[actix_rt::test]
    async fn what_is_read_with_the_app_leaves_out_what_cannot_be_decoded() {
        let (_redis, conn) = real_redis("app-for-deploy").await;
        let store = Store::new(conn);
        let app = crate::apps::tests::app();
        assert!(store.put_app(&app, true).await.unwrap());
        let domain = app.domains[0].clone();
        let read = || store.app_for_deploy(&app.name, 5, Some(&domain));
        let (got, reads) = read().await.unwrap().unwrap();
        assert_eq!(got, app);
        let reads = reads.unwrap();
        assert_eq!(reads.route, Some((domain.clone(), None)));
        assert!(reads.ids.is_empty() && reads.releases.is_empty() && reads.credential.is_none());

        let mut c = store.conn();
        let _: () = c.hset(keys::ROUTES, &domain, "junk").await.unwrap();
        let (_, reads) = read().await.unwrap().unwrap();
        assert_eq!(
            reads.unwrap().route,
            None,
            "an unreadable route is read again"
        );
        let _: () = c
            .set(keys::app_credential(&app.name), "junk")
            .await
            .unwrap();
        assert!(read().await.unwrap().unwrap().1.is_none());
        assert!(store
            .app_for_deploy("nope", 5, None)
            .await
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_newest_deployment_summary_reads_back() {
        let mut d = crate::ledger::tests::queued();
        d.id = "d1a2b3".into();
        d.created_at = 1_700_000_000_123;
        d.status = DeploymentStatus::Failed;
        d.kind = DeploymentKind::Rollback;
        let s = latest_summary(&d);
        assert_eq!(s, "1700000000123 d1a2b3 failed rollback");
        assert_eq!(
            parse_latest(&s),
            Some(LatestDeployment {
                id: d.id,
                kind: DeploymentKind::Rollback,
                status: DeploymentStatus::Failed,
                created_at: 1_700_000_000_123,
            })
        );
        assert_eq!(parse_latest("12 d1 nonsense deploy"), None);
        assert_eq!(parse_latest(""), None);
    }

    /// A real Redis (kept while the first value lives) and a connection to it.
    pub(crate) async fn real_redis(
        prefix: &str,
    ) -> ((berth_tests::TempDir, berth_tests::Proc), Redis) {
        let dir = berth_tests::TempDir::with_prefix(prefix).unwrap();
        let port = berth_tests::free_port();
        let redis = berth_tests::start_redis(dir.path(), port, &[])
            .await
            .unwrap();
        let conn = Redis::connect(&format!("redis://127.0.0.1:{port}/"), "test")
            .await
            .unwrap();
        ((dir, redis), conn)
    }

    /// The newest summary (`berth:apps:latest`) and the active set follow a record's status
    /// through its writes: the summary of the app's newest deployment only, never brought back
    /// for a deleted app; the active set from creation to the end.
    #[actix_rt::test]
    async fn the_summary_and_the_active_set_follow_the_status() {
        let (_redis, conn) = real_redis("store-latest").await;
        let store = Store::new(conn.clone());
        let mut c = conn.clone();
        let _: () = c.set(keys::app("a"), "an app").await.unwrap();
        let latest = || async {
            let v: Option<String> = conn.clone().hget(keys::APPS_LATEST, "a").await.unwrap();
            v.as_deref()
                .and_then(parse_latest)
                .map(|l| (l.id, l.status))
        };
        let mut d = crate::ledger::tests::queued();
        d.id = "d1".into();
        d.created_at = 100;
        let mut raw = store
            .write_deployment(&d, &[], Expect::Absent)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            latest().await,
            Some(("d1".into(), DeploymentStatus::Queued))
        );
        assert_eq!(store.active_deployments().await.unwrap(), vec!["d1"]);
        for status in [DeploymentStatus::Building, DeploymentStatus::Deploying] {
            let before = d.status;
            d.status = status;
            raw = store
                .write_deployment(&d, &[], Expect::Read(&raw, before))
                .await
                .unwrap()
                .expect("written");
            assert_eq!(latest().await, Some(("d1".into(), status)));
            assert_eq!(store.active_deployments().await.unwrap(), vec!["d1"]);
        }
        // A write that expects other bytes writes nothing.
        assert!(store
            .write_deployment(&d, &[], Expect::Read(b"other", d.status))
            .await
            .unwrap()
            .is_none());

        // A newer deployment of the app is the newest; d1's end does not replace it.
        let mut d2 = d.clone();
        d2.id = "d2".into();
        d2.created_at = 200;
        d2.status = DeploymentStatus::Queued;
        store
            .write_deployment(&d2, &[], Expect::Absent)
            .await
            .unwrap()
            .unwrap();
        let before = d.status;
        d.status = DeploymentStatus::Cancelled;
        store
            .write_deployment(&d, &[], Expect::Read(&raw, before))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            latest().await,
            Some(("d2".into(), DeploymentStatus::Queued))
        );
        assert_eq!(store.active_deployments().await.unwrap(), vec!["d2"]);

        // The app deleted (its entry with it, as `delete_app` does) under a record that
        // outlived it: that record's write does not bring the entry back.
        let _: () = c.del(keys::app("a")).await.unwrap();
        let _: () = c.hdel(keys::APPS_LATEST, "a").await.unwrap();
        let raw2 = store.deployment_bytes(&d2).unwrap();
        d2.status = DeploymentStatus::Building;
        store
            .write_deployment(&d2, &[], Expect::Read(&raw2, DeploymentStatus::Queued))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest().await, None);
    }

    /// The scripts are called by their hash; a Redis that lost them (restarted, failed over,
    /// `SCRIPT FLUSH`) is given them again and the call goes through: a record's write with
    /// its extra commands, and a job's fenced `XADD`.
    #[actix_rt::test]
    async fn script_calls_survive_a_redis_that_lost_the_scripts() {
        let (_redis, conn) = real_redis("store-noscript").await;
        let store = Store::new(conn.clone());
        let mut c = conn.clone();
        let flush = || async {
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut conn.clone())
                .await
                .unwrap();
        };
        let mut d = crate::ledger::tests::queued();
        d.id = "d1".into();
        let line = log_command("d1", LogStream::System, "queued");
        flush().await;
        let raw = store
            .write_deployment(&d, std::slice::from_ref(&line), Expect::Absent)
            .await
            .unwrap()
            .expect("written");
        flush().await;
        let before = d.status;
        d.status = DeploymentStatus::Building;
        store
            .write_deployment(&d, &[line], Expect::Read(&raw, before))
            .await
            .unwrap()
            .expect("written");
        assert_eq!(
            store.get_deployment("d1").await.unwrap().unwrap().status,
            DeploymentStatus::Building
        );
        let lines: usize = c.xlen(keys::deployment_log("d1")).await.unwrap();
        assert_eq!(lines, 2);
        flush().await;
        store
            .send_job(
                "n1",
                "d1",
                &berth_protocol::Job::StopApp { app: "a".into() },
            )
            .await
            .unwrap();
        let jobs: usize = c.xlen(keys::jobs("n1")).await.unwrap();
        assert_eq!(jobs, 1);
    }

    /// On a real Redis: a writer that read an app's domains before a PATCH dropped one (a
    /// rollout's tick) writes no route for it — first domain or copy — and one for the domains
    /// the index still gives the app.
    #[actix_rt::test]
    async fn routes_are_written_only_for_domains_the_index_gives_the_app() {
        let (_redis, conn) = real_redis("store-routes").await;
        let store = Store::new(conn.clone());
        let _: () = redis::cmd("HSET")
            .arg(keys::DOMAINS)
            .arg(&[
                "shop.test",
                "shop",
                "www.shop.test",
                "shop",
                "taken.test",
                "other",
            ])
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        let route = |cur: Option<Route>| {
            cur.or(Some(Route {
                domain: String::new(),
                app: "shop".into(),
                upstreams: Vec::new(),
                updated_at: 1,
                drain_s: None,
                standby: Vec::new(),
                standby_until: 0,
            }))
        };
        // As read before the PATCH: `old.test` (now no app's) and `taken.test` (another's).
        let read = ["shop.test", "old.test", "taken.test", "www.shop.test"].map(String::from);
        let written = store.edit_routes(&read, route).await.unwrap();
        assert!(written.is_some());
        for (domain, routed) in [
            ("shop.test", true),
            ("old.test", false),
            ("taken.test", false),
            ("www.shop.test", true),
        ] {
            assert_eq!(
                store.route(domain).await.unwrap().is_some(),
                routed,
                "{domain}"
            );
        }
        // The first domain dropped: nothing is written, none of the others either.
        let read = ["old.test", "www.shop.test"].map(String::from);
        let _: () = redis::cmd("HDEL")
            .arg(keys::ROUTES)
            .arg("www.shop.test")
            .query_async(&mut conn.clone())
            .await
            .unwrap();
        assert!(store.edit_routes(&read, route).await.unwrap().is_none());
        assert!(store.route("old.test").await.unwrap().is_none());
        assert!(store.route("www.shop.test").await.unwrap().is_none());
    }
}
