//! [`EngineWatch`]: whether this node's Docker engine went away — stopped, restarting — and
//! when, so that a step a restart broke is not blamed on the app.
//!
//! A `dockerd` that restarts under a deployment leaves errors that look like the app's: the
//! build's `RUN` step "returned a non-zero code: 137" (the engine killed its container as it
//! shut down), a container under its health check that "exited with code 143", a probe that got
//! no answer. The watch tells them apart from the app's own faults with three signs, any of
//! which makes such a failure the infrastructure's ([`Error::Unavailable`]: the coordinator runs
//! the attempt again):
//!
//! - the engine is away now: a background task follows the engine's event stream (an HTTP
//!   connection the engine holds open; it breaks when `dockerd` exits) and pings it, and counts
//!   each time the engine stops answering: an *outage*, numbered;
//! - an outage began since the attempt started ([`EngineWatch::mark`], then
//!   [`EngineWatch::judge`] compares the count): the engine restarted under it;
//! - the engine does not answer a ping right after the failure (a `dockerd` shutting down closes
//!   its API socket first, then stops its containers — including the one a build step or a
//!   health check was waiting on — before the event stream breaks).
//!
//! With the engine up all along, a failure stays the app's: a build step that fails, a
//! container that crashes, a health check that never passes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_bus::Shutdown;
use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};

use crate::error::Error;

/// How long a ping may take before the engine counts as not answering.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an engine that went away is pinged.
const REPING: Duration = Duration::from_millis(200);
/// How long a job waits at its start for an engine that is away.
pub const WAIT_FOR_ENGINE: Duration = Duration::from_secs(60);

/// What the watch knows of the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    /// Outages seen since the node started (each time the engine stopped answering).
    outages: u64,
    /// The engine is not answering now.
    away: bool,
}

impl State {
    /// The engine stopped answering: a new outage, unless one is in progress.
    fn went_away(&mut self) -> bool {
        if self.away {
            return false;
        }
        self.away = true;
        self.outages += 1;
        true
    }

    /// The engine answers; whether that ends an outage.
    fn came_back(&mut self) -> bool {
        std::mem::replace(&mut self.away, false)
    }
}

/// Where an attempt started, in the engine's outages.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    outages: u64,
}

/// Where the engine takes new connections: a ping goes through a connection of its own. (The
/// Docker client's pooled connections do not tell: a `dockerd` that is stopping has closed its
/// socket but still answers on the connections it had.)
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp(String),
    /// Another transport (TLS, SSH): pinged through the client.
    Client,
}

impl Endpoint {
    /// The endpoint of `host` as the node's configuration gives it (`None`: the local socket,
    /// from `DOCKER_HOST` when it names one, as the Docker client takes it).
    fn of(host: Option<&str>) -> Endpoint {
        let host = match host {
            Some(h) => h.to_string(),
            None => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| h.starts_with("unix://"))
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string()),
        };
        if let Some(path) = host.strip_prefix("unix://") {
            Endpoint::Unix(path.into())
        } else if let Some(addr) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            Endpoint::Tcp(addr.trim_end_matches('/').to_string())
        } else {
            Endpoint::Client
        }
    }
}

/// `GET /_ping` on a new connection `s`: whether the engine answers 200.
async fn ping_on<S>(mut s: S) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
    if s.write_all(req).await.is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 12 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"HTTP/1.1 200") || got.starts_with(b"HTTP/1.0 200")
}

/// The node's knowledge of its Docker engine's outages. Cheap to clone; one per node, shared by
/// every job.
#[derive(Clone)]
pub struct EngineWatch {
    docker: Docker,
    endpoint: Endpoint,
    state: Arc<watch::Sender<State>>,
    since: Arc<Mutex<Option<Instant>>>,
    /// Wakes the follower to check again (a job saw the engine not answering).
    recheck: Arc<Notify>,
    /// Counts what may have moved a container's published port: the engine coming back from
    /// an outage, and each start of one of this node's containers (a restart policy at work).
    moves: Arc<watch::Sender<u64>>,
    /// This node's name (the `berth.node` label of its containers).
    node: String,
}

impl EngineWatch {
    /// A watch of `docker`, the client of the engine at `host` (the node's `docker_host`);
    /// [`EngineWatch::start`] runs its follower.
    pub fn new(docker: Docker, host: Option<&str>, node: &str) -> Self {
        EngineWatch {
            docker,
            endpoint: Endpoint::of(host),
            state: Arc::new(watch::channel(State::default()).0),
            since: Arc::default(),
            recheck: Arc::new(Notify::new()),
            moves: Arc::new(watch::channel(0).0),
            node: node.to_string(),
        }
    }

