//! Names of every Redis stream, key and consumer group Berth uses, in one place.
//!
//! The coordinator owns app, deployment, cordon and failover records; a node owns its claims,
//! its heartbeat and container bookkeeping. The route table is shared desired state: the node
//! that switches an app writes its route, the coordinator takes a down node's upstreams out, and
//! every node's router applies it to its own Caddy. Streams (and the route-change channel) are
//! the only channels between the two sides.

/// Prefix of every key, so a Redis can be shared with other software.
pub const PREFIX: &str = "berth";

/// Set of app names.
pub const APPS: &str = "berth:apps";
/// Counter bumped after every change of an app record (with it, or right after it): a
/// coordinator's cached app list is checked against it on every read, so the list is always as
/// fresh as Redis.
pub const APPS_VERSION: &str = "berth:apps:version";
/// Sorted set app name → the [`APPS_VERSION`] of its latest change (written by the same script
/// that bumps the counter): a cached list older than the counter re-reads only the apps changed
/// since. Capped at [`APPS_CHANGES_MAX`] names; the oldest go first.
pub const APPS_CHANGES: &str = "berth:apps:changes";
/// The highest version whose change may have been trimmed from [`APPS_CHANGES`] (or written
/// without an entry there): a list cached under a version below it is read again in full.
pub const APPS_CHANGES_FLOOR: &str = "berth:apps:changes:floor";
/// How many names [`APPS_CHANGES`] keeps.
pub const APPS_CHANGES_MAX: usize = 50_000;
/// Hash app name → its newest deployment in brief, `<created_at> <id> <status> <kind>` (written
/// in the MULTI of every deployment record write, only by a record at least as new as the one it
/// holds): what `GET /apps` derives each app's status from in one read.
pub const APPS_LATEST: &str = "berth:apps:latest";
/// Hash domain (lowercased) → the app that has it: domains are unique across apps ignoring
/// case, checked and written in the same script as the app record (`Store::put_app_domains`),
/// so a create or a PATCH reads one field per domain instead of every app. Built from the app
/// records once per Redis (migration `domains-index-v1`) for data written before it existed.
pub const DOMAINS: &str = "berth:domains";

/// The Lua script every writer of a route outside an app's own PATCH runs (a node's switch, the
/// coordinator's route edits), so a domain is routed only for the app the domain index gives it
/// to: `KEYS[1]` [`ROUTES`], `KEYS[2]` [`ROUTES_CHANGED`], `KEYS[3]` [`DOMAINS`]; writes route
/// `ARGV[2]` at domain `ARGV[1]` and publishes the domain if the index gives the domain
/// (lowercased) to app `ARGV[3]`. 1 if written, 0 (nothing written) if the domain is another
/// app's or no app's — checked in the same step as the write, so a PATCH that drops the domain
/// either comes after (and removes the route) or is seen here.
pub const WRITE_OWNED_ROUTE: &str = r"
if redis.call('HGET', KEYS[3], string.lower(ARGV[1])) ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
";
/// Stream of node → coordinator events (status changes). Consumer group [`EVENTS_GROUP`].
pub const EVENTS: &str = "berth:events";
pub const EVENTS_GROUP: &str = "coordinator";
/// Set of deployment ids that are not terminal yet (what the reconciler watches).
pub const ACTIVE_DEPLOYMENTS: &str = "berth:deployments:active";
/// Set of node names that ever registered.
pub const NODES: &str = "berth:nodes";
/// Set of cordoned node names (written by the coordinator on an operator's request): the
/// scheduler places nothing new on them.
pub const NODES_CORDONED: &str = "berth:nodes:cordoned";
/// Hash domain → route (msgpack [`crate::Route`]): the desired route table every node's Caddy carries.
pub const ROUTES: &str = "berth:routes";
/// Pub/sub channel: a node publishes a domain here after it changed (or removed) its route in
/// [`ROUTES`]; every node's router applies what [`ROUTES`] holds for it.
pub const ROUTES_CHANGED: &str = "berth:routes:changed";
/// Consumer group name for job streams.
pub const JOBS_GROUP: &str = "node";

