//! The client commands: thin wrappers over the HTTP API.
//!
//! The API is found from `--api` / `--token`, else from the same configuration the server reads
//! (`api.listen`, `api.token`), else from the client config `berth up` writes — so a second
//! terminal next to `berth up` works with no flags.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_protocol::api::{CreateApp, CreateDeployment, ErrorBody, HealthCheckPatch, NodeView};
use berth_protocol::secret::GitCredential;
use berth_protocol::sse::{SseEvent, SseParser};
use berth_protocol::{now_ms, App, Deployment, DeploymentStatus, EnvVars, LogEntry, Release};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::settings::{client_config_path, Settings};
use crate::Cmd;

pub mod metrics;

/// An error whose message was already printed as the command's outcome (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

#[derive(Args, Clone, Default)]
pub struct Conn {
    /// API base URL, e.g. http://127.0.0.1:7700.
    #[arg(long, global = true, value_name = "URL")]
    api: Option<String>,
    /// API token.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Print JSON (for scripts) instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum AppsCmd {
    /// Create an app.
    Create(Box<CreateArgs>),
    /// List apps.
    List,
    /// Show one app.
    Show { name: String },
    /// Delete an app: its containers stop and its routes go.
    Delete { name: String },
    /// Print what to enter in GitHub's webhook form so pushes deploy the app.
    Webhook { name: String },
}

#[derive(Args)]
pub struct CreateArgs {
    name: String,
    /// Git URL or path of the repository.
    #[arg(long)]
    repo: String,
    /// Container port the app listens on.
    #[arg(long)]
    port: u32,
    #[arg(long)]
    branch: Option<String>,
    /// Dockerfile path, relative to the context.
    #[arg(long)]
    dockerfile: Option<String>,
    /// Build context directory, relative to the repository root.
    #[arg(long)]
    context: Option<String>,
    /// A domain to serve the app at (repeatable); default <name>.<base_domain>.
    #[arg(long = "domain")]
    domains: Vec<String>,
    /// Runtime environment variable K=V (repeatable).
    #[arg(long = "env", value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Build argument K=V (repeatable).
    #[arg(long = "build-env", value_parser = parse_kv)]
    build_env: Vec<(String, String)>,
    /// Health check path.
    #[arg(long)]
    health_path: Option<String>,
    /// Health check deadline in seconds.
    #[arg(long)]
    health_deadline: Option<u64>,
    /// Seconds the previous release keeps serving requests in flight after a switch (default 10).
    #[arg(long = "drain")]
    drain_s: Option<u64>,
    /// How many releases keep their image for rollback (default 10).
    #[arg(long)]
    keep_releases: Option<u32>,
    /// File holding an HTTPS token for a private repository (stored sealed, never shown).
    #[arg(long, value_name = "FILE", conflicts_with = "ssh_key_file")]
    git_token_file: Option<PathBuf>,
    /// File holding an SSH deploy key for a private repository (stored sealed, never shown).
    #[arg(long, value_name = "FILE")]
    ssh_key_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct RollbackArgs {
    app: String,
    /// The deployment whose release to bring back (default: the release before the current one).
    #[arg(long)]
    to: Option<String>,
    /// Wait until it is terminal; exit 1 unless it succeeded.
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
pub struct DeployArgs {
    app: String,
    /// Branch, tag or commit to deploy (default: the app's branch).
    #[arg(long = "ref")]
    git_ref: Option<String>,
    /// Wait until the deployment is terminal, showing its status as it moves; exit 1 unless it succeeded.
    #[arg(long)]
    wait: bool,
    /// Print the build and deploy log live, then the outcome; exit 1 unless it succeeded.
    #[arg(long, short = 'f', conflicts_with = "wait")]
    follow: bool,
}

#[derive(Args)]
pub struct LogArgs {
    id: String,
    /// Keep printing lines as they come until the deployment ends.
    #[arg(long, short = 'f')]
    follow: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    app: String,
    /// Keep printing new lines as they come (Ctrl-C stops).
    #[arg(long, short = 'f')]
    follow: bool,
    /// How many of the newest lines to print first (default 100).
    #[arg(long, short = 'n', value_name = "N")]
    tail: Option<usize>,
    /// Only lines since this time: a duration back from now (90s, 15m, 2h), RFC 3339, or epoch ms.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    /// For streams that stay open (SSE follows): no total timeout, only connect and read ones.
    streaming: reqwest::Client,
}

#[derive(serde::Deserialize)]
struct ClientFile {
    api: String,
    token: String,
}

fn resolve(config: &Option<PathBuf>, conn: &Conn) -> Result<Client> {
    let mut base = conn.api.clone();
    let mut token = conn.token.clone();
    if base.is_none() || token.is_none() {
        let s = Settings::load(config.as_deref())?;
        if let Some(t) = s.api.token {
            base.get_or_insert(format!("http://{}", s.api.listen));
            token.get_or_insert(t);
        }
    }
    if base.is_none() || token.is_none() {
        let path = client_config_path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let f: ClientFile =
                toml_lite(&text).with_context(|| format!("reading {}", path.display()))?;
            base.get_or_insert(f.api);
            token.get_or_insert(f.token);
        }
    }
    let (Some(base), Some(token)) = (base, token) else {
        bail!(
            "no API token: pass --api and --token, set BERTH_API__TOKEN, or run `berth up` (it writes {})",
            client_config_path().display()
        );
    };
    Ok(Client {
        base: base.trim_end_matches('/').to_string(),
        token,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        // The server sends a keep-alive comment every 15 s, so a minute of silence means the
        // connection is gone.
        streaming: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()?,
    })
}

/// Reads the two-line `key = "value"` file `berth up` writes, through the config crate's TOML.
fn toml_lite(text: &str) -> Result<ClientFile> {
    Ok(config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()?
        .try_deserialize()?)
}

impl Client {
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the Berth API at {} (is `berth up` running?)",
                self.base
            )
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(Failed(format!("{msg} (HTTP {})", status.as_u16())).into());
        }
        if bytes.is_empty() {
            return Ok(serde_json::from_value(serde_json::Value::Null)?);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }

    async fn text(&self, path: &str) -> Result<String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            let msg = serde_json::from_str::<ErrorBody>(&text)
                .map(|e| e.error)
                .unwrap_or(text);
            return Err(Failed(format!("{msg} (HTTP {})", status.as_u16())).into());
        }
        Ok(text)
    }
}

