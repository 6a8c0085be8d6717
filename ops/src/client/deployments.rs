//! `berth deployments <app>`, `berth deployment <id>` and `berth log <id> [-f]`: reading
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
/// succeeded).
pub(super) async fn log(c: &Client, a: LogArgs) -> Result<()> {
    if a.follow {
        let end = follow_deployment(c, &a.id).await?;
        if end.status != DeploymentStatus::Succeeded {
            return Err(Failed(format!("deployment {} {}", a.id, end.status)).into());
        }
        return Ok(());
    }
    print!("{}", c.text(&["deployments", &a.id, "logs"]).await?);
    Ok(())
}
