//! Supervision: every long-lived actor of a daemon runs under a [`Tree`].
//!
//! actix's own `Supervisor` restarts an actor that *stops*, not one whose handler panicked: a
//! panic drops the actor's context and closes its mailbox for good, and whoever holds its `Addr`
//! sends into the void from then on. So the tree watches instead: every [`CHECK_EVERY`] it asks
//! each child whether its mailbox is still open (`Addr::connected`), and starts a new actor from
//! the child's factory when it is not. The factory builds the actor from what the daemon was
//! given at start (connections, shared state that outlives any one actor); the new actor's
//! `started` reloads the rest from Redis — the daemons keep no state Redis does not hold.
//! Everything else holds a [`Live`] handle instead of an `Addr`: it always sends to the current
//! actor.
//!
//! Restarts are logged and counted in Redis (`berth:stats:restarts`, field
//! `<process>/<actor>`), which the coordinator's `/metrics` shows. More than
//! [`Intensity::max`] restarts of one actor within [`Intensity::within`] escalate to the parent:
//! at the root (the tree itself) the process shuts down and exits non-zero
//! ([`Shutdown::escalate`]) so the service manager restarts it. An actor that supervises
//! children of its own (the coordinator's `Reconciler`, one actor per deployment) escalates by
//! stopping, which its tree counts as its own restart.
//!
//! A test-only hook (the `test_hooks` setting): the tree pops actor names from
//! `berth:test:panic:<process>` and sends that actor [`InjectPanic`]; every supervised actor
//! handles it by panicking ([`injectable!`]).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::dev::{Request, ToEnvelope};
use actix::prelude::*;

use crate::conn::Redis;
use crate::{Backoff, Shutdown};

/// How often the tree looks at its children.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How often a tree with test hooks looks for a panic to inject.
const HOOK_EVERY: Duration = Duration::from_millis(200);

/// The address of a supervised actor, whichever incarnation is running: cheap to clone, and
/// every clone follows the restarts.
pub struct Live<A: Actor>(Arc<RwLock<Addr<A>>>);

impl<A: Actor> Clone for Live<A> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<A: Actor> Live<A> {
    /// A handle on `addr`; a [`Tree`] re-points it when it restarts the actor.
    pub fn new(addr: Addr<A>) -> Self {
        Live(Arc::new(RwLock::new(addr)))
    }

    /// The running actor's address.
    pub fn addr(&self) -> Addr<A> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the running actor's mailbox is open.
    pub fn connected(&self) -> bool {
        self.addr().connected()
    }

    fn set(&self, addr: Addr<A>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// `Addr::send` to the running actor. An actor that dies while the message waits answers
    /// `MailboxError::Closed`; the caller retries or reports it like any unavailable actor.
    pub fn send<M>(&self, msg: M) -> Request<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.addr().send(msg)
    }

    /// `Addr::do_send` to the running actor.
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.addr().do_send(msg)
    }
}

/// How many restarts of one actor a supervisor takes before it gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// More restarts than this within `within` escalate.
    pub max: usize,
    pub within: Duration,
}

impl Default for Intensity {
    /// 10 restarts in 60 s: a bug that kills an actor on every message of some kind shows up as
    /// a restarting process within a minute, while a rare panic costs one restart.
    fn default() -> Self {
        Intensity {
            max: 10,
            within: Duration::from_secs(60),
        }
    }
}

/// The recent restarts of one actor, against its [`Intensity`]. Pure: the caller gives the time.
#[derive(Debug, Clone)]
pub struct Restarts {
    limit: Intensity,
    times: VecDeque<Instant>,
}

