//! The `Router` actor: the only writer of this node's Caddy and of the table its DNS responder
//! serves.
//!
//! Every node's Caddy carries every route of the desired table in Redis (`berth:routes`, one
//! route per domain, whichever node wrote it), so any node can take any app's traffic. A
//! route in Caddy names only the domain and this node's DNS responder (`resolver.rs`); its
//! upstreams — every replica, on any node — are the responder's answer, read from [`Table`].
//! Moving traffic therefore changes the table, not Caddy's config: no reload, no kept-alive
//! connection closed. Caddy's config changes only when a domain appears or goes.
//!
//! A node that switches traffic writes the route to Redis and publishes the domain on
//! `berth:routes:changed`; every node's router (this one included) applies what Redis holds for
//! it at once. Every few seconds, and whenever the subscription is (re)made, the router also
//! compares the whole table with Redis and with the domains its Caddy has, so a missed message or
//! a restarted Caddy converges (API-made config does not survive a Caddy restart: the missing
//! catch-all route tells). Writes are serialized (one sequence at a time).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use berth_bus::{Backoff, Failing, Redis, Shutdown};
use berth_protocol::{envelope, keys, Route};
use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::caddy::{CaddyAdmin, Ingress};
use crate::error::Result;
use crate::resolver::Table;
use crate::upstream_guard::UpstreamGuard;

/// Envelope kind of a route stored in `berth:routes`.
use berth_protocol::envelope::kind::ROUTE as ROUTE_KIND;
/// How often the table is compared with Redis and Caddy.
const CHECK_EVERY: Duration = Duration::from_secs(3);
/// How many times [`RouterCore::redial`] reads a route again that another writer changed under it.
const REDIAL_TRIES: usize = 8;

/// Compare-and-set of one route (`KEYS[1]`: `berth:routes`, `KEYS[2]`: `berth:routes:changed`):
/// writes `ARGV[3]` at field `ARGV[1]` and publishes the domain only if the field still holds
/// `ARGV[2]`, the bytes the writer read. 1 if written, 0 if the route changed (or went) meanwhile.
const REDIAL_ROUTE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
";

/// Compare-and-delete of one route (keys as [`REDIAL_ROUTE`]): deletes field `ARGV[1]` and
/// publishes the domain only if it still holds `ARGV[2]`. 1 if deleted, 0 if it changed.
const DELETE_ROUTE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
";

/// A domain a switch left out: the domain index (`berth:domains`, authoritative) gives it to
/// `owner`, another app, or (`None`) to no app — the app dropped it after its job was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOwned {
    pub domain: String,
    pub owner: Option<String>,
}

impl std::fmt::Display for NotOwned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.owner {
            Some(o) => write!(f, "{} belongs to app {o} now", self.domain),
            None => write!(f, "{} belongs to no app now", self.domain),
        }
    }
}

/// Splits `routes` into those whose domain the domain index gives to the route's own app and
/// those it does not. `owners[i]` is what `berth:domains` holds for `routes[i]`'s domain,
/// lowercased (the index's keys are).
pub fn owned(routes: &[Route], owners: &[Option<String>]) -> (Vec<Route>, Vec<NotOwned>) {
    let mut keep = Vec::new();
    let mut left = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        match owners.get(i).cloned().flatten() {
            Some(o) if o == r.app => keep.push(r.clone()),
            owner => left.push(NotOwned {
                domain: r.domain.clone(),
                owner,
            }),
        }
    }
    (keep, left)
}

