//! Running an app's containers on this node's Docker engine: start the new one with an ephemeral
//! published port, inspect it, read its last log lines, and stop the old ones.
//!
//! Containers carry the labels `berth.app`, `berth.deployment`, `berth.node` and `berth.port`
//! (the app's port inside); the node finds an app's containers by label, never by name.
//!
//! Every app container is confined ([`Confinement`]): all capabilities dropped but a small
//! allow-list ([`CAPABILITIES`]), `no-new-privileges`, memory (no swap beyond it), CPU and
//! process limits, optionally a read-only root file system, and the engine's [`APP_NETWORK`],
//! a bridge with inter-container traffic off: an app reaches another only through Caddy.

use std::collections::HashMap;
use std::time::Duration;

use berth_protocol::{Limits, LogStream};
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerUpdateBody, HostConfig, NetworkCreateRequest,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListNetworksOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::image_build::docker_error_text;
use crate::log_sink::LogSink;
use crate::probe::Liveness;

pub const LABEL_APP: &str = "berth.app";
pub const LABEL_DEPLOYMENT: &str = "berth.deployment";
pub const LABEL_NODE: &str = "berth.node";
/// The container port the app listens on (the one its routes dial, published on the host).
pub const LABEL_PORT: &str = "berth.port";

/// The Docker network app containers (and builds) join: one per engine, a bridge with
/// inter-container traffic off (`com.docker.network.bridge.enable_icc=false`), so no app reaches
/// another's container; each app's port is published on the host for Caddy. One network for all
/// apps rather than one per app: Docker's default address pools hold about 30 bridge networks, so
/// a network per app would cap a node near 30 apps; and this one needs no removal.
pub const APP_NETWORK: &str = "berth-apps";

/// The capabilities an app container keeps; every other one is dropped (`CapDrop: ALL`). An app
/// that starts as root may still bind a port below 1024 (`NET_BIND_SERVICE`), own, read and
/// write its files (`CHOWN`, `DAC_OVERRIDE`, `FOWNER`), signal its children (`KILL`) and switch
/// to an unprivileged user (`SETUID`, `SETGID`). Gone from Docker's default set: `NET_RAW`
/// (raw sockets: spoofing on the bridge), `MKNOD`, `SYS_CHROOT`, `SETPCAP`, `SETFCAP`,
/// `FSETID`, `AUDIT_WRITE`.
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
];

/// The node's limits for what an app leaves unset (`node.app_memory_mb`, `node.app_millicpus`,
/// `node.app_pids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitDefaults {
    pub memory_mb: u64,
    pub millicpus: u32,
    pub pids: u32,
}

impl Default for LimitDefaults {
    fn default() -> Self {
        LimitDefaults {
            memory_mb: 512,
            millicpus: 1000,
            pids: 512,
        }
    }
}

/// What confines one app container: its limits, resolved against the node's defaults, and the
/// network it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    pub read_only: bool,
    /// The id of the engine's [`APP_NETWORK`].
    pub network: String,
}

impl Confinement {
    /// The app's limits, the node's defaults where it sets none; CPU at most the `cpus` the host
    /// has (Docker refuses more).
    pub fn of(limits: &Limits, defaults: &LimitDefaults, cpus: u32, network: String) -> Self {
        let memory_mb = limits.memory_mb.unwrap_or(defaults.memory_mb);
        let millicpus = limits
            .millicpus
            .unwrap_or(defaults.millicpus)
            .min(cpus.max(1).saturating_mul(1000));
        Confinement {
            memory_bytes: (memory_mb as i64).saturating_mul(1 << 20),
            nano_cpus: i64::from(millicpus) * 1_000_000,
            pids: i64::from(limits.pids.unwrap_or(defaults.pids)),
            read_only: limits.read_only,
            network,
        }
    }
}

