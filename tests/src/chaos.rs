//! The fault-injection suite of issue 12: scenarios that break a real Berth in the middle of a
//! deployment — kill -9 a node while it builds, while it health-checks, at the traffic switch;
//! kill -9 the coordinator; restart Redis; kill -9 the Redis primary under Sentinel (and bring
//! it back as a replica); restart a fleet node's Docker engine while it builds,
//! while it health-checks; cut a fleet node's power; panic an actor — and the checker that
//! judges each trial.
//!
//! Every trial deploys a new version of an app that already serves an older one, under a
//! constant HTTP load through Caddy that starts before the fault and ends after the deployment,
//! and checks:
//! - the deployment ends terminal within its deadline (else it is **stuck**);
//! - no app, deployment or release is **lost** (everything listed before is still there, with
//!   the same terminal status; the release that served before is still a release);
//! - the app answers every request throughout (a request that gets an error or nothing counts);
//! - the deployment ends `succeeded` — the apps here are never broken, so a failure is
//!   **failed by infrastructure** — except in the control scenario, whose app is broken on
//!   purpose and must end **failed by the app**, under a fault too.
//!
//! The kill points are hit for real: each waits for its phase in the deployment's log (the build
//! step `RUN sleep`, the probe's "waiting for the app to accept connections" line of an app that
//! listens only after a few seconds, the node's "switching traffic" line) and the trial says
//! where the fault landed when it came later than meant. The switch takes milliseconds, so a
//! kill at its log line lands after it; every other trial of that scenario therefore asks the
//! node (test hook `berth:test:pause:node:<node>:switch`) to pause 3 s between its switch claim
//! and the route write, and the kill lands there; the table counts each landing apart.
//!
//! Three set-ups, each started once and reused by every scenario that needs it: [`Single`] (a
//! `Cluster::separate`: Redis, Caddy, `berth coordinator` and one `berth node`, restartable),
//! the same on Redis under Sentinel (`RedisSentinels`: a primary, its replica, three
//! Sentinels; made whole again after each trial), and
//! [`FleetSetup`] (two nodes with their own Docker engines, a registry, an app with one replica
//! on each). Every berth process runs with `BERTH_TEST_HOOKS=true`, so the panic scenarios can ask
//! an actor to panic (`LPUSH berth:test:panic:<process> <actor>`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{
    eventually, hello_page, repo_root, unique, version_marker, Api, Cluster, Fleet, GitRepo, Load,
    LoadCount, Proc, Registry, TempDir,
};

/// A deployment's deadline in the suite's clusters (`BERTH_DEPLOY_TIMEOUT_S`): a trial whose
/// deployment is not terminal within it plus the coordinator's grace (and a margin) is stuck.
pub const DEPLOY_TIMEOUT_S: u64 = 120;

/// How long a trial waits for its deployment to end before calling it stuck.
const TERMINAL_WAIT: Duration = Duration::from_secs(DEPLOY_TIMEOUT_S + 10 + 30);

/// How long a trial waits for the phase its fault is aimed at.
const PHASE_WAIT: Duration = Duration::from_secs(60);

/// The actors a panic can be injected into, per process (`berth:test:panic:<process>`).
pub const COORDINATOR_ACTORS: [&str; 7] = [
    "api",
    "ledger",
    "registry",
    "reconciler",
    "failover",
    "event_ingest",
    "deployment",
];
/// The node's actors (process `node:<name>`).
pub const NODE_ACTORS: [&str; 6] = [
    "job_consumer",
    "deployer",
    "router",
    "heartbeat",
    "stats",
    "log_shipper",
];

/// Where a deployment is when a fault is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The image build (`RUN sleep` of the app's Dockerfile).
    Build,
    /// The health check of the new container (the app listens only after a few seconds).
    Health,
    /// Right before the node moves traffic (its "switching traffic" line).
    Switch,
}

impl Phase {
    /// The deployment-log text that says the phase has begun.
    fn marker(self) -> &'static str {
        match self {
            Phase::Build => "RUN sleep",
            Phase::Health => "waiting for the app to accept connections",
            Phase::Switch => "switching traffic to",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Health => "health check",
            Phase::Switch => "switch",
        }
    }
}

/// Which Berth process a panic goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Coordinator,
    Node,
}

/// The fault of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 the `berth node` process (its containers keep running) at the phase, then start
    /// it again.
    KillNode(Phase),
    /// kill -9 `berth coordinator` during the build, then start it again.
    KillCoordinator,
    /// kill -9 the leading coordinator during the build while a follower runs (the deployment
    /// was asked of the follower's API, and is watched through it); the follower takes the
    /// lease over. Afterwards the killed one starts again and the follower stops.
    KillLeader,
    /// Restart Redis (SIGTERM, which writes the AOF, then start it on the same files) during
    /// the build.
    RestartRedis,
    /// An actor panics (the test hook) during the build.
    Panic(Process, &'static str),
    /// Power cut of the fleet node that builds (its berth process and its engine with every
    /// container), brought back after the deployment ended.
    PowerCut,
    /// Restart of the Docker engine of the fleet node that builds (its berth process lives on),
    /// at the phase: the build, or the health check of the first new replica.
    RestartDockerd(Phase),
    /// The control: the app is broken (its health check never passes) and the node is killed
    /// during that health check: the deployment must fail, by the app, not be retried forever.
    BrokenAppKillNode,
    /// kill -9 the Redis primary during the build, Berth on Redis Sentinel (primary, replica,
    /// three Sentinels) with `redis.min_replicas_acked = 1`: Sentinel promotes the replica.
    /// With `back`, the old primary starts again at once (Sentinel makes it a replica);
    /// without, it stays dead until the trial has ended. Either way the set is made whole
    /// before the next trial.
    RedisFailover { back: bool },
}

/// Which set-up a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Single,
    Fleet,
    /// [`Single`] on Redis under Sentinel.
    Sentinel,
}

/// One scenario of the suite.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub fault: Fault,
}

impl Scenario {
    fn new(name: impl Into<String>, fault: Fault) -> Scenario {
        Scenario {
            name: name.into(),
            fault,
        }
    }

    /// The set-up it runs on.
    pub fn setup(&self) -> Setup {
        match self.fault {
            Fault::PowerCut | Fault::RestartDockerd(_) => Setup::Fleet,
            Fault::RedisFailover { .. } => Setup::Sentinel,
            _ => Setup::Single,
        }
    }

