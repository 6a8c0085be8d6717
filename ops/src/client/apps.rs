//! `berth apps create|list|show|update|delete|scale`: an app's record through `/api/v1/apps`. (`berth
//! apps webhook` has its own module: it only reads the app to explain GitHub's form.)

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_protocol::api::{AppStatus, AppView, CreateApp, EnvPatch, HealthCheckPatch, PatchApp};
use berth_protocol::secret::GitCredential;
use berth_protocol::{App, DeploymentStatus, EnvVars, Limits, Placement, Strategy};
use reqwest::Method;

use super::args::{CreateArgs, UpdateArgs};
use super::http::Client;
use super::render::{ago, print, print_table, when, Col};
use super::Failed;

/// An app as the API answers it: its record, URLs, status and serving release.
pub(super) async fn get(c: &Client, app: &str) -> Result<AppView> {
    c.get(&["apps", app], &[]).await
}

/// The URL to open an app at: that of its first domain.
pub(super) fn url(v: &AppView) -> &str {
    v.urls.first().map(String::as_str).unwrap_or("-")
}

/// The git credential in the files `--git-token-file` / `--ssh-key-file` name, if any.
fn credential_from(
    token_file: &Option<PathBuf>,
    key_file: &Option<PathBuf>,
) -> Result<Option<GitCredential>> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    Ok(match (token_file, key_file) {
        (Some(f), _) => Some(GitCredential::HttpsToken {
            username: "x-access-token".into(),
            token: read(f)?.trim().to_string(),
        }),
        (None, Some(f)) => Some(GitCredential::SshKey {
            private_key: read(f)?,
            known_hosts: None,
        }),
        (None, None) => None,
    })
}

/// The app's own webhook secret from `file` (its first line, trimmed).
fn webhook_secret_from(file: &Option<PathBuf>) -> Result<Option<String>> {
    file.as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))
                .map(|s| s.lines().next().unwrap_or_default().trim().to_string())
        })
        .transpose()
}

