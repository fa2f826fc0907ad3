//! TLS as a client. Log drains, the ACME directory and guests' outgoing requests all
//! trust the webpki roots, with rustls' safe default protocol versions over ring; an
//! operator may add CA certificates for the first two (`--drain-ca`, `--acme-ca`), never
//! for guests.

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

/// A client configuration trusting the webpki roots and every certificate of
/// `extra_roots_pem`, the file given with the host's option `flag` (named in errors).
pub fn client_config(extra_roots_pem: &[u8], flag: &str) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    if !extra_roots_pem.is_empty() {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(extra_roots_pem) {
            let cert = cert.with_context(|| format!("reading a certificate of {flag}"))?;
            roots
                .add(cert)
                .with_context(|| format!("a certificate of {flag} is no CA certificate"))?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "{flag} holds no PEM certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls' default protocol versions over ring")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_must_be_pem_certificates() {
        assert!(client_config(&[], "--drain-ca").is_ok());
        let e = client_config(b"not a certificate", "--acme-ca").unwrap_err();
        assert_eq!(e.to_string(), "--acme-ca holds no PEM certificate");
    }
}
