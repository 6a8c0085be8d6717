//! `berth`: the one binary. Server commands (`up`, `coordinator`, `node`) and the client
//! commands that talk to the HTTP API.

mod bench;
mod client;
mod lock;
mod server;
mod services;
mod settings;

use std::path::PathBuf;

/// mimalloc instead of glibc's malloc: under the scheduler bench a third of the coordinator's
/// CPU samples were in glibc's `malloc`/`free` (`BENCHMARKS.md`, "Scheduler").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Self-hosted deployments: push code, get a URL."
)]
struct Cli {
    /// TOML configuration file (environment variables BERTH_* override it).
    #[arg(long, global = true, value_name = "FILE", help_heading = client::GLOBAL)]
    config: Option<PathBuf>,
    #[command(flatten)]
    conn: client::Conn,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a whole cluster on this machine: Redis, Caddy, the coordinator and one node.
    #[command(after_long_help = settings::help())]
    Up,
    /// Run the coordinator and the HTTP API (the fleet form; needs redis.url or redis.sentinels).
    Coordinator,
    /// Run a node daemon (the fleet form; needs redis.url/.sentinels, a Caddy at node.caddy_admin).
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
    /// List an app's containers: node, container, role (serving or standby), health, release,
    /// age and the address Caddy dials.
    #[command(visible_alias = "replicas")]
    Ps(AppArg),
    /// Run the serving release again in new containers with the app's current settings
    /// (environment, port, health check): no build, health-gated like a deploy.
    Restart(client::RunArgs),
    /// Take an app out of service: its routes go, its containers stop; releases are kept.
    Stop(AppArg),
    /// Bring a stopped app back: its serving release starts again (its stopped containers).
    Start(client::RunArgs),
    /// Print the dashboard's sign-in link (`<API>/#token=…`), or with an app, the app's URL
    /// (the one that works through the ingress).
    Open(OpenArg),
    /// Add or remove one domain of an app.
    #[command(subcommand)]
    Domains(client::DomainsCmd),
    /// List, set or unset an app's variables (build or runtime, plain or secret).
    #[command(subcommand)]
    Env(client::EnvCmd),
    /// Make, list or revoke API tokens (each with a scope: metrics, read, deploy, admin).
    #[command(subcommand)]
    Tokens(client::TokensCmd),
    /// Show the audit log: who changed what through the API, newest first.
    Audit(client::AuditArgs),
    /// Set how many replicas serve an app (same as `berth apps scale`).
    Scale(client::ScaleArgs),
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
    /// Show what the auto (or static) build pack would build from a directory or a repository:
    /// what it found and why, the port, the start command and the generated Dockerfile.
    ///
    /// A directory on this machine is analysed here (no server needed); a git URL, or --app,
    /// is cloned and analysed by the coordinator (POST /api/v1/analyze).
    Analyze(client::AnalyzeArgs),
    /// Write the dashboard's files into DIR, for a web server of your own: its index.html talks
    /// to the API at --api, which must list that server's origin in api.cors_origins. No
    /// server needed.
    ExportDashboard(ExportArgs),
    /// Benchmarks that start what they need (Redis, a coordinator) and simulate the rest.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Args)]
pub struct AppArg {
    /// The app.
    #[arg(value_name = "APP")]
    pub app: String,
}

#[derive(Args)]
pub struct OpenArg {
    /// The app whose URL to print; without it, the dashboard's link that signs in with this
    /// command's token (keep it to yourself: it carries the token).
    #[arg(value_name = "APP")]
    pub app: Option<String>,
    /// The dashboard's link at this address instead of the API's: a copy written by
    /// `berth export-dashboard` and served elsewhere.
    #[arg(long, value_name = "URL", conflicts_with = "app")]
    pub at: Option<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Where to write index.html and ui/ (made if missing; files of the same name replaced).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The API's address as the browser reaches it, e.g. https://berth.example.com:7700.
    #[arg(long, value_name = "URL")]
    pub api: String,
}

#[derive(Args)]
pub struct IdArg {
    /// The deployment (its id, as `berth deployments <APP>` lists it).
    #[arg(value_name = "DEPLOYMENT")]
    pub id: String,
}

fn main() {
    // No transparent huge pages for this process (as Redis does for itself): mimalloc asks for
    // them, and then each heap page it touches first costs the zeroing of 2 MiB. That was 6–7 %
    // of the coordinator's CPU samples under `berth bench scheduler` (`BENCHMARKS.md`,
    // "Scheduler"). Children (the bench's coordinator) inherit it. A kernel that refuses is
    // fine: the process only runs a little slower.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A panic is logged like any error (with where it happened); the supervisor restarts the
    // actor it killed.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!(thread = thread.name().unwrap_or("unnamed"), "panic: {info}");
    }));
    // Every TLS connection of the process (HTTP clients, the API's listener, rediss://) uses
    // rustls with ring; reqwest needs it installed before it builds a client.
    berth_bus::tls::install_provider();
    let result = match cli.cmd {
        Cmd::Up => settings(&cli.config).and_then(server::up),
        Cmd::Coordinator => settings(&cli.config).and_then(server::coordinator),
        Cmd::Node => settings(&cli.config).and_then(server::node),
        Cmd::Bench(b) => bench::run(b, cli.conn.json()),
        Cmd::ExportDashboard(a) => export_dashboard(&a, cli.conn.json()),
        Cmd::Analyze(a) if client::analyze::is_local(&a) => {
            settings(&cli.config).and_then(|s| client::analyze::local(&s.packs, cli.conn.json(), a))
        }
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

/// `berth export-dashboard`: the embedded files, written out.
fn export_dashboard(a: &ExportArgs, json: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let files = berth_web::dashboard::export(&a.api).map_err(|e| anyhow::anyhow!("--api: {e}"))?;
    for (name, body) in &files {
        let path = a.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot make {}", parent.display()))?;
        }
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        println!(
            "{}",
            serde_json::json!({"dir": a.dir, "api": a.api, "files": names})
        );
    } else {
        println!(
            "wrote the dashboard ({} files) to {}; serve it over HTTP(S), add that server's origin \
             to the API's api.cors_origins, and sign in with `berth open --at <its URL>`",
            files.len(),
            a.dir.display()
        );
    }
    Ok(())
}

