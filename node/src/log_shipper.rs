//! `LogShipper`: follows the stdout/stderr of every app container this node runs and ships each
//! line to the app's runtime log stream `berth:applogs:<app>`, tagged with node, container and
//! deployment.
//!
//! It learns of containers from Docker's event stream (`start` of a container labelled with this
//! node) plus one listing of the running ones whenever that stream (re)connects, so a container
//! started by a deployment, a rollback's `docker start` or Docker's restart policy is followed
//! within milliseconds. A container seen starting is followed from the start of that run (its first
//! lines included, which Docker may stamp before the event); one found running by the listing
//! (after this node restarted) is followed from just after the last line shipped for it — Docker's
//! nanosecond stamp of that line is kept in `berth:applogs:cursor:<node>`, written in one
//! MULTI/EXEC with the lines — so a node restart loses no line and repeats none; one found running
//! with no cursor (started while the node was down) is followed over its current run, at most its
//! last `APP_LOG_MAXLEN` lines. Lines go through [`LogSink`], the node's one masking step: the
//! app's git credential and every value of its secret variables — the app's as stored and those
//! of the deployment the container runs, read from Redis and opened with the node's key when the
//! container is attached — are replaced before a line leaves the node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use berth_bus::{Backoff, Redis, Shutdown};
use berth_protocol::envelope::decode;
use berth_protocol::secret::{open_env, GitCredential, Sealed, SecretKey};
use berth_protocol::{keys, now_ms, Deployment, LogStream, SealedEnv};
use bollard::container::LogOutput;
use bollard::query_parameters::{EventsOptions, LogsOptions};
use bollard::Docker;
use futures_util::StreamExt;

use crate::containers::{LABEL_APP, LABEL_DEPLOYMENT, LABEL_NODE};
use crate::log_sink::{split_lines, LogSink};

/// Most lines written to Redis in one round trip.
const BATCH: usize = 512;
/// Pauses before reconnecting to Docker's event stream after it failed: the first, and the
/// longest (see [`Backoff`]).
const RECONNECT_FIRST: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// What the shipper needs; shared by its tasks.
#[derive(Clone)]
pub struct Shipper {
    pub docker: Docker,
    pub redis: Redis,
    pub node: String,
    /// Opens the apps' sealed git credentials, whose values are masked.
    pub secret_key: Option<SecretKey>,
    /// Tracks the follow tasks.
    pub shutdown: Shutdown,
}

/// The actor owning the shipping task; stopping it stops every follow.
pub struct LogShipper {
    shipper: Arc<Shipper>,
}

impl LogShipper {
    pub fn new(shipper: Shipper) -> Self {
        LogShipper {
            shipper: Arc::new(shipper),
        }
    }
}

impl Actor for LogShipper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let sh = self.shipper.clone();
        // A future of the context: dropped, with every follow task it owns, when the actor stops.
        ctx.spawn(run(sh).into_actor(self));
    }
}

berth_bus::injectable!(LogShipper);

/// Stops the shipper.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopShipper;

impl Handler<StopShipper> for LogShipper {
    type Result = ();

