//! The Docker look-ups and clean-up of what a node made, by the node's label: on the main engine
//! (the one `docker` finds by itself) or on another engine's socket (a fleet [`Engine`]'s).
//!
//! [`Engine`]: crate::Engine

use std::process::Command;

use anyhow::Result;

use crate::sh;

/// The `docker` CLI against the engine at `host` (`unix:///…/docker.sock`), or against the main
/// engine when `None`.
pub fn docker_cli(host: Option<&str>) -> Command {
    let mut cmd = Command::new("docker");
    if let Some(h) = host {
        cmd.args(["-H", h]);
    }
    cmd
}

/// Running app containers of one app on one node (from the main Docker engine itself).
pub fn running_containers(app: &str, node: &str) -> Result<Vec<String>> {
    app_containers(None, app, node, "-q")
}

/// Every app container of one app on one node, running or stopped (main engine).
pub fn containers(app: &str, node: &str) -> Result<Vec<String>> {
    app_containers(None, app, node, "-aq")
}

/// The app containers of `app` that `node` made on the engine at `host` (`-q`: running ones,
/// `-aq`: all).
pub(crate) fn app_containers(
    host: Option<&str>,
    app: &str,
    node: &str,
    flags: &str,
) -> Result<Vec<String>> {
    let out = sh(docker_cli(host).args([
        "ps",
        flags,
        "--filter",
        &format!("label=berth.app={app}"),
        "--filter",
        &format!("label=berth.node={node}"),
    ]))?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Removes every container a node made on the main engine, and the images of the given apps.
pub fn docker_cleanup(node: &str, apps: &[&str]) {
    docker_cleanup_on(None, node, apps);
}

/// [`docker_cleanup`] on the engine at `host` (the main engine when `None`).
pub(crate) fn docker_cleanup_on(host: Option<&str>, node: &str, apps: &[&str]) {
    if let Ok(ids) =
        sh(docker_cli(host).args(["ps", "-aq", "--filter", &format!("label=berth.node={node}")]))
    {
        for id in ids.lines() {
            let _ = docker_cli(host).args(["rm", "-f", id]).output();
        }
    }
    // By tag, never by image id: identical builds of other tests' apps share the id, and
    // `rmi -f <id>` would untag theirs too (a build that had just tagged it then finds its
    // image gone).
    for app in apps {
        for reference in [format!("berth/{app}"), format!("*/berth/{app}")] {
            let Ok(tags) = sh(docker_cli(host).args([
                "images",
                "--filter",
                &format!("reference={reference}"),
                "--format",
                "{{.Repository}}:{{.Tag}}",
            ])) else {
                continue;
            };
            for tag in tags.lines().filter(|t| !t.ends_with(":<none>")) {
                let _ = docker_cli(host).args(["rmi", tag]).output();
            }
        }
    }
}
