//! Berth's configuration: defaults, under an optional TOML file (`--config FILE`), under
//! environment variables `BERTH_<SECTION>__<KEY>` (top-level keys: `BERTH_<KEY>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub api: ApiSettings,
    pub redis: RedisSettings,
    pub node: NodeSettings,
    pub registry: RegistrySettings,
    pub github: GithubSettings,
    /// The base images of the Dockerfiles the `auto` and `static` build packs generate (read by
    /// the nodes, which build with them, and the coordinator, which shows them in analyses).
    pub packs: berth_packs::Images,
    /// App `foo` is served at `foo.<base_domain>` unless it names its domains.
    pub base_domain: String,
    /// Where `berth up` keeps Redis's data, Caddy's state, the token and build checkouts.
    pub data_dir: PathBuf,
    /// Seconds a deployment may take from queued to terminal.
    pub deploy_timeout_s: u64,
    /// 64 hex digits sealing git credentials at rest; unset: `<data_dir>/secret.key`, created
    /// (mode 0600) at first start. Every node of a fleet needs the coordinator's key.
    pub secret_key: Option<String>,
    /// Seconds the coordinators' leader lease lasts without renewal: when the leader dies,
    /// another coordinator leads within about this long (≥ 2).
    pub leader_lease_s: u64,
    /// Test-only: the supervision trees pop actor names from `berth:test:panic:<process>` and
    /// make those actors panic. Never on in production.
    pub test_hooks: bool,
    /// Whether apps may deploy from repositories on this machine: a path, `file://`, or plain
    /// `http://` to a loopback address. Unset: on for `berth up` (one machine, often a local
    /// checkout), off for `berth coordinator` and `berth node`.
    pub allow_local_repos: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: String,
    /// Bearer token of the API; generated into `<data_dir>/token` when unset.
    pub token: Option<String>,
    /// Seconds a client may take to send a request's head (and an idle connection is kept).
    pub header_timeout_s: u64,
    /// Seconds a client may take to send a request's body.
    pub body_timeout_s: u64,
    /// Connections the API serves at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Largest directory upload (`berth deploy --dir`) the API accepts, in MiB.
    pub upload_max_mb: u64,
    /// PEM certificate chain of the API: with `tls_key`, the API's listeners speak TLS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A second listener that serves only the GitHub webhook (same TLS), so GitHub can reach
    /// Berth while `listen` stays private.
    pub webhook_listen: Option<String>,
    /// (Client commands) a PEM CA certificate to trust for an `https://` API, beside the
    /// system's roots (`SSL_CERT_FILE` also works).
    pub ca_cert: Option<PathBuf>,
    /// Origins (`https://host[:port]`) whose pages may call the API from a browser (CORS), for a
    /// dashboard served elsewhere (`berth export-dashboard`); a list, or `a,b` in the
    /// environment. Empty: none but the API's own.
    #[serde(deserialize_with = "list")]
    pub cors_origins: Vec<String>,
}

