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

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_tests::{
    eventually, free_port, hello_page, ingress_get, repo_root, slow_dockerfile, version_marker,
    Cluster, GitRepo, Proc, TempDir,
};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const DEPLOY: Duration = Duration::from_secs(180);
const UI: Duration = Duration::from_secs(20);

/// chromedriver on a free port, and a WebDriver session of headless Chromium on it.
async fn browser(dir: &std::path::Path) -> Result<(Proc, Client)> {
    let port = free_port();
    let mut cmd = Command::new("chromedriver");
    cmd.arg(format!("--port={port}"));
    let driver = Proc::spawn("chromedriver", cmd, dir.join("chromedriver.log"))
        .context("chromedriver (Debian's chromium-driver; scripts/setup.sh installs it)")?;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            // CI runs as root, where Chromium's sandbox cannot start.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-first-run", "--no-default-browser-check",
                     format!("--user-data-dir={}", dir.join("chromium").display())],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = eventually("chromedriver to take a session", UI, || {
        let (caps, url) = (caps.clone(), url.clone());
        async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&url)
                .await
                .ok()
        }
    })
    .await?;
    Ok((driver, client))
}

/// Runs `script` in the page until it returns something other than null, false or "" (then
/// that), or fails after `timeout` saying `what` (with the page's text).
async fn until(c: &Client, what: &str, timeout: Duration, script: &str) -> Result<Value> {
    let got = eventually(what, timeout, || async {
        match c.execute(script, vec![]).await {
            Ok(Value::Null) | Ok(Value::Bool(false)) => None,
            Ok(Value::String(s)) if s.is_empty() => None,
            Ok(v) => Some(v),
            Err(_) => None,
        }
    })
    .await;
    match got {
        Ok(v) => Ok(v),
        Err(e) => {
            let text = c
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            bail!("{e}\npage text:\n{}", text.as_str().unwrap_or_default())
        }
    }
}

/// Clicks the element `css` (found in the page within `UI`).
async fn click(c: &Client, css: &str) -> Result<()> {
    until(
        c,
        &format!("{css} to be there"),
        UI,
        &format!("return !!document.querySelector({css:?})"),
    )
    .await?;
    c.find(Locator::Css(css)).await?.click().await?;
    Ok(())
}

