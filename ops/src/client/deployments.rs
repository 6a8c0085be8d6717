//! `berth deployments <app>`, `berth deployment <id>` and `berth log <id|app> [-f]`: reading
//! deployments and their build and deploy log.

use anyhow::Result;
use berth_protocol::{Deployment, DeploymentStatus};

use super::args::LogArgs;
use super::follow::follow_deployment;
use super::http::Client;
use super::render::{ago, print, print_table, Col};
use super::Failed;

/// `berth deployments`: id, status, commit, age, error; newest first as the server lists them.
pub(super) async fn list(c: &Client, json: bool, app: &str) -> Result<()> {
    let ds: Vec<Deployment> = c.get(&["apps", app, "deployments"], &[]).await?;
    print(json, &ds, |ds| {
        let rows = ds
            .iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    d.status.to_string(),
                    short_commit(d.commit.as_deref()).to_string(),
                    ago(d.created_at),
                    d.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let cols = [
            Col::Left(22),
            Col::Left(10),
            Col::Left(12),
            Col::Left(9),
            Col::Left(0),
        ];
        print_table(&cols, None, rows);
    })
}

/// The first 10 characters of a commit hash, `-` without one.
pub(super) fn short_commit(commit: Option<&str>) -> &str {
    commit.map(|c| &c[..c.len().min(10)]).unwrap_or("-")
}

/// `berth deployment`.
pub(super) async fn show(c: &Client, json: bool, id: &str) -> Result<()> {
    let d: Deployment = c.get(&["deployments", id], &[]).await?;
    print(json, &d, show_deployment)
}

/// A deployment as text: id, app and status, then what is known of it.
pub(super) fn show_deployment(d: &Deployment) {
    println!("{}  {}  {}", d.id, d.app, d.status);
    if let Some(c) = &d.commit {
        println!("  commit: {c}");
    }
    if let Some(n) = &d.node {
        println!("  node:   {n}");
    }
    if let Some(i) = &d.image {
        println!("  image:  {i}");
    }
    if let Some(e) = &d.error {
        println!("  error:  {e}");
    }
}

/// `berth log`: the log so far, or with `-f` live until the deployment ends (exit 1 unless it
/// succeeded). An app's name stands for its latest deployment.
pub(super) async fn log(c: &Client, a: LogArgs) -> Result<()> {
    let id = deployment_or_latest(c, &a.id).await?;
    if a.follow {
        let end = follow_deployment(c, &id).await?;
        if end.status != DeploymentStatus::Succeeded {
            return Err(Failed(format!("deployment {id} {}", end.status)).into());
        }
        return Ok(());
    }
    print!("{}", c.text(&["deployments", &id, "logs"]).await?);
    Ok(())
}

/// `name` if it is a deployment, else the latest deployment of the app `name`.
async fn deployment_or_latest(c: &Client, name: &str) -> Result<String> {
    if c.exists(&["deployments", name]).await? {
        return Ok(name.to_string());
    }
    if !c.exists(&["apps", name]).await? {
        return Err(Failed(format!(
            "no deployment or app is named {name:?} (`berth apps list` lists the apps, `berth deployments <APP>` an app's deployments)"
        ))
        .into());
    }
    let ds: Vec<Deployment> = c.get(&["apps", name, "deployments"], &[]).await?;
    match ds.first() {
        Some(d) => {
            eprintln!("the latest deployment of {name}: {}", d.id);
            Ok(d.id.clone())
        }
        None => Err(Failed(format!(
            "app {name} has no deployment yet: `berth deploy {name}` makes one"
        ))
        .into()),
    }
}

/// What `berth logs <NAME>` says when there is no app of that name: that it is a deployment,
/// whose log is `berth log`, when it is one.
pub(super) async fn logs_hint(c: &Client, name: &str, e: anyhow::Error) -> anyhow::Error {
    if c.exists(&["apps", name]).await.unwrap_or(true)
        || !c.exists(&["deployments", name]).await.unwrap_or(false)
    {
        return e;
    }
    Failed(format!(
        "{name} is a deployment, not an app: its build and deploy log is `berth log {name}` (`berth logs <APP>` prints an app's runtime log)"
    ))
    .into()
}