    fn handle(&mut self, _: StopShipper, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// A container to follow, as Docker describes it.
#[derive(Debug, Clone)]
struct Target {
    id: String,
    name: String,
    app: String,
    deployment: String,
    /// Lines Docker stamped before this (epoch ns) are not shipped.
    from_ns: u64,
    /// Follow the container's whole current run rather than from `from_ns` (which is then the
    /// time of its `start` event, or of the listing that found it): see [`run_start`].
    whole_run: bool,
}

/// Follow tasks by container id; aborted when dropped.
#[derive(Default)]
struct Follows(HashMap<String, tokio::task::JoinHandle<()>>);

impl Follows {
    fn attach(&mut self, sh: &Arc<Shipper>, t: Target) {
        self.0.retain(|_, h| !h.is_finished());
        if self.0.contains_key(&t.id) {
            return;
        }
        let id = t.id.clone();
        let handle = sh.shutdown.spawn(follow(sh.clone(), t));
        self.0.insert(id, handle);
    }
}

impl Drop for Follows {
    fn drop(&mut self) {
        for h in self.0.values() {
            h.abort();
        }
    }
}

async fn run(sh: Arc<Shipper>) {
    let mut follows = Follows::default();
    let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_MAX);
    loop {
        // Subscribe first, then list: a container starting in between is seen at least once.
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["start".to_string()]),
            (
                "label".to_string(),
                vec![format!("{LABEL_NODE}={}", sh.node)],
            ),
        ]);
        let mut events = sh.docker.events(Some(EventsOptions {
            filters: Some(filters),
            ..Default::default()
        }));
        match running(&sh).await {
            Ok(list) => {
                let list = resume_points(&sh, list).await;
                list.into_iter().for_each(|t| follows.attach(&sh, t));
            }
            Err(e) => tracing::warn!(error = %e, "log shipper: cannot list containers"),
        }
        while let Some(ev) = events.next().await {
            match ev {
                Ok(ev) => {
                    // The stream works: a later break starts again from the shortest pause.
                    backoff.reset();
                    if let Some(t) = from_event(&ev) {
                        follows.attach(&sh, t);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "log shipper: Docker event stream failed");
                    break;
                }
            }
        }
        backoff.wait().await;
    }
}

/// Where to resume each running container: after its cursor if it has one, else from the start of
/// its current run. Cursors of containers no longer running are dropped.
async fn resume_points(sh: &Shipper, mut list: Vec<Target>) -> Vec<Target> {
    let key = keys::app_log_cursors(&sh.node);
    let mut c = sh.redis.clone();
    let cursors: HashMap<String, u64> = match redis::cmd("HGETALL")
        .arg(&key)
        .query_async(&mut c)
        .await
    {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "log shipper: cannot read cursors; following whole runs");
            HashMap::new()
        }
    };
    for t in &mut list {
        if let Some(ns) = cursors.get(&t.id) {
            t.from_ns = ns + 1;
            t.whole_run = false;
        }
    }
    let gone: Vec<&String> = cursors
        .keys()
        .filter(|id| !list.iter().any(|t| &t.id == *id))
        .collect();
    if !gone.is_empty() {
        let _ = redis::cmd("HDEL")
            .arg(&key)
            .arg(gone)
            .query_async::<()>(&mut c)
            .await;
    }
    list
}

/// This node's running app containers, each to be followed over its whole current run unless
/// [`resume_points`] finds a cursor.
async fn running(sh: &Shipper) -> crate::Result<Vec<Target>> {
    let list = crate::containers::running_app_containers(&sh.docker, &sh.node).await?;
    let now = now_ms() * 1_000_000;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            Some(Target {
                id: c.id?,
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                app: labels.get(LABEL_APP)?.clone(),
                deployment: labels.get(LABEL_DEPLOYMENT).cloned().unwrap_or_default(),
                from_ns: now,
                whole_run: true,
            })
        })
        .collect())
}

/// The container a `start` event is about, followed from the moment it started.
fn from_event(ev: &bollard::models::EventMessage) -> Option<Target> {
    let actor = ev.actor.as_ref()?;
    let attrs = actor.attributes.as_ref()?;
    let started = ev
        .time_nano
        .map(|n| n as u64)
        .or(ev.time.map(|s| s as u64 * 1_000_000_000))
        .unwrap_or_else(|| now_ms() * 1_000_000);
    Some(Target {
        id: actor.id.clone()?,
        name: attrs.get("name").cloned().unwrap_or_default(),
        app: attrs.get(LABEL_APP)?.clone(),
        deployment: attrs.get(LABEL_DEPLOYMENT).cloned().unwrap_or_default(),
        from_ns: started,
        whole_run: true,
    })
}

