//! The command-line arguments of the client commands, as clap parses them.
//!
//! They live apart from the code that runs the commands so that `berth --help` has one place to
//! read, and so a command module only sees plain fields. (The top-level `Cmd` enum and the small
//! `AppArg` / `IdArg` stay in `main.rs`, next to the server commands.)

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The help heading of the flags every command takes.
pub const GLOBAL: &str = "Global options";

#[derive(Args, Clone, Default)]
pub struct Conn {
    /// API base URL, e.g. http://127.0.0.1:7700 (default: api.listen of the configuration, else
    /// the client config `berth up` writes).
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    pub(super) api: Option<String>,
    /// API token (default: api.token of the configuration, else the client config `berth up`
    /// writes).
    #[arg(long, global = true, value_name = "TOKEN", help_heading = GLOBAL)]
    pub(super) token: Option<String>,
    /// A PEM CA certificate to trust for an https:// API (a private CA), beside the system's
    /// roots (default: api.ca_cert of the configuration).
    #[arg(long, global = true, value_name = "FILE", env = "BERTH_API__CA_CERT", help_heading = GLOBAL)]
    pub(super) ca_cert: Option<PathBuf>,
    /// Print JSON (for scripts) instead of text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(super) json: bool,
}

impl Conn {
    /// Whether `--json` was given (the bench commands print their results so too).
    pub fn json(&self) -> bool {
        self.json
    }
}

