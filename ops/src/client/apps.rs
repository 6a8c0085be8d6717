//! `berth apps create|list|show|delete|scale`: an app's record through `/api/v1/apps`. (`berth
//! apps webhook` has its own module: it only reads the app to explain GitHub's form.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_protocol::api::{CreateApp, HealthCheckPatch, PatchApp};
use berth_protocol::secret::GitCredential;
use berth_protocol::{App, EnvVars, Placement, Strategy};
use reqwest::Method;

use super::args::CreateArgs;
use super::http::Client;
use super::render::{print, print_table, Col};

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
        repo: a.repo,
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

/// `berth apps delete`.
pub(super) async fn delete(c: &Client, json: bool, name: &str) -> Result<()> {
    let _: serde_json::Value = c.call(Method::DELETE, &["apps", name], None::<&()>).await?;
    print(json, &serde_json::json!({"deleted": name}), |_| {
        println!("deleted app {name}")
    })
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