/// The values to mask in `app`'s output: its git credential's, and every secret variable value
/// this node can open — the app's as stored now (`berth:app:<app>:env_secrets`) and those of
/// the deployment the container runs (its record's `runtime.secrets`, which a rollback to an
/// older release brings back), whatever their scope.
async fn masks(sh: &Shipper, app: &str, deployment: &str) -> Vec<String> {
    let c = sh.redis.clone();
    let get = |k: String| {
        let mut c = c.clone();
        async move {
            redis::cmd("GET")
                .arg(k)
                .query_async::<Option<Vec<u8>>>(&mut c)
                .await
        }
    };
    let (cred, env, record) = tokio::join!(
        get(keys::app_credential(app)),
        get(keys::app_env_secrets(app)),
        async {
            match deployment.is_empty() {
                true => Ok(None),
                false => get(keys::deployment(deployment)).await,
            }
        },
    );
    let read = |what: &str, r: redis::RedisResult<Option<Vec<u8>>>| {
        r.unwrap_or_else(|e| {
            tracing::warn!(app, error = %e, "log shipper: cannot read the app's {what}");
            None
        })
    };
    let (cred, env, record) = (
        read("credential", cred),
        read("secret variables", env),
        read("deployment record", record),
    );
    let Some(key) = sh.secret_key.as_ref() else {
        return Vec::new();
    };
    let mut values = Vec::new();
    if let Some(raw) = cred {
        match decode::<Sealed>(&raw, berth_protocol::envelope::kind::CREDENTIAL)
            .map_err(|e| e.to_string())
            .and_then(|sealed| {
                // Masking sends nothing anywhere: an older, unbound blob is good enough for it.
                GitCredential::open(key, app, &sealed)
                    .or_else(|e| GitCredential::open_unbound(key, &sealed).map_err(|_| e))
            }) {
            Ok(cred) => values.extend(cred.mask_values()),
            Err(e) => {
                tracing::warn!(app, error = %e, "log shipper: cannot open the app's credential")
            }
        }
    }
    let current = env.and_then(|raw| {
        decode::<Sealed>(&raw, berth_protocol::envelope::kind::CREDENTIAL)
            .map_err(|e| tracing::warn!(app, error = %e, "log shipper: cannot decode the app's secret variables"))
            .ok()
    });
    let release = record
        .and_then(|raw| decode::<Deployment>(&raw, berth_protocol::envelope::kind::DEPLOYMENT).ok())
        .and_then(|d| d.runtime)
        .and_then(|r| r.secrets);
    values.extend(env_mask_values(
        key,
        app,
        current.as_ref(),
        release.as_ref(),
    ));
    values
}

/// Every secret variable value in `current` (the app's sealed map) and `release` (a
/// deployment's sealed runtime variables), opened with `key`; what does not open is logged
/// and left out.
fn env_mask_values(
    key: &SecretKey,
    app: &str,
    current: Option<&Sealed>,
    release: Option<&SealedEnv>,
) -> Vec<String> {
    let mut values = Vec::new();
    for sealed in current.into_iter().chain(release.map(|r| &r.sealed)) {
        match open_env(key, app, sealed) {
            Ok(map) => values.extend(map.into_values()),
            Err(e) => {
                tracing::warn!(app, error = %e, "log shipper: cannot open the app's secret variables")
            }
        }
    }
    values.sort();
    values.dedup();
    values
}

/// Where the output of a container's current run begins, for a container seen by its `start`
/// event at `event_ns` (or found running, with no cursor, by a listing at `event_ns`).
///
/// Not the event's time: Docker stamps the first lines of a quick process before it stamps the
/// `start` event (seen here: a line 0.4 ms before the event), so those lines would be lost.
/// Everything after the previous run finished belongs to this run (a container that never ran
/// before: everything). If this run has finished too by the time we look (`finished` after the
/// event), the previous run's end is unknown; then this run's `started` stamp is the bound.
fn run_start(event_ns: u64, started: Option<u64>, finished: Option<u64>) -> u64 {
    match finished {
        None => 0,
        Some(f) if f < event_ns => f + 1,
        Some(_) => started.unwrap_or(event_ns).min(event_ns),
    }
}