fn print<T: Serialize>(json: bool, v: &T, text: impl FnOnce(&T)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        text(v);
    }
    Ok(())
}

fn ago(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

fn show_deployment(d: &Deployment) {
    println!("{}  {}  {}", d.id, d.app, d.status);
    if let Some(c) = &d.commit {
        println!("  commit: {c}");
    }
    if let Some(n) = &d.node {
        println!("  node:   {n}");
    }
    if let Some(i) = &d.image {
        println!("  image:  {i}");
    }
    if let Some(e) = &d.error {
        println!("  error:  {e}");
    }
}

pub fn run(config: &Option<PathBuf>, conn: &Conn, cmd: Cmd) -> Result<()> {
    let client = resolve(config, conn)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_cmd(&client, conn.json, cmd))
}

async fn run_cmd(c: &Client, json: bool, cmd: Cmd) -> Result<()> {
    use reqwest::Method;
    match cmd {
        Cmd::Apps(AppsCmd::Create(a)) => {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            let git_credential = match (&a.git_token_file, &a.ssh_key_file) {
                (Some(f), _) => Some(GitCredential::HttpsToken {
                    username: "x-access-token".into(),
                    token: read(f)?.trim().to_string(),
                }),
                (None, Some(f)) => Some(GitCredential::SshKey {
                    private_key: read(f)?,
                }),
                (None, None) => None,
            };
            let req = CreateApp {
                git_credential,
                drain_s: a.drain_s,
                keep_releases: a.keep_releases,
                name: a.name,
                repo: a.repo,
                branch: a.branch,
                dockerfile: a.dockerfile,
                context: a.context,
                port: a.port,
                domains: (!a.domains.is_empty()).then_some(a.domains),
                env: Some(EnvVars {
                    runtime: a.env.into_iter().collect::<BTreeMap<_, _>>(),
                    build: a.build_env.into_iter().collect(),
                }),
                health_check: Some(HealthCheckPatch {
                    path: a.health_path,
                    deadline_s: a.health_deadline,
                    ..Default::default()
                }),
                auto_deploy: None,
            };
            let app: App = c.call(Method::POST, "/api/v1/apps", Some(&req)).await?;
            print(json, &app, |a| {
                println!("created app {} → http://{}", a.name, a.domains[0])
            })
        }
        Cmd::Apps(AppsCmd::List) => {
            let apps: Vec<App> = c.get("/api/v1/apps").await?;
            print(json, &apps, |apps| {
                for a in apps {
                    println!("{:<24} {:<32} {}", a.name, a.domains.join(","), a.repo);
                }
            })
        }
        Cmd::Apps(AppsCmd::Show { name }) => {
            let app: App = c.get(&format!("/api/v1/apps/{name}")).await?;
            print(json, &app, |a| {
                println!("{}", serde_json::to_string_pretty(a).unwrap_or_default())
            })
        }
        Cmd::Apps(AppsCmd::Delete { name }) => {
            let _: serde_json::Value = c
                .call(Method::DELETE, &format!("/api/v1/apps/{name}"), None::<&()>)
                .await?;
            print(json, &serde_json::json!({"deleted": name}), |_| {
                println!("deleted app {name}")
            })
        }
        Cmd::Apps(AppsCmd::Webhook { name }) => {
            let app: App = c.get(&format!("/api/v1/apps/{name}")).await?;
            let url = format!("{}/api/v1/webhooks/github", c.base);
            let info = serde_json::json!({
                "payload_url": url,
                "content_type": "application/json",
                "secret": "the value of github.webhook_secret (BERTH_GITHUB__WEBHOOK_SECRET) on the coordinator",
                "events": ["push"],
                "repo": app.repo,
                "branch": app.branch,
                "auto_deploy": app.auto_deploy,
            });
            print(json, &info, |_| {
                println!("In GitHub: repository → Settings → Webhooks → Add webhook");
                println!("  Payload URL:   {url}");
                println!("  Content type:  application/json (application/x-www-form-urlencoded works too)");
                println!("  Secret:        the value of github.webhook_secret on the coordinator");
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
        Cmd::Deploy(a) => {
            let body = CreateDeployment { git_ref: a.git_ref };
            let d: Deployment = c
                .call(
                    Method::POST,
                    &format!("/api/v1/apps/{}/deployments", a.app),
                    Some(&body),
                )
                .await?;
            if a.follow {
                println!("{}  {}", d.id, d.status);
                follow_deployment(c, &d.id).await?;
                let d: Deployment = c.get(&format!("/api/v1/deployments/{}", d.id)).await?;
                return finish(c, json, d, true).await;
            }
            finish(c, json, d, a.wait).await
        }
        Cmd::Rollback(a) => {
            let body = berth_protocol::api::Rollback { to: a.to };
            let d: Deployment = c
                .call(
                    Method::POST,
                    &format!("/api/v1/apps/{}/rollback", a.app),
                    Some(&body),
                )
                .await?;
            finish(c, json, d, a.wait).await
        }
        Cmd::Releases(a) => {
            let rs: Vec<Release> = c.get(&format!("/api/v1/apps/{}/releases", a.app)).await?;
            print(json, &rs, |rs| {
                for r in rs {
                    println!(
                        "{} {:<22} {:<8} {:<12} {:<9} {}",
                        if r.current { "*" } else { " " },
                        r.deployment,
                        format!("{:?}", r.kind).to_lowercase(),
                        r.commit
                            .as_deref()
                            .map(|c| &c[..c.len().min(10)])
                            .unwrap_or("-"),
                        ago(r.released_at),
                        r.commit_message.as_deref().unwrap_or("")
                    );
                }
            })
        }
        Cmd::Cancel(a) => {
            let d: Deployment = c
                .call(
                    Method::POST,
                    &format!("/api/v1/deployments/{}/cancel", a.id),
                    None::<&()>,
                )
                .await?;
            print(json, &d, show_deployment)
        }
        Cmd::Deployments(a) => {
            let ds: Vec<Deployment> = c
                .get(&format!("/api/v1/apps/{}/deployments", a.app))
                .await?;
            print(json, &ds, |ds| {
                for d in ds {
                    println!(
                        "{:<22} {:<10} {:<12} {:<9} {}",
                        d.id,
                        d.status,
                        d.commit
                            .as_deref()
                            .map(|c| &c[..c.len().min(10)])
                            .unwrap_or("-"),
                        ago(d.created_at),
                        d.error.as_deref().unwrap_or("")
                    );
                }
            })
        }
        Cmd::Deployment(a) => {
            let d: Deployment = c.get(&format!("/api/v1/deployments/{}", a.id)).await?;
            print(json, &d, show_deployment)
        }
        Cmd::Log(a) if a.follow => {
            let end = follow_deployment(c, &a.id).await?;
            if end.status != berth_protocol::DeploymentStatus::Succeeded {
                return Err(Failed(format!("deployment {} {}", a.id, end.status)).into());
            }
            Ok(())
        }
        Cmd::Log(a) => {
            print!(
                "{}",
                c.text(&format!("/api/v1/deployments/{}/logs", a.id))
                    .await?
            );
            Ok(())
        }
        Cmd::Logs(a) => {
            let mut query = vec![];
            if let Some(n) = a.tail {
                query.push(format!("tail={n}"));
            }
            if let Some(s) = &a.since {
                query.push(format!("since={}", urlencode(s)));
            }
            if a.follow {
                query.push("follow=1".into());
                let path = format!("/api/v1/apps/{}/logs?{}", a.app, query.join("&"));
                c.follow(&path, |ev| {
                    if let Some(e) = ev.json::<LogEntry>() {
                        print_app_line(json, &e);
                    }
                    Ok(true)
                })
                .await?;
                return Ok(());
            }
            query.push("format=json".into());
            let path = format!("/api/v1/apps/{}/logs?{}", a.app, query.join("&"));
            let entries: Vec<LogEntry> = c.get(&path).await?;
            for e in &entries {
                print_app_line(json, e);
            }
            Ok(())
        }
        Cmd::Nodes => {
            let nodes: Vec<NodeView> = c.get("/api/v1/nodes").await?;
            print(json, &nodes, |ns| {
                for n in ns {
                    println!(
                        "{:<20} {:<6} {:<16} heartbeat {}",
                        n.info.name,
                        format!("{:?}", n.status).to_lowercase(),
                        n.info.address,
                        ago(n.info.last_heartbeat)
                    );
                }
            })
        }
        Cmd::Metrics(a) => metrics::run(c, json, a).await,
        Cmd::Up | Cmd::Coordinator | Cmd::Node => {
            unreachable!("server commands are dispatched in main")
        }
    }
}

/// One runtime log line: `node/container  line` (JSON with `--json`).
fn print_app_line(json: bool, e: &LogEntry) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
    } else {
        println!(
            "{}/{}  {}",
            e.line.node.as_deref().unwrap_or("?"),
            e.line.container.as_deref().unwrap_or("?"),
            e.line.line
        );
    }
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)])
        .map(|q| q.trim_start_matches("v=").to_string())
        .unwrap_or_default()
}

