//! Turning what a person asks for (`CreateApp`, `PatchApp`) into a valid [`App`], with messages
//! that say what to fix. Pure functions: the `Api` actor adds the checks that need Redis
//! (name taken, domain used by another app).

use berth_protocol::api::{CreateApp, PatchApp, PutEnv};
use berth_protocol::secret::GitCredential;
use berth_protocol::{now_ms, repo_url, validate, App, EnvVars, HealthCheck};

/// Builds a new app from a create request; `base_domain` gives the default domain, `reserved`
/// the domains no app may take (see [`domains`]).
pub fn build(req: CreateApp, base_domain: &str, reserved: &[String]) -> Result<App, String> {
    validate::app_name(&req.name)?;
    let now = now_ms();
    let app = App {
        domains: domains(
            req.domains
                .unwrap_or_else(|| vec![format!("{}.{}", req.name, base_domain)]),
            reserved,
        )?,
        name: req.name,
        repo: req.repo,
        branch: req.branch.unwrap_or_else(|| "main".into()),
        dockerfile: req.dockerfile.unwrap_or_else(|| "Dockerfile".into()),
        context: req.context.unwrap_or_else(|| ".".into()),
        port: validate::port(req.port)?,
        env: match req.env {
            Some(env) if !env.secret.is_empty() => {
                return Err(
                    "env.secret cannot be given when creating an app: set a secret variable with PUT /api/v1/apps/{name}/env/{KEY} (or `berth env set --secret`)"
                        .into(),
                )
            }
            env => env.unwrap_or_default(),
        },
        health_check: req
            .health_check
            .map(|h| h.apply(&HealthCheck::default()))
            .unwrap_or_default(),
        auto_deploy: req.auto_deploy.unwrap_or(true),
        git_credential: credential_kind(req.git_credential.as_ref())?,
        webhook_secret: match &req.webhook_secret {
            Some(s) => validate::webhook_secret(s).map(|_| true)?,
            None => false,
        },
        drain_s: req.drain_s.unwrap_or(10),
        keep_releases: req.keep_releases.unwrap_or(10),
        placement: req.placement.unwrap_or_default(),
        replicas: req.replicas.unwrap_or(1),
        max_surge: req.max_surge.unwrap_or(1),
        standby_s: req.standby_s.unwrap_or(0),
        limits: req.limits.unwrap_or_default(),
        stopped: false,
        build_pack: req.build_pack.unwrap_or_default(),
        static_dir: req.static_dir,
        created_at: now,
        updated_at: now,
    };
    validate::app(&app)?;
    Ok(app)
}

/// Sets variable `key` of `app` as `put` says, replacing whatever `key` was (plain in either
/// scope, or secret). Answers the app and, for a secret, the value to seal (the record keeps
/// only its name and scope).
pub fn set_env(mut app: App, key: &str, put: PutEnv) -> Result<(App, Option<String>), String> {
    validate::env_name(key)?;
    validate::env_value(key, &put.value)?;
    let scope = put.scope.unwrap_or_default();
    app.env.remove(key);
    let secret = put.secret.unwrap_or(false);
    if secret {
        app.env.secret.insert(key.to_string(), scope);
    } else {
        if scope.runtime() {
            app.env.runtime.insert(key.to_string(), put.value.clone());
        }
        if scope.build() {
            app.env.build.insert(key.to_string(), put.value.clone());
        }
    }
    app.updated_at = now_ms();
    validate::app(&app)?;
    Ok((app, secret.then_some(put.value)))
}

/// Whether patch `p` moves `app`'s repository to another host without giving a credential
/// again: then the app's credential is dropped, never sent to the new host.
pub fn drops_credential(app: &App, p: &PatchApp) -> bool {
    p.git_credential.is_none()
        && p.repo
            .as_deref()
            .is_some_and(|r| !repo_url::same_host(&app.repo, r))
}

