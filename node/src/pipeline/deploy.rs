//! The deploy steps: fetch and build (or take a rollback's image), start the container, probe
//! it, claim the switch and point the app's routes at it; then hand the previous release to
//! [`drain`](super::drain).
//!
//! A deployment always ends with a terminal event. Fetch, build, run and probe run under the
//! job's deadline; the route switch is never cut off half-way (a cancelled switch could leave
//! Caddy pointing at a container that is then removed): it runs only if the deadline has not
//! passed, and the Router's own calls are bounded. Once traffic is switched the deployment has
//! succeeded; failing to stop an old container is only logged.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_protocol::secret::{open_env, GitCredential};
use berth_protocol::{
    keys, now_ms, validate, DeployJob, DeploymentStatus, DeploymentUpdate, Route, Upstream,
};

use super::drain::drain_previous;
use super::fate::{cancelled, claim_switch, fate};
use super::healthcheck::wait_docker_healthcheck;
use super::{services, short, Services};
use crate::engine_watch::WAIT_FOR_ENGINE;
use crate::error::{Error, Result};
use crate::image_build::{BuildKind, BuildPlan};
use crate::log_sink::LogSink;
use crate::registry;
use crate::router::SetRoutes;
use crate::{containers, probe, source};

/// How many lines of a failed container's output are copied into the deployment log.
pub(super) const TAIL_LINES: usize = 20;

/// What the deadline-bound part of a deployment produced.
pub(super) struct Ready {
    /// `None` for a rollback (the release's commit is on its record already).
    pub(super) commit: Option<String>,
    pub(super) image: String,
    pub(super) container: String,
    pub(super) host_port: u16,
    /// A release's container taken again stays held (no drain stops it) until traffic is on it.
    pub(super) held: Option<super::services::HeldContainer>,
}

