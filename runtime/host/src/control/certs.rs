//! The TLS certificates of the apps' domains: `certs`, `certs:add`, `certs:remove` (and
//! the certificate `domains:add --acme` asks the ACME worker for).
//!
//! A certificate the user brings is checked (`tls::certificate`) before it is stored:
//! its key matches, it covers the domain, it is valid now. The store keeps at most one
//! per domain; after each change made here the host reloads the certificates it serves.

use super::Host;
use super::errors::{ControlError, Result};
use crate::tls::PemCert;
use crate::tls::certificate::{self, CertError, covers};
use chrono::{DateTime, Utc};
use wdeploy_api::ApiError;
use wdeploy_api::server::Caller;
use wdeploy_api::wire::{CertInfo, CertSource, CertStatus, CreateCert};
use wdeploy_core::{AppName, Domain};
use wdeploy_store::StoredCert;

impl Host {
    pub(super) async fn cert_list(&self, app: &AppName) -> Result<Vec<CertInfo>> {
        let certs = self.store.certs.certs(app).await?;
        let now = Utc::now();
        Ok(certs.iter().map(|c| cert_info(c, now)).collect())
    }

    /// Checks the certificate and sets it for the domain asked for, or for every domain
    /// of the app it covers.
    pub(super) async fn cert_add(
        &self,
        app: &AppName,
        by: &Caller,
        req: CreateCert,
    ) -> Result<Vec<CertInfo>> {
        let entry = self.existing(app).await?;
        let now = Utc::now();
        // What is wrong with the certificate itself comes first, whatever the domain.
        let checked =
            certificate::inspect(&req.certificate_chain, &req.private_key, now).map_err(refused)?;
        let domains = self.store.control.domains(app).await?;
        let targets: Vec<Domain> = match &req.domain {
            Some(asked) => {
                let domain = Domain::normalize(asked).map_err(|e| refused_text(e.to_string()))?;
                if !domains.contains(&domain) {
                    return Err(refused_text(format!(
                        "{domain} is not a domain of {app}: add it first (wdeploy domains:add {domain} -a {app})"
                    )));
                }
                checked.must_cover(&domain).map_err(refused)?;
                vec![domain]
            }
            None if domains.is_empty() => {
                return Err(refused_text(format!(
                    "{app} has no custom domains: add the certificate's domain first (wdeploy domains:add DOMAIN -a {app})"
                )));
            }
            None => {
                let covered: Vec<Domain> = domains
                    .iter()
                    .filter(|d| checked.covers(d))
                    .cloned()
                    .collect();
                if covered.is_empty() {
                    let theirs: Vec<&str> = domains.iter().map(Domain::as_str).collect();
                    return Err(refused_text(format!(
                        "the certificate covers none of {app}'s domains ({}): {}",
                        theirs.join(", "),
                        covers(&checked.names)
                    )));
                }
                covered
            }
        };
        let mut set = Vec::new();
        let mut failed = None;
        for domain in targets {
            let cert = StoredCert {
                domain: domain.clone(),
                app: app.clone(),
                source: wdeploy_store::CertSource::Manual,
                chain_pem: req.certificate_chain.clone(),
                key_pem: req.private_key.clone(),
                issuer: checked.issuer.clone(),
                not_after: Some(checked.not_after),
                updated_at: now,
                acme_error: None,
            };
            if let Err(e) = self.store.certs.put_cert(cert.clone()).await {
                failed = Some(e);
                break;
            }
            entry.runtime.logs.platform(
                "api",
                format!(
                    "Added certificate for {domain} by {by} (issuer {}, expires {})",
                    checked.issuer,
                    checked.not_after.format("%Y-%m-%d")
                ),
            );
            set.push(cert_info(&cert, now));
        }
        // Those set before a failure are served all the same.
        self.refresh_certs().await;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(set),
        }
    }

    pub(super) async fn cert_remove(
        &self,
        app: &AppName,
        by: &Caller,
        domain: &str,
    ) -> Result<CertInfo> {
        let domain = Domain::normalize(domain).map_err(|e| refused_text(e.to_string()))?;
        let entry = self.existing(app).await?;
        let removed = self.store.certs.remove_cert(app, &domain).await?;
        self.refresh_certs().await;
        entry
            .runtime
            .logs
            .platform("api", format!("Removed certificate for {domain} by {by}"));
        Ok(cert_info(&removed, Utc::now()))
    }

    /// `domains:add --acme`: a certificate for the ACME worker to order. A domain that
    /// has an ACME certificate already (issued, or being ordered) keeps it: adding the
    /// domain again must not take down what HTTPS serves, nor start a needless order.
    pub(super) async fn cert_order(&self, app: &AppName, domain: &Domain) -> Result<()> {
        let has_acme = self
            .store
            .certs
            .certs(app)
            .await?
            .iter()
            .any(|c| &c.domain == domain && c.source == wdeploy_store::CertSource::Acme);
        if has_acme {
            return Ok(());
        }
        self.store
            .certs
            .put_cert(StoredCert::ordering(app, domain))
            .await?;
        // An order in progress serves nothing yet, but a certificate the user brought
        // is no longer served.
        self.refresh_certs().await;
        // Ordering starts at once rather than at the worker's next look.
        self.wake_acme();
        Ok(())
    }

    /// Replaces the certificates the HTTPS listener serves with the store's (after a
    /// change made here, and at each full converge look for changes made through other
    /// nodes); a look that cannot read them changes nothing. Only the certificates that
    /// changed are parsed again.
    pub(super) async fn refresh_certs(&self) {
        let _turn = self.certs_refresh.lock().await;
        match self.store.certs.all_certs().await {
            Ok(all) => self.config.tls.install_pem(all.iter().map(|cert| PemCert {
                domain: cert.domain.as_str(),
                chain_pem: &cert.chain_pem,
                key_pem: &cert.key_pem,
            })),
            Err(e) => tracing::debug!("reading the certificates: {e}"),
        }
    }
}

