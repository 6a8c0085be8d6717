//! The HTTP health probe that decides whether a new container may take traffic.
//!
//! Two kinds of failure are told apart. Connection-level failures (refused, reset, closed before
//! an answer: docker-proxy accepts and then closes while the app is not listening yet) mean "not up
//! yet": they are retried every few milliseconds and do not count. Answered-but-unhealthy probes
//! (a status other than 2xx/3xx, or no answer within `timeout_ms`) count toward `retries`, with
//! `interval_ms` between them. The container is inspected every few probes so a crashed app fails
//! at once instead of at the deadline. Everything is bounded by `deadline_s`.

use std::future::Future;
use std::time::{Duration, Instant};

use berth_protocol::HealthCheck;

use crate::log_sink::LogSink;

/// Pause between two connection attempts while the app is not accepting connections.
const RECONNECT_EVERY: Duration = Duration::from_millis(15);
/// How often the container's state is checked while probing.
const CHECK_CONTAINER_EVERY: Duration = Duration::from_millis(250);

/// Tells the prober whether the container is still alive.
pub trait Liveness {
    /// `Err(reason)` when the container exited or is restarting.
    fn check(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// An HTTP client fit for probing: no proxy, no redirects (3xx is healthy), no pooled connections.
pub fn client() -> reqwest::Result<reqwest::Client> {
    berth_bus::tls::install_provider();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
}

/// What is probed: the URL, the container port behind it (for messages), and a hint added to
/// the failure reason when no probe got an answer (e.g. the image EXPOSEs another port).
pub struct Target<'a> {
    pub url: &'a str,
    pub port: u16,
    pub hint: Option<&'a str>,
}

/// Probes the target until it answers healthy; `Err` holds the reason a person reads, one
/// sentence.
///
/// While connections fail the log gets a line when the wait starts and one each time the probe
/// sees a failure it had not seen yet (refused, then closed, …) — not one per attempt; the failure says how long
/// it waited, how many attempts, and the last thing it saw.
pub async fn wait_healthy<L: Liveness>(
    http: &reqwest::Client,
    target: &Target<'_>,
    hc: &HealthCheck,
    live: &L,
    log: &LogSink,
) -> Result<(), String> {
    let url = target.url;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(hc.deadline_s);
    let retries = hc.retries.max(1);
    let interval = Duration::from_millis(hc.interval_ms);
    let timeout = Duration::from_millis(hc.timeout_ms.max(1));
    let mut bad = 0u32;
    let mut ok = 0u32;
    let threshold = hc.healthy_threshold.max(1);
    let mut not_up = 0u64;
    let mut last_problem = String::from("no probe answered yet");
    // The connection-level failures seen so far (each logged once: docker-proxy alternates
    // between a reset and a close while nothing listens behind it).
    let mut seen: Vec<String> = Vec::new();
    let mut last_check: Option<Instant> = None;

    log.system(format!(
        "probing {url} (timeout {} ms, {retries} retries, deadline {} s)",
        hc.timeout_ms, hc.deadline_s
    ))
    .await;
    loop {
        let now = Instant::now();
        if now >= deadline {
            let msg = if not_up > 0 && bad == 0 {
                no_answer(
                    target.port,
                    hc.deadline_s,
                    not_up,
                    &last_problem,
                    target.hint,
                )
            } else {
                format!(
                    "the app did not become healthy within {} s (last: {last_problem})",
                    hc.deadline_s
                )
            };
            return Err(msg);
        }
        if last_check.is_none_or(|t| now.duration_since(t) >= CHECK_CONTAINER_EVERY) {
            live.check().await?;
            last_check = Some(Instant::now());
        }
        let per_try = timeout.min(deadline.saturating_duration_since(Instant::now()));
        let answer = tokio::time::timeout(per_try, http.get(url).timeout(per_try).send()).await;
        let problem = match answer {
            Ok(Ok(resp)) => {
                let status = resp.status();
                if status.is_success() || status.is_redirection() {
                    ok += 1;
                    if ok >= threshold {
                        log.system(format!(
                            "health check passed: HTTP {} after {:.1} s",
                            status.as_u16(),
                            start.elapsed().as_secs_f64()
                        ))
                        .await;
                        return Ok(());
                    }
                    log.system(format!("probe healthy ({ok}/{threshold} in a row)"))
                        .await;
                    sleep_until_before(Instant::now() + interval, deadline).await;
                    continue;
                }
                ok = 0;
                format!("HTTP {status}")
            }
            Ok(Err(e)) if !e.is_timeout() => {
                not_up += 1;
                last_problem = root_cause(&e);
                if !seen.contains(&last_problem) {
                    let line = if seen.is_empty() {
                        format!(
                            "waiting for the app to accept connections on port {} (now: {last_problem})",
                            target.port
                        )
                    } else {
                        format!(
                            "still no answer on port {} after {:.0} s, now also: {last_problem}",
                            target.port,
                            start.elapsed().as_secs_f64()
                        )
                    };
                    log.system(line).await;
                    seen.push(last_problem.clone());
                }
                sleep_until_before(Instant::now() + RECONNECT_EVERY, deadline).await;
                continue;
            }
            // A try the deadline cut short is not the app's fault: the deadline is what
            // ends the probe, with what was seen before it.
            _ if per_try < timeout => continue,
            _ => {
                ok = 0;
                format!("no answer within {} ms", per_try.as_millis())
            }
        };
        bad += 1;
        log.system(format!("probe {bad}/{retries} failed: {problem}"))
            .await;
        last_problem = problem.clone();
        live.check().await?;
        last_check = Some(Instant::now());
        if bad >= retries {
            return Err(format!("{bad} probe(s) of {url} failed, last: {problem}"));
        }
        sleep_until_before(Instant::now() + interval, deadline).await;
    }
}

/// The failure of a probe that never got an answer, as one sentence.
fn no_answer(port: u16, deadline_s: u64, attempts: u64, last: &str, hint: Option<&str>) -> String {
    let mut s =
        format!("no answer on port {port} after {deadline_s} s, {attempts} attempts: {last}");
    if let Some(h) = hint {
        s.push_str(" (");
        s.push_str(h);
        s.push(')');
    }
    s
}

async fn sleep_until_before(t: Instant, deadline: Instant) {
    tokio::time::sleep_until(t.min(deadline).into()).await;
}

/// The innermost cause of an error ("Connection refused (os error 111)", "connection closed
/// before message completed"): what the probe saw, without reqwest's and hyper's wrappers.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        last = c.to_string();
        src = c.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Alive;
    impl Liveness for Alive {
        async fn check(&self) -> Result<(), String> {
            Ok(())
        }
    }

