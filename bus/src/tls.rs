//! The one TLS crypto provider of a Berth process: rustls with `ring` (no OpenSSL, no aws-lc).
//!
//! reqwest builds its rustls configuration from the process's default provider and panics when
//! none is installed, so every crate that makes an HTTP client calls [`install_provider`] first
//! (it is idempotent). Redis (`rediss://`) and the API's TLS listener use the same provider.

use std::sync::Arc;

/// The provider every TLS configuration of Berth is built with.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs [`provider`] as the process's default, unless one is installed already.
pub fn install_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing it is fine: it is the same provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
