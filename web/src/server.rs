//! The API's connection loop: hyper's HTTP/1 server driven by hand instead of `warp::serve`, for
//! the limits warp 0.4 cannot set.
//!
//! warp builds hyper without a timer, so hyper's header read timeout never fires and a client
//! sending one header line every few seconds holds a connection (and its task) forever. Here each
//! connection gets a [`TokioTimer`] and `header_read_timeout` (which also bounds an idle
//! keep-alive connection: the wait for the next request's head is a header read), and the number
//! of connections served at once is capped by a semaphore. A connection beyond the cap is not
//! left waiting in the kernel's backlog: it is answered `503` with a sentence and closed, so the
//! client learns why at once. Request bodies have their own deadline, applied where a route
//! reads its body ([`crate::body`]); nothing bounds how long a response takes, so log follows
//! (SSE) stream for as long as they need.
//!
//! With `api.tls_cert` and `api.tls_key` the listener speaks TLS only ([`crate::tls`]); the
//! handshake runs inside the connection's task, holding its connection slot, and must finish
//! within the header timeout.
//!
//! HTTP/1 only: nothing speaks HTTP/2 to the API (the CLI, curl, reverse proxies use HTTP/1.1), and
//! an unneeded protocol would be one more place to bound.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use berth_bus::Shutdown;
use berth_protocol::api::ErrorBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use warp::http::{Response, StatusCode};
use warp::{Filter, Reply};

use crate::tls::Tls;

/// The address of the client a request came from, in the request's extensions (read it with
/// [`peer`]).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The client's address (`None` when the request did not come through [`run`], e.g. a test
/// calling the filter directly).
pub fn peer() -> impl Filter<Extract = (Option<std::net::SocketAddr>,), Error = Infallible> + Clone
{
    warp::ext::optional::<Peer>().map(|p: Option<Peer>| p.map(|Peer(a)| a))
}

/// What bounds the API's use of connections and time.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's head (line and headers), and how long an
    /// idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body once its head is read.
    pub body_timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Largest uploaded directory archive (`POST /api/v1/apps/{name}/uploads`), in bytes.
    pub upload_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            upload_max: 100 * 1024 * 1024,
        }
    }
}

/// A connection's byte stream: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Serves `filter` on `listener` (over TLS when `tls` is given) until `shutdown` is cancelled:
/// then it stops accepting and returns once the connections in progress are done (log follows
/// end with the shutdown).
pub(crate) async fn run<F>(
    listener: tokio::net::TcpListener,
    filter: F,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: &Shutdown,
) where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
    F: Filter<Error = Infallible>,
{
    let graceful = GracefulShutdown::new();
    // One permit per connection being served; a connection holds its permit until it closes,
    // from before its TLS handshake: a handshake in progress is a connection served.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stop = shutdown.token().clone();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // A connection reset before it was accepted is the client's business; running
                    // out of file descriptors is not, and retrying at once would spin.
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                    ) {
                        tracing::error!(error = %e, "the API cannot accept a connection");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
        };
        let permit = slots.clone().try_acquire_owned().ok();
        if permit.is_none() {
            tracing::warn!(
                max = limits.max_connections,
                "API connection refused: too many connections (api.max_connections)"
            );
        }
        let (filter, tls, stop, watcher) = (
            filter.clone(),
            tls.clone(),
            stop.clone(),
            graceful.watcher(),
        );
        // Tracked like every task (the shutdown pattern); once its handshake is done, the
        // connection is watched by `graceful` too.
        // The task owns `permit` (the connection's slot) until the connection ends.
        shutdown.spawn(async move {
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(Tls(acceptor)) => {
                    // The handshake is bounded like a request's head: a client that connects and
                    // says nothing (or stalls mid-handshake) is cut off after the same time.
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
                    let done = tokio::select! {
                        _ = stop.cancelled() => return,
                        done = handshake => done,
                    };
                    match done {
                        Ok(Ok(tls)) => Box::new(tls),
                        Ok(Err(e)) => {
                            // Plain HTTP, an untrusting client, a scanner: the client's business.
                            tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "API TLS handshake timed out (api.header_timeout_s)");
                            return;
                        }
                    }
                }
            };
            let io = TokioIo::new(io);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            if permit.is_some() {
                let warp_svc = warp::service(filter);
                // warp's `addr::remote` is filled only by `warp::serve`: routes read the
                // client's address from [`Peer`] instead.
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(Peer(peer));
                    let mut s = warp_svc.clone();
                    async move { tower_service::Service::call(&mut s, req).await }
                });
                if let Err(e) = watcher.watch(http.serve_connection(io, svc)).await {
                    // A client gone or too slow is routine; nothing for the operator to do.
                    tracing::debug!(error = %e, "API connection ended");
                }
            } else {
                // hyper reads the request (under the same header timeout) and answers it, so
                // the client sees the answer rather than a reset.
                http.keep_alive(false);
                let svc = hyper::service::service_fn(|_req: hyper::Request<Incoming>| async {
                    Ok::<_, Infallible>(too_many_connections())
                });
                let _ = watcher.watch(http.serve_connection(io, svc)).await;
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn too_many_connections() -> Response<String> {
    let body = serde_json::to_string(&ErrorBody {
        error: "the API is serving as many connections as it allows (api.max_connections); try again shortly".into(),
    })
    .unwrap_or_default();
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert("retry-after", warp::http::HeaderValue::from_static("1"));
    resp
}
