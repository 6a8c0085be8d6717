//! The dashboard in a real browser: Debian's Chromium, headless, driven through chromedriver
//! (WebDriver) with fantoccini, against a `berth up` cluster (real Redis, Caddy, Docker, git).
//!
//! One flow, as a person would go: sign in by the link `berth open` prints, see the apps, deploy
//! and watch the build's lines arrive while it builds, see it succeed, deploy a second version,
//! roll back from the Deployments tab (confirming), see the first version served again; then a
//! `read` token signs in and finds every action disabled, with the reason. On every page an
//! accessibility check runs in the page (accessible names, image alternatives, unique ids,
//! language and title, the contrast of every text, focus outlines under the keyboard) and must
//! find nothing. The SSE reader (`/ui/sse.js`) is checked in the same browser: chunk framing,
//! and the resume with `Last-Event-ID` after a dropped connection.
//!
//! Screenshots of each page go to `$CARGO_TARGET_DIR/screenshots` (else `target/screenshots`);
//! the test prints the directory.

mod browser;

use anyhow::{Context, Result};
use berth_tests::{
    hello_page, ingress_get, repo_root, slow_dockerfile, version_marker, Cluster, GitRepo,
};
use browser::*;
use fantoccini::{Client, Locator};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    run("dashboard", |c, b, dir| Box::pin(flow(c, b, dir))).await;
}