    /// Whether the app of this scenario is broken on purpose (its deployment must fail).
    pub fn app_broken(&self) -> bool {
        self.fault == Fault::BrokenAppKillNode
    }
}

/// Every scenario, in the order the suite runs them (the single node's first, then the fleet's).
pub fn scenarios() -> Vec<Scenario> {
    let mut all = vec![
        Scenario::new("node-kill-build", Fault::KillNode(Phase::Build)),
        Scenario::new("node-kill-health", Fault::KillNode(Phase::Health)),
        Scenario::new("node-kill-switch", Fault::KillNode(Phase::Switch)),
        Scenario::new("coordinator-kill", Fault::KillCoordinator),
        Scenario::new("leader-kill", Fault::KillLeader),
        Scenario::new("redis-restart", Fault::RestartRedis),
        Scenario::new("broken-app-node-kill", Fault::BrokenAppKillNode),
        Scenario::new("redis-failover", Fault::RedisFailover { back: false }),
        Scenario::new("redis-failover-back", Fault::RedisFailover { back: true }),
    ];
    for a in COORDINATOR_ACTORS {
        all.push(Scenario::new(
            format!("panic-coordinator-{a}"),
            Fault::Panic(Process::Coordinator, a),
        ));
    }
    for a in NODE_ACTORS {
        all.push(Scenario::new(
            format!("panic-node-{a}"),
            Fault::Panic(Process::Node, a),
        ));
    }
    all.push(Scenario::new("fleet-power-cut-build", Fault::PowerCut));
    all.push(Scenario::new(
        "fleet-dockerd-restart-build",
        Fault::RestartDockerd(Phase::Build),
    ));
    all.push(Scenario::new(
        "fleet-dockerd-restart-health",
        Fault::RestartDockerd(Phase::Health),
    ));
    all
}

/// How one trial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed, and the app was broken (what the control scenario expects).
    FailedByApp(String),
    /// Failed although the app was fine (or, in the control, failed for another reason than
    /// the app's, or succeeded).
    FailedByInfra(String),
    /// Not terminal within its deadline.
    Stuck(String),
    /// The suite itself could not run the trial (a set-up that did not start, a phase never
    /// reached): not a verdict on Berth, but the run is not clean either.
    Error(String),
}

/// What one trial saw.
#[derive(Debug, Clone)]
pub struct Trial {
    pub outcome: Outcome,
    /// What was lost (empty when nothing was).
    pub lost: Vec<String>,
    /// Requests of the load, and those that got an error or nothing.
    pub requests: u64,
    pub no_answer: u64,
    /// Examples of the failed requests.
    pub no_answer_examples: Vec<String>,
    /// From the deploy request to the terminal record.
    pub to_terminal: Option<Duration>,
    /// Where the fault landed when it was not where it was aimed, and other remarks.
    pub note: Option<String>,
    /// How many attempts the deployment took (its record's `attempt` + 1).
    pub attempts: u32,
}

impl Trial {
    fn outcome_only(outcome: Outcome) -> Trial {
        Trial {
            outcome,
            lost: Vec::new(),
            requests: 0,
            no_answer: 0,
            no_answer_examples: Vec::new(),
            to_terminal: None,
            note: None,
            attempts: 0,
        }
    }

    /// Whether the trial breaks the suite's goal (lost, stuck, failed by infrastructure, a
    /// request without an answer, or the suite's own error).
    pub fn bad(&self) -> bool {
        !self.lost.is_empty()
            || self.no_answer > 0
            || matches!(
                self.outcome,
                Outcome::FailedByInfra(_) | Outcome::Stuck(_) | Outcome::Error(_)
            )
    }
}

/// The trials of one scenario.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub trials: Vec<Trial>,
}

impl Row {
    fn count(&self, f: impl Fn(&Trial) -> bool) -> usize {
        self.trials.iter().filter(|t| f(t)).count()
    }

    /// The trials that break the goal, each with what went wrong.
    pub fn problems(&self) -> Vec<String> {
        self.trials
            .iter()
            .enumerate()
            .filter(|(_, t)| t.bad())
            .map(|(i, t)| {
                format!(
                    "{} trial {}: {:?}; lost {:?}; {} of {} requests got nothing {:?}",
                    self.scenario,
                    i + 1,
                    t.outcome,
                    t.lost,
                    t.no_answer,
                    t.requests,
                    t.no_answer_examples
                )
            })
            .collect()
    }
}

/// The table of a run, in Markdown: one row per scenario.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | trials | succeeded | failed (app) | failed (infra) | stuck | lost | requests with no answer | attempts (max) | to terminal, median / max (s) | notes |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let mut times: Vec<f64> = r
            .trials
            .iter()
            .filter_map(|t| t.to_terminal.map(|d| d.as_secs_f64()))
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
        let max = times.last().copied().unwrap_or(0.0);
        let requests: u64 = r.trials.iter().map(|t| t.requests).sum();
        let no_answer: u64 = r.trials.iter().map(|t| t.no_answer).sum();
        let max_attempts = r.trials.iter().map(|t| t.attempts).max().unwrap_or(0);
        let errors = r.count(|t| matches!(t.outcome, Outcome::Error(_)));
        let mut notes: Vec<&String> = Vec::new();
        for n in r.trials.iter().filter_map(|t| t.note.as_ref()) {
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
        let mut note_counts: Vec<String> = notes
            .iter()
            .map(|n| {
                let k = r
                    .trials
                    .iter()
                    .filter(|t| t.note.as_ref() == Some(*n))
                    .count();
                format!("{k}× {n}")
            })
            .collect();
        if errors > 0 {
            note_counts.push(format!("{errors} trial(s) the suite could not run"));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} of {} | {} | {:.1} / {:.1} | {} |",
            r.scenario,
            r.trials.len(),
            r.count(|t| t.outcome == Outcome::Succeeded),
            r.count(|t| matches!(t.outcome, Outcome::FailedByApp(_))),
            r.count(|t| matches!(t.outcome, Outcome::FailedByInfra(_))),
            r.count(|t| matches!(t.outcome, Outcome::Stuck(_))),
            r.count(|t| !t.lost.is_empty()),
            no_answer,
            requests,
            max_attempts,
            median,
            max,
            note_counts.join("; ")
        );
    }
    out
}

