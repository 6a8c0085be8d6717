//! `berth apps create|list|show|delete|scale`: an app's record through `/api/v1/apps`. (`berth
//! apps webhook` has its own module: it only reads the app to explain GitHub's form.)

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_protocol::api::{CreateApp, HealthCheckPatch, PatchApp};
use berth_protocol::secret::GitCredential;
use berth_protocol::{App, EnvVars, Placement, Strategy};
use reqwest::Method;

use super::args::CreateArgs;
use super::http::Client;
use super::render::{print, print_table, Col};
use super::Failed;

/// `berth apps create`: the credential files are read here and sent sealed by the server.
pub(super) async fn create(c: &Client, json: bool, a: CreateArgs) -> Result<()> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let git_credential = match (&a.git_token_file, &a.ssh_key_file) {
        (Some(f), _) => Some(GitCredential::HttpsToken {
            username: "x-access-token".into(),
            token: read(f)?.trim().to_string(),
        }),
        (None, Some(f)) => Some(GitCredential::SshKey {
            private_key: read(f)?,
        }),
        (None, None) => None,
    };
    let req = CreateApp {
        git_credential,
        drain_s: a.drain_s,
        keep_releases: a.keep_releases,
        name: a.name,
        repo: repo_arg(&a.repo)?,
        branch: a.branch,
        dockerfile: a.dockerfile,
        context: a.context,
        port: a.port,
        domains: (!a.domains.is_empty()).then_some(a.domains),
        env: Some(EnvVars {
            runtime: a.env.into_iter().collect::<BTreeMap<_, _>>(),
            build: a.build_env.into_iter().collect(),
        }),
        health_check: Some(HealthCheckPatch {
            path: a.health_path,
            deadline_s: a.health_deadline,
            ..Default::default()
        }),
        auto_deploy: None,
        placement: Some(Placement {
            constraints: a.constraints,
            strategy: match a.strategy.as_deref() {
                Some("binpack") => Strategy::Binpack,
                _ => Strategy::Spread,
            },
            memory_mb: a.memory.unwrap_or(0),
        }),
        replicas: a.replicas,
        max_surge: a.max_surge,
        standby_s: a.standby_s,
    };
    let app: App = c.call(Method::POST, &["apps"], Some(&req)).await?;
    print(json, &app, |a| {
        println!("created app {} → http://{}", a.name, a.domains[0])
    })
}

/// `berth apps list`: name, domains, repository.
pub(super) async fn list(c: &Client, json: bool) -> Result<()> {
    let apps: Vec<App> = c.get(&["apps"], &[]).await?;
    print(json, &apps, |apps| {
        let rows = apps
            .iter()
            .map(|a| vec![a.name.clone(), a.domains.join(","), a.repo.clone()])
            .collect();
        print_table(&[Col::Left(24), Col::Left(32), Col::Left(0)], None, rows);
    })
}

/// `berth apps show`: the whole record, as JSON either way.
pub(super) async fn show(c: &Client, json: bool, name: &str) -> Result<()> {
    let app: App = c.get(&["apps", name], &[]).await?;
    print(json, &app, |a| {
        println!("{}", serde_json::to_string_pretty(a).unwrap_or_default())
    })
}

/// `berth apps delete`: asks for the app's name on a terminal, unless `--yes`; refuses without
/// a terminal and without `--yes`.
pub(super) async fn delete(c: &Client, json: bool, name: &str, yes: bool) -> Result<()> {
    if !yes {
        // The app must exist before anyone is asked to type its name.
        let app: App = c.get(&["apps", name], &[]).await?;
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "not deleting app {name} without confirmation: there is no terminal to ask on; \
                 pass --yes (-y) to delete it"
            );
        }
        eprint!(
            "Delete app {name}: its containers, routes ({}), releases and images on every node? \
             Type the app's name to confirm: ",
            app.domains.join(", ")
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !confirmed(&answer, name) {
            return Err(Failed(format!(
                "app {name} not deleted: the answer was not its name"
            ))
            .into());
        }
    }
    let _: serde_json::Value = c.call(Method::DELETE, &["apps", name], None::<&()>).await?;
    print(json, &serde_json::json!({"deleted": name}), |_| {
        println!("deleted app {name}")
    })
}

/// Whether the answer to "type the app's name" confirms deleting `app`.
fn confirmed(answer: &str, app: &str) -> bool {
    answer.trim() == app
}

/// The `--repo` argument as the server should store it: a URL (`https://…`, `ssh://…`,
/// `git@host:path`) as given; an existing local directory as an absolute path, since the server
/// resolves it at every deploy, from its own working directory. Anything else as given (the
/// server says whether it can reach it).
pub(super) fn repo_arg(repo: &str) -> Result<String> {
    if looks_like_url(repo) {
        return Ok(repo.to_string());
    }
    let path = std::path::Path::new(repo);
    if !path.is_dir() {
        return Ok(repo.to_string());
    }
    let abs = std::fs::canonicalize(path).with_context(|| format!("resolving {repo}"))?;
    abs.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not a UTF-8 path", abs.display()))
}

/// A URL or git's `host:path` form (a `:` before any `/`), rather than a local path.
fn looks_like_url(repo: &str) -> bool {
    if repo.contains("://") {
        return true;
    }
    match repo.find(':') {
        Some(colon) => !repo[..colon].contains('/'),
        None => false,
    }
}

/// `berth apps scale`: a PATCH of `replicas` only; the coordinator reacts to the change.
pub(super) async fn scale(c: &Client, json: bool, name: &str, replicas: u32) -> Result<()> {
    let req = PatchApp {
        replicas: Some(replicas),
        ..Default::default()
    };
    let app: App = c.call(Method::PATCH, &["apps", name], Some(&req)).await?;
    print(json, &app, |a| {
        println!("app {}: {} replicas", a.name, a.replicas)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_repositories_become_absolute_and_urls_stay() {
        for url in [
            "https://github.com/a/b.git",
            "ssh://git@host/a.git",
            "git@github.com:a/b.git",
            "file:///srv/git/a.git",
        ] {
            assert_eq!(repo_arg(url).unwrap(), url);
        }
        let dir = std::env::temp_dir().join(format!("berth-repo-arg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("app")).unwrap();
        let expected = std::fs::canonicalize(dir.join("app")).unwrap();
        let relative = dir.join("app/../app");
        assert_eq!(
            repo_arg(relative.to_str().unwrap()).unwrap(),
            expected.to_str().unwrap()
        );
        // Not a directory here: left for the server to judge.
        assert_eq!(
            repo_arg("./no-such-dir-here").unwrap(),
            "./no-such-dir-here"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_apps_name_confirms() {
        assert!(confirmed("web\n", "web"));
        assert!(!confirmed("y\n", "web"));
        assert!(!confirmed("", "web"));
    }
}