/// Where a deployment is, readable after its future was dropped by the deadline.
struct Progress {
    /// The step in progress, for "deadline exceeded while <step>".
    step: Mutex<&'static str>,
    /// The new container, once created: removed if the deployment fails. Shared with the task
    /// that creates it, which outlives a cancel or a deadline that drops the deployment's future.
    container: Arc<Mutex<Option<String>>>,
    /// Set while that task runs: a failed deployment waits for it before cleaning up, so a
    /// container whose creation was under way is removed too.
    creating: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            step: Mutex::new(""),
            container: Arc::default(),
            creating: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

impl Progress {
    fn set_step(&self, s: &'static str) {
        *self.step.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
    fn step(&self) -> &'static str {
        *self.step.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set_container(&self, id: &str) {
        *self.container.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
    }
    /// The new container, once a creation under way (if any) has ended.
    async fn container(&self) -> Option<String> {
        let mut rx = self.creating.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|c| !*c)).await;
        self.container
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates the container in a task of its own that records it in this progress: dropping
    /// the deployment's future mid-create (cancel, deadline) cannot leak it.
    async fn create(&self, svc: &Services, spec: containers::RunSpec) -> Result<String> {
        let (slot, creating, docker) = (
            self.container.clone(),
            self.creating.clone(),
            svc.docker.clone(),
        );
        creating.send_replace(true);
        let task = svc.shutdown.spawn(async move {
            let r = containers::create(&docker, &spec).await;
            if let Ok(id) = &r {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
            }
            creating.send_replace(false);
            r
        });
        task.await
            .map_err(|e| Error::Internal(format!("container create task: {e}")))?
    }
}

/// Opens the job's sealed git credential, if it has one.
async fn git_auth(svc: &Services, job: &DeployJob) -> Result<source::GitAuth> {
    let Some(sealed) = &job.credential else {
        return Ok(source::GitAuth::none(svc.allow_local_repos));
    };
    let key = svc.secret_key.as_ref().ok_or_else(|| {
        Error::Config("the app has a git credential but this node has no secret key".into())
    })?;
    // Bound to the app: a blob copied from another app's key does not open here.
    let cred = GitCredential::open(key, &job.app.name, sealed).map_err(Error::Invalid)?;
    let key_file = svc.builds_dir.join(format!("{}.key", job.deployment_id));
    source::GitAuth::new(&cred, &key_file, svc.allow_local_repos).await
}

/// The secret variable values of a job, opened with the node's key.
#[derive(Default)]
pub(super) struct EnvSecrets {
    /// Those the build gets (the app's `env.secret` of scope build or both).
    build: BTreeMap<String, String>,
    /// Those the container gets (the deployment's `runtime.secrets`).
    runtime: BTreeMap<String, String>,
}

impl EnvSecrets {
    /// Every value to mask in the deployment's log: all of them, whatever their scope.
    fn mask_values(&self) -> Vec<String> {
        self.build
            .values()
            .chain(self.runtime.values())
            .cloned()
            .collect()
    }
}

/// Opens the job's sealed variables: the build's from `env_secrets`, the container's from
/// `runtime_secrets`. A name the sealed map lacks fails the deployment (it would run without
/// a variable it was given).
fn open_env_secrets(svc: &Services, job: &DeployJob) -> Result<EnvSecrets> {
    let app = &job.app.name;
    let need_build = job.image.is_none() && job.app.env.secret_build().next().is_some();
    if !need_build && job.runtime_secrets.is_none() {
        return Ok(EnvSecrets::default());
    }
    let key = svc.secret_key.as_ref().ok_or_else(|| {
        Error::Config("the app has secret variables but this node has no secret key".into())
    })?;
    let open = |sealed| open_env(key, app, sealed).map_err(Error::Invalid);
    let pick = |all: &BTreeMap<String, String>, names: &mut dyn Iterator<Item = &String>| {
        names
            .map(|k| match all.get(k) {
                Some(v) => Ok((k.clone(), v.clone())),
                None => Err(Error::Invalid(format!(
                    "the secret variable {k} has no stored value: set it again with `berth env set {app} {k} --secret`"
                ))),
            })
            .collect::<Result<BTreeMap<_, _>>>()
    };
    let mut out = EnvSecrets::default();
    if need_build {
        let all = match &job.env_secrets {
            Some(sealed) => open(sealed)?,
            None => BTreeMap::new(),
        };
        out.build = pick(&all, &mut job.app.env.secret_build())?;
    }
    if let Some(rt) = &job.runtime_secrets {
        let all = open(&rt.sealed)?;
        out.runtime = pick(&all, &mut rt.names.iter())?;
    }
    Ok(out)
}

/// The warnings a build's variables deserve: the Docker engine's classic builder has no secret
/// mounts, so a build arg — a secret one, or a plain one whose name looks secret — stays in the
/// image's history.
pub(crate) fn build_arg_warnings(
    plain: &BTreeMap<String, String>,
    secret: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = secret
        .keys()
        .map(|k| {
            format!(
                "warning: the secret build variable {k} is passed as a build arg (the engine's classic builder has no build secret mounts): build args persist in the image's history (`docker history`); logs mask its value"
            )
        })
        .collect();
    out.extend(plain.keys().filter(|k| validate::looks_secret(k)).map(|k| {
        format!(
            "warning: the build variable {k} looks secret but is plain: build args persist in the image's history (`docker history`); `berth env set --secret` keeps its value out of answers and logs"
        )
    }));
    out
}

/// A deployment id is used in paths, container names and image tags.
fn check_deployment_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 100
        && !id.starts_with(['.', '-'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "deployment id {id:?} is not usable (letters, digits, '-', '_', '.')"
        )))
    }
}