impl ApiSettings {
    /// The settings that go together: `tls_cert` with `tls_key`, and `webhook_listen` an address
    /// other than `listen`; and every `cors_origins` entry an origin. The files themselves are read by [`ApiSettings::tls`] when a server
    /// starts (a client command need not be able to read the server's key).
    pub fn check(&self) -> Result<()> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => anyhow::bail!(
                "api.tls_cert is set but api.tls_key is not: set both (BERTH_API__TLS_CERT and \
                 BERTH_API__TLS_KEY, PEM files) for HTTPS, or neither"
            ),
            (None, Some(_)) => anyhow::bail!(
                "api.tls_key is set but api.tls_cert is not: set both (BERTH_API__TLS_CERT and \
                 BERTH_API__TLS_KEY, PEM files) for HTTPS, or neither"
            ),
            _ => {}
        }
        if let Some(w) = &self.webhook_listen {
            let addr: std::net::SocketAddr = w.parse().map_err(|_| {
                anyhow::anyhow!("api.webhook_listen {w:?} is not an address like 0.0.0.0:7701")
            })?;
            if self.listen.parse::<std::net::SocketAddr>().ok() == Some(addr) {
                anyhow::bail!(
                    "api.webhook_listen is api.listen ({w}): the webhook listener needs an address of its own"
                );
            }
        }
        if let Some(e) = self
            .cors_origins
            .iter()
            .find_map(|o| berth_web::cors::origin_error(o))
        {
            anyhow::bail!(e);
        }
        Ok(())
    }

    /// The API's TLS, read from `tls_cert` and `tls_key`; `None` when they are unset (plain HTTP).
    pub fn tls(&self) -> Result<Option<berth_web::Tls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(berth_web::Tls::load(cert, key)?)),
            _ => Ok(None),
        }
    }

    /// `https` when the API speaks TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// How the API is served: [`ApiSettings::limits`] and the CORS origins.
    pub fn serving(&self) -> berth_web::Serving {
        berth_web::Serving {
            limits: self.limits(),
            cors: berth_web::Cors::new(&self.cors_origins),
        }
    }

    pub fn limits(&self) -> berth_web::Limits {
        berth_web::Limits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout_s),
            body_timeout: std::time::Duration::from_secs(self.body_timeout_s),
            max_connections: self.max_connections,
            upload_max: self.upload_max_mb.saturating_mul(1024 * 1024),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`, `rediss://` (TLS) or `redis+unix:///path`. Unset: `berth up`
    /// runs its own.
    pub url: Option<String>,
    /// Lets a daemon use a Redis on another host without a password (`url` names none). Off:
    /// whoever reaches that Redis could rewrite routes and jobs, so the daemon refuses to start.
    pub allow_unauthenticated: bool,
    /// `host:port` of each Redis Sentinel (a list, or `a:26379,b:26379` in the environment):
    /// the daemons ask them which node is the primary of `master_name`, and follow a failover.
    /// `url` then only says how to speak to the data nodes (password, TLS, db); its host is
    /// not used.
    #[serde(deserialize_with = "list")]
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor <name> …`).
    pub master_name: Option<String>,
    /// The Sentinels' own ACL user, if they have one.
    pub sentinel_username: Option<String>,
    /// The Sentinels' own password (their `requirepass`), if any.
    pub sentinel_password: Option<String>,
    /// Replicas that must acknowledge a write that has to survive a failover of Redis (a new
    /// deployment, a cancel, a job handed to a node, a fate or claim marker, an app or token
    /// change) before it is reported done; 0: none, no `WAIT` at all.
    pub min_replicas_acked: u32,
    /// How long such a write waits for them, in ms; past it the API answers 503 saying the
    /// write reached the primary only.
    pub replica_ack_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: None,
            allow_unauthenticated: false,
            sentinels: Vec::new(),
            master_name: None,
            sentinel_username: None,
            sentinel_password: None,
            min_replicas_acked: 0,
            replica_ack_timeout_ms: 1000,
        }
    }
}

impl RedisSettings {
    /// What the daemons ask of Redis's replicas (`min_replicas_acked`, `replica_ack_timeout_ms`).
    pub fn durability(&self) -> berth_bus::Durability {
        berth_bus::Durability {
            replicas: self.min_replicas_acked,
            timeout: std::time::Duration::from_millis(self.replica_ack_timeout_ms.max(1)),
        }
    }

    /// Refuses a Redis URL anyone on the network could use: one on another host (TCP, not
    /// loopback) that names no password, unless `allow_unauthenticated`. A Unix socket or a
    /// loopback address is reached only from this host (app containers reach neither: a
    /// container's loopback is its own). Also refuses a URL the Redis client cannot parse, with
    /// the reason and without echoing a password.
    pub fn check(&self) -> Result<()> {
        self.check_sentinels()?;
        let Some(url) = self.data_url() else {
            return Ok(());
        };
        use redis::IntoConnectionInfo;
        let info = url.as_str().into_connection_info().map_err(|e| {
            anyhow::anyhow!(
                "redis.url is not a Redis URL ({}): expected redis://[:PASSWORD@]HOST:PORT/DB, rediss://… (TLS) or redis+unix:///PATH",
                e.detail().unwrap_or("cannot parse it")
            )
        })?;
        // Under Sentinel the data nodes are wherever the Sentinels say: as far as the Sentinels.
        let host = match info.addr() {
            redis::ConnectionAddr::Unix(_) if !self.sentinels.is_empty() => anyhow::bail!(
                "redis.url is a Unix socket, but with redis.sentinels the data nodes are reached over TCP: \
                 use redis://[:PASSWORD@]HOST/DB (its host is not used) or rediss:// for TLS"
            ),
            _ if !self.sentinels.is_empty() => match self
                .sentinels
                .iter()
                .filter_map(|a| berth_bus::conn::split_host_port(a))
                .find(|(h, _)| !is_loopback(h))
            {
                Some((h, _)) => h,
                None => return Ok(()),
            },
            redis::ConnectionAddr::Tcp(h, _) | redis::ConnectionAddr::TcpTls { host: h, .. } => {
                h.clone()
            }
            _ => return Ok(()),
        };
        if is_loopback(&host)
            || self.allow_unauthenticated
            || info.redis_settings().password().is_some()
        {
            return Ok(());
        }
        anyhow::bail!(
            "redis.url names no password for the Redis at {host}, another host: anyone who reaches it could rewrite \
             the fleet's routes and jobs. Give that Redis a password (`requirepass`, or an ACL user) and put it in \
             the URL (redis://:PASSWORD@{host}:6379/0, or rediss:// for TLS), or set \
             redis.allow_unauthenticated = true (BERTH_REDIS__ALLOW_UNAUTHENTICATED) if the network is private"
        )
    }

    /// `sentinels` and `master_name` go together, and each Sentinel is a `host:port`.
    fn check_sentinels(&self) -> Result<()> {
        let name = self.master_name.as_deref().filter(|n| !n.trim().is_empty());
        if self.sentinels.is_empty() {
            if name.is_some() {
                anyhow::bail!(
                    "redis.master_name is set but redis.sentinels is not: list the Sentinels that monitor it \
                     (BERTH_REDIS__SENTINELS=host1:26379,host2:26379,host3:26379), or unset redis.master_name"
                );
            }
            return Ok(());
        }
        if name.is_none() {
            anyhow::bail!(
                "redis.sentinels is set but redis.master_name is not: set it to the name the Sentinels monitor \
                 the primary under (`sentinel monitor <name> …`; BERTH_REDIS__MASTER_NAME)"
            );
        }
        for a in &self.sentinels {
            if berth_bus::conn::split_host_port(a).is_none() {
                anyhow::bail!("redis.sentinels: {a:?} is not host:port (e.g. 10.0.0.11:26379)");
            }
        }
        Ok(())
    }

    /// How the daemons reach Redis: `url`; under Sentinel without `url`, a URL whose host is not
    /// used (no password, no TLS, db 0). `None`: `berth up` runs its own.
    pub fn data_url(&self) -> Option<String> {
        match &self.url {
            Some(u) => Some(u.clone()),
            None if !self.sentinels.is_empty() => Some("redis://localhost/0".into()),
            None => None,
        }
    }

    /// The Sentinels to ask for the primary, when `sentinels` is set.
    pub fn sentinels(&self) -> Option<berth_bus::Sentinels> {
        if self.sentinels.is_empty() {
            return None;
        }
        Some(berth_bus::Sentinels {
            addrs: self.sentinels.clone(),
            master_name: self.master_name.clone().unwrap_or_default(),
            // An empty value (`BERTH_REDIS__SENTINEL_PASSWORD=`) is none.
            username: self.sentinel_username.clone().filter(|u| !u.is_empty()),
            password: self.sentinel_password.clone().filter(|p| !p.is_empty()),
        })
    }
}

/// Whether `host` (a name, an address, `[v6]`) is this host's loopback.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// `host:port` of the image registry the nodes of a fleet share; unset: none (one engine).
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubSettings {
    /// Secret of `POST /api/v1/webhooks/github`; unset: every delivery is refused.
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    pub name: String,
    /// `host:port` of this node's Caddy admin API: loopback unless `allow_remote_caddy_admin`.
    pub caddy_admin: String,
    /// Lets `caddy_admin` be an address off loopback. Off: Caddy's admin API has no
    /// authentication, and whoever reaches it rewrites the node's routes, so the node refuses.
    pub allow_remote_caddy_admin: bool,
    pub ingress_http: u16,
    /// Whether Caddy serves apps over HTTPS too (`off`, `internal`, `acme`; see [`HttpsMode`]).
    pub https: HttpsMode,
    /// The port Caddy serves apps over HTTPS on when `https` is not `off`.
    pub ingress_https: u16,
    /// The ACME account's contact (`https = "acme"`): the CA writes there about expiring
    /// certificates and problems. Optional in ACME.
    pub acme_email: Option<String>,
    /// The ACME CA's directory URL (`https = "acme"`): Let's Encrypt unless set.
    pub acme_ca: String,
    /// `unix:///path/docker.sock` or `tcp://host:port`; unset: the local engine.
    pub docker_host: Option<String>,
    /// The address app containers publish their port on, which every node's Caddy dials: in a
    /// fleet, one the other servers reach (`address` is accepted as its older name).
    #[serde(alias = "address")]
    pub advertise: String,
    /// Seconds between two samples of the app containers' and the host's figures (≥ 1).
    pub stats_interval_s: u64,
    /// The node's labels, for app placement constraints: a TOML table, or `key=value,…`
    /// (`BERTH_NODE__LABELS=zone=eu,disk=ssd`).
    #[serde(deserialize_with = "labels")]
    pub labels: BTreeMap<String, String>,
    /// Builds this node runs at once before the scheduler prefers another node; 0: one per CPU.
    pub build_slots: u32,
    /// Where the node's DNS responder listens (UDP and TCP): Caddy reads each route's upstreams
    /// from it. Loopback; one per node.
    pub resolver_listen: std::net::SocketAddr,
    /// (Coordinator) Seconds without a heartbeat after which a node is down. Nodes beat every
    /// second; one is suspect (nothing new placed on it) after 2.5 s of silence.
    pub down_after_s: u64,
    /// MiB of build context (after `.dockerignore`) a build may send to Docker; more fails the
    /// deployment, saying so.
    pub build_context_max_mb: u64,
    /// Memory of an app container whose app sets no `limits.memory_mb`, in MiB.
    pub app_memory_mb: u64,
    /// CPU of an app container whose app sets no `limits.millicpus`, in thousandths of a CPU.
    pub app_millicpus: u32,
    /// Processes of an app container whose app sets no `limits.pids`.
    pub app_pids: u32,
    /// Memory each build's steps may use, in MiB (at most 2047).
    pub build_memory_mb: u64,
    /// CPU each build's steps may use, in thousandths of a CPU.
    pub build_millicpus: u32,
    /// Seconds a build may run once it has a build slot; past them it is stopped and fails.
    pub build_timeout_s: u64,
    /// The Docker network app containers and builds join, created (inter-container traffic
    /// off) when missing; `bridge`: the engine's default bridge, no isolation between apps.
    pub app_network: String,
}

