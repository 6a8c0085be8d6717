//! `berth deployments <app>`, `berth deployment <id>` and `berth log <id|app> [-f]`: reading
//! deployments and their build and deploy log.

use anyhow::Result;
use berth_protocol::now_ms;
use berth_protocol::{Deployment, DeploymentKind, DeploymentStatus};

use super::args::LogArgs;
use super::follow::follow_deployment;
use super::http::Client;
use super::render::{ago, for_output, print, print_table, span, when, Col};
use super::Failed;

/// `berth deployments`: id, kind, status, commit, age, error; newest first as the server lists
/// them.
pub(super) async fn list(c: &Client, json: bool, app: &str) -> Result<()> {
    let ds: Vec<Deployment> = c.get(&["apps", app, "deployments"], &[]).await?;
    print(json, &ds, |ds| {
        if ds.is_empty() {
            println!("no deployments of {app} yet — `berth deploy {app}`");
            return;
        }
        let rows = ds
            .iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    d.kind.as_str().to_string(),
                    d.status.to_string(),
                    match &d.upload {
                        Some(u) => format!("upload:{}", &u.sha256[..u.sha256.len().min(7)]),
                        None => short_commit(d.commit.as_deref()).to_string(),
                    },
                    ago(d.created_at),
                    d.error
                        .as_deref()
                        .and_then(|e| e.lines().next())
                        .unwrap_or_default()
                        .to_string(),
                ]
            })
            .collect();
        let cols = [
            Col::Left(17),
            Col::Left(8),
            Col::Left(9),
            Col::Left(10),
            Col::Left(8),
            Col::Left(0),
        ];
        let header = ["ID", "KIND", "STATUS", "COMMIT", "CREATED", "ERROR"];
        print_table(&cols, Some(&header), rows);
    })
}

/// The first 10 characters of a commit hash, `-` without one.
pub(super) fn short_commit(commit: Option<&str>) -> &str {
    commit.map(|c| &c[..c.len().min(10)]).unwrap_or("-")
}

/// `berth deployment`.
pub(super) async fn show(c: &Client, json: bool, id: &str) -> Result<()> {
    let d: Deployment = c.get(&["deployments", id], &[]).await?;
    print(json, &d, |d| {
        show_deployment(d);
        if let Some(text) = &d.dockerfile {
            print!("{}", dockerfile_text(text));
        }
    })
}

/// The Dockerfile a deployment's build used, indented under a heading.
fn dockerfile_text(text: &str) -> String {
    let mut out = String::from("  dockerfile:\n");
    for l in text.lines() {
        out.push_str(&format!("    {l}\n"));
    }
    out
}

/// A deployment as text: id, app and status, then what is known of it.
pub(super) fn show_deployment(d: &Deployment) {
    print!("{}", deployment_text(d));
}

fn deployment_text(d: &Deployment) -> String {
    let mut out = format!("{}  {}  {}\n", d.id, d.app, d.status);
    let mut kv = |k: &str, v: &str| out.push_str(&format!("  {:<9} {v}\n", format!("{k}:")));
    match (&d.rollback_of, d.kind) {
        (Some(of), DeploymentKind::Rollback) => {
            kv("kind", &format!("rollback to the release of {of}"))
        }
        _ => kv("kind", d.kind.as_str()),
    }
    if let Some(u) = &d.upload {
        kv(
            "source",
            &format!(
                "uploaded directory sha256:{} ({} KiB)",
                u.sha256,
                u.size.div_ceil(1024)
            ),
        );
    } else if let Some(c) = &d.commit {
        kv("commit", short_commit(Some(c)));
    } else if let Some(r) = &d.git_ref {
        kv("ref", r);
    }
    if d.no_cache {
        kv("cache", "none (built with no cached layer)");
    }
    if let Some(m) = &d.commit_message {
        kv("message", m.lines().next().unwrap_or_default());
    }
    if let Some(a) = &d.commit_author {
        kv("author", a);
    }
    if let Some(n) = &d.node {
        kv("node", n);
    }
    if let Some(i) = &d.image {
        kv("image", i);
    }
    kv("created", &when(d.created_at));
    match d.finished_at {
        Some(end) => kv("duration", &span(end.saturating_sub(d.created_at))),
        None if !d.status.is_terminal() => kv(
            "running",
            &format!("for {}", span(now_ms().saturating_sub(d.created_at))),
        ),
        None => {}
    }
    if let Some(e) = &d.error {
        kv("error", e);
    }
    out
}

/// `berth log`: the log so far, or with `-f` live until the deployment ends (exit 1 unless it
/// succeeded). An app's name stands for its latest deployment.
pub(super) async fn log(c: &Client, a: LogArgs) -> Result<()> {
    let id = deployment_or_latest(c, &a.target).await?;
    if a.follow {
        let end = follow_deployment(c, &id).await?;
        if end.status != DeploymentStatus::Succeeded {
            return Err(Failed(format!("deployment {id} {}", end.status)).into());
        }
        return Ok(());
    }
    print!(
        "{}",
        for_output(&c.text(&["deployments", &id, "logs"]).await?)
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_deployment_shows_kind_commit_author_and_duration() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "id": "d1", "app": "web", "status": "failed", "kind": "deploy",
            "commit": "0123456789abcdef", "commit_message": "Fix the greeting\n\nlong body",
            "commit_author": "Ada <ada@example.com>", "node": "n1", "image": "berth/web:d1",
            "created_at": 1_000, "finished_at": 43_100, "error": "the health check failed"
        }))
        .unwrap();
        let text = deployment_text(&d);
        for want in [
            "d1  web  failed\n",
            "  kind:     deploy\n",
            "  commit:   0123456789\n",
            "  message:  Fix the greeting\n",
            "  author:   Ada <ada@example.com>\n",
            "  node:     n1\n",
            "  image:    berth/web:d1\n",
            "  created:  1970-01-01T00:00:01Z (",
            "  duration: 42.1s\n",
            "  error:    the health check failed\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}
