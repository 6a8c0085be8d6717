//! The `Router` actor: the only writer of this node's Caddy.
//!
//! It keeps Caddy's `berth` server in line with the desired route table in Redis
//! (`berth:routes`, one route per domain). Writes are serialized (one Caddy call sequence at a
//! time), so two deployments can never interleave their route changes. Every few seconds it
//! checks for the catch-all route; when it is gone (Caddy restarted: API-made config does not
//! survive that) it sets the server up again and re-pushes every route from Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use berth_bus::Shutdown;
use berth_protocol::{envelope, keys, Route};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use crate::caddy::CaddyAdmin;
use crate::error::Result;

/// Envelope kind of a route stored in `berth:routes`.
use berth_protocol::envelope::kind::ROUTE as ROUTE_KIND;
/// How often Caddy is checked for a lost config.
const CHECK_EVERY: Duration = Duration::from_secs(3);

/// State shared by the actor's handlers and its periodic check.
pub struct RouterCore {
    caddy: CaddyAdmin,
    redis: ConnectionManager,
    ingress_http: u16,
    /// Serializes every sequence of Caddy writes (and the Redis writes that go with them).
    write_lock: tokio::sync::Mutex<()>,
}

impl RouterCore {
    pub fn new(caddy: CaddyAdmin, redis: ConnectionManager, ingress_http: u16) -> Arc<Self> {
        Arc::new(RouterCore {
            caddy,
            redis,
            ingress_http,
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Sets up the berth server if missing and pushes every route of the desired table.
    pub async fn resync(&self) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        self.resync_locked().await
    }

    async fn resync_locked(&self) -> Result<()> {
        if self.caddy.ensure_server(self.ingress_http).await? {
            tracing::info!("created the berth server in Caddy");
        }
        let mut conn = self.redis.clone();
        let all: HashMap<String, Vec<u8>> = conn.hgetall(keys::ROUTES).await?;
        let mut pushed = 0;
        for (domain, bytes) in all {
            match envelope::decode::<Route>(&bytes, ROUTE_KIND) {
                Ok(route) => {
                    self.caddy.upsert_route(&route).await?;
                    pushed += 1;
                }
                Err(e) => tracing::warn!(%domain, error = %e, "skipping undecodable route"),
            }
        }
        tracing::info!(routes = pushed, "pushed the route table to Caddy");
        Ok(())
    }

    /// Re-pushes everything when Caddy lost its config.
    async fn check(&self) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        if !self.caddy.has_catchall().await? {
            tracing::warn!("Caddy lost the berth config (restarted?); setting it up again");
            self.resync_locked().await?;
        }
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

    /// Points each route's domain at its upstreams, in Caddy and in the desired table. On
    /// failure, domains already switched are put back as they were (best effort).
    pub async fn set_routes(&self, routes: &[Route]) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        let mut done: Vec<(String, Option<Route>)> = Vec::new();
        for route in routes {
            let r = self.set_one(route, &mut done).await;
            if let Err(e) = r {
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
        Ok(())
    }

    async fn set_one(&self, route: &Route, done: &mut Vec<(String, Option<Route>)>) -> Result<()> {
        let prev = self.stored(&route.domain).await?;
        done.push((route.domain.clone(), prev));
        self.write_route(route).await
    }

    async fn write_route(&self, route: &Route) -> Result<()> {
        self.caddy.upsert_route(route).await?;
        let id = uuid::Uuid::new_v4().to_string();
        let bytes = envelope::encode(ROUTE_KIND, &id, route)?;
        let mut conn = self.redis.clone();
        conn.hset::<_, _, _, ()>(keys::ROUTES, &route.domain, bytes)
            .await?;
        Ok(())
    }

    async fn delete_one(&self, domain: &str) -> Result<()> {
        self.caddy.delete_route(domain).await?;
        let mut conn = self.redis.clone();
        conn.hdel::<_, _, ()>(keys::ROUTES, domain).await?;
        Ok(())
    }

    /// Drops the routes of `domains` from Caddy and from the desired table.
    pub async fn remove_routes(&self, domains: &[String]) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        for d in domains {
            self.delete_one(d).await?;
        }
        Ok(())
    }
}

/// The actor owning the node's Caddy.
pub struct Router {
    core: Arc<RouterCore>,
    /// Set while a periodic check runs, so checks never pile up behind a slow Caddy.
    checking: Arc<AtomicBool>,
    /// Tracks the checks (each runs in a task of its own).
    shutdown: Shutdown,
}

impl Router {
    pub fn new(core: Arc<RouterCore>, shutdown: Shutdown) -> Self {
        Router {
            core,
            checking: Arc::new(AtomicBool::new(false)),
            shutdown,
        }
    }

    fn spawn_check(&self) {
        if self.checking.swap(true, Ordering::SeqCst) {
            return;
        }
        let core = self.core.clone();
        let flag = self.checking.clone();
        self.shutdown.spawn(async move {
            if let Err(e) = core.check().await {
                tracing::warn!(error = %e, "Caddy check failed");
            }
            flag.store(false, Ordering::SeqCst);
        });
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.spawn_check();
        ctx.run_interval(CHECK_EVERY, |act, _| act.spawn_check());
    }
}

/// Switch each route's domain to its upstreams.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SetRoutes(pub Vec<Route>);

impl Handler<SetRoutes> for Router {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: SetRoutes, _: &mut Self::Context) -> Self::Result {
        let core = self.core.clone();
        Box::pin(async move { core.set_routes(&msg.0).await })
    }
}

/// Remove the routes of these domains.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct RemoveRoutes(pub Vec<String>);

impl Handler<RemoveRoutes> for Router {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, msg: RemoveRoutes, _: &mut Self::Context) -> Self::Result {
        let core = self.core.clone();
        Box::pin(async move { core.remove_routes(&msg.0).await })
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