impl NodeSettings {
    /// Refuses a Caddy admin address anyone but this host could reach: `caddy_admin` must be a
    /// loopback address (`127.0.0.1:2019`, `[::1]:2019`, `localhost:2019`) unless
    /// `allow_remote_caddy_admin`. Caddy's admin API has no authentication: whoever reaches it
    /// rewrites every route of the node, and `berth up` would make its Caddy listen there.
    pub fn check_caddy_admin(&self) -> Result<()> {
        let admin = self.caddy_admin.as_str();
        let loopback = match admin.parse::<std::net::SocketAddr>() {
            Ok(a) => a.ip().is_loopback(),
            Err(_) => match admin.rsplit_once(':') {
                Some((host, port))
                    if port.parse::<u16>().is_ok()
                        && !host.is_empty()
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
                {
                    host.eq_ignore_ascii_case("localhost")
                }
                _ => anyhow::bail!(
                    "node.caddy_admin is {admin:?}, not HOST:PORT: give the address of this node's Caddy admin API, \
                     e.g. 127.0.0.1:2019"
                ),
            },
        };
        if loopback || self.allow_remote_caddy_admin {
            return Ok(());
        }
        anyhow::bail!(
            "node.caddy_admin is {admin}, not a loopback address: Caddy's admin API has no authentication, and \
             whoever reaches it can rewrite every route of this node. Use 127.0.0.1:PORT (or [::1]:PORT, \
             localhost:PORT), or set node.allow_remote_caddy_admin = true \
             (BERTH_NODE__ALLOW_REMOTE_CADDY_ADMIN) if only a network you trust reaches that address"
        )
    }
}

/// Whether a node's Caddy serves apps over HTTPS, and where certificates come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum HttpsMode {
    /// Plain HTTP only (the default: `berth up` on `*.localhost`, and a node behind a proxy that
    /// terminates TLS).
    #[default]
    Off,
    /// HTTPS with certificates of Caddy's own CA (a root only clients given it trust).
    Internal,
    /// HTTPS with certificates of an ACME CA (`acme_ca`, Let's Encrypt by default).
    Acme,
}

impl TryFrom<String> for HttpsMode {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.as_str() {
            "off" => Ok(HttpsMode::Off),
            "internal" => Ok(HttpsMode::Internal),
            "acme" => Ok(HttpsMode::Acme),
            _ => Err(format!(
                "node.https must be off, internal (Caddy's own CA) or acme (an ACME CA such as Let's Encrypt), not {s:?}"
            )),
        }
    }
}

impl HttpsMode {
    fn as_str(self) -> &'static str {
        match self {
            HttpsMode::Off => "off",
            HttpsMode::Internal => "internal",
            HttpsMode::Acme => "acme",
        }
    }
}

/// Let's Encrypt's production directory: `node.acme_ca` unless set.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl NodeSettings {
    /// Refuses HTTPS settings Caddy could not use, each with a sentence saying which and why:
    /// an `acme_ca` that is not an `https://` URL, an `acme_email` that is not an address, and
    /// with HTTPS on, an `ingress_https` of 0 or equal to `ingress_http`.
    pub fn check_https(&self) -> Result<()> {
        let ca = reqwest::Url::parse(&self.acme_ca).map_err(|e| {
            anyhow::anyhow!(
                "node.acme_ca {:?} is not a URL ({e}): give the ACME directory URL of the CA, e.g. {LETS_ENCRYPT}",
                self.acme_ca
            )
        })?;
        if ca.scheme() != "https" || ca.host_str().is_none_or(str::is_empty) {
            anyhow::bail!(
                "node.acme_ca {:?} must be an https:// URL with a host (ACME is spoken over HTTPS), e.g. {LETS_ENCRYPT}",
                self.acme_ca
            );
        }
        if let Some(email) = self.acme_email() {
            let valid = email.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty()
                    && host.contains('.')
                    && !host.starts_with('.')
                    && !host.ends_with('.')
                    && !host.contains('@')
            }) && !email.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                anyhow::bail!(
                    "node.acme_email {email:?} is not an email address (user@example.com); leave it unset to register the ACME account without one"
                );
            }
        }
        if self.https != HttpsMode::Off {
            if self.ingress_https == 0 {
                anyhow::bail!("node.ingress_https must be a port (1 to 65535), not 0");
            }
            if self.ingress_https == self.ingress_http {
                anyhow::bail!(
                    "node.ingress_https and node.ingress_http are both {}: with node.https = {:?} Caddy serves HTTPS and plain HTTP on two ports",
                    self.ingress_http,
                    self.https.as_str()
                );
            }
        }
        Ok(())
    }

    /// `acme_email`, an empty one being none.
    fn acme_email(&self) -> Option<&str> {
        self.acme_email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }

    /// The node's HTTPS as its Caddy is set up (the settings checked by [`Self::check_https`]).
    pub fn https(&self) -> berth_node::caddy::Https {
        use berth_node::caddy::{Https, Issuer};
        let issuer = match self.https {
            HttpsMode::Off => return Https::Off,
            HttpsMode::Internal => Issuer::Internal,
            HttpsMode::Acme => Issuer::Acme {
                ca: self.acme_ca.clone(),
                email: self.acme_email().map(str::to_string),
            },
        };
        Https::On {
            port: self.ingress_https,
            issuer,
        }
    }
}