/// Runs one deployment to its terminal event (or one replica of a rollout to its report).
pub async fn deploy(svc: &Arc<Services>, job: &DeployJob) {
    let id = job.deployment_id.as_str();
    let auth = git_auth(svc, job).await;
    let env = open_env_secrets(svc, job);
    let mut secrets = auth.as_ref().map(|a| a.secrets.clone()).unwrap_or_default();
    secrets.extend(
        env.as_ref()
            .map(EnvSecrets::mask_values)
            .unwrap_or_default(),
    );
    let log = LogSink::redis(svc.redis.clone(), id).with_masks(secrets);
    let progress = Progress::default();
    progress.set_step("waiting in the queue");
    let id_ok = check_deployment_id(id);
    let id_valid = id_ok.is_ok();
    let checkout = svc.builds_dir.join(id);
    // Where the attempt starts in the engine's outages: a step that fails after the engine went
    // away under it failed by the infrastructure, however it looked (`engine_watch`).
    let engine_mark = svc.engine.mark();

    let outcome = match id_ok {
        Err(e) => Err(e),
        Ok(()) if fate(svc, id).await.as_deref() == Some(keys::FATE_CANCEL) => {
            Err(Error::Cancelled("before it started".into()))
        }
        Ok(()) if now_ms() >= job.deadline_ms => Err(Error::Deadline(progress.step().into())),
        Ok(()) => {
            let remaining = Duration::from_millis(job.deadline_ms.saturating_sub(now_ms()));
            let bound = async {
                let auth = auth?;
                let env = env?;
                match tokio::time::timeout(
                    remaining,
                    prepare(Attempt {
                        svc,
                        job,
                        log: &log,
                        progress: &progress,
                        checkout: &checkout,
                        auth: &auth,
                        env: &env,
                    }),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(Error::Deadline(progress.step().to_string())),
                }
            };
            tokio::select! {
                r = bound => r,
                () = cancelled(svc, id) => Err(Error::Cancelled(format!("while {}", progress.step()))),
            }
        }
    };
    let outcome = match outcome {
        Err(e) => Err(svc.engine.judge(&engine_mark, progress.step(), e).await),
        ready => ready,
    };
    if id_valid {
        remove_dir(&checkout).await;
    }
    if let Some(slot) = job.slot {
        let created = match &outcome {
            Ok(_) => None,
            Err(_) => progress.container().await,
        };
        return super::replica::report(svc, job, slot, &log, outcome, created).await;
    }
    // Whether this attempt claimed the switch: after that, its outcome stands (a fault is not
    // retried, so traffic is never switched twice for one deployment).
    let mut claimed = false;
    let outcome = match outcome {
        Ok(_) if now_ms() > job.deadline_ms => Err(Error::Deadline("switching traffic".into())),
        Ok(ready) => {
            log.system(format!(
                "switching traffic to container {}",
                short(&ready.container)
            ))
            .await;
            let claim =
                svc.through_outage(&log, "to claim the switch", Some(job.deadline_ms), || {
                    claim_switch(svc, id, job.attempt)
                });
            match claim.await {
                Ok(()) => {
                    claimed = true;
                    super::test_pause::pause(svc, "switch").await;
                    switch(svc, job, &log, &progress, ready).await
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };

    match outcome {
        Ok(ready) => {
            // Traffic is on the new container: that is success. The old one is stopped after
            // (still under this app's lock, so the next deployment waits for it).
            log.system(format!(
                "deployment succeeded: container {}",
                short(&ready.container)
            ))
            .await;
            // What was logged while Redis was away goes in before the end is reported (the
            // coordinator writes the log's closing line when it records the end).
            log.flush(svc.shutdown.token()).await;
            svc.events
                .deployment(DeploymentUpdate {
                    commit: ready.commit.clone(),
                    image: Some(ready.image.clone()),
                    container: Some(ready.container.clone()),
                    ..DeploymentUpdate::new(id, DeploymentStatus::Succeeded)
                })
                .await;
            drain_previous(svc, job, &log, &ready, true).await;
        }
        Err(e) => {
            let text = log.mask(e.to_string());
            // An infrastructure fault before the switch: the coordinator runs it again.
            let retry = !claimed && e.is_infrastructure();
            let status = match e {
                Error::Cancelled(_) => DeploymentStatus::Cancelled,
                _ => DeploymentStatus::Failed,
            };
            // A failure's reason is the log's closing line, which the coordinator writes when it
            // records the outcome: said once, not here too. A cancel's closing line is the
            // request's; where the job was when it stopped is said here.
            let line = match status {
                _ if retry => format!("{text}; cleaning up this attempt"),
                DeploymentStatus::Cancelled => format!("deployment {text}; cleaning up"),
                _ => format!("deployment {status}; cleaning up"),
            };
            log.system(line).await;
            if let Some(c) = progress.container().await {
                containers::copy_tail(&svc.docker, &c, TAIL_LINES, &log).await;
                log.system(format!("removing the new container {}", short(&c)))
                    .await;
                containers::bounded(
                    "removing the failed container",
                    containers::remove_force(&svc.docker, &c),
                )
                .await;
            }
            log.flush(svc.shutdown.token()).await;
            if retry {
                super::interrupted(svc, job, text).await;
                return;
            }
            svc.events
                .deployment(DeploymentUpdate::ended(id, status, text))
                .await;
        }
    }
}

/// The node's own check of a job before it acts on it: the coordinator validated the app at the
/// API, but a job is read from Redis, and a node trusts Redis only as far as it can check (the
/// same pure rules as the API's, plus: an image to run is one of the app's own releases).
fn check_job(job: &DeployJob, registry: Option<&str>) -> std::result::Result<(), String> {
    validate::app(&job.app)?;
    if let Some(r) = &job.git_ref {
        validate::git_ref("ref", r)?;
    }
    if let Some(image) = &job.image {
        validate::release_image(&job.app.name, image, registry)?;
    }
    if let Some(u) = &job.upload {
        validate::upload_sha256(&u.sha256)?;
    }
    Ok(())
}

/// What the deadline-bound steps of one deployment work with.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    svc: &'a Services,
    job: &'a DeployJob,
    log: &'a LogSink,
    progress: &'a Progress,
    checkout: &'a std::path::Path,
    auth: &'a source::GitAuth,
    /// The job's secret variables, opened.
    env: &'a EnvSecrets,
}

/// Fetch, build, start and probe; bound by the deadline.
async fn prepare(at: Attempt<'_>) -> Result<Ready> {
    let (svc, job, log, progress) = (at.svc, at.job, at.log, at.progress);
    let app = &job.app;
    let id = job.deployment_id.as_str();
    check_job(job, svc.registry.as_ref().map(|r| r.url.as_str())).map_err(Error::Invalid)?;
    if !svc.engine.answers_now().await {
        // Restarting, most likely (an earlier attempt here may have been cut off by it): this
        // attempt waits for it rather than fail at its first call (its deadline and a cancel
        // still end the wait).
        progress.set_step("waiting for the Docker engine");
        log.system("the Docker engine is not answering: waiting for it")
            .await;
        if svc.engine.wait_up(WAIT_FOR_ENGINE).await {
            log.system("the Docker engine answers again").await;
        }
    }
    // What this job builds (its local and registry tags) or runs is not pruned under it.
    let mut names = vec![format!("berth/{}:{id}", app.name)];
    names.extend(
        svc.registry
            .as_ref()
            .map(|r| format!("{}:{id}", r.repository(&app.name))),
    );
    names.extend(job.image.clone());
    let _held = svc.hold_images(names);

    let (commit, image) = match &job.image {
        // A rollback (or a failover): the release's image, from this engine or the registry;
        // nothing to fetch or build.
        Some(image) => {
            log.system(format!("running the release {image}: no fetch, no build"))
                .await;
            progress.set_step("getting the image");
            registry::ensure_image(&svc.docker, svc.registry.as_ref(), image, &svc.node, log)
                .await?;
            (None, image.clone())
        }
        None => fetch_and_build(at).await?,
    };

    progress.set_step("starting the container");
    svc.events
        .deployment(DeploymentUpdate {
            image: Some(image.clone()),
            ..DeploymentUpdate::new(id, DeploymentStatus::Deploying)
        })
        .await;
    let health_port = app.health_check.port.unwrap_or(app.port);
    let mut held = None;
    let reusable = match &job.reuse_container_of {
        Some(of) => reusable_container(svc, job, of).await?,
        None => None,
    };
    let mut reused = None;
    // Held while it is probed: the drain of the deployment it served before must not stop it
    // now, and one that drain is stopping already is not taken (see `drain.rs`).
    if let Some((c, hold)) = reusable.and_then(|c| svc.try_hold_container(&c.id).map(|h| (c, h))) {
        held = Some(hold);
        log.system(if c.running {
            format!(
                "taking the release's container {} again (still running: it was draining)",
                short(&c.id)
            )
        } else {
            format!(
                "starting the release's stopped container {} again",
                short(&c.id)
            )
        })
        .await;
        // Taking it again only saves time: when it cannot start, a new one is created.
        match containers::start(&svc.docker, &c.id, app.port).await {
            Ok(started) => reused = Some((c.id, started)),
            Err(e) => {
                log.system(format!("it cannot start ({e}): creating a new container"))
                    .await;
                held = None;
            }
        }
    }
    let (cid, started) = match reused {
        Some((cid, started)) => {
            progress.set_container(&cid);
            (cid, started)
        }
        None => {
            let labels = HashMap::from([
                (containers::LABEL_APP.to_string(), app.name.clone()),
                (containers::LABEL_DEPLOYMENT.to_string(), id.to_string()),
                (containers::LABEL_NODE.to_string(), svc.node.clone()),
            ]);
            let spec = containers::RunSpec {
                name: container_name(job),
                image: image.clone(),
                env: app
                    .env
                    .runtime
                    .iter()
                    .chain(at.env.runtime.iter())
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
                labels,
                port: app.port,
                host_ip: svc.address.clone(),
                extra_ports: vec![health_port],
                confinement: containers::Confinement::of(
                    &app.limits,
                    &svc.limits,
                    svc.cpus,
                    containers::app_network(&svc.docker, &svc.app_network).await?,
                ),
            };
            let cid = progress.create(svc, spec).await?;
            progress.set_container(&cid);
            let started = containers::start(&svc.docker, &cid, app.port).await?;
            (cid, started)
        }
    };
    log.system(format!(
        "started container {} ({}:{} → port {})",
        short(&cid),
        svc.address,
        started.host_port,
        app.port
    ))
    .await;

    // EXPOSE is only documentation, but when the image documents other ports than the app's,
    // the app most likely listens there: say so now, not only after the deadline.
    let exposed = containers::image_exposed_ports(&svc.docker, &image).await;
    let mismatch = containers::port_mismatch(&exposed, app.port);
    if let Some(m) = &mismatch {
        let port = match exposed.as_slice() {
            [one] => one.to_string(),
            _ => "…".to_string(),
        };
        log.system(format!(
            "warning: {m}; the health check will likely get no answer (set the app's port to \
             the one the app listens on: `berth apps update {} --port {port}`)",
            app.name
        ))
        .await;
    }

    progress.set_step("waiting for the health check");
    let probe_port = if health_port == app.port {
        started.host_port
    } else {
        containers::host_port(&svc.docker, &cid, health_port).await?
    };
    let url = format!(
        "http://{}:{}{}",
        svc.address, probe_port, app.health_check.path
    );
    let live = containers::ContainerLiveness {
        docker: svc.docker.clone(),
        id: cid.clone(),
    };
    let target = probe::Target {
        url: &url,
        port: health_port,
        hint: mismatch.as_deref(),
    };
    probe::wait_healthy(&svc.probe_http, &target, &app.health_check, &live, log)
        .await
        .map_err(Error::Health)?;
    wait_docker_healthcheck(svc, &cid, job, log).await?;
    containers::keep_running(&svc.docker, &cid).await?;

    Ok(Ready {
        commit,
        image,
        container: cid,
        host_port: started.host_port,
        held,
    })
}

/// A container of the release this node may take again instead of creating one: the one the
/// deployment `of` created, else one of the job's image — stopped, or running but out of every
/// route (a release still draining after the deploy that replaced it). Never one that serves.
async fn reusable_container(
    svc: &Services,
    job: &DeployJob,
    of: &str,
) -> Result<Option<containers::AppContainer>> {
    let all = containers::app_containers_state(&svc.docker, &job.app.name, &svc.node).await?;
    let routes = svc.router.send(crate::router::Routes).await?;
    let now = now_ms();
    let busy = |id: &str| {
        services::routed(&routes, &svc.node, id, now)
            || svc.container_held(id)
            || services::marked(&svc.stopping, id)
    };
    // Newest first: the container that served the release last.
    Ok(all.into_iter().find(|c| {
        let of_release =
            c.deployment.as_deref() == Some(of) || (c.image.is_some() && c.image == job.image);
        of_release && !c.going && !busy(&c.id)
    }))
}

/// The name of the container a job creates: one per deployment, or per replica of a rollout
/// (an attempt run again on the same node takes the name over: `containers::create` removes
/// what an interrupted attempt left under it).
pub(super) fn container_name(job: &DeployJob) -> String {
    match job.slot {
        Some(slot) => format!("berth-{}-{}-r{slot}", job.app.name, job.deployment_id),
        None => format!("berth-{}-{}", job.app.name, job.deployment_id),
    }
}

/// Whether two container ids (full or short) name the same container.
pub(super) fn same_id(a: &str, b: &str) -> bool {
    !a.is_empty() && !b.is_empty() && (a.starts_with(b) || b.starts_with(a))
}

/// Fetches the source (a git commit, or an uploaded directory) and builds the image; returns
/// the commit (none for an upload) and the image.
async fn fetch_and_build(at: Attempt<'_>) -> Result<(Option<String>, String)> {
    let Attempt {
        svc,
        job,
        log,
        progress,
        checkout,
        auth,
        env,
    } = at;
    let app = &job.app;
    let id = job.deployment_id.as_str();
    progress.set_step("fetching the source");
    svc.events
        .deployment(DeploymentUpdate::new(id, DeploymentStatus::Building))
        .await;
    let commit = match &job.upload {
        Some(upload) => {
            crate::upload::fetch(&svc.redis, &app.name, upload, checkout, log).await?;
            None
        }
        None => {
            if app.repo.is_empty() {
                return Err(Error::Invalid(format!(
                    "app {} has no repository: deploy a directory with berth deploy {} --dir DIR",
                    app.name, app.name
                )));
            }
            let git_ref = job.git_ref.as_deref().unwrap_or(&app.branch);
            let commit = source::fetch(&app.repo, git_ref, checkout, log, auth).await?;
            let (commit_message, commit_author) = source::describe(checkout).await;
            log.system(format!(
                "checked out {commit}: {}",
                commit_message.as_deref().unwrap_or("")
            ))
            .await;
            svc.events
                .deployment(DeploymentUpdate {
                    commit: Some(commit.clone()),
                    commit_message,
                    commit_author,
                    ..DeploymentUpdate::new(id, DeploymentStatus::Building)
                })
                .await;
            Some(commit)
        }
    };

    progress.set_step("preparing the Dockerfile");
    let prepared = {
        let (root, app, images) = (checkout.to_path_buf(), app.clone(), svc.pack_images.clone());
        tokio::task::spawn_blocking(move || crate::build_pack::prepare(&root, &app, &images))
            .await
            .map_err(|e| Error::Internal(format!("build pack task failed: {e}")))??
    };
    if let Some(a) = &prepared.analysis {
        log.system(format!(
            "build pack {}: detected {} (port {}, start: {})",
            app.build_pack, a.kind, a.port, a.start
        ))
        .await;
        for r in &a.reasons {
            log.system(format!("  {r}")).await;
        }
        if prepared.replaced {
            log.system(format!(
                "  the repository's own {} was replaced by the generated Dockerfile",
                prepared.dockerfile
            ))
            .await;
        }
    }
    svc.events
        .deployment(DeploymentUpdate {
            dockerfile: Some(prepared.text),
            ..DeploymentUpdate::new(id, DeploymentStatus::Building)
        })
        .await;

    progress.set_step("building the image");
    for w in build_arg_warnings(&app.env.build, &env.build) {
        log.system(w).await;
    }
    let plan = BuildPlan {
        kind: BuildKind::Dockerfile {
            context: app.context.clone(),
            dockerfile: prepared.dockerfile,
        },
        tag: format!("berth/{}:{id}", app.name),
        build_args: app
            .env
            .build
            .iter()
            .chain(env.build.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        // No image labels: the classic builder turns each into one more build step with its own
        // intermediate container (about a second each here). The tag names the app and
        // deployment; the container carries the labels.
        labels: HashMap::new(),
        no_cache: job.no_cache,
    };
    let image = svc.builder.build(checkout, &plan, log).await?;
    log.system(format!("built {image}")).await;
    let image = match &svc.registry {
        Some(reg) => {
            progress.set_step("pushing the image");
            registry::push(&svc.docker, reg, &image, &app.name, id, log).await?
        }
        None => image,
    };
    Ok((commit, image))
}

/// Points every domain of the app at the new container.
async fn switch(
    svc: &Services,
    job: &DeployJob,
    log: &LogSink,
    progress: &Progress,
    ready: Ready,
) -> Result<Ready> {
    progress.set_step("switching traffic");
    let app = &job.app;
    let dial = format!("{}:{}", svc.address, ready.host_port);
    let routes: Vec<Route> = app
        .domains
        .iter()
        .map(|d| Route {
            domain: d.clone(),
            app: app.name.clone(),
            upstreams: vec![Upstream {
                dial: dial.clone(),
                node: svc.node.clone(),
                container: ready.container.clone(),
                deployment: job.deployment_id.clone(),
            }],
            updated_at: now_ms(),
            drain_s: Some(app.drain_s),
            standby: Vec::new(),
            standby_until: 0,
        })
        .collect();
    if routes.is_empty() {
        log.system("the app has no domains: no route to switch")
            .await;
    } else {
        // The switch is claimed: it happens, however long Redis is away.
        let set = svc.through_outage(log, "to switch traffic", None, || async {
            match svc.router.send(SetRoutes(routes.clone())).await? {
                // Nothing is drained or reported before Redis's replicas have the route (when
                // `redis.min_replicas_acked` asks): a route lost in a failover would send the
                // traffic back to the release this one is about to stop. Not confirmed: waited
                // out like an outage, writing the route again.
                Ok(left) => {
                    svc.replicas.confirm().await?;
                    Ok(left)
                }
                Err(e) if e.is_redis_away() => Err(e),
                Err(e) => Err(Error::Caddy(format!("switching traffic failed: {e}"))),
            }
        });
        let left = set.await?;
        for n in &left {
            tracing::warn!(deployment = %job.deployment_id, app = %app.name, domain = %n.domain,
                owner = ?n.owner, "domain left out of the switch: the app no longer owns it");
            log.system(format!(
                "{n}: not routed (the app dropped it after this deployment was queued)"
            ))
            .await;
        }
        let routed: Vec<&str> = app
            .domains
            .iter()
            .filter(|d| left.iter().all(|n| &n.domain != *d))
            .map(String::as_str)
            .collect();
        match routed.as_slice() {
            [] => log.system("no domain left to route").await,
            _ => {
                log.system(format!("routed {} to {dial}", routed.join(", ")))
                    .await
            }
        }
    }
    Ok(ready)
}

async fn remove_dir(dir: &std::path::Path) {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "could not remove checkout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(image: Option<&str>) -> DeployJob {
        serde_json::from_value(serde_json::json!({
            "deployment_id": "d1",
            "app": {"name": "shop", "repo": "/srv/git/shop.git", "branch": "main",
                    "dockerfile": "Dockerfile", "context": ".", "port": 8080,
                    "domains": ["shop.localhost"], "created_at": 0, "updated_at": 0},
            "git_ref": null,
            "deadline_ms": 0,
            "image": image,
        }))
        .unwrap()
    }

    #[test]
    fn build_args_that_persist_a_secret_are_warned_about() {
        let m = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let w = build_arg_warnings(
            &m(&[("GREETING", "hi"), ("API_TOKEN", "t0k-value")]),
            &m(&[("NPM_AUTH", "s3cret")]),
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("secret build variable NPM_AUTH") && w[0].contains("image's history")
        );
        assert!(w[1].contains("API_TOKEN looks secret"));
        assert!(w
            .iter()
            .all(|l| !l.contains("s3cret") && !l.contains("t0k-value")));
        assert!(build_arg_warnings(&m(&[("GREETING", "hi")]), &m(&[])).is_empty());
    }

    #[test]
    fn a_job_runs_only_the_app_s_own_images_and_valid_apps() {
        assert_eq!(check_job(&job(None), None), Ok(()));
        assert_eq!(check_job(&job(Some("berth/shop:d0")), None), Ok(()));
        assert_eq!(
            check_job(
                &job(Some("10.0.0.10:5000/berth/shop:d0")),
                Some("10.0.0.10:5000")
            ),
            Ok(())
        );
        for bad in [
            "busybox:latest",
            "berth/other:d0",
            "evil.example/berth/shop:d0",
        ] {
            let e = check_job(&job(Some(bad)), Some("10.0.0.10:5000")).unwrap_err();
            assert!(e.contains("is not a release of app"), "{bad}: {e}");
        }
        let mut j = job(None);
        j.app.context = "../../etc".into();
        assert!(check_job(&j, None)
            .unwrap_err()
            .contains("inside the repository"));
        let mut j = job(None);
        j.app.repo = "--upload-pack=touch /tmp/x".into();
        assert!(check_job(&j, None).is_err());
        let mut j = job(None);
        j.git_ref = Some("-x".into());
        assert!(check_job(&j, None).is_err());
    }

    #[test]
    fn deployment_ids() {
        for ok in ["0b6f6d0e-4f7e-4d6c-9d0a-0e7c5a7e1c11", "d1", "a_b.c"] {
            assert!(check_deployment_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "-x", "a/b", ".hidden", "a b"] {
            assert!(check_deployment_id(bad).is_err(), "{bad}");
        }
    }
}
