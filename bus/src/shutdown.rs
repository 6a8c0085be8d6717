//! [`Shutdown`]: the one way Berth's daemons stop.
//!
//! `berth` creates one at start and passes it to `coordinator::start`, `node::start` and
//! `web::serve`. It is a `CancellationToken` (cancelled on Ctrl-C or SIGTERM: every loop that
//! sleeps or blocks selects on it and ends) and a `TaskTracker` (every task the daemons spawn is
//! spawned through [`Shutdown::spawn`], never with a bare `tokio::spawn` or `actix::spawn`). On
//! a signal `berth` cancels the token, lets the node drain its jobs, then waits for the tracked
//! tasks until a deadline ([`Shutdown::wait_until`]) and logs what it abandons: how many tasks,
//! and where in the code each was spawned.
//!
//! Futures in an actor's context (`ctx.spawn`) are not tasks: they end with their actor.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// The shared shutdown token and task tracker; cheap to clone (clones share both).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
    /// Where each running tracked task was spawned, for the report of what was abandoned.
    sites: Arc<Sites>,
    /// Why a supervisor gave up (an actor restarted too often): the process then shuts down and
    /// exits non-zero, so its service manager restarts it.
    escalation: Arc<Mutex<Option<String>>>,
}

#[derive(Debug, Default)]
struct Sites {
    next: AtomicU64,
    running: Mutex<HashMap<u64, &'static Location<'static>>>,
}

/// Removes its task from [`Sites`] when the task ends (or is dropped, aborted or not).
struct Registered {
    sites: Arc<Sites>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.sites.running).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tracked tasks still running when the shutdown deadline passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Abandoned {
    /// How many.
    pub count: usize,
    /// How many were spawned at each place in the code (`file:line`).
    pub by_site: BTreeMap<String, usize>,
}

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sites: Vec<String> = self
            .by_site
            .iter()
            .map(|(site, n)| format!("{n} spawned at {site}"))
            .collect();
        if sites.is_empty() {
            write!(f, "none")
        } else {
            write!(f, "{}", sites.join(", "))
        }
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown: every loop watching the token (or a child of it) ends.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// A supervisor at the root gave up: record why (the first reason wins) and start the
    /// shutdown. The process then exits non-zero ([`Shutdown::escalation`]).
    pub fn escalate(&self, why: impl Into<String>) {
        let mut e = lock(&self.escalation);
        if e.is_none() {
            *e = Some(why.into());
        }
        drop(e);
        self.token.cancel();
    }

    /// Why the shutdown was an escalation, if it was one.
    pub fn escalation(&self) -> Option<String> {
        lock(&self.escalation).clone()
    }

    /// Resolves once the shutdown started.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// The shared token itself.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// A token cancelled with the shared one that can also be cancelled alone (one loop's stop).
    pub fn child_token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Spawns a tracked task on the Tokio runtime.
    #[track_caller]
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let registered = self.register(Location::caller());
        self.tracker.spawn(async move {
            let _registered = registered;
            task.await
        })
    }

    fn register(&self, site: &'static Location<'static>) -> Registered {
        let id = self.sites.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.sites.running).insert(id, site);
        Registered {
            sites: self.sites.clone(),
            id,
        }
    }

    /// Tracked tasks not finished yet.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Closes the tracker and waits until every tracked task finished or `deadline` passed;
    /// returns those still running then (abandoned: they are dropped with the runtime). Tasks
    /// may still be spawned after this; they are waited for too.
    pub async fn wait_until(&self, deadline: Instant) -> Abandoned {
        self.tracker.close();
        let _ = tokio::time::timeout_at(deadline, self.tracker.wait()).await;
        let mut by_site = BTreeMap::new();
        for site in lock(&self.sites.running).values() {
            *by_site
                .entry(format!("{}:{}", site.file(), site.line()))
                .or_insert(0) += 1;
        }
        Abandoned {
            count: self.tracker.len(),
            by_site,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waits_for_tasks_that_stop_on_the_token_and_reports_those_that_do_not() {
        let s = Shutdown::new();
        let child = s.child_token();
        s.spawn(async move { child.cancelled().await });
        let t = s.clone();
        s.spawn(async move {
            tokio::select! {
                () = t.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        });
        // Ignores the token: abandoned at the deadline.
        let line = line!() + 1;
        s.spawn(tokio::time::sleep(Duration::from_secs(3600)));
        assert_eq!(s.running(), 3);
        s.cancel();
        let started = Instant::now();
        let left = s
            .wait_until(Instant::now() + Duration::from_millis(300))
            .await;
        assert_eq!(left.count, 1);
        let site = format!("{}:{line}", file!());
        assert_eq!(left.by_site, BTreeMap::from([(site.clone(), 1)]));
        assert_eq!(left.to_string(), format!("1 spawned at {site}"));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn returns_at_once_when_nothing_runs() {
        let s = Shutdown::new();
        s.spawn(async {}).await.unwrap();
        let aborted = s.spawn(tokio::time::sleep(Duration::from_secs(3600)));
        aborted.abort();
        let started = Instant::now();
        let left = s.wait_until(Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(left, Abandoned::default());
        assert_eq!(left.to_string(), "none");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