    /// Changes each time a container of this node may have come back on another host port:
    /// the engine answered again after an outage (it restarts the containers it kept), or it
    /// started one of this node's containers (a restart after a crash, or a job's own start).
    pub fn moves(&self) -> watch::Receiver<u64> {
        self.moves.subscribe()
    }

    fn moved(&self) {
        self.moves.send_modify(|n| *n += 1);
    }

    /// Starts following the engine (a task tracked by `shutdown`).
    pub fn start(&self, shutdown: &Shutdown) {
        let (w, token) = (self.clone(), shutdown.token().clone());
        shutdown.spawn(async move {
            tokio::select! {
                () = w.follow() => {}
                () = token.cancelled() => {}
            }
        });
    }

    /// Where an attempt starts: compare it with [`EngineWatch::judge`].
    pub fn mark(&self) -> Mark {
        Mark {
            outages: self.state.borrow().outages,
        }
    }

    /// Whether the engine is not answering now.
    pub fn away(&self) -> bool {
        self.state.borrow().away
    }

    /// Whether the engine went away (and maybe came back) since `mark`.
    pub fn restarted_since(&self, mark: &Mark) -> bool {
        let s = *self.state.borrow();
        s.away || s.outages != mark.outages
    }

    /// Waits until the engine answers, at most `patience`; whether it does.
    pub async fn wait_up(&self, patience: Duration) -> bool {
        let mut rx = self.state.subscribe();
        tokio::time::timeout(patience, rx.wait_for(|s| !s.away))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// What a failure of an attempt that started at `mark`, in step `step` ("building the
    /// image"), is: the app's fault as it is (`e`), or — when the engine went away under it or
    /// does not answer now — an [`Error::Unavailable`] that says so and quotes `e`. Only the
    /// errors that blame the app for what Docker did (a build, a container, a health check)
    /// are looked at; others are returned as they are.
    pub async fn judge(&self, mark: &Mark, step: &str, e: Error) -> Error {
        if matches!(e, Error::Unavailable(_) | Error::Docker(_)) {
            // The infrastructure's already; whether the engine is away is still worth knowing
            // now: the next attempt on this node waits for it instead of failing at once.
            self.answers_now().await;
            return e;
        }
        if !matches!(e, Error::Build(_) | Error::Run(_) | Error::Health(_)) {
            return e;
        }
        if let Some(why) = self.went_under(mark) {
            return Error::Unavailable(format!("{why} while {step} (what the step saw: {e})"));
        }
        if !self.answers_now().await {
            return Error::Unavailable(format!(
                "the Docker engine stopped answering while {step} (what the step saw: {e})"
            ));
        }
        // The follower may not have read its stream's end yet: give it a moment.
        self.recheck.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
        match self.went_under(mark) {
            Some(why) => Error::Unavailable(format!("{why} while {step} (what the step saw: {e})")),
            None => e,
        }
    }

    /// What the engine did since `mark`, if it went away.
    fn went_under(&self, mark: &Mark) -> Option<&'static str> {
        let s = *self.state.borrow();
        if s.away {
            Some("the Docker engine is not answering (stopped or restarting)")
        } else if s.outages != mark.outages {
            Some("the Docker engine restarted")
        } else {
            None
        }
    }

    /// Whether the engine answers: `false` during an outage, else a ping now, whose failure
    /// starts one.
    pub async fn answers_now(&self) -> bool {
        if self.away() {
            return false;
        }
        if self.answers().await {
            return true;
        }
        self.went_away();
        // The follower finds out when the engine answers again (a ping that failed for another
        // reason ends the outage at once).
        self.recheck.notify_one();
        false
    }

