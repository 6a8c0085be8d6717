//! The client commands: thin wrappers over the HTTP API.
//!
//! The API is found from `--api` / `--token`, else from the same configuration the server reads
//! (`api.listen`, `api.token`), else from the client config `berth up` writes — so a second
//! terminal next to `berth up` works with no flags.
//!
//! This module only dispatches: [`args`] holds what clap parses, [`http`] the requests,
//! [`follow`] the live log streams, [`render`] the output, and each command group has its own
//! module.

use std::path::PathBuf;

use anyhow::Result;

use crate::Cmd;

pub mod analyze;
mod apps;
mod args;
mod deploy;
mod deployments;
mod env;
mod exec;
mod follow;
mod http;
mod lifecycle;
mod logs;
pub mod metrics;
mod nodes;
mod releases;
mod render;
mod replicas;
mod tokens;
mod upload;
mod webhook;

pub use args::{
    AnalyzeArgs, AppsCmd, AuditArgs, Conn, DeployArgs, DomainsCmd, EnvCmd, ExecArgs, LogArgs,
    LogsArgs, NodesArgs, RollbackArgs, RunArgs, ScaleArgs, TokensCmd, GLOBAL,
};

pub(crate) use lifecycle::dashboard_link;

/// An error whose message was already printed as the command's outcome (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

/// The command ends with this exit status and prints nothing more (`berth exec`: the exit code
/// of the command it ran).
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitCode(pub i32);

pub fn run(config: &Option<PathBuf>, conn: &Conn, cmd: Cmd) -> Result<()> {
    let client = http::resolve(config, conn)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_cmd(&client, conn.json, cmd))
}

async fn run_cmd(c: &http::Client, json: bool, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Apps(AppsCmd::Create(a)) => apps::create(c, json, *a).await,
        Cmd::Apps(AppsCmd::List) => apps::list(c, json).await,
        Cmd::Apps(AppsCmd::Show { name }) => apps::show(c, json, &name).await,
        Cmd::Apps(AppsCmd::Delete { name, yes }) => apps::delete(c, json, &name, yes).await,
        Cmd::Apps(AppsCmd::Webhook { name }) => webhook::run(c, json, &name).await,
        Cmd::Apps(AppsCmd::Scale { name, replicas }) => apps::scale(c, json, &name, replicas).await,
        Cmd::Apps(AppsCmd::Update(a)) => apps::update(c, json, *a).await,
        Cmd::Scale(a) => apps::scale(c, json, &a.app, a.replicas).await,
        Cmd::Restart(a) => lifecycle::restart(c, json, a).await,
        Cmd::Stop(a) => lifecycle::stop(c, json, &a.app).await,
        Cmd::Start(a) => lifecycle::start(c, json, a).await,
        Cmd::Open(a) => match a.app {
            Some(app) => lifecycle::open(c, json, &app).await,
            None => lifecycle::dashboard(c, json, a.at.as_deref()),
        },
        Cmd::Domains(d) => lifecycle::domains(c, json, d).await,
        Cmd::Env(e) => env::run(c, json, e).await,
        Cmd::Tokens(t) => tokens::run(c, json, t).await,
        Cmd::Audit(a) => tokens::audit(c, json, a).await,
        Cmd::Deploy(a) => deploy::run(c, json, a).await,
        Cmd::Rollback(a) => releases::rollback(c, json, a).await,
        Cmd::Releases(a) => releases::list(c, json, &a.app).await,
        Cmd::Ps(a) => replicas::list(c, json, &a.app).await,
        Cmd::Cancel(a) => releases::cancel(c, json, &a.id).await,
        Cmd::Deployments(a) => deployments::list(c, json, &a.app).await,
        Cmd::Deployment(a) => deployments::show(c, json, &a.id).await,
        Cmd::Log(a) => deployments::log(c, a).await,
        Cmd::Logs(a) => {
            let app = a.app.clone();
            match logs::run(c, json, a).await {
                Err(e) => Err(deployments::logs_hint(c, &app, e).await),
                ok => ok,
            }
        }
        Cmd::Nodes(a) => nodes::run(c, json, a).await,
        Cmd::Metrics(a) => metrics::run(c, json, a).await,
        Cmd::Exec(a) => exec::run(c, json, a).await,
        Cmd::Analyze(a) => analyze::remote(c, json, a).await,
        Cmd::Up | Cmd::Coordinator | Cmd::Node | Cmd::Bench(_) | Cmd::ExportDashboard(_) => {
            unreachable!("server and bench commands are dispatched in main")
        }
    }
}