/// The text of the first `css` element in the page, or "".
async fn text(c: &Client, css: &str) -> Result<String> {
    let v = c
        .execute(
            &format!("const e = document.querySelector({css:?}); return e ? e.textContent : ''"),
            vec![],
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

/// Waits for the followed deployment's log to end and returns the outcome line.
async fn log_ends(c: &Client) -> Result<String> {
    let v = until(
        c,
        "the followed deployment to end",
        DEPLOY,
        "const e = document.querySelector('#log-state'); \
         return e && e.textContent.startsWith('Ended') ? e.textContent : null",
    )
    .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

/// Waits until the page shows a deployment other than `previous` (`what` names it), follows
/// its log to its end and checks that it succeeded; its id.
async fn next_deployment_succeeds(
    b: &Client,
    api: &berth_tests::Api,
    what: &str,
    previous: &str,
) -> Result<String> {
    until(
        b,
        what,
        UI,
        &format!(
            "return location.hash.includes('/deployments/') && !location.hash.endsWith('{previous}')"
        ),
    )
    .await?;
    let id = shown_deployment(b).await?;
    let outcome = log_ends(b).await?;
    anyhow::ensure!(
        outcome.starts_with("Ended: succeeded"),
        "{outcome}\n{}",
        api.log(&id).await?
    );
    Ok(id)
}

/// The deployment whose log the page shows (from the address: `#/apps/A/deployments/ID`).
async fn shown_deployment(c: &Client) -> Result<String> {
    let url = c.current_url().await?;
    let frag = url.fragment().unwrap_or_default().to_string();
    frag.rsplit_once("/deployments/")
        .map(|(_, id)| id.to_string())
        .with_context(|| format!("no deployment in the address {url}"))
}

struct Shots {
    dir: PathBuf,
}

impl Shots {
    fn new() -> Result<Shots> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        let dir = target.join("screenshots");
        std::fs::create_dir_all(&dir)?;
        println!("screenshots: {}", dir.display());
        Ok(Shots { dir })
    }

    async fn take(&self, c: &Client, name: &str) -> Result<()> {
        let png = c.screenshot().await?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.dir.join(format!("{name}.png")), png)?;
        Ok(())
    }
}

/// The accessibility check, run in the page: what it finds wrong (nothing, to pass).
///
/// - every link, button, input and focusable element has an accessible name (aria-label,
///   aria-labelledby, its label, its text, an image's alt, or a title);
/// - every image has an `alt`; ids are unique; the page has a language and a title;
/// - every visible text has a contrast of at least 4.5:1 with the background it is drawn on
///   (3:1 for large text: 24 px, or 18.66 px bold), computed from the colours the browser
///   computed, backgrounds composed up the ancestors.
const A11Y: &str = r#"
const problems = [];
const shown = (el) => {
  const r = el.getBoundingClientRect();
  const s = getComputedStyle(el);
  return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
};
const byIds = (ids) => ids.split(/\s+/).map((id) => (document.getElementById(id) || {}).textContent || "").join(" ").trim();
function accessibleName(el) {
  const label = (el.getAttribute("aria-label") || "").trim();
  if (label) return label;
  if (el.getAttribute("aria-labelledby")) { const t = byIds(el.getAttribute("aria-labelledby")); if (t) return t; }
  if (el.labels && el.labels.length) { const t = [...el.labels].map((l) => l.textContent).join(" ").trim(); if (t) return t; }
  if (el.tagName !== "INPUT") {
    const t = (el.textContent || "").trim(); if (t) return t;
    const img = el.querySelector("img[alt]"); if (img && img.alt.trim()) return img.alt.trim();
  }
  return (el.getAttribute("title") || "").trim();
}
for (const el of document.querySelectorAll("a[href], button, input, select, textarea, [tabindex]:not([tabindex='-1'])")) {
  if (el.type === "hidden") continue;
  if (!accessibleName(el)) problems.push("no accessible name: " + el.outerHTML.slice(0, 160));
}
for (const img of document.images) if (!img.hasAttribute("alt")) problems.push("image without alt: " + img.src);
const seen = new Set();
for (const el of document.querySelectorAll("[id]")) {
  if (seen.has(el.id)) problems.push("duplicate id " + el.id);
  seen.add(el.id);
}
if (!document.documentElement.lang) problems.push("no lang on <html>");
if (!document.title.trim()) problems.push("no title");

const rgba = (c) => { const m = c.match(/[\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
const over = (top, bottom) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat(1); };
function background(el) {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) layers.push(c);
    if (c[3] >= 1) break;
  }
  let bg = [255, 255, 255, 1];
  for (const l of layers.reverse()) bg = over(l, bg);
  return bg;
}
const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
let checked = 0;
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const done = new Set();
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const el = n.parentElement;
  if (!n.textContent.trim() || done.has(el) || !shown(el)) continue;
  if (el.closest(".visually-hidden, [hidden], noscript")) continue;
  done.add(el);
  const s = getComputedStyle(el);
  const bg = background(el);
  const fg = over(rgba(s.color), bg);
  const size = parseFloat(s.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
  const need = large ? 3 : 4.5;
  const r = ratio(fg, bg);
  checked++;
  if (r < need) problems.push(`contrast ${r.toFixed(2)} < ${need} for "${n.textContent.trim().slice(0, 40)}" (${s.color} on rgb(${bg.slice(0, 3).map(Math.round)}))`);
}
if (!checked) problems.push("no text was checked");
return problems;
"#;

/// Runs [`A11Y`] on the page and fails on any problem; `page` names it in the message.
async fn accessible(c: &Client, page: &str) -> Result<()> {
    let v = c.execute(A11Y, vec![]).await?;
    let problems: Vec<String> = serde_json::from_value(v)?;
    anyhow::ensure!(
        problems.is_empty(),
        "accessibility problems on {page}:\n{}",
        problems.join("\n")
    );
    Ok(())
}

/// Keyboard: Tab moves through the page's controls, and each one focused shows an outline of at
/// least 2 px whose colour has 3:1 against the background around it.
async fn keyboard_focus(c: &Client, page: &str, tabs: usize) -> Result<()> {
    c.execute("document.activeElement && document.activeElement.blur(); window.getSelection().removeAllRanges(); document.body.focus();", vec![]).await?;
    let mut reached = Vec::new();
    for _ in 0..tabs {
        let tab: char = fantoccini::key::Key::Tab.into();
        c.perform_actions(
            KeyActions::new("keyboard".into())
                .then(KeyAction::Down { value: tab })
                .then(KeyAction::Up { value: tab }),
        )
        .await?;
        let v = c
            .execute(
                r#"const el = document.activeElement;
                   if (!el || el === document.body) return null;
                   const s = getComputedStyle(el);
                   const rgb = (x) => x.match(/[\d.]+/g).map(Number);
                   const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
                   let bg = [255, 255, 255];
                   for (let e = el.parentElement; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length < 4 || c[3] > 0) { bg = c; break; } }
                   const [a, b] = [lum(rgb(s.outlineColor)), lum(bg)].sort((p, q) => q - p);
                   return {what: el.tagName + " " + (el.textContent || el.getAttribute("aria-label") || "").trim().slice(0, 30),
                           style: s.outlineStyle, width: parseFloat(s.outlineWidth), contrast: (a + 0.05) / (b + 0.05)};"#,
                vec![],
            )
            .await?;
        if v.is_null() {
            continue;
        }
        let what = v["what"].as_str().unwrap_or_default().to_string();
        anyhow::ensure!(
            v["style"] != "none" && v["width"].as_f64().unwrap_or(0.0) >= 2.0,
            "{page}: {what} has no visible focus outline: {v}"
        );
        anyhow::ensure!(
            v["contrast"].as_f64().unwrap_or(0.0) >= 3.0,
            "{page}: the focus outline of {what} has too little contrast: {v}"
        );
        reached.push(what);
    }
    anyhow::ensure!(
        reached.len() >= tabs.min(3),
        "{page}: Tab reached too few controls: {reached:?}"
    );
    Ok(())
}