/// Docker's `StartedAt`/`FinishedAt` in epoch ns; `None` for its zero time ("never").
fn docker_time(s: Option<&str>) -> Option<u64> {
    let t = humantime::parse_rfc3339(s?).ok()?;
    Some(ns(t)).filter(|&n| n > 0)
}

/// Ships one container's output until it stops.
async fn follow(sh: Arc<Shipper>, mut t: Target) {
    if t.whole_run {
        match sh.docker.inspect_container(&t.id, None).await {
            Ok(c) => {
                let state = c.state.unwrap_or_default();
                t.from_ns = run_start(
                    t.from_ns,
                    docker_time(state.started_at.as_deref()),
                    docker_time(state.finished_at.as_deref()),
                );
            }
            Err(e) => {
                tracing::debug!(container = %t.name, error = %e, "cannot inspect; following from its start event")
            }
        }
    }
    let sink = LogSink::app(sh.redis.clone(), &t.app, &sh.node, &t.name, &t.deployment)
        .with_masks(masks(&sh, &t.app, &t.deployment).await);
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        timestamps: true,
        // Whole seconds; lines before `from_ns` within that second are dropped below.
        since: i32::try_from(t.from_ns / 1_000_000_000).unwrap_or(0),
        // A long run found by a listing: no more than the app's log keeps anyway.
        tail: keys::APP_LOG_MAXLEN.to_string(),
        ..Default::default()
    };
    tracing::debug!(container = %t.name, app = %t.app, "following container output");
    let cursors = keys::app_log_cursors(&sh.node);
    let mut chunks = sh.docker.logs(&t.id, Some(opts)).ready_chunks(BATCH);
    // Lines wait in the sink while Redis is away: tried again every second even if the
    // container says nothing more.
    let mut holding = false;
    loop {
        let next = tokio::select! {
            next = chunks.next() => next,
            () = tokio::time::sleep(HELD_RETRY), if holding => {
                holding = !sink.try_flush().await;
                continue;
            }
        };
        let Some(chunk) = next else { break };
        let mut entries = Vec::with_capacity(chunk.len());
        // Docker's stamp (ns) of the newest line in this batch: the resume point once shipped.
        let mut newest_ns = None;
        for item in chunk {
            let (stream, message) = match item {
                Ok(LogOutput::StdErr { message }) => (LogStream::Stderr, message),
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    (LogStream::Stdout, message)
                }
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(e) => {
                    tracing::debug!(container = %t.name, error = %e, "container output ended");
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&message);
            for line in split_lines(&text) {
                let (ns, line) = split_timestamp(line);
                let ns = ns.unwrap_or_else(|| now_ms() * 1_000_000);
                if ns < t.from_ns {
                    continue;
                }
                newest_ns = newest_ns.max(Some(ns));
                entries.push((ns / 1_000_000, stream, line.to_string()));
            }
        }
        // The resume point goes in with the lines, atomically.
        let cursor = newest_ns.map(|ns| {
            let mut c = redis::cmd("HSET");
            c.arg(&cursors).arg(&t.id).arg(ns);
            c
        });
        holding = !sink.write_entries_and(entries, cursor).await && sink.is_holding().await;
    }
    // The container stopped. Held lines go once Redis answers (after a node restart they are
    // read from Docker again: the cursor moves only with them).
    sink.flush(sh.shutdown.token()).await;
}

/// How often lines held while Redis is away are tried again.
const HELD_RETRY: Duration = Duration::from_secs(1);

/// Splits Docker's `2026-11-25T19:01:02.123456789Z ` prefix off a line: (epoch ns, rest).
pub fn split_timestamp(line: &str) -> (Option<u64>, &str) {
    let Some((stamp, rest)) = line.split_once(' ') else {
        return (humantime::parse_rfc3339(line).ok().map(ns), "");
    };
    match humantime::parse_rfc3339(stamp) {
        Ok(t) => (Some(ns(t)), rest),
        Err(_) => (None, line),
    }
}