/// The id of the engine's app network `name` (`node.app_network`, by default [`APP_NETWORK`]),
/// created when missing. Several nodes may share an
/// engine (and Docker 20.10 lets two networks have one name), so a creation race can leave two:
/// every node then takes the oldest and removes the others, which nothing has joined yet.
pub async fn app_network(docker: &Docker, name: &str) -> Result<String> {
    // `node.app_network = "bridge"`: the engine's default bridge, nothing to create (and no
    // isolation between apps beyond the engine's own `icc` setting).
    if name == "bridge" {
        return Ok(name.to_string());
    }
    // One creation at a time within this process.
    static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = CREATING.lock().await;
    if let Some(id) = oldest_app_network(docker, name).await? {
        return Ok(id);
    }
    let body = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".into()),
        options: Some(HashMap::from([(
            "com.docker.network.bridge.enable_icc".to_string(),
            "false".to_string(),
        )])),
        labels: Some(HashMap::from([(
            "berth.network".to_string(),
            "apps".to_string(),
        )])),
        ..Default::default()
    };
    docker
        .create_network(body)
        .await
        .map_err(|e| Error::docker(format_args!("create network {name}"), e))?;
    oldest_app_network(docker, name).await?.ok_or_else(|| {
        Error::Run(format!(
            "network {name} vanished right after it was created"
        ))
    })
}

/// The oldest network named `name`, removing any younger namesake.
async fn oldest_app_network(docker: &Docker, name: &str) -> Result<Option<String>> {
    let opts = ListNetworksOptions {
        filters: Some(HashMap::from([(
            "name".to_string(),
            vec![name.to_string()],
        )])),
    };
    let list = docker
        .list_networks(Some(opts))
        .await
        .map_err(|e| Error::docker("list networks", e))?;
    // The filter matches substrings: keep the exact name.
    let mut same: Vec<(String, String)> = list
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .filter_map(|n| Some((n.created.unwrap_or_default(), n.id?)))
        .collect();
    same.sort();
    let mut it = same.into_iter();
    let Some((_, keep)) = it.next() else {
        return Ok(None);
    };
    for (_, extra) in it {
        if let Err(e) = docker.remove_network(&extra).await {
            tracing::debug!(network = %extra, error = %docker_error_text(&e), "a duplicate app network stays");
        }
    }
    Ok(Some(keep))
}

/// The container to start for a deployment.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub name: String,
    pub image: String,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Port the app listens on inside the container.
    pub port: u16,
    /// Host address the port is published on.
    pub host_ip: String,
    /// Further container ports to publish (a health check on another port).
    pub extra_ports: Vec<u16>,
    /// Its limits, capabilities and network.
    pub confinement: Confinement,
}

/// A started container and the host port its app port is published on.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    pub host_port: u16,
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Creates a container. `on_created` learns its id before it is started (so a caller can clean
/// it up even if starting fails or times out).
pub async fn create(docker: &Docker, spec: &RunSpec) -> Result<String> {
    // A leftover of an interrupted attempt of the same deployment would block the name.
    remove_force(docker, &spec.name).await?;
    let mut ports = vec![spec.port];
    ports.extend(spec.extra_ports.iter().copied().filter(|p| *p != spec.port));
    let keys: Vec<String> = ports.iter().map(|p| format!("{p}/tcp")).collect();
    let bindings: HashMap<_, _> = keys
        .iter()
        .map(|k| {
            (
                k.clone(),
                Some(vec![PortBinding {
                    host_ip: Some(spec.host_ip.clone()),
                    host_port: Some(String::new()),
                }]),
            )
        })
        .collect();
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_PORT.to_string(), spec.port.to_string());
    let c = &spec.confinement;
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        env: Some(spec.env.clone()),
        labels: Some(labels),
        exposed_ports: Some(keys),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            // No restarts while probing, so a crash shows as `exited` with its real code;
            // `unless-stopped` is set once the container is healthy (see `keep_running`).
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            // A tiny init as PID 1 (docker-init): it forwards SIGTERM to the app, so an app
            // without a signal handler (busybox httpd, most scripts) stops at once instead of
            // at the stop timeout, and it reaps zombies.
            init: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            // A setuid binary (or file capabilities) cannot raise what the process may do.
            security_opt: Some(vec!["no-new-privileges".into()]),
            memory: Some(c.memory_bytes),
            // Equal to `memory`: no swap beyond the limit, so the limit is what the app gets.
            memory_swap: Some(c.memory_bytes),
            nano_cpus: Some(c.nano_cpus),
            pids_limit: Some(c.pids),
            readonly_rootfs: Some(c.read_only),
            // A read-only app still has a small scratch directory.
            tmpfs: c.read_only.then(|| {
                HashMap::from([("/tmp".to_string(), "rw,nosuid,nodev,size=64m".to_string())])
            }),
            network_mode: Some(c.network.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(spec.name.clone()),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| Error::docker(format_args!("create {}", spec.name), e))?;
    Ok(created.id)
}

