//! An app's tabs in a real browser (Debian's Chromium through chromedriver, against a `berth up`
//! cluster with real Redis, Caddy, Docker and git): Resources shows the replica the API lists;
//! Logs follows the runtime log live, with replica tags, a filter and a pause that holds lines
//! back and lets them through on resume; Monitoring draws the node's samples as SVG charts and
//! changes its window; Configuration refuses a bad port next to the field keeping what was
//! typed, saves a new domain, sets a secret without ever showing it, removes a variable through
//! a confirmation and redeploys to apply (the new domain then serves); a deployment still
//! building is cancelled from its log; one queued through the API shows in the list within
//! seconds (the page follows the API's events); a `read` token finds the tabs' actions disabled.
//! The Logs and Configuration tabs fit a phone's width. Every
//! tab passes the accessibility check and is photographed.

mod browser;

use std::time::Duration;

use anyhow::{Context, Result};
use berth_tests::{
    ingress_get, ingress_get_path, repo_root, slow_dockerfile, unique, Cluster, GitRepo,
};
use browser::*;
use fantoccini::Client;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_tabs_in_a_real_browser() {
    run("dashboard-tabs", |c, b, dir| Box::pin(flow(c, b, dir))).await;
}

/// Opens tab `tab` by its link and waits for its panel.
async fn open_tab(b: &Client, tab: &str) -> Result<()> {
    click(b, &format!("#tab-{tab}")).await?;
    until(
        b,
        &format!("the {tab} tab"),
        UI,
        &format!(
            "return document.querySelector('#tab-panel').dataset.tab === '{tab}' && \
             document.querySelector('#tab-{tab}').getAttribute('aria-current') === 'page'"
        ),
    )
    .await?;
    Ok(())
}

