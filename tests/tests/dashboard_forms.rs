//! The dashboard's forms in a real browser (headless Chromium through chromedriver, against a
//! `berth up` cluster with real Redis, Caddy, Docker and git): creating an app from the New app
//! form — the API's validation messages next to the fields they name, nothing typed lost, the
//! build pack analysis of a real repository — then deploying it; the Tokens page (create a
//! `read` token, its value shown once, sign in with it and find app creation refused with the
//! reason, revoke it through a confirmation) and the Audit page (the changes just made, newest
//! first). Every new view passes the accessibility check; the form passes the keyboard check.
//!
//! Screenshots `new-app`, `new-app-error`, `tokens` and `audit` go to `$CARGO_TARGET_DIR/screenshots`.

mod browser;

use anyhow::{Context, Result};
use berth_tests::{repo_root, version_marker, Cluster, GitRepo};
use browser::*;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_an_app_and_manage_tokens_in_a_real_browser() {
    run("dashboard-forms", |c, b, dir| Box::pin(flow(c, b, dir))).await;
}

/// The value of the control `css`.
async fn value(b: &Client, css: &str) -> Result<String> {
    let v = b
        .execute(
            &format!("return document.querySelector({css:?}).value"),
            vec![],
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

/// Waits until the control `css` is marked invalid with an error under it containing `says`,
/// referenced by its `aria-describedby`; that error's text.
async fn field_error(b: &Client, css: &str, says: &str) -> Result<String> {
    let v = until(
        b,
        &format!("an error under {css} saying {says:?}"),
        UI,
        &format!(
            "const el = document.querySelector({css:?}); if (!el) return null; \
             const id = el.id + '-error'; const e = document.getElementById(id); \
             return el.getAttribute('aria-invalid') === 'true' && e && !e.hidden \
               && (el.getAttribute('aria-describedby') || '').split(' ').includes(id) \
               && e.textContent.includes({says:?}) ? e.textContent : null"
        ),
    )
    .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

async fn flow(c: &mut Cluster, b: &Client, dir: &std::path::Path) -> Result<()> {
    let shots = Shots::new()?;
    let repo = GitRepo::from_dir(&dir.join("src"), &repo_root().join("examples/hello"))?;
    let app = berth_tests::unique("form");
    c.apps.push(app.clone());
    let host = format!("{app}.localhost");
    let admin_link = format!("{}/#token={}", c.api.base, c.api.token);

    // Signed in by the link: New app is on the Apps page.
    b.goto(&admin_link).await?;
    until(
        b,
        "New app enabled for the admin token",
        UI,
        "const n = document.querySelector('#new-app'); return n && !n.disabled && document.querySelector('#apps-read-only').hidden",
    )
    .await?;
    click(b, "#new-app").await?;
    until(
        b,
        "the New app form",
        UI,
        "return location.hash === '#/new' && !!document.querySelector('#new-app-form')",
    )
    .await?;
    accessible(b, "the New app form").await?;
    keyboard_focus(b, "the New app form", 12).await?;
    fits_a_phone(b, "the New app form").await?;

    // Everything typed in, with a name the API refuses.
    fill(b, "#app-name", "Not_A_Label").await?;
    fill(b, "#app-repo", &repo.url()).await?;
    fill(b, "#app-branch", "main").await?;
    fill(b, "#app-port", "70000").await?;
    fill(b, "#app-domains", &host).await?;
    fill(b, "#var-key-1", "GREETING").await?;
    fill(b, "#var-value-1", "hello there").await?;
    click(b, "#add-var").await?;
    fill(b, "#var-key-2", "API_TOKEN").await?;
    click(b, "#var-secret-2").await?;
    fill(b, "#var-value-2", "s3cret-value").await?;
    fill(b, "#hc-path", "/index.html").await?;
    fill(b, "#hc-deadline-s", "90").await?;
    anyhow::ensure!(
        b.execute("return document.querySelector('#var-value-2').type", vec![])
            .await?
            == "password",
        "a secret's value is not shown as it is typed"
    );
    click(b, "#create-app").await?;
    let said = field_error(b, "#app-name", "is not a DNS label").await?;
    anyhow::ensure!(said.contains("Not_A_Label"), "{said}");
    let focused = b
        .execute("return document.activeElement.id", vec![])
        .await?;
    assert_eq!(focused, "app-name", "the field to fix has the focus");
    accessible(b, "the New app form with an error").await?;

    // The name fixed: now the port is what the API names, the name's error is gone, and
    // nothing typed was lost.
    fill(b, "#app-name", &app).await?;
    click(b, "#create-app").await?;
    let said = field_error(b, "#app-port", "out of range").await?;
    anyhow::ensure!(said.contains("70000") && said.contains("65535"), "{said}");
    anyhow::ensure!(
        b.execute(
            "return document.querySelector('#app-name').getAttribute('aria-invalid') === null \
             && document.querySelector('#app-name-error').hidden",
            vec![]
        )
        .await?
            == true,
        "the name's error is cleared"
    );
    for (css, want) in [
        ("#app-name", app.as_str()),
        ("#app-repo", repo.url().as_str()),
        ("#app-branch", "main"),
        ("#app-port", "70000"),
        ("#app-domains", host.as_str()),
        ("#var-key-1", "GREETING"),
        ("#var-value-1", "hello there"),
        ("#var-key-2", "API_TOKEN"),
        ("#var-value-2", "s3cret-value"),
        ("#hc-path", "/index.html"),
        ("#hc-deadline-s", "90"),
    ] {
        assert_eq!(value(b, css).await?, want, "{css} kept what was typed");
    }
    anyhow::ensure!(
        b.execute(
            "return document.querySelector('#var-secret-2').checked",
            vec![]
        )
        .await?
            == true
    );
    let (s, v) = c.api.get(&format!("/api/v1/apps/{app}")).await?;
    assert_eq!(s, 404, "nothing was created: {v}");
    shots.take(b, "new-app-error").await?;

    // Analyze: the repository's root has no index.html (its page is under www/): the analysis
    // says what it looked for. With the context www it finds a static site on port 8080, which
    // the form takes over.
    click(b, "#analyze").await?;
    let said = until(
        b,
        "the analysis to say it found nothing to build",
        DEPLOY,
        "const e = document.querySelector('#analysis-error'); return e && e.textContent",
    )
    .await?;
    anyhow::ensure!(
        said.as_str().unwrap_or_default().contains("index.html"),
        "{said}"
    );
    fill(b, "#app-context", "www").await?;
    click(b, "#analyze").await?;
    let kind = until(
        b,
        "the analysis preview",
        DEPLOY,
        "const e = document.querySelector('#analysis-kind'); return e && e.textContent",
    )
    .await?;
    assert_eq!(kind, "static");
    assert_eq!(text(b, "#analysis-port").await?, "8080");
    anyhow::ensure!(
        text(b, "#analysis").await?.contains("found index.html"),
        "{}",
        text(b, "#analysis").await?
    );
    click(b, "#use-analysis").await?;
    assert_eq!(value(b, "#app-build-pack").await?, "auto");
    assert_eq!(value(b, "#app-port").await?, "8080");
    accessible(b, "the New app form with the analysis").await?;
    shots.take(b, "new-app").await?;

    // Created: the app's page.
    click(b, "#create-app").await?;
    until(
        b,
        "the new app's page",
        DEPLOY,
        &format!("return location.hash === '#/apps/{app}' && !!document.querySelector('#deploy')"),
    )
    .await?;
    let (s, got) = c.api.get(&format!("/api/v1/apps/{app}")).await?;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["build_pack"], "auto", "{got}");
    assert_eq!(got["context"], "www", "{got}");
    assert_eq!(got["port"], 8080, "{got}");
    assert_eq!(got["domains"], json!([host]), "{got}");
    assert_eq!(got["health_check"]["path"], "/index.html", "{got}");
    assert_eq!(got["health_check"]["deadline_s"], 90, "{got}");
    let (s, env) = c.api.get(&format!("/api/v1/apps/{app}/env")).await?;
    assert_eq!(s, 200, "{env}");
    let vars: Vec<Value> = serde_json::from_value(env.clone())?;
    let find = |k: &str| vars.iter().find(|v| v["key"] == k).cloned();
    let greeting = find("GREETING").context("GREETING")?;
    assert_eq!(greeting["value"], "hello there", "{env}");
    assert_eq!(greeting["secret"], false, "{env}");
    let secret = find("API_TOKEN").context("API_TOKEN")?;
    assert_eq!(secret["secret"], true, "{env}");
    anyhow::ensure!(
        !env.to_string().contains("s3cret-value"),
        "a secret's value is never returned: {env}"
    );

    // Deployed from its page.
    until(
        b,
        "Deploy enabled",
        UI,
        "const d = document.querySelector('#deploy'); return d && !d.disabled",
    )
    .await?;
    click(b, "#deploy").await?;
    until(
        b,
        "the deployment's log",
        UI,
        "return location.hash.includes('/deployments/')",
    )
    .await?;
    let id = shown_deployment(b).await?;
    let outcome = log_ends(b).await?;
    anyhow::ensure!(
        outcome.starts_with("Ended: succeeded"),
        "{outcome}\n{}",
        c.api.log(&id).await?
    );
    c.serves(&host, &version_marker("1")).await?;

    // Tokens: a read token, its value shown this once.
    click(b, "#nav-tokens").await?;
    until(
        b,
        "the Tokens page",
        UI,
        "return !!document.querySelector('#token-form') && /^\\d+ token/.test(document.querySelector('#tokens-status').textContent)",
    )
    .await?;
    accessible(b, "the Tokens page").await?;
    keyboard_focus(b, "the Tokens page", 5).await?;
    let viewer = berth_tests::unique("viewer");
    fill(b, "#token-name", &viewer).await?;
    b.find(Locator::Css("#token-scope"))
        .await?
        .select_by_value("read")
        .await?;
    // A bad expiry: the API's message under the field, the name kept.
    fill(b, "#token-expires", "soon").await?;
    click(b, "#create-token").await?;
    field_error(b, "#token-expires", "expires_in").await?;
    assert_eq!(value(b, "#token-name").await?, viewer);
    fill(b, "#token-expires", "30d").await?;
    click(b, "#create-token").await?;
    let secret = until(
        b,
        "the new token's value",
        UI,
        "const e = document.querySelector('#new-token-value'); return e && e.value",
    )
    .await?;
    let read_token = secret.as_str().unwrap_or_default().to_string();
    anyhow::ensure!(read_token.len() > 20, "{read_token}");
    let (s, list) = c.api.get("/api/v1/tokens").await?;
    assert_eq!(s, 200, "{list}");
    let token_id = list
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == viewer.as_str()))
        .and_then(|t| t["id"].as_str())
        .context("the new token in the list")?
        .to_string();
    let row = format!("tr[data-token=\"{token_id}\"]");
    until(
        b,
        "the new token's row",
        UI,
        &format!(
            "const r = document.querySelector('{row}'); return r && r.textContent.includes('read')"
        ),
    )
    .await?;
    anyhow::ensure!(text(b, &row).await?.contains(&viewer));
    click(b, "#copy-token").await?;
    until(
        b,
        "the copy button's answer",
        UI,
        "return document.querySelector('#copy-state').textContent",
    )
    .await?;
    accessible(b, "the Tokens page with a new token").await?;
    shots.take(b, "tokens").await?;
    // Once: the page shown again does not have it.
    click(b, "#nav-audit").await?;
    click(b, "#nav-tokens").await?;
    until(
        b,
        "the Tokens page again",
        UI,
        &format!("return !!document.querySelector('{row}')"),
    )
    .await?;
    let page = b
        .execute("return document.documentElement.outerHTML", vec![])
        .await?;
    anyhow::ensure!(
        !page.as_str().unwrap_or_default().contains(&read_token),
        "the token's value is shown once only"
    );

    // Signed in with the read token in the same browser: New app is disabled, and says why;
    // the Tokens and Audit pages say why instead of listing.
    b.goto(&format!("{}/#token={read_token}", c.api.base))
        .await?;
    until(
        b,
        "New app disabled for the read token",
        UI,
        "const n = document.querySelector('#new-app'); return n && n.disabled \
         && document.querySelector('#who-scope').textContent.includes('read')",
    )
    .await?;
    let why = text(b, "#apps-read-only").await?;
    anyhow::ensure!(
        why.contains("scope is read") && why.contains("needs an admin token"),
        "{why}"
    );
    anyhow::ensure!(
        b.execute(
            "return document.querySelector('#new-app').getAttribute('aria-describedby')",
            vec![]
        )
        .await?
            == "apps-read-only"
    );
    accessible(b, "the Apps page for a read token").await?;
    b.goto(&format!("{}/#/tokens", c.api.base)).await?;
    let why = until(
        b,
        "the Tokens page's reason",
        UI,
        "const e = document.querySelector('#tokens-reason'); return e && e.textContent",
    )
    .await?;
    anyhow::ensure!(
        why.as_str()
            .unwrap_or_default()
            .contains("needs an admin token"),
        "{why}"
    );
    anyhow::ensure!(text(b, "#tokens-table").await?.is_empty(), "no list");
    accessible(b, "the Tokens page for a read token").await?;
    b.goto(&format!("{}/#/audit", c.api.base)).await?;
    let why = until(
        b,
        "the Audit page's reason",
        UI,
        "const e = document.querySelector('#audit-reason'); return e && e.textContent",
    )
    .await?;
    anyhow::ensure!(
        why.as_str()
            .unwrap_or_default()
            .contains("needs an admin token"),
        "{why}"
    );

    // Back as the admin: revoke it, through the confirmation.
    b.goto(&admin_link).await?;
    until(
        b,
        "the admin token again",
        UI,
        "const n = document.querySelector('#new-app'); return n && !n.disabled",
    )
    .await?;
    click(b, "#nav-tokens").await?;
    click(b, &format!("{row} button.revoke")).await?;
    until(
        b,
        "the confirmation",
        UI,
        "const d = document.querySelector('#confirm'); return d && d.open",
    )
    .await?;
    anyhow::ensure!(text(b, "#confirm-text").await?.contains(&viewer));
    accessible(b, "the revoke confirmation").await?;
    click(b, "#confirm-no").await?;
    until(
        b,
        "the confirmation to close",
        UI,
        "return !document.querySelector('#confirm').open",
    )
    .await?;
    anyhow::ensure!(!text(b, &row).await?.is_empty(), "Cancel revoked nothing");
    click(b, &format!("{row} button.revoke")).await?;
    click(b, "#confirm-yes").await?;
    until(
        b,
        "the revoked token gone from the list",
        UI,
        &format!(
            "return !document.querySelector('{row}') && document.querySelector('#tokens-message').textContent.includes('revoked')"
        ),
    )
    .await?;
    let (s, list) = c.api.get("/api/v1/tokens").await?;
    assert_eq!(s, 200);
    anyhow::ensure!(!list.to_string().contains(&token_id), "{list}");
    let refused = berth_tests::http_client()
        .build()?
        .get(format!("{}/api/v1/apps", c.api.base))
        .bearer_auth(&read_token)
        .send()
        .await?;
    assert_eq!(refused.status(), 401, "the revoked token is refused");

    // Audit: what was just done, newest first.
    click(b, "#nav-audit").await?;
    let order = until(
        b,
        "the audit entries of the app's creation and the token's",
        UI,
        &format!(
            "const rows = [...document.querySelectorAll('#audit-table tbody tr')]; \
             const at = (a, t) => rows.findIndex((r) => r.dataset.action === a && r.dataset.target === t); \
             const i = [at('token.revoke', '{token_id}'), at('token.create', '{token_id}'), at('app.create', '{app}')]; \
             return i.every((x) => x >= 0) ? i : null"
        ),
    )
    .await?;
    let order: Vec<i64> = serde_json::from_value(order)?;
    anyhow::ensure!(
        order[0] < order[1] && order[1] < order[2],
        "newest first: {order:?}"
    );
    accessible(b, "the Audit page").await?;
    keyboard_focus(b, "the Audit page", 4).await?;
    shots.take(b, "audit").await?;
    fits_a_phone(b, "the Audit page").await?;
    // Narrowed to one action.
    b.find(Locator::Css("#audit-action"))
        .await?
        .select_by_value("app.create")
        .await?;
    let actions = until(
        b,
        "only app.create entries",
        UI,
        "const rows = [...document.querySelectorAll('#audit-table tbody tr')]; \
         return rows.length && rows.every((r) => r.dataset.action === 'app.create') ? rows.map((r) => r.dataset.target) : null",
    )
    .await?;
    anyhow::ensure!(actions.to_string().contains(&app), "{actions}");
    Ok(())
}
