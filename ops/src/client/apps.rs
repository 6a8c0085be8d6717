//! `berth apps create|list|show|update|delete|scale`: an app's record through `/api/v1/apps`.
//! (`berth apps webhook` has its own module: it only reads the app to explain GitHub's form.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_protocol::api::{CreateApp, EnvPatch, HealthCheckPatch, PatchApp};
use berth_protocol::secret::GitCredential;
use berth_protocol::{App, EnvVars, Placement, Strategy};
use reqwest::Method;

use super::args::{CreateArgs, UpdateArgs};
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

/// `berth apps update`: a PATCH of what was given. Variables are set and unset one by one (the
/// API replaces a map whole, so the current one is read first); the placement likewise.
pub(super) async fn update(c: &Client, json: bool, a: UpdateArgs) -> Result<()> {
    let current: App = c.get(&["apps", &a.name], &[]).await?;
    let req = patch_of(&current, &a)?;
    if req == PatchApp::default() {
        return Err(super::Failed(format!(
            "nothing to change: give at least one setting (see `berth apps update --help`); `berth apps show {}` shows the current ones",
            a.name
        ))
        .into());
    }
    let runtime = req.port.is_some()
        || req.health_check.is_some()
        || req.env.as_ref().is_some_and(|e| e.runtime.is_some());
    let app: App = c
        .call(Method::PATCH, &["apps", &a.name], Some(&req))
        .await?;
    print(json, &app, |app| {
        println!("updated app {}", app.name);
        if runtime && !app.stopped {
            println!(
                "the new runtime settings apply to the next deployment; `berth restart {}` applies them now",
                app.name
            );
        }
    })
}

/// The PATCH body for `a`, given the app as it is.
fn patch_of(current: &App, a: &UpdateArgs) -> Result<PatchApp> {
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
    let edit_map = |map: &BTreeMap<String, String>,
                    set: &[(String, String)],
                    unset: &[String]|
     -> Option<BTreeMap<String, String>> {
        if set.is_empty() && unset.is_empty() {
            return None;
        }
        let mut m = map.clone();
        for k in unset {
            m.remove(k);
        }
        for (k, v) in set {
            m.insert(k.clone(), v.clone());
        }
        Some(m)
    };
    let runtime = edit_map(&current.env.runtime, &a.env, &a.unset_env);
    let build = edit_map(&current.env.build, &a.build_env, &a.unset_build_env);
    let health = HealthCheckPatch {
        path: a.health_path.clone(),
        deadline_s: a.health_deadline,
        ..Default::default()
    };
    let placement_changed =
        !a.constraints.is_empty() || a.no_constraints || a.strategy.is_some() || a.memory.is_some();
    let placement = placement_changed.then(|| {
        let mut p = current.placement.clone();
        if !a.constraints.is_empty() || a.no_constraints {
            p.constraints = a.constraints.clone();
        }
        if let Some(s) = &a.strategy {
            p.strategy = match s.as_str() {
                "binpack" => Strategy::Binpack,
                _ => Strategy::Spread,
            };
        }
        if let Some(m) = a.memory {
            p.memory_mb = m;
        }
        p
    });
    Ok(PatchApp {
        repo: a.repo.clone(),
        branch: a.branch.clone(),
        dockerfile: a.dockerfile.clone(),
        context: a.context.clone(),
        port: a.port,
        domains: (!a.domains.is_empty()).then(|| a.domains.clone()),
        env: (runtime.is_some() || build.is_some()).then_some(EnvPatch { runtime, build }),
        health_check: (health != HealthCheckPatch::default()).then_some(health),
        auto_deploy: match (a.auto_deploy, a.no_auto_deploy) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        git_credential,
        remove_git_credential: a.no_git_credential.then_some(true),
        drain_s: a.drain_s,
        keep_releases: a.keep_releases,
        placement,
        replicas: a.replicas,
        max_surge: a.max_surge,
        standby_s: a.standby_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        serde_json::from_value(serde_json::json!({
            "name": "web", "repo": "/r", "branch": "main", "dockerfile": "Dockerfile",
            "context": ".", "port": 8080, "domains": ["web.localhost"],
            "env": {"runtime": {"A": "1", "B": "2"}, "build": {"X": "1"}},
            "placement": {"constraints": ["zone=eu"], "memory_mb": 64},
            "created_at": 0, "updated_at": 0
        }))
        .unwrap()
    }

    fn args() -> UpdateArgs {
        UpdateArgs {
            name: "web".into(),
            ..Default::default()
        }
    }

    #[test]
    fn no_flag_is_no_change() {
        assert_eq!(patch_of(&app(), &args()).unwrap(), PatchApp::default());
    }

    #[test]
    fn variables_are_set_and_unset_one_by_one() {
        let a = UpdateArgs {
            env: vec![("C".into(), "3".into()), ("A".into(), "9".into())],
            unset_env: vec!["B".into()],
            ..args()
        };
        let p = patch_of(&app(), &a).unwrap();
        let env = p.env.unwrap();
        let want: BTreeMap<String, String> = [("A", "9"), ("C", "3")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(env.runtime, Some(want));
        assert_eq!(env.build, None, "build arguments untouched");
    }

    #[test]
    fn placement_keeps_what_is_not_given() {
        let a = UpdateArgs {
            strategy: Some("binpack".into()),
            ..args()
        };
        let p = patch_of(&app(), &a).unwrap().placement.unwrap();
        assert_eq!(p.constraints, ["zone=eu"]);
        assert_eq!(p.memory_mb, 64);
        assert_eq!(p.strategy, Strategy::Binpack);
        let a = UpdateArgs {
            no_constraints: true,
            ..args()
        };
        assert!(patch_of(&app(), &a)
            .unwrap()
            .placement
            .unwrap()
            .constraints
            .is_empty());
    }

    #[test]
    fn auto_deploy_flags() {
        let on = UpdateArgs {
            auto_deploy: true,
            ..args()
        };
        assert_eq!(patch_of(&app(), &on).unwrap().auto_deploy, Some(true));
        let off = UpdateArgs {
            no_auto_deploy: true,
            ..args()
        };
        assert_eq!(patch_of(&app(), &off).unwrap().auto_deploy, Some(false));
    }
}
