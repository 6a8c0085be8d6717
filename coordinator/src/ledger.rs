//! `Ledger`: the single writer of deployment records.
//!
//! Creation, node assignment and every status change pass through this actor. Every change is a
//! read, a decision and a write that Redis makes only if the record still holds the bytes that
//! were read (`COMMIT`, see `Store::put_deployment_with`); when another process changed it in
//! between (a follower's API answering a cancel while the leader records a node's event), the
//! change is read and decided again. So the changes of one deployment never interleave, across
//! every coordinator; within one process they also queue on a mutex per deployment id, so they
//! do not race each other for nothing. Changes of different deployments run concurrently (what
//! they share — outcome counters, an app's release index — are increments and set writes that
//! commute). A change that does not move a deployment forward along
//! `queued → building → deploying → terminal` is stale and dropped; a terminal record never changes.

use actix::prelude::*;
use berth_protocol::envelope::{decode, kind, EnvelopeError};
use berth_protocol::{
    keys, now_ms, Deployment, DeploymentKind, DeploymentStatus, DeploymentUpdate, LogStream,
    Rollout, RuntimeSpec, SlotState,
};

use crate::error::{Error, Result};
use crate::store::{log_command, Expect, Store};

/// How many times a change is decided again when another process changed the record between
/// its read and its write, before it gives up.
const TRIES: usize = 32;

/// Before try `n` of a change (`n` > 0: it lost the race for the record `n` times), a random
/// pause of up to `n` ms: two processes changing one record in a burst take turns instead of
/// one of them winning every race while the other runs out of tries.
async fn lost_race(n: usize) {
    if n > 0 {
        let ms = rand::random::<u64>() % (n as u64 + 1);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// The error of a change that lost the race for a record [`TRIES`] times in a row.
fn kept_changing(id: &str) -> Error {
    Error::Internal(format!(
        "deployment {id} kept changing under this change ({TRIES} tries); try again"
    ))
}

/// The held records and their bytes, by deployment id, and the sum of those bytes.
#[derive(Default)]
struct Held {
    records: std::collections::HashMap<String, (Deployment, Vec<u8>)>,
    bytes: usize,
}

/// How many bytes (encoded) of records [`Written`] holds at most in all — about 16,000 records
/// of this bench's size, so a coordinator with that many deployments in flight starts every
/// change from a held copy — and the largest record it holds.
const WRITTEN_MAX_TOTAL: usize = 8 * 1024 * 1024;
const WRITTEN_MAX_BYTES: usize = 8 * 1024;

/// The records of unfinished deployments as this Ledger wrote them last, with their bytes. A
/// change starts from the one held here instead of reading the record from Redis: its write
/// compares those bytes with what Redis holds, as it compares the bytes it read, so a record
/// another process changed since is read and decided again. (A change that the held record
/// says is not one is decided again on the record read, too: only writes are trusted to the
/// compare.) A record leaves when it is taken for a change, and comes back with its write.
#[derive(Clone, Default)]
struct Written(std::sync::Arc<std::sync::Mutex<Held>>);

impl Written {
    fn take(&self, id: &str) -> Option<(Deployment, Vec<u8>)> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let taken = held.records.remove(id);
        if let Some((_, b)) = &taken {
            held.bytes -= b.len();
        }
        taken
    }

    /// Holds `d`, just written as `bytes`; a terminal record is let go (it never changes).
    /// When the held bytes would pass [`WRITTEN_MAX_TOTAL`], others make room (any: a record
    /// not held is read from Redis, which costs a read, not a mistake).
    fn keep(&self, d: &Deployment, bytes: Option<Vec<u8>>) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, old)) = held.records.remove(&d.id) {
            held.bytes -= old.len();
        }
        let Some(b) = bytes else { return };
        if d.status.is_terminal() || b.len() > WRITTEN_MAX_BYTES {
            return;
        }
        while held.bytes + b.len() > WRITTEN_MAX_TOTAL {
            let Some(k) = held.records.keys().next().cloned() else {
                break;
            };
            if let Some((_, old)) = held.records.remove(&k) {
                held.bytes -= old.len();
            }
        }
        held.bytes += b.len();
        held.records.insert(d.id.clone(), (d.clone(), b));
    }
}

/// How many deployments [`Keeps`] remembers at most.
const KEEPS_MAX: usize = 65_536;

/// For the deployments this Ledger created with their job ([`CreateRecord`]), the app's
/// `keep_releases` that job was made with (its `keep_images`), by deployment id: their success
/// trims the app's release index to it in its own write (`releases::trim_command`) instead of
/// reading the app after the write and trimming then (two round trips and a decode). So the
/// index keeps the releases whose images the node kept. Any other deployment (made by another
/// process or before a restart, placed by its actor, a rollback) reads the app at its success,
/// as before, and so does one run again on another node ([`Reassign`]: its new job is made
/// with the app as read then). A hint, bounded ([`KEEPS_MAX`]): one left out reads the app.
#[derive(Clone, Default)]
struct Keeps(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>);