/// The environment of every berth process of the suite.
fn berth_extra() -> Vec<(&'static str, String)> {
    vec![
        ("BERTH_TEST_HOOKS", "true".to_string()),
        ("BERTH_DEPLOY_TIMEOUT_S", DEPLOY_TIMEOUT_S.to_string()),
    ]
}

/// A Dockerfile whose build takes `build_s` seconds in its own step (after the page is copied,
/// so no cache skips it) and whose app listens only `start_s` seconds after it starts.
fn dockerfile(build_s: u32, start_s: u32) -> String {
    format!(
        "FROM busybox\nCOPY www /www\nRUN sleep {build_s}\nEXPOSE 8080\n\
         CMD [\"sh\", \"-c\", \"sleep {start_s}; exec httpd -f -p 8080 -h /www\"]\n"
    )
}

/// An app of the suite: its repository and the version it is at.
struct ChaosApp {
    name: String,
    host: String,
    repo: GitRepo,
    _src: TempDir,
    /// The newest version committed.
    version: u32,
    /// The version the app serves (the newest that deployed).
    serving: String,
}

impl ChaosApp {
    fn new(prefix: &str, build_s: u32, start_s: u32) -> Result<ChaosApp> {
        let src = TempDir::with_prefix("chaos-src")?;
        let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello"))?;
        repo.write("Dockerfile", &dockerfile(build_s, start_s))?;
        repo.commit("the suite's app")?;
        let name = unique(prefix);
        Ok(ChaosApp {
            host: format!("{name}.localhost"),
            name,
            repo,
            _src: src,
            version: 1,
            serving: "1".into(),
        })
    }

    /// Commits the next version of the page; returns it.
    fn next_version(&mut self) -> Result<String> {
        self.version += 1;
        let v = self.version.to_string();
        self.repo.write("www/index.html", &hello_page(&v))?;
        self.repo.commit(&format!("version {v}"))?;
        Ok(v)
    }
}

/// What a trial compares before and after: every deployment of the app with its status, and
/// the release serving.
struct Snapshot {
    deployments: Vec<(String, String)>,
    serving: Option<String>,
}

async fn snapshot(api: &Api, app: &str) -> Result<Snapshot> {
    let (s, list) = api.get(&format!("/api/v1/apps/{app}/deployments")).await?;
    if s != 200 {
        bail!("listing the deployments of {app}: HTTP {s}: {list}");
    }
    let deployments = list
        .as_array()
        .context("a deployment list")?
        .iter()
        .filter_map(|d| {
            Some((
                d["id"].as_str()?.to_string(),
                d["status"].as_str()?.to_string(),
            ))
        })
        .collect();
    Ok(Snapshot {
        deployments,
        serving: serving_release(api, app).await?,
    })
}

/// The image of the app's current release.
async fn serving_release(api: &Api, app: &str) -> Result<Option<String>> {
    let (s, list) = api.get(&format!("/api/v1/apps/{app}/releases")).await?;
    if s != 200 {
        bail!("listing the releases of {app}: HTTP {s}: {list}");
    }
    Ok(list.as_array().and_then(|rs| {
        rs.iter()
            .find(|r| r["current"] == true)
            .and_then(|r| r["image"].as_str().map(str::to_string))
    }))
}

