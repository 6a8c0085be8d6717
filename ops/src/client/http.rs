//! The HTTP client of the API: where it is (base URL and token, found as the module above
//! describes), how a request URL is built, and how an error answer becomes the command's outcome.
//!
//! Every request of the client commands goes through here, so the URL escaping, the bearer token
//! and the `<message> (HTTP <status>)` outcome are the same for all of them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_protocol::api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Conn, Failed};
use crate::settings::{client_config_path, Settings};

pub(super) struct Client {
    /// The API base URL as given (a trailing `/` removed): what messages show.
    pub(super) base: String,
    pub(super) token: String,
    http: reqwest::Client,
    /// For streams that stay open (SSE follows): no total timeout, only connect and read ones.
    pub(super) streaming: reqwest::Client,
    /// Where the token came from, for the message of a refused one.
    token_from: TokenFrom,
    /// The `--config` file given, if any.
    config: Option<PathBuf>,
}

/// Where [`resolve`] found the token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenFrom {
    Flag,
    Env,
    ConfigFile(PathBuf),
    ClientFile(PathBuf),
}

impl std::fmt::Display for TokenFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenFrom::Flag => write!(f, "--token"),
            TokenFrom::Env => write!(f, "BERTH_API__TOKEN"),
            TokenFrom::ConfigFile(p) => write!(f, "api.token in {}", p.display()),
            TokenFrom::ClientFile(p) => {
                write!(f, "{} (the client config `berth up` writes)", p.display())
            }
        }
    }
}

/// The message of a 401: where the refused token came from, and where `berth up` keeps the
/// right one (`<data_dir>/token` unless `api.token` is set, and the client config it writes).
fn refused_token(base: &str, from: &TokenFrom, data_dir: &std::path::Path) -> String {
    format!(
        "the API at {base} refused the token taken from {from}. `berth up` keeps its token in {} \
         (unless api.token / BERTH_API__TOKEN is set where it runs) and writes it with the API \
         address to {} at each start; pass the right one with --token, or remove what overrides it",
        data_dir.join("token").display(),
        client_config_path().display()
    )
}

/// The client config `berth up` writes.
#[derive(serde::Deserialize)]
struct ClientFile {
    api: String,
    token: String,
}

/// Finds the API: `--api` / `--token`, else the server's own configuration, else the client
/// config `berth up` writes.
pub(super) fn resolve(config: &Option<PathBuf>, conn: &Conn) -> Result<Client> {
    let mut base = conn.api.clone();
    let mut token = conn.token.clone();
    let mut token_from = TokenFrom::Flag;
    let mut ca_cert = conn.ca_cert.clone();
    if base.is_none() || token.is_none() || (ca_cert.is_none() && config.is_some()) {
        let s = Settings::load(config.as_deref())?;
        if ca_cert.is_none() {
            ca_cert = s.api.ca_cert.clone();
        }
        let configured = format!("{}://{}", s.api.scheme(), s.api.listen);
        if let Some(t) = s.api.token {
            base.get_or_insert(configured);
            if token.is_none() {
                token = Some(t);
                token_from = match config {
                    Some(file) if std::env::var_os("BERTH_API__TOKEN").is_none() => {
                        TokenFrom::ConfigFile(file.clone())
                    }
                    _ => TokenFrom::Env,
                };
            }
        }
    }
    if base.is_none() || token.is_none() {
        let path = client_config_path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let f: ClientFile =
                toml_lite(&text).with_context(|| format!("reading {}", path.display()))?;
            base.get_or_insert(f.api);
            if token.is_none() {
                token = Some(f.token);
                token_from = TokenFrom::ClientFile(path);
            }
        }
    }
    let (Some(base), Some(token)) = (base, token) else {
        bail!(
            "no API token: pass --api and --token, set BERTH_API__TOKEN, or run `berth up` (it writes {})",
            client_config_path().display()
        );
    };
    // An https:// API: rustls (ring) trusting the system's roots and `ca_cert`. A plain one
    // needs no roots; reqwest still wants the process's crypto provider.
    berth_bus::tls::install_provider();
    let tls = if base.starts_with("https://") {
        Some(tls_config(ca_cert.as_deref())?)
    } else {
        None
    };
    let builder = || {
        let b = reqwest::Client::builder();
        match &tls {
            Some(config) => b.tls_backend_preconfigured(config.clone()),
            None => b,
        }
    };
    Ok(Client {
        base: base.trim_end_matches('/').to_string(),
        token,
        token_from,
        config: config.clone(),
        http: builder().timeout(Duration::from_secs(30)).build()?,
        // The server sends a keep-alive comment every 15 s, so a minute of silence means the
        // connection is gone.
        streaming: builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()?,
    })
}

