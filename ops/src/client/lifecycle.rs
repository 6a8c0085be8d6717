//! An app's life without a build — `berth restart`, `berth stop`, `berth start` — and the small
//! everyday commands around it: `berth open` (its URL) and `berth domains add|remove`.

use anyhow::Result;
use berth_protocol::api::{PatchApp, StartOutcome};
use berth_protocol::{App, Deployment};
use reqwest::Method;

use super::args::{DomainsCmd, RunArgs};
use super::deploy::report;
use super::http::Client;
use super::render::print;
use super::Failed;

/// `berth restart <APP>`: a deployment of kind `restart` (202), then like `berth deploy`.
pub(super) async fn restart(c: &Client, json: bool, a: RunArgs) -> Result<()> {
    let d: Deployment = c
        .call(Method::POST, &["apps", &a.app, "restart"], None::<&()>)
        .await?;
    report(c, json, d, a.wait, a.follow).await
}

/// `berth stop <APP>`.
pub(super) async fn stop(c: &Client, json: bool, app: &str) -> Result<()> {
    let a: App = c
        .call(Method::POST, &["apps", app, "stop"], None::<&()>)
        .await?;
    print(json, &a, |a| {
        println!(
            "stopped {}: its routes are gone and its containers stopped; `berth start {}` brings it back",
            a.name, a.name
        )
    })
}

/// `berth start <APP>`: the deployment that brings the serving release back, then like
/// `berth deploy`.
pub(super) async fn start(c: &Client, json: bool, a: RunArgs) -> Result<()> {
    let out: StartOutcome = c
        .call(Method::POST, &["apps", &a.app, "start"], None::<&()>)
        .await?;
    match out.deployment {
        Some(d) => report(c, json, d, a.wait, a.follow).await,
        None => print(json, &out, |o| {
            println!(
                "{} may run again; it has no release yet: `berth deploy {}` makes one",
                o.app.name, o.app.name
            )
        }),
    }
}

/// `berth open <APP>`: the app's first URL.
pub(super) async fn open(c: &Client, json: bool, app: &str) -> Result<()> {
    let url = app_url(c, app).await?;
    print(json, &serde_json::json!({ "url": url }), |_| {
        println!("{url}")
    })
}

/// `berth open` without an app: the dashboard's link that signs in with the client's token —
/// in the fragment, which a browser never sends to the server, and which the page takes out of
/// the address bar at once. At the API's address, or at `at` (a copy served elsewhere).
pub(super) fn dashboard(c: &Client, json: bool, at: Option<&str>) -> Result<()> {
    let url = dashboard_link(at.unwrap_or(&c.base), &c.token);
    print(json, &serde_json::json!({ "url": url }), |_| {
        println!("{url}")
    })
}

/// `<base>/#token=<token>`, the token percent-encoded where a fragment needs it.
pub(crate) fn dashboard_link(base: &str, token: &str) -> String {
    let mut out = format!("{}/#token=", base.trim_end_matches('/'));
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL the app answers at through the ingress: its first domain on the nodes' ingress port.
pub(super) async fn app_url(c: &Client, app: &str) -> Result<String> {
    let v = super::apps::get(c, app).await?;
    match v.urls.first() {
        Some(u) => Ok(u.clone()),
        None => Err(Failed(format!("app {app} has no domain")).into()),
    }
}

/// `berth domains add|remove <APP> <DOMAIN>`: the app's domain list changed by one, through a
/// PATCH of `domains` (the server checks the domain and that no other app has it).
pub(super) async fn domains(c: &Client, json: bool, cmd: DomainsCmd) -> Result<()> {
    let (name, domain, add) = match cmd {
        DomainsCmd::Add { app, domain } => (app, domain, true),
        DomainsCmd::Remove { app, domain } => (app, domain, false),
    };
    let app: App = c.get(&["apps", &name], &[]).await?;
    let domains = change_domains(&app, &domain, add)?;
    let req = PatchApp {
        domains: Some(domains),
        ..Default::default()
    };
    let app: App = c.call(Method::PATCH, &["apps", &name], Some(&req)).await?;
    print(json, &app, |a| {
        println!("{} is served at: {}", a.name, a.domains.join(", "));
        if a.stopped {
            println!("(it is stopped: `berth start {}` brings it back)", a.name);
        }
    })
}

/// The app's domains with `domain` added or removed, or why that makes no change.
fn change_domains(app: &App, domain: &str, add: bool) -> Result<Vec<String>> {
    let mut domains = app.domains.clone();
    let has = domains.iter().any(|d| d.eq_ignore_ascii_case(domain));
    match (add, has) {
        (true, true) => Err(Failed(format!("{} is served at {domain} already", app.name)).into()),
        (true, false) => {
            domains.push(domain.to_string());
            Ok(domains)
        }
        (false, false) => Err(Failed(format!(
            "{} is not served at {domain} (its domains: {})",
            app.name,
            app.domains.join(", ")
        ))
        .into()),
        (false, true) if domains.len() == 1 => Err(Failed(format!(
            "{domain} is the only domain of {}: add another first (`berth domains add {} <DOMAIN>`), or stop the app (`berth stop {}`)",
            app.name, app.name, app.name
        ))
        .into()),
        (false, true) => {
            domains.retain(|d| !d.eq_ignore_ascii_case(domain));
            Ok(domains)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_link_carries_the_token_in_its_fragment() {
        assert_eq!(
            dashboard_link("http://127.0.0.1:7700/", "berth_0a9f"),
            "http://127.0.0.1:7700/#token=berth_0a9f"
        );
        assert_eq!(
            dashboard_link("https://b.example", "a b/c#d%"),
            "https://b.example/#token=a%20b%2Fc%23d%25"
        );
    }

    fn app(domains: &[&str]) -> App {
        serde_json::from_value(serde_json::json!({
            "name": "web", "repo": "/r", "branch": "main", "dockerfile": "Dockerfile",
            "context": ".", "port": 8080, "domains": domains, "created_at": 0, "updated_at": 0
        }))
        .unwrap()
    }

    #[test]
    fn a_domain_is_added_or_removed_once_and_the_last_one_stays() {
        let a = app(&["web.localhost"]);
        assert_eq!(
            change_domains(&a, "www.test", true).unwrap(),
            ["web.localhost", "www.test"]
        );
        assert!(change_domains(&a, "WEB.localhost", true).is_err());
        assert!(change_domains(&a, "web.localhost", false)
            .unwrap_err()
            .to_string()
            .contains("only domain"));
        assert!(change_domains(&a, "x.test", false).is_err());
        let two = app(&["web.localhost", "www.test"]);
        assert_eq!(
            change_domains(&two, "www.test", false).unwrap(),
            ["web.localhost"]
        );
    }
}