    /// Dies after `n` checks.
    struct DiesAfter(AtomicU32, u32);
    impl Liveness for DiesAfter {
        async fn check(&self) -> Result<(), String> {
            if self.0.fetch_add(1, Ordering::SeqCst) >= self.1 {
                Err("container exited with code 3".into())
            } else {
                Ok(())
            }
        }
    }

    /// A server that closes the first `close_first` connections without answering, then
    /// answers `status`. Returns its port and the count of answered requests.
    async fn server(close_first: u32, status: u16) -> (u16, Arc<AtomicU32>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let answered = Arc::new(AtomicU32::new(0));
        let a = answered.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while let Ok((mut s, _)) = l.accept().await {
                seen += 1;
                if seen <= close_first {
                    drop(s);
                    continue;
                }
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                a.fetch_add(1, Ordering::SeqCst);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (port, answered)
    }

    fn target(url: &str) -> Target<'_> {
        Target {
            url,
            port: 8080,
            hint: None,
        }
    }

    fn hc(retries: u32, deadline_s: u64) -> HealthCheck {
        HealthCheck {
            path: "/health".into(),
            interval_ms: 10,
            timeout_ms: 500,
            retries,
            deadline_s,
            port: None,
            healthy_threshold: 1,
        }
    }

    #[tokio::test]
    async fn healthy_after_connections_closed_without_answer() {
        let (port, answered) = server(5, 200).await;
        let (log, lines) = LogSink::memory();
        let url = format!("http://127.0.0.1:{port}/health");
        let r = wait_healthy(&client().unwrap(), &target(&url), &hc(1, 10), &Alive, &log).await;
        assert_eq!(r, Ok(()));
        assert_eq!(answered.load(Ordering::SeqCst), 1);
        assert!(lines
            .lock()
            .unwrap()
            .iter()
            .any(|(_, l)| l.contains("passed: HTTP 200")));
    }