/// How long the once-only markers live: a deployment's fate and claim, a webhook delivery id.
/// Far beyond any deployment's deadline, and GitHub's redelivery page keeps deliveries for days.
pub const MARKER_TTL_S: u64 = 7 * 24 * 3600;

/// Approximate cap of the job streams (the coordinator's deployment and exec jobs) and of the
/// dead-letter streams (XADD MAXLEN ~). A node also trims its job stream of what it
/// acknowledged, so a live node's stream holds its unfinished jobs (and up to a stream node's
/// 100 entries more), not the last 10,000: with 1,000 nodes that is the difference between
/// a few MB and several GB of Redis. A node reads its jobs as they come (builds wait in the
/// node, not the stream), so the cap is reached only by a node that stopped reading.
pub const STREAM_MAXLEN: usize = 10_000;
/// Approximate cap of [`EVENTS`] (XADD MAXLEN ~): only a safety net for Redis's memory while no
/// coordinator reads (about 300 bytes an event). The coordinator trims the events it has
/// acknowledged; a cap near what it reads would drop events it has not read yet — a burst
/// that put it 10,000 events behind (the cap once) lost the outcomes of hundreds of
/// deployments, left `queued` with their jobs done.
pub const EVENTS_MAXLEN: usize = 1_000_000;
/// Approximate cap (lines) of one deployment's log stream.
pub const LOG_MAXLEN: usize = 5_000;
/// Approximate cap (lines) of one app's runtime log stream, all replicas together.
pub const APP_LOG_MAXLEN: usize = 10_000;
/// How many of an app's newest deployments keep their log; older logs are deleted when a
/// deployment is created (the records stay).
pub const DEPLOYMENT_LOGS_KEPT: usize = 20;