/// Applies a patch to an app. New domains are checked like a create's ([`domains`]); a patch
/// that leaves them alone keeps them as stored (an older version may have stored mixed case).
pub fn patch(mut app: App, p: PatchApp, reserved: &[String]) -> Result<App, String> {
    if drops_credential(&app, &p) {
        app.git_credential = None;
    }
    if let Some(v) = p.repo {
        app.repo = v;
    }
    if let Some(v) = p.branch {
        app.branch = v;
    }
    if let Some(v) = p.dockerfile {
        app.dockerfile = v;
    }
    if let Some(v) = p.context {
        app.context = v;
    }
    if let Some(v) = p.build_pack {
        app.build_pack = v;
    }
    if let Some(v) = p.static_dir {
        // An empty one goes back to the detected directory.
        app.static_dir = (!v.is_empty()).then_some(v);
    }
    if let Some(v) = p.port {
        app.port = validate::port(v)?;
    }
    if let Some(v) = p.domains {
        app.domains = domains(v, reserved)?;
    }
    if let Some(env) = p.env {
        // This form manages the plain variables only: the secret ones stay as they are, and a
        // plain value for one of their names is refused (by `validate::app`, below).
        let EnvVars {
            runtime,
            build,
            secret,
        } = app.env;
        app.env = EnvVars {
            runtime: env.runtime.unwrap_or(runtime),
            build: env.build.unwrap_or(build),
            secret,
        };
    }
    if p.remove_git_credential == Some(true) {
        if p.git_credential.is_some() {
            return Err("give either git_credential or remove_git_credential, not both".into());
        }
        app.git_credential = None;
    }
    if let Some(c) = &p.git_credential {
        app.git_credential = credential_kind(Some(c))?;
    }
    match (&p.webhook_secret, p.remove_webhook_secret == Some(true)) {
        (Some(_), true) => {
            return Err("give either webhook_secret or remove_webhook_secret, not both".into())
        }
        (Some(s), false) => {
            validate::webhook_secret(s)?;
            app.webhook_secret = true;
        }
        (None, true) => app.webhook_secret = false,
        (None, false) => {}
    }
    if let Some(v) = p.drain_s {
        app.drain_s = v;
    }
    if let Some(v) = p.keep_releases {
        app.keep_releases = v;
    }
    if let Some(v) = p.auto_deploy {
        app.auto_deploy = v;
    }
    if let Some(v) = p.placement {
        app.placement = v;
    }
    if let Some(v) = p.replicas {
        app.replicas = v;
    }
    if let Some(v) = p.max_surge {
        app.max_surge = v;
    }
    if let Some(v) = p.standby_s {
        app.standby_s = v;
    }
    if let Some(v) = p.limits {
        app.limits = v;
    }
    if let Some(h) = p.health_check {
        app.health_check = h.apply(&app.health_check);
    }
    app.updated_at = now_ms();
    validate::app(&app)?;
    Ok(app)
}

/// An app's domains as stored: each valid and lowercased ([`validate::normalize_domain`]: not
/// `localhost`, an IP address or one of `reserved`), none twice in any case.
pub fn domains(list: Vec<String>, reserved: &[String]) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Err("an app needs at least one domain".into());
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for d in &list {
        let d = validate::normalize_domain(d, reserved)?;
        if out.contains(&d) {
            return Err(format!(
                "domain {d} is listed twice (domains are compared ignoring case)"
            ));
        }
        out.push(d);
    }
    Ok(out)
}

