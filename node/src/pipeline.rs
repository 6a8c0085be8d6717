//! The work of one job: the deploy pipeline (fetch → build → run → probe → switch → drain) and
//! app removal.
//!
//! A deployment always ends with a terminal event. Fetch, build, run and probe run under the
//! job's deadline; the route switch is never cut off half-way (a cancelled switch could leave
//! Caddy pointing at a container that is then removed): it runs only if the deadline has not
//! passed, and the Router's own calls are bounded. Once traffic is switched the deployment has
//! succeeded; failing to stop an old container is only logged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use actix::Addr;
use berth_protocol::secret::{GitCredential, SecretKey};
use berth_protocol::{keys, now_ms, validate, DeployJob, DeploymentStatus, Route, Upstream};
use bollard::Docker;
use redis::aio::ConnectionManager;

use crate::error::{Error, Result};
use crate::event_sink::{EventFields, EventSink};
use crate::image_build::{BuildKind, BuildPlan, Builder};
use crate::log_sink::LogSink;
use crate::router::{RemoveRoutes, Router, SetRoutes};
use crate::{containers, probe, source};

/// Everything a job needs from the node.
pub struct Services {
    pub node: String,
    /// Address containers' ports are published on and Caddy dials.
    pub address: String,
    /// Where checkouts go: `<data_dir>/node/builds`.
    pub builds_dir: PathBuf,
    pub docker: Docker,
    pub redis: ConnectionManager,
    pub router: Addr<Router>,
    pub events: EventSink,
    pub builder: Builder,
    pub probe_http: reqwest::Client,
    /// Opens sealed git credentials (same key as the coordinator's).
    pub secret_key: Option<SecretKey>,
}

/// How many lines of a failed container's output are copied into the deployment log.
const TAIL_LINES: usize = 20;

/// What the deadline-bound part of a deployment produced.
struct Ready {
    /// `None` for a rollback (the release's commit is on its record already).
    commit: Option<String>,
    image: String,
    container: String,
    host_port: u16,
}