/// State shared by the actor's handlers, its change subscription and its periodic check.
pub struct RouterCore {
    caddy: CaddyAdmin,
    redis: Redis,
    /// The ports and HTTPS mode of the berth server (the routes' shape depends on it).
    ingress: Ingress,
    /// `host:port` of this node's DNS responder, as Caddy's routes name it.
    resolver: String,
    /// What the responder serves: domain → upstreams, kept equal to `berth:routes`.
    table: Table,
    /// The routes themselves, as last applied (what `pipeline::retire` asks for).
    routes: Mutex<HashMap<String, Route>>,
    /// Serializes every sequence of Caddy writes (and the Redis writes that go with them).
    write_lock: tokio::sync::Mutex<()>,
    /// Domains whose route this Caddy has, as far as this process knows (emptied when Caddy
    /// lost its config, so every route is pushed again).
    in_caddy: Mutex<HashSet<String>>,
    /// Which of a route's upstreams the responder may serve (`upstream_guard.rs`).
    guard: UpstreamGuard,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RouterCore {
    pub fn new(
        caddy: CaddyAdmin,
        redis: Redis,
        ingress: Ingress,
        resolver: String,
        table: Table,
        guard: UpstreamGuard,
    ) -> Arc<Self> {
        Arc::new(RouterCore {
            caddy,
            redis,
            ingress,
            resolver,
            table,
            routes: Mutex::default(),
            write_lock: tokio::sync::Mutex::new(()),
            in_caddy: Mutex::default(),
            guard,
        })
    }

    /// Sets up the berth server if missing (or brings it to this node's ingress settings) and
    /// pushes every route of the desired table.
    pub async fn resync(&self) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        self.resync_locked().await
    }

    async fn resync_locked(&self) -> Result<()> {
        if self.caddy.ensure_server(&self.ingress).await? {
            tracing::info!(ingress = ?self.ingress, "set up the berth server in Caddy");
        }
        lock(&self.in_caddy).clear();
        let pushed = self.converge_locked().await?;
        tracing::info!(routes = pushed, "pushed the route table to Caddy");
        Ok(())
    }

    /// Makes the table equal to Redis's and Caddy's domains equal to the table's; returns how
    /// many routes it pushed to Caddy.
    async fn converge_locked(&self) -> Result<usize> {
        let mut conn = self.redis.clone();
        let all: HashMap<String, Vec<u8>> = conn.hgetall(keys::ROUTES).await?;
        self.guard.refresh().await;
        let mut table = HashMap::with_capacity(all.len());
        let mut routes = HashMap::with_capacity(all.len());
        for (domain, bytes) in all {
            match envelope::decode::<Route>(&bytes, ROUTE_KIND) {
                Ok(route) => {
                    table.insert(domain.clone(), self.guard.allowed(&route).await);
                    routes.insert(domain, route);
                }
                Err(e) => tracing::warn!(%domain, error = %e, "skipping undecodable route"),
            }
        }
        let wanted: HashSet<String> = table.keys().cloned().collect();
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
        *lock(&self.routes) = routes;
        let have = lock(&self.in_caddy).clone();
        let mut pushed = 0;
        for domain in wanted.difference(&have) {
            self.ensure_in_caddy(domain).await?;
            pushed += 1;
        }
        for domain in have.difference(&wanted) {
            self.caddy.delete_route(domain).await?;
            lock(&self.in_caddy).remove(domain);
        }
        Ok(pushed)
    }

