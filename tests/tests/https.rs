//! Automatic HTTPS for app domains (issue 13, item 7): with `node.https = internal` a node's
//! Caddy serves each app domain over HTTPS with a certificate of its own CA — a client trusting
//! that root (from the admin API's `/pki/ca/local`) gets the app, a client trusting the system's
//! roots does not (Caddy was told never to install its root there) — and plain HTTP for the
//! domain answers a 308 to HTTPS. A node restarted in another mode, with the same Caddy still
//! holding the old config, brings the berth server to the new mode, both ways.

use std::sync::Arc;
use std::time::Duration;

use berth_tests::{
    eventually, free_port, hello_page, ingress_get, repo_root, unique, Cluster, GitRepo, TempDir,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer};

const DEPLOY: Duration = Duration::from_secs(180);

/// Which roots an HTTPS client trusts.
enum Trust<'a> {
    /// Only this root (PEM).
    Root(&'a str),
    /// The system's roots, as a browser or curl on this machine would.
    System,
}

/// GET https://`domain`:`port`/ with `domain` resolved to 127.0.0.1 (SNI and Host are the
/// domain), trusting `trust`; the status and the raw response. An error when the handshake fails.
async fn https_get(port: u16, domain: &str, trust: Trust<'_>) -> anyhow::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    match trust {
        Trust::Root(pem) => roots.add(CertificateDer::from_pem_slice(pem.as_bytes())?)?,
        Trust::System => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from(domain.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls =
        tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await??;
    tls.write_all(
        format!("GET / HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line in {text:?}"))?;
    Ok((status, text))
}

/// GET http://127.0.0.1:`port`/path with Host `host`, redirects not followed: status and
/// `Location`.
async fn http_head(port: u16, host: &str, path: &str) -> (u16, Option<String>) {
    let client = berth_tests::http_client()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (r.status().as_u16(), location)
}

/// The root certificate (PEM) of the CA of the Caddy whose admin API is `admin` (host:port).
async fn caddy_root(admin: &str) -> String {
    let v: serde_json::Value = berth_tests::http_client()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{admin}/pki/ca/local"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["root_certificate"]
        .as_str()
        .unwrap_or_else(|| panic!("no root_certificate in {v}"))
        .to_string()
}

/// Sets `key` to `value` in the environment of the cluster's next `berth` processes.
fn set_env(c: &mut Cluster, key: &str, value: &str) {
    c.env.retain(|(k, _)| k != key);
    c.env.push((key.to_string(), value.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_domains_get_https_from_caddy_and_a_restarted_node_converges() {
    // A separate cluster: its Caddy is the test's and keeps its config across node restarts.
    let mut c = Cluster::separate().await.unwrap();
    let https = free_port();
    let admin = c
        .env
        .iter()
        .find(|(k, _)| k == "BERTH_NODE__CADDY_ADMIN")
        .map(|(_, v)| v.clone())
        .unwrap();

    let src = TempDir::with_prefix("https-src").unwrap();
    let repo = GitRepo::from_dir(src.path(), &repo_root().join("examples/hello")).unwrap();
    repo.write("www/index.html", &hello_page("tls")).unwrap();
    repo.commit("tls").unwrap();
    let app = unique("tls");
    // A public-looking name: Caddy's own CA certifies it only because the node says so (left
    // to itself, Caddy would ask Let's Encrypt).
    let domain = format!("{app}.example.com");
    c.create_app(json!({"name": app, "repo": repo.url(), "port": 8080, "domains": [domain]}))
        .await
        .unwrap();
    let (id, d) = c.api.deploy_and_wait(&app, None, DEPLOY).await.unwrap();
    assert_eq!(
        d["status"],
        "succeeded",
        "{d}\n{}",
        c.api.log(&id).await.unwrap()
    );

    // Off (the default): plain HTTP serves the app; nothing listens for HTTPS.
    c.serves(&domain, "tls").await.unwrap();
    assert!(https_get(https, &domain, Trust::System).await.is_err());

    // The node restarts with HTTPS from Caddy's own CA; its Caddy still has the plain config.
    set_env(&mut c, "BERTH_NODE__HTTPS", "internal");
    set_env(&mut c, "BERTH_NODE__INGRESS_HTTPS", &https.to_string());
    c.restart_node().await.unwrap();
    let root = caddy_root(&admin).await;
    let (status, page) = eventually("the app over HTTPS", Duration::from_secs(20), || async {
        https_get(https, &domain, Trust::Root(&root)).await.ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("tls"), "{page}");
    // A client that trusts only the system's roots refuses the certificate: the handshake fails
    // on its issuer (Caddy's root is in no trust store but the one given above).
    let err = https_get(https, &domain, Trust::System).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("UnknownIssuer"),
        "the handshake must fail on the certificate's issuer: {err:#}"
    );
    // Plain HTTP for the app's domain is redirected to the same URL over HTTPS, port named.
    assert_eq!(
        http_head(c.ingress, &domain, "/a/b?c=d").await,
        (308, Some(format!("https://{domain}:{https}/a/b?c=d")))
    );
    // The app's URLs say HTTPS now, on the node's HTTPS port.
    let url = format!("https://{domain}:{https}/");
    eventually(
        "the app's URL over HTTPS",
        Duration::from_secs(20),
        || async {
            let (_, v) = c.api.get(&format!("/api/v1/apps/{app}")).await.ok()?;
            (v["urls"][0] == url.as_str()).then_some(())
        },
    )
    .await
    .unwrap();
    // A host no app has is still the catch-all's 404, over plain HTTP.
    let (status, body) = ingress_get(c.ingress, "nobody.example.com").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (404, "no app is deployed at this host\n")
    );

    // Back to off: the restarted node serves plain HTTP again, and HTTPS is gone.
    set_env(&mut c, "BERTH_NODE__HTTPS", "off");
    c.restart_node().await.unwrap();
    c.serves(&domain, "tls").await.unwrap();
    assert_eq!(http_head(c.ingress, &domain, "/").await.0, 200);
    let url = format!("http://{domain}:{}/", c.ingress);
    eventually(
        "the app's URL over plain HTTP",
        Duration::from_secs(20),
        || async {
            let (_, v) = c.api.get(&format!("/api/v1/apps/{app}")).await.ok()?;
            (v["urls"][0] == url.as_str()).then_some(())
        },
    )
    .await
    .unwrap();
    assert!(https_get(https, &domain, Trust::Root(&root)).await.is_err());
}
