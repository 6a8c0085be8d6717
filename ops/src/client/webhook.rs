//! `berth apps webhook <app>`: what to enter in GitHub's "Add webhook" form so that pushes to the
//! app's branch deploy it. Nothing is changed; the app is only read for its repository, branch
//! and whether it has a webhook secret of its own.

use anyhow::Result;
use berth_protocol::App;

use super::http::Client;
use super::render::print;

pub(super) async fn run(c: &Client, json: bool, name: &str) -> Result<()> {
    let app: App = c.get(&["apps", name], &[]).await?;
    // Shown as the API address was given: this is text for a person to copy, not a request.
    // An app with a secret of its own takes its pushes only at its own endpoint.
    let (url, secret) = if app.webhook_secret {
        (
            format!("{}/api/v1/apps/{}/webhooks/github", c.base, app.name),
            "the app's own webhook secret (the file given to --webhook-secret-file)",
        )
    } else {
        (
            format!("{}/api/v1/webhooks/github", c.base),
            "the value of github.webhook_secret (BERTH_GITHUB__WEBHOOK_SECRET) on the coordinator",
        )
    };
    let info = serde_json::json!({
        "payload_url": url,
        "content_type": "application/json",
        "secret": secret,
        "events": ["push"],
        "repo": app.repo,
        "branch": app.branch,
        "auto_deploy": app.auto_deploy,
    });
    print(json, &info, |_| {
        println!("In GitHub: repository → Settings → Webhooks → Add webhook");
        println!("  Payload URL:   {url}");
        println!("  Content type:  application/json (application/x-www-form-urlencoded works too)");
        println!("  Secret:        {secret}");
        println!("  Events:        Just the push event");
        if c.base.contains("://127.") || c.base.contains("://localhost") {
            println!("  (this API address is loopback: GitHub must reach the coordinator at a public address)");
        }
        println!(
            "Pushes to branch {} of {} then deploy {} (auto_deploy: {}).",
            app.branch,
            app.repo,
            app.name,
            if app.auto_deploy {
                "on"
            } else {
                "off — turn it on with PATCH {\"auto_deploy\": true}"
            }
        );
    })
}
