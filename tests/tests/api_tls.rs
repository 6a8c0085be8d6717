//! The API over HTTPS (`api.tls_cert`, `api.tls_key`) and the webhook-only listener
//! (`api.webhook_listen`), against a real `berth coordinator` and its Redis — no node is needed:
//! the CLI lists apps over https with the test CA and refuses the API without it, saying why; the
//! TLS port answers plain HTTP with nothing of the API; a client that connects and never finishes
//! its handshake is cut off by the header timeout and holds one of `api.max_connections` while it
//! lasts; the webhook listener takes a signed delivery and serves nothing else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use berth_tests::github::{deliver_via, push_payload};
use berth_tests::{
    berth_bin, eventually, free_port, http_client, start_redis, test_ca, Proc, TempDir, TestCa,
};

const SECRET: &str = "tls-webhook-secret";

/// A `berth coordinator` whose API speaks TLS with a certificate of a CA made for the test.
struct TlsCoordinator {
    // Dropped in order: the coordinator stops before its Redis and before the files go.
    coordinator: Proc,
    _redis: Proc,
    ca: TestCa,
    /// `https://127.0.0.1:<port>`
    base: String,
    port: u16,
    webhook_port: u16,
    token: String,
    dir: TempDir,
}

impl TlsCoordinator {
    /// Starts it with `extra` settings (environment variables) and waits until it is up.
    async fn start(extra: &[(&str, &str)]) -> TlsCoordinator {
        let dir = TempDir::with_prefix("berth-api-tls").unwrap();
        let d = dir.path();
        let ca = test_ca(&d.join("tls")).unwrap();
        let redis_port = free_port();
        let redis = start_redis(d, redis_port, &[]).await.unwrap();
        let (port, webhook_port) = (free_port(), free_port());
        let token = uuid_like();
        let s = |p: &Path| p.display().to_string();
        let mut env: Vec<(String, String)> = [
            ("HOME", s(d)),
            ("XDG_CONFIG_HOME", s(&d.join("config"))),
            ("XDG_DATA_HOME", s(&d.join("data"))),
            ("BERTH_DATA_DIR", s(&d.join("berth"))),
            ("BERTH_API__LISTEN", format!("127.0.0.1:{port}")),
            ("BERTH_API__TOKEN", token.clone()),
            ("BERTH_API__TLS_CERT", s(&ca.cert)),
            ("BERTH_API__TLS_KEY", s(&ca.key)),
            (
                "BERTH_API__WEBHOOK_LISTEN",
                format!("127.0.0.1:{webhook_port}"),
            ),
            ("BERTH_GITHUB__WEBHOOK_SECRET", SECRET.into()),
            (
                "BERTH_REDIS__URL",
                format!("redis://127.0.0.1:{redis_port}/"),
            ),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut cmd = berth(&env);
        cmd.arg("coordinator");
        let mut coordinator =
            Proc::spawn("berth coordinator", cmd, d.join("coordinator.log")).unwrap();
        let base = format!("https://127.0.0.1:{port}");
        // Ready once it says so (its listeners are bound by then), with no connection made: a
        // test's first connection is the first the API sees.
        let ready = eventually("the coordinator's start", Duration::from_secs(60), || {
            let up = if coordinator.exited() {
                Some(false)
            } else {
                coordinator
                    .log_text()
                    .contains("Berth coordinator is up.")
                    .then_some(true)
            };
            async move { up }
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "{ready:?}\n{}",
            coordinator.log_text()
        );
        TlsCoordinator {
            coordinator,
            _redis: redis,
            ca,
            base,
            port,
            webhook_port,
            token,
            dir,
        }
    }

    /// A CLI call, `berth --api <base> --token <token> <args>` with `env` and nothing else in its
    /// environment: exit code, stdout and stderr.
    fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = Command::new(berth_bin());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("client-config"))
            .envs(env.iter().copied())
            .args(["--api", &self.base, "--token", &self.token])
            .args(args)
            .stdin(Stdio::null());
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().unwrap();
        (
            status.code().unwrap_or(-1),
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    }
}

fn uuid_like() -> String {
    berth_tests::unique("token-0123456789")
}

/// `berth` with exactly `env`.
fn berth(env: &[(String, String)]) -> Command {
    let mut c = Command::new(berth_bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

/// The TLS client configuration of a client that trusts only the CA at `ca`.
fn client_config(ca: &Path) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An HTTP client that trusts only the CA at `ca`.
fn trusting(ca: &Path) -> reqwest::Client {
    http_client()
        .tls_backend_preconfigured(client_config(ca))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Reads from `stream` until the server closes it (or 30 s pass: then the test fails); what it
/// sent.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the API kept the connection open for 30 s (got {got:?})")
            }
            // A reset is a close too.
            Err(_) => return got,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_apps_over_https_with_the_ca_and_says_why_without_it() {
    let c = TlsCoordinator::start(&[]).await;
    let log = c.coordinator.log_text();
    assert!(
        log.contains(&format!("API: https://127.0.0.1:{}", c.port)),
        "the coordinator prints its https URL:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "webhook: https://127.0.0.1:{}/api/v1/webhooks/github",
            c.webhook_port
        )),
        "{log}"
    );

    let ca = c.ca.ca.display().to_string();
    let (code, out, err) = c.cli(&["--json", "--ca-cert", &ca, "apps", "list"], &[]);
    assert_eq!((code, out.trim()), (0, "[]"), "{err}");
    // The same CA through the environment.
    let (code, out, err) = c.cli(
        &["--json", "apps", "list"],
        &[("BERTH_API__CA_CERT", ca.as_str())],
    );
    assert_eq!((code, out.trim()), (0, "[]"), "{err}");

    // Without the CA: one sentence saying what to do, not reqwest's or rustls's internals.
    let (code, out, err) = c.cli(&["apps", "list"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "the API at {} presented a certificate that no CA this client trusts signed: give the CA \
             that signed it with --ca-cert FILE",
            c.base
        )),
        "{err}"
    );
    assert!(
        !err.contains("reqwest") && !err.contains("UnknownIssuer") && err.lines().count() == 1,
        "{err}"
    );