fn refused(e: CertError) -> ControlError {
    refused_text(e.to_string())
}

fn refused_text(message: String) -> ControlError {
    ControlError::Api(ApiError::invalid(message))
}

/// A certificate as listed: never its key.
fn cert_info(cert: &StoredCert, now: DateTime<Utc>) -> CertInfo {
    let status = if cert.acme_error.is_some() {
        CertStatus::Error
    } else if !cert.is_issued() {
        CertStatus::Ordering
    } else if cert.not_after.is_some_and(|t| t < now) {
        CertStatus::Expired
    } else {
        CertStatus::Ok
    };
    CertInfo {
        domain: cert.domain.clone(),
        source: match cert.source {
            wdeploy_store::CertSource::Manual => CertSource::Manual,
            wdeploy_store::CertSource::Acme => CertSource::Acme,
        },
        issuer: cert.issuer.clone(),
        expires_at: cert.not_after,
        status,
        error: cert.acme_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_certificate_says_how_it_stands() {
        let app: AppName = "shop".parse().unwrap();
        let www: Domain = "www.example.com".parse().unwrap();
        let now: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let mut cert = StoredCert::ordering(&app, &www);
        let status = |cert: &StoredCert| cert_info(cert, now).status;
        assert_eq!(status(&cert), CertStatus::Ordering);
        cert.acme_error = Some("rate limited".into());
        assert_eq!(status(&cert), CertStatus::Error);
        assert_eq!(cert_info(&cert, now).error.as_deref(), Some("rate limited"));
        cert.acme_error = None;
        cert.chain_pem = "chain".into();
        cert.key_pem = "key".into();
        cert.not_after = Some("2026-09-01T00:00:00Z".parse().unwrap());
        assert_eq!(status(&cert), CertStatus::Ok);
        cert.not_after = Some("2026-05-01T00:00:00Z".parse().unwrap());
        assert_eq!(status(&cert), CertStatus::Expired);
        let json = serde_json::to_string(&cert_info(&cert, now)).unwrap();
        assert!(!json.contains("key"), "{json}");
    }
}
