//! The router's certificates by server name, for the TLS handshake.
//!
//! The table is replaced whole (from the store, after each change and at each full
//! converge look), never edited in place, so a handshake reads one consistent table
//! without waiting: readers clone an `Arc` under a lock held for nanoseconds.

use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Certificates by the name they serve: exact names (`www.example.com`) and wildcards
/// (`*.example.com`, which serves one label below `example.com`).
#[derive(Default)]
pub struct SniCerts {
    table: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
}

impl std::fmt::Debug for SniCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniCerts")
            .field("names", &self.table.read().len())
            .finish()
    }
}

impl SniCerts {
    pub fn new() -> Arc<SniCerts> {
        Arc::new(SniCerts::default())
    }

    /// Replaces the whole table: `name` (lowercase; `*.` for a wildcard) to its key and
    /// chain.
    pub fn replace(&self, certs: impl IntoIterator<Item = (String, Arc<CertifiedKey>)>) {
        let table: HashMap<String, Arc<CertifiedKey>> = certs
            .into_iter()
            .map(|(name, key)| (name.to_ascii_lowercase(), key))
            .collect();
        *self.table.write() = Arc::new(table);
    }

    /// How many names have a certificate.
    pub fn len(&self) -> usize {
        self.table.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The certificate for `server_name`: its own, or else the wildcard of its parent.
    pub fn find(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        let table = self.table.read().clone();
        if let Some(key) = table.get(&name) {
            return Some(key.clone());
        }
        let (_, parent) = name.split_once('.')?;
        table.get(&format!("*.{parent}")).cloned()
    }
}

impl ResolvesServerCert for SniCerts {
    /// A client that names no server, or one we have no certificate for, gets none: the
    /// handshake fails (rustls answers `unrecognized_name`) rather than showing it some
    /// other app's certificate.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(name: &str) -> Arc<CertifiedKey> {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen");
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).expect("key");
        Arc::new(CertifiedKey::new(vec![made.cert.der().clone()], signer))
    }

    #[test]
    fn exact_names_then_one_label_of_wildcard() {
        let certs = SniCerts::new();
        let www = key_for("www.example.com");
        let any = key_for("*.example.com");
        certs.replace([
            ("WWW.example.com".to_string(), www.clone()),
            ("*.example.com".to_string(), any.clone()),
        ]);
        let same = |a: &Option<Arc<CertifiedKey>>, b: &Arc<CertifiedKey>| {
            a.as_ref().is_some_and(|a| Arc::ptr_eq(a, b))
        };
        assert!(same(&certs.find("www.example.com"), &www));
        assert!(same(&certs.find("www.EXAMPLE.com."), &www));
        assert!(same(&certs.find("api.example.com"), &any));
        // A wildcard covers one label: neither the apex nor two labels down.
        assert!(certs.find("example.com").is_none());
        assert!(certs.find("a.b.example.com").is_none());
        assert!(certs.find("example.org").is_none());
        certs.replace([]);
        assert!(certs.find("www.example.com").is_none());
    }
}
