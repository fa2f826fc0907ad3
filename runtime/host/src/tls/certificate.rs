//! Checking a certificate before the host serves it: what `certs:add` refuses (with one
//! clear reason), and what the SNI table and the ACME worker load.
//!
//! A certificate is served only if its PEM reads, its private key is one rustls can sign
//! with and is the key of the leaf's public key, each certificate of the chain is signed
//! by the next one (leaf first, then intermediates), it is valid now, and one of its
//! subjectAltName DNS names covers the domain (a wildcard `*.example.com` covers exactly
//! one label: `www.example.com`, not `example.com` nor `a.b.example.com`). Names in the
//! subject CN are ignored, as browsers do.

use chrono::{DateTime, Utc};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use wdeploy_core::Domain;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The largest certificate chain accepted, in PEM bytes (a leaf and a few intermediates
/// take 2 to 10 KiB).
pub const MAX_CHAIN_BYTES: usize = 64 << 10;
/// The largest private key accepted, in PEM bytes (an RSA 8192 key takes about 6.5 KiB).
pub const MAX_KEY_BYTES: usize = 16 << 10;

/// Why a certificate cannot be served. Each message starts with "the certificate" or
/// "the private key", so the CLI can name the file it read each from.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(
        "the certificate is {size} bytes, over the limit of {MAX_CHAIN_BYTES} bytes for a chain"
    )]
    ChainTooLarge { size: usize },
    #[error("the private key is {size} bytes, over the limit of {MAX_KEY_BYTES} bytes")]
    KeyTooLarge { size: usize },
    #[error("the certificate is not readable PEM: {0}")]
    UnreadableChain(String),
    #[error(
        "the certificate holds no PEM `CERTIFICATE` block: give the certificate's PEM file (the leaf first, then its intermediates)"
    )]
    NoCertificate,
    #[error("the certificate is not a readable X.509 certificate (block {position}): {reason}")]
    BadCertificate { position: usize, reason: String },
    #[error("the private key is not readable PEM: {0}")]
    UnreadableKey(String),
    #[error(
        "the private key holds no PEM private key block (`PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY`)"
    )]
    NoKey,
    #[error(
        "the private key is of a kind wdeploy cannot serve ({0}): use an RSA, ECDSA (P-256, P-384) or Ed25519 key"
    )]
    UnsupportedKey(String),
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error(
        "the certificate is out of order: certificate {} of its chain did not sign certificate {position}; give the leaf first, then each intermediate",
        position + 1
    )]
    ChainOrder { position: usize },
    #[error("the certificate expired on {}", day(.0))]
    Expired(DateTime<Utc>),
    #[error("the certificate is not valid before {}", day(.0))]
    NotYetValid(DateTime<Utc>),
    #[error("the certificate does not cover {domain}: {}", covers(.names))]
    NotCovering { domain: Domain, names: Vec<String> },
}

