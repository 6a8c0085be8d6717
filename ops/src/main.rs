//! `berth`: the one binary. Server commands (`up`, `coordinator`, `node`) and the client
//! commands that talk to the HTTP API.

mod bench;
mod client;
mod server;
mod services;
mod settings;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Self-hosted deployments: push code, get a URL."
)]
struct Cli {
    /// TOML configuration file (environment variables BERTH_* override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    conn: client::Conn,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a whole cluster on this machine: Redis, Caddy, the coordinator and one node.
    Up,
    /// Run the coordinator and the HTTP API (the fleet form; needs redis.url).
    Coordinator,
    /// Run a node daemon (the fleet form; needs redis.url and a Caddy at node.caddy_admin).
    Node,
    /// Manage apps.
    #[command(subcommand)]
    Apps(client::AppsCmd),
    /// Deploy an app (its branch, or --ref).
    Deploy(client::DeployArgs),
    /// Roll an app back to an earlier release (its image; no build).
    Rollback(client::RollbackArgs),
    /// List an app's releases (the images kept for rollback), newest first.
    Releases(AppArg),
    /// List an app's running replicas: node, container, release, role (serving or standby),
    /// health and the address Caddy dials.
    Replicas(AppArg),
    /// Cancel a deployment that has not switched traffic yet.
    Cancel(IdArg),
    /// List an app's deployments, newest first.
    Deployments(AppArg),
    /// Show one deployment.
    Deployment(IdArg),
    /// Print a deployment's build and deploy log (-f: follow it live until the deployment ends).
    Log(client::LogArgs),
    /// Print an app's runtime log: every replica on every node, merged (-f: keep following).
    Logs(client::LogsArgs),
    /// List the nodes (liveness, cordon, labels); cordon or uncordon one.
    Nodes(client::NodesArgs),
    /// Show an app's CPU, memory and network figures: each replica's latest and the total.
    Metrics(client::metrics::MetricsArgs),
    /// Run a command in a running replica of an app, its output printed as it comes.
    ///
    /// `berth exec web -- ls -l /www` runs in the app's first serving replica (or the one
    /// --node / --replica names). The command's stdout goes to stdout and its stderr to stderr,
    /// and berth exits with the command's exit code (127: no such program). There is no stdin
    /// and no TTY, so interactive programs (a shell, an editor) do not work. Ctrl-C stops
    /// printing, not the command: it runs until it ends or its --timeout. When Berth itself
    /// fails (no such app, no running replica, the node is down), the error is printed as
    /// `error: …` and the exit status is 1 (2 if the API cannot be reached).
    Exec(client::ExecArgs),
    /// Benchmarks that start what they need (Redis, a coordinator) and simulate the rest.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Args)]
pub struct AppArg {
    pub app: String,
}

#[derive(Args)]
pub struct IdArg {
    pub id: String,
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::Up => settings(&cli.config).and_then(server::up),
        Cmd::Coordinator => settings(&cli.config).and_then(server::coordinator),
        Cmd::Node => settings(&cli.config).and_then(server::node),
        Cmd::Bench(b) => bench::run(b, cli.conn.json()),
        cmd => client::run(&cli.config, &cli.conn, cmd),
    };
    if let Err(e) = result {
        if let Some(client::ExitCode(code)) = e.downcast_ref() {
            std::process::exit(*code);
        }
        eprintln!("error: {e:#}");
        std::process::exit(match e.downcast_ref::<client::Failed>() {
            Some(_) => 1,
            None => 2,
        });
    }
}

fn settings(file: &Option<PathBuf>) -> anyhow::Result<settings::Settings> {
    settings::Settings::load(file.as_deref())
}
