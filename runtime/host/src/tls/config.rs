//! The HTTPS listener's TLS configuration.

use super::SniCerts;
use std::sync::Arc;

/// A TLS acceptor that serves the certificates of `certs` by SNI and offers HTTP/2 and
/// HTTP/1.1 through ALPN (HTTP/2 first: a client that speaks it gets it).
pub fn acceptor(certs: Arc<SniCerts>) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