async fn flow(c: &mut Cluster, b: &Client, dir: &std::path::Path) -> Result<()> {
    let shots = Shots::new()?;
    // An app whose first build has a step of a few seconds: its lines show while it builds.
    let repo = GitRepo::from_dir(&dir.join("src"), &repo_root().join("examples/hello"))?;
    let dockerfile = slow_dockerfile(5);
    let marker = dockerfile
        .split_whitespace()
        .find(|w| w.starts_with("layer-"))
        .context("the slow step's marker")?
        .to_string();
    repo.write("Dockerfile", &dockerfile)?;
    repo.commit("slow build")?;
    let app = berth_tests::unique("dash");
    let host = format!("{app}.localhost");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await?;

    // `berth up` printed the dashboard; `berth open` prints the link that signs in.
    let up_log = c.logs();
    anyhow::ensure!(
        up_log.contains(&format!("dashboard: {}/#token=", c.api.base)),
        "berth up names the dashboard:\n{up_log}"
    );
    let out = c.berth().arg("open").output()?;
    anyhow::ensure!(out.status.success(), "berth open: {out:?}");
    let link = String::from_utf8(out.stdout)?.trim().to_string();
    anyhow::ensure!(
        link == format!("{}/#token={}", c.api.base, c.api.token),
        "{link}"
    );

    // Without a token the page is the sign-in form; the files need no token, and the page is
    // served with a strict policy.
    let http = berth_tests::http_client().build()?;
    let page = http.get(format!("{}/", c.api.base)).send().await?;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()?
        .to_string();
    anyhow::ensure!(
        csp.contains("default-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let missing = http
        .get(format!("{}/ui/no-such-file.js", c.api.base))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    let asset = http.get(format!("{}/ui/sse.js", c.api.base)).send().await?;
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    b.goto(&format!("{}/", c.api.base)).await?;
    until(
        b,
        "the sign-in form",
        UI,
        "return !!document.querySelector('#sign-in')",
    )
    .await?;
    accessible(b, "the sign-in form").await?;
    shots.take(b, "sign-in").await?;

    // The link signs in and leaves the address bar without the token.
    b.goto(&link).await?;
    until(
        b,
        "the app in the apps table",
        UI,
        &format!("return !!document.querySelector('#apps-table tr[data-app=\"{app}\"]')"),
    )
    .await?;
    let url = b.current_url().await?;
    anyhow::ensure!(
        !url.as_str().contains("token") && !url.as_str().contains(&c.api.token),
        "the token left the address: {url}"
    );
    let row = text(b, &format!("tr[data-app=\"{app}\"]")).await?;
    anyhow::ensure!(row.contains("not deployed"), "{row}");
    anyhow::ensure!(text(b, "#who-scope").await?.contains("admin"));

    // Deploy from the app's page and watch the build's lines arrive while it builds.
    click(b, &format!("tr[data-app=\"{app}\"] a.app-link")).await?;
    until(
        b,
        "the app page",
        UI,
        "return !!document.querySelector('#deploy:not([disabled])')",
    )
    .await?;
    accessible(b, "the app page before any deployment").await?;
    click(b, "#deploy").await?;
    let seen = until(
        b,
        "the slow build step's line in the log",
        DEPLOY,
        &format!(
            "const l = [...document.querySelectorAll('#log li')].find((li) => li.textContent.includes({marker:?})); \
             return l ? document.querySelector('#log-state').textContent : null"
        ),
    )
    .await?;
    // The line came while the deployment still ran: the follow was live, not ended.
    assert_eq!(seen, "Following live…", "the line arrived during the build");
    let id1 = shown_deployment(b).await?;
    let d1 = c.api.get(&format!("/api/v1/deployments/{id1}")).await?.1;
    anyhow::ensure!(
        d1["finished_at"].is_null() || d1["status"] == "succeeded",
        "{d1}"
    );
    shots.take(b, "deployment-building").await?;
    let outcome = log_ends(b).await?;
    anyhow::ensure!(
        outcome.starts_with("Ended: succeeded"),
        "{outcome}\n{}",
        c.api.log(&id1).await?
    );
    c.serves(&host, &version_marker("1")).await?;
    // Every line of the log is on the page once, as the API has it.
    let api_lines = c.api.log(&id1).await?.lines().count();
    let page_lines = b
        .execute("return document.querySelectorAll('#log li').length", vec![])
        .await?;
    assert_eq!(
        page_lines.as_u64(),
        Some(api_lines as u64),
        "every log line once"
    );
    accessible(b, "a finished deployment's log").await?;

    // The domain link opens the app.
    let href = until(
        b,
        "the app's domain link",
        UI,
        "const a = document.querySelector('ul.domains a'); return a && a.href",
    )
    .await?;
    let href = href.as_str().unwrap_or_default().to_string();
    anyhow::ensure!(href.contains(&host), "{href}");
    b.goto(&href).await?;
    until(
        b,
        "the app itself through its domain",
        UI,
        "const v = document.querySelector('#version'); return v && v.textContent === '1'",
    )
    .await?;
    b.back().await?;
    until(
        b,
        "the app page again",
        UI,
        "return !!document.querySelector('#deploy')",
    )
    .await?;

    // A second version.
    repo.write("Dockerfile", &slow_dockerfile(0))?;
    repo.write("www/index.html", &hello_page("2"))?;
    repo.commit("v2")?;
    click(b, "#deploy").await?;
    let id2 = next_deployment_succeeds(b, &c.api, "the second deployment's log", &id1).await?;
    c.serves(&host, &version_marker("2")).await?;

    // Roll back to the first from the Deployments tab, through the confirmation.
    let rollback = format!("tr[data-id=\"{id1}\"] button.rollback");
    until(
        b,
        "Roll back to this on the first deployment",
        UI,
        &format!("return !!document.querySelector('{rollback}')"),
    )
    .await?;
    accessible(b, "the Deployments tab").await?;
    keyboard_focus(b, "the Deployments tab", 8).await?;
    shots.take(b, "app-deployments").await?;
    click(b, &rollback).await?;
    until(
        b,
        "the confirmation",
        UI,
        "const d = document.querySelector('#confirm'); return d && d.open",
    )
    .await?;
    accessible(b, "the rollback confirmation").await?;
    // Cancel changes nothing; confirming rolls back.
    click(b, "#confirm-no").await?;
    until(
        b,
        "the confirmation to close",
        UI,
        "return !document.querySelector('#confirm').open",
    )
    .await?;
    anyhow::ensure!(shown_deployment(b).await? == id2, "cancel queued nothing");
    click(b, &rollback).await?;
    click(b, "#confirm-yes").await?;
    let id3 = next_deployment_succeeds(b, &c.api, "the rollback's log", &id2).await?;
    let d3 = c.api.get(&format!("/api/v1/deployments/{id3}")).await?.1;
    assert_eq!(d3["kind"], "rollback", "{d3}");
    let (status, body) = ingress_get(c.ingress, &host).await?;
    assert_eq!(status, 200);
    anyhow::ensure!(
        body.contains(&version_marker("1")),
        "the first version serves again:\n{body}"
    );

    // The apps page now shows the release, the domain, the replicas and the last deploy.
    click(b, "#nav-apps").await?;
    let row = until(
        b,
        "the app's row to show its rollback",
        UI,
        &format!(
            "const r = document.querySelector('tr[data-app=\"{app}\"]'); \
             return r && r.textContent.includes('rollback succeeded') ? r.textContent : null"
        ),
    )
    .await?;
    let row = row.as_str().unwrap_or_default();
    anyhow::ensure!(
        row.contains("running") && row.contains(&host) && row.contains("1/1"),
        "{row}"
    );
    accessible(b, "the apps page").await?;
    keyboard_focus(b, "the apps page", 5).await?;
    shots.take(b, "apps").await?;

    // Phone width: nothing wider than the screen.
    b.set_window_size(390, 844).await?;
    until(
        b,
        "the page to fit a phone's width",
        UI,
        "return document.documentElement.scrollWidth <= window.innerWidth",
    )
    .await?;
    accessible(b, "the apps page at phone width").await?;
    shots.take(b, "apps-phone").await?;
    b.set_window_size(1280, 900).await?;

    // The Nodes page: the node, ready, with its heartbeat's age; Cordon and Uncordon act on it.
    let node_row = format!("tr[data-node=\"{}\"]", c.node);
    b.goto(&format!("{}/#/nodes", c.api.base)).await?;
    until(
        b,
        "the node in the nodes table",
        UI,
        &format!("return !!document.querySelector('{node_row} button.cordon:not([disabled])')"),
    )
    .await?;
    let row = text(b, &node_row).await?;
    anyhow::ensure!(
        row.contains("ready") && row.contains("ago") && row.contains("CPU"),
        "{row}"
    );
    accessible(b, "the nodes page").await?;
    keyboard_focus(b, "the nodes page", 4).await?;
    shots.take(b, "nodes").await?;
    let cordoned = |want: bool| {
        let api = c.api.clone();
        let node = c.node.clone();
        async move {
            let (s, v) = api.get("/api/v1/nodes").await?;
            anyhow::ensure!(s == 200, "{v}");
            let n = v
                .as_array()
                .and_then(|a| a.iter().find(|n| n["name"] == node.as_str()))
                .context("the node")?;
            anyhow::ensure!(n["cordoned"] == want, "cordoned should be {want}: {n}");
            Ok(())
        }
    };
    click(b, &format!("{node_row} button.cordon")).await?;
    until(
        b,
        "the node shown cordoned",
        UI,
        &format!("return !!document.querySelector('{node_row} button.uncordon')"),
    )
    .await?;
    anyhow::ensure!(text(b, &node_row).await?.contains("cordoned"));
    cordoned(true).await?;
    accessible(b, "the nodes page with a cordoned node").await?;
    click(b, &format!("{node_row} button.uncordon")).await?;
    until(
        b,
        "the node shown uncordoned",
        UI,
        &format!("return !!document.querySelector('{node_row} button.cordon')"),
    )
    .await?;
    cordoned(false).await?;

    // The SSE reader, in this browser.
    let v = b.execute_async(SSE_CHECK, vec![]).await?;
    anyhow::ensure!(v["error"].is_null(), "{v}");
    assert_eq!(
        v["framing"].as_str().unwrap_or_default(),
        r#"[{"event":"message","data":"{\"a\":1}","id":"1-0"},{"event":"message","data":"x\ny","id":"1-1"},{"event":"end","data":"{}","id":"1-1"}]"#
    );
    assert_eq!(
        v["calls"],
        json!([null, "5-0"]),
        "resumed after the last id"
    );
    assert_eq!(
        v["seen"],
        json!(["one", "two", r#"{"status":"succeeded"}"#])
    );
    assert_eq!(v["end"], "end");

    // A deploy token, by a link opened in the signed-in page (only the fragment changes): it
    // may deploy and roll back.
    let (s, t) = c
        .api
        .post("/api/v1/tokens", json!({"name": "ci", "scope": "deploy"}))
        .await?;
    assert_eq!(s, 201, "{t}");
    let deploy_token = t["token"].as_str().context("the token")?;
    b.goto(&format!("{}/#token={deploy_token}", c.api.base))
        .await?;
    until(
        b,
        "the deploy token's scope in the header",
        UI,
        "const e = document.querySelector('#who-scope'); return e && e.textContent.includes('deploy')",
    )
    .await?;
    anyhow::ensure!(!b.current_url().await?.as_str().contains(deploy_token));
    click(b, &format!("tr[data-app=\"{app}\"] a.app-link")).await?;
    until(
        b,
        "Deploy and Roll back to this enabled for a deploy token",
        UI,
        "const bs = [...document.querySelectorAll('#deploy, button.rollback')]; \
         return bs.length >= 2 && bs.every((b) => !b.disabled) && document.querySelector('#read-only').hidden",
    )
    .await?;

    // A read token: everything shows, every action is disabled and says why.
    let (s, t) = c
        .api
        .post("/api/v1/tokens", json!({"name": "viewer", "scope": "read"}))
        .await?;
    assert_eq!(s, 201, "{t}");
    let read_token = t["token"].as_str().context("the token")?.to_string();
    click(b, "#sign-out").await?;
    until(
        b,
        "the sign-in form",
        UI,
        "return !!document.querySelector('#token')",
    )
    .await?;
    b.find(Locator::Css("#token"))
        .await?
        .send_keys(&read_token)
        .await?;
    click(b, "#sign-in button[type=submit]").await?;
    until(
        b,
        "the apps table for the read token",
        UI,
        &format!("return !!document.querySelector('tr[data-app=\"{app}\"]')"),
    )
    .await?;
    anyhow::ensure!(text(b, "#who-scope").await?.contains("read"));
    click(b, &format!("tr[data-app=\"{app}\"] a.app-link")).await?;
    until(
        b,
        "the rollback buttons for the read token",
        UI,
        "return document.querySelectorAll('button.rollback').length > 0",
    )
    .await?;
    let disabled = b
        .execute(
            "return [...document.querySelectorAll('#deploy, button.rollback')].map((b) => b.disabled)",
            vec![],
        )
        .await?;
    let disabled: Vec<bool> = serde_json::from_value(disabled)?;
    anyhow::ensure!(
        disabled.len() >= 2 && disabled.iter().all(|d| *d),
        "every action disabled: {disabled:?}"
    );
    let why = text(b, "#read-only").await?;
    anyhow::ensure!(
        why.contains("scope is read") && why.contains("deploy"),
        "the reason is shown: {why}"
    );
    accessible(b, "the app page for a read token").await?;
    shots.take(b, "read-only").await?;
    // … on the Nodes page too (cordon and drain need an admin token).
    b.goto(&format!("{}/#/nodes", c.api.base)).await?;
    until(
        b,
        "the node's buttons for the read token",
        UI,
        &format!("return !!document.querySelector('{node_row} button.drain')"),
    )
    .await?;
    let disabled = b
        .execute(
            "return [...document.querySelectorAll('#nodes button')].map((b) => b.disabled)",
            vec![],
        )
        .await?;
    let disabled: Vec<bool> = serde_json::from_value(disabled)?;
    anyhow::ensure!(
        disabled.len() == 2 && disabled.iter().all(|d| *d),
        "cordon and drain disabled: {disabled:?}"
    );
    let why = text(b, "#nodes-read-only").await?;
    anyhow::ensure!(
        why.contains("scope is read") && why.contains("admin"),
        "the reason is shown: {why}"
    );
    accessible(b, "the nodes page for a read token").await?;

    // A wrong token is refused with the API's reason, back at the sign-in form.
    click(b, "#sign-out").await?;
    until(
        b,
        "the sign-in form",
        UI,
        "return !!document.querySelector('#token')",
    )
    .await?;
    b.find(Locator::Css("#token"))
        .await?
        .send_keys("not-a-token-at-all")
        .await?;
    click(b, "#sign-in button[type=submit]").await?;
    let refused = until(
        b,
        "the refusal",
        UI,
        "const e = document.querySelector('#sign-in-error'); return e && e.textContent",
    )
    .await?;
    anyhow::ensure!(
        refused.as_str().unwrap_or_default().contains("refused"),
        "{refused}"
    );
    Ok(())
}