fn settings(file: &Option<PathBuf>) -> anyhow::Result<settings::Settings> {
    settings::Settings::load(file.as_deref())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every argument of every command, with the path of commands that leads to it.
    fn every_arg(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for a in cmd.get_arguments() {
            out.push((path.to_string(), a.clone()));
        }
        for sub in cmd.get_subcommands() {
            every_arg(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_has_help_and_apps_are_named_app() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut args = Vec::new();
        every_arg(&cmd, "berth", &mut args);
        assert!(args.len() > 50, "the walk reached every command");
        let mut problems = Vec::new();
        for (path, a) in &args {
            let id = a.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                problems.push(format!("{path}: argument {id} has no help text"));
            }
            let names: Vec<&str> = a
                .get_value_names()
                .map(|v| v.iter().map(|s| s.as_str()).collect())
                .unwrap_or_default();
            if a.is_positional() {
                let want = match id {
                    "app" | "name" => Some(&["APP"][..]),
                    "id" => Some(&["DEPLOYMENT", "ID"][..]),
                    _ => None,
                };
                if let Some(want) = want {
                    if !names.iter().all(|n| want.contains(n)) || names.is_empty() {
                        problems.push(format!(
                            "{path}: <{id}> is shown as {names:?}, not {want:?}"
                        ));
                    }
                }
            }
            if a.is_global_set() && a.get_help_heading() != Some(client::GLOBAL) {
                problems.push(format!(
                    "{path}: global --{id} is not under {:?}",
                    client::GLOBAL
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn up_help_lists_its_settings() {
        let mut cmd = Cli::command();
        let up = cmd.find_subcommand_mut("up").unwrap();
        let help = up.render_long_help().to_string();
        for key in [
            "base_domain",
            "node.ingress_http",
            "api.listen",
            "redis.url",
            "data_dir",
        ] {
            assert!(help.contains(key), "{key} in\n{help}");
        }
    }
}