#[derive(Subcommand)]
pub enum AppsCmd {
    /// Create an app.
    Create(Box<CreateArgs>),
    /// List apps.
    List,
    /// Show one app: its settings, URLs, status and the release serving it.
    Show {
        /// The app.
        #[arg(value_name = "APP")]
        name: String,
    },
    /// Delete an app: its containers stop, its routes go, its images are removed from every
    /// node (and the registry). Asks for the app's name on a terminal.
    Delete {
        /// The app.
        #[arg(value_name = "APP")]
        name: String,
        /// Do not ask (for scripts; without a terminal it is required).
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Print what to enter in GitHub's webhook form so pushes deploy the app.
    Webhook {
        /// The app.
        #[arg(value_name = "APP")]
        name: String,
    },
    /// Set how many replicas serve an app (the coordinator adds or removes replicas of the
    /// serving release).
    Scale {
        /// The app.
        #[arg(value_name = "APP")]
        name: String,
        /// How many replicas serve it from now on.
        replicas: u32,
    },
    /// Change an app: the same flags as `create`, each optional; what is not given stays.
    /// Runtime settings (environment, port, health check) apply to the next deployment, or now
    /// with `berth restart <APP>`.
    Update(Box<UpdateArgs>),
}

#[derive(Args, Default)]
pub struct UpdateArgs {
    /// The app to change.
    #[arg(value_name = "APP")]
    pub(super) name: String,
    /// Git URL or path of the repository.
    #[arg(long)]
    pub(super) repo: Option<String>,
    /// Container port the app listens on.
    #[arg(long)]
    pub(super) port: Option<u32>,
    /// Branch deployed by default (and followed by pushes).
    #[arg(long)]
    pub(super) branch: Option<String>,
    /// Dockerfile path, relative to the context.
    #[arg(long)]
    pub(super) dockerfile: Option<String>,
    /// Build context directory, relative to the repository root.
    #[arg(long)]
    pub(super) context: Option<String>,
    /// Replace the app's domains with these (repeatable); `berth domains add|remove` changes
    /// one.
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub(super) domains: Vec<String>,
    /// Set a runtime environment variable K=V (repeatable; the others stay).
    #[arg(long = "env", value_parser = parse_kv, value_name = "K=V")]
    pub(super) env: Vec<(String, String)>,
    /// Remove a runtime environment variable (repeatable).
    #[arg(long = "unset-env", value_name = "K")]
    pub(super) unset_env: Vec<String>,
    /// Set a build argument K=V (repeatable; the others stay).
    #[arg(long = "build-env", value_parser = parse_kv, value_name = "K=V")]
    pub(super) build_env: Vec<(String, String)>,
    /// Remove a build argument (repeatable).
    #[arg(long = "unset-build-env", value_name = "K")]
    pub(super) unset_build_env: Vec<String>,
    /// Health check path.
    #[arg(long)]
    pub(super) health_path: Option<String>,
    /// Health check deadline in seconds.
    #[arg(long)]
    pub(super) health_deadline: Option<u64>,
    /// Deploy on a signed push to the app's branch.
    #[arg(long, overrides_with = "no_auto_deploy")]
    pub(super) auto_deploy: bool,
    /// Do not deploy on pushes (deploy only with `berth deploy`).
    #[arg(long, overrides_with = "auto_deploy")]
    pub(super) no_auto_deploy: bool,
    /// Seconds the previous release keeps serving requests in flight after a switch.
    #[arg(long = "drain", value_name = "SECONDS")]
    pub(super) drain_s: Option<u64>,
    /// How many releases keep their image for rollback.
    #[arg(long)]
    pub(super) keep_releases: Option<u32>,
    /// File holding an HTTPS token for a private repository (replaces the credential).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ssh_key_file", "no_git_credential"])]
    pub(super) git_token_file: Option<PathBuf>,
    /// File holding an SSH deploy key for a private repository (replaces the credential).
    #[arg(long, value_name = "FILE", conflicts_with = "no_git_credential")]
    pub(super) ssh_key_file: Option<PathBuf>,
    /// Remove the app's git credential.
    #[arg(long)]
    pub(super) no_git_credential: bool,
    /// File holding the app's own GitHub webhook secret (its first line; replaces the secret):
    /// pushes for the app are then taken only at /api/v1/apps/<app>/webhooks/github.
    #[arg(long, value_name = "FILE", conflicts_with = "no_webhook_secret")]
    pub(super) webhook_secret_file: Option<PathBuf>,
    /// Remove the app's own webhook secret (its pushes go to the shared endpoint again).
    #[arg(long)]
    pub(super) no_webhook_secret: bool,
    /// Replace the placement constraints: KEY=VALUE or KEY!=VALUE (repeatable).
    #[arg(long = "constraint", value_name = "KEY=VALUE")]
    pub(super) constraints: Vec<String>,
    /// Remove every placement constraint.
    #[arg(long, conflicts_with = "constraints")]
    pub(super) no_constraints: bool,
    /// How replicas are placed: spread (across nodes) or binpack.
    #[arg(long, value_parser = ["spread", "binpack"])]
    pub(super) strategy: Option<String>,
    /// Memory (MiB) each replica reserves.
    #[arg(long, value_name = "MIB")]
    pub(super) memory: Option<u64>,
    /// How many replicas serve the app (the change is applied at once, like `berth scale`).
    #[arg(long)]
    pub(super) replicas: Option<u32>,
    /// During a deploy, how many new replicas start at once.
    #[arg(long)]
    pub(super) max_surge: Option<u32>,
    /// Seconds the previous release stays running after a deploy (0: none).
    #[arg(long = "standby", value_name = "SECONDS")]
    pub(super) standby_s: Option<u64>,
    /// Memory (MiB) each container may use; above it the app is killed.
    #[arg(long, value_name = "MIB")]
    pub(super) memory_limit: Option<u64>,
    /// CPU each container may use, in thousandths of a CPU (500: half of one).
    #[arg(long, value_name = "MILLICPUS")]
    pub(super) cpu_limit: Option<u32>,
    /// Processes and threads each container may run at once.
    #[arg(long, value_name = "N")]
    pub(super) pids_limit: Option<u32>,
    /// Go back to the node's default limits (memory, CPU, processes).
    #[arg(long, conflicts_with_all = ["memory_limit", "cpu_limit", "pids_limit"])]
    pub(super) default_limits: bool,
    /// Make the container's root file system read-only (`/tmp` stays writable).
    #[arg(long, overrides_with = "no_read_only")]
    pub(super) read_only: bool,
    /// Make the container's root file system writable again.
    #[arg(long, overrides_with = "read_only")]
    pub(super) no_read_only: bool,
    /// How the image is made: dockerfile, auto or static (see `berth apps create --help`).
    #[arg(long, value_name = "PACK")]
    pub(super) build_pack: Option<berth_protocol::BuildPack>,
    /// The directory the static pack serves, relative to the context; an empty value goes back
    /// to the detected one.
    #[arg(long, value_name = "DIR")]
    pub(super) static_dir: Option<String>,
}

/// `berth domains add|remove <APP> <DOMAIN>`.
#[derive(Subcommand)]
pub enum DomainsCmd {
    /// Serve the app at one more domain as well (its route follows at once when it runs).
    Add {
        /// The app.
        #[arg(value_name = "APP")]
        app: String,
        /// The domain, e.g. www.example.com.
        domain: String,
    },
    /// Stop serving the app at a domain (it keeps at least one).
    Remove {
        /// The app.
        #[arg(value_name = "APP")]
        app: String,
        /// The domain to drop.
        domain: String,
    },
}

/// `berth tokens create|list|revoke`.
#[derive(Subcommand)]
pub enum TokensCmd {
    /// Make an API token; its value is printed once and never again.
    Create {
        /// A name for it (who or what uses it), 1 to 64 characters.
        #[arg(value_name = "NAME")]
        token_name: String,
        /// What it may do: metrics (scrape /metrics), read (every GET), deploy (read, and
        /// deploy, roll back, restart, cancel), admin (everything).
        #[arg(long, value_parser = ["metrics", "read", "deploy", "admin"])]
        scope: String,
        /// How long it is valid (e.g. 90d, 12h); default: until revoked.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// List the tokens: id, name, scope, created, expires, last used (never their values).
    List,
    /// Revoke a token: requests with it get 401 from now on.
    Revoke {
        /// The token's id (`berth tokens list`).
        id: String,
    },
}

/// `berth audit`.
#[derive(Args)]
pub struct AuditArgs {
    /// How many entries, newest first (1 to 1000).
    #[arg(long, short = 'n', default_value_t = 50)]
    pub(super) limit: usize,
}

/// `berth env list|set|unset`.
#[derive(Subcommand)]
pub enum EnvCmd {
    /// List an app's variables: name, scope, whether it is secret, and a plain one's value
    /// (a secret's value is never shown).
    List {
        /// The app.
        #[arg(value_name = "APP")]
        app: String,
    },
    /// Set a variable (replacing whatever it was). The value comes from --from-file, else from
    /// stdin (a plain value may also follow KEY); a secret's never from the command line,
    /// where shell history and `ps` would keep it. One trailing newline is dropped.
    Set(EnvSetArgs),
    /// Remove a variable.
    Unset {
        /// The app.
        #[arg(value_name = "APP")]
        app: String,
        /// The variable's name.
        key: String,
        /// Queue a deployment at once to apply it.
        #[arg(long)]
        deploy: bool,
    },
}

#[derive(Args)]
pub struct EnvSetArgs {
    /// The app.
    #[arg(value_name = "APP")]
    pub(super) app: String,
    /// The variable's name (letters, digits and '_', not starting with a digit).
    pub(super) key: String,
    /// The value of a plain variable (not accepted with --secret).
    pub(super) value: Option<String>,
    /// Where it goes: build (a build arg), runtime (the container's environment) or both.
    #[arg(long, value_parser = berth_protocol::EnvScope::parse, default_value = "runtime")]
    pub(super) scope: berth_protocol::EnvScope,
    /// Keep the value sealed: never shown by the API, masked in every log line.
    #[arg(long)]
    pub(super) secret: bool,
    /// Read the value from this file.
    #[arg(long, value_name = "PATH")]
    pub(super) from_file: Option<PathBuf>,
    /// Queue a deployment at once to apply it.
    #[arg(long)]
    pub(super) deploy: bool,
}

/// `berth restart|start <APP>`.
#[derive(Args)]
pub struct RunArgs {
    /// The app.
    #[arg(value_name = "APP")]
    pub(super) app: String,
    /// Wait until the deployment is terminal, showing its status as it moves; exit 1 unless it
    /// succeeded.
    #[arg(long)]
    pub(super) wait: bool,
    /// Print the deployment's log live, then the outcome; exit 1 unless it succeeded.
    #[arg(long, short = 'f', conflicts_with = "wait")]
    pub(super) follow: bool,
}

/// `berth scale <APP> <N>`.
#[derive(Args)]
pub struct ScaleArgs {
    /// The app.
    #[arg(value_name = "APP")]
    pub(super) app: String,
    /// How many replicas serve it.
    pub(super) replicas: u32,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The app's name: a DNS label (lowercase letters, digits, `-`), also the start of its
    /// default domain.
    #[arg(value_name = "APP")]
    pub(super) name: String,
    /// Git URL or path of the repository. Without one the app deploys only directories
    /// uploaded with `berth deploy <APP> --dir DIR`.
    #[arg(long)]
    pub(super) repo: Option<String>,
    /// Container port the app listens on.
    #[arg(long)]
    pub(super) port: u32,
    /// Branch that `berth deploy` and pushes deploy (default main).
    #[arg(long)]
    pub(super) branch: Option<String>,
    /// Dockerfile path, relative to the context.
    #[arg(long)]
    pub(super) dockerfile: Option<String>,
    /// Build context directory, relative to the repository root.
    #[arg(long)]
    pub(super) context: Option<String>,
    /// A domain to serve the app at (repeatable); default <name>.<base_domain>.
    #[arg(long = "domain")]
    pub(super) domains: Vec<String>,
    /// Runtime environment variable K=V (repeatable).
    #[arg(long = "env", value_parser = parse_kv)]
    pub(super) env: Vec<(String, String)>,
    /// Build argument K=V (repeatable).
    #[arg(long = "build-env", value_parser = parse_kv)]
    pub(super) build_env: Vec<(String, String)>,
    /// Health check path.
    #[arg(long)]
    pub(super) health_path: Option<String>,
    /// Health check deadline in seconds.
    #[arg(long)]
    pub(super) health_deadline: Option<u64>,
    /// Seconds the previous release keeps serving requests in flight after a switch (default 10).
    #[arg(long = "drain")]
    pub(super) drain_s: Option<u64>,
    /// How many releases keep their image for rollback (default 10).
    #[arg(long)]
    pub(super) keep_releases: Option<u32>,
    /// File holding an HTTPS token for a private repository (stored sealed, never shown).
    #[arg(long, value_name = "FILE", conflicts_with = "ssh_key_file")]
    pub(super) git_token_file: Option<PathBuf>,
    /// File holding an SSH deploy key for a private repository (stored sealed, never shown).
    #[arg(long, value_name = "FILE")]
    pub(super) ssh_key_file: Option<PathBuf>,
    /// File holding the app's own GitHub webhook secret (its first line; stored sealed, never
    /// shown): pushes for the app are then taken only at /api/v1/apps/<app>/webhooks/github.
    #[arg(long, value_name = "FILE")]
    pub(super) webhook_secret_file: Option<PathBuf>,
    /// Run only on nodes whose labels satisfy KEY=VALUE or KEY!=VALUE (repeatable).
    #[arg(long = "constraint", value_name = "KEY=VALUE")]
    pub(super) constraints: Vec<String>,
    /// How replicas are placed: spread (across nodes, the default) or binpack.
    #[arg(long, value_parser = ["spread", "binpack"])]
    pub(super) strategy: Option<String>,
    /// Memory (MiB) each replica reserves: only nodes with that much available run it.
    #[arg(long, value_name = "MIB")]
    pub(super) memory: Option<u64>,
    /// How many replicas serve the app (default 1), spread over the nodes.
    #[arg(long)]
    pub(super) replicas: Option<u32>,
    /// During a deploy, how many new replicas start at once (default 1).
    #[arg(long)]
    pub(super) max_surge: Option<u32>,
    /// Seconds the previous release stays running after a deploy, so rolling back to it is
    /// only a route change (default 0: none).
    #[arg(long = "standby", value_name = "SECONDS")]
    pub(super) standby_s: Option<u64>,
    /// Memory (MiB) each container may use; above it the app is killed (default: the node's,
    /// `node.app_memory_mb`).
    #[arg(long, value_name = "MIB")]
    pub(super) memory_limit: Option<u64>,
    /// CPU each container may use, in thousandths of a CPU (500: half of one; default: the
    /// node's, `node.app_millicpus`).
    #[arg(long, value_name = "MILLICPUS")]
    pub(super) cpu_limit: Option<u32>,
    /// Processes and threads each container may run at once (default: the node's,
    /// `node.app_pids`).
    #[arg(long, value_name = "N")]
    pub(super) pids_limit: Option<u32>,
    /// Make the container's root file system read-only (`/tmp` stays writable).
    #[arg(long)]
    pub(super) read_only: bool,
    /// How the image is made: dockerfile (the repository's, the default), auto (Berth detects a
    /// static site, Node, Python, Go or Rust and generates one; `berth analyze` shows it) or
    /// static (serve a directory with busybox httpd).
    #[arg(long, value_name = "PACK")]
    pub(super) build_pack: Option<berth_protocol::BuildPack>,
    /// The directory the static pack serves, relative to the context (default: the one holding
    /// index.html: ., public, dist or build).
    #[arg(long, value_name = "DIR")]
    pub(super) static_dir: Option<String>,
}

/// `berth nodes [cordon|uncordon <node>]`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodesArgs {
    #[command(subcommand)]
    pub(super) cmd: Option<NodesCmd>,
}

#[derive(Subcommand)]
pub enum NodesCmd {
    /// Place no new work on a node (what runs there keeps running).
    Cordon {
        /// The node's name (as `berth nodes` lists it).
        node: String,
    },
    /// Let the scheduler place work on a cordoned node again.
    Uncordon {
        /// The node's name (as `berth nodes` lists it).
        node: String,
    },
    /// Cordon a node and move every replica it serves to other nodes (health-gated, no request
    /// fails); prints the deployments that move them.
    Drain {
        /// The node's name (as `berth nodes` lists it).
        node: String,
    },
}

#[derive(Args)]
pub struct RollbackArgs {
    /// The app.
    #[arg(value_name = "APP")]
    pub(super) app: String,
    /// The deployment whose release to bring back (default: the release before the current one).
    #[arg(long)]
    pub(super) to: Option<String>,
    /// Wait until it is terminal; exit 1 unless it succeeded.
    #[arg(long)]
    pub(super) wait: bool,
}

#[derive(Args)]
pub struct DeployArgs {
    /// The app.
    #[arg(value_name = "APP")]
    pub(super) app: String,
    /// Branch, tag or commit to deploy (default: the app's branch).
    #[arg(long = "ref", conflicts_with = "dir")]
    pub(super) git_ref: Option<String>,
    /// Deploy this directory instead of the app's repository: it is packed (leaving out `.git`
    /// and what `.gitignore` and `.dockerignore` leave out), uploaded and built; it need not be
    /// a git repository.
    #[arg(long, value_name = "DIR")]
    pub(super) dir: Option<std::path::PathBuf>,
    /// Build every step again, using no cached layer of earlier builds.
    #[arg(long)]
    pub(super) no_cache: bool,
    /// Wait until the deployment is terminal, showing its status as it moves; exit 1 unless it succeeded.
    #[arg(long)]
    pub(super) wait: bool,
    /// Print the build and deploy log live, then the outcome; exit 1 unless it succeeded.
    #[arg(long, short = 'f', conflicts_with = "wait")]
    pub(super) follow: bool,
}

#[derive(Args)]
pub struct LogArgs {
    /// A deployment id, or an app (its latest deployment).
    #[arg(value_name = "DEPLOYMENT|APP")]
    pub(super) target: String,
    /// Keep printing lines as they come until the deployment ends.
    #[arg(long, short = 'f')]
    pub(super) follow: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// The app.
    #[arg(value_name = "APP")]
    pub(super) app: String,
    /// Keep printing new lines as they come (Ctrl-C stops).
    #[arg(long, short = 'f')]
    pub(super) follow: bool,
    /// How many of the newest lines to print first (default 100; 0 with -f: only new lines).
    #[arg(long, short = 'n', value_name = "N")]
    pub(super) tail: Option<usize>,
    /// Only lines since this time: a duration back from now (90s, 15m, 1h 30m), an RFC 3339
    /// time (2026-11-25T19:01:02Z), or epoch ms.
    #[arg(long, value_name = "TIME")]
    pub(super) since: Option<String>,
    /// Start each line with the time Docker read it (RFC 3339, UTC).
    #[arg(long, short = 't')]
    pub(super) timestamps: bool,
}

#[derive(Args)]
pub struct MetricsArgs {
    /// The app.
    #[arg(value_name = "APP")]
    pub(super) app: String,
    /// How far back to read: a duration such as 30s, 15m or 1m 30s (at most 1h, the retention).
    #[arg(long, default_value = "15m")]
    pub(super) window: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// The app whose running replica runs the command.
    pub(super) app: String,
    /// Run it in the app's replica on this node (default: the first serving replica on a live
    /// node).
    #[arg(long, value_name = "NODE")]
    pub(super) node: Option<String>,
    /// Run it in this replica: its container id, or the start of it as `berth replicas` shows
    /// it (a standby replica may be named too).
    #[arg(long, value_name = "CONTAINER")]
    pub(super) replica: Option<String>,
    /// How long the command may run before it is killed: 90s, 10m, 1h (default 10m, at most
    /// 24h).
    #[arg(long, value_name = "DURATION")]
    pub(super) timeout: Option<String>,
    /// The program and its arguments, after `--`. No shell runs it: use `-- sh -c '...'` for
    /// pipes, variables or globs.
    #[arg(last = true, value_name = "CMD")]
    pub(super) cmd: Vec<String>,
}

/// `berth analyze [DIR|URL]`.
#[derive(Args)]
pub struct AnalyzeArgs {
    /// A directory on this machine (analysed here, no server needed), or a repository's git URL
    /// (cloned and analysed by the coordinator).
    #[arg(value_name = "DIR|URL", default_value = ".", conflicts_with = "app")]
    pub(super) target: String,
    /// Analyse this app's repository (its branch, context, build pack and port) instead.
    #[arg(long, value_name = "APP")]
    pub(super) app: Option<String>,
    /// The branch or tag of a repository to analyse (default: its default branch; an app's:
    /// its branch).
    #[arg(long = "ref")]
    pub(super) git_ref: Option<String>,
    /// The directory to analyse, relative to DIR or the repository's root (default: `.`, an
    /// app's: its context).
    #[arg(long)]
    pub(super) context: Option<String>,
    /// auto (detect what the source is; the default) or static (serve a directory).
    #[arg(long, value_name = "PACK")]
    pub(super) build_pack: Option<berth_protocol::BuildPack>,
    /// The directory the static pack serves, relative to the analysed one (default: the one
    /// holding index.html: ., public, dist or build).
    #[arg(long, value_name = "DIR")]
    pub(super) static_dir: Option<String>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_pairs() {
        assert_eq!(parse_kv("A=1=2"), Ok(("A".into(), "1=2".into())));
        assert_eq!(parse_kv("A="), Ok(("A".into(), String::new())));
        assert!(parse_kv("A").is_err());
    }
}