    /// Re-pushes everything when Caddy lost its config; else converges.
    async fn check(&self) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        if !self.caddy.has_catchall().await? {
            tracing::warn!("Caddy lost the berth config (restarted?); setting it up again");
            return self.resync_locked().await;
        }
        self.converge_locked().await.map(|_| ())
    }

    async fn ensure_in_caddy(&self, domain: &str) -> Result<()> {
        if lock(&self.in_caddy).contains(domain) {
            return Ok(());
        }
        self.caddy
            .upsert_route(domain, &self.resolver, &self.ingress)
            .await?;
        lock(&self.in_caddy).insert(domain.to_string());
        Ok(())
    }

    async fn stored(&self, domain: &str) -> Result<Option<Route>> {
        let mut conn = self.redis.clone();
        let bytes: Option<Vec<u8>> = conn.hget(keys::ROUTES, domain).await?;
        Ok(match bytes {
            Some(b) => Some(envelope::decode::<Route>(&b, ROUTE_KIND)?),
            None => None,
        })
    }

    /// Applies what Redis holds for `domain` (another node changed it).
    pub async fn apply_stored(&self, domain: &str) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        match self.stored(domain).await? {
            Some(route) => self.apply(&route).await,
            None => self.unapply(domain).await,
        }
    }

    async fn apply(&self, route: &Route) -> Result<()> {
        // Caddy gets the domain before the responder names its upstreams.
        self.ensure_in_caddy(&route.domain).await?;
        let allowed = self.guard.allowed(route).await;
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(route.domain.clone(), allowed);
        lock(&self.routes).insert(route.domain.clone(), route.clone());
        Ok(())
    }

    /// Every route of the desired table, as this router last applied it.
    pub fn routes(&self) -> Vec<Route> {
        lock(&self.routes).values().cloned().collect()
    }

    async fn unapply(&self, domain: &str) -> Result<()> {
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(domain);
        lock(&self.routes).remove(domain);
        self.caddy.delete_route(domain).await?;
        lock(&self.in_caddy).remove(domain);
        Ok(())
    }

    /// Points each route's domain at its upstreams, in the desired table (every node's Caddy)
    /// and this node's responder — only the domains the domain index gives to the route's app:
    /// a job carries its app as it was when queued, and a domain dropped since (or taken by
    /// another app) must not get its route back. Returns the domains left out. On failure,
    /// domains already switched are put back as they were (best effort).
    pub async fn set_routes(&self, routes: &[Route]) -> Result<Vec<NotOwned>> {
        let _guard = self.write_lock.lock().await;
        let mut conn = self.redis.clone();
        let lower: Vec<String> = routes
            .iter()
            .map(|r| r.domain.to_ascii_lowercase())
            .collect();
        let owners: Vec<Option<String>> = match lower.as_slice() {
            [] => Vec::new(),
            _ => {
                redis::cmd("HMGET")
                    .arg(keys::DOMAINS)
                    .arg(&lower)
                    .query_async(&mut conn)
                    .await?
            }
        };
        let (routes, mut left) = owned(routes, &owners);
        let mut done: Vec<(String, Option<Route>)> = Vec::new();
        for route in &routes {
            let r = self.set_one(route, &mut done).await;
            match r {
                Ok(true) => {}
                Ok(false) => {
                    // Dropped (or taken) between the read above and the write.
                    let owner: Option<String> = conn
                        .hget(keys::DOMAINS, route.domain.to_ascii_lowercase())
                        .await?;
                    left.push(NotOwned {
                        domain: route.domain.clone(),
                        owner,
                    });
                }
                Err(e) => {
                    for (domain, prev) in done.into_iter().rev() {
                        let undo = match &prev {
                            Some(p) => self.write_route(p).await,
                            None => self.delete_one(&domain).await,
                        };
                        if let Err(u) = undo {
                            tracing::error!(%domain, error = %u, "could not restore route after a failed switch");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(left)
    }

    /// Writes `route` if its app owns its domain (false, nothing written, if not), then applies
    /// it here; what the domain held before goes into `done`.
    async fn set_one(
        &self,
        route: &Route,
        done: &mut Vec<(String, Option<Route>)>,
    ) -> Result<bool> {
        let prev = self.stored(&route.domain).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let bytes = envelope::encode(ROUTE_KIND, &id, route)?;
        let mut conn = self.redis.clone();
        let written: i64 = redis::Script::new(keys::WRITE_OWNED_ROUTE)
            .key(keys::ROUTES)
            .key(keys::ROUTES_CHANGED)
            .key(keys::DOMAINS)
            .arg(&route.domain)
            .arg(bytes)
            .arg(&route.app)
            .invoke_async(&mut conn)
            .await?;
        if written == 0 {
            return Ok(false);
        }
        done.push((route.domain.clone(), prev));
        self.apply(route).await?;
        Ok(true)
    }

    async fn write_route(&self, route: &Route) -> Result<()> {
        self.apply(route).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let bytes = envelope::encode(ROUTE_KIND, &id, route)?;
        let mut conn = self.redis.clone();
        redis::pipe()
            .hset(keys::ROUTES, &route.domain, bytes)
            .ignore()
            .publish(keys::ROUTES_CHANGED, &route.domain)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn delete_one(&self, domain: &str) -> Result<()> {
        let mut conn = self.redis.clone();
        redis::pipe()
            .hdel(keys::ROUTES, domain)
            .ignore()
            .publish(keys::ROUTES_CHANGED, domain)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        self.unapply(domain).await
    }

    /// Points the upstreams of `node`'s replicas — serving and on standby — at the host port each
    /// one's container is published on now (`ports`: container id → host port), in every route
    /// that dials another: a container the engine restarted (after a crash, or the engine's own
    /// restart) comes back on a new ephemeral port. Each route is changed in Redis by
    /// compare-and-set (a route another writer changed meanwhile is read and redone) and
    /// applied here at once; every other node applies it from the change message. Returns the
    /// domains changed.
    pub async fn redial(&self, node: &str, ports: &HashMap<String, u16>) -> Result<Vec<String>> {
        let _guard = self.write_lock.lock().await;
        let stale: Vec<String> = lock(&self.routes)
            .values()
            .filter(|r| redialed(r, node, ports).is_some())
            .map(|r| r.domain.clone())
            .collect();
        let mut changed = Vec::new();
        let mut conn = self.redis.clone();
        for domain in stale {
            for _ in 0..REDIAL_TRIES {
                let bytes: Option<Vec<u8>> = conn.hget(keys::ROUTES, &domain).await?;
                let Some(bytes) = bytes else { break };
                let stored = envelope::decode::<Route>(&bytes, ROUTE_KIND)?;
                let Some(route) = redialed(&stored, node, ports) else {
                    // Right in Redis already (this table had not caught up).
                    self.apply(&stored).await?;
                    break;
                };
                let id = uuid::Uuid::new_v4().to_string();
                let new = envelope::encode(ROUTE_KIND, &id, &route)?;
                let written: i64 = redis::Script::new(REDIAL_ROUTE)
                    .key(keys::ROUTES)
                    .key(keys::ROUTES_CHANGED)
                    .arg(&domain)
                    .arg(bytes)
                    .arg(new)
                    .invoke_async(&mut conn)
                    .await?;
                if written == 1 {
                    self.apply(&route).await?;
                    changed.push(domain);
                    break;
                }
            }
        }
        Ok(changed)
    }

    /// Drops the routes of `domains` from the desired table (every node's Caddy).
    /// Deletes the routes of `domains` that belong to `app`. A route of another app under one
    /// of them is left alone: the domain was freed and taken by that app before this job ran (or
    /// the job was not the coordinator's).
    pub async fn remove_routes(&self, app: &str, domains: &[String]) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        for d in domains {
            let mut conn = self.redis.clone();
            let bytes: Option<Vec<u8>> = conn.hget(keys::ROUTES, d).await?;
            let owner = bytes
                .as_deref()
                .and_then(|b| envelope::decode::<Route>(b, ROUTE_KIND).ok())
                .map(|r| r.app);
            match (bytes, owner) {
                (None, _) => self.unapply(d).await?,
                (Some(_), Some(owner)) if owner != app => {
                    tracing::info!(domain = %d, app, owner = %owner,
                        "route belongs to another app now; not removed");
                }
                (Some(read), _) => {
                    // Only what was read: a route another app wrote meanwhile stays.
                    let deleted: i64 = redis::Script::new(DELETE_ROUTE)
                        .key(keys::ROUTES)
                        .key(keys::ROUTES_CHANGED)
                        .arg(d)
                        .arg(read)
                        .invoke_async(&mut conn)
                        .await?;
                    if deleted == 1 {
                        self.unapply(d).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `route` with the dials of `node`'s upstreams (serving and standby) whose container `ports`
/// names moved to that port; `None` when none differs.
fn redialed(route: &Route, node: &str, ports: &HashMap<String, u16>) -> Option<Route> {
    let mut new = route.clone();
    let mut changed = false;
    for u in new.upstreams.iter_mut().chain(new.standby.iter_mut()) {
        if u.node != node {
            continue;
        }
        let (Some(port), Some((host, old))) = (ports.get(&u.container), u.dial.rsplit_once(':'))
        else {
            continue;
        };
        if old.parse::<u16>().ok() != Some(*port) {
            u.dial = format!("{host}:{port}");
            changed = true;
        }
    }
    changed.then_some(new)
}

/// Applies every change another node publishes on `berth:routes:changed`, on a subscription
/// of its own; each (re)subscription first converges the whole table, so nothing published
/// while it was away is lost.
async fn follow_changes(core: Arc<RouterCore>, redis: Redis, stop: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut failing = Failing::new("router: subscribing to route changes");
    while !stop.is_cancelled() {
        let sub = async {
            if redis.is_down() {
                // Wait for the link's probes rather than knock on a Redis known to be away.
                redis.ping().await?;
            }
            let mut pubsub = redis.observed(redis.client().get_async_pubsub().await)?;
            redis.observed(pubsub.subscribe(keys::ROUTES_CHANGED).await)?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = match sub.await {
            Ok(p) => p,
            Err(e) => {
                failing.failed(&e, berth_bus::is_unavailable(&e));
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                    _ = redis.back() => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        backoff.reset();
        failing.ok();
        match core.check().await {
            Err(e) if !e.is_redis_away() => {
                tracing::warn!(error = %e, "route check after subscribing failed");
            }
            // Redis left again at once: the next subscription checks again.
            _ => {}
        }
        let mut changes = pubsub.on_message();
        loop {
            tokio::select! {
                msg = changes.next() => match msg {
                    Some(msg) => {
                        let Ok(domain) = msg.get_payload::<String>() else { continue };
                        if let Err(e) = core.apply_stored(&domain).await {
                            tracing::warn!(%domain, error = %e, "could not apply a route change; the next check will");
                        }
                    }
                    None => break,
                },
                _ = stop.cancelled() => return,
            }
        }
        // Redis went away (or closed the connection): subscribe again, quietly — the outage is
        // logged by the node's connection, and a resubscription converges the whole table.
        tracing::debug!("route change subscription ended; subscribing again");
    }
}

/// The actor owning the node's Caddy.
pub struct Router {
    core: Arc<RouterCore>,
    /// Set while a periodic check runs, so checks never pile up behind a slow Caddy.
    checking: Arc<AtomicBool>,
    /// Tracks the checks and the change subscription (each a task of its own).
    shutdown: Shutdown,
    /// Opens the change subscription's own connection.
    redis: Redis,
    /// The periodic checks' run of failures (logged once, not every 3 s).
    failing: Arc<Mutex<Failing>>,
    /// Ends this incarnation's change subscription when the actor goes (stopped, or dropped
    /// after a panic): a restarted router subscribes anew, never twice.
    life: CancellationToken,
    _life_guard: DropGuard,
}

impl Router {
    pub fn new(core: Arc<RouterCore>, shutdown: Shutdown, redis: Redis) -> Self {
        let life = shutdown.child_token();
        Router {
            core,
            checking: Arc::new(AtomicBool::new(false)),
            _life_guard: life.clone().drop_guard(),
            life,
            shutdown,
            redis,
            failing: Arc::new(Mutex::new(Failing::new("router: checking the routes"))),
        }
    }

    fn spawn_check(&self) {
        if self.checking.swap(true, Ordering::SeqCst) {
            return;
        }
        let core = self.core.clone();
        let (flag, failing) = (self.checking.clone(), self.failing.clone());
        self.shutdown.spawn(async move {
            // Until a check works again, Caddy and the responder keep the routes they have: the
            // apps stay served while Redis is away.
            match core.check().await {
                Ok(()) => lock(&failing).ok(),
                Err(e) => lock(&failing).failed(&e, e.is_redis_away()),
            }
            flag.store(false, Ordering::SeqCst);
        });
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (core, redis) = (self.core.clone(), self.redis.clone());
        self.shutdown
            .spawn(follow_changes(core, redis, self.life.clone()));
        ctx.run_interval(CHECK_EVERY, |act, _| act.spawn_check());
    }
}

berth_bus::injectable!(Router);

/// Switch each route's domain to its upstreams, where the domain index gives the domain to the
/// route's app; answers the domains left out.
#[derive(Message)]
#[rtype(result = "Result<Vec<NotOwned>>")]
pub struct SetRoutes(pub Vec<Route>);

impl Handler<SetRoutes> for Router {
    type Result = ResponseFuture<Result<Vec<NotOwned>>>;

    fn handle(&mut self, msg: SetRoutes, _: &mut Self::Context) -> Self::Result {
        let core = self.core.clone();
        Box::pin(async move { core.set_routes(&msg.0).await })
    }
}

/// Remove the routes of these domains.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct RemoveRoutes {
    pub app: String,
    pub domains: Vec<String>,
}

impl Handler<RemoveRoutes> for Router {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: RemoveRoutes, _: &mut Self::Context) -> Self::Result {
        let core = self.core.clone();
        Box::pin(async move { core.remove_routes(&msg.app, &msg.domains).await })
    }
}

/// Every route of the desired table, as this node's router last applied it.
#[derive(Message)]
#[rtype(result = "Vec<Route>")]
pub struct Routes;

impl Handler<Routes> for Router {
    type Result = MessageResult<Routes>;

    fn handle(&mut self, _: Routes, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.core.routes())
    }
}

/// Stop the actor (no more periodic checks).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRouter;

impl Handler<StopRouter> for Router {
    type Result = ();

    fn handle(&mut self, _: StopRouter, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::Upstream;

    fn up(node: &str, container: &str, dial: &str) -> Upstream {
        Upstream {
            dial: dial.to_string(),
            node: node.to_string(),
            container: container.to_string(),
            deployment: "d".to_string(),
        }
    }

    #[test]
    fn a_switch_keeps_only_the_domains_the_index_gives_to_its_app() {
        let route = |domain: &str| Route {
            domain: domain.into(),
            app: "shop".into(),
            upstreams: vec![up("n1", "c1", "127.0.0.1:32768")],
            updated_at: 1,
            drain_s: None,
            standby: Vec::new(),
            standby_until: 0,
        };
        let routes = [
            route("shop.localhost"),
            route("old.localhost"),
            route("taken.localhost"),
            route("Mixed.localhost"),
        ];
        let owners = [
            Some("shop".to_string()),
            None,
            Some("thief".to_string()),
            Some("shop".to_string()),
        ];
        let (keep, left) = owned(&routes, &owners);
        let kept: Vec<&str> = keep.iter().map(|r| r.domain.as_str()).collect();
        assert_eq!(kept, ["shop.localhost", "Mixed.localhost"]);
        assert_eq!(
            left,
            [
                NotOwned {
                    domain: "old.localhost".into(),
                    owner: None
                },
                NotOwned {
                    domain: "taken.localhost".into(),
                    owner: Some("thief".into())
                },
            ]
        );
        assert_eq!(left[0].to_string(), "old.localhost belongs to no app now");
        assert_eq!(
            left[1].to_string(),
            "taken.localhost belongs to app thief now"
        );
        // An index that answers nothing for a domain (fewer answers) gives it to no app.
        let (keep, left) = owned(&routes[..2], &owners[..1]);
        assert_eq!(keep.len(), 1);
        assert_eq!(left[0].owner, None);
        assert_eq!(owned(&[], &[]), (Vec::new(), Vec::new()));
    }

    #[test]
    fn redialed_moves_only_this_node_s_replicas_that_moved() {
        let route = Route {
            domain: "a.localhost".into(),
            app: "a".into(),
            upstreams: vec![
                up("n1", "c1", "127.0.0.1:32768"),
                up("n2", "c2", "127.0.0.2:32768"),
                up("n1", "c3", "127.0.0.1:32770"),
            ],
            updated_at: 1,
            drain_s: None,
            standby: vec![up("n1", "c4", "127.0.0.1:32771")],
            standby_until: 9,
        };
        // c2 is another node's (same container id or not, it is left alone); c3 did not move;
        // c5 is in no route.
        let ports = HashMap::from([
            ("c1".to_string(), 32780),
            ("c2".to_string(), 40000),
            ("c3".to_string(), 32770),
            ("c4".to_string(), 32781),
            ("c5".to_string(), 1),
        ]);
        let new = redialed(&route, "n1", &ports).expect("c1 and c4 moved");
        let dials: Vec<&str> = new.upstreams.iter().map(|u| u.dial.as_str()).collect();
        assert_eq!(
            dials,
            ["127.0.0.1:32780", "127.0.0.2:32768", "127.0.0.1:32770"]
        );
        assert_eq!(new.standby[0].dial, "127.0.0.1:32781");
        assert_eq!((new.updated_at, new.standby_until), (1, 9));
        // Nothing moved: nothing to write.
        assert!(redialed(&new, "n1", &ports).is_none());
        assert!(redialed(&route, "n3", &ports).is_none());
    }
}
