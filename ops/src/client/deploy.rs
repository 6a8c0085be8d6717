//! `berth deploy <app>` (with `--wait` or `--follow`), and how a new deployment — a deploy or a
//! rollback — is reported: its id and status, then with waiting every status change until it is
//! terminal, and exit 1 unless it succeeded.

use std::time::Duration;

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
    if let Some(dir) = &a.dir {
        let d = upload(c, json, &a.app, dir, a.no_cache).await?;
        return report(c, json, d, a.wait, a.follow).await;
    }
    let body = CreateDeployment {
        git_ref: a.git_ref,
        no_cache: a.no_cache,
    };
    let d: Deployment = c
        .call(Method::POST, &["apps", &a.app, "deployments"], Some(&body))
        .await?;
    report(c, json, d, a.wait, a.follow).await
}

/// Packs `dir` as the app's build context and uploads it: the server keeps it and queues its
/// deployment.
async fn upload(
    c: &Client,
    json: bool,
    app: &str,
    dir: &std::path::Path,
    no_cache: bool,
) -> Result<Deployment> {
    let a: berth_protocol::App = c.get(&["apps", app], &[]).await?;
    let (dir2, context, dockerfile) = (dir.to_path_buf(), a.context.clone(), a.dockerfile.clone());
    let packed = tokio::task::spawn_blocking(move || {
        super::upload::pack(&dir2, &context, &dockerfile, super::upload::CLIENT_MAX)
    })
    .await??;
    if !json {
        eprintln!(
            "uploading {} ({} files, {} KiB, sha256:{})",
            dir.display(),
            packed.files,
            (packed.bytes.len() as u64).div_ceil(1024),
            &packed.sha256[..12]
        );
    }
    let size = packed.bytes.len() as u64;
    let query: &[(&str, &str)] = if no_cache {
        &[("no_cache", "true")]
    } else {
        &[]
    };
    match c
        .post_archive(&["apps", app, "uploads"], query, packed.bytes)
        .await
    {
        Err(e) if e.to_string().contains("HTTP 413") => Err(Failed(format!(
            "{} packs to {} MiB, more than the API accepts (api.upload_max_mb): leave out what \
             the image does not need with .gitignore or .dockerignore",
            dir.display(),
            size.div_ceil(1024 * 1024)
        ))
        .into()),
        r => r,
    }
}

/// Reports a deployment the server queued (a deploy, restart or start): with `follow` its log
/// live, with `wait` each status, then how it ended.
pub(super) async fn report(
    c: &Client,
    json: bool,
    d: Deployment,
    wait: bool,
    follow: bool,
) -> Result<()> {
    if follow {
        println!("{}  {}", d.id, d.status);
        follow_deployment(c, &d.id).await?;
        let d: Deployment = c.get(&["deployments", &d.id], &[]).await?;
        return finish(c, json, d, End::Followed).await;
    }
    let end = if wait { End::Wait } else { End::Queued };
    finish(c, json, d, end).await
}

/// How far a command goes with a new deployment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Print it as queued and return.
    Queued,
    /// Poll it to its end, printing each status, then the record.
    Wait,
    /// Its log was printed live to its end (the log's last line says why it failed): only the
    /// timeline is left to print.
    Followed,
}

/// Prints a new deployment and, unless `end` is [`End::Queued`], how it ended (error unless it
/// succeeded). The reason of a failure is printed once: by the record (`--wait`), or by the log
/// already followed (`--follow`); the command's error names only the outcome then.
pub(super) async fn finish(c: &Client, json: bool, mut d: Deployment, end: End) -> Result<()> {
    if !json && end != End::Followed {
        println!("{}  {}", d.id, d.status);
    }
    if end == End::Wait {
        d = wait(c, &d.id, json).await?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        if end == End::Wait {
            show_deployment(&d);
        }
        if end != End::Queued {
            for line in timeline(&d) {
                println!("  {line}");
            }
        }
    }
    if end != End::Queued && d.status == DeploymentStatus::Succeeded && !json {
        if let Ok(url) = super::lifecycle::app_url(c, &d.app).await {
            println!("{} is live at {url}", d.app);
        }
    }
    if end != End::Queued && d.status != DeploymentStatus::Succeeded {
        let reason = match (json, end) {
            // Printed above, in the record or as the log's last line.
            (false, _) => String::new(),
            _ => format!(": {}", d.error.as_deref().unwrap_or("no reason given")),
        };
        return Err(Failed(format!("deployment {} {}{reason}", d.id, d.status)).into());
    }
    Ok(())
}

/// How long `--wait` waits out a Redis outage (the API's 503) before it gives up.
const OUTAGE_PATIENCE: Duration = Duration::from_secs(300);

/// Polls a deployment until it is terminal, printing each status change.
async fn wait(c: &Client, id: &str, json: bool) -> Result<Deployment> {
    let mut last = None;
    loop {
        // A Redis outage pauses the watch (the deployment itself resumes when Redis is back).
        let d: Deployment = c
            .get_patiently(&["deployments", id], OUTAGE_PATIENCE)
            .await?;
        if last != Some(d.status) {
            if !json && last.is_some() && !d.status.is_terminal() {
                println!("{}  {}", d.id, d.status);
            }
            last = Some(d.status);
        }
        if d.status.is_terminal() {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A deployment's times as its record has them: when it was queued, when a node started it,
/// when it ended — each as a UTC time of day and the time since it was queued.
pub(super) fn timeline(d: &Deployment) -> Vec<String> {
    let mut marks = vec![("queued".to_string(), d.created_at)];
    if let Some(t) = d.started_at {
        marks.push(("started".into(), t));
    }
    if let Some(t) = d.finished_at {
        marks.push((d.status.to_string(), t));
    }
    marks
        .into_iter()
        .enumerate()
        .map(|(i, (what, t))| {
            let since = if i == 0 {
                String::new()
            } else {
                format!("  +{:.1} s", t.saturating_sub(d.created_at) as f64 / 1000.0)
            };
            format!("{what:<10} {} UTC{since}", clock(t))
        })
        .collect()
}

/// `HH:MM:SS` (UTC) of an epoch-ms time.
fn clock(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_comes_from_the_record() {
        let mut d: Deployment = serde_json::from_value(serde_json::json!({
            "id": "d1", "app": "web", "status": "failed",
            // 2024-01-01T10:00:01.500Z
            "created_at": 1_704_103_201_500u64,
            "started_at": 1_704_103_201_700u64,
            "finished_at": 1_704_103_262_900u64,
            "error": "no answer on port 8080"
        }))
        .unwrap();
        assert_eq!(
            timeline(&d),
            vec![
                "queued     10:00:01 UTC",
                "started    10:00:01 UTC  +0.2 s",
                "failed     10:01:02 UTC  +61.4 s",
            ]
        );
        d.started_at = None;
        d.finished_at = None;
        d.status = DeploymentStatus::Queued;
        assert_eq!(timeline(&d), vec!["queued     10:00:01 UTC"]);
    }
}