fn day(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "it covers a, b" (or that it covers no name at all).
pub fn covers(names: &[String]) -> String {
    if names.is_empty() {
        "it names no DNS name in its subjectAltName".to_string()
    } else {
        format!("it covers {}", names.join(", "))
    }
}

/// A certificate fit to serve for a domain.
#[derive(Debug, Clone)]
pub struct CheckedCert {
    /// The leaf's issuer: its CN, or its whole DN when it has none.
    pub issuer: String,
    pub not_after: DateTime<Utc>,
    /// The DNS names of the leaf's subjectAltName, as written (`*.example.com`).
    pub names: Vec<String>,
    /// The chain and key as rustls serves them.
    pub certified_key: Arc<CertifiedKey>,
}

impl CheckedCert {
    /// `NotCovering` (with the names it covers) unless it covers `domain`.
    pub fn must_cover(&self, domain: &Domain) -> Result<(), CertError> {
        if self.covers(domain) {
            Ok(())
        } else {
            Err(CertError::NotCovering {
                domain: domain.clone(),
                names: self.names.clone(),
            })
        }
    }

    /// Whether one of its names covers `domain`.
    pub fn covers(&self, domain: &Domain) -> bool {
        self.names.iter().any(|name| name_covers(name, domain))
    }
}

/// Checks `chain_pem` (leaf first, then intermediates) and `key_pem` for serving
/// `domain` at `now`.
pub fn check(
    chain_pem: &str,
    key_pem: &str,
    domain: &Domain,
    now: DateTime<Utc>,
) -> Result<CheckedCert, CertError> {
    let checked = inspect(chain_pem, key_pem, now)?;
    checked.must_cover(domain)?;
    Ok(checked)
}

/// Everything [`check`] checks but the domain: for a certificate whose domains are still
/// to be chosen among those it covers.
pub fn inspect(
    chain_pem: &str,
    key_pem: &str,
    now: DateTime<Utc>,
) -> Result<CheckedCert, CertError> {
    if chain_pem.len() > MAX_CHAIN_BYTES {
        return Err(CertError::ChainTooLarge {
            size: chain_pem.len(),
        });
    }
    if key_pem.len() > MAX_KEY_BYTES {
        return Err(CertError::KeyTooLarge {
            size: key_pem.len(),
        });
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::UnreadableChain(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(at, der)| match X509Certificate::from_der(der) {
            Ok((_, cert)) => Ok(cert),
            Err(e) => Err(CertError::BadCertificate {
                position: at + 1,
                reason: e.to_string(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => CertError::NoKey,
        e => CertError::UnreadableKey(e.to_string()),
    })?;
    let signing_key =
        any_supported_type(&key).map_err(|e| CertError::UnsupportedKey(e.to_string()))?;
    let certified_key = CertifiedKey::new(chain.clone(), signing_key);
    match certified_key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(CertError::KeyMismatch);
        }
        Err(e) => return Err(CertError::UnsupportedKey(e.to_string())),
    }
    for (at, pair) in parsed.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            return Err(CertError::ChainOrder { position: at + 1 });
        }
    }
    let leaf = &parsed[0];
    let validity = leaf.validity();
    let not_before = time(validity.not_before.timestamp());
    let not_after = time(validity.not_after.timestamp());
    if now < not_before {
        return Err(CertError::NotYetValid(not_before));
    }
    if now > not_after {
        return Err(CertError::Expired(not_after));
    }
    Ok(CheckedCert {
        issuer: issuer(leaf),
        not_after,
        names: dns_names(leaf),
        certified_key: Arc::new(certified_key),
    })
}

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

fn issuer(leaf: &X509Certificate<'_>) -> String {
    leaf.issuer()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| leaf.issuer().to_string())
}