impl Keeps {
    fn insert(&self, id: &str, keep: u32) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= KEEPS_MAX {
            if let Some(k) = m.keys().next().cloned() {
                m.remove(&k);
            }
        }
        m.insert(id.to_string(), keep);
    }

    fn get(&self, id: &str) -> Option<u32> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    fn remove(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

pub struct Ledger {
    store: Store,
    /// One async mutex per deployment with a change under way: changes of one record never
    /// interleave, changes of different records run at once.
    serial: std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>,
    written: Written,
    keeps: Keeps,
}

impl Ledger {
    pub fn new(store: Store) -> Self {
        Ledger {
            store,
            serial: Default::default(),
            written: Written::default(),
            keeps: Keeps::default(),
        }
    }

    /// The mutex that serializes the changes of deployment `id`.
    fn serial(&mut self, id: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        // Forget the mutexes nobody holds or waits for, so the map stays small.
        if self.serial.len() > 64 {
            self.serial
                .retain(|_, m| std::sync::Arc::strong_count(m) > 1);
        }
        self.serial.entry(id.to_string()).or_default().clone()
    }
}

impl Actor for Ledger {
    type Context = Context<Self>;
}

berth_bus::injectable!(Ledger);

/// How many of an app's newest deployment ids a create answers with its record ([`Created`]).
pub const RECENT: usize = 100;

/// Record a new `queued` deployment of an app.
#[derive(Message, Default)]
#[rtype(result = "Result<Created>")]
pub struct Create {
    pub app: String,
    pub git_ref: Option<String>,
    pub kind: DeploymentKind,
    pub rollback_of: Option<String>,
    /// A rollback's image, settings and commit, from its release.
    pub image: Option<String>,
    pub commit: Option<String>,
    pub runtime: Option<RuntimeSpec>,
    /// Known when a push payload carried them; else the node reports them from git.
    pub commit_message: Option<String>,
    pub commit_author: Option<String>,
    /// Why the coordinator queued it itself (a failover), for the first log line.
    pub reason: Option<String>,
    /// A plan over the app's replicas made by whoever queued it (a failover, a drain, a
    /// change of the replica count); a deploy or rollback of a replicated app is planned when
    /// it starts.
    pub rollout: Option<Rollout>,
    /// Build an uploaded archive instead of a git checkout.
    pub upload: Option<berth_protocol::Upload>,
    /// Build with no cached layer.
    pub no_cache: bool,
}

/// A new deployment as its create wrote it, and the ids of its app's newest [`RECENT`]
/// deployments, newest first, read in the same write (the new one among them): what the
/// creator needs to cancel the app's older unfinished ones, and the first placement to find the
/// node that built the app last, without reading the app's index again.
#[derive(Debug, Clone)]
pub struct Created {
    pub deployment: Deployment,
    pub recent: Vec<String>,
}

/// Bind a queued deployment to the node that will run it. Answers the record as written and
/// whether `job` went with it, `None` when the deployment is no longer queued and unplaced.
#[derive(Message)]
#[rtype(result = "Result<Option<(Deployment, bool)>>")]
pub struct Assign {
    pub id: String,
    pub node: String,
    /// The settings it will run with (kept with the release).
    pub runtime: RuntimeSpec,
    /// The record as the asker holds it: the first try expects Redis to hold exactly this (so
    /// it does not read it first); when it does not, the record is read and decided again.
    pub known: Option<Deployment>,
    /// The command that queues the deployment's job, made from `known`: it runs in the
    /// assignment's write when that write finds the record as `known` (else the asker makes
    /// the job again from the record answered).
    pub job: Option<redis::Cmd>,
}

/// Run a deployment whose attempt an infrastructure fault interrupted (its node went down
/// before it switched, or reported the attempt interrupted) again, on node `to` (another node,
/// or the same one): its next attempt. `cause` goes into the deployment's log. Answers the
/// record, `None` if it is terminal, no longer on `from`, or past attempt `attempt` already.
#[derive(Message)]
#[rtype(result = "Result<Option<Deployment>>")]
pub struct Reassign {
    pub id: String,
    pub from: String,
    pub to: String,
    /// The attempt that was interrupted.
    pub attempt: u32,
    pub cause: String,
}

/// A status change (from a node's event, a deadline, or a cancel). Fields left `None` are kept.
#[derive(Message, Clone)]
#[rtype(result = "Result<Option<Deployment>>")]
pub struct Transition(pub DeploymentUpdate);

impl Transition {
    /// `id` ends `status` (failed or cancelled) because of `error`.
    pub fn ended(id: &str, status: DeploymentStatus, error: impl Into<String>) -> Self {
        Transition(DeploymentUpdate::ended(id, status, error))
    }
}

/// Change the rollout plan or progress of a deployment that is not terminal: `edit` gets the
/// record and answers whether it changed anything. Answers the record written, `None` if it
/// was terminal or unchanged.
#[derive(Message)]
#[rtype(result = "Result<Option<Deployment>>")]
pub struct EditRollout {
    pub id: String,
    #[allow(clippy::type_complexity)]
    pub edit: Box<dyn FnMut(&mut Deployment) -> bool + Send>,
}

impl EditRollout {
    pub fn new(id: &str, edit: impl FnMut(&mut Deployment) -> bool + Send + 'static) -> Self {
        EditRollout {
            id: id.to_string(),
            edit: Box::new(edit),
        }
    }
}

/// Replace a deployment record that cannot be read by a terminal `failed` record that says so,
/// so that the deployment ends instead of staying in flight for good. Only a record that is
/// corrupted: one written by a newer version (`TooNew`) is left for that version to finish. The
/// fate is claimed `cancel` first, so a deployment not yet switched never takes traffic; the
/// unreadable bytes are kept under `berth:deployment:<id>:unreadable`. Answers the new record,
/// or `None` when there was nothing to replace.
#[derive(Message)]
#[rtype(result = "Result<Option<Deployment>>")]
pub struct Quarantine(pub String);

/// Applies an update to a record; returns whether anything changed.
pub fn apply(d: &mut Deployment, t: &DeploymentUpdate) -> bool {
    if d.status.is_terminal() {
        return false;
    }
    if let Some(i) = &t.interrupted {
        return interrupt(d, t, i);
    }
    if t.status.rank() < d.status.rank() {
        return false;
    }
    // A node that is not the deployment's any more (it was taken for dead and the deployment
    // moved on) reports a stale job.
    if t.replica.is_none() && t.node.is_some() && d.node.is_some() && t.node != d.node {
        return false;
    }
    let mut changed = false;
    // A replica of a rollout reports only its slot (and what a building slot learned of the
    // commit and image): the coordinator ends the deployment, and the record's node and
    // container stay those of its first replica.
    let replica = t.replica.is_some();
    if let (Some(r), Some(ro)) = (&t.replica, d.rollout.as_mut()) {
        let slot = ro.slots.iter_mut().find(|s| {
            s.slot == r.slot
                && s.node == t.node
                && matches!(s.state, SlotState::Pending | SlotState::Starting)
        });
        if let Some(s) = slot {
            match (&r.upstream, &r.error) {
                (Some(u), None) => {
                    s.state = SlotState::Ready;
                    s.upstream = Some(u.clone());
                }
                (_, e) => {
                    s.state = SlotState::Failed;
                    s.error = Some(e.clone().unwrap_or_else(|| "failed".into()));
                }
            }
            changed = true;
        }
    }
    if t.status != d.status && !(replica && t.status.is_terminal()) {
        if d.started_at.is_none() && t.status != DeploymentStatus::Queued {
            d.started_at = Some(t.at);
        }
        if t.status.is_terminal() {
            d.finished_at = Some(t.at);
        }
        d.status = t.status;
        changed = true;
    }
    // What a push payload said about the commit stays; the node's reading of git fills gaps.
    for (field, value) in [
        (&mut d.commit_message, &t.commit_message),
        (&mut d.commit_author, &t.commit_author),
    ] {
        if field.is_none() && value.is_some() {
            *field = value.clone();
            changed = true;
        }
    }
    // The Dockerfile the build uses, once (a rollout's first slot builds; capped again here:
    // the record is what every later read carries).
    if d.dockerfile.is_none() {
        if let Some(text) = &t.dockerfile {
            d.dockerfile = Some(berth_protocol::messages::cap_dockerfile(text));
            changed = true;
        }
    }
    let none = None;
    let own = |v| if replica { &none } else { v };
    for (field, value) in [
        (&mut d.node, own(&t.node)),
        (&mut d.commit, &t.commit),
        (&mut d.image, &t.image),
        (&mut d.container, own(&t.container)),
        (&mut d.error, own(&t.error)),
    ] {
        if value.is_some() && field != value {
            *field = value.clone();
            changed = true;
        }
    }
    changed
}

/// Records that the node of the deployment (or of one replica of its rollout) reports its
/// current attempt interrupted; the status stays. A report of another node or of an earlier
/// attempt is stale and dropped, as is a second report of the same interruption.
fn interrupt(d: &mut Deployment, t: &DeploymentUpdate, i: &berth_protocol::Interruption) -> bool {
    if t.node.is_none() {
        return false;
    }
    match (&t.replica, d.rollout.as_mut()) {
        (Some(r), Some(ro)) => {
            let slot = ro.slots.iter_mut().find(|s| {
                s.slot == r.slot
                    && s.node == t.node
                    && s.attempt == i.attempt
                    && matches!(s.state, SlotState::Pending | SlotState::Starting)
                    && s.interrupted.is_none()
            });
            match slot {
                Some(s) => {
                    s.interrupted = Some(i.clone());
                    true
                }
                None => false,
            }
        }
        (None, _) if d.node == t.node && d.attempt == i.attempt && d.interrupted.is_none() => {
            d.interrupted = Some(i.clone());
            true
        }
        _ => false,
    }
}

/// A queued deploy of `app` with nothing known yet.
pub(crate) fn bare(id: &str, app: &str, created_at: u64) -> Deployment {
    Deployment {
        id: id.into(),
        app: app.into(),
        status: DeploymentStatus::Queued,
        git_ref: None,
        kind: DeploymentKind::Deploy,
        rollback_of: None,
        runtime: None,
        commit: None,
        commit_message: None,
        commit_author: None,
        image: None,
        node: None,
        container: None,
        created_at,
        started_at: None,
        finished_at: None,
        error: None,
        attempt: 0,
        interrupted: None,
        rollout: None,
        upload: None,
        no_cache: false,
        dockerfile: None,
    }
}

/// A short, unique, roughly time-ordered deployment id.
pub fn new_id() -> String {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    format!("d{:x}{}", now_ms() / 1000, &uuid[..8])
}

impl Create {
    /// The record a create writes (a new id, created now) and its first log line; what a
    /// creator that places the deployment itself makes its job from ([`CreateRecord`]).
    pub fn record(self) -> Queued {
        let d = Deployment {
            id: new_id(),
            app: self.app,
            status: DeploymentStatus::Queued,
            git_ref: self.git_ref,
            kind: self.kind,
            rollback_of: self.rollback_of,
            runtime: self.runtime,
            commit: self.commit,
            commit_message: self.commit_message,
            commit_author: self.commit_author,
            image: self.image,
            node: None,
            container: None,
            created_at: now_ms(),
            started_at: None,
            finished_at: None,
            error: None,
            attempt: 0,
            interrupted: None,
            rollout: self.rollout,
            upload: self.upload,
            no_cache: self.no_cache,
            dockerfile: None,
        };
        let line = match (&d.kind, &d.rollback_of) {
            (DeploymentKind::Rollback, Some(of)) => format!(
                "queued: roll back to the release of {of} ({})",
                d.image.as_deref().unwrap_or("?")
            ),
            (DeploymentKind::Failover, Some(of)) => format!(
                "queued: {}; run the release of {of} ({}) on another node",
                self.reason.as_deref().unwrap_or("failover"),
                d.image.as_deref().unwrap_or("?")
            ),
            (DeploymentKind::Restart, _) => format!(
                "queued: restart the serving release ({}) with the app's current settings",
                d.image.as_deref().unwrap_or("?")
            ),
            (DeploymentKind::Start, _) => format!(
                "queued: start the app again: its serving release ({})",
                d.image.as_deref().unwrap_or("?")
            ),
            (DeploymentKind::Scale, _) => format!(
                "queued: {}",
                self.reason.as_deref().unwrap_or("change the replica count")
            ),
            _ => match &d.upload {
                Some(u) => format!(
                    "queued: deploy the uploaded directory sha256:{} ({} bytes)",
                    u.sha256, u.size
                ),
                None => format!(
                    "queued: deploy {}",
                    d.git_ref.as_deref().unwrap_or("the app's branch")
                ),
            },
        };
        let line = if d.no_cache {
            format!("{line}, building with no cached layer")
        } else {
            line
        };
        Queued { d, line }
    }
}

/// A new deployment's record and the first line of its log, not written yet ([`Create::record`]).
#[derive(Debug, Clone)]
pub struct Queued {
    pub d: Deployment,
    pub line: String,
}

/// Record a new deployment its creator made with [`Create::record`]. With a `job`, it was
/// placed too: `queued.d` names its node and runtime, and the job (the `XADD` on that node's
/// stream, made from this very record) goes in the same write — the record, its assignment
/// and its job in one script call instead of a create and then an [`Assign`].
#[derive(Message)]
#[rtype(result = "Result<Created>")]
pub struct CreateRecord {
    pub queued: Queued,
    /// The job's command, and the app's `keep_releases` it was made with.
    pub job: Option<(redis::Cmd, u32)>,
}

/// Writes a new record with its first log line (and, when placed, the line that says where and
/// its job), trims the app's old logs and reads back the app's newest ids, in one write.
async fn write_new(
    store: Store,
    written: Written,
    Queued { mut d, line }: Queued,
    job: Option<redis::Cmd>,
) -> Result<Created> {
    // A record its creator placed was made before the placement's reads (a millisecond or so):
    // its creation time is taken again here, as a record made in this handler has it, so that
    // creates reach Redis in the order of their times. The newest of an app wins by that time,
    // and a create cancels the older ones it reads back: one written after a newer one would
    // see it as newer and cancel neither. (Its job's deadline came from the time it was made:
    // that much earlier, which only matters to the node by that millisecond.)
    d.created_at = now_ms().max(d.created_at);
    // The first log line is written with the record, the logs of the app's deployments that
    // fall out of the kept window go in the same write, and it reads the app's newest ids back
    // (one round trip).
    let mut extra = vec![
        log_command(&d.id, LogStream::System, &line),
        crate::store::trim_logs_command(&d.app),
        crate::store::recent_command(&d.app, RECENT),
    ];
    if let (Some(job), Some(node)) = (job, &d.node) {
        let line = format!("scheduled on node {node}");
        extra.push(log_command(&d.id, LogStream::System, &line));
        extra.push(job);
    }
    let Some((bytes, recent)) = store
        .write_deployment_read(&d, &extra, Expect::Absent)
        .await?
    else {
        return Err(Error::Internal(format!(
            "a deployment with the new id {} exists already; try again",
            d.id
        )));
    };
    written.keep(&d, Some(bytes));
    Ok(Created {
        deployment: d,
        recent,
    })
}

impl Handler<Create> for Ledger {
    type Result = ResponseFuture<Result<Created>>;

    fn handle(&mut self, msg: Create, _: &mut Context<Self>) -> Self::Result {
        let (store, written) = (self.store.clone(), self.written.clone());
        Box::pin(write_new(store, written, msg.record(), None))
    }
}

impl Handler<CreateRecord> for Ledger {
    type Result = ResponseFuture<Result<Created>>;

    fn handle(&mut self, msg: CreateRecord, _: &mut Context<Self>) -> Self::Result {
        let (store, written, keeps) =
            (self.store.clone(), self.written.clone(), self.keeps.clone());
        let (job, keep) = msg.job.unzip();
        Box::pin(async move {
            let created = write_new(store, written, msg.queued, job).await?;
            if let Some(keep) = keep {
                keeps.insert(&created.deployment.id, keep);
            }
            Ok(created)
        })
    }
}

impl Handler<Assign> for Ledger {
    type Result = ResponseFuture<Result<Option<(Deployment, bool)>>>;

    fn handle(&mut self, msg: Assign, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let serial = self.serial(&msg.id);
        let written = self.written.clone();
        Box::pin(async move {
            let _one = serial.lock().await;
            let held = written.take(&msg.id);
            let mut known = msg.known.filter(|d| d.id == msg.id);
            let mut job = msg.job;
            for n in 0..TRIES {
                lost_race(n).await;
                // The job only with the record it was made from.
                let with_job = if known.is_some() { job.take() } else { None };
                let read = match known.take() {
                    // The bytes this Ledger wrote it as, when it holds them (no encoding).
                    Some(d) => match &held {
                        Some((h, raw)) if *h == d => Some((d, raw.clone())),
                        _ => {
                            let raw = store.deployment_bytes(&d)?;
                            Some((d, raw))
                        }
                    },
                    None => store.read_deployment(&msg.id).await?,
                };
                let Some((mut d, raw)) = read else {
                    return Err(Error::NotFound(format!("deployment {} not found", msg.id)));
                };
                if d.status != DeploymentStatus::Queued || d.node.is_some() {
                    return Ok(None);
                }
                d.node = Some(msg.node.clone());
                if d.runtime.is_none() {
                    d.runtime = Some(msg.runtime.clone());
                }
                let line = format!("scheduled on node {}", msg.node);
                let mut extra = vec![log_command(&d.id, LogStream::System, &line)];
                let queued = with_job.is_some();
                extra.extend(with_job);
                let expect = Expect::Read(&raw, DeploymentStatus::Queued);
                if let Some(bytes) = store.write_deployment(&d, &extra, expect).await? {
                    written.keep(&d, Some(bytes));
                    return Ok(Some((d, queued)));
                }
            }
            Err(kept_changing(&msg.id))
        })
    }
}

impl Handler<Transition> for Ledger {
    type Result = ResponseFuture<Result<Option<Deployment>>>;

    fn handle(&mut self, Transition(msg): Transition, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        // One instant for the record's timestamps and the build-duration figure.
        let at = msg.at;
        let serial = self.serial(&msg.deployment_id);
        let held = self.written.clone();
        let keeps = self.keeps.clone();
        Box::pin(async move {
            let _one = serial.lock().await;
            let mut written = None;
            // The app's `keep_releases` its job was made with, when this Ledger knows it: a
            // success trims the release index in its own write.
            let keep = keeps.get(&msg.deployment_id);
            let mut cached = held.take(&msg.deployment_id);
            for n in 0..TRIES {
                lost_race(n).await;
                // The record as this Ledger wrote it last, if it holds it and the change
                // changes it; else as read now.
                let from_held = cached.take().and_then(|(mut d, raw)| {
                    let before = d.status;
                    apply(&mut d, &msg).then_some((d, raw, before))
                });
                let (d, raw, before) = match from_held {
                    Some(h) => h,
                    None => {
                        let Some((mut d, raw)) = store.read_deployment(&msg.deployment_id).await?
                        else {
                            return Ok(None);
                        };
                        let before = d.status;
                        if !apply(&mut d, &msg) {
                            return Ok(None);
                        }
                        (d, raw, before)
                    }
                };
                // Outcome counters, build durations and the release index change in the
                // record's write; so does the closing line of the log, which a follower that
                // sees the terminal status has to read.
                let mut extra = Vec::new();
                if d.status.is_terminal() {
                    let line = match (&d.status, &d.error) {
                        (DeploymentStatus::Succeeded, _) => "deployment succeeded".to_string(),
                        (s, Some(e)) => format!("deployment {s}: {e}"),
                        (s, None) => format!("deployment {s}"),
                    };
                    extra.push(log_command(&d.id, LogStream::System, &line));
                }
                extra.extend(crate::metrics::ledger_commands(before, &d, at));
                extra.extend(crate::releases::index_commands(&d));
                if let (DeploymentStatus::Succeeded, Some(keep)) = (d.status, keep) {
                    extra.push(crate::releases::trim_command(&d.app, keep));
                }
                if let Some(bytes) = store
                    .write_deployment(&d, &extra, Expect::Read(&raw, before))
                    .await?
                {
                    held.keep(&d, Some(bytes));
                    written = Some(d);
                    break;
                }
            }
            let Some(d) = written else {
                return Err(kept_changing(&msg.deployment_id));
            };
            if d.status.is_terminal() {
                keeps.remove(&d.id);
            }
            if d.status == DeploymentStatus::Succeeded && keep.is_none() {
                // The record is written; a trim that fails now happens at the next success.
                let trimmed = match store.get_app(&d.app).await {
                    Ok(Some(app)) => {
                        crate::releases::trim(&store, &app.name, app.keep_releases).await
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = trimmed {
                    tracing::warn!(app = %d.app, error = %e, "could not trim the release index");
                }
            }
            Ok(Some(d))
        })
    }
}

impl Handler<Reassign> for Ledger {
    type Result = ResponseFuture<Result<Option<Deployment>>>;

    fn handle(&mut self, msg: Reassign, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let serial = self.serial(&msg.id);
        let written = self.written.clone();
        // The next attempt's job is made with the app as read then: its success reads the app.
        self.keeps.remove(&msg.id);
        Box::pin(async move {
            let _one = serial.lock().await;
            // Rare: read from Redis; what this Ledger held of it is stale once it writes.
            written.take(&msg.id);
            for n in 0..TRIES {
                lost_race(n).await;
                let Some((mut d, raw)) = store.read_deployment(&msg.id).await? else {
                    return Ok(None);
                };
                if d.status.is_terminal()
                    || d.node.as_deref() != Some(msg.from.as_str())
                    || d.attempt != msg.attempt
                {
                    return Ok(None);
                }
                d.node = Some(msg.to.clone());
                d.attempt += 1;
                d.interrupted = None;
                // A deploy builds again; a rollback (a start, a failover…) runs its image again.
                let what = match crate::deployment::rollback_image(&d) {
                    None => "build",
                    Some(_) => "deployment",
                };
                let line = format!(
                    "{}: the {what} runs again on node {} (attempt {} of {})",
                    msg.cause,
                    msg.to,
                    d.attempt + 1,
                    crate::deployment::ATTEMPTS
                );
                let mut set = redis::cmd("SET");
                set.arg(keys::deployment_attempt(&d.id))
                    .arg(d.attempt)
                    .arg("EX")
                    .arg(keys::MARKER_TTL_S);
                let log = log_command(&d.id, LogStream::System, &line);
                if store
                    .put_deployment_with(&d, &[log, set], Expect::Read(&raw, d.status))
                    .await?
                {
                    return Ok(Some(d));
                }
            }
            Err(kept_changing(&msg.id))
        })
    }
}

impl Handler<EditRollout> for Ledger {
    type Result = ResponseFuture<Result<Option<Deployment>>>;

    fn handle(&mut self, msg: EditRollout, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let serial = self.serial(&msg.id);
        let written = self.written.clone();
        Box::pin(async move {
            let _one = serial.lock().await;
            // Read from Redis; what this Ledger held of it is stale once it writes.
            written.take(&msg.id);
            let mut edit = msg.edit;
            for n in 0..TRIES {
                lost_race(n).await;
                let Some((mut d, raw)) = store.read_deployment(&msg.id).await? else {
                    return Ok(None);
                };
                let before = d.status;
                if before.is_terminal() || !edit(&mut d) {
                    return Ok(None);
                }
                if store
                    .put_deployment_with(&d, &[], Expect::Read(&raw, before))
                    .await?
                {
                    return Ok(Some(d));
                }
            }
            Err(kept_changing(&msg.id))
        })
    }
}

impl Handler<Quarantine> for Ledger {
    type Result = ResponseFuture<Result<Option<Deployment>>>;

    fn handle(&mut self, Quarantine(id): Quarantine, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let serial = self.serial(&id);
        let written = self.written.clone();
        Box::pin(async move {
            let _one = serial.lock().await;
            written.take(&id);
            let Some(raw) = store.raw_deployment(&id).await? else {
                return Ok(None);
            };
            let reason = match decode::<Deployment>(&raw, kind::DEPLOYMENT) {
                Ok(_) | Err(EnvelopeError::TooNew { .. }) => return Ok(None),
                Err(e) => e,
            };
            let stopped = store
                .claim_once(
                    &keys::deployment_fate(&id),
                    keys::FATE_CANCEL,
                    keys::MARKER_TTL_S,
                )
                .await?;
            let (app, created_at) = store.app_of_deployment(&id).await?.unwrap_or_default();
            let at = now_ms();
            let error = format!(
                "its record could not be read ({reason}); {}; the unreadable record is kept in {}",
                if stopped {
                    "it was stopped before it could take traffic"
                } else {
                    "it had switched traffic already, so its outcome is not known"
                },
                keys::deployment_unreadable(&id)
            );
            let created_at = if created_at == 0 { at } else { created_at };
            let d = Deployment {
                status: DeploymentStatus::Failed,
                finished_at: Some(at),
                error: Some(error),
                ..bare(&id, &app, created_at)
            };
            // Replaced only if nobody wrote the record since it was read; else it is read again
            // by whoever asks next.
            let line = format!("deployment failed: {}", d.error.as_deref().unwrap_or(""));
            let log = log_command(&id, LogStream::System, &line);
            if !store
                .replace_unreadable_deployment(&d, &raw, &[log])
                .await?
            {
                return Ok(None);
            }
            tracing::error!(deployment = %id, error = ?d.error, "unreadable deployment record replaced by a failed one");
            Ok(Some(d))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A queued deployment record (test fixture, also used by `metrics`' tests).
    pub(crate) fn queued() -> Deployment {
        bare("d1", "a", 1)
    }

    fn to(status: DeploymentStatus, at: u64) -> DeploymentUpdate {
        DeploymentUpdate {
            at,
            ..DeploymentUpdate::new("d1", status)
        }
    }

    #[test]
    fn moves_forward_and_stamps_times() {
        let mut d = queued();
        assert!(apply(&mut d, &to(DeploymentStatus::Building, 10)));
        assert_eq!(d.started_at, Some(10));
        assert!(apply(&mut d, &to(DeploymentStatus::Deploying, 20)));
        assert_eq!(d.started_at, Some(10));
        assert!(apply(&mut d, &to(DeploymentStatus::Succeeded, 30)));
        assert_eq!(d.finished_at, Some(30));
    }

    #[test]
    fn stale_and_post_terminal_changes_are_dropped() {
        let mut d = queued();
        apply(&mut d, &to(DeploymentStatus::Deploying, 10));
        assert!(!apply(&mut d, &to(DeploymentStatus::Building, 11)));
        assert_eq!(d.status, DeploymentStatus::Deploying);
        let mut fail = to(DeploymentStatus::Failed, 12);
        fail.error = Some("probe failed".into());
        assert!(apply(&mut d, &fail));
        assert!(!apply(&mut d, &to(DeploymentStatus::Succeeded, 13)));
        assert_eq!(d.status, DeploymentStatus::Failed);
        assert_eq!(d.error.as_deref(), Some("probe failed"));
    }

    #[test]
    fn same_status_updates_fields() {
        let mut d = queued();
        apply(&mut d, &to(DeploymentStatus::Building, 10));
        let mut t = to(DeploymentStatus::Building, 11);
        t.commit = Some("abc".into());
        assert!(apply(&mut d, &t));
        assert_eq!(d.commit.as_deref(), Some("abc"));
        assert!(!apply(&mut d, &t));
    }

    #[test]
    fn the_dockerfile_is_kept_once_and_capped() {
        let mut d = queued();
        apply(&mut d, &to(DeploymentStatus::Building, 10));
        let mut t = to(DeploymentStatus::Building, 11);
        t.dockerfile = Some("FROM busybox\n".into());
        assert!(apply(&mut d, &t));
        assert_eq!(d.dockerfile.as_deref(), Some("FROM busybox\n"));
        t.dockerfile = Some("FROM other\n".into());
        assert!(
            !apply(&mut d, &t),
            "a second one (another slot's) changes nothing"
        );
        let mut d = queued();
        t.dockerfile = Some("#".repeat(berth_protocol::messages::DOCKERFILE_MAX * 2));
        assert!(apply(&mut d, &t));
        let kept = d.dockerfile.unwrap();
        assert!(kept.len() < berth_protocol::messages::DOCKERFILE_MAX + 200);
        assert!(kept.contains("cut here"), "{}", &kept[kept.len() - 100..]);
    }

    #[test]
    fn commit_details_from_a_payload_are_kept() {
        let mut d = queued();
        d.commit_author = Some("Mona <m@x>".into());
        let mut t = to(DeploymentStatus::Building, 10);
        t.commit_author = Some("git <g@x>".into());
        t.commit_message = Some("subject".into());
        assert!(apply(&mut d, &t));
        assert_eq!(d.commit_author.as_deref(), Some("Mona <m@x>"));
        assert_eq!(d.commit_message.as_deref(), Some("subject"));
    }

    #[test]
    fn an_interruption_is_recorded_once_for_the_current_attempt_of_the_reporting_node() {
        let mut d = queued();
        d.node = Some("n1".into());
        d.attempt = 1;
        apply(&mut d, &to(DeploymentStatus::Deploying, 10));
        let report = |node: &str, attempt| DeploymentUpdate {
            node: Some(node.into()),
            ..DeploymentUpdate::interrupted("d1", DeploymentStatus::Building, attempt, "gone")
        };
        assert!(!apply(&mut d, &report("n2", 1)), "another node's report");
        assert!(
            !apply(&mut d, &report("n1", 0)),
            "an earlier attempt's report"
        );
        assert!(apply(&mut d, &report("n1", 1)));
        assert_eq!(d.status, DeploymentStatus::Deploying, "the status stays");
        assert_eq!(
            d.interrupted.as_ref().map(|i| i.cause.as_str()),
            Some("gone")
        );
        assert!(!apply(&mut d, &report("n1", 1)), "the same report again");
    }

    #[test]
    fn ids_are_unique() {
        assert_ne!(new_id(), new_id());
    }

    /// A real Redis (kept while the first value lives), its URL, and two Ledgers on it with a
    /// connection each, as in two coordinators.
    async fn two_ledgers(
        prefix: &str,
    ) -> (
        (berth_tests::TempDir, berth_tests::Proc),
        String,
        Vec<Addr<Ledger>>,
    ) {
        let dir = berth_tests::TempDir::with_prefix(prefix).unwrap();
        let port = berth_tests::free_port();
        let redis = berth_tests::start_redis(dir.path(), port, &[])
            .await
            .unwrap();
        let url = format!("redis://127.0.0.1:{port}/");
        let mut ledgers = Vec::new();
        for _ in 0..2 {
            let conn = berth_bus::Redis::connect(&url, "test").await.unwrap();
            ledgers.push(Ledger::new(Store::new(conn)).start());
        }
        ((dir, redis), url, ledgers)
    }

    /// Creating a deployment deletes the logs of the app's deployments that fall out of the
    /// newest `DEPLOYMENT_LOGS_KEPT` (in the create's own write), and no other app's.
    #[actix_rt::test]
    async fn a_create_deletes_the_logs_that_fall_out_of_the_kept_window() {
        use berth_protocol::keys;
        let (_redis, url, ledgers) = two_ledgers("ledger-trim-logs").await;
        let a = &ledgers[0];
        let store = Store::new(berth_bus::Redis::connect(&url, "test").await.unwrap());
        let create = |app: &str| Create {
            app: app.into(),
            ..Default::default()
        };
        let other = a.send(create("b")).await.unwrap().unwrap();
        // A create answers its app's newest ids as it left them, itself first.
        assert_eq!(other.recent, std::slice::from_ref(&other.deployment.id));
        let other = other.deployment;
        let mut ids = Vec::new();
        for n in 0..keys::DEPLOYMENT_LOGS_KEPT + 2 {
            // Distinct creation times: the index orders by them.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let c = a.send(create("a")).await.unwrap().unwrap();
            ids.push(c.deployment.id);
            let newest: Vec<String> = ids.iter().rev().cloned().collect();
            assert_eq!(c.recent, newest, "after {} creates of app a", n + 1);
        }
        let mut kept = Vec::new();
        for id in ids.iter().chain([&other.id]) {
            let n: usize = redis::cmd("EXISTS")
                .arg(keys::deployment_log(id))
                .query_async(&mut store.conn())
                .await
                .unwrap();
            kept.push(n == 1);
        }
        let mut want = vec![false, false];
        want.extend([true; keys::DEPLOYMENT_LOGS_KEPT]);
        want.push(true);
        assert_eq!(
            kept, want,
            "logs of {ids:?} and of the other app's {}",
            other.id
        );
        // The records stay.
        for id in &ids {
            assert!(store.get_deployment(id).await.unwrap().is_some());
        }
    }

    /// The held copies stay within their byte budget: a record kept when it is full makes room
    /// by letting others go, a taken or ended record gives its bytes back.
    #[test]
    fn held_records_stay_within_their_bytes() {
        let written = Written::default();
        let size = 4096;
        let n = WRITTEN_MAX_TOTAL / size;
        for i in 0..n + 10 {
            let mut d = queued();
            d.id = format!("d{i}");
            written.keep(&d, Some(vec![0; size]));
        }
        let (count, bytes) = {
            let held = written.0.lock().unwrap();
            (held.records.len(), held.bytes)
        };
        assert_eq!((count, bytes), (n, n * size));
        let last = format!("d{}", n + 9);
        assert!(written.take(&last).is_some(), "the newest is held");
        let mut ended = queued();
        ended.id = written
            .0
            .lock()
            .unwrap()
            .records
            .keys()
            .next()
            .unwrap()
            .clone();
        ended.status = DeploymentStatus::Succeeded;
        written.keep(&ended, Some(vec![0; size]));
        let held = written.0.lock().unwrap();
        assert_eq!((held.records.len(), held.bytes), (n - 2, (n - 2) * size));
        assert!(!held.records.contains_key(&ended.id));
    }

    /// An assignment's job is queued in the assignment's write when the record is the one the
    /// job was made from; when another process changed the record meanwhile, the assignment is
    /// decided again on the record read and the job is left to the asker (who makes it again
    /// from that record).
    #[actix_rt::test]
    async fn an_assignment_queues_its_job_only_with_the_record_it_was_made_from() {
        let (_redis, url, ledgers) = two_ledgers("ledger-assign-job").await;
        let a = &ledgers[0];
        let store = Store::new(berth_bus::Redis::connect(&url, "test").await.unwrap());
        let runtime = RuntimeSpec {
            env: Default::default(),
            port: 8080,
            health_check: Default::default(),
            secrets: None,
        };
        let jobs = |node: &'static str| {
            let conn = store.conn();
            async move {
                let n: usize = redis::cmd("XLEN")
                    .arg(berth_protocol::keys::jobs(node))
                    .query_async(&mut conn.clone())
                    .await
                    .unwrap();
                n
            }
        };
        let job = |node: &str, id: &str| {
            store
                .job_command(node, id, &berth_protocol::Job::StopApp { app: "a".into() })
                .unwrap()
        };
        let create = || Create {
            app: "a".into(),
            ..Default::default()
        };

        // As made: the record and its job in one write.
        let d = a.send(create()).await.unwrap().unwrap().deployment;
        let (assigned, queued) = a
            .send(Assign {
                id: d.id.clone(),
                node: "n1".into(),
                runtime: runtime.clone(),
                known: Some(d.clone()),
                job: Some(job("n1", &d.id)),
            })
            .await
            .unwrap()
            .unwrap()
            .expect("assigned");
        assert!(queued);
        assert_eq!(assigned.node.as_deref(), Some("n1"));
        assert_eq!(jobs("n1").await, 1);

        // Changed by another process (still queued, on no node): assigned, no job.
        let d = a.send(create()).await.unwrap().unwrap().deployment;
        let (_, raw) = store.read_deployment(&d.id).await.unwrap().unwrap();
        let mut changed = d.clone();
        changed.commit_message = Some("edited elsewhere".into());
        assert!(store
            .put_deployment_with(&changed, &[], Expect::Read(&raw, DeploymentStatus::Queued))
            .await
            .unwrap());
        let (assigned, queued) = a
            .send(Assign {
                id: d.id.clone(),
                node: "n2".into(),
                runtime,
                known: Some(d.clone()),
                job: Some(job("n2", &d.id)),
            })
            .await
            .unwrap()
            .unwrap()
            .expect("assigned");
        assert!(!queued);
        assert_eq!(assigned.node.as_deref(), Some("n2"));
        assert_eq!(assigned.commit_message.as_deref(), Some("edited elsewhere"));
        assert_eq!(jobs("n2").await, 0);
    }

    /// A Ledger starts a change from the record as it wrote it last (no read); when another
    /// process changed the record since, the change is decided again on the record in Redis —
    /// both when the held copy would write (the compare refuses it) and when the held copy
    /// says the change is stale (a node that is no longer the deployment's).
    #[actix_rt::test]
    async fn a_held_record_that_another_process_changed_is_read_again() {
        let (_redis, url, ledgers) = two_ledgers("ledger-held").await;
        let (a, b) = (&ledgers[0], &ledgers[1]);
        let store = Store::new(berth_bus::Redis::connect(&url, "test").await.unwrap());
        let d = a
            .send(Create {
                app: "a".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .unwrap()
            .deployment;
        let assigned = a
            .send(Assign {
                id: d.id.clone(),
                node: "n1".into(),
                runtime: RuntimeSpec {
                    env: Default::default(),
                    port: 8080,
                    health_check: Default::default(),
                    secrets: None,
                },
                known: Some(d.clone()),
                job: None,
            })
            .await
            .unwrap()
            .unwrap()
            .expect("assigned")
            .0;
        assert_eq!(assigned.node.as_deref(), Some("n1"));

        // The other process moves it to n2; this one still holds it on n1.
        let moved = b
            .send(Reassign {
                id: d.id.clone(),
                from: "n1".into(),
                to: "n2".into(),
                attempt: 0,
                cause: "n1 went down".into(),
            })
            .await
            .unwrap()
            .unwrap()
            .expect("reassigned");
        assert_eq!(moved.attempt, 1);

        // n2's event: stale by the held copy (node n1), a change by the record in Redis.
        let building = |node: &str| DeploymentUpdate {
            node: Some(node.into()),
            ..DeploymentUpdate::new(&d.id, DeploymentStatus::Building)
        };
        let now = a
            .send(Transition(building("n2")))
            .await
            .unwrap()
            .unwrap()
            .expect("n2's event applies");
        assert_eq!(now.status, DeploymentStatus::Building);
        assert_eq!(now.node.as_deref(), Some("n2"));
        assert_eq!(now.attempt, 1, "the reassignment is kept");
        // n1's event is stale now, whatever this process held.
        let stale = a.send(Transition(building("n1"))).await.unwrap().unwrap();
        assert!(stale.is_none(), "{stale:?}");

        // The other process records the commit; this one, holding the record without it, ends
        // the deployment: its write is refused by the compare, decided again, and keeps both.
        b.send(Transition(DeploymentUpdate {
            commit: Some("abc".into()),
            node: Some("n2".into()),
            ..DeploymentUpdate::new(&d.id, DeploymentStatus::Deploying)
        }))
        .await
        .unwrap()
        .unwrap()
        .expect("deploying");
        let end = a
            .send(Transition(DeploymentUpdate {
                node: Some("n2".into()),
                image: Some("img:1".into()),
                ..DeploymentUpdate::new(&d.id, DeploymentStatus::Succeeded)
            }))
            .await
            .unwrap()
            .unwrap()
            .expect("succeeded");
        let stored = store.get_deployment(&d.id).await.unwrap().unwrap();
        assert_eq!(stored, end);
        assert_eq!(stored.status, DeploymentStatus::Succeeded);
        assert_eq!(stored.commit.as_deref(), Some("abc"));
        assert_eq!(stored.image.as_deref(), Some("img:1"));
        assert_eq!(stored.attempt, 1);
        assert!(store.active_deployments().await.unwrap().is_empty());
    }

    /// Two ledgers on one real Redis, as in two coordinators (each its own connection, its own
    /// per-record mutexes): their changes of one record all land, none overwrites another.
    #[actix_rt::test]
    async fn two_processes_changing_one_record_lose_no_change() {
        let (_redis, url, ledgers) = two_ledgers("ledger").await;
        let d = ledgers[0]
            .send(Create {
                app: "a".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .unwrap()
            .deployment;

        // 40 edits through each ledger at once, each one counting itself into the record.
        const EACH: u32 = 40;
        let edits = (0..2 * EACH).map(|i| {
            let ledger = ledgers[(i % 2) as usize].clone();
            let id = d.id.clone();
            async move {
                ledger
                    .send(EditRollout::new(&id, |r| {
                        r.attempt += 1;
                        true
                    }))
                    .await
                    .unwrap()
                    .unwrap()
                    .is_some()
            }
        });
        let written = futures_util::future::join_all(edits).await;
        assert!(written.iter().all(|w| *w), "every edit was written");
        let store = Store::new(berth_bus::Redis::connect(&url, "test").await.unwrap());
        let now = store.get_deployment(&d.id).await.unwrap().unwrap();
        assert_eq!(now.attempt, 2 * EACH, "no edit overwrote another");

        // One ledger ends it succeeded while the other cancels it: one wins, and the log's
        // closing line is the winner's, once.
        let (a, b) = futures_util::future::join(
            ledgers[0].send(Transition(DeploymentUpdate::new(
                &d.id,
                DeploymentStatus::Succeeded,
            ))),
            ledgers[1].send(Transition::ended(
                &d.id,
                DeploymentStatus::Cancelled,
                "cancelled by the user",
            )),
        )
        .await;
        let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
        assert!(a.is_some() != b.is_some(), "exactly one end: {a:?} {b:?}");
        let end = store.get_deployment(&d.id).await.unwrap().unwrap();
        let won = a.or(b).unwrap();
        assert_eq!(end.status, won.status);
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(keys::deployment_log(&d.id))
            .arg("-")
            .arg("+")
            .query_async(&mut store.conn())
            .await
            .unwrap();
        let closing: Vec<&String> = entries
            .iter()
            .flat_map(|(_, fields)| fields)
            .filter(|f| f.starts_with("deployment "))
            .collect();
        assert_eq!(closing.len(), 1, "one closing line: {closing:?}");
        assert!(
            closing[0].starts_with(&format!("deployment {}", end.status)),
            "{closing:?} for {}",
            end.status
        );
    }

    /// A deployment created with its job ([`CreateRecord`]) trims its app's release index to
    /// the `keep_releases` that job was made with in its success's own write: no app is read
    /// (here there is none to read). One created without (its app read at its success instead,
    /// as before) finds no app here, and trims nothing.
    #[actix_rt::test]
    async fn a_success_trims_the_release_index_to_what_its_job_keeps() {
        use redis::AsyncCommands;
        let (_redis, conn) = crate::store::tests::real_redis("trim-in-write").await;
        let store = Store::new(conn);
        let ledger = Ledger::new(store.clone()).start();
        let mut c = store.conn();
        // Three releases, each with the deployment that served it.
        for (n, image) in ["i1", "i2", "i3"].iter().enumerate() {
            redis::pipe()
                .zadd(keys::app_releases("a"), *image, n as u64 + 1)
                .zadd(
                    keys::release_deployments("a", image),
                    format!("d{n}"),
                    n as u64 + 1,
                )
                .query_async::<()>(&mut c)
                .await
                .unwrap();
        }
        let succeed = |id: String, image: &'static str| {
            let ledger = ledger.clone();
            async move {
                for status in [DeploymentStatus::Building, DeploymentStatus::Succeeded] {
                    let u = DeploymentUpdate {
                        node: Some("n1".into()),
                        image: Some(image.into()),
                        ..DeploymentUpdate::new(&id, status)
                    };
                    let d = ledger.send(Transition(u)).await.unwrap().unwrap();
                    assert_eq!(d.map(|d| d.status), Some(status));
                }
            }
        };
        let releases = || {
            let mut c = store.conn();
            async move {
                let images: Vec<String> =
                    c.zrevrange(keys::app_releases("a"), 0, -1).await.unwrap();
                let mut kept = Vec::new();
                for i in ["i1", "i2", "i3", "i4", "i5"] {
                    let n: usize = c.exists(keys::release_deployments("a", i)).await.unwrap();
                    if n > 0 {
                        kept.push(i.to_string());
                    }
                }
                (images, kept)
            }
        };

        let mut placed = Create {
            app: "a".into(),
            ..Default::default()
        }
        .record();
        placed.d.node = Some("n1".into());
        let mut job = redis::cmd("SET");
        job.arg("job-sent").arg(1);
        let created = ledger
            .send(CreateRecord {
                queued: placed,
                job: Some((job, 2)),
            })
            .await
            .unwrap()
            .unwrap();
        let sent: Option<u8> = c.get("job-sent").await.unwrap();
        assert_eq!(sent, Some(1), "the job goes with the record");
        succeed(created.deployment.id, "i4").await;
        let two = vec!["i4".to_string(), "i3".to_string()];
        assert_eq!(
            releases().await,
            (two.clone(), vec!["i3".into(), "i4".into()])
        );

        let unplaced = Create {
            app: "a".into(),
            ..Default::default()
        };
        let created = ledger.send(unplaced).await.unwrap().unwrap();
        ledger
            .send(Assign {
                id: created.deployment.id.clone(),
                node: "n1".into(),
                runtime: crate::deployment::runtime_of(&store, &crate::apps::tests::app())
                    .await
                    .unwrap(),
                known: None,
                job: None,
            })
            .await
            .unwrap()
            .unwrap()
            .expect("assigned");
        succeed(created.deployment.id, "i5").await;
        let (images, _) = releases().await;
        assert_eq!(images, ["i5", "i4", "i3"], "no app to read: no trim");
    }
}
