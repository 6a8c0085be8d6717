//! The dashboard served from another origin than the API's, in a real browser (headless
//! Chromium against a `berth up` cluster with real Redis, Caddy, Docker and git): its files
//! written by `berth export-dashboard` and served by busybox httpd on two loopback ports, the API
//! listing one of them in `api.cors_origins`. From the listed origin the page signs in, lists the
//! apps, deploys (a POST, preflighted) and follows the build's log to its end (SSE over fetch,
//! with `Authorization`); from the other origin the browser keeps every answer from the page,
//! which says which setting would let it in. The API's own page still works beside them.

mod browser;

use std::process::Command;

use anyhow::{Context, Result};
use berth_tests::{free_port, repo_root, Cluster, GitRepo, Proc};
use browser::*;
use fantoccini::Client;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_on_another_origin_works_only_when_listed() {
    let (listed, other) = (free_port(), free_port());
    let origin = format!("http://127.0.0.1:{listed}");
    run_with(
        "dashboard-origin",
        &[("BERTH_API__CORS_ORIGINS", &origin)],
        move |c, b, dir| Box::pin(flow(c, b, dir, listed, other)),
    )
    .await;
}

/// busybox httpd serving `site` on `port` (module scripts need a JavaScript type, which its
/// built-in table may not know: given in its config).
fn httpd(dir: &std::path::Path, site: &std::path::Path, port: u16) -> Result<Proc> {
    let conf = dir.join("httpd.conf");
    std::fs::write(
        &conf,
        ".js:text/javascript\n.svg:image/svg+xml\n.css:text/css\n",
    )?;
    let mut cmd = Command::new("busybox");
    cmd.args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
        .arg(site)
        .arg("-c")
        .arg(&conf);
    Proc::spawn(
        &format!("httpd :{port}"),
        cmd,
        dir.join(format!("httpd-{port}.log")),
    )
    .context("busybox httpd (Debian's busybox-static; scripts/setup.sh installs it)")
}

async fn flow(
    c: &mut Cluster,
    b: &Client,
    dir: &std::path::Path,
    listed: u16,
    other: u16,
) -> Result<()> {
    // A wrong address is refused with the reason; nothing is written.
    let bad = c
        .berth()
        .args(["export-dashboard", "--api", "berth.example.com"])
        .arg(dir.join("bad"))
        .output()?;
    let said = String::from_utf8_lossy(&bad.stderr);
    anyhow::ensure!(!bad.status.success(), "a bad --api was taken: {said}");
    anyhow::ensure!(said.contains("is not the API's address"), "{said}");
    anyhow::ensure!(!dir.join("bad").exists(), "files written for a bad --api");

    let site = dir.join("site");
    let out = c
        .berth()
        .args(["export-dashboard", "--api", &c.api.base])
        .arg(&site)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "export-dashboard: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        site.join("ui/main.js").is_file(),
        "no ui/main.js in the copy"
    );
    let _servers = (httpd(dir, &site, listed)?, httpd(dir, &site, other)?);

    let repo = GitRepo::from_dir(&dir.join("src"), &repo_root().join("examples/hello"))?;
    let app = berth_tests::unique("origin");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080}))
        .await?;

    // The API answers a listed origin's preflight, and nobody else's.
    let http = reqwest::Client::new();
    let preflight = |origin: String| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/apps/{app}/deployments", c.api.base),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
    };
    let ok = preflight(format!("http://127.0.0.1:{listed}")).await?;
    anyhow::ensure!(ok.status() == 204, "preflight: {}", ok.status());
    anyhow::ensure!(
        ok.headers()["access-control-allow-origin"]
            == format!("http://127.0.0.1:{listed}").as_str(),
        "{:?}",
        ok.headers()
    );
    let refused = preflight(format!("http://127.0.0.1:{other}")).await?;
    anyhow::ensure!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin"),
        "an unlisted origin was allowed: {:?}",
        refused.headers()
    );

    // From the listed origin: signed in by the link `berth open --at` prints, the apps listed.
    let link = c
        .berth()
        .args(["open", "--at", &format!("http://127.0.0.1:{listed}/")])
        .output()?;
    let link = String::from_utf8(link.stdout)?.trim().to_string();
    anyhow::ensure!(
        link.starts_with(&format!("http://127.0.0.1:{listed}/#token=")),
        "{link}"
    );
    b.goto(&link).await?;
    until(
        b,
        "the app in the apps table of the page on the listed origin",
        UI,
        &format!("return !!document.querySelector('#apps-table tr[data-app=\"{app}\"]')"),
    )
    .await?;
    accessible(b, "the apps page served elsewhere").await?;

    // A deployment started there, its log followed live to its end.
    click(b, &format!("tr[data-app=\"{app}\"] a.app-link")).await?;
    until(
        b,
        "the app page",
        UI,
        "return !!document.querySelector('#deploy:not([disabled])')",
    )
    .await?;
    click(b, "#deploy").await?;
    next_deployment_succeeds(b, &c.api, "the deployment's log", "none").await?;

    // From an origin the API does not list, the browser lets the page read nothing; it says why.
    b.goto(&format!("http://127.0.0.1:{other}/#token={}", c.api.token))
        .await?;
    let said = until(
        b,
        "the page on the unlisted origin to say it cannot reach the API",
        UI,
        "const e = document.querySelector('#main p.error'); return e ? e.textContent : null",
    )
    .await?;
    let said = said.as_str().unwrap_or_default();
    anyhow::ensure!(
        said.contains(&c.api.base)
            && said.contains("api.cors_origins")
            && said.contains(&format!("http://127.0.0.1:{other}")),
        "{said}"
    );

    // The API's own page is untouched by the setting.
    b.goto(&format!("{}/#token={}", c.api.base, c.api.token))
        .await?;
    until(
        b,
        "the app in the apps table of the API's own page",
        UI,
        &format!("return !!document.querySelector('#apps-table tr[data-app=\"{app}\"]')"),
    )
    .await?;
    Ok(())
}
