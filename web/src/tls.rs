//! The API's TLS: the certificate chain and private key that `api.tls_cert` and `api.tls_key`
//! name, read once at start into one rustls server configuration (the `ring` provider of
//! `berth_bus::tls`, TLS 1.2 and 1.3, ALPN `http/1.1` — the API speaks nothing else).
//!
//! Every way the files can be wrong is found here, before the API listens, and said in a
//! sentence that names the setting and the file: a process that starts answers TLS.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS setting that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The API's TLS acceptor; cloning shares the one configuration.
#[derive(Clone)]
pub struct Tls(pub(crate) tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Reads the PEM certificate chain at `cert` (the server's certificate first, then any
    /// intermediates) and the PEM private key at `key` (PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let read = |setting: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| TlsError(format!("cannot read {setting} {} ({e})", path.display())))
        };
        let cert_pem = read("api.tls_cert", cert)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                TlsError(format!(
                    "api.tls_cert {} is not a PEM certificate file ({e})",
                    cert.display()
                ))
            })?;
        if chain.is_empty() {
            return Err(TlsError(format!(
                "api.tls_cert {} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
                cert.display()
            )));
        }
        let key_pem = read("api.tls_key", key)?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            TlsError(format!(
                "api.tls_key {} holds no PEM private key ({e})",
                key.display()
            ))
        })?;
        let mut config = rustls::ServerConfig::builder_with_provider(berth_bus::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| {
                TlsError(format!(
                    "api.tls_cert {} and api.tls_key {} cannot be used together ({e})",
                    cert.display(),
                    key.display()
                ))
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(cert: &Path, key: &Path) -> String {
        Tls::load(cert, key).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn each_bad_file_is_named_with_what_is_wrong() {
        let dir = tempfile::TempDir::with_prefix("berth-web-tls").unwrap();
        let ca = berth_tests::test_ca(dir.path()).unwrap();
        assert!(Tls::load(&ca.cert, &ca.key).is_ok());

        let missing = dir.path().join("missing.pem");
        let e = error(&missing, &ca.key);
        assert!(e.starts_with("cannot read api.tls_cert "), "{e}");
        let e = error(&ca.cert, &missing);
        assert!(e.starts_with("cannot read api.tls_key "), "{e}");
        // A key where the certificate goes, and the other way round.
        let e = error(&ca.key, &ca.key);
        assert!(e.contains("holds no certificate"), "{e}");
        let e = error(&ca.cert, &ca.cert);
        assert!(e.contains("holds no PEM private key"), "{e}");
        // The CA's key does not belong to the server's certificate.
        let e = error(&ca.cert, &dir.path().join("ca.key"));
        assert!(e.contains("cannot be used together"), "{e}");
    }
}