/// The client's TLS configuration: the system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` are
/// honoured) and the PEM certificates in `ca_cert`, if given.
fn tls_config(ca_cert: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // A system store with unreadable entries still gives the readable ones.
    let (_added, _ignored) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_cert {
        let what = || {
            format!(
                "the CA certificate {} (--ca-cert, BERTH_API__CA_CERT or api.ca_cert)",
                path.display()
            )
        };
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", what()))?;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{} is not a PEM certificate file ({e})", what()))?;
        if certs.is_empty() {
            bail!(
                "{} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
                what()
            );
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| anyhow::anyhow!("{} cannot be used as a root ({e})", what()))?;
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(berth_bus::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The sentence for a TLS failure with the API at `base`, when `e` is one (a certificate this
/// client does not trust, one for another name, an expired one, a server that speaks no TLS).
fn tls_failure(base: &str, e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::{CertificateError, Error as Tls};
    let mut cause = Some(e);
    let found = loop {
        let c = cause?;
        if let Some(t) = c.downcast_ref::<Tls>() {
            break t;
        }
        // rustls's error travels inside io::Errors (one in another), whose `source` skips what
        // they wrap: step into them.
        cause = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    };
    let trust =
        "give the CA that signed it with --ca-cert FILE (or BERTH_API__CA_CERT, or api.ca_cert in \
                 the configuration; SSL_CERT_FILE also works)";
    Some(match found {
        Tls::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the API at {base} presented a certificate that no CA this client trusts signed: {trust}"
        ),
        Tls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the API at {base} presented a certificate for another name: use the host name or \
             address the certificate names in --api, or give the API a certificate for this one"
        ),
        Tls::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("the API at {base} presented an expired certificate: renew api.tls_cert"),
        Tls::InvalidCertificate(other) => format!(
            "the API at {base} presented a certificate this client refuses ({other:?}): {trust}"
        ),
        Tls::InvalidMessage(_) => format!(
            "the API at {base} did not answer in TLS: is it an http:// API (no api.tls_cert)?"
        ),
        other => format!("TLS with the API at {base} failed: {other}"),
    })
}

/// Reads the two-line `key = "value"` file `berth up` writes, through the config crate's TOML.
fn toml_lite(text: &str) -> Result<ClientFile> {
    Ok(config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()?
        .try_deserialize()?)
}

/// The outcome of an error answer: the server's `{"error": …}` message (or the body as it is)
/// and the status.
pub(super) fn failure(status: reqwest::StatusCode, body: String) -> anyhow::Error {
    let msg = serde_json::from_str::<ErrorBody>(&body)
        .map(|e| e.error)
        .unwrap_or(body);
    Failed(format!("{msg} (HTTP {})", status.as_u16())).into()
}