/// `berth apps create`: the credential files are read here and sent sealed by the server.
pub(super) async fn create(c: &Client, json: bool, a: CreateArgs) -> Result<()> {
    let git_credential = credential_from(&a.git_token_file, &a.ssh_key_file)?;
    let req = CreateApp {
        git_credential,
        webhook_secret: webhook_secret_from(&a.webhook_secret_file)?,
        drain_s: a.drain_s,
        keep_releases: a.keep_releases,
        name: a.name,
        repo: a
            .repo
            .as_deref()
            .map(repo_arg)
            .transpose()?
            .unwrap_or_default(),
        branch: a.branch,
        dockerfile: a.dockerfile,
        context: a.context,
        port: a.port,
        domains: (!a.domains.is_empty()).then_some(a.domains),
        env: Some(EnvVars {
            runtime: a.env.into_iter().collect::<BTreeMap<_, _>>(),
            build: a.build_env.into_iter().collect(),
            ..Default::default()
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
        limits: Some(Limits {
            memory_mb: a.memory_limit,
            millicpus: a.cpu_limit,
            pids: a.pids_limit,
            read_only: a.read_only,
        }),
        build_pack: a.build_pack,
        static_dir: a.static_dir,
    };
    let app: AppView = c.call(Method::POST, &["apps"], Some(&req)).await?;
    print(json, &app, |a| {
        println!("created app {} → {}", a.app.name, url(a));
        println!("deploy it with `berth deploy {}`", a.app.name);
    })
}

/// What `berth apps list` shows as an app's status: the status, and that its newest deployment
/// failed when an older release still serves.
pub(super) fn status_text(v: &AppView) -> String {
    let latest_failed = v
        .latest
        .as_ref()
        .is_some_and(|l| l.status == DeploymentStatus::Failed);
    match v.status {
        AppStatus::Running if latest_failed => "running (last deploy failed)".into(),
        AppStatus::Deploying => match v.latest.as_ref().map(|l| l.kind) {
            Some(berth_protocol::DeploymentKind::Rollback) => "rolling back".into(),
            _ => "deploying".into(),
        },
        s => s.to_string(),
    }
}

/// `berth apps list`: name, status, the release serving, URL.
pub(super) async fn list(c: &Client, json: bool) -> Result<()> {
    let apps: Vec<AppView> = c.get(&["apps"], &[]).await?;
    print(json, &apps, |apps| {
        if apps.is_empty() {
            println!("no apps yet — create one with `berth apps create <APP> --repo <GIT URL> --port <PORT>`");
            return;
        }
        let rows = apps
            .iter()
            .map(|a| {
                vec![
                    a.app.name.clone(),
                    status_text(a),
                    a.release.clone().unwrap_or_else(|| "-".into()),
                    url(a).to_string(),
                ]
            })
            .collect();
        let cols = [Col::Left(16), Col::Left(12), Col::Left(17), Col::Left(0)];
        print_table(&cols, Some(&["NAME", "STATUS", "RELEASE", "URL"]), rows);
    })
}

/// `berth apps show`: the app as `key: value` lines (`--json`: the API's answer).
pub(super) async fn show(c: &Client, json: bool, name: &str) -> Result<()> {
    let app = get(c, name).await?;
    print(json, &app, |v| print!("{}", show_text(v)))
}

/// An app as text: what it is, where it answers, what serves it, then its settings. Runtime
/// variables are shown with their values (they are settings, not secrets: secrets belong in the
/// git credential, of which only the kind is ever returned).
fn show_text(v: &AppView) -> String {
    let a = &v.app;
    let mut out = Vec::<(String, String)>::new();
    let mut kv = |k: &str, v: String| out.push((k.to_string(), v));
    kv("name", a.name.clone());
    kv("status", status_text(v));
    kv("urls", v.urls.join(" "));
    kv("release", v.release.clone().unwrap_or_else(|| "-".into()));
    if let Some(l) = &v.latest {
        let kind = serde_json::to_value(l.kind)
            .ok()
            .and_then(|k| k.as_str().map(String::from))
            .unwrap_or_default();
        kv(
            "latest",
            format!("{} ({kind}, {}, {})", l.id, l.status, ago(l.created_at)),
        );
    }
    kv(
        "repo",
        if a.repo.is_empty() {
            "none (deploys uploaded directories: berth deploy --dir)".to_string()
        } else {
            a.repo.clone()
        },
    );
    kv("branch", a.branch.clone());
    kv(
        "build pack",
        match (a.build_pack, &a.static_dir) {
            (berth_protocol::BuildPack::Dockerfile, _) => {
                format!("dockerfile: {} (context {})", a.dockerfile, a.context)
            }
            (berth_protocol::BuildPack::Static, Some(d)) => {
                format!("static: serves {d} (context {})", a.context)
            }
            (p, _) => format!("{p}: generated from the source (context {})", a.context),
        },
    );
    kv("port", a.port.to_string());
    kv("domains", a.domains.join(" "));
    let hc = &a.health_check;
    kv(
        "health check",
        format!(
            "GET {} every {} ms, {} retries, deadline {} s",
            hc.path, hc.interval_ms, hc.retries, hc.deadline_s
        ),
    );
    kv(
        "auto deploy",
        if a.auto_deploy { "on" } else { "off" }.into(),
    );
    kv(
        "git credential",
        a.git_credential.clone().unwrap_or_else(|| "none".into()),
    );
    kv(
        "replicas",
        format!("{} (max surge {})", a.replicas, a.max_surge),
    );
    let p = &a.placement;
    let mut placement = format!("{:?}", p.strategy).to_lowercase();
    if !p.constraints.is_empty() {
        placement.push_str(&format!(", constraints {}", p.constraints.join(" ")));
    }
    if p.memory_mb > 0 {
        placement.push_str(&format!(", {} MiB each", p.memory_mb));
    }
    kv("placement", placement);
    kv("limits", limits_text(&a.limits));
    kv("drain", format!("{} s", a.drain_s));
    kv("standby", format!("{} s", a.standby_s));
    kv("keep releases", a.keep_releases.to_string());
    kv("created", when(a.created_at));
    kv("updated", when(a.updated_at));
    let env = |m: &BTreeMap<String, String>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    kv("env", env(&a.env.runtime));
    kv("build env", env(&a.env.build));
    if !a.env.secret.is_empty() {
        let names: Vec<String> = a
            .env
            .secret
            .iter()
            .map(|(k, scope)| format!("{k} ({})", scope.as_str()))
            .collect();
        kv("secret env", names.join(" "));
    }
    let width = out.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    out.iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
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
    let app: AppView = c.call(Method::PATCH, &["apps", name], Some(&req)).await?;
    print(json, &app, |a| {
        println!("app {}: {} replicas", a.app.name, a.app.replicas)
    })
}

#[cfg(test)]
mod tests {
    use berth_protocol::api::LatestDeployment;
    use berth_protocol::{App, DeploymentKind};

    use super::*;

    fn view(status: AppStatus, latest: Option<(DeploymentKind, DeploymentStatus)>) -> AppView {
        let app: App = serde_json::from_value(serde_json::json!({
            "name": "web", "repo": "/src/web", "branch": "main", "dockerfile": "Dockerfile",
            "context": ".", "port": 8080, "domains": ["web.localhost"],
            "env": {"runtime": {"GREETING": "hi there"}, "build": {}},
            "git_credential": "https_token", "created_at": 1, "updated_at": 2
        }))
        .unwrap();
        AppView {
            urls: vec!["http://web.localhost:8080/".into()],
            status,
            release: Some("d1".into()),
            latest: latest.map(|(kind, status)| LatestDeployment {
                id: "d2".into(),
                kind,
                status,
                created_at: 1,
            }),
            app,
        }
    }

    #[test]
    fn status_text_says_when_the_last_deploy_failed() {
        use DeploymentKind::*;
        use DeploymentStatus::*;
        let t = |s, l| status_text(&view(s, l));
        assert_eq!(t(AppStatus::Running, Some((Deploy, Succeeded))), "running");
        assert_eq!(
            t(AppStatus::Running, Some((Deploy, Failed))),
            "running (last deploy failed)"
        );
        assert_eq!(
            t(AppStatus::Deploying, Some((Rollback, Building))),
            "rolling back"
        );
        assert_eq!(t(AppStatus::Deploying, Some((Deploy, Queued))), "deploying");
        assert_eq!(t(AppStatus::NotDeployed, None), "not deployed");
        assert_eq!(t(AppStatus::Failed, Some((Deploy, Failed))), "failed");
    }

    #[test]
    fn show_is_aligned_key_value_lines() {
        let text = show_text(&view(AppStatus::Running, None));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "name:           web");
        assert!(
            lines.contains(&"urls:           http://web.localhost:8080/"),
            "{text}"
        );
        assert!(
            lines.contains(&"env:            GREETING=hi there"),
            "{text}"
        );
        assert!(lines.contains(&"git credential: https_token"), "{text}");
        let col = lines[0].find("web").unwrap();
        assert!(
            lines
                .iter()
                .all(|l| l.len() > col && l.as_bytes()[col - 1] == b' '),
            "{text}"
        );
    }
}

/// `berth apps update`: a PATCH of what was given. Variables are set and unset one by one (the
/// API replaces a map whole, so the current one is read first); the placement likewise.
pub(super) async fn update(c: &Client, json: bool, a: UpdateArgs) -> Result<()> {
    let current: App = c.get(&["apps", &a.name], &[]).await?;
    let req = patch_of(&current, &a)?;
    if req == PatchApp::default() {
        return Err(Failed(format!(
            "nothing to change: give at least one setting (see `berth apps update --help`); `berth apps show {}` shows the current ones",
            a.name
        ))
        .into());
    }
    let runtime = req.port.is_some()
        || req.health_check.is_some()
        || req.limits.is_some()
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

/// "memory 256 MiB, cpu node default, pids 100, read-only root".
fn limits_text(l: &Limits) -> String {
    let or_default = |v: Option<String>| v.unwrap_or_else(|| "node default".into());
    let mut s = format!(
        "memory {}, cpu {}, pids {}",
        or_default(l.memory_mb.map(|m| format!("{m} MiB"))),
        or_default(l.millicpus.map(|c| format!("{c} millicpus"))),
        or_default(l.pids.map(|p| p.to_string())),
    );
    if l.read_only {
        s.push_str(", read-only root");
    }
    s
}

/// The PATCH body for `a`, given the app as it is.
fn patch_of(current: &App, a: &UpdateArgs) -> Result<PatchApp> {
    let git_credential = credential_from(&a.git_token_file, &a.ssh_key_file)?;
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
    let limits_changed = a.memory_limit.is_some()
        || a.cpu_limit.is_some()
        || a.pids_limit.is_some()
        || a.default_limits
        || a.read_only
        || a.no_read_only;
    let limits = limits_changed.then(|| {
        let mut l = current.limits.clone();
        if a.default_limits {
            l = Limits {
                read_only: l.read_only,
                ..Default::default()
            };
        }
        l.memory_mb = a.memory_limit.or(l.memory_mb);
        l.millicpus = a.cpu_limit.or(l.millicpus);
        l.pids = a.pids_limit.or(l.pids);
        if a.read_only || a.no_read_only {
            l.read_only = a.read_only;
        }
        l
    });
    Ok(PatchApp {
        repo: a.repo.as_deref().map(repo_arg).transpose()?,
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
        webhook_secret: webhook_secret_from(&a.webhook_secret_file)?,
        remove_webhook_secret: a.no_webhook_secret.then_some(true),
        drain_s: a.drain_s,
        keep_releases: a.keep_releases,
        placement,
        replicas: a.replicas,
        max_surge: a.max_surge,
        standby_s: a.standby_s,
        limits,
        build_pack: a.build_pack,
        static_dir: a.static_dir.clone(),
    })
}

#[cfg(test)]
mod update_tests {
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

#[cfg(test)]
mod create_delete_tests {
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