    #[tokio::test]
    async fn healthy_threshold_needs_answers_in_a_row() {
        let (port, answered) = server(0, 200).await;
        let (log, _) = LogSink::memory();
        let url = format!("http://127.0.0.1:{port}/health");
        let mut check = hc(1, 10);
        check.healthy_threshold = 3;
        let r = wait_healthy(&client().unwrap(), &target(&url), &check, &Alive, &log).await;
        assert_eq!(r, Ok(()));
        assert_eq!(answered.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn redirect_is_healthy() {
        let (port, _) = server(0, 302).await;
        let (log, _) = LogSink::memory();
        let url = format!("http://127.0.0.1:{port}/");
        assert_eq!(
            wait_healthy(&client().unwrap(), &target(&url), &hc(1, 10), &Alive, &log).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn bad_status_exhausts_retries() {
        let (port, answered) = server(0, 500).await;
        let (log, _) = LogSink::memory();
        let url = format!("http://127.0.0.1:{port}/health");
        let e = wait_healthy(&client().unwrap(), &target(&url), &hc(3, 10), &Alive, &log)
            .await
            .unwrap_err();
        assert!(e.contains("HTTP 500"), "{e}");
        assert_eq!(answered.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refused_until_deadline() {
        let port = berth_tests::free_port();
        let (log, _) = LogSink::memory();
        let url = format!("http://127.0.0.1:{port}/");
        let t = Instant::now();
        let e = wait_healthy(&client().unwrap(), &target(&url), &hc(1, 1), &Alive, &log)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("no answer on port 8080 after 1 s, ")
                && e.contains(" attempts: ")
                && e.to_lowercase()
                    .ends_with("connection refused (os error 111)"),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn waiting_is_logged_once_per_change_and_the_hint_ends_the_reason() {
        let port = berth_tests::free_port();
        let (log, lines) = LogSink::memory();
        let url = format!("http://127.0.0.1:{port}/");
        let t = Target {
            url: &url,
            port: 8080,
            hint: Some("the image exposes 9090, the app's port is 8080"),
        };
        let e = wait_healthy(&client().unwrap(), &t, &hc(1, 2), &Alive, &log)
            .await
            .unwrap_err();
        assert!(
            e.ends_with("(the image exposes 9090, the app's port is 8080)"),
            "{e}"
        );
        let attempts: u64 = e
            .split(", ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no attempt count in {e}"));
        assert!(attempts > 10, "{e}");
        // Many attempts, but the log says once that it waits (nothing changed meanwhile).
        let lines = lines.lock().unwrap();
        let waiting: Vec<_> = lines
            .iter()
            .filter(|(_, l)| l.contains("accept connections") || l.contains("no answer"))
            .collect();
        assert_eq!(waiting.len(), 1, "{lines:?}");
        assert!(waiting[0].1.contains("on port 8080"), "{lines:?}");
    }

    #[test]
    fn no_answer_is_one_sentence() {
        assert_eq!(
            no_answer(8080, 60, 30, "connection refused", None),
            "no answer on port 8080 after 60 s, 30 attempts: connection refused"
        );
    }

    #[tokio::test]
    async fn exited_container_fails_fast() {
        let port = berth_tests::free_port();
        let (log, _) = LogSink::memory();
        let url = format!("http://127.0.0.1:{port}/");
        let t = Instant::now();
        let live = DiesAfter(AtomicU32::new(0), 2);
        let e = wait_healthy(&client().unwrap(), &target(&url), &hc(1, 30), &live, &log)
            .await
            .unwrap_err();
        assert_eq!(e, "container exited with code 3");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