pub fn app(name: &str) -> String {
    format!("berth:app:{name}")
}
/// An app's git credential, sealed ([`crate::secret::Sealed`], msgpack envelope kind `credential`).
pub fn app_credential(name: &str) -> String {
    format!("berth:app:{name}:credential")
}
/// An app's own GitHub webhook secret, sealed ([`crate::secret::Sealed`], envelope kind
/// `credential`): set, deliveries for the app go to its own endpoint and are checked with it.
pub fn app_webhook_secret(name: &str) -> String {
    format!("berth:app:{name}:webhook_secret")
}
/// An app's secret variable values, one sealed map ([`crate::secret::seal_env`], envelope kind
/// `credential`); the app record names them (`env.secret`) without their values.
pub fn app_env_secrets(name: &str) -> String {
    format!("berth:app:{name}:env_secrets")
}
/// Sorted set of an app's deployment ids, scored by creation time.
pub fn app_deployments(name: &str) -> String {
    format!("berth:app:{name}:deployments")
}
/// Sorted set of an app's released images, each scored by when it last started serving (epoch
/// ms): a rollback re-activates an image instead of adding one. The newest `keep_releases` are
/// the app's releases; the coordinator trims the rest.
pub fn app_releases(name: &str) -> String {
    format!("berth:app:{name}:releases")
}
/// Sorted set of the deployments that served `image` of app `name`, scored by when each
/// succeeded.
pub fn release_deployments(name: &str, image: &str) -> String {
    format!("berth:app:{name}:release:{image}")
}
/// Set of the one-time data migrations a coordinator has run on this Redis.
pub const MIGRATIONS: &str = "berth:migrations";
pub fn deployment(id: &str) -> String {
    format!("berth:deployment:{id}")
}
/// Claimed (SET NX) by the coordinator when it queues the failover of `deployment`'s replica on
/// a down `node`: one failover per lost replica, whatever the number of passes or coordinators.
pub fn failover_claim(deployment: &str, node: &str) -> String {
    format!("berth:failover:{deployment}:{node}")
}
/// Where a deployment record that could not be read is kept once a `failed` record that says
/// so has replaced it (coordinator's `Quarantine`).
pub fn deployment_unreadable(id: &str) -> String {
    format!("berth:deployment:{id}:unreadable")
}
/// Stream of one deployment's build and deploy log lines.
pub fn deployment_log(id: &str) -> String {
    format!("berth:logs:{id}")
}
/// Stream of one app's runtime log lines (container stdout/stderr), from every node and replica;
/// each entry carries its `node`, `container` and `deployment`.
pub fn app_log(app: &str) -> String {
    format!("berth:applogs:{app}")
}
/// Stream of one app's resource samples (msgpack [`crate::metrics::ContainerSample`]), from
/// every node and replica; trimmed by time (`MINID ~`, [`crate::metrics::RETENTION_MS`]).
pub fn app_metrics(app: &str) -> String {
    format!("berth:metrics:{app}")
}
/// Hash status → how many deployments ended so (`succeeded`, `failed`, `cancelled`); written by
/// the coordinator's Ledger with the record that became terminal.
pub const STATS_DEPLOYMENTS: &str = "berth:stats:deployments";
/// Hash of the build-duration histogram: `le_<bound>` (cumulative counts), `sum` (seconds),
/// `count`; written by the Ledger when a deployment leaves `building`.
pub const STATS_BUILD_SECONDS: &str = "berth:stats:build_seconds";
/// Hash container id → Docker's nanosecond stamp of the last line a node shipped from it: where
/// the node's log shipper resumes after a restart.
pub fn app_log_cursors(node: &str) -> String {
    format!("berth:applogs:cursor:{node}")
}
/// The job stream of one node.
pub fn jobs(node: &str) -> String {
    format!("berth:jobs:{node}")
}
/// A node's latest heartbeat record (msgpack [`crate::NodeInfo`]).
pub fn node(name: &str) -> String {
    format!("berth:node:{name}")
}
/// A GitHub delivery id already handled (SET NX with a TTL): a redelivery never deploys twice.
pub fn webhook_delivery(id: &str) -> String {
    format!("berth:webhook:github:{id}")
}
/// API tokens made with `POST /api/v1/tokens`: a hash from the hex SHA-256 of each token's
/// value to its record (msgpack envelope kind `token`); the value itself is never stored.
pub const TOKENS: &str = "berth:tokens";
/// When each token last authenticated a request: token id → epoch ms.
pub const TOKENS_LAST_USED: &str = "berth:tokens:last_used";
/// The audit log: a stream of who did what through the API, capped at [`AUDIT_MAXLEN`].
pub const AUDIT: &str = "berth:audit";
pub const AUDIT_MAXLEN: usize = 10_000;
/// Failed API authentications of one client address in its current window (like
/// [`webhook_failures`]): past the allowance the API answers 429.
pub fn auth_failures(addr: &str) -> String {
    format!("berth:auth:failures:{addr}")
}
/// Failed webhook signatures of one client address in its current window (a counter set with
/// the window's TTL at the first failure): past the allowance the endpoint answers 429.
pub fn webhook_failures(addr: &str) -> String {
    format!("berth:webhook:github:failures:{addr}")
}
/// A push already handled, by what it asks for (the digest of its repository, ref and `after`
/// commit; SET NX with a TTL): the same body sent again under a new delivery id — a replay of a
/// captured delivery — never queues again.
pub fn webhook_push(digest: &str) -> String {
    format!("berth:webhook:github:push:{digest}")
}
/// The fate of a deployment, decided once (SET NX): `switch` when its node is about to move traffic
/// to it, `cancel` when the coordinator cancels it. Whoever sets it first wins, so a cancelled
/// deployment never takes traffic and a switching one is never reported cancelled.
/// An uploaded build source of an app (a list of chunks of a tar archive, in order), named by
/// the archive's hex SHA-256; it expires [`UPLOAD_TTL_S`] after its last upload.
pub fn upload(app: &str, sha256: &str) -> String {
    format!("berth:upload:{app}:{sha256}")
}
/// How long an upload stays: longer than any deployment that builds it may run, retries on
/// other nodes included.
pub const UPLOAD_TTL_S: u64 = 24 * 3600;
/// Bytes in each chunk of an upload's list.
pub const UPLOAD_CHUNK: usize = 1024 * 1024;