/// A list as a list, or as `a,b,…` (how the environment gives one); each entry trimmed, empty
/// ones dropped.
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Items(Vec<String>),
        Text(String),
    }
    let items = match List::deserialize(d)? {
        List::Items(v) => v,
        List::Text(s) => s.split(',').map(String::from).collect(),
    };
    Ok(items
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect())
}

/// Labels as a table or as `key=value,…`.
fn labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Labels {
        Table(BTreeMap<String, String>),
        Text(String),
    }
    match Labels::deserialize(d)? {
        Labels::Table(t) => Ok(t),
        Labels::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
                None => Err(serde::de::Error::custom(format!(
                    "node.labels: {p:?} is not key=value"
                ))),
            })
            .collect(),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            api: ApiSettings::default(),
            redis: RedisSettings::default(),
            node: NodeSettings::default(),
            registry: RegistrySettings::default(),
            github: GithubSettings::default(),
            packs: berth_packs::Images::default(),
            base_domain: "localhost".into(),
            data_dir: default_data_dir(),
            deploy_timeout_s: 900,
            secret_key: None,
            leader_lease_s: 5,
            test_hooks: false,
            allow_local_repos: None,
        }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: "127.0.0.1:7700".into(),
            token: None,
            header_timeout_s: 30,
            body_timeout_s: 30,
            max_connections: 1024,
            upload_max_mb: 100,
            tls_cert: None,
            tls_key: None,
            webhook_listen: None,
            ca_cert: None,
            cors_origins: Vec::new(),
        }
    }
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            name: hostname(),
            caddy_admin: "127.0.0.1:2019".into(),
            allow_remote_caddy_admin: false,
            ingress_http: 8080,
            https: HttpsMode::Off,
            ingress_https: 443,
            acme_email: None,
            acme_ca: LETS_ENCRYPT.into(),
            docker_host: None,
            advertise: "127.0.0.1".into(),
            stats_interval_s: 5,
            labels: BTreeMap::new(),
            build_slots: 0,
            resolver_listen: ([127, 0, 0, 1], 5380).into(),
            down_after_s: 5,
            build_context_max_mb: 512,
            app_memory_mb: 512,
            app_millicpus: 1000,
            app_pids: 512,
            build_memory_mb: 1024,
            build_millicpus: 2000,
            build_timeout_s: 1800,
            app_network: "berth-apps".into(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        // A node name is a DNS label: the host name up to its first dot, lowercased.
        .map(|s| {
            s.trim()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        })
        .filter(|s| berth_protocol::validate::app_name(s).is_ok())
        .unwrap_or_else(|| "node-1".into())
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(d) => PathBuf::from(d).join("berth"),
        None => home().join(".local/share/berth"),
    }
}

/// Where `berth up` writes the client's address and token, so another terminal needs no flags.
pub fn client_config_path() -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) => PathBuf::from(d).join("berth/client.toml"),
        None => home().join(".config/berth/client.toml"),
    }
}

impl Settings {
    pub fn load(file: Option<&Path>) -> Result<Settings> {
        let mut b = config::Config::builder();
        if let Some(f) = file {
            b = b.add_source(config::File::from(f).required(true));
        }
        b = b.add_source(
            config::Environment::with_prefix("BERTH")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        );
        let cfg = b.build().context("reading configuration")?;
        let s: Settings = cfg
            .try_deserialize()
            .context("invalid configuration (see the configuration table in the README)")?;
        berth_protocol::validate::domain(&s.base_domain)
            .map_err(|e| anyhow::anyhow!("base_domain: {e}"))?;
        if s.node.down_after_s < 3 {
            anyhow::bail!(
                "node.down_after_s must be at least 3: nodes beat every second and are suspect after 2.5 s"
            );
        }
        if s.leader_lease_s < 2 {
            anyhow::bail!(
                "leader_lease_s must be at least 2: the leader renews its lease every fifth of it"
            );
        }
        if s.api.header_timeout_s == 0 || s.api.body_timeout_s == 0 {
            anyhow::bail!("api.header_timeout_s and api.body_timeout_s must be at least 1");
        }
        if s.api.upload_max_mb == 0 || s.api.upload_max_mb > 1024 {
            anyhow::bail!(
                "api.upload_max_mb must be between 1 and 1024 (MiB), not {}",
                s.api.upload_max_mb
            );
        }
        if s.api.max_connections == 0 {
            anyhow::bail!("api.max_connections must be at least 1");
        }
        s.api.check()?;
        if s.node.build_context_max_mb == 0 {
            anyhow::bail!("node.build_context_max_mb must be at least 1");
        }
        if s.node.stats_interval_s == 0 {
            anyhow::bail!("node.stats_interval_s must be at least 1");
        }
        if s.node.build_timeout_s == 0 {
            anyhow::bail!("node.build_timeout_s must be at least 1");
        }
        s.redis.check()?;
        s.packs.check().map_err(|e| anyhow::anyhow!(e))?;
        s.node.check_caddy_admin()?;
        s.node.check_https()?;
        s.check_limits()?;
        Ok(s)
    }