/// Where a deployment is, readable after its future was dropped by the deadline.
#[derive(Default)]
struct Progress {
    /// The step in progress, for "deadline exceeded while <step>".
    step: Mutex<&'static str>,
    /// The new container, once created: removed if the deployment fails.
    container: Mutex<Option<String>>,
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
    fn container(&self) -> Option<String> {
        self.container
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Opens the job's sealed git credential, if it has one.
fn git_auth(svc: &Services, job: &DeployJob) -> Result<source::GitAuth> {
    let Some(sealed) = &job.credential else {
        return Ok(source::GitAuth::none());
    };
    let key = svc.secret_key.as_ref().ok_or_else(|| {
        Error::Config("the app has a git credential but this node has no secret key".into())
    })?;
    let cred = GitCredential::open(key, sealed).map_err(Error::Invalid)?;
    let key_file = svc.builds_dir.join(format!("{}.key", job.deployment_id));
    source::GitAuth::new(&cred, &key_file)
}

/// The deployment's fate (`switch` or `cancel`), if decided.
async fn fate(svc: &Services, id: &str) -> Option<String> {
    let mut c = svc.redis.clone();
    redis::cmd("GET")
        .arg(keys::deployment_fate(id))
        .query_async::<Option<String>>(&mut c)
        .await
        .ok()
        .flatten()
}

/// Resolves once the coordinator cancelled the deployment (polled; never resolves otherwise).
async fn cancelled(svc: &Services, id: &str) {
    loop {
        tokio::time::sleep(CANCEL_POLL).await;
        if fate(svc, id).await.as_deref() == Some(keys::FATE_CANCEL) {
            return;
        }
    }
}

/// How often a running deployment checks whether it was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// Claims the right to switch traffic: fails if the deployment was cancelled first.
async fn claim_switch(svc: &Services, id: &str) -> Result<()> {
    let mut c = svc.redis.clone();
    let set: Option<String> = redis::cmd("SET")
        .arg(keys::deployment_fate(id))
        .arg(keys::FATE_SWITCH)
        .arg("NX")
        .arg("EX")
        .arg(7 * 24 * 3600)
        .query_async(&mut c)
        .await?;
    if set.is_some() || fate(svc, id).await.as_deref() == Some(keys::FATE_SWITCH) {
        Ok(())
    } else {
        Err(Error::Cancelled("before switching traffic".into()))
    }
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

/// Runs one deployment to its terminal event.
pub async fn deploy(svc: &Services, job: &DeployJob) {
    let id = job.deployment_id.as_str();
    let auth = git_auth(svc, job);
    let secrets = auth.as_ref().map(|a| a.secrets.clone()).unwrap_or_default();
    let log = LogSink::redis(svc.redis.clone(), id).with_masks(secrets);
    let progress = Progress::default();
    progress.set_step("waiting in the queue");
    let id_ok = check_deployment_id(id);
    let id_valid = id_ok.is_ok();
    let checkout = svc.builds_dir.join(id);

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
                match tokio::time::timeout(
                    remaining,
                    prepare(svc, job, &log, &progress, &checkout, &auth),
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
    if id_valid {
        remove_dir(&checkout).await;
    }
    let outcome = match outcome {
        Ok(_) if now_ms() > job.deadline_ms => Err(Error::Deadline("switching traffic".into())),
        Ok(ready) => match claim_switch(svc, id).await {
            Ok(()) => switch(svc, job, &log, &progress, ready).await,
            Err(e) => Err(e),
        },
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
            svc.events
                .deployment(
                    id,
                    DeploymentStatus::Succeeded,
                    EventFields {
                        commit: ready.commit.clone(),
                        image: Some(ready.image.clone()),
                        container: Some(ready.container.clone()),
                        ..Default::default()
                    },
                )
                .await;
            drain_previous(svc, job, &log, &ready).await;
        }
        Err(e) => {
            let text = log.mask(e.to_string());
            let status = match e {
                Error::Cancelled(_) => DeploymentStatus::Cancelled,
                _ => DeploymentStatus::Failed,
            };
            log.system(format!("deployment {status}: {text}")).await;
            if let Some(c) = progress.container() {
                containers::copy_tail(&svc.docker, &c, TAIL_LINES, &log).await;
                log.system(format!("removing the new container {}", short(&c)))
                    .await;
                containers::bounded(
                    "removing the failed container",
                    containers::remove_force(&svc.docker, &c),
                )
                .await;
            }
            svc.events
                .deployment(
                    id,
                    status,
                    EventFields {
                        error: Some(text),
                        ..Default::default()
                    },
                )
                .await;
        }
    }
}

/// Fetch, build, start and probe; bound by the deadline.
async fn prepare(
    svc: &Services,
    job: &DeployJob,
    log: &LogSink,
    progress: &Progress,
    checkout: &std::path::Path,
    auth: &source::GitAuth,
) -> Result<Ready> {
    let app = &job.app;
    let id = job.deployment_id.as_str();
    validate::app_name(&app.name).map_err(Error::Invalid)?;
    for d in &app.domains {
        validate::domain(d).map_err(Error::Invalid)?;
    }
    validate::health_path(&app.health_check.path).map_err(Error::Invalid)?;

    let (commit, image) = match &job.image {
        // A rollback: the release's image is on this node; nothing to fetch or build.
        Some(image) => {
            log.system(format!("rolling back to {image}: no fetch, no build"))
                .await;
            (None, image.clone())
        }
        None => {
            let (commit, image) = fetch_and_build(svc, job, log, progress, checkout, auth).await?;
            (Some(commit), image)
        }
    };

    progress.set_step("starting the container");
    svc.events
        .deployment(
            id,
            DeploymentStatus::Deploying,
            EventFields {
                image: Some(image.clone()),
                ..Default::default()
            },
        )
        .await;
    let health_port = app.health_check.port.unwrap_or(app.port);
    let reusable = match &job.reuse_container_of {
        Some(of) => containers::app_containers_state(&svc.docker, &app.name, &svc.node)
            .await?
            .into_iter()
            .find(|c| !c.running && c.deployment.as_deref() == Some(of.as_str())),
        None => None,
    };
    let cid = match reusable {
        Some(c) => {
            log.system(format!(
                "starting the release's stopped container {} again",
                short(&c.id)
            ))
            .await;
            c.id
        }
        None => {
            let labels = HashMap::from([
                (containers::LABEL_APP.to_string(), app.name.clone()),
                (containers::LABEL_DEPLOYMENT.to_string(), id.to_string()),
                (containers::LABEL_NODE.to_string(), svc.node.clone()),
            ]);
            let spec = containers::RunSpec {
                name: format!("berth-{}-{id}", app.name),
                image: image.clone(),
                env: app
                    .env
                    .runtime
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
                labels,
                port: app.port,
                host_ip: svc.address.clone(),
                extra_ports: vec![health_port],
            };
            containers::create(&svc.docker, &spec).await?
        }
    };
    progress.set_container(&cid);
    let started = containers::start(&svc.docker, &cid, app.port).await?;
    log.system(format!(
        "started container {} ({}:{} → port {})",
        short(&cid),
        svc.address,
        started.host_port,
        app.port
    ))
    .await;

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
    probe::wait_healthy(&svc.probe_http, &url, &app.health_check, &live, log)
        .await
        .map_err(Error::Health)?;
    wait_docker_healthcheck(svc, &cid, job, log).await?;
    containers::keep_running(&svc.docker, &cid).await?;

    Ok(Ready {
        commit,
        image,
        container: cid,
        host_port: started.host_port,
    })
}

/// Fetches the source and builds the image; returns the commit and the image.
async fn fetch_and_build(
    svc: &Services,
    job: &DeployJob,
    log: &LogSink,
    progress: &Progress,
    checkout: &std::path::Path,
    auth: &source::GitAuth,
) -> Result<(String, String)> {
    let app = &job.app;
    let id = job.deployment_id.as_str();
    progress.set_step("fetching the source");
    svc.events
        .deployment(id, DeploymentStatus::Building, EventFields::default())
        .await;
    let git_ref = job.git_ref.as_deref().unwrap_or(&app.branch);
    let commit = source::fetch(&app.repo, git_ref, checkout, log, auth).await?;
    let (commit_message, commit_author) = source::describe(checkout).await;
    log.system(format!(
        "checked out {commit}: {}",
        commit_message.as_deref().unwrap_or("")
    ))
    .await;
    svc.events
        .deployment(
            id,
            DeploymentStatus::Building,
            EventFields {
                commit: Some(commit.clone()),
                commit_message,
                commit_author,
                ..Default::default()
            },
        )
        .await;

    progress.set_step("building the image");
    let plan = BuildPlan {
        kind: BuildKind::Dockerfile {
            context: app.context.clone(),
            dockerfile: app.dockerfile.clone(),
        },
        tag: format!("berth/{}:{id}", app.name),
        build_args: app.env.build.clone(),
        // No image labels: the classic builder turns each into one more build step with its own
        // intermediate container (about a second each here). The tag names the app and
        // deployment; the container carries the labels.
        labels: HashMap::new(),
    };
    let image = svc.builder.build(checkout, &plan, log).await?;
    log.system(format!("built {image}")).await;
    Ok((commit, image))
}

/// If the image defines a Docker HEALTHCHECK, waits for Docker to call the container healthy
/// too (within the health check's deadline).
async fn wait_docker_healthcheck(
    svc: &Services,
    cid: &str,
    job: &DeployJob,
    log: &LogSink,
) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(job.app.health_check.deadline_s);
    let mut said = false;
    loop {
        match containers::docker_health(&svc.docker, cid).await? {
            None => return Ok(()),
            Some(s) if s == "healthy" => {
                if said {
                    log.system("Docker HEALTHCHECK: healthy").await;
                }
                return Ok(());
            }
            Some(s) if s == "unhealthy" => {
                return Err(Error::Health(
                    "the image's Docker HEALTHCHECK reports unhealthy".into(),
                ))
            }
            Some(_) => {
                if !said {
                    log.system("waiting for the image's Docker HEALTHCHECK")
                        .await;
                    said = true;
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Health(format!(
                "the image's Docker HEALTHCHECK did not report healthy within {} s",
                job.app.health_check.deadline_s
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        })
        .collect();
    if routes.is_empty() {
        log.system("the app has no domains: no route to switch")
            .await;
    } else {
        svc.router
            .send(SetRoutes(routes))
            .await?
            .map_err(|e| Error::Caddy(format!("switching traffic failed: {e}")))?;
        log.system(format!("routed {} to {dial}", app.domains.join(", ")))
            .await;
    }
    Ok(ready)
}

/// After the switch: lets the previous release drain, stops it (keeping it, stopped, so a
/// rollback to it is a start rather than a create), removes older containers, and prunes images
/// of releases no longer offered for rollback. Failures are only logged.
///
/// Which containers are old is decided here, under the app's lock; the waiting and stopping run
/// in the background, so the next deployment of the app does not wait for them, and nothing
/// created after this deployment's container is touched.
async fn drain_previous(svc: &Services, job: &DeployJob, log: &LogSink, ready: &Ready) {
    let keep = ready.container.clone();
    let all = match containers::app_containers_state(&svc.docker, &job.app.name, &svc.node).await {
        Ok(all) => all,
        Err(e) => {
            log.system(format!("could not list previous containers: {e}"))
                .await;
            return;
        }
    };
    let Some(keep_created) = all.iter().find(|c| c.id == keep).map(|c| c.created) else {
        return;
    };
    let running_old: Vec<String> = all
        .iter()
        .filter(|c| c.id != keep && c.running)
        .map(|c| c.id.clone())
        .collect();
    let (docker, log, node) = (svc.docker.clone(), log.clone(), svc.node.clone());
    let builder = svc.builder.clone();
    let app = job.app.name.clone();
    let drain = Duration::from_secs(job.app.drain_s);
    let keep_images = job.keep_images.clone();
    let new_image = ready.image.clone();
    tokio::spawn(async move {
        if !running_old.is_empty() {
            log.system(format!(
                "draining the previous release for {} s before stopping it",
                drain.as_secs()
            ))
            .await;
            tokio::time::sleep(drain).await;
            for c in &running_old {
                log.system(format!("stopping previous container {}", short(c)))
                    .await;
                if let Err(e) = containers::stop(&docker, c, 10).await {
                    log.system(format!("could not stop {}: {e}", short(c)))
                        .await;
                }
            }
        }
        // The newest stopped container older than ours is the previous release: kept.
        let Ok(all) = containers::app_containers_state(&docker, &app, &node).await else {
            return;
        };
        let older_stopped = all
            .iter()
            .filter(|c| c.id != keep && !c.running && c.created <= keep_created);
        for c in older_stopped.skip(1) {
            containers::bounded(
                "removing an old container",
                containers::remove_force(&docker, &c.id),
            )
            .await;
        }
        let Some(keep_images) = keep_images else {
            return;
        };
        // Not while a build runs here: removing an image removes its untagged parents, which a
        // build may be using as cache.
        let Some(_no_builds) = builder.removal(Duration::from_secs(600)).await else {
            log.system("old images not pruned: builds kept running for 10 minutes; the next deployment prunes them")
                .await;
            return;
        };
        let Ok(images) = containers::app_images(&docker, &app).await else {
            return;
        };
        for (image, created) in images {
            if image != new_image && !keep_images.contains(&image) && created <= keep_created {
                match containers::remove_image(&docker, &image).await {
                    Ok(()) => log.system(format!("pruned {image}")).await,
                    Err(e) => tracing::debug!(%image, error = %e, "image kept"),
                }
            }
        }
    });
}

/// Removes every container of `app` on this node and the routes of `domains`.
pub async fn remove_app(svc: &Services, app: &str, domains: &[String]) -> Result<()> {
    for id in containers::app_containers(&svc.docker, app, &svc.node).await? {
        containers::stop_and_remove(&svc.docker, &id).await?;
    }
    svc.router.send(RemoveRoutes(domains.to_vec())).await??;
    // The containers' last lines may have recreated the app's runtime log after the coordinator
    // deleted it; with them gone, nothing writes there any more.
    let mut c = svc.redis.clone();
    if let Err(e) = redis::cmd("DEL")
        .arg(keys::app_log(app))
        .query_async::<()>(&mut c)
        .await
    {
        tracing::warn!(app, error = %e, "could not delete the app's runtime log");
    }
    svc.events.app_removed(app).await;
    Ok(())
}

/// Reports a deployment as failed without running it.
pub async fn fail(svc: &Services, deployment_id: &str, error: String) {
    LogSink::redis(svc.redis.clone(), deployment_id)
        .system(format!("deployment failed: {error}"))
        .await;
    svc.events
        .deployment(
            deployment_id,
            DeploymentStatus::Failed,
            EventFields {
                error: Some(error),
                ..Default::default()
            },
        )
        .await;
}

/// Outcome of trying to claim a deployment job.
pub enum Claim {
    /// This node took it now.
    Taken,
    /// This node took it earlier (it was interrupted, or is a duplicate).
    Ours,
    /// Another node has it.
    Other(String),
}

/// `SET berth:claim:<id> <node> NX EX 7d`: a deployment runs at most once.
pub async fn claim(svc: &Services, deployment_id: &str) -> Result<Claim> {
    let key = keys::job_claim(deployment_id);
    let mut conn = svc.redis.clone();
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&svc.node)
        .arg("NX")
        .arg("EX")
        .arg(604_800)
        .query_async(&mut conn)
        .await?;
    if set.is_some() {
        return Ok(Claim::Taken);
    }
    let owner: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
    Ok(match owner {
        Some(o) if o == svc.node => Claim::Ours,
        Some(o) => Claim::Other(o),
        None => Claim::Other("(expired)".into()),
    })
}

async fn remove_dir(dir: &std::path::Path) {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "could not remove checkout"),
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