    /// Whether the engine answers a ping now, on a new connection.
    async fn answers(&self) -> bool {
        let ping = async {
            match &self.endpoint {
                Endpoint::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                    Ok(s) => ping_on(s).await,
                    Err(_) => false,
                },
                Endpoint::Tcp(addr) => match tokio::net::TcpStream::connect(addr.as_str()).await {
                    Ok(s) => ping_on(s).await,
                    Err(_) => false,
                },
                Endpoint::Client => self.docker.ping().await.is_ok(),
            }
        };
        tokio::time::timeout(PING_TIMEOUT, ping)
            .await
            .unwrap_or(false)
    }

    fn went_away(&self) {
        let mut new = false;
        self.state.send_modify(|s| new = s.went_away());
        if new {
            *lock(&self.since) = Some(Instant::now());
            tracing::warn!("the Docker engine stopped answering");
        }
    }

    fn came_back(&self) {
        let mut ended = false;
        self.state.send_modify(|s| ended = s.came_back());
        if ended {
            let away = lock(&self.since).take().map(|t| t.elapsed());
            tracing::warn!(
                away_s = away.map(|d| d.as_secs_f64()),
                "the Docker engine answers again"
            );
            self.moved();
        }
    }

    /// Follows the engine: pings it until it answers, then holds its event stream open until it
    /// breaks (or a job asks for a check), and again.
    async fn follow(&self) {
        loop {
            if !self.answers().await {
                self.went_away();
                tokio::time::sleep(REPING).await;
                continue;
            }
            self.came_back();
            // The daemon's own events (a configuration reload) and containers' starts: a
            // mostly idle stream whose end says the connection broke.
            let opts = EventsOptions {
                filters: Some(
                    [
                        (
                            "type".to_string(),
                            vec!["daemon".to_string(), "container".to_string()],
                        ),
                        (
                            "event".to_string(),
                            vec!["reload".to_string(), "start".to_string()],
                        ),
                    ]
                    .into(),
                ),
                ..Default::default()
            };
            let mut events = self.docker.events(Some(opts));
            loop {
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(Ok(ev)) => {
                            let ours = ev
                                .actor
                                .and_then(|a| a.attributes)
                                .and_then(|a| a.get(crate::containers::LABEL_NODE).cloned())
                                .is_some_and(|n| n == self.node);
                            if ours {
                                self.moved();
                            }
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "the Docker engine's event stream broke");
                            break;
                        }
                        None => break,
                    },
                    () = self.recheck.notified() => break,
                }
            }
            // A stream that ended on the client's own timeout is followed again at once; one
            // that broke because the engine went away finds it not answering.
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_counts_once_and_ends_when_the_engine_answers() {
        let mut s = State::default();
        assert!(s.went_away());
        assert!(!s.went_away(), "the same outage");
        assert_eq!(s.outages, 1);
        assert!(s.came_back());
        assert!(!s.came_back());
        assert!(s.went_away());
        assert_eq!(s.outages, 2);
    }

    #[test]
    fn the_endpoint_a_ping_connects_to() {
        assert_eq!(
            Endpoint::of(Some("unix:///tmp/e/docker.sock")),
            Endpoint::Unix("/tmp/e/docker.sock".into())
        );
        assert_eq!(
            Endpoint::of(Some("tcp://10.0.0.2:2375")),
            Endpoint::Tcp("10.0.0.2:2375".into())
        );
        assert_eq!(Endpoint::of(Some("ssh://me@host")), Endpoint::Client);
    }

    fn app_faults() -> Vec<Error> {
        vec![
            Error::Build("The command '/bin/sh -c sleep 3' returned a non-zero code: 137".into()),
            Error::Run("container exited with code 143".into()),
            Error::Health("container exited with code 143".into()),
        ]
    }

    #[tokio::test]
    async fn with_the_engine_up_all_along_the_app_s_faults_stay_the_app_s() {
        let docker = Docker::connect_with_local_defaults().unwrap();
        let w = EngineWatch::new(docker, None, "n1");
        assert!(w.answers().await, "the machine's engine answers a ping");
        let mark = w.mark();
        for e in app_faults() {
            let text = e.to_string();
            let e = w.judge(&mark, "building the image", e).await;
            assert!(!e.is_infrastructure(), "{e}");
            assert_eq!(e.to_string(), text);
        }
    }

    #[tokio::test]
    async fn an_engine_that_does_not_answer_or_restarted_makes_them_the_infrastructure_s() {
        let t = berth_tests::TempDir::with_prefix("berth-node-test-engine").unwrap();
        // A socket nobody listens on any more: what a `dockerd` that is shutting down leaves.
        let sock = t.path().join("docker.sock");
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let docker =
            Docker::connect_with_unix(sock.to_str().unwrap(), 5, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let w = EngineWatch::new(docker, Some(&format!("unix://{}", sock.display())), "n1");
        let mark = w.mark();
        for e in app_faults() {
            let e = w.judge(&mark, "waiting for the health check", e).await;
            assert!(e.is_infrastructure(), "{e}");
            assert!(e.to_string().contains("the Docker engine"), "{e}");
        }
        assert!(w.away());
        // Came back since: an attempt that started before the outage is the engine's, one that
        // started after is judged on its own.
        w.came_back();
        let after = w.mark();
        assert!(w.restarted_since(&mark));
        assert!(!w.restarted_since(&after));
        let e = w
            .judge(&mark, "building the image", app_faults().remove(0))
            .await;
        assert!(
            e.to_string().contains("restarted while building the image"),
            "{e}"
        );
        // Neither are other errors changed: a git failure is the app's whatever the engine does.
        let e = w
            .judge(
                &mark,
                "fetching the source",
                Error::Git("git fetch failed".into()),
            )
            .await;
        assert!(!e.is_infrastructure(), "{e}");
    }
}
