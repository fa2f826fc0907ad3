//! The HTTPS listener's TLS configuration.

use rustls::server::ResolvesServerCert;
use std::sync::Arc;

/// A TLS acceptor that serves the certificates `certs` picks (by SNI: [`super::SniCerts`];
/// or always one: [`rustls::sign::SingleCertAndKey`]) and offers HTTP/2 and HTTP/1.1
/// through ALPN (HTTP/2 first: a client that speaks it gets it).
pub fn acceptor(certs: Arc<dyn ResolvesServerCert>) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A TLS acceptor that always serves `key` (the API's listener: one name, one
/// certificate).
pub fn single_acceptor(
    key: Arc<rustls::sign::CertifiedKey>,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    acceptor(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
}
