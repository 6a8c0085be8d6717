//! What the browser tests share (`mod browser;` in each): headless Chromium through
//! chromedriver, waiting on the page, clicking, screenshots, and the accessibility and keyboard
//! checks every page must pass.

// Each test file uses a part of this.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_tests::{eventually, free_port, repo_root, Cluster, Proc, TempDir};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};

pub const DEPLOY: Duration = Duration::from_secs(180);
pub const UI: Duration = Duration::from_secs(20);

/// chromedriver on a free port, and a WebDriver session of headless Chromium on it.
pub async fn browser(dir: &std::path::Path) -> Result<(Proc, Client)> {
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

/// A browser test: a `berth up` cluster, headless Chromium, and `flow` run with both (and a
/// directory of its own); on failure it panics with the error, chromedriver's log and the
/// cluster's.
pub async fn run(
    prefix: &str,
    flow: impl for<'a> FnOnce(
        &'a mut Cluster,
        &'a Client,
        &'a std::path::Path,
    ) -> BoxFuture<'a, Result<()>>,
) {
    run_with(prefix, &[], flow).await
}

/// [`run`] with `berth up` given the environment variables `env` besides its own.
pub async fn run_with(
    prefix: &str,
    env: &[(&str, &str)],
    flow: impl for<'a> FnOnce(
        &'a mut Cluster,
        &'a Client,
        &'a std::path::Path,
    ) -> BoxFuture<'a, Result<()>>,
) {
    let mut c = Cluster::up_with(env).await.expect("berth up");
    let dir = TempDir::with_prefix(prefix).unwrap();
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

/// Replaces what the control `css` holds with `text` (nothing: it is left empty).
pub async fn fill(b: &Client, css: &str, text: &str) -> Result<()> {
    let el = b.find(Locator::Css(css)).await?;
    el.clear().await?;
    if !text.is_empty() {
        el.send_keys(text).await?;
    }
    Ok(())
}

/// At a phone's width nothing is wider than the screen, and the page still passes the
/// accessibility check; then back to 1280 px.
pub async fn fits_a_phone(b: &Client, page: &str) -> Result<()> {
    b.set_window_size(390, 844).await?;
    until(
        b,
        &format!("{page} to fit a phone's width"),
        UI,
        "return document.documentElement.scrollWidth <= window.innerWidth",
    )
    .await?;
    accessible(b, &format!("{page} at phone width")).await?;
    b.set_window_size(1280, 900).await?;
    Ok(())
}

/// Runs `script` in the page until it returns something other than null, false or "" (then
/// that), or fails after `timeout` saying `what` (with the page's text).
pub async fn until(c: &Client, what: &str, timeout: Duration, script: &str) -> Result<Value> {
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
pub async fn click(c: &Client, css: &str) -> Result<()> {
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
pub async fn text(c: &Client, css: &str) -> Result<String> {
    let v = c
        .execute(
            &format!("const e = document.querySelector({css:?}); return e ? e.textContent : ''"),
            vec![],
        )
        .await?;
    Ok(v.as_str().unwrap_or_default().to_string())
}

/// Waits for the followed deployment's log to end and returns the outcome line.
pub async fn log_ends(c: &Client) -> Result<String> {
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
pub async fn next_deployment_succeeds(
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
pub async fn shown_deployment(c: &Client) -> Result<String> {
    let url = c.current_url().await?;
    let frag = url.fragment().unwrap_or_default().to_string();
    frag.rsplit_once("/deployments/")
        .map(|(_, id)| id.to_string())
        .with_context(|| format!("no deployment in the address {url}"))
}

pub struct Shots {
    dir: PathBuf,
}

impl Shots {
    pub fn new() -> Result<Shots> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        let dir = target.join("screenshots");
        std::fs::create_dir_all(&dir)?;
        println!("screenshots: {}", dir.display());
        Ok(Shots { dir })
    }

    pub async fn take(&self, c: &Client, name: &str) -> Result<()> {
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
pub const A11Y: &str = r#"
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
pub async fn accessible(c: &Client, page: &str) -> Result<()> {
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
pub async fn keyboard_focus(c: &Client, page: &str, tabs: usize) -> Result<()> {
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
pub const SSE_CHECK: &str = r#"
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
