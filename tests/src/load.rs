//! [`Load`]: constant HTTP traffic through Caddy's ingress while a test deploys, counting every
//! answer and failure ([`LoadCount`]).

use std::time::Duration;

/// Constant HTTP load through Caddy's ingress for one host: `workers` loops of GET on kept-alive
/// connections until stopped; counts answers and failures (non-2xx or connection errors).
///
/// The workers run on a runtime of their own (two threads), never the test's: a test body that
/// blocks its runtime (a `docker` CLI call, a process wait) must not hold up requests in flight
/// and turn its own stall into a timed-out request that Berth never saw.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests completed so far, by every worker.
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<LoadCount>>,
    /// The workers' runtime; shut down by [`Load::finish`] or on drop.
    runtime: Option<tokio::runtime::Runtime>,
}

/// What a load run saw.
#[derive(Debug, Default, Clone)]
pub struct LoadCount {
    pub ok: u64,
    pub failed: u64,
    /// Requests that failed on a kept-alive connection the server closed before answering, and
    /// then succeeded on a fresh one (what browsers and HTTP clients do for idempotent requests;
    /// RFC 9112 §9.3.1). Counted apart so the figure stays visible.
    pub retried: u64,
    /// The first few failures, for the assertion message: when each request began (Unix
    /// seconds, as Caddy logs `ts`), how long it took, and what failed.
    pub examples: Vec<String>,
    /// How many answers contained each marker, in order of first sight.
    pub versions: Vec<(String, u64)>,
    /// The slowest request, answered or not: (when it began, Unix seconds; how long it took,
    /// seconds). Not checked by any test; it shows a stall that did not reach the timeout.
    pub slowest: (f64, f64),
}

/// A kept-alive connection closed by the server before any answer (reset, or EOF before the
/// response): the request never reached the app, so repeating a GET is safe.
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        let text = format!("{s:?}");
        if text.contains("IncompleteMessage") || text.contains("ConnectionReset") {
            return true;
        }
        src = s.source();
    }
    false
}

impl Load {
    /// Starts the load; `marker` extracts the version shown in a body (for the record).
    pub fn start(port: u16, host: &str, workers: usize, pause: Duration) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("load")
            .enable_all()
            .build()
            .expect("a runtime for the load");
        let tasks = (0..workers)
            .map(|_| {
                let (stop, host, sent) = (stop.clone(), host.to_string(), sent.clone());
                runtime.spawn(async move {
                    let http = crate::http_client()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .expect("client");
                    let mut n = LoadCount::default();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let send = || {
                            http.get(format!("http://127.0.0.1:{port}/"))
                                .header("host", &host)
                                .send()
                        };
                        // In Unix seconds, as Caddy's logs write `ts`, to find a failure in them.
                        let began = berth_protocol::now_ms() as f64 / 1000.0;
                        let t0 = std::time::Instant::now();
                        let mut r = send().await;
                        if r.as_ref().is_err_and(closed_before_answer) {
                            n.retried += 1;
                            r = send().await;
                        }
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let took = t0.elapsed().as_secs_f64();
                        if took > n.slowest.1 {
                            n.slowest = (began, took);
                        }
                        match r {
                            Ok(resp) if resp.status().is_success() => {
                                let body = resp.text().await.unwrap_or_default();
                                let v = body
                                    .split("<span id=\"version\">")
                                    .nth(1)
                                    .and_then(|t| t.split('<').next())
                                    .unwrap_or("?")
                                    .to_string();
                                match n.versions.iter_mut().find(|(k, _)| *k == v) {
                                    Some((_, c)) => *c += 1,
                                    None => n.versions.push((v, 1)),
                                }
                                n.ok += 1;
                            }
                            Ok(resp) => {
                                n.failed += 1;
                                if n.examples.len() < 5 {
                                    // Who answered: Caddy's catch-all, Caddy's proxy, or the app.
                                    let status = resp.status();
                                    let server = resp
                                        .headers()
                                        .get("server")
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("")
                                        .to_string();
                                    let body = resp.text().await.unwrap_or_default();
                                    let body: String = body.trim().chars().take(80).collect();
                                    n.examples.push(format!(
                                        "at {began:.3} after {took:.3} s: HTTP {status} (server {server:?}): {body:?}"
                                    ));
                                }
                            }
                            Err(e) => {
                                n.failed += 1;
                                if n.examples.len() < 5 {
                                    n.examples
                                        .push(format!("at {began:.3} after {took:.3} s: {e:?}"));
                                }
                            }
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    n
                })
            })
            .collect();
        Load {
            stop,
            sent,
            tasks,
            runtime: Some(runtime),
        }
    }

    /// Requests completed so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the load and sums what every worker saw.
    pub async fn finish(mut self) -> LoadCount {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = LoadCount::default();
        for t in std::mem::take(&mut self.tasks) {
            if let Ok(n) = t.await {
                total.ok += n.ok;
                total.failed += n.failed;
                total.retried += n.retried;
                total.examples.extend(n.examples);
                if n.slowest.1 > total.slowest.1 {
                    total.slowest = n.slowest;
                }
                for (v, c) in n.versions {
                    match total.versions.iter_mut().find(|(k, _)| *k == v) {
                        Some((_, t)) => *t += c,
                        None => total.versions.push((v, c)),
                    }
                }
            }
        }
        total
    }
}

impl Drop for Load {
    /// Stops the workers; never waits (a runtime may not be dropped inside another's context).
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