fn ns(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn app_output_masks_every_secret_variable_of_the_app_and_of_its_release() {
        use berth_protocol::secret::seal_env;
        let key = SecretKey::generate();
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let current = seal_env(
            &key,
            "shop",
            &map(&[("TOKEN", "now-token"), ("B", "build-only")]),
        );
        let release = SealedEnv {
            names: vec!["TOKEN".into()],
            sealed: seal_env(&key, "shop", &map(&[("TOKEN", "old-token")])),
        };
        let values = env_mask_values(&key, "shop", Some(&current), Some(&release));
        assert_eq!(values, vec!["build-only", "now-token", "old-token"]);
        // A blob sealed for another app does not open here: nothing of it is used.
        let other = seal_env(&key, "other", &map(&[("X", "theirs")]));
        assert!(env_mask_values(&key, "shop", Some(&other), None).is_empty());
        // What the shipper ships goes through a sink with those masks.
        let (sink, lines) = LogSink::memory();
        let sink = sink.with_masks(values);
        sink.write_lines(
            LogStream::Stdout,
            vec!["token=now-token old=old-token build=build-only".into()],
        )
        .await;
        let got: Vec<String> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        assert_eq!(got, vec!["token=******** old=******** build=********"]);
    }

    #[test]
    fn splits_docker_timestamps() {
        let (ts, rest) = split_timestamp("2026-11-25T19:01:02.123456789Z hello world");
        assert_eq!(ts, Some(1_795_633_262_123_456_789));
        assert_eq!(rest, "hello world");
        let (ts, rest) = split_timestamp("2026-11-25T19:01:02.5Z x");
        assert_eq!(ts, Some(1_795_633_262_500_000_000));
        assert_eq!(rest, "x");
        // An empty line still carries its stamp.
        let (ts, rest) = split_timestamp("2026-11-25T19:01:02Z");
        assert_eq!(ts, Some(1_795_633_262_000_000_000));
        assert_eq!(rest, "");
        let (ts, rest) = split_timestamp("no stamp here");
        assert_eq!(ts, None);
        assert_eq!(rest, "no stamp here");
    }

    #[test]
    fn a_run_is_followed_from_the_end_of_the_previous_one() {
        let event = 5_000;
        // Never ran before: all of its output.
        assert_eq!(run_start(event, Some(4_990), None), 0);
        // Restarted (a rollback's `docker start`): everything after the previous run ended.
        assert_eq!(run_start(event, Some(4_990), Some(3_000)), 3_001);
        // Already stopped again when we looked: from this run's start.
        assert_eq!(run_start(event, Some(4_990), Some(6_000)), 4_990);
        assert_eq!(run_start(event, None, Some(6_000)), 5_000);
        // Docker's zero time means never.
        assert_eq!(docker_time(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(
            docker_time(Some("2026-11-25T19:01:02.123456789Z")),
            Some(1_795_633_262_123_456_789)
        );
    }

    #[test]
    fn start_event_names_the_container_and_its_start() {
        let ev = bollard::models::EventMessage {
            actor: Some(bollard::models::EventActor {
                id: Some("abc".into()),
                attributes: Some(HashMap::from([
                    ("name".to_string(), "hello-d1".to_string()),
                    (LABEL_APP.to_string(), "hello".to_string()),
                    (LABEL_DEPLOYMENT.to_string(), "d1".to_string()),
                ])),
            }),
            time_nano: Some(1_795_633_262_123_456_789),
            ..Default::default()
        };
        let t = from_event(&ev).unwrap();
        assert_eq!(
            (
                t.id.as_str(),
                t.name.as_str(),
                t.app.as_str(),
                t.deployment.as_str()
            ),
            ("abc", "hello-d1", "hello", "d1")
        );
        assert_eq!(t.from_ns, 1_795_633_262_123_456_789);
        assert!(t.whole_run);
        // Not an app container: ignored.
        let other = bollard::models::EventMessage {
            actor: Some(bollard::models::EventActor {
                id: Some("x".into()),
                attributes: Some(HashMap::new()),
            }),
            ..Default::default()
        };
        assert!(from_event(&other).is_none());
    }
}