/// How a followed deployment ended.
#[derive(serde::Deserialize)]
struct End {
    status: DeploymentStatus,
}

/// Prints a deployment's log live until it ends; returns how it ended.
async fn follow_deployment(c: &Client, id: &str) -> Result<End> {
    let mut end = None;
    c.follow(&format!("/api/v1/deployments/{id}/logs?follow=1"), |ev| {
        match ev.event.as_str() {
            "end" => {
                end = Some(serde_json::from_str::<End>(&ev.data)?);
                return Ok(false);
            }
            "error" => bail!("the log stream failed: {}", ev.data),
            _ => {
                if let Some(e) = ev.json::<LogEntry>() {
                    println!("{}", e.line.line);
                }
            }
        }
        Ok(true)
    })
    .await?;
    end.context("the log stream closed before the deployment ended")
}

/// Prints a new deployment and, with `wait`, follows it to its end (error unless it succeeded).
async fn finish(c: &Client, json: bool, mut d: Deployment, wait_for_end: bool) -> Result<()> {
    if !json {
        println!("{}  {}", d.id, d.status);
    }
    if wait_for_end {
        d = wait(c, &d.id, json).await?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    }
    if wait_for_end && d.status != berth_protocol::DeploymentStatus::Succeeded {
        return Err(Failed(format!(
            "deployment {} {}: {}",
            d.id,
            d.status,
            d.error.as_deref().unwrap_or("no reason given")
        ))
        .into());
    }
    Ok(())
}