pub fn deployment_fate(id: &str) -> String {
    format!("berth:fate:{id}")
}
pub const FATE_SWITCH: &str = "switch";
pub const FATE_CANCEL: &str = "cancel";
/// The current attempt of a deployment moved off a dead node (absent: 0); a node switches only
/// for the attempt it runs.
pub fn deployment_attempt(id: &str) -> String {
    format!("{PREFIX}:attempt:{id}")
}

/// Stream of one exec's entries (plain fields, [`crate::exec::ExecEntry`]): queued,
/// started, output chunks, end. Written with a TTL ([`crate::exec::stream_ttl_s`]) on every
/// write, so it expires [`crate::exec::KEEP_S`] after the command's deadline at the latest.
pub fn exec_output(id: &str) -> String {
    format!("berth:exec:{id}")
}
/// Who runs an exec, decided once (SET NX, with the stream's TTL): `node:<name>` by the node that
/// takes the job, or [`EXEC_EXPIRED`] by the API after [`crate::exec::PICKUP_S`] without a node —
/// a node that comes back later never runs a command its caller gave up on.
pub fn exec_claim(id: &str) -> String {
    format!("berth:exec:{id}:claim")
}
pub const EXEC_EXPIRED: &str = "expired";

/// Set once (SET NX) by the node that takes a deployment job: redelivery never runs it twice.
pub fn job_claim(deployment: &str) -> String {
    format!("berth:claim:{deployment}")
}
/// Stream of the entries of `stream` that could not be handled (after too many deliveries, or
/// never decodable): the original envelope (`m`) with `source_id`, `reason`, `deliveries`,
/// `consumer`, `at`, for a person to read or replay.
pub fn dead_letters(stream: &str) -> String {
    format!("berth:dead:{stream}")
}
/// Hash stream → how many of its entries went to the dead-letter stream.
pub const STATS_DEAD_LETTERS: &str = "berth:stats:dead_letters";
/// Hash process (`coordinator`, `node:<name>`) → how many of its covered writes Redis's
/// replicas did not confirm in time (`redis.min_replicas_acked`; berth-bus's `durable.rs`).
pub const STATS_UNREPLICATED: &str = "berth:stats:unreplicated";
/// Pub/sub channel nobody reads: the write a confirmation of covered writes makes before its
/// `WAIT`, so the `WAIT` covers what the primary had acknowledged until then (berth-bus's
/// `durable.rs`).
pub const REPLICATED: &str = "berth:replicated";
/// The leader lease of the coordinators: `<holder> <epoch>`, with a time to live; see the
/// coordinator's `lease.rs`.
pub const LEADER: &str = "berth:leader";
/// The last epoch a coordinator took the lease under (INCR): the fencing token's source.
pub const LEADER_EPOCH: &str = "berth:leader:epoch";
/// Hash `<process>/<actor>` → how many times a supervisor restarted that actor (`coordinator/ledger`,
/// `node:<name>/router`, …); written by the supervisor in the restarting process.
pub const STATS_RESTARTS: &str = "berth:stats:restarts";
/// List of actor names a process started with the `test_hooks` setting pops and makes panic:
/// `process` is `coordinator` or `node:<name>`. Test-only.
pub fn test_panic(process: &str) -> String {
    format!("berth:test:panic:{process}")
}