/// What was lost between `before` and now: the app, a deployment, a terminal status that
/// changed, the release that served before (or the new one, when it succeeded).
async fn lost_since(api: &Api, app: &str, before: &Snapshot, new: Option<&str>) -> Vec<String> {
    let mut lost = Vec::new();
    match api.get(&format!("/api/v1/apps/{app}")).await {
        Ok((200, _)) => {}
        other => {
            lost.push(format!("the app {app}: {other:?}"));
            return lost;
        }
    }
    for (id, status) in &before.deployments {
        match api.get(&format!("/api/v1/deployments/{id}")).await {
            Ok((200, d)) => {
                let now = d["status"].as_str().unwrap_or("?");
                let terminal = matches!(status.as_str(), "succeeded" | "failed" | "cancelled");
                if terminal && now != status {
                    lost.push(format!("deployment {id} was {status}, is {now}"));
                }
            }
            other => lost.push(format!("deployment {id}: {other:?}")),
        }
    }
    let releases: Vec<String> = match api.get(&format!("/api/v1/apps/{app}/releases")).await {
        Ok((200, list)) => list
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| r["image"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        other => {
            lost.push(format!("the releases of {app}: {other:?}"));
            return lost;
        }
    };
    for image in before.serving.iter().map(String::as_str).chain(new) {
        if !releases.iter().any(|r| r == image) {
            lost.push(format!("release {image} (releases now: {releases:?})"));
        }
    }
    lost
}

/// Waits until the deployment `id` is at `phase` (its marker is in its log): `Ok(None)` then;
/// `Ok(Some(note))` when it ended (or passed the phase) before.
async fn wait_phase(api: &Api, id: &str, phase: Phase) -> Result<Option<String>> {
    let deadline = Instant::now() + PHASE_WAIT;
    loop {
        let log = api.log(id).await.unwrap_or_default();
        if log.contains(phase.marker()) {
            return Ok(None);
        }
        if let Ok((200, d)) = api.get(&format!("/api/v1/deployments/{id}")).await {
            if matches!(
                d["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return Ok(Some(format!(
                    "the deployment ended before its {} began",
                    phase.name()
                )));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the deployment {id} did not reach its {} in {PHASE_WAIT:?}:\n{log}",
                phase.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where a kill aimed at the switch landed, from the log read right after it.
fn switch_landing(log: &str) -> String {
    if log.contains("deployment succeeded") {
        "kill landed after the node reported success".into()
    } else if log.lines().any(|l| l.contains("routed ")) {
        "kill landed after the route was written".into()
    } else {
        "kill landed after the switch claim, before the route was written".into()
    }
}

/// Waits until every deployment of `app` is terminal (the trial's, and any the system queued
/// itself meanwhile: a failover, a scale); `false` when one is still running at the deadline.
async fn all_terminal(api: &Api, app: &str, timeout: Duration) -> bool {
    eventually("every deployment to end", timeout, || async {
        let (s, list) = api
            .get(&format!("/api/v1/apps/{app}/deployments"))
            .await
            .ok()?;
        let all = list.as_array()?.iter().all(|d| {
            matches!(
                d["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        });
        (s == 200 && all).then_some(())
    })
    .await
    .is_ok()
}

/// With `BERTH_CHAOS_VERBOSE=1`, a trial's deployment log goes to stderr.
fn verbose(scenario: &str, log: &str) {
    if std::env::var("BERTH_CHAOS_VERBOSE").is_ok_and(|v| v == "1") {
        eprintln!("----- {scenario}: the deployment's log -----\n{log}");
    }
}

/// Judges a terminal record.
fn judge(d: &Value, broken: bool, log: &str) -> Outcome {
    let error = d["error"].as_str().unwrap_or_default().to_string();
    match (d["status"].as_str(), broken) {
        (Some("succeeded"), false) => Outcome::Succeeded,
        (Some("failed"), true) if error.contains("health check failed") => {
            Outcome::FailedByApp(error)
        }
        (Some(s), _) => Outcome::FailedByInfra(format!("{s}: {error}\n{log}")),
        (None, _) => Outcome::Error(format!("no status in {d}")),
    }
}

/// Counts the load's failures into the trial.
fn count_load(t: &mut Trial, n: &LoadCount) {
    t.requests += n.ok + n.failed;
    t.no_answer += n.failed;
    t.no_answer_examples
        .extend(n.examples.iter().take(3).cloned());
}

/// The single-node set-up: a separate cluster (restartable processes) and the suite's apps.
pub struct Single {
    pub cluster: Cluster,
    /// The Redis under Sentinel the cluster runs on ([`Setup::Sentinel`]), and its directory.
    sentinels: Option<(crate::RedisSentinels, TempDir)>,
    /// On Sentinel: the app GitHub pushes arrive for while the primary dies (its deliveries
    /// signed with [`HOOK_SECRET`]).
    hooked: Option<ChaosApp>,
    app: ChaosApp,
    broken: Option<ChaosApp>,
    /// Trials of the switch scenario so far (every other one pauses at the switch).
    switch_trials: u32,
    /// When this trial killed the Redis primary (ms since the epoch, as records' times are).
    killed_at: Option<u64>,
    /// The port of the Redis this trial killed and left dead (started again after it).
    dead: Option<u16>,
}

impl Single {
    /// Starts the cluster and deploys the first version of its app.
    pub async fn start() -> Result<Single> {
        let extra = berth_extra();
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let cluster = Cluster::separate_with(&extra).await?;
        Self::with(cluster, None).await
    }

    /// [`Single::start`] on Redis under Sentinel (a primary, its replica, three Sentinels), the
    /// writes the durability promise covers waiting for the replica
    /// (`redis.min_replicas_acked = 1`).
    pub async fn start_on_sentinels() -> Result<Single> {
        let dir = TempDir::with_prefix("chaos-sentinel")?;
        let sentinels = crate::RedisSentinels::start(dir.path(), "berth").await?;
        sentinels.whole(Duration::from_secs(60)).await?;
        let mut extra = berth_extra();
        extra.push(("BERTH_GITHUB__WEBHOOK_SECRET", HOOK_SECRET.to_string()));
        extra.push(("BERTH_REDIS__MIN_REPLICAS_ACKED", "1".to_string()));
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut cluster = Cluster::separate_on_sentinels(&sentinels, &extra).await?;
        let hooked = ChaosApp::new("chaos-hook", 0, 0)?;
        cluster
            .create_app(
                json!({"name": hooked.name, "repo": hooked.repo.url(), "port": 8080,
                "drain_s": 0, "auto_deploy": true}),
            )
            .await?;
        let mut s = Self::with(cluster, Some((sentinels, dir))).await?;
        s.hooked = Some(hooked);
        Ok(s)
    }

    async fn with(
        mut cluster: Cluster,
        sentinels: Option<(crate::RedisSentinels, TempDir)>,
    ) -> Result<Single> {
        let app = ChaosApp::new("chaos", 3, 3)?;
        cluster
            .create_app(
                json!({"name": app.name, "repo": app.repo.url(), "port": 8080, "drain_s": 1}),
            )
            .await?;
        let (id, d) = cluster
            .api
            .deploy_and_wait(&app.name, None, TERMINAL_WAIT)
            .await?;
        if d["status"] != "succeeded" {
            bail!(
                "the first deployment failed: {d}\n{}",
                cluster.api.log(&id).await?
            );
        }
        cluster.serves(&app.host, &version_marker("1")).await?;
        Ok(Single {
            cluster,
            sentinels,
            hooked: None,
            app,
            broken: None,
            switch_trials: 0,
            killed_at: None,
            dead: None,
        })
    }

    /// Runs one trial of `s` (a scenario of this set-up).
    pub async fn trial(&mut self, s: &Scenario) -> Trial {
        match self.try_trial(s).await {
            Ok(t) => t,
            Err(e) => Trial::outcome_only(Outcome::Error(format!(
                "{e:#}\n{}",
                tail(&self.cluster.logs(), 4000)
            ))),
        }
    }

    async fn try_trial(&mut self, s: &Scenario) -> Result<Trial> {
        if s.app_broken() && self.broken.is_none() {
            // Serves version 1, then every deploy is broken: its page never answers in time.
            let app = ChaosApp::new("chaos-broken", 1, 0)?;
            self.cluster
                .create_app(
                    json!({"name": app.name, "repo": app.repo.url(), "port": 8080,
                    "drain_s": 1, "health_check": {"deadline_s": 8}}),
                )
                .await?;
            let (id, d) = self
                .cluster
                .api
                .deploy_and_wait(&app.name, None, TERMINAL_WAIT)
                .await?;
            if d["status"] != "succeeded" {
                bail!(
                    "the control app's first deployment failed: {d}\n{}",
                    self.cluster.api.log(&id).await?
                );
            }
            app.repo.write("Dockerfile", &dockerfile(1, 600))?;
            self.broken = Some(app);
        }
        let app = match s.app_broken() {
            true => self.broken.as_mut().context("the control app")?,
            false => &mut self.app,
        };
        // The leader-kill scenario's follower (the API the trial uses).
        let follower = match s.fault {
            Fault::KillLeader => Some(follow(&self.cluster).await?),
            _ => None,
        };
        let api = match &follower {
            Some((_, api)) => api.clone(),
            None => self.cluster.api.clone(),
        };
        let v = app.next_version()?;
        let old = app.serving.clone();
        let before = snapshot(&api, &app.name).await?;
        let load = Load::start(
            self.cluster.ingress,
            &app.host,
            2,
            Duration::from_millis(20),
        );
        eventually(
            "the load's first answers",
            Duration::from_secs(10),
            || async { (load.sent() > 2).then_some(()) },
        )
        .await?;
        // Every other trial of the switch scenario pauses the node between its switch claim
        // and the route write (the test hook), so the kill lands there; the others kill it at
        // the switch without help, which lands after it.
        self.switch_trials += u32::from(s.fault == Fault::KillNode(Phase::Switch));
        let paused = s.fault == Fault::KillNode(Phase::Switch) && self.switch_trials % 2 == 1;
        if paused {
            let key = format!("berth:test:pause:node:{}:switch", self.cluster.node);
            self.cluster
                .redis_cli(&["SET", &key, "3000", "EX", "120"])?;
        }
        let t0 = Instant::now();
        let id = api.deploy(&app.name, None).await?;
        let mut note;
        // The pushes delivered during a Redis failover: each acknowledged delivery's deployments.
        let mut hook_deliveries = None;
        match s.fault {
            Fault::KillNode(phase) => {
                note = wait_phase(&api, &id, phase).await?;
                if note.is_none() {
                    if phase == Phase::Switch && paused {
                        // The kill lands after the claim, before the route: make sure.
                        let fate = format!("berth:fate:{id}");
                        eventually("the switch claim", Duration::from_secs(10), || async {
                            let f = self.cluster.redis_cli(&["GET", &fate]).ok()?;
                            (f == "switch").then_some(())
                        })
                        .await?;
                    }
                    self.cluster.kill_restart("node", true).await?;
                    if phase == Phase::Switch {
                        note = Some(switch_landing(&api.log(&id).await.unwrap_or_default()));
                    }
                }
            }
            Fault::BrokenAppKillNode => {
                note = wait_phase(&api, &id, Phase::Health).await?;
                if note.is_none() {
                    self.cluster.kill_restart("node", true).await?;
                }
            }
            Fault::KillCoordinator => {
                note = wait_phase(&api, &id, Phase::Build).await?;
                if note.is_none() {
                    self.cluster.kill_restart("coordinator", true).await?;
                }
            }
            Fault::KillLeader => {
                note = wait_phase(&api, &id, Phase::Build).await?;
                if note.is_none() {
                    let i = self.cluster.proc_index("berth coordinator")?;
                    self.cluster.procs[i].kill();
                }
            }
            Fault::RestartRedis => {
                note = wait_phase(&api, &id, Phase::Build).await?;
                if note.is_none() {
                    self.cluster.restart_redis().await?;
                }
            }
            Fault::Panic(p, actor) => {
                note = wait_phase(&api, &id, Phase::Build).await?;
                if note.is_none() {
                    inject_panic(&self.cluster, p, actor).await?;
                }
            }
            Fault::RedisFailover { back } => {
                note = wait_phase(&api, &id, Phase::Build).await?;
                if note.is_none() {
                    let (sentinels, _) = self.sentinels.as_mut().context("no Sentinel set-up")?;
                    let hooked = self.hooked.as_mut().context("no app for the pushes")?;
                    let before = hooked.repo.git(&["rev-parse", "HEAD"])?;
                    hooked.next_version()?;
                    let after = hooked.repo.git(&["rev-parse", "HEAD"])?;
                    let pushes = tokio::spawn(pushes(
                        api.base.clone(),
                        hooked.repo.url(),
                        before,
                        after.clone(),
                    ));
                    let (n, killed, dead) = fail_over(sentinels, &api, &app.name, back).await?;
                    (note, self.killed_at, self.dead) = (Some(n), Some(killed), dead);
                    hook_deliveries = Some((pushes, hooked.name.clone(), after));
                }
            }
            Fault::PowerCut | Fault::RestartDockerd(_) => {
                bail!("{} does not run on a single node", s.name)
            }
        }
        let d = api.wait_terminal(&id, TERMINAL_WAIT).await;
        let elapsed = t0.elapsed();
        let log = api.log(&id).await.unwrap_or_default();
        verbose(&s.name, &log);
        let mut t = Trial::outcome_only(Outcome::Succeeded);
        t.note = note;
        // When the record says the deployment ended (a trial may look later than that).
        let mut finished_at = None;
        match d {
            Ok(d) => {
                finished_at = d["finished_at"].as_u64();
                t.to_terminal = Some(elapsed);
                t.attempts = d["attempt"].as_u64().unwrap_or(0) as u32 + 1;
                t.outcome = judge(&d, s.app_broken(), &log);
                let serving = match t.outcome {
                    Outcome::Succeeded => v.clone(),
                    _ => old,
                };
                app.serving = serving.clone();
                // The app serves what it should (Caddy answers it within seconds of the end).
                let host = app.host.clone();
                if let Err(e) = self.cluster.serves(&host, &version_marker(&serving)).await {
                    t.lost
                        .push(format!("the app does not serve version {serving}: {e:#}"));
                }
                let new = match t.outcome {
                    Outcome::Succeeded => d["image"].as_str().map(str::to_string),
                    _ => None,
                };
                if !all_terminal(&api, &app.name, TERMINAL_WAIT).await {
                    t.outcome = Outcome::Stuck("a deployment the system queued did not end".into());
                }
                t.lost
                    .extend(lost_since(&api, &app.name, &before, new.as_deref()).await);
            }
            Err(e) => t.outcome = Outcome::Stuck(format!("{e:#}\n{log}")),
        }
        let n = load.finish().await;
        count_load(&mut t, &n);
        if let Some((pushes, hooked, after)) = hook_deliveries {
            // Every push Berth acknowledged queued deployments that exist and end; and the
            // pushed commit was deployed (a delivery answered 503 that had queued its deployment
            // is answered, delivered again, as already handled: that deployment is found here).
            let acked = pushes.await.context("the push sender")??;
            let (_, list) = api
                .get(&format!("/api/v1/apps/{hooked}/deployments"))
                .await?;
            let pushed = list.as_array().and_then(|ds| {
                ds.iter()
                    .find(|d| d["commit"] == after.as_str() || d["ref"] == after.as_str())
                    .and_then(|d| d["id"].as_str().map(str::to_string))
            });
            match pushed {
                None if !acked.is_empty() => t.lost.push(format!(
                    "the pushes of {after} were acknowledged, but {hooked} has no deployment of it"
                )),
                None => {}
                Some(id) => match api.wait_terminal(&id, TERMINAL_WAIT).await {
                    Ok(d) if d["status"] == "succeeded" => {}
                    Ok(d) => t
                        .lost
                        .push(format!("the pushed commit's deployment ended {d}")),
                    Err(e) => t.lost.push(format!(
                        "the pushed commit's deployment {id} did not end: {e:#}"
                    )),
                },
            }
            for (delivery, ids) in &acked {
                for id in ids {
                    if let Err(e) = api.wait_terminal(id, TERMINAL_WAIT).await {
                        t.lost.push(format!(
                            "push {delivery} was acknowledged with deployment {id}, which did \
                             not end: {e:#}"
                        ));
                    }
                }
            }
            let ids: usize = acked.iter().map(|(_, ids)| ids.len()).sum();
            t.note = Some(format!(
                "{}; {} pushes acknowledged ({ids} deployments named; the commit deployed)",
                t.note.take().unwrap_or_default(),
                acked.len()
            ));
        }
        if let (Outcome::Succeeded, Some(killed_at), Some(finished_at)) =
            (&t.outcome, self.killed_at.take(), finished_at)
        {
            // From the primary's death to the end of the deployment it interrupted, as its
            // record says (the back variant looks only once the old primary is a replica).
            let s = finished_at.saturating_sub(killed_at) as f64 / 1000.0;
            t.note = Some(format!(
                "{}; deployment ended {s:.1} s after",
                t.note.take().unwrap_or_default()
            ));
        }
        if let Some((sentinels, _)) = &mut self.sentinels {
            // The set whole again for the next trial: the killed one back (a replica now).
            if let Some(port) = self.dead.take() {
                sentinels.restart(port).await?;
            }
            sentinels.whole(Duration::from_secs(120)).await?;
        }
        if let Some((mut proc, _)) = follower {
            // The killed leader back, as a follower; the follower stops cleanly (giving the
            // lease up), so the cluster's own coordinator leads the next trial again.
            let killed_by_us = t.note.is_none();
            self.cluster.kill_restart("coordinator", true).await?;
            let took_over = self.cluster.leader().map(|(h, _)| pid_of(&h)) == Some(proc.pid());
            if killed_by_us && !took_over {
                t.lost.push(format!(
                    "the follower does not hold the leader lease after the leader was killed: {:?}",
                    self.cluster.leader()
                ));
            }
            proc.stop();
            cluster_leads(&self.cluster).await?;
        }
        Ok(t)
    }
}

/// The secret the Sentinel set-up's pushes are signed with.
const HOOK_SECRET: &str = "chaos-hook-secret";

/// GitHub pushes of `after` to the repository at `repo` (whose head was `before`), one every
/// 500 ms from now, as GitHub delivers: a delivery not acknowledged (a 503 while Redis fails
/// over) is delivered again, with its id, until it is. Stops after three acknowledged ones;
/// answers each with the deployments it queued. Any answer but 202 and 503 fails it.
async fn pushes(
    base: String,
    repo: String,
    before: String,
    after: String,
) -> Result<Vec<(String, Vec<String>)>> {
    let body = serde_json::to_vec(&crate::github::push_payload(
        &format!("file://{repo}"),
        "refs/heads/main",
        &before,
        &after,
        "pushed while Redis fails over",
    ))?;
    let mut acked = Vec::new();
    let mut delivery = unique("delivery");
    let deadline = Instant::now() + Duration::from_secs(150);
    while acked.len() < 3 {
        if Instant::now() > deadline {
            bail!("pushes not acknowledged within 150 s; acknowledged: {acked:?}");
        }
        let (status, answer) =
            crate::github::deliver_push(&base, HOOK_SECRET, &delivery, &body).await?;
        match status {
            202 => {
                let ids = answer["deployments"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                acked.push((delivery, ids));
                delivery = unique("delivery");
            }
            503 => {}
            s => bail!("push {delivery} answered {s}: {answer}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(acked)
}

/// kill -9 of the Redis primary, and the time until the API accepts a write again (`PATCH` of
/// `app`'s drain, the value it has), polled every 100 ms; with `back`, the old primary then
/// starts again (a primary by its own account) and Sentinel makes it a replica. What the
/// trial's note says, when the kill was (ms since the epoch), and the port left dead.
async fn fail_over(
    sentinels: &mut crate::RedisSentinels,
    api: &Api,
    app: &str,
    back: bool,
) -> Result<(String, u64, Option<u16>)> {
    let primary = sentinels
        .primary_now()
        .await
        .context("no Redis says it is the primary")?;
    sentinels.kill(primary);
    let killed = Instant::now();
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let mut refused = 0u32;
    let path = format!("/api/v1/apps/{app}");
    let deadline = killed + Duration::from_secs(120);
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            api.patch(&path, json!({"drain_s": 1})),
        )
        .await;
        match r {
            Ok(Ok((200, _))) => break,
            Ok(Ok((503, _))) | Ok(Err(_)) => refused += 1,
            Ok(Ok((s, b))) => bail!("a write during the failover answered {s}: {b}"),
            Err(_) => bail!("a write during the failover hung for 30 s"),
        }
        if Instant::now() > deadline {
            bail!("no write accepted within 120 s of the primary's death ({refused} refused)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = killed.elapsed().as_secs_f64();
    let mut note = format!(
        "primary :{primary} killed; first write accepted {s:.1} s after \
         ({refused} answered 503 before)"
    );
    if !back {
        return Ok((note, killed_ms, Some(primary)));
    }
    sentinels.restart(primary).await?;
    eventually(
        "the old primary to come back as a replica",
        Duration::from_secs(60),
        || async { (crate::redis_role(primary).await.as_deref() == Some("slave")).then_some(()) },
    )
    .await?;
    let s = killed.elapsed().as_secs_f64();
    note.push_str(&format!("; back as a replica {s:.1} s after"));
    Ok((note, killed_ms, None))
}

/// Starts a follower coordinator beside the cluster's (which leads), once the lease names the
/// cluster's own: the process and its API.
async fn follow(cluster: &Cluster) -> Result<(Proc, Api)> {
    cluster_leads(cluster).await?;
    cluster
        .spawn_coordinator("coordinator-follower", None)
        .await
}

/// Waits until the leader lease names the cluster's own `berth coordinator`.
async fn cluster_leads(cluster: &Cluster) -> Result<()> {
    let i = cluster.proc_index("berth coordinator")?;
    let pid = cluster.procs[i].pid();
    eventually(
        "the cluster's coordinator to lead",
        Duration::from_secs(30),
        || async { (cluster.leader().map(|(h, _)| pid_of(&h)) == Some(pid)).then_some(()) },
    )
    .await
}

/// The pid in a leader lease's holder name (`<host>-<pid>-<random>`).
fn pid_of(holder: &str) -> u32 {
    holder
        .rsplit('-')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// Asks `actor` of process `p` of `cluster` to panic (the test hook) and waits until its restart
/// counter went up.
async fn inject_panic(cluster: &Cluster, p: Process, actor: &str) -> Result<()> {
    let process = match p {
        Process::Coordinator => "coordinator".to_string(),
        Process::Node => format!("node:{}", cluster.node),
    };
    let before = restarts(&cluster.api, actor).await;
    cluster.redis_cli(&["LPUSH", &berth_protocol::keys::test_panic(&process), actor])?;
    eventually(
        &format!("{actor}'s restart counter to go up"),
        Duration::from_secs(30),
        || async { (restarts(&cluster.api, actor).await > before).then_some(()) },
    )
    .await?;
    Ok(())
}

/// The sum of the `/metrics` samples of actor restarts (any metric whose name says `restart`)
/// labelled with `actor`.
async fn restarts(api: &Api, actor: &str) -> f64 {
    let Ok((_, _, text)) = api.metrics_text().await else {
        return 0.0;
    };
    let label = format!("\"{actor}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains("restart") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The last `n` bytes of `s` (on a character boundary).
fn tail(s: &str, n: usize) -> &str {
    let mut at = s.len().saturating_sub(n);
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// The fleet set-up: two nodes with their own engines and a registry, an app with a replica on
/// each.
pub struct FleetSetup {
    pub fleet: Fleet,
    _registry: Registry,
    app: ChaosApp,
}

impl FleetSetup {
    /// Starts the registry and the fleet, and deploys the first version on both nodes.
    pub async fn start() -> Result<FleetSetup> {
        let registry = Registry::start().await?;
        let mut extra = berth_extra();
        extra.push(("BERTH_REGISTRY__URL", registry.addr()));
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut fleet = Fleet::start_with(2, &extra).await?;
        // Listening 3 s after it starts: the health check of a new replica lasts long enough
        // for a fault to land in it.
        let app = ChaosApp::new("chaosf", 3, 3)?;
        fleet
            .create_app(
                json!({"name": app.name, "repo": app.repo.url(), "port": 8080,
                "drain_s": 1, "replicas": 2}),
            )
            .await?;
        let (id, d) = fleet
            .api
            .deploy_and_wait(&app.name, None, TERMINAL_WAIT)
            .await?;
        if d["status"] != "succeeded" {
            bail!(
                "the fleet's first deployment failed: {d}\n{}",
                fleet.api.log(&id).await?
            );
        }
        for i in 0..2 {
            fleet.serves(i, &app.host, &version_marker("1")).await?;
        }
        Ok(FleetSetup {
            fleet,
            _registry: registry,
            app,
        })
    }

    pub async fn trial(&mut self, s: &Scenario) -> Trial {
        match self.try_trial(s).await {
            Ok(t) => t,
            Err(e) => Trial::outcome_only(Outcome::Error(format!(
                "{e:#}\n{}",
                tail(&self.fleet.logs(), 4000)
            ))),
        }
    }

    async fn try_trial(&mut self, s: &Scenario) -> Result<Trial> {
        let api = self.fleet.api.clone();
        let app = &mut self.app;
        let v = app.next_version()?;
        let old = app.serving.clone();
        let before = snapshot(&api, &app.name).await?;
        // A load through every node's Caddy; the faulted node's is set aside (in a real fleet
        // the load balancer in front takes a dead server out), the others' must all answer.
        let mut loads: Vec<Option<Load>> = self
            .fleet
            .nodes
            .iter()
            .map(|n| {
                Some(Load::start(
                    n.ingress,
                    &app.host,
                    2,
                    Duration::from_millis(20),
                ))
            })
            .collect();
        eventually(
            "the load's first answers",
            Duration::from_secs(10),
            || async {
                loads
                    .iter()
                    .all(|l| l.as_ref().is_some_and(|l| l.sent() > 2))
                    .then_some(())
            },
        )
        .await?;
        let t0 = Instant::now();
        let id = api.deploy(&app.name, None).await?;
        let phase = match s.fault {
            Fault::RestartDockerd(phase) => phase,
            _ => Phase::Build,
        };
        let note = wait_phase(&api, &id, phase).await?;
        let mut victim = None;
        if note.is_none() {
            let (_, d) = api.get(&format!("/api/v1/deployments/{id}")).await?;
            let node = building_node(&d).with_context(|| format!("which node builds: {d}"))?;
            let i = self
                .fleet
                .node_index(&node)
                .with_context(|| format!("node {node} of the fleet"))?;
            if let Some(l) = loads[i].take() {
                let _ = l.finish().await;
            }
            match s.fault {
                Fault::PowerCut => self.fleet.kill_node(i),
                Fault::RestartDockerd(_) => self.fleet.nodes[i].engine.restart().await?,
                _ => bail!("{} does not run on the fleet", s.name),
            }
            victim = Some(i);
        }
        let d = api.wait_terminal(&id, TERMINAL_WAIT).await;
        let elapsed = t0.elapsed();
        let log = api.log(&id).await.unwrap_or_default();
        verbose(&s.name, &log);
        let mut t = Trial::outcome_only(Outcome::Succeeded);
        t.note = note;
        match d {
            Ok(d) => {
                t.to_terminal = Some(elapsed);
                t.attempts = max_attempt(&d) + 1;
                t.outcome = judge(&d, false, &log);
                let serving = match t.outcome {
                    Outcome::Succeeded => v.clone(),
                    _ => old,
                };
                app.serving = serving.clone();
                let new = match t.outcome {
                    Outcome::Succeeded => d["image"].as_str().map(str::to_string),
                    _ => None,
                };
                for i in (0..self.fleet.nodes.len()).filter(|i| Some(*i) != victim) {
                    if let Err(e) = self
                        .fleet
                        .serves(i, &app.host, &version_marker(&serving))
                        .await
                    {
                        t.lost
                            .push(format!("node {i} does not serve version {serving}: {e:#}"));
                    }
                }
                if !all_terminal(&api, &app.name, TERMINAL_WAIT).await {
                    t.outcome = Outcome::Stuck("a deployment the system queued did not end".into());
                }
                t.lost
                    .extend(lost_since(&api, &app.name, &before, new.as_deref()).await);
            }
            Err(e) => t.outcome = Outcome::Stuck(format!("{e:#}\n{log}")),
        }
        for l in loads.into_iter().flatten() {
            let n = l.finish().await;
            count_load(&mut t, &n);
        }
        // Back to two live nodes with the app on both for the next trial.
        if let Some(i) = victim {
            if s.fault == Fault::PowerCut {
                self.fleet.restart_node(i).await?;
            }
        }
        self.rebalance().await?;
        Ok(t)
    }

    /// Waits until the app runs a replica on every node again (after a power cut its replicas
    /// were moved to the survivor; a scale brings one back when the replica count is set again).
    async fn rebalance(&mut self) -> Result<()> {
        let api = self.fleet.api.clone();
        let app = self.app.name.clone();
        all_terminal(&api, &app, TERMINAL_WAIT).await;
        let on_every_node = |v: &Value| {
            let nodes: Vec<&str> = v
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .filter(|r| r["role"] == "serving")
                        .filter_map(|r| r["node"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            self.fleet
                .nodes
                .iter()
                .all(|n| nodes.contains(&n.name.as_str()))
        };
        let (_, replicas) = api.get(&format!("/api/v1/apps/{app}/replicas")).await?;
        if on_every_node(&replicas) {
            return Ok(());
        }
        // Redeploying the serving release spreads it over both nodes again.
        let (s, v) = api
            .post(&format!("/api/v1/apps/{app}/restart"), json!({}))
            .await?;
        if s != 202 {
            bail!("restart {app}: HTTP {s}: {v}");
        }
        let id = v["id"].as_str().context("restart id")?.to_string();
        let d = api.wait_terminal(&id, TERMINAL_WAIT).await?;
        if d["status"] != "succeeded" {
            bail!(
                "spreading the app again failed: {d}\n{}",
                api.log(&id).await?
            );
        }
        Ok(())
    }
}

/// The node building a rollout's first replica (or a one-replica deployment's node).
fn building_node(d: &Value) -> Option<String> {
    d["rollout"]["slots"]
        .as_array()
        .and_then(|ss| ss.iter().find(|s| s["slot"] == 0))
        .and_then(|s| s["node"].as_str())
        .or_else(|| d["node"].as_str())
        .map(str::to_string)
}

/// The highest attempt of the deployment or any slot of its rollout.
fn max_attempt(d: &Value) -> u32 {
    let slots = d["rollout"]["slots"]
        .as_array()
        .map(|ss| {
            ss.iter()
                .filter_map(|s| s["attempt"].as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    slots.max(d["attempt"].as_u64().unwrap_or(0)) as u32
}

/// The suite: the set-ups, started when a scenario first needs them.
#[derive(Default)]
pub struct Suite {
    single: Option<Single>,
    fleet: Option<FleetSetup>,
    sentinel: Option<Single>,
}

impl Suite {
    /// Runs `trials` trials of `s`; progress goes to stderr.
    pub async fn run(&mut self, s: &Scenario, trials: u32) -> Row {
        let mut row = Row {
            scenario: s.name.clone(),
            trials: Vec::new(),
        };
        for k in 0..trials {
            let t = match s.setup() {
                Setup::Single => match self.single().await {
                    Ok(env) => env.trial(s).await,
                    Err(e) => Trial::outcome_only(Outcome::Error(format!("{e:#}"))),
                },
                Setup::Fleet => match self.fleet().await {
                    Ok(env) => env.trial(s).await,
                    Err(e) => Trial::outcome_only(Outcome::Error(format!("{e:#}"))),
                },
                Setup::Sentinel => match self.sentinel().await {
                    Ok(env) => env.trial(s).await,
                    Err(e) => Trial::outcome_only(Outcome::Error(format!("{e:#}"))),
                },
            };
            eprintln!(
                "chaos: {} trial {}/{}: {:?} in {:?}, {} of {} requests got nothing, lost {:?}{}",
                s.name,
                k + 1,
                trials,
                short_outcome(&t.outcome),
                t.to_terminal,
                t.no_answer,
                t.requests,
                t.lost,
                t.note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
            if t.bad() {
                eprintln!("chaos: {} trial {}: {:?}", s.name, k + 1, t.outcome);
            }
            row.trials.push(t);
        }
        row
    }

    async fn single(&mut self) -> Result<&mut Single> {
        if self.single.is_none() {
            self.single = Some(
                Single::start()
                    .await
                    .context("starting the single-node cluster")?,
            );
        }
        Ok(self.single.as_mut().expect("started"))
    }

    async fn sentinel(&mut self) -> Result<&mut Single> {
        // One set-up at a time.
        self.single = None;
        self.fleet = None;
        if self.sentinel.is_none() {
            self.sentinel = Some(
                Single::start_on_sentinels()
                    .await
                    .context("starting the cluster on Redis Sentinel")?,
            );
        }
        Ok(self.sentinel.as_mut().expect("started"))
    }

    async fn fleet(&mut self) -> Result<&mut FleetSetup> {
        // One set-up at a time: the single node's processes go before the fleet starts.
        self.single = None;
        self.sentinel = None;
        if self.fleet.is_none() {
            self.fleet = Some(FleetSetup::start().await.context("starting the fleet")?);
        }
        Ok(self.fleet.as_mut().expect("started"))
    }
}

/// The first line of an outcome, for progress lines.
fn short_outcome(o: &Outcome) -> String {
    let s = format!("{o:?}");
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// The scenarios named by `filter` (each a name or a prefix, e.g. `panic-`), or all of them.
pub fn select(filter: &[String]) -> Result<Vec<Scenario>> {
    let all = scenarios();
    if filter.is_empty() {
        return Ok(all);
    }
    let chosen: Vec<Scenario> = all
        .iter()
        .filter(|s| {
            filter
                .iter()
                .any(|f| s.name == *f || s.name.starts_with(f.as_str()))
        })
        .cloned()
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no scenario matches {filter:?}; there are: {}",
            names.join(", ")
        );
    }
    Ok(chosen)
}