/// The leaf's subjectAltName DNS names, lowercase (an unreadable extension names none).
fn dns_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(name) => Some(name.trim_end_matches('.').to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Whether the certificate name `name` covers `domain`: the same name, or a wildcard for
/// exactly its first label.
fn name_covers(name: &str, domain: &Domain) -> bool {
    let domain = domain.as_str();
    match name.strip_prefix("*.") {
        Some(parent) => domain
            .split_once('.')
            .is_some_and(|(_, rest)| rest == parent && parent.contains('.')),
        None => name == domain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd,
    };

    /// A CA of its own (self-signed) named `cn`.
    struct Ca {
        cert_pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    impl Ca {
        /// An intermediate CA signed by this one.
        fn intermediate(&self, cn: &str) -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            Ca {
                cert_pem: cert.pem(),
                issuer: Issuer::new(params, key),
            }
        }

        /// A leaf for `names` valid from `from` to `until` (years): (cert PEM, key PEM).
        fn leaf_between(&self, names: &[&str], from: i32, until: i32) -> (String, String) {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = CertificateParams::new(names).unwrap();
            params.not_before = date_time_ymd(from, 1, 1);
            params.not_after = date_time_ymd(until, 1, 1);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        }

        fn leaf(&self, names: &[&str]) -> (String, String) {
            self.leaf_between(names, 2020, 2040)
        }
    }

    fn domain(name: &str) -> Domain {
        name.parse().unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_good_certificate_is_checked_with_its_issuer_names_and_expiry() {
        let ca = ca("Test Root CA");
        let (cert, key) = ca.leaf(&["www.example.com", "api.example.com"]);
        let checked = check(&cert, &key, &domain("api.example.com"), now()).unwrap();
        assert_eq!(checked.issuer, "Test Root CA");
        assert_eq!(checked.names, vec!["www.example.com", "api.example.com"]);
        assert_eq!(checked.not_after.to_rfc3339(), "2040-01-01T00:00:00+00:00");
        assert_eq!(checked.certified_key.cert.len(), 1);
        assert!(checked.certified_key.keys_match().is_ok());
    }

    #[test]
    fn a_wildcard_covers_one_label_only() {
        let ca = ca("Test Root CA");
        let (cert, key) = ca.leaf(&["*.example.com"]);
        assert!(check(&cert, &key, &domain("www.example.com"), now()).is_ok());
        for not in ["example.com", "a.b.example.com", "www.example.org"] {
            let refused = check(&cert, &key, &domain(not), now()).unwrap_err();
            assert_eq!(
                refused.to_string(),
                format!("the certificate does not cover {not}: it covers *.example.com"),
            );
        }
        // A wildcard for a whole TLD is nothing.
        assert!(!name_covers("*.com", &domain("example.com")));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_by_name() {
        let ca = ca("Test Root CA");
        let (cert, _) = ca.leaf(&["www.example.com"]);
        let (_, other_key) = ca.leaf(&["www.example.com"]);
        let refused = check(&cert, &other_key, &domain("www.example.com"), now()).unwrap_err();
        assert!(matches!(refused, CertError::KeyMismatch), "{refused:?}");
        assert_eq!(
            refused.to_string(),
            "the private key does not match the certificate"
        );
    }

    #[test]
    fn a_certificate_for_other_names_lists_them() {
        let ca = ca("Test Root CA");
        let (cert, key) = ca.leaf(&["a.example.com", "b.example.com"]);
        let refused = check(&cert, &key, &domain("www.example.com"), now()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the certificate does not cover www.example.com: it covers a.example.com, b.example.com"
        );
        // One naming no DNS name at all (only an IP address).
        let (cert, key) = ca.leaf(&["127.0.0.1"]);
        let refused = check(&cert, &key, &domain("www.example.com"), now()).unwrap_err();
        assert!(
            refused
                .to_string()
                .ends_with("it names no DNS name in its subjectAltName"),
            "{refused}"
        );
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_refused_with_the_date() {
        let ca = ca("Test Root CA");
        let www = domain("www.example.com");
        let (cert, key) = ca.leaf_between(&["www.example.com"], 2020, 2024);
        let refused = check(&cert, &key, &www, now()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the certificate expired on 2024-01-01 00:00 UTC"
        );
        let (cert, key) = ca.leaf_between(&["www.example.com"], 2030, 2031);
        let refused = check(&cert, &key, &www, now()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the certificate is not valid before 2030-01-01 00:00 UTC"
        );
    }

    #[test]
    fn garbage_is_refused_saying_what_is_missing() {
        let ca = ca("Test Root CA");
        let (cert, key) = ca.leaf(&["www.example.com"]);
        let www = domain("www.example.com");
        let refused = |chain: &str, key: &str| check(chain, key, &www, now()).unwrap_err();
        assert!(matches!(
            refused("not a certificate", &key),
            CertError::NoCertificate
        ));
        // The two files swapped: no certificate in the first.
        assert!(matches!(refused(&key, &cert), CertError::NoCertificate));
        assert!(matches!(refused(&cert, &cert), CertError::NoKey));
        assert!(matches!(refused(&cert, ""), CertError::NoKey));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = refused(broken, &key);
        assert!(matches!(e, CertError::UnreadableChain(_)), "{e:?}");
        let not_x509 = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = refused(not_x509, &key);
        assert!(
            matches!(e, CertError::BadCertificate { position: 1, .. }),
            "{e:?}"
        );
        let not_a_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = refused(&cert, not_a_key);
        assert!(matches!(e, CertError::UnsupportedKey(_)), "{e:?}");
        // Too large to read at all.
        let huge = "x".repeat(MAX_CHAIN_BYTES + 1);
        let e = refused(&huge, &key);
        assert!(
            e.to_string().contains("over the limit of 65536 bytes"),
            "{e}"
        );
        let e = refused(&cert, &"x".repeat(MAX_KEY_BYTES + 1));
        assert!(matches!(e, CertError::KeyTooLarge { .. }), "{e:?}");
    }

    #[test]
    fn a_chain_with_its_intermediate_is_served_whole_and_in_order_only() {
        let root = ca("Test Root CA");
        let intermediate = root.intermediate("Test Intermediate CA");
        let (leaf, key) = intermediate.leaf(&["www.example.com"]);
        let chain = format!("{leaf}{}", intermediate.cert_pem);
        let www = domain("www.example.com");
        let checked = check(&chain, &key, &www, now()).unwrap();
        assert_eq!(checked.issuer, "Test Intermediate CA");
        assert_eq!(checked.certified_key.cert.len(), 2);
        // The intermediate first is the wrong order (its key does not match either).
        let swapped = format!("{}{leaf}", intermediate.cert_pem);
        assert!(check(&swapped, &key, &www, now()).is_err());
        // An unrelated CA after the leaf did not sign it.
        let stranger = format!("{leaf}{}", ca("Other CA").cert_pem);
        let e = check(&stranger, &key, &www, now()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the certificate is out of order: certificate 2 of its chain did not sign certificate 1; give the leaf first, then each intermediate"
        );
        // With the root too.
        let full = format!("{chain}{}", root.cert_pem);
        assert_eq!(
            check(&full, &key, &www, now())
                .unwrap()
                .certified_key
                .cert
                .len(),
            3
        );
    }
}
