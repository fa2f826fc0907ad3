//! The certificates the HTTPS listener serves: the host's own (for `NAME.DOMAIN`, given
//! by the operator) and the apps' (for their custom domains, from the store).

use super::SniCerts;
use super::certificate::inspect;
use anyhow::Context;
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// The listener's table and the host's own certificate, which every refresh keeps.
#[derive(Debug, Default)]
pub struct HostCerts {
    sni: Arc<SniCerts>,
    /// The host's certificate for `*.DOMAIN`, `DOMAIN` (`--tls-cert`, `--tls-key`).
    own: Option<(String, Arc<CertifiedKey>)>,
    /// The apps' certificates as last read, by domain, with a digest of their PEM: a
    /// refresh parses (and warns of one it cannot serve) only those that changed (a full
    /// look reads them all). `None`: that PEM cannot be served.
    parsed: parking_lot::Mutex<std::collections::HashMap<String, Parsed>>,
}

/// A digest of a certificate's chain and key PEM.
type Digest = [u8; 32];

/// One domain's PEM as last parsed: its digest, and what rustls serves (`None`: nothing
/// can be served from it).
type Parsed = (Digest, Option<Arc<CertifiedKey>>);

/// One app certificate as the store holds it: the domain it serves and its PEM.
pub struct PemCert<'a> {
    pub domain: &'a str,
    pub chain_pem: &'a str,
    pub key_pem: &'a str,
}

impl HostCerts {
    /// Serves `own` (when given) for the apps' default names under `domain`.
    pub fn new(domain: &str, own: Option<Arc<CertifiedKey>>) -> HostCerts {
        let certs = HostCerts {
            sni: SniCerts::new(),
            own: own.map(|key| (domain.to_ascii_lowercase(), key)),
            parsed: Default::default(),
        };
        certs.install(Vec::new());
        certs
    }

    /// The table rustls reads at each handshake.
    pub fn sni(&self) -> Arc<SniCerts> {
        self.sni.clone()
    }

    /// Replaces the apps' certificates with `certs` (the store's), parsing only the
    /// ones that changed since the last call. One that cannot be served (checked when it
    /// was added, so only a damaged store gives one) is left out and logged; the others
    /// are served.
    pub fn install_pem<'a>(&self, certs: impl IntoIterator<Item = PemCert<'a>>) {
        use sha2::Digest as _;
        let mut parsed = self.parsed.lock();
        let mut next = std::collections::HashMap::new();
        for cert in certs {
            if cert.chain_pem.is_empty() {
                continue;
            }
            let mut hasher = sha2::Sha256::new();
            hasher.update(cert.chain_pem.as_bytes());
            hasher.update([0]);
            hasher.update(cert.key_pem.as_bytes());
            let digest: Digest = hasher.finalize().into();
            let key = match parsed.get(cert.domain) {
                Some((seen, key)) if *seen == digest => key.clone(),
                _ => match inspect(cert.chain_pem, cert.key_pem, chrono::Utc::now()) {
                    Ok(checked) => Some(checked.certified_key),
                    Err(e) => {
                        tracing::warn!(domain = cert.domain, "cannot serve the certificate: {e:#}");
                        None
                    }
                },
            };
            next.insert(cert.domain.to_ascii_lowercase(), (digest, key));
        }
        let table = next
            .iter()
            .filter_map(|(domain, (_, key))| Some((domain.clone(), key.clone()?)))
            .collect();
        *parsed = next;
        self.install(table);
    }

    /// Replaces the apps' certificates (`domain`, key and chain) in the table; the
    /// host's own stays. An app's certificate for a name wins over the host's wildcard.
    fn install(&self, apps: Vec<(String, Arc<CertifiedKey>)>) {
        let own = self.own.iter().flat_map(|(domain, key)| {
            [
                (format!("*.{domain}"), key.clone()),
                (domain.clone(), key.clone()),
            ]
        });
        self.sni.replace(own.chain(apps));
    }
}

/// Reads the host's own certificate (`--tls-cert`, `--tls-key`), checked as an app's is
/// (readable, the key matching, in order, valid now) but for no name in particular: the
/// operator knows which names the host answers to.
pub fn certified_key_files(
    chain: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain_pem =
        std::fs::read_to_string(chain).with_context(|| format!("reading {}", chain.display()))?;
    let key_pem =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let checked = inspect(&chain_pem, &key_pem, chrono::Utc::now())
        .with_context(|| format!("{} and {}", chain.display(), key.display()))?;
    Ok(checked.certified_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_for(name: &str) -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen");
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    #[test]
    fn apps_certificates_are_parsed_once_and_the_hosts_own_stays() {
        let (own_chain, own_key) = pem_for("*.apps.test");
        let own = inspect(&own_chain, &own_key, chrono::Utc::now())
            .expect("own")
            .certified_key;
        let certs = HostCerts::new("apps.test", Some(own.clone()));
        let sni = certs.sni();
        assert!(
            sni.find("shop.apps.test")
                .is_some_and(|k| Arc::ptr_eq(&k, &own))
        );

        let (chain, key) = pem_for("www.example.test");
        let (other_chain, other_key) = pem_for("other.example.test");
        let cert = |domain, chain, key| PemCert {
            domain,
            chain_pem: chain,
            key_pem: key,
        };
        certs.install_pem([
            cert("www.example.test", &chain, &key),
            // Still being ordered over ACME: nothing to serve yet.
            cert("new.example.test", "", ""),
            // A damaged entry is left out; the others are served.
            cert("bad.example.test", "not PEM", "not PEM"),
        ]);
        let first = sni.find("www.example.test").expect("served");
        assert!(sni.find("new.example.test").is_none());
        assert!(sni.find("bad.example.test").is_none());
        assert!(sni.find("shop.apps.test").is_some(), "the host's own stays");

        // The same PEM again is not parsed again; a new one is.
        certs.install_pem([cert("www.example.test", &chain, &key)]);
        let again = sni.find("www.example.test").expect("served");
        assert!(Arc::ptr_eq(&first, &again));
        certs.install_pem([cert("www.example.test", &other_chain, &other_key)]);
        let replaced = sni.find("www.example.test").expect("served");
        assert!(!Arc::ptr_eq(&first, &replaced));

        // A mismatched key is left out like any entry that cannot be served.
        certs.install_pem([cert("www.example.test", &chain, &other_key)]);
        assert!(sni.find("www.example.test").is_none());
    }
}