impl Client {
    /// The outcome of a request that got no answer: for a TLS failure a sentence saying what to
    /// do ([`tls_failure`]), else reqwest's error under "cannot reach the Berth API".
    pub(super) fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        match tls_failure(&self.base, &e) {
            Some(sentence) => Failed(sentence).into(),
            None => anyhow::Error::new(e).context(format!(
                "cannot reach the Berth API at {} (is `berth up` running?)",
                self.base
            )),
        }
    }

    /// [`failure`], and for a 401 where the token came from and where the right one is.
    pub(super) fn failure(&self, status: reqwest::StatusCode, body: String) -> anyhow::Error {
        if status != reqwest::StatusCode::UNAUTHORIZED {
            return failure(status, body);
        }
        let data_dir = Settings::load(self.config.as_deref())
            .map(|s| s.data_dir)
            .unwrap_or_else(|_| Settings::default().data_dir);
        Failed(format!(
            "{} (HTTP 401)",
            refused_token(&self.base, &self.token_from, &data_dir)
        ))
        .into()
    }

    /// The URL of the API endpoint `/api/v1/<path…>`, with `query` form-encoded.
    ///
    /// Each element of `path` is escaped as one path segment, so a name or id from the command
    /// line (`a/b`, `x?y`, `%2F`) stays one segment of the endpoint it was meant for. `.` and `..`
    /// are refused: a URL cannot carry them as a segment (they would move to another endpoint).
    pub(super) fn url(&self, path: &[&str], query: &[(&str, &str)]) -> Result<String> {
        if let Some(dots) = path.iter().find(|s| matches!(**s, "." | "..")) {
            return Err(Failed(format!("{dots:?} is not a name or id")).into());
        }
        let mut url = match reqwest::Url::parse(&self.base) {
            Ok(url) if !url.cannot_be_a_base() => url,
            // Not a base URL a request can go to: reqwest reports it on the request, as for any
            // other unreachable API.
            _ => {
                let mut url = format!("{}/api/v1/{}", self.base, path.join("/"));
                if !query.is_empty() {
                    let q: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    url = format!("{url}?{}", q.join("&"));
                }
                return Ok(url);
            }
        };
        url.path_segments_mut()
            .expect("a base URL has path segments")
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url.into())
    }

    /// Sends a request with an optional JSON body and reads a JSON answer (`null` for an empty
    /// one); an error answer is a [`Failed`] outcome.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &[&str],
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let url = self.url(path, &[])?;
        self.send(method, &url, body).await
    }

    /// [`Client::call`] with a query string.
    pub(super) async fn call_with_query<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let url = self.url(path, query)?;
        self.send(method, &url, body).await
    }

    /// `GET` of a JSON answer.
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T> {
        let url = self.url(path, query)?;
        self.send(reqwest::Method::GET, &url, None::<&()>).await
    }

    /// [`Client::get`] that rides out a Redis outage: while the API answers 503 it asks again
    /// every second, for up to `patience`, saying once on stderr why it waits; then the 503 is
    /// the outcome like any error answer.
    pub(super) async fn get_patiently<T: DeserializeOwned>(
        &self,
        path: &[&str],
        patience: Duration,
    ) -> Result<T> {
        let url = self.url(path, &[])?;
        let started = std::time::Instant::now();
        let mut said = false;
        loop {
            let resp = self
                .http
                .get(&url)
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            let status = resp.status();
            let body = resp.text().await?;
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && started.elapsed() < patience {
                if !said {
                    said = true;
                    let msg = serde_json::from_str::<ErrorBody>(&body).map_or(body, |e| e.error);
                    eprintln!("waiting: {msg}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if !status.is_success() {
                return Err(self.failure(status, body));
            }
            return Ok(serde_json::from_str(&body)?);
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.answer(req).await
    }

    /// `POST`s `bytes` (a tar archive) and reads a JSON answer. No total timeout: a large
    /// upload on a slow link takes what it takes (the server bounds it).
    pub(super) async fn post_archive<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
        bytes: Vec<u8>,
    ) -> Result<T> {
        let url = self.url(path, query)?;
        let req = self
            .streaming
            .post(url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
            .body(bytes);
        self.answer(req).await
    }

    async fn answer<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            return Err(self.failure(status, String::from_utf8_lossy(&bytes).into_owned()));
        }
        if bytes.is_empty() {
            return Ok(serde_json::from_value(serde_json::Value::Null)?);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Whether `GET /api/v1/<path…>` finds something (a 404 says no; another error is one).
    pub(super) async fn exists(&self, path: &[&str]) -> Result<bool> {
        let resp = self
            .http
            .get(self.url(path, &[])?)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !status.is_success() {
            return Err(failure(status, resp.text().await.unwrap_or_default()));
        }
        Ok(true)
    }

    /// `GET` of a plain-text answer.
    pub(super) async fn text(&self, path: &[&str]) -> Result<String> {
        let resp = self
            .http
            .get(self.url(path, &[])?)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(self.failure(status, text));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        let conn = Conn {
            api: Some(base.into()),
            token: Some("t".into()),
            ca_cert: None,
            json: false,
        };
        resolve(&None, &conn).unwrap()
    }

    #[test]
    fn urls_escape_each_segment() {
        let c = client("http://127.0.0.1:7700/");
        assert_eq!(
            c.url(&["apps", "web", "deployments"], &[]).unwrap(),
            "http://127.0.0.1:7700/api/v1/apps/web/deployments"
        );
        assert_eq!(
            c.url(&["apps", "a/b?c#d e%2F"], &[]).unwrap(),
            "http://127.0.0.1:7700/api/v1/apps/a%2Fb%3Fc%23d%20e%252F"
        );
        assert!(c.url(&["apps", ".."], &[]).is_err());
        assert!(c.url(&["deployments", "."], &[]).is_err());
    }

    #[test]
    fn urls_keep_a_base_path_and_encode_the_query() {
        let c = client("https://example.com/berth");
        assert_eq!(
            c.url(
                &["apps", "web", "logs"],
                &[("tail", "5"), ("since", "2h ago&x=1")]
            )
            .unwrap(),
            "https://example.com/berth/api/v1/apps/web/logs?tail=5&since=2h+ago%26x%3D1"
        );
    }

    #[test]
    fn an_unusable_base_is_left_for_reqwest_to_report() {
        assert_eq!(
            client("mailto:x").url(&["apps"], &[]).unwrap(),
            "mailto:x/api/v1/apps"
        );
        assert_eq!(
            client("notaurl")
                .url(&["apps", "web"], &[("follow", "1")])
                .unwrap(),
            "notaurl/api/v1/apps/web?follow=1"
        );
    }

    #[test]
    fn error_answers_become_failures() {
        let e = failure(
            reqwest::StatusCode::NOT_FOUND,
            r#"{"error":"no app web"}"#.into(),
        );
        assert_eq!(e.to_string(), "no app web (HTTP 404)");
        let e = failure(reqwest::StatusCode::CONFLICT, "not json".into());
        assert_eq!(e.to_string(), "not json (HTTP 409)");
        assert!(e.downcast_ref::<Failed>().is_some());
    }

    #[test]
    fn a_refused_token_names_its_origin_and_where_the_right_one_is() {
        let m = refused_token(
            "http://127.0.0.1:7700",
            &TokenFrom::Env,
            std::path::Path::new("/var/lib/berth"),
        );
        assert!(
            m.starts_with(
                "the API at http://127.0.0.1:7700 refused the token taken from BERTH_API__TOKEN. \
                 `berth up` keeps its token in /var/lib/berth/token"
            ),
            "{m}"
        );
        assert_eq!(TokenFrom::Flag.to_string(), "--token");
        assert_eq!(
            TokenFrom::ConfigFile("/etc/berth.toml".into()).to_string(),
            "api.token in /etc/berth.toml"
        );
        assert!(c_unauthorized().contains("refused the token taken from --token"));
    }

    #[test]
    fn a_tls_failure_is_one_sentence_saying_what_to_do() {
        use rustls::{CertificateError, Error as Tls};
        // As reqwest hands it over: rustls's error in an io::Error in another.
        let wrapped =
            |e: Tls| std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        let base = "https://127.0.0.1:7700";
        let said = |e: Tls| tls_failure(base, &wrapped(e));
        let unknown = said(Tls::InvalidCertificate(CertificateError::UnknownIssuer)).unwrap();
        assert!(
            unknown.starts_with(
                "the API at https://127.0.0.1:7700 presented a certificate that no CA this client \
                 trusts signed: give the CA that signed it with --ca-cert FILE"
            ),
            "{unknown}"
        );
        let name = said(Tls::InvalidCertificate(CertificateError::NotValidForName)).unwrap();
        assert!(name.contains("a certificate for another name"), "{name}");
        let expired = said(Tls::InvalidCertificate(CertificateError::Expired)).unwrap();
        assert!(expired.contains("an expired certificate"), "{expired}");
        let plain = said(Tls::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ))
        .unwrap();
        assert!(plain.contains("did not answer in TLS"), "{plain}");
        // Anything else is not a TLS failure: the caller says "cannot reach".
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_failure(base, &refused), None);
    }

    #[test]
    fn a_ca_file_that_holds_no_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("berth-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = tls_config(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
        let e = format!(
            "{:#}",
            tls_config(Some(&dir.join("missing.pem"))).unwrap_err()
        );
        assert!(e.starts_with("cannot read the CA certificate"), "{e}");
        assert!(tls_config(None).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn c_unauthorized() -> String {
        client("http://127.0.0.1:1")
            .failure(
                reqwest::StatusCode::UNAUTHORIZED,
                r#"{"error":"the API token is wrong"}"#.into(),
            )
            .to_string()
    }
}
