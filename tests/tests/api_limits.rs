//! The API against clients that try to exhaust it or make it talk (issue 13, items 8 and 9):
//! slow heads and bodies, too many connections, an oversized webhook delivery, malformed
//! requests. Raw TCP against a real `berth up` (Redis, Caddy, Docker).

use std::time::{Duration, Instant};

use berth_tests::Cluster;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The API's `host:port`.
fn addr(c: &Cluster) -> String {
    c.api.base.trim_start_matches("http://").to_string()
}

/// Reads what the server sends until it closes the connection, or until `limit` passes (then
/// whatever came so far, and `false`).
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

/// Sends `request` on a fresh connection and returns the whole answer (the request should say
/// `Connection: close`).
async fn exchange(c: &Cluster, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr(c)).await.unwrap();
    s.write_all(request).await.unwrap();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(30)).await;
    assert!(closed, "no complete answer within 30 s; got {answer:?}");
    answer
}

/// The status code and the `error` of a JSON error answer.
fn error_of(answer: &str) -> (u16, String) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("answer body is not JSON ({e}): {answer:?}"));
    (status, v["error"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_head_slowly_is_cut_off() {
    let c = Cluster::up_with(&[("BERTH_API__HEADER_TIMEOUT_S", "3")])
        .await
        .unwrap();
    let mut s = TcpStream::connect(addr(&c)).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One more header line a second, never the blank line that ends the head: without a header
    // timeout the server waits for ever. 60 lines is far past the 3 s allowed.
    let started = Instant::now();
    let mut cut = false;
    for i in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if s.write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
        // The server's close shows as end-of-stream on our side before writes start failing.
        let mut b = [0u8; 512];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(10), s.read(&mut b)).await
        {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "the connection was still open after 60 header lines over {:?}",
        started.elapsed()
    );
    // The API itself is fine.
    let (code, _) = c.api.get("/healthz").await.unwrap();
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_body_slowly_gets_408() {
    let c = Cluster::up_with(&[("BERTH_API__BODY_TIMEOUT_S", "2")])
        .await
        .unwrap();
    let mut s = TcpStream::connect(addr(&c)).await.unwrap();
    let head = format!(
        "POST /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"name\":",
        c.api.token
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The other 92 bytes never come.
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(60)).await;
    assert!(
        closed,
        "no answer to a stalled body within 60 s: {answer:?}"
    );
    let (code, error) = error_of(&answer);
    assert_eq!(code, 408, "{answer}");
    assert!(error.contains("did not arrive within 2 s"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_answered_503() {
    const CAP: usize = 4;
    let c = Cluster::up_with(&[("BERTH_API__MAX_CONNECTIONS", &CAP.to_string())])
        .await
        .unwrap();
    // Connections that send half a head and wait: each holds a slot (the header timeout is the
    // default 30 s). The test's own API client may hold a keep-alive connection too, so open
    // them until a probe is refused rather than exactly CAP.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..CAP + 4 {
        let mut s = TcpStream::connect(addr(&c)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
        let answer = exchange(
            &c,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if answer.starts_with("HTTP/1.1 503") {
            refused = Some(answer);
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let answer = refused.unwrap_or_else(|| {
        panic!(
            "{} connections held open and the API still accepted one more (cap {CAP})",
            held.len()
        )
    });
    assert!(held.len() <= CAP, "refused only after {} held", held.len());
    let (_, error) = error_of(&answer);
    assert!(error.contains("api.max_connections"), "{error}");

    // A slot freed is a connection served again.
    held.pop();
    berth_tests::eventually("a freed slot", Duration::from_secs(10), || async {
        let answer = exchange(
            &c,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        answer.starts_with("HTTP/1.1 200").then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_webhook_delivery_is_refused_before_its_body() {
    let c = Cluster::up_with(&berth_tests::github::webhook_secret("s3cret-for-the-test"))
        .await
        .unwrap();
    let mut s = TcpStream::connect(addr(&c)).await.unwrap();
    // 100 MB announced, not one byte of it sent: the answer must come from the header alone.
    s.write_all(
        b"POST /api/v1/webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n\
          X-GitHub-Delivery: d-1\r\nX-Hub-Signature-256: sha256=00\r\n\
          Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n",
    )
    .await
    .unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_secs(30)).await;
    let (code, error) = error_of(&answer);
    assert_eq!(code, 413, "{answer}");
    assert!(error.contains("larger than 5 MiB"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_answered_without_internals() {
    let c = Cluster::up().await.unwrap();
    let token = &c.api.token;
    let cases: Vec<(&str, String)> = vec![
        (
            "a body without Content-Length",
            format!(
                "POST /api/v1/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
            ),
        ),
        (
            "a header that is not visible ASCII",
            format!(
                "GET /api/v1/deployments/nope/log HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {token}\r\nAccept: text/\u{00ff}\r\nConnection: close\r\n\r\n"
            ),
        ),
    ];
    for (what, request) in cases {
        let answer = exchange(&c, request.as_bytes()).await;
        let (code, error) = error_of(&answer);
        assert!(
            (400..500).contains(&code),
            "{what}: status {code}: {answer}"
        );
        for internal in ["Rejection", "Invalid", "LengthRequired", "{", "(", "::"] {
            assert!(
                !error.contains(internal),
                "{what}: the answer shows {internal:?}: {error}"
            );
        }
    }
}