/// Polls a deployment until it is terminal, printing each status change.
async fn wait(c: &Client, id: &str, json: bool) -> Result<Deployment> {
    let started = Instant::now();
    let mut last = None;
    loop {
        let d: Deployment = c.get(&format!("/api/v1/deployments/{id}")).await?;
        if last != Some(d.status) {
            if !json {
                println!("{:>6.1}s  {}", started.elapsed().as_secs_f64(), d.status);
            }
            last = Some(d.status);
        }
        if d.status.is_terminal() {
            if !json {
                show_deployment(&d);
            }
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Client {
    /// Follows an SSE endpoint, calling `on_event` for each event until it returns false. The
    /// server never ends a follow on its own (a deployment follow ends with an `end` event), so a
    /// dropped or closed connection — a coordinator restart, say — is resumed with
    /// `Last-Event-ID` for up to [`RESUME_FOR`] of failed attempts: no line is printed twice or
    /// lost.
    async fn follow(
        &self,
        path: &str,
        mut on_event: impl FnMut(&SseEvent) -> Result<bool>,
    ) -> Result<()> {
        use futures_util::StreamExt;
        let mut last_id: Option<String> = None;
        // Consecutive attempts that brought no event.
        let mut retries = 0u32;
        let mut connected_once = false;
        loop {
            if retries > 0 {
                if retries > RESUME_FOR.as_secs() as u32 {
                    bail!("the log stream broke and could not be resumed");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let mut req = self
                .streaming
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .header("accept", "text/event-stream");
            if let Some(id) = &last_id {
                req = req.header("last-event-id", id);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if connected_once => {
                    tracing::debug!(error = %e, "resuming the log stream");
                    retries += 1;
                    continue;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot reach the Berth API at {}", self.base))
                }
            };
            let status = resp.status();
            if status.is_server_error() && connected_once {
                retries += 1;
                continue;
            }
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                let msg = serde_json::from_str::<ErrorBody>(&text)
                    .map(|e| e.error)
                    .unwrap_or(text);
                return Err(Failed(format!("{msg} (HTTP {})", status.as_u16())).into());
            }
            connected_once = true;
            let mut parser = SseParser::default();
            let mut body = resp.bytes_stream();
            retries += 1;
            while let Some(chunk) = body.next().await {
                let bytes = match chunk {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(error = %e, "log stream interrupted");
                        break;
                    }
                };
                for ev in parser.push(&bytes) {
                    retries = 0;
                    if let Some(id) = &ev.id {
                        last_id = Some(id.clone());
                    }
                    if !on_event(&ev)? {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// How long (in failed attempts, one a second) a broken follow keeps trying to resume.
const RESUME_FOR: Duration = Duration::from_secs(30);
