//! `berth releases <app>`, `berth rollback <app>` and `berth cancel <id>`: the images kept for
//! rollback, going back to one, and stopping a deployment before it switches traffic.

use anyhow::Result;
use berth_protocol::api::Rollback;
use berth_protocol::{Deployment, Release};
use reqwest::Method;

use super::args::RollbackArgs;
use super::deploy::{finish, End};
use super::deployments::{short_commit, show_deployment};
use super::http::Client;
use super::render::{ago, print, print_table, Col};

/// `berth releases`: `*` on the current one, deployment, kind, commit, age, commit message.
pub(super) async fn list(c: &Client, json: bool, app: &str) -> Result<()> {
    let rs: Vec<Release> = c.get(&["apps", app, "releases"], &[]).await?;
    print(json, &rs, |rs| {
        if rs.is_empty() {
            println!("no releases of {app} yet — a release is a deployment that succeeded: `berth deploy {app}`");
            return;
        }
        let rows = rs
            .iter()
            .map(|r| {
                vec![
                    if r.current { "*" } else { " " }.to_string(),
                    r.deployment.clone(),
                    r.kind.as_str().to_string(),
                    short_commit(r.commit.as_deref()).to_string(),
                    ago(r.released_at),
                    r.commit_message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let cols = [
            Col::Left(1),
            Col::Left(17),
            Col::Left(8),
            Col::Left(10),
            Col::Left(8),
            Col::Left(0),
        ];
        let header = ["", "RELEASE", "KIND", "COMMIT", "RELEASED", "MESSAGE"];
        print_table(&cols, Some(&header), rows);
    })
}

/// `berth rollback`: a new deployment of an earlier release, reported like `berth deploy`.
pub(super) async fn rollback(c: &Client, json: bool, a: RollbackArgs) -> Result<()> {
    let body = Rollback { to: a.to };
    let d: Deployment = c
        .call(Method::POST, &["apps", &a.app, "rollback"], Some(&body))
        .await?;
    let end = if a.wait { End::Wait } else { End::Queued };
    finish(c, json, d, end).await
}

/// `berth cancel`.
pub(super) async fn cancel(c: &Client, json: bool, id: &str) -> Result<()> {
    let d: Deployment = c
        .call(Method::POST, &["deployments", id, "cancel"], None::<&()>)
        .await?;
    print(json, &d, show_deployment)
}