/// Starts a created container and reads back the published host port.
pub async fn start(docker: &Docker, id: &str, port: u16) -> Result<Started> {
    match docker.start_container(id, None).await {
        // Running already (a rollback taking a release that still drains).
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(e) => return Err(Error::docker("start", e)),
    }
    let info = docker
        .inspect_container(id, None)
        .await
        .map_err(|e| Error::docker("inspect", e))?;
    if let Some(state) = &info.state {
        if !state.running.unwrap_or(true) {
            return Err(Error::Run(format!(
                "container exited with code {}",
                state.exit_code.unwrap_or(-1)
            )));
        }
    }
    let host_port = published_port(info, port)?;
    Ok(Started {
        id: id.to_string(),
        host_port,
    })
}

/// Gives a healthy container the restart policy `unless-stopped`.
pub async fn keep_running(docker: &Docker, id: &str) -> Result<()> {
    let body = ContainerUpdateBody {
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    docker
        .update_container(id, body)
        .await
        .map_err(|e| Error::docker("set restart policy", e))
}

/// Copies the last `n` lines of the container's output into the deployment log.
pub async fn copy_tail(docker: &Docker, id: &str, n: usize, log: &LogSink) {
    let opts = LogsOptions {
        stdout: true,
        stderr: true,
        tail: n.to_string(),
        ..Default::default()
    };
    let mut stream = docker.logs(id, Some(opts));
    let mut out: Vec<(LogStream, String)> = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(LogOutput::StdErr { message }) => out.push((
                LogStream::Stderr,
                String::from_utf8_lossy(&message).into_owned(),
            )),
            Ok(other) => out.push((LogStream::Stdout, other.to_string())),
            Err(e) => {
                log.system(format!(
                    "could not read the container's output: {}",
                    docker_error_text(&e)
                ))
                .await;
                return;
            }
        }
    }
    if out.is_empty() {
        log.system("the container wrote no output").await;
        return;
    }
    log.system(format!(
        "last {} line(s) of the container's output:",
        out.len().min(n)
    ))
    .await;
    for (stream, text) in out {
        log.write(stream, &text).await;
    }
}

/// Removes a container by id or name, stopping it if needed; a missing container is fine.
pub async fn remove_force(docker: &Docker, id: &str) -> Result<()> {
    let opts = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::Run(format!(
            "remove {id}: {}",
            docker_error_text(&e)
        ))),
    }
}

/// Stops (10 s grace) and removes a container.
pub async fn stop_and_remove(docker: &Docker, id: &str) -> Result<()> {
    let opts = StopContainerOptions {
        t: Some(10),
        ..Default::default()
    };
    match docker.stop_container(id, Some(opts)).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        // 304: already stopped. Anything else: removal with force still gets rid of it.
        Err(e) => tracing::debug!(container = id, error = %e, "stop failed"),
    }
    remove_force(docker, id).await
}

/// Ids of every container (running or not) of `app` on `node`.
pub async fn app_containers(docker: &Docker, app: &str, node: &str) -> Result<Vec<String>> {
    Ok(app_containers_state(docker, app, node)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect())
}

/// A container being probed: inspected to notice when its app exits.
pub struct ContainerLiveness {
    pub docker: Docker,
    pub id: String,
}