    /// The node's limits lie in the ranges an app's own may take (`validate::limits`).
    fn check_limits(&self) -> Result<()> {
        use berth_protocol::validate::{in_range, MEMORY_MB, MILLICPUS, PIDS};
        let wide = |r: &std::ops::RangeInclusive<u32>| u64::from(*r.start())..=u64::from(*r.end());
        let n = &self.node;
        in_range("node.app_memory_mb", "MiB", n.app_memory_mb, &MEMORY_MB)
            .and_then(|_| {
                in_range(
                    "node.app_millicpus",
                    "thousandths of a CPU",
                    u64::from(n.app_millicpus),
                    &wide(&MILLICPUS),
                )
            })
            .and_then(|_| {
                in_range(
                    "node.app_pids",
                    "processes",
                    u64::from(n.app_pids),
                    &wide(&PIDS),
                )
            })
            .and_then(|_| {
                in_range(
                    "node.build_memory_mb",
                    "MiB",
                    n.build_memory_mb,
                    &(*MEMORY_MB.start()..=berth_node::image_build::BUILD_MEMORY_MB_MAX),
                )
            })
            .and_then(|_| {
                in_range(
                    "node.build_millicpus",
                    "thousandths of a CPU",
                    u64::from(n.build_millicpus),
                    &wide(&MILLICPUS),
                )
            })
            .map_err(|e| anyhow::anyhow!(e))
    }

    pub fn deploy_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.deploy_timeout_s)
    }
}

/// The settings `berth up` reads, for its `--help`: each key as a TOML line with its default (a
/// commented-out line when it has none), and what it is.
fn documented() -> Vec<(&'static str, Option<String>, &'static str)> {
    let d = Settings::default();
    let q = |v: &str| format!("{v:?}");
    vec![
        ("base_domain", Some(q(&d.base_domain)), "app `foo` is served at foo.<base_domain> unless it names its domains"),
        ("data_dir", Some(q(&d.data_dir.display().to_string())), "Redis's data, Caddy's state, the API token, the secret key, build checkouts"),
        ("deploy_timeout_s", Some(d.deploy_timeout_s.to_string()), "seconds a deployment may take from queued to terminal"),
        ("secret_key", None, "64 hex digits sealing git credentials; unset: <data_dir>/secret.key, created at first start"),
        ("api.listen", Some(q(&d.api.listen)), "the HTTP API's address"),
        ("api.token", None, "the API's bearer token; unset: generated into <data_dir>/token"),
        ("api.header_timeout_s", Some(d.api.header_timeout_s.to_string()), "seconds a client may take to send a request's head; also how long an idle connection is kept"),
        ("api.body_timeout_s", Some(d.api.body_timeout_s.to_string()), "seconds a client may take to send a request's body"),
        ("api.max_connections", Some(d.api.max_connections.to_string()), "connections the API serves at once; one more is answered 503 and closed"),
        ("api.upload_max_mb", Some(d.api.upload_max_mb.to_string()), "largest directory `berth deploy --dir` may upload, in MiB (1 to 1024); the archive is kept in Redis for a day"),
        ("api.tls_cert", None, "PEM certificate chain of the API; with api.tls_key the API speaks HTTPS only"),
        ("api.tls_key", None, "PEM private key of api.tls_cert"),
        ("api.webhook_listen", None, "a second listener serving only the GitHub webhook (same TLS); unset: none"),
        ("api.ca_cert", None, "(client commands) a PEM CA certificate to trust for an https:// API"),
        ("api.cors_origins", Some("[]".into()), "origins (https://host[:port]) whose pages may call the API from a browser, for a dashboard served elsewhere: a list, or a,b in the environment"),
        ("redis.url", None, "an external Redis (redis://[:password@]host:port/db, rediss:// for TLS); unset: `berth up` runs its own"),
        ("redis.allow_unauthenticated", Some(d.redis.allow_unauthenticated.to_string()), "allow a Redis on another host without a password in redis.url"),
        ("redis.sentinels", Some("[]".into()), "host:port of Redis Sentinels to ask for the primary (host:port,… in the environment); redis.url then only gives password, TLS and db"),
        ("redis.master_name", None, "the name the Sentinels monitor the primary under (needed with redis.sentinels)"),
        ("redis.sentinel_username", None, "the Sentinels' ACL user, if any"),
        ("redis.sentinel_password", None, "the Sentinels' password, if any"),
        ("redis.min_replicas_acked", Some(d.redis.min_replicas_acked.to_string()), "replicas that must acknowledge a write that has to survive a Redis failover (a deployment, a cancel, a job, …) before it counts as done; 0: no WAIT"),
        ("redis.replica_ack_timeout_ms", Some(d.redis.replica_ack_timeout_ms.to_string()), "ms such a write waits for them; past it the API answers 503 (the write reached the primary only)"),
        ("node.name", Some(q(&d.node.name)), "this node's name (default: the host name)"),
        ("node.caddy_admin", Some(q(&d.node.caddy_admin)), "the admin address of the node's Caddy (the one `berth up` runs); loopback only"),
        ("node.allow_remote_caddy_admin", Some(d.node.allow_remote_caddy_admin.to_string()), "allow a node.caddy_admin off loopback (Caddy's admin API has no authentication)"),
        ("node.ingress_http", Some(d.node.ingress_http.to_string()), "the port Caddy serves apps on (their URLs name it unless it is 80)"),
        ("node.https", Some(q(d.node.https.as_str())), "serve apps over HTTPS too: off, internal (Caddy's own CA) or acme; plain HTTP to an app then redirects"),
        ("node.ingress_https", Some(d.node.ingress_https.to_string()), "the port Caddy serves apps over HTTPS on (node.https not off)"),
        ("node.acme_email", None, "the ACME account's email (node.https = acme); optional"),
        ("node.acme_ca", Some(q(&d.node.acme_ca)), "the ACME CA's directory URL (node.https = acme)"),
        ("node.docker_host", None, "unix:///path/docker.sock or tcp://host:port; unset: the local engine"),
        ("node.advertise", Some(q(&d.node.advertise)), "the address app containers publish their port on, which Caddy dials"),
        ("node.stats_interval_s", Some(d.node.stats_interval_s.to_string()), "seconds between two samples of container and host figures"),
        ("node.labels", Some("{}".into()), "labels for placement constraints: a table, or key=value,… in the environment"),
        ("node.build_slots", Some(d.node.build_slots.to_string()), "builds run at once (more wait for a slot; the scheduler prefers a node with one free); 0: one per CPU"),
        ("node.resolver_listen", Some(q(&d.node.resolver_listen.to_string())), "the node's DNS responder, which Caddy reads upstreams from"),
        ("node.down_after_s", Some(d.node.down_after_s.to_string()), "seconds without a heartbeat after which a node is down (at least 3)"),
        ("node.build_context_max_mb", Some(d.node.build_context_max_mb.to_string()), "MiB of build context (after .dockerignore) a build may send to Docker"),
        ("node.app_memory_mb", Some(d.node.app_memory_mb.to_string()), "memory of an app container whose app sets no limits.memory_mb, in MiB"),
        ("node.app_millicpus", Some(d.node.app_millicpus.to_string()), "CPU of an app container whose app sets no limits.millicpus (1000: one CPU)"),
        ("node.app_pids", Some(d.node.app_pids.to_string()), "processes of an app container whose app sets no limits.pids"),
        ("node.build_memory_mb", Some(d.node.build_memory_mb.to_string()), "memory each build may use, in MiB (16 to 2047)"),
        ("node.build_millicpus", Some(d.node.build_millicpus.to_string()), "CPU each build may use (1000: one CPU)"),
        ("node.build_timeout_s", Some(d.node.build_timeout_s.to_string()), "seconds a build may run once it has a build slot; past them it is stopped and the deployment fails"),
        ("node.app_network", Some(q(&d.node.app_network)), "the Docker network apps and builds join (inter-container traffic off); bridge: the engine's default"),
        ("registry.url", None, "host:port of an image registry the nodes of a fleet share; unset: none"),
        ("registry.username", None, "the registry's user"),
        ("registry.password", None, "the registry's password"),
        ("leader_lease_s", Some(d.leader_lease_s.to_string()), "seconds the coordinators' leader lease lasts unrenewed: another leads this long after the leader dies"),
        ("allow_local_repos", None, "deploy from repositories on this machine (a path, file://, http:// to loopback); unset: on for `berth up`, off for coordinator and node"),
        ("test_hooks", Some(d.test_hooks.to_string()), "test-only: lets tests make actors panic through Redis; never in production"),
        ("github.webhook_secret", None, "the secret of GitHub's push webhook; unset: every delivery is refused"),
        ("packs.static_image", Some(q(&d.packs.static_image)), "the image the static build pack serves files from (busybox httpd)"),
        ("packs.node_image", Some(q(&d.packs.node_image)), "the base image of Node apps the auto build pack builds"),
        ("packs.python_image", Some(q(&d.packs.python_image)), "the base image of Python apps the auto build pack builds"),
        ("packs.go_image", Some(q(&d.packs.go_image)), "the image Go apps are compiled in"),
        ("packs.rust_image", Some(q(&d.packs.rust_image)), "the image Rust apps are compiled in"),
        ("packs.runtime_image", Some(q(&d.packs.runtime_image)), "the image compiled Go and Rust apps run on"),
    ]
}