async fn flow(c: &mut Cluster, b: &Client, dir: &std::path::Path) -> Result<()> {
    let shots = Shots::new()?;
    // The example app, its busybox httpd with `-vv`: it logs every request's path.
    let repo = GitRepo::from_dir(&dir.join("src"), &repo_root().join("examples/hello"))?;
    repo.write(
        "Dockerfile",
        "FROM busybox\nCOPY www /www\nCMD [\"httpd\", \"-f\", \"-vv\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )?;
    repo.commit("log every request")?;
    let app = unique("tabs");
    let host = format!("{app}.localhost");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "drain_s": 1}))
        .await?;
    let (d1, rec) = c
        .api
        .deploy_and_wait(&app, None, Duration::from_secs(180))
        .await?;
    anyhow::ensure!(rec["status"] == "succeeded", "{rec}");

    b.goto(&format!("{}/#token={}", c.api.base, c.api.token))
        .await?;
    until(
        b,
        "the apps table",
        UI,
        &format!("return !!document.querySelector('tr[data-app=\"{app}\"]')"),
    )
    .await?;
    click(b, &format!("tr[data-app=\"{app}\"] a.app-link")).await?;
    until(
        b,
        "the app page",
        UI,
        "return !!document.querySelector('#tab-resources')",
    )
    .await?;

    // Resources: the one replica, healthy and serving, on the node, from the deployment.
    open_tab(b, "resources").await?;
    let row = until(
        b,
        "the replica's row",
        UI,
        "const r = document.querySelector('#replicas-table tbody tr'); return r && r.textContent",
    )
    .await?;
    let row = row.as_str().unwrap_or_default().to_string();
    anyhow::ensure!(
        row.contains(&c.node)
            && row.contains("healthy")
            && row.contains("serving")
            && row.contains(&d1[..10]),
        "{row}"
    );
    let (_, replicas) = c.api.get(&format!("/api/v1/apps/{app}/replicas")).await?;
    let container = replicas[0]["container"]
        .as_str()
        .context("the API's replica")?
        .to_string();
    let short = &container[..container.len().min(12)];
    anyhow::ensure!(row.contains(short), "{row} names {short}");
    let summary = text(b, "#replicas-summary").await?;
    anyhow::ensure!(
        summary.starts_with("1 healthy of 1 serving (1 wanted), on 1 node"),
        "{summary}"
    );
    accessible(b, "the Resources tab").await?;
    shots.take(b, "app-resources").await?;

    // Logs: a request's line arrives live, tagged with its replica.
    open_tab(b, "logs").await?;
    until(
        b,
        "the runtime log to follow",
        UI,
        "return document.querySelector('#logs-state').textContent === 'Following live…'",
    )
    .await?;
    let first = unique("seen");
    ingress_get_path(c.ingress, &host, &format!("/{first}")).await?;
    let line = until(
        b,
        "the request's line in the runtime log",
        UI,
        &format!(
            "const l = [...document.querySelectorAll('#app-log li')].find((li) => li.textContent.includes('{first}')); \
             return l ? l.textContent : null"
        ),
    )
    .await?;
    let line = line.as_str().unwrap_or_default().to_string();
    // The tag: the container's name (it carries the deployment's id) at its node.
    anyhow::ensure!(
        line.contains(&format!("{d1} @ {}", c.node)),
        "the replica's tag: {line}"
    );
    // The filter hides what does not match, and says so.
    fill(b, "#logs-filter", "no-line-has-this").await?;
    until(
        b,
        "the filter to hide every line",
        UI,
        "return [...document.querySelectorAll('#app-log li')].every((li) => li.hidden) && !document.querySelector('#logs-empty').hidden",
    )
    .await?;
    fill(b, "#logs-filter", &first).await?;
    until(
        b,
        "the filter to show the line",
        UI,
        "return [...document.querySelectorAll('#app-log li')].filter((li) => !li.hidden).length === 1",
    )
    .await?;
    fill(b, "#logs-filter", "").await?;
    // Paused, a new line waits (and is counted); resumed, it shows.
    click(b, "#logs-pause").await?;
    let held = unique("held");
    ingress_get_path(c.ingress, &host, &format!("/{held}")).await?;
    until(
        b,
        "the paused log to count the waiting line",
        UI,
        "return /^Paused: [1-9]\\d* new lines? waiting\\.$/.test(document.querySelector('#logs-state').textContent)",
    )
    .await?;
    let shown = b
        .execute(
            &format!("return document.querySelector('#app-log').textContent.includes('{held}')"),
            vec![],
        )
        .await?;
    anyhow::ensure!(shown == json!(false), "a paused log shows no new line");
    accessible(b, "the Logs tab, paused").await?;
    shots.take(b, "app-logs").await?;
    click(b, "#logs-pause").await?;
    until(
        b,
        "the held line after resuming",
        UI,
        &format!("return document.querySelector('#app-log').textContent.includes('{held}')"),
    )
    .await?;

    fits_a_phone(b, "the Logs tab").await?;

    // Monitoring: the node's samples drawn as lines; another window is asked for.
    open_tab(b, "monitoring").await?;
    let desc = until(
        b,
        "a CPU sample in the chart",
        Duration::from_secs(60),
        "const d = document.querySelector('#chart-cpu-desc'); \
         return d && d.textContent.startsWith('Latest') && document.querySelectorAll('#chart-cpu polyline, #chart-cpu circle').length >= 2 ? d.textContent : null",
    )
    .await?;
    anyhow::ensure!(
        desc.as_str()
            .unwrap_or_default()
            .contains(&format!("{d1} @ {}", c.node)),
        "the replica's line is labelled: {desc}"
    );
    for chart in ["chart-cpu", "chart-mem", "chart-rx", "chart-tx"] {
        anyhow::ensure!(
            !text(b, &format!("[data-chart={chart}] figcaption"))
                .await?
                .is_empty(),
            "{chart} is there"
        );
    }
    b.execute(
        "const s = document.querySelector('#metrics-window'); s.value = '5m'; s.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await?;
    until(
        b,
        "the 5-minute window",
        UI,
        "return document.querySelector('#metrics-status').textContent.includes('5 minutes')",
    )
    .await?;
    accessible(b, "the Monitoring tab").await?;
    shots.take(b, "app-monitoring").await?;

    // Configuration: a bad port is refused next to the field, the rest kept.
    open_tab(b, "configuration").await?;
    until(
        b,
        "the form filled from the app",
        UI,
        "return document.querySelector('#cfg-port').value === '8080'",
    )
    .await?;
    let domain2 = format!("{app}-two.localhost");
    fill(b, "#cfg-domains", &format!("{host}\n{domain2}")).await?;
    fill(b, "#cfg-port", "0").await?;
    click(b, "#config-save").await?;
    let err = until(
        b,
        "the port's error next to it",
        UI,
        "const e = document.querySelector('#cfg-port-error'); \
         return e && !e.hidden && document.querySelector('#cfg-port').getAttribute('aria-invalid') === 'true' ? e.textContent : null",
    )
    .await?;
    anyhow::ensure!(err.as_str().unwrap_or_default().contains("port"), "{err}");
    let kept = b
        .execute(
            "return document.querySelector('#cfg-domains').value",
            vec![],
        )
        .await?;
    anyhow::ensure!(
        kept.as_str().unwrap_or_default().contains(&domain2),
        "what was typed stays: {kept}"
    );
    accessible(b, "the Configuration tab with an error").await?;
    let (_, now) = c.api.get(&format!("/api/v1/apps/{app}")).await?;
    assert_eq!(now["port"], 8080, "nothing was saved: {now}");
    // Fixed, it saves, and offers to redeploy.
    fill(b, "#cfg-port", "8080").await?;
    click(b, "#config-save").await?;
    until(
        b,
        "the saved settings",
        UI,
        "return !document.querySelector('#config-pending').hidden && document.querySelector('#config-status').textContent.startsWith('Saved')",
    )
    .await?;
    let (_, now) = c.api.get(&format!("/api/v1/apps/{app}")).await?;
    assert_eq!(now["domains"], json!([host, domain2]), "{now}");
    // A secret is set without being shown; a plain variable shows, and goes through a confirmation.
    let secret = unique("hunter");
    fill(b, "#env-key", "API_SECRET").await?;
    click(b, "#env-secret").await?;
    fill(b, "#env-value", &secret).await?;
    let kind = b
        .execute("return document.querySelector('#env-value').type", vec![])
        .await?;
    assert_eq!(kind, json!("password"), "a secret is typed like a password");
    click(b, "#env-set").await?;
    until(
        b,
        "the secret in the list",
        UI,
        "return !!document.querySelector('#env-table tr[data-key=API_SECRET] .masked')",
    )
    .await?;
    fill(b, "#env-key", "GREETING").await?;
    fill(b, "#env-value", "hello").await?;
    click(b, "#env-set").await?;
    until(
        b,
        "the plain variable in the list",
        UI,
        "const r = document.querySelector('#env-table tr[data-key=GREETING]'); return r && r.textContent.includes('hello')",
    )
    .await?;
    let page = text(b, "body").await?;
    anyhow::ensure!(!page.contains(&secret), "the secret's value is never shown");
    // A bad name is refused next to the name field.
    fill(b, "#env-key", "1BAD").await?;
    fill(b, "#env-value", "x").await?;
    click(b, "#env-set").await?;
    until(
        b,
        "the name's error",
        UI,
        "const e = document.querySelector('#env-key-error'); return e && !e.hidden",
    )
    .await?;
    accessible(b, "the Configuration tab").await?;
    keyboard_focus(b, "the Configuration tab", 12).await?;
    fits_a_phone(b, "the Configuration tab").await?;
    shots.take(b, "app-configuration").await?;
    click(b, "#env-table tr[data-key=GREETING] button.env-remove").await?;
    click(b, "#confirm-yes").await?;
    until(
        b,
        "the variable removed",
        UI,
        "return !document.querySelector('#env-table tr[data-key=GREETING]')",
    )
    .await?;
    let (_, env) = c.api.get(&format!("/api/v1/apps/{app}/env")).await?;
    let keys: Vec<&str> = env
        .as_array()
        .context("the variables")?
        .iter()
        .filter_map(|v| v["key"].as_str())
        .collect();
    assert_eq!(keys, ["API_SECRET"], "{env}");
    anyhow::ensure!(!env.to_string().contains(&secret), "{env}");
    // Redeploy to apply: the new domain serves.
    click(b, "#redeploy").await?;
    let d2 = next_deployment_succeeds(b, &c.api, "the redeploy's log", &d1).await?;
    let (status, _) = ingress_get(c.ingress, &domain2).await?;
    assert_eq!(status, 200, "the new domain serves after {d2}");

    // Cancel: a slow build is cancelled from its log, through the confirmation.
    repo.write("Dockerfile", &slow_dockerfile(60))?;
    repo.commit("slow")?;
    click(b, "#deploy").await?;
    until(
        b,
        "the Cancel button of the running deployment",
        DEPLOY,
        &format!(
            "return location.hash.includes('/deployments/') && !location.hash.endsWith('{d2}') && \
             !document.querySelector('#log-cancel').hidden"
        ),
    )
    .await?;
    let d3 = shown_deployment(b).await?;
    click(b, "#log-cancel").await?;
    until(
        b,
        "the confirmation",
        UI,
        "const d = document.querySelector('#confirm'); return d && d.open",
    )
    .await?;
    click(b, "#confirm-yes").await?;
    let outcome = log_ends(b).await?;
    anyhow::ensure!(outcome.starts_with("Ended: cancelled"), "{outcome}");
    let (_, rec) = c.api.get(&format!("/api/v1/deployments/{d3}")).await?;
    assert_eq!(rec["status"], "cancelled", "{rec}");

    // Live lists: a deployment queued elsewhere (the API, as the CLI does) shows in the list
    // within seconds — the page follows GET /api/v1/events; its own reads are 30 s apart.
    let d4 = c.api.deploy(&app, None).await?;
    until(
        b,
        "a deployment queued through the API in the list",
        Duration::from_secs(8),
        &format!("return !!document.querySelector('#deployments-table tr[data-id=\"{d4}\"]')"),
    )
    .await?;
    let (s, _) = c
        .api
        .post(&format!("/api/v1/deployments/{d4}/cancel"), json!({}))
        .await?;
    assert_eq!(s, 200);

    // A read token sees the tabs with their actions disabled.
    let (s, t) = c
        .api
        .post("/api/v1/tokens", json!({"name": "viewer", "scope": "read"}))
        .await?;
    assert_eq!(s, 201, "{t}");
    let read = t["token"].as_str().context("the token")?.to_string();
    b.goto(&format!("{}/#token={}", c.api.base, read)).await?;
    until(
        b,
        "the apps table for the read token",
        UI,
        &format!("return !!document.querySelector('tr[data-app=\"{app}\"]')"),
    )
    .await?;
    b.goto(&format!("{}/#/apps/{app}/configuration", c.api.base))
        .await?;
    until(
        b,
        "the configuration's disabled actions",
        UI,
        "const bs = [...document.querySelectorAll('#config-save, #env-set, button.env-remove')]; \
         return bs.length >= 3 && bs.every((b) => b.disabled) && !document.querySelector('#config-read-only').hidden",
    )
    .await?;
    // Changing settings and variables needs an admin token, as in the API; the page says so.
    let why = text(b, "#config-read-only").await?;
    anyhow::ensure!(
        why.contains("scope is read") && why.contains("admin"),
        "the reason is shown: {why}"
    );
    accessible(b, "the Configuration tab for a read token").await?;
    Ok(())
}
