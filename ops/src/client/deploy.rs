//! `berth deploy <app>` (with `--wait` or `--follow`), and how a new deployment — a deploy or a
//! rollback — is reported: its id and status, then with waiting every status change until it is
//! terminal, and exit 1 unless it succeeded.

use std::time::{Duration, Instant};

use anyhow::Result;
use berth_protocol::api::CreateDeployment;
use berth_protocol::{Deployment, DeploymentStatus};
use reqwest::Method;

use super::args::DeployArgs;
use super::deployments::show_deployment;
use super::follow::follow_deployment;
use super::http::Client;
use super::Failed;

pub(super) async fn run(c: &Client, json: bool, a: DeployArgs) -> Result<()> {
    let body = CreateDeployment { git_ref: a.git_ref };
    let d: Deployment = c
        .call(Method::POST, &["apps", &a.app, "deployments"], Some(&body))
        .await?;
    if a.follow {
        println!("{}  {}", d.id, d.status);
        follow_deployment(c, &d.id).await?;
        let d: Deployment = c.get(&["deployments", &d.id], &[]).await?;
        return finish(c, json, d, true).await;
    }
    finish(c, json, d, a.wait).await
}

/// Prints a new deployment and, with `wait_for_end`, follows it to its end (error unless it
/// succeeded).
pub(super) async fn finish(
    c: &Client,
    json: bool,
    mut d: Deployment,
    wait_for_end: bool,
) -> Result<()> {
    if !json {
        println!("{}  {}", d.id, d.status);
    }
    if wait_for_end {
        d = wait(c, &d.id, json).await?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    }
    if wait_for_end && d.status == DeploymentStatus::Succeeded && !json {
        if let Ok(url) = super::lifecycle::app_url(c, &d.app).await {
            println!("{} is live at {url}", d.app);
        }
    }
    if wait_for_end && d.status != DeploymentStatus::Succeeded {
        return Err(Failed(format!(
            "deployment {} {}: {}",
            d.id,
            d.status,
            d.error.as_deref().unwrap_or("no reason given")
        ))
        .into());
    }
    Ok(())
}

/// Polls a deployment until it is terminal, printing each status change.
async fn wait(c: &Client, id: &str, json: bool) -> Result<Deployment> {
    let started = Instant::now();
    let mut last = None;
    loop {
        let d: Deployment = c.get(&["deployments", id], &[]).await?;
        if last != Some(d.status) {
            if !json {
                println!("{:>6.1}s  {}", started.elapsed().as_secs_f64(), d.status);
            }
            last = Some(d.status);
        }
        if d.status.is_terminal() {
            if !json {
                show_deployment(&d);
            }
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