/// `berth up --help`'s list of settings.
pub fn help() -> String {
    let mut out = String::from(
        "Settings (TOML file of --config; each overridden by an environment variable, \
         BERTH_<SECTION>__<KEY> or BERTH_<KEY> for a top-level key, e.g. BERTH_NODE__INGRESS_HTTP=80):\n",
    );
    for (key, default, what) in documented() {
        let default = default.unwrap_or_else(|| "(unset)".into());
        out.push_str(&format!("  {key:<22} {default:<26} {what}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_on_another_host_needs_a_password_unless_allowed() {
        let check = |url: &str, allow: bool| {
            RedisSettings {
                url: Some(url.to_string()),
                allow_unauthenticated: allow,
                ..RedisSettings::default()
            }
            .check()
        };
        for ok in [
            "redis://127.0.0.1:6379/0",
            "redis://localhost:6379/",
            "redis://[::1]:6379/",
            "redis+unix:///run/redis.sock",
            "redis://:s3cret@10.0.0.10:6379/0",
            "redis://berth:s3cret@10.0.0.10:6379/0",
            "rediss://:s3cret@redis.internal:6380/0",
        ] {
            assert!(check(ok, false).is_ok(), "{ok}: {:?}", check(ok, false));
        }
        for bad in [
            "redis://10.0.0.10:6379/0",
            "rediss://redis.internal:6380/",
            "redis://berth@10.0.0.10/",
        ] {
            let e = check(bad, false).unwrap_err().to_string();
            assert!(e.contains("names no password"), "{bad}: {e}");
            assert!(check(bad, true).is_ok(), "{bad} with allow_unauthenticated");
        }
        let e = check("http://:s3cret@10.0.0.10/", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a Redis URL"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        assert!(RedisSettings::default().check().is_ok());
    }

    /// `api.cors_origins` is a list in a file, `a,b` in the environment (the same parser), and
    /// every entry must be an origin.
    #[test]
    fn cors_origins_are_a_list_of_origins() {
        let load = |toml: &str| {
            let f = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
            std::fs::write(f.path(), toml).unwrap();
            Settings::load(Some(f.path()))
        };
        let s = load(
            "[api]\ncors_origins = [\"https://dash.example.com\", \"http://localhost:8080/\"]\n",
        )
        .unwrap();
        assert_eq!(
            s.api.cors_origins,
            ["https://dash.example.com", "http://localhost:8080/"]
        );
        assert!(!s.api.serving().cors.is_off());
        let s =
            load("[api]\ncors_origins = \"https://a.example, https://b.example:8443\"\n").unwrap();
        assert_eq!(
            s.api.cors_origins,
            ["https://a.example", "https://b.example:8443"]
        );
        assert!(Settings::default().api.serving().cors.is_off());
        let e = load("[api]\ncors_origins = [\"*\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("api.cors_origins: \"*\" is not an origin"),
            "{e}"
        );
        let e = load("[api]\ncors_origins = \"https://dash.example.com/ui\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no path"), "{e}");
    }

    #[test]
    fn sentinels_need_a_master_name_and_host_ports() {
        let read = |toml: &str| -> Result<RedisSettings> {
            let s: Settings = config::Config::builder()
                .add_source(config::File::from_str(toml, config::FileFormat::Toml))
                .build()?
                .try_deserialize()?;
            s.redis.check()?;
            Ok(s.redis)
        };
        let r = read("[redis]\nsentinels = [\"127.0.0.1:26379\", \" [::1]:26380 \"]\nmaster_name = \"berth\"\n")
            .unwrap();
        let s = r.sentinels().unwrap();
        assert_eq!(s.addrs, ["127.0.0.1:26379", "[::1]:26380"]);
        assert_eq!(s.master_name, "berth");
        // No redis.url: the data nodes are spoken to with no password, db 0.
        assert_eq!(r.data_url().as_deref(), Some("redis://localhost/0"));
        // As one string (an environment variable's form).
        let r = read(
            "[redis]\nsentinels = \"127.0.0.1:26379, 127.0.0.2:26379,\"\nmaster_name = \"m\"\n",
        )
        .unwrap();
        assert_eq!(r.sentinels, ["127.0.0.1:26379", "127.0.0.2:26379"]);
        assert!(RedisSettings::default().sentinels().is_none());

        let e = read("[redis]\nsentinels = \"127.0.0.1:26379\"\n").unwrap_err();
        assert!(e.to_string().contains("redis.master_name is not"), "{e}");
        let e = read("[redis]\nmaster_name = \"berth\"\n").unwrap_err();
        assert!(e.to_string().contains("redis.sentinels is not"), "{e}");
        let e = read("[redis]\nsentinels = \"sentinel-a\"\nmaster_name = \"m\"\n").unwrap_err();
        assert!(
            e.to_string().contains("\"sentinel-a\" is not host:port"),
            "{e}"
        );
        let e = read("[redis]\nsentinels = \"127.0.0.1:26379\"\nmaster_name = \"m\"\nurl = \"redis+unix:///r.sock\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("Unix socket"), "{e}");
        // Sentinels on other hosts: the data nodes are there too, so a password is needed.
        let remote = "[redis]\nsentinels = \"10.0.0.11:26379\"\nmaster_name = \"m\"\n";
        let e = read(remote).unwrap_err();
        assert!(e.to_string().contains("names no password"), "{e}");
        read(&format!("{remote}url = \"redis://:s3cret@redis/0\"\n")).unwrap();
        read(&format!("{remote}allow_unauthenticated = true\n")).unwrap();
        // The Sentinels' password is not shown.
        let r = read(&format!(
            "{remote}allow_unauthenticated = true\nsentinel_password = \"hunter2\"\n"
        ))
        .unwrap();
        let shown = format!("{:?}", r.sentinels().unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_caddy_admin_off_loopback_is_refused_unless_allowed() {
        let check = |admin: &str, allow: bool| {
            NodeSettings {
                caddy_admin: admin.to_string(),
                allow_remote_caddy_admin: allow,
                ..NodeSettings::default()
            }
            .check_caddy_admin()
        };
        for ok in [
            "127.0.0.1:2019",
            "127.0.0.2:2019",
            "[::1]:2019",
            "localhost:2019",
            "LOCALHOST:2020",
        ] {
            assert!(check(ok, false).is_ok(), "{ok}: {:?}", check(ok, false));
        }
        for bad in [
            "0.0.0.0:2019",
            "[::]:2019",
            "10.0.0.11:2019",
            "203.0.113.7:2019",
            "caddy.internal:2019",
            "localhost.evil.example:2019",
        ] {
            let e = check(bad, false).unwrap_err().to_string();
            assert!(e.contains("not a loopback address"), "{bad}: {e}");
            assert!(e.contains("node.allow_remote_caddy_admin"), "{bad}: {e}");
            assert!(
                check(bad, true).is_ok(),
                "{bad} with allow_remote_caddy_admin"
            );
        }
        for malformed in ["127.0.0.1", "localhost", "http://127.0.0.1:2019"] {
            let e = check(malformed, true).unwrap_err().to_string();
            assert!(e.contains("not HOST:PORT"), "{malformed}: {e}");
        }
        assert!(NodeSettings::default().check_caddy_admin().is_ok());
    }

    #[test]
    fn https_settings_are_checked_and_turned_into_caddy_s() {
        use berth_node::caddy::{Https, Issuer};
        let node = |https: HttpsMode, email: Option<&str>, ca: &str, port: u16| NodeSettings {
            https,
            acme_email: email.map(str::to_string),
            acme_ca: ca.to_string(),
            ingress_https: port,
            ..NodeSettings::default()
        };
        let d = NodeSettings::default();
        assert_eq!(
            (d.https, d.ingress_https, d.acme_ca.as_str()),
            (HttpsMode::Off, 443, LETS_ENCRYPT)
        );
        assert!(d.check_https().is_ok());
        assert_eq!(d.https(), Https::Off);

        // ACME without an email is allowed (an empty one is none); the CA defaults to Let's Encrypt.
        for email in [None, Some(""), Some("  ")] {
            let n = node(HttpsMode::Acme, email, LETS_ENCRYPT, 443);
            assert!(n.check_https().is_ok(), "{email:?}");
            assert_eq!(
                n.https(),
                Https::On {
                    port: 443,
                    issuer: Issuer::Acme {
                        ca: LETS_ENCRYPT.into(),
                        email: None
                    }
                }
            );
        }
        let n = node(
            HttpsMode::Acme,
            Some("ops@example.com"),
            "https://ca.internal:14000/dir",
            8443,
        );
        assert!(n.check_https().is_ok());
        assert_eq!(
            n.https(),
            Https::On {
                port: 8443,
                issuer: Issuer::Acme {
                    ca: "https://ca.internal:14000/dir".into(),
                    email: Some("ops@example.com".into())
                }
            }
        );
        assert_eq!(
            node(HttpsMode::Internal, None, LETS_ENCRYPT, 8443).https(),
            Https::On {
                port: 8443,
                issuer: Issuer::Internal
            }
        );

        let refused = |n: NodeSettings, needle: &str| {
            let e = n.check_https().unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} in {e}");
        };
        for ca in [
            "letsencrypt",
            "",
            "ftp://ca.example/dir",
            "http://ca.example/directory",
            "https://",
        ] {
            // Checked whatever the mode: a typo waits for no one to turn ACME on.
            refused(node(HttpsMode::Off, None, ca, 443), "node.acme_ca");
            refused(node(HttpsMode::Acme, None, ca, 443), "node.acme_ca");
        }
        for email in [
            "ops",
            "ops@",
            "@example.com",
            "ops@localhost",
            "o ps@example.com",
            "a@b@example.com",
            "ops@example.",
        ] {
            refused(
                node(HttpsMode::Acme, Some(email), LETS_ENCRYPT, 443),
                "node.acme_email",
            );
        }
        refused(
            node(HttpsMode::Internal, None, LETS_ENCRYPT, 8080),
            "both 8080",
        );
        refused(
            node(HttpsMode::Acme, None, LETS_ENCRYPT, 0),
            "node.ingress_https",
        );
        // Off: the HTTPS port is not used, so it may be anything.
        assert!(node(HttpsMode::Off, None, LETS_ENCRYPT, 8080)
            .check_https()
            .is_ok());
    }

    #[test]
    fn tls_files_go_in_pairs_and_the_webhook_listener_needs_its_own_address() {
        let check = |cert: Option<&str>, key: Option<&str>, webhook: Option<&str>| {
            ApiSettings {
                tls_cert: cert.map(PathBuf::from),
                tls_key: key.map(PathBuf::from),
                webhook_listen: webhook.map(String::from),
                ..ApiSettings::default()
            }
            .check()
            .map_err(|e| e.to_string())
        };
        let (c, k) = (Some("/etc/berth/api.pem"), Some("/etc/berth/api.key"));
        for (cert, key, webhook, expect) in [
            (None, None, None, Ok(())),
            (c, k, None, Ok(())),
            (c, k, Some("0.0.0.0:7701"), Ok(())),
            (None, None, Some("[::]:7701"), Ok(())),
            (
                c,
                None,
                None,
                Err("api.tls_cert is set but api.tls_key is not"),
            ),
            (
                None,
                k,
                None,
                Err("api.tls_key is set but api.tls_cert is not"),
            ),
            (
                None,
                None,
                Some("hooks.example.com"),
                Err("api.webhook_listen \"hooks.example.com\" is not an address"),
            ),
            (
                None,
                None,
                Some("127.0.0.1:7700"),
                Err("api.webhook_listen is api.listen"),
            ),
        ] {
            let got = check(cert, key, webhook);
            match expect {
                Ok(()) => assert!(got.is_ok(), "{cert:?} {key:?} {webhook:?}: {got:?}"),
                Err(start) => assert!(
                    got.as_ref().is_err_and(|e| e.starts_with(start)),
                    "{cert:?} {key:?} {webhook:?}: {got:?}"
                ),
            }
        }
        // The files are read when a server starts, not when the settings are (a client command
        // need not read the server's key); then a missing one is named.
        let s = ApiSettings {
            tls_cert: Some("/nonexistent/api.pem".into()),
            tls_key: Some("/nonexistent/api.key".into()),
            ..ApiSettings::default()
        };
        assert_eq!(s.scheme(), "https");
        let e = s.tls().unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read api.tls_cert /nonexistent/api.pem"),
            "{e}"
        );
        assert_eq!(ApiSettings::default().scheme(), "http");
        assert!(ApiSettings::default().tls().unwrap().is_none());
    }

    #[test]
    fn the_documented_settings_are_real_keys_with_their_defaults() {
        // Every key with its documented default, as one TOML document: a misspelled key is refused
        // (deny_unknown_fields), a wrong default reads back different.
        let mut top = String::new();
        let mut sections: BTreeMap<&str, String> = BTreeMap::new();
        let mut count = 0;
        for (key, default, _) in documented() {
            count += 1;
            // An unset key gets a value of its type: a string, or for the one unset boolean, true.
            let value = default.unwrap_or_else(|| {
                if key == "allow_local_repos" {
                    "true".into()
                } else {
                    "\"x\"".into()
                }
            });
            match key.split_once('.') {
                Some((section, k)) => sections
                    .entry(section)
                    .or_default()
                    .push_str(&format!("{k} = {value}\n")),
                None => top.push_str(&format!("{key} = {value}\n")),
            }
        }
        let doc = sections
            .iter()
            .fold(top, |doc, (s, body)| format!("{doc}[{s}]\n{body}"));
        let s: Settings = config::Config::builder()
            .add_source(config::File::from_str(&doc, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap_or_else(|e| panic!("{e}\n{doc}"));
        let d = Settings::default();
        assert_eq!(s.node.ingress_http, d.node.ingress_http);
        assert_eq!(s.node.resolver_listen, d.node.resolver_listen);
        assert_eq!(s.data_dir, d.data_dir);
        assert_eq!(s.deploy_timeout_s, d.deploy_timeout_s);
        assert_eq!(s.packs, d.packs);
        let help = help();
        assert_eq!(help.lines().count(), count + 1, "{help}");
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("node.ingress_http "))
            .unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some("8080"), "{help}");
    }

    #[test]
    fn defaults_file_and_env_layer() {
        let dir = std::env::temp_dir().join(format!("berth-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("berth.toml");
        std::fs::write(
            &file,
            "base_domain = \"example.test\"\n[api]\nlisten = \"127.0.0.1:9000\"\n[node]\ningress_http = 81\n",
        )
        .unwrap();
        // Environment variables are process-wide: this is the only test that sets them.
        std::env::set_var("BERTH_NODE__INGRESS_HTTP", "8181");
        std::env::set_var("BERTH_API__TOKEN", "12345");
        std::env::set_var("BERTH_NODE__HTTPS", "internal");
        std::env::set_var("BERTH_REDIS__SENTINELS", "127.0.0.1:26379,127.0.0.1:26380");
        std::env::set_var("BERTH_REDIS__MASTER_NAME", "berth");
        let s = Settings::load(Some(&file)).unwrap();
        std::env::remove_var("BERTH_REDIS__SENTINELS");
        std::env::remove_var("BERTH_REDIS__MASTER_NAME");
        assert_eq!(s.redis.sentinels, ["127.0.0.1:26379", "127.0.0.1:26380"]);
        assert_eq!(s.redis.master_name.as_deref(), Some("berth"));
        std::env::remove_var("BERTH_NODE__INGRESS_HTTP");
        std::env::remove_var("BERTH_API__TOKEN");
        std::env::remove_var("BERTH_NODE__HTTPS");
        assert_eq!(s.node.https, HttpsMode::Internal);
        std::env::set_var("BERTH_NODE__HTTPS", "off");
        let off = Settings::load(Some(&file));
        std::env::remove_var("BERTH_NODE__HTTPS");
        assert_eq!(off.unwrap().node.https, HttpsMode::Off);
        assert_eq!(s.base_domain, "example.test");
        assert_eq!(s.api.listen, "127.0.0.1:9000");
        assert_eq!(s.node.ingress_http, 8181, "env overrides the file");
        assert_eq!(s.api.token.as_deref(), Some("12345"));
        assert_eq!(s.node.caddy_admin, "127.0.0.1:2019", "default kept");
        std::fs::write(&file, "[api]\nlisen = \"x\"\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&file)).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
        assert_eq!(s.node.stats_interval_s, 5, "default kept");
        std::fs::write(&file, "[node]\nstats_interval_s = 0\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&file)).unwrap_err());
        assert!(err.contains("stats_interval_s"), "{err}");
        // A mode that is not one of the three, and an ACME CA that is not a URL, are refused.
        std::fs::write(&file, "[node]\nhttps = \"on\"\n").unwrap();
        let err = format!("{:#}", Settings::load(Some(&file)).unwrap_err());
        assert!(
            err.contains("must be off, internal") && err.contains("\"on\""),
            "{err}"
        );
        std::fs::write(
            &file,
            "[node]\nhttps = \"acme\"\nacme_ca = \"letsencrypt\"\n",
        )
        .unwrap();
        let err = format!("{:#}", Settings::load(Some(&file)).unwrap_err());
        assert!(err.contains("node.acme_ca"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
