//! The apps' custom domains in the cluster: `wdeploy-domains`, `DOMAIN` → the app that has
//! it (`{app, id, created_at}`). Creating the key only if absent makes a domain one app's
//! at most, whichever nodes race to add it. An entry whose app is gone (destroyed before
//! its domains were purged) counts as free.

use super::{ClusterControl, cas, decode, read, within};
use crate::cluster::scan::last_values;
use crate::error::{Result, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wdeploy_core::{AppName, Domain};

pub(super) const DOMAINS: &str = "wdeploy-domains";

/// The app that has a domain, and the revision of the domain's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DomainHolder {
    pub id: String,
    pub revision: u64,
}

#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub(super) struct StoredDomain {
    pub app: AppName,
    pub id: String,
    pub created_at: DateTime<Utc>,
}

impl ClusterControl {
    pub(super) async fn add_domain_here(&self, app: &AppName, domain: &Domain) -> Result<()> {
        self.nats.check()?;
        let id = self.app_id(app).await?.to_string();
        let taken = || StoreError::Conflict(format!("{domain} is already added to another app"));
        let (there, _) = read::<StoredDomain>(&self.domains, domain.as_str(), "a domain").await?;
        // The id of a gone app's entry, which this one may replace.
        let stale = match there {
            Some(there) if there.id == id => return Ok(()),
            Some(there) => {
                let alive = self
                    .app_id(&there.app)
                    .await
                    .is_ok_and(|owner| owner.to_string() == there.id);
                if alive {
                    return Err(taken());
                }
                Some(there.id)
            }
            None => None,
        };
        let mine = StoredDomain {
            app: app.clone(),
            id: id.clone(),
            created_at: Utc::now(),
        };
        let now = cas::<StoredDomain>(&self.domains, domain.as_str(), "adding a domain", |now| {
            match now {
                Some(now) if now.id == id => None,
                // Another app took it since it was read.
                Some(now) if Some(&now.id) != stale.as_ref() => None,
                _ => Some(mine.clone()),
            }
        })
        .await?;
        match now {
            Some(now) if now.id == id => Ok(()),
            _ => Err(taken()),
        }
    }

    pub(super) async fn remove_domain_here(&self, app: &AppName, domain: &Domain) -> Result<()> {
        self.nats.check()?;
        let id = self.app_id(app).await?.to_string();
        let (stored, revision) =
            read::<StoredDomain>(&self.domains, domain.as_str(), "a domain").await?;
        if stored.is_none_or(|s| s.id != id) {
            return Err(StoreError::NotFound(format!("domain {domain} of {app}")));
        }
        self.domains
            .delete_expect_revision(domain.as_str(), Some(revision))
            .await
            .map_err(|e| super::unavailable(format!("removing domain {domain}: {e}")))?;
        // Its certificate goes with it (should this fail, the certificate names the
        // domain's old entry and counts as gone: see `certs.rs`).
        self.forget_cert(domain).await;
        Ok(())
    }

    pub(super) async fn domains_here(&self, app: &AppName) -> Result<Vec<Domain>> {
        let id = self.app_id(app).await?.to_string();
        Ok(self
            .scan_domains()
            .await?
            .into_iter()
            .filter(|(_, stored, _)| stored.id == id)
            .map(|(domain, _, _)| domain)
            .collect())
    }

    pub(super) async fn all_domains_here(&self) -> Result<Vec<(Domain, AppName)>> {
        Ok(self
            .scan_domains()
            .await?
            .into_iter()
            .map(|(domain, stored, _)| (domain, stored.app))
            .collect())
    }

    /// Every entry of the bucket with its revision, sorted by domain.
    pub(super) async fn scan_domains(&self) -> Result<Vec<(Domain, StoredDomain, u64)>> {
        self.nats.check()?;
        let scanned = within(
            "listing the domains",
            last_values(&self.nats, &self.domains, ">", false),
        )
        .await?;
        let mut all = Vec::new();
        for entry in scanned {
            let domain = entry
                .key
                .parse::<Domain>()
                .map_err(|e| StoreError::Backend(format!("stored domain is unreadable: {e}")))?;
            let stored = decode::<StoredDomain>(&entry.value, "a domain")?;
            all.push((domain, stored, entry.revision));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    /// Who has `domain` now: the app's id and the revision of the domain's entry (which
    /// changes whenever the domain is added again), if any app does.
    pub(super) async fn domain_holder(&self, domain: &Domain) -> Result<Option<DomainHolder>> {
        let (stored, revision) =
            read::<StoredDomain>(&self.domains, domain.as_str(), "a domain").await?;
        Ok(stored.map(|s| DomainHolder { id: s.id, revision }))
    }

    /// [`ClusterControl::domain_holder`] of every domain.
    pub(super) async fn domain_holders(&self) -> Result<BTreeMap<Domain, DomainHolder>> {
        Ok(self
            .scan_domains()
            .await?
            .into_iter()
            .map(|(domain, stored, revision)| {
                let holder = DomainHolder {
                    id: stored.id,
                    revision,
                };
                (domain, holder)
            })
            .collect())
    }

    /// Drops the domains of a destroyed app (best effort: a left entry counts as free).
    pub(super) async fn forget_domains(&self, id: &str) {
        let Ok(all) = self.scan_domains().await else {
            return;
        };
        for (domain, stored, _) in all {
            if stored.id == id {
                let _ = self.domains.delete(domain.as_str()).await;
            }
        }
    }
}
