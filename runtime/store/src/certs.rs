//! The apps' TLS certificates: one per custom domain at most (a domain belongs to one
//! app), either brought by the user (`certs:add`) or ordered over ACME (`domains:add
//! --acme`). The store keeps them as PEM text and knows nothing of TLS: the host checks
//! a certificate before putting it, and reads them all to fill its SNI table.

use crate::error::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wdeploy_core::{AppName, Domain};

/// The most certificates one app may have (one per domain): each holds up to about
/// 80 KiB of PEM, and every node keeps them all in memory for its SNI table.
pub const MAX_CERTS_PER_APP: usize = 100;

/// Where a domain's certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertSource {
    /// Brought by the user (`certs:add`).
    Manual,
    /// Ordered and renewed by the host over ACME (`domains:add --acme`).
    Acme,
}

impl CertSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CertSource::Manual => "manual",
            CertSource::Acme => "acme",
        }
    }

    /// The stored spelling back (`None` for anything else).
    pub fn parse(text: &str) -> Option<CertSource> {
        match text {
            "manual" => Some(CertSource::Manual),
            "acme" => Some(CertSource::Acme),
            _ => None,
        }
    }
}

/// One domain's TLS certificate of an app: at most one per domain (the domain belongs to
/// one app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCert {
    /// The SNI name it serves.
    pub domain: Domain,
    pub app: AppName,
    pub source: CertSource,
    /// PEM: leaf first, then intermediates. Empty while an ACME certificate is still
    /// being ordered.
    pub chain_pem: String,
    /// PEM private key (PKCS#8, or SEC1/PKCS#1). Empty while ordering.
    pub key_pem: String,
    /// The issuer CN (or DN) of the leaf ("" while ordering).
    pub issuer: String,
    /// When the leaf expires (`None` while ordering).
    pub not_after: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// For ACME: the last failure to order or renew, shown by `certs` (`None` when fine).
    pub acme_error: Option<String>,
}

impl StoredCert {
    /// A certificate still to be ordered over ACME for `domain`: what `domains:add
    /// --acme` stores so the ACME worker orders it.
    pub fn ordering(app: &AppName, domain: &Domain) -> StoredCert {
        StoredCert {
            domain: domain.clone(),
            app: app.clone(),
            source: CertSource::Acme,
            chain_pem: String::new(),
            key_pem: String::new(),
            issuer: String::new(),
            not_after: None,
            updated_at: Utc::now(),
            acme_error: None,
        }
    }

    /// Whether it holds a certificate yet (an ACME one being ordered does not).
    pub fn is_issued(&self) -> bool {
        !self.chain_pem.is_empty() && !self.key_pem.is_empty()
    }
}

/// The refusal of a certificate past [`MAX_CERTS_PER_APP`] (the same on every backend).
pub(crate) fn over_budget(app: &AppName) -> crate::StoreError {
    crate::StoreError::Invalid(format!(
        "{app} has {MAX_CERTS_PER_APP} certificates, the most an app may have: remove one first (wdeploy certs:remove)"
    ))
}

/// The apps' certificates, behind whichever backend runs. Removing a domain or deleting
/// the app removes its certificate too.
#[async_trait]
pub trait CertStore: Send + Sync + 'static {
    /// Sets the domain's certificate (replacing any). `NotFound` when the app does not
    /// have the domain; `Invalid` when it would be the app's certificate number
    /// [`MAX_CERTS_PER_APP`] + 1. Bumps the app's revision (embedded) like drains do, so
    /// converge notices.
    async fn put_cert(&self, cert: StoredCert) -> Result<()>;
    /// Removes the domain's certificate; `NotFound` when none.
    async fn remove_cert(&self, app: &AppName, domain: &Domain) -> Result<StoredCert>;
    /// The app's certificates, by domain.
    async fn certs(&self, app: &AppName) -> Result<Vec<StoredCert>>;
    /// Every certificate of every app, by domain: the TLS listener's table and the ACME
    /// worker's list.
    async fn all_certs(&self) -> Result<Vec<StoredCert>>;
}

/// What the backends' tests store.
#[cfg(test)]
pub(crate) mod testing {
    use super::{CertSource, StoredCert};
    use chrono::{TimeZone, Utc};
    use wdeploy_core::{AppName, Domain};

    /// A certificate brought by the user, `issuer`'s, with fixed dates (the store keeps
    /// PEM as text and checks none of it).
    pub fn manual(app: &AppName, domain: &Domain, issuer: &str) -> StoredCert {
        StoredCert {
            domain: domain.clone(),
            app: app.clone(),
            source: CertSource::Manual,
            chain_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n".into(),
            issuer: issuer.into(),
            not_after: Utc.with_ymd_and_hms(2031, 5, 1, 12, 0, 0).single(),
            updated_at: Utc
                .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
                .single()
                .expect("a date"),
            acme_error: None,
        }
    }
}