impl Restarts {
    pub fn new(limit: Intensity) -> Self {
        Restarts {
            limit,
            times: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; true when that makes more than `max` within `within`: the
    /// supervisor must escalate instead of restarting.
    pub fn record(&mut self, now: Instant) -> bool {
        self.times.push_back(now);
        while let Some(&t) = self.times.front() {
            if now.saturating_duration_since(t) > self.limit.within {
                self.times.pop_front();
            } else {
                break;
            }
        }
        self.times.len() > self.limit.max
    }

    pub fn limit(&self) -> Intensity {
        self.limit
    }
}

/// Makes the actor that receives it panic: the test hook. Handled by every supervised actor
/// (see [`injectable!`]).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Implements `Handler<InjectPanic>` (a panic naming the actor) for each actor type given.
#[macro_export]
macro_rules! injectable {
    ($($actor:ty),+ $(,)?) => {$(
        impl ::actix::Handler<$crate::supervise::InjectPanic> for $actor {
            type Result = ();

            fn handle(
                &mut self,
                _: $crate::supervise::InjectPanic,
                _: &mut <Self as ::actix::Actor>::Context,
            ) {
                panic!(concat!("panic injected by the test hook into ", stringify!($actor)));
            }
        }
    )+};
}

/// Adds one to `<process>/<actor>` in `berth:stats:restarts`, retrying (in a tracked task) while
/// Redis is away; given up at shutdown.
pub fn count_restart(conn: &Redis, shutdown: &Shutdown, process: &str, actor: &str) {
    let mut conn = conn.clone();
    let field = format!("{process}/{actor}");
    let stop = shutdown.clone();
    shutdown.spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let done: redis::RedisResult<i64> = redis::cmd("HINCRBY")
                .arg(berth_protocol::keys::STATS_RESTARTS)
                .arg(&field)
                .arg(1)
                .query_async(&mut conn)
                .await;
            match done {
                Ok(_) => return,
                Err(e) if stop.is_cancelled() => {
                    tracing::warn!(%field, error = %e, "restart not counted: shutting down");
                    return;
                }
                Err(_) => {
                    tokio::select! {
                        _ = backoff.wait() => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        }
    });
}

/// One supervised actor, whatever its type.
trait Child {
    fn name(&self) -> &'static str;
    fn alive(&self) -> bool;
    fn restart(&mut self);
    fn inject(&self);
}

struct ChildOf<A: Actor<Context = Context<A>>> {
    name: &'static str,
    live: Live<A>,
    make: Box<dyn Fn() -> A>,
}

impl<A> Child for ChildOf<A>
where
    A: Actor<Context = Context<A>> + Handler<InjectPanic>,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn alive(&self) -> bool {
        self.live.connected()
    }

    fn restart(&mut self) {
        self.live.set((self.make)().start());
    }

    fn inject(&self) {
        self.live.do_send(InjectPanic);
    }
}

/// What the panic hook does for a name that is not a child's.
type Hook = Box<dyn Fn()>;

/// The root supervisor of one daemon role (`coordinator`, or `node:<name>`): an actor of its
/// own, built with [`Tree::supervise`] for each child in start order, then started.
pub struct Tree {
    process: String,
    conn: Redis,
    shutdown: Shutdown,
    test_hooks: bool,
    children: Vec<(Box<dyn Child>, Restarts)>,
    /// Extra targets of the panic hook: names a child forwards (e.g. `deployment` → the
    /// reconciler panics one of its deployment actors).
    hooks: Vec<(&'static str, Hook)>,
    hook_busy: bool,
}

impl Tree {
    /// `process` names the daemon role in logs, metrics and the test hook's key.
    pub fn new(
        process: impl Into<String>,
        conn: Redis,
        shutdown: &Shutdown,
        test_hooks: bool,
    ) -> Self {
        Tree {
            process: process.into(),
            conn,
            shutdown: shutdown.clone(),
            test_hooks,
            children: Vec::new(),
            hooks: Vec::new(),
            hook_busy: false,
        }
    }

    /// Starts an actor from `make` now and supervises it with the default [`Intensity`]:
    /// whenever it dies, `make` builds the next one. Must be called inside the actix System.
    pub fn supervise<A, F>(&mut self, name: &'static str, make: F) -> Live<A>
    where
        A: Actor<Context = Context<A>> + Handler<InjectPanic>,
        F: Fn() -> A + 'static,
    {
        let live = Live::new(make().start());
        self.children.push((
            Box::new(ChildOf {
                name,
                live: live.clone(),
                make: Box::new(make),
            }),
            Restarts::new(Intensity::default()),
        ));
        live
    }

    /// Another name the panic hook answers to, and what it does for it.
    pub fn hook(&mut self, name: &'static str, inject: impl Fn() + 'static) {
        self.hooks.push((name, Box::new(inject)));
    }

    /// The names of the supervised actors, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.children.iter().map(|(c, _)| c.name()).collect()
    }

    fn check(&mut self) {
        if self.shutdown.is_cancelled() {
            return;
        }
        for (child, restarts) in &mut self.children {
            if child.alive() {
                continue;
            }
            let name = child.name();
            if restarts.record(Instant::now()) {
                let limit = restarts.limit();
                let why = format!(
                    "{} actor {name} died more than {} times within {} s; giving up so the \
                     service manager restarts the process",
                    self.process,
                    limit.max,
                    limit.within.as_secs()
                );
                tracing::error!(process = %self.process, actor = name, "{why}");
                self.shutdown.escalate(why);
                return;
            }
            tracing::error!(
                process = %self.process,
                actor = name,
                "actor died (a panic, or it stopped); starting a new one"
            );
            // A factory that panics cannot be restarted at all: that is for the parent.
            if std::panic::catch_unwind(AssertUnwindSafe(|| child.restart())).is_err() {
                let why = format!("{} actor {name} cannot be started again", self.process);
                tracing::error!(process = %self.process, actor = name, "{why}");
                self.shutdown.escalate(why);
                return;
            }
            count_restart(&self.conn, &self.shutdown, &self.process, name);
        }
    }