    // A CA file that is not one is refused before any request.
    let (code, _, err) = c.cli(
        &["--ca-cert", &c.ca.key.display().to_string(), "apps", "list"],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("holds no certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_port_answers_no_plain_http_and_cuts_off_a_silent_client() {
    let c = TlsCoordinator::start(&[("BERTH_API__HEADER_TIMEOUT_S", "2")]).await;
    let addr = ("127.0.0.1", c.port);

    // Plain HTTP with the right token: no HTTP answer (the TLS handshake fails and the
    // connection closes).
    // One write of the whole request (`write!` writes it piece by piece, and the server may
    // close on the first piece, which is no TLS record, before the next is written: a broken
    // pipe, which is as good a "no" as a close).
    let mut plain = TcpStream::connect(addr).unwrap();
    let request = format!(
        "GET /api/v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
        c.token
    );
    if let Err(e) = plain.write_all(request.as_bytes()) {
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "writing plain HTTP to the TLS port: {e}"
        );
    }
    let got = read_to_close(&mut plain);
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1."),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&got)
    );

    // A client that connects and never starts its handshake is closed (after
    // api.header_timeout_s), not kept.
    let mut silent = TcpStream::connect(addr).unwrap();
    assert!(read_to_close(&mut silent).is_empty());

    // One that completes the handshake and then sends nothing: hyper's header timeout.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&c.ca.ca)));
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut buf),
    )
    .await;
    assert!(closed.is_ok(), "a silent TLS client was kept for 30 s");

    // The API still serves.
    let (code, out, err) = c.cli(
        &[
            "--json",
            "--ca-cert",
            &c.ca.ca.display().to_string(),
            "apps",
            "list",
        ],
        &[],
    );
    assert_eq!((code, out.trim()), (0, "[]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_its_tls_handshake_counts_against_max_connections() {
    let c = TlsCoordinator::start(&[("BERTH_API__MAX_CONNECTIONS", "1")]).await;
    // Holds the one connection slot: connected, handshake never started.
    let _holder = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    let http = trusting(&c.ca.ca);
    // Every connection while it is held (the 503 closes each one: the next is a new one).
    for _ in 0..3 {
        let r = http
            .get(format!("{}/healthz", c.base))
            .send()
            .await
            .unwrap();
        let (status, text) = (r.status().as_u16(), r.text().await.unwrap());
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("api.max_connections"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_listener_takes_signed_deliveries_and_serves_nothing_else() {
    let c = TlsCoordinator::start(&[]).await;
    let hook = format!("https://127.0.0.1:{}", c.webhook_port);
    let http = trusting(&c.ca.ca);
    let body = serde_json::to_vec(&push_payload(
        "https://github.com/octo/no-such-app.git",
        "refs/heads/main",
        "0000000000000000000000000000000000000001",
        "1111111111111111111111111111111111111111",
        "a push no app follows",
    ))
    .unwrap();

    // A signed push is verified and handled there (no app follows that repository: nothing
    // queued, said with a reason).
    let (status, answer) = deliver_via(
        &http,
        &hook,
        Some(SECRET),
        "push",
        "d-1",
        &body,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deployments"], serde_json::json!([]), "{answer}");
    // A wrong signature is refused there.
    let (status, answer) = deliver_via(
        &http,
        &hook,
        Some("not-the-secret"),
        "push",
        "d-2",
        &body,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "{answer}");

    // Nothing else is served there, not even with the token.
    for path in ["/api/v1/apps", "/healthz", "/metrics", "/api/v1/nodes"] {
        let r = http
            .get(format!("{hook}{path}"))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "GET {path} on the webhook listener");
    }
    // The API's own listener still takes the webhook.
    let (status, answer) = deliver_via(
        &http,
        &c.base,
        Some(SECRET),
        "ping",
        "d-3",
        b"{\"zen\":\"Keep it logically awesome.\"}",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
}