impl Liveness for ContainerLiveness {
    async fn check(&self) -> Result<(), String> {
        let info = match self.docker.inspect_container(&self.id, None).await {
            Ok(i) => i,
            Err(e) => {
                // The engine being slow is not the app's fault: let the probe go on.
                tracing::warn!(container = %self.id, error = %e, "inspect failed while probing");
                return Ok(());
            }
        };
        let restarts = info.restart_count.unwrap_or(0);
        let Some(state) = info.state else {
            return Ok(());
        };
        let running = state.running.unwrap_or(false);
        let restarting = state.restarting.unwrap_or(false);
        if !running || restarting || restarts > 0 {
            let code = state.exit_code.unwrap_or(-1);
            let mut msg = format!("container exited with code {code}");
            if state.oom_killed.unwrap_or(false) {
                msg.push_str(" (killed: out of memory)");
            }
            if let Some(err) = state.error.filter(|e| !e.is_empty()) {
                msg.push_str(&format!(": {err}"));
            }
            return Err(msg);
        }
        Ok(())
    }
}

/// Bounds a Docker clean-up call so a stuck engine cannot hold a job forever.
pub async fn bounded<F: std::future::Future<Output = Result<()>>>(what: &str, f: F) {
    match tokio::time::timeout(Duration::from_secs(30), f).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "{what} failed"),
        Err(_) => tracing::warn!("{what} timed out"),
    }
}

/// One of an app's containers, as the engine lists it.
#[derive(Debug, Clone)]
pub struct AppContainer {
    pub id: String,
    pub deployment: Option<String>,
    pub running: bool,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// The image it was created from, as named then.
    pub image: Option<String>,
    /// Being removed, or dead: it cannot run again.
    pub going: bool,
}

/// The containers carrying every one of `labels` (`key` or `key=value`): all of them, or only
/// the running ones.
async fn labelled(
    docker: &Docker,
    labels: Vec<String>,
    all: bool,
) -> Result<Vec<ContainerSummary>> {
    let opts = ListContainersOptions {
        all,
        filters: Some(HashMap::from([("label".to_string(), labels)])),
        ..Default::default()
    };
    docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| Error::Run(format!("list containers: {}", docker_error_text(&e))))
}

/// This node's running app containers (for stats and log shipping).
pub async fn running_app_containers(docker: &Docker, node: &str) -> Result<Vec<ContainerSummary>> {
    let labels = vec![format!("{LABEL_NODE}={node}"), LABEL_APP.to_string()];
    labelled(docker, labels, false).await
}

/// Every container of `app` on `node` with its state, newest first.
pub async fn app_containers_state(
    docker: &Docker,
    app: &str,
    node: &str,
) -> Result<Vec<AppContainer>> {
    let labels = vec![format!("{LABEL_APP}={app}"), format!("{LABEL_NODE}={node}")];
    let list = labelled(docker, labels, true).await?;
    let mut out: Vec<AppContainer> = list
        .into_iter()
        .filter_map(|c| {
            Some(AppContainer {
                deployment: c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_DEPLOYMENT).cloned()),
                running: c
                    .state
                    .as_ref()
                    .is_some_and(|s| format!("{s:?}").eq_ignore_ascii_case("running")),
                created: c.created.unwrap_or(0),
                going: c.state.as_ref().is_some_and(|s| {
                    let s = format!("{s:?}");
                    s.eq_ignore_ascii_case("removing") || s.eq_ignore_ascii_case("dead")
                }),
                image: c.image,
                id: c.id?,
            })
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.created));
    Ok(out)
}

/// Stops a container (keeping it), with `grace_s` for the app to finish.
pub async fn stop(docker: &Docker, id: &str, grace_s: i32) -> Result<()> {
    let opts = StopContainerOptions {
        t: Some(grace_s),
        ..Default::default()
    };
    match docker.stop_container(id, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(e) => Err(Error::Run(format!("stop {id}: {}", docker_error_text(&e)))),
    }
}

/// The host port a container port is published on.
pub async fn host_port(docker: &Docker, id: &str, port: u16) -> Result<u16> {
    let info = docker
        .inspect_container(id, None)
        .await
        .map_err(|e| Error::docker("inspect", e))?;
    published_port(info, port)
}

/// The host port `port/tcp` is published on, from an inspect answer.
fn published_port(info: bollard::models::ContainerInspectResponse, port: u16) -> Result<u16> {
    let key = format!("{port}/tcp");
    info.network_settings
        .and_then(|n| n.ports)
        .and_then(|mut p| p.remove(&key))
        .flatten()
        .and_then(|b| b.into_iter().find_map(|b| b.host_port))
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| Error::Run(format!("docker did not publish port {key}")))
}