    fn inject(&self, name: &str) {
        if let Some((child, _)) = self.children.iter().find(|(c, _)| c.name() == name) {
            tracing::warn!(process = %self.process, actor = name, "test hook: injecting a panic");
            child.inject();
        } else if let Some((_, f)) = self.hooks.iter().find(|(n, _)| *n == name) {
            tracing::warn!(process = %self.process, actor = name, "test hook: injecting a panic");
            f();
        } else {
            tracing::warn!(process = %self.process, actor = name, "test hook: no such actor");
        }
    }

    fn poll_hook(&mut self, ctx: &mut Context<Self>) {
        if self.hook_busy {
            return;
        }
        self.hook_busy = true;
        let mut conn = self.conn.clone();
        let key = berth_protocol::keys::test_panic(&self.process);
        ctx.spawn(
            async move {
                redis::cmd("LPOP")
                    .arg(key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            }
            .into_actor(self)
            .map(|res, act, _| {
                act.hook_busy = false;
                if let Ok(Some(name)) = res {
                    act.inject(&name);
                }
            }),
        );
    }
}

impl Actor for Tree {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(CHECK_EVERY, |act, _| act.check());
        if self.test_hooks {
            tracing::warn!(process = %self.process, "test hooks are on: panics can be injected");
            ctx.run_interval(HOOK_EVERY, |act, ctx| act.poll_hook(ctx));
        }
    }
}

impl Drop for Tree {
    /// Nobody supervises the root: if it goes (it should not), so does the process.
    fn drop(&mut self) {
        if !self.shutdown.is_cancelled() {
            self.shutdown
                .escalate(format!("the supervision tree of {} stopped", self.process));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_max_restarts_within_the_window_escalate() {
        let mut r = Restarts::new(Intensity {
            max: 2,
            within: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert!(!r.record(t0));
        assert!(!r.record(t0 + Duration::from_secs(1)));
        assert!(
            r.record(t0 + Duration::from_secs(2)),
            "the third within 10 s"
        );
    }

    #[test]
    fn restarts_older_than_the_window_are_forgotten() {
        let mut r = Restarts::new(Intensity {
            max: 2,
            within: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        assert!(!r.record(t0));
        assert!(!r.record(t0 + Duration::from_secs(5)));
        // The first is 11 s old by now: two within the window, not three.
        assert!(!r.record(t0 + Duration::from_secs(11)));
        assert!(r.record(t0 + Duration::from_secs(12)));
    }

    struct Echo(u32);

    impl Actor for Echo {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Get;

    impl Handler<Get> for Echo {
        type Result = u32;
        fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u32 {
            self.0
        }
    }

    crate::injectable!(Echo);

    /// A tree whose Redis never answers: only the restart counter uses it, in a task.
    fn test_tree(shutdown: &Shutdown) -> Tree {
        let conn = Redis::lazy("redis://127.0.0.1:1/", "test").unwrap();
        Tree::new("test", conn, shutdown, false)
    }

    #[test]
    fn a_panicked_actor_is_replaced_and_its_handle_follows() {
        let sys = actix::System::new();
        sys.block_on(async {
            let shutdown = Shutdown::new();
            let mut tree = test_tree(&shutdown);
            let made = std::rc::Rc::new(std::cell::Cell::new(0u32));
            let m = made.clone();
            let echo = tree.supervise("echo", move || {
                m.set(m.get() + 1);
                Echo(m.get())
            });
            let _tree = tree.start();
            assert_eq!(echo.send(Get).await.unwrap(), 1);
            echo.do_send(InjectPanic);
            // Within a few checks the handle names a new actor built by the factory.
            let mut answer = None;
            for _ in 0..50 {
                tokio::time::sleep(CHECK_EVERY).await;
                if let Ok(n) = echo.send(Get).await {
                    answer = Some(n);
                    break;
                }
            }
            assert_eq!(answer, Some(2));
            assert_eq!(made.get(), 2);
            assert!(shutdown.escalation().is_none());
            shutdown.cancel();
        });
    }

    #[test]
    fn an_actor_that_keeps_dying_escalates_to_the_process() {
        let sys = actix::System::new();
        sys.block_on(async {
            let shutdown = Shutdown::new();
            let mut tree = test_tree(&shutdown);
            let echo = tree.supervise("echo", || Echo(0));
            let _tree = tree.start();
            let max = Intensity::default().max;
            for _ in 0..=max {
                echo.do_send(InjectPanic);
                for _ in 0..50 {
                    tokio::time::sleep(CHECK_EVERY).await;
                    if echo.connected() || shutdown.is_cancelled() {
                        break;
                    }
                }
            }
            tokio::time::timeout(Duration::from_secs(5), shutdown.cancelled())
                .await
                .expect("the process shuts down");
            let why = shutdown.escalation().expect("an escalation");
            assert!(why.contains("actor echo died more than 10 times"), "{why}");
        });
    }
}