/// The SSE reader of the page, in the page: framing split anywhere (CRLF across chunks,
/// comments, multi-line data, ids), and a follow whose connection drops after the first line
/// resumes with `Last-Event-ID` and shows every line once.
const SSE_CHECK: &str = r#"
const done = arguments[arguments.length - 1];
(async () => {
  const { SseParser, follow } = await import("/ui/sse.js");
  const out = [];
  const p = new SseParser();
  const text = ": keep-alive\r\nid: 1-0\r\ndata: {\"a\":1}\r\n\r\nid: 1-1\ndata: x\ndata: y\n\nevent: end\ndata: {}\n\n";
  for (let i = 0; i < text.length; i += 3) out.push(...p.push(text.slice(i, i + 3)));
  const framing = JSON.stringify(out);

  const enc = new TextEncoder();
  const calls = [];
  const body = (s) => new ReadableStream({ start(c) { c.enqueue(enc.encode(s)); c.close(); } });
  const fetchFn = async (url, init) => {
    calls.push(init.headers["Last-Event-ID"] || null);
    if (calls.length === 1) return new Response(body("id: 5-0\ndata: one\n\nid: 5-1\ndata: tw"), { status: 200 });
    return new Response(body("id: 5-1\ndata: two\n\nevent: end\ndata: {\"status\":\"succeeded\"}\n\n"), { status: 200 });
  };
  const seen = [];
  const end = await follow("/x", { token: "t", fetchFn, onEvent: (e) => seen.push(e.data) });
  done({ framing, calls, seen, end: end && end.event });
})().catch((e) => done({ error: String(e) }));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    let mut c = Cluster::up().await.expect("berth up");
    let dir = TempDir::with_prefix("dashboard").unwrap();
    let (mut driver, browser) = browser(dir.path()).await.expect("a browser");
    let result = flow(&mut c, &browser, dir.path()).await;
    let _ = browser.close().await;
    driver.kill();
    if let Err(e) = result {
        panic!(
            "{e:#}\n----- chromedriver -----\n{}\n{}",
            std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default(),
            c.logs()
        );
    }
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