/// The TCP ports an image declares with `EXPOSE` (empty when it declares none, or when the
/// engine cannot tell).
pub async fn image_exposed_ports(docker: &Docker, image: &str) -> Vec<u16> {
    match docker.inspect_image(image).await {
        Ok(info) => tcp_ports(
            &info
                .config
                .and_then(|c| c.exposed_ports)
                .unwrap_or_default(),
        ),
        Err(e) => {
            tracing::debug!(%image, error = %docker_error_text(&e), "cannot inspect the image's ports");
            Vec::new()
        }
    }
}

/// `["9090/tcp", "53/udp", "80"]` → `[80, 9090]`.
fn tcp_ports(exposed: &[String]) -> Vec<u16> {
    let mut ports: Vec<u16> = exposed
        .iter()
        .filter_map(|p| match p.split_once('/') {
            Some((n, proto)) if proto.eq_ignore_ascii_case("tcp") => n.parse().ok(),
            Some(_) => None,
            None => p.parse().ok(),
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// "the image exposes 9090, the app's port is 8080" when the image EXPOSEs ports and the app's
/// is not one of them; `None` when it is, or when the image declares none (EXPOSE is optional).
pub fn port_mismatch(exposed: &[u16], port: u16) -> Option<String> {
    if exposed.is_empty() || exposed.contains(&port) {
        return None;
    }
    let list: Vec<String> = exposed.iter().map(u16::to_string).collect();
    Some(format!(
        "the image exposes {}, the app's port is {port}",
        list.join(", ")
    ))
}

/// The container's Docker HEALTHCHECK status (`starting`, `healthy`, `unhealthy`), if its image
/// defines one.
pub async fn docker_health(docker: &Docker, id: &str) -> Result<Option<String>> {
    let info = docker
        .inspect_container(id, None)
        .await
        .map_err(|e| Error::docker("inspect", e))?;
    Ok(info
        .state
        .and_then(|s| s.health)
        .and_then(|h| h.status)
        .map(|s| s.to_string().to_lowercase())
        .filter(|s| !s.is_empty() && s != "none"))
}

/// Image references `berth/<app>:*` on this engine, with their creation time (epoch seconds).
pub async fn app_images(docker: &Docker, app: &str) -> Result<Vec<(String, i64)>> {
    // The build's own tag, and the registry's (`<host:port>/berth/<app>`; `*` matches no `/`).
    let refs = vec![format!("berth/{app}"), format!("*/berth/{app}")];
    let filters = HashMap::from([("reference".to_string(), refs)]);
    let opts = bollard::query_parameters::ListImagesOptions {
        filters: Some(filters),
        ..Default::default()
    };
    let list = docker
        .list_images(Some(opts))
        .await
        .map_err(|e| Error::Run(format!("list images: {}", docker_error_text(&e))))?;
    Ok(list
        .into_iter()
        .flat_map(|i| {
            let created = i.created;
            i.repo_tags.into_iter().map(move |t| (t, created))
        })
        .collect())
}

/// Removes an image tag; an image still used by a container is left alone.
pub async fn remove_image(docker: &Docker, image: &str) -> Result<()> {
    match docker
        .remove_image(
            image,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::Run(format!(
            "remove image {image}: {}",
            docker_error_text(&e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_ports_and_the_mismatch_sentence() {
        let exposed = tcp_ports(&[
            "9090/tcp".into(),
            "53/udp".into(),
            "80".into(),
            "9090/TCP".into(),
        ]);
        assert_eq!(exposed, vec![80, 9090]);
        assert_eq!(
            port_mismatch(&[9090], 8080).as_deref(),
            Some("the image exposes 9090, the app's port is 8080")
        );
        assert_eq!(
            port_mismatch(&exposed, 8080).as_deref(),
            Some("the image exposes 80, 9090, the app's port is 8080")
        );
        assert_eq!(port_mismatch(&exposed, 9090), None);
        assert_eq!(port_mismatch(&[], 8080), None, "EXPOSE is optional");
    }
}