/// Validates a credential and names its kind (what the app record shows of it).
fn credential_kind(c: Option<&GitCredential>) -> Result<Option<String>, String> {
    match c {
        None => Ok(None),
        Some(c) => {
            c.validate()?;
            Ok(Some(c.kind().to_string()))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use berth_protocol::api::HealthCheckPatch;
    use berth_protocol::EnvScope;

    /// A valid app (test fixture, also used by `rollout`'s tests).
    pub(crate) fn app() -> App {
        build(req(), "localhost", &[]).unwrap()
    }

    #[test]
    fn a_variable_is_set_in_its_scope_replacing_what_it_was() {
        let put = |value: &str, scope, secret| PutEnv {
            value: value.into(),
            scope,
            secret: Some(secret),
            deploy: None,
        };
        let (a, sealed) = set_env(app(), "GREETING", put("hi", None, false)).unwrap();
        assert_eq!(sealed, None);
        assert_eq!(a.env.runtime["GREETING"], "hi");
        assert!(a.env.build.is_empty());
        let (a, _) = set_env(a, "GREETING", put("yo", Some(EnvScope::Both), false)).unwrap();
        assert_eq!(
            (&a.env.runtime["GREETING"], &a.env.build["GREETING"]),
            (&"yo".to_string(), &"yo".to_string())
        );
        // A secret replaces the plain value everywhere; the record keeps only its scope.
        let (a, sealed) =
            set_env(a, "GREETING", put("s3cret", Some(EnvScope::Build), true)).unwrap();
        assert_eq!(sealed.as_deref(), Some("s3cret"));
        assert!(a.env.runtime.is_empty() && a.env.build.is_empty());
        assert_eq!(a.env.secret["GREETING"], EnvScope::Build);
        assert!(!serde_json::to_string(&a).unwrap().contains("s3cret"));
        for (key, want) in [
            ("1X", "must be letters"),
            ("A-B", "must be letters"),
            ("", "must be letters"),
        ] {
            let e = set_env(app(), key, put("v", None, false)).unwrap_err();
            assert!(e.contains(want), "{key}: {e}");
        }
        let big = "x".repeat(validate::ENV_VALUE_MAX + 1);
        assert!(set_env(app(), "BIG", put(&big, None, true))
            .unwrap_err()
            .contains("at most"));
        // The old form manages plain variables: secrets stay, a plain value for one is refused.
        let mut patched = patch(
            a.clone(),
            PatchApp {
                env: Some(berth_protocol::api::EnvPatch {
                    runtime: Some([("OTHER".to_string(), "1".to_string())].into()),
                    build: Some(Default::default()),
                }),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert_eq!(patched.env.secret["GREETING"], EnvScope::Build);
        patched.env.secret.clear();
        let e = patch(
            a,
            PatchApp {
                env: Some(berth_protocol::api::EnvPatch {
                    runtime: Some([("GREETING".to_string(), "1".to_string())].into()),
                    build: None,
                }),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.contains("GREETING is a secret variable"), "{e}");
        // And a create cannot name secrets.
        let mut r = req();
        r.env = Some(EnvVars {
            secret: [("T".to_string(), EnvScope::Runtime)].into(),
            ..Default::default()
        });
        assert!(build(r, "localhost", &[])
            .unwrap_err()
            .contains("PUT /api/v1/apps/{name}/env/{KEY}"));
    }

    fn req() -> CreateApp {
        CreateApp {
            name: "hello".into(),
            repo: "/srv/git/hello.git".into(),
            port: 8080,
            ..Default::default()
        }
    }

    #[test]
    fn defaults() {
        let app = build(req(), "localhost", &[]).unwrap();
        assert_eq!(app.domains, vec!["hello.localhost"]);
        assert_eq!(app.branch, "main");
        assert_eq!(app.dockerfile, "Dockerfile");
        assert_eq!(app.context, ".");
        assert_eq!(app.health_check, HealthCheck::default());
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        let cases: Vec<(CreateApp, &str)> = vec![
            (
                CreateApp {
                    name: "Bad_Name".into(),
                    ..req()
                },
                "DNS label",
            ),
            (
                CreateApp {
                    port: 70000,
                    ..req()
                },
                "out of range",
            ),
            (CreateApp { port: 0, ..req() }, "out of range"),
            (
                CreateApp {
                    dockerfile: Some("../Dockerfile".into()),
                    ..req()
                },
                "inside the repository",
            ),
            (
                CreateApp {
                    context: Some("/etc".into()),
                    ..req()
                },
                "not absolute",
            ),
            (
                CreateApp {
                    domains: Some(vec!["bad domain".into()]),
                    ..req()
                },
                "not a valid domain",
            ),
            (
                CreateApp {
                    domains: Some(vec![]),
                    ..req()
                },
                "at least one domain",
            ),
            (
                CreateApp {
                    repo: "--upload-pack=x".into(),
                    ..req()
                },
                "not a git URL",
            ),
            (
                CreateApp {
                    branch: Some("-x".into()),
                    ..req()
                },
                "branch",
            ),
            (
                CreateApp {
                    health_check: Some(HealthCheckPatch {
                        path: Some("health".into()),
                        ..Default::default()
                    }),
                    ..req()
                },
                "must start with '/'",
            ),
        ];
        for (r, want) in cases {
            let err = build(r.clone(), "localhost", &[]).unwrap_err();
            assert!(err.contains(want), "{r:?}: {err}");
        }
    }

    #[test]
    fn a_repository_on_another_host_drops_the_credential_unless_given_again() {
        let mut app = build(req(), "localhost", &[]).unwrap();
        app.repo = "https://github.com/a/b".into();
        app.git_credential = Some("https_token".into());
        let to = |repo: &str| PatchApp {
            repo: Some(repo.into()),
            ..Default::default()
        };
        let same = patch(app.clone(), to("https://github.com/a/c"), &[]).unwrap();
        assert_eq!(same.git_credential.as_deref(), Some("https_token"));
        let moved = to("https://evil.example/a/b");
        assert!(drops_credential(&app, &moved));
        assert_eq!(patch(app.clone(), moved, &[]).unwrap().git_credential, None);
        let given = PatchApp {
            git_credential: Some(GitCredential::HttpsToken {
                username: "u".into(),
                token: "t".into(),
            }),
            ..to("https://evil.example/a/b")
        };
        assert!(!drops_credential(&app, &given));
        assert!(!drops_credential(&app, &PatchApp::default()));
    }

    #[test]
    fn the_build_pack_and_static_dir_are_set_checked_and_reset() {
        use berth_protocol::BuildPack;
        let app = build(req(), "localhost", &[]).unwrap();
        assert_eq!(
            (app.build_pack, app.static_dir.as_deref()),
            (BuildPack::Dockerfile, None)
        );
        let made = build(
            CreateApp {
                build_pack: Some(BuildPack::Static),
                static_dir: Some("site".into()),
                ..req()
            },
            "localhost",
            &[],
        )
        .unwrap();
        assert_eq!(
            (made.build_pack, made.static_dir.as_deref()),
            (BuildPack::Static, Some("site"))
        );
        let e = build(
            CreateApp {
                static_dir: Some("../etc".into()),
                ..req()
            },
            "localhost",
            &[],
        )
        .unwrap_err();
        assert!(e.starts_with("static_dir"), "{e}");
        let auto = patch(
            made.clone(),
            PatchApp {
                build_pack: Some(BuildPack::Auto),
                static_dir: Some(String::new()),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert_eq!((auto.build_pack, auto.static_dir), (BuildPack::Auto, None));
        let kept = patch(made, PatchApp::default(), &[]).unwrap();
        assert_eq!(kept.static_dir.as_deref(), Some("site"));
        let e: Result<PatchApp, _> = serde_json::from_str(r#"{"build_pack": "heroku"}"#);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("unknown variant `heroku`"));
    }

    #[test]
    fn patch_keeps_what_is_not_given() {
        let app = build(req(), "localhost", &[]).unwrap();
        let p = PatchApp {
            port: Some(9000),
            health_check: Some(HealthCheckPatch {
                retries: Some(9),
                ..Default::default()
            }),
            ..Default::default()
        };
        let patched = patch(app.clone(), p, &[]).unwrap();
        assert_eq!(patched.port, 9000);
        assert_eq!(patched.health_check.retries, 9);
        assert_eq!(patched.health_check.path, app.health_check.path);
        assert_eq!(patched.repo, app.repo);
        assert!(patch(
            app.clone(),
            PatchApp {
                port: Some(0),
                ..Default::default()
            },
            &[]
        )
        .is_err());
        // Limits are replaced whole, and checked.
        let limited = patch(
            app.clone(),
            PatchApp {
                limits: Some(berth_protocol::Limits {
                    memory_mb: Some(64),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert_eq!(limited.limits.memory_mb, Some(64));
        assert_eq!(limited.limits.pids, None, "unset: the node's default");
        let err = patch(
            app,
            PatchApp {
                limits: Some(berth_protocol::Limits {
                    memory_mb: Some(1),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(err.contains("limits.memory_mb must be 16"), "{err}");
    }

    #[test]
    fn domains_are_lowercased_and_reserved_names_refused() {
        let reserved = vec!["example.test".to_string()];
        let with = |d: &[&str]| CreateApp {
            domains: Some(d.iter().map(|s| s.to_string()).collect()),
            ..req()
        };
        let app = build(
            with(&["Shop.Example.test", "www.shop.localhost"]),
            "example.test",
            &reserved,
        )
        .unwrap();
        assert_eq!(app.domains, vec!["shop.example.test", "www.shop.localhost"]);
        for (d, want) in [
            (vec!["shop.localhost", "SHOP.localhost"], "listed twice"),
            (vec!["localhost"], "reserved"),
            (vec!["EXAMPLE.test"], "reserved"),
            (vec!["127.0.0.1"], "IP address"),
        ] {
            let err = build(with(&d), "example.test", &reserved).unwrap_err();
            assert!(err.contains(want), "{d:?}: {err}");
        }
        // A patch that leaves the domains alone keeps them as an older version stored them.
        let mut old = app.clone();
        old.domains = vec!["OLD.localhost".into()];
        let patched = patch(
            old.clone(),
            PatchApp {
                port: Some(81),
                ..Default::default()
            },
            &reserved,
        )
        .unwrap();
        assert_eq!(patched.domains, vec!["OLD.localhost"]);
        let patched = patch(
            old,
            PatchApp {
                domains: Some(vec!["New.localhost".into()]),
                ..Default::default()
            },
            &reserved,
        )
        .unwrap();
        assert_eq!(patched.domains, vec!["new.localhost"]);
    }
}
