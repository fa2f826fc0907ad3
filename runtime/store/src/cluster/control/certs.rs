//! The apps' TLS certificates in the cluster: `wdeploy-certs`, `DOMAIN` (the domain
//! itself: its letters, digits, `-` and `.` are all valid in a key) → the certificate
//! with the id of its app and the revision of the domain's entry in `wdeploy-domains`
//! when it was put.
//!
//! A certificate counts only while its domain's entry is that very one: removing the
//! domain (or destroying the app, or another app taking a gone app's domain) makes it
//! count as gone at once, whether or not its key was deleted yet, and a domain added
//! again starts without one. Removing a domain or destroying the app deletes the key
//! too (best effort, like domains of destroyed apps).

use super::domains::DomainHolder;
use super::{ClusterControl, decode, encode, read, unavailable, within};
use crate::certs::{CertStore, MAX_CERTS_PER_APP, StoredCert, over_budget};
use crate::cluster::scan::last_values;
use crate::error::{Result, StoreError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wdeploy_core::{AppName, Domain};

pub(super) const CERTS: &str = "wdeploy-certs";

/// What a key holds.
#[derive(Serialize, Deserialize)]
pub(super) struct Entry {
    /// The app's id (a new app of a destroyed one's name is another app).
    pub id: String,
    /// The revision of the domain's entry the certificate was put for.
    pub domain_revision: u64,
    pub cert: StoredCert,
}

impl Entry {
    /// Whether the domain is still held by the app, through the entry it was put for.
    fn counts(&self, holder: Option<&DomainHolder>) -> bool {
        holder.is_some_and(|h| h.id == self.id && h.revision == self.domain_revision)
    }
}

impl ClusterControl {
    /// Every certificate that counts, by domain (an entry whose domain moved on is left
    /// out).
    async fn live_certs(&self) -> Result<Vec<Entry>> {
        self.nats.check()?;
        let scanned = within(
            "listing the certificates",
            last_values(&self.nats, &self.certs, ">", false),
        )
        .await?;
        let holders: BTreeMap<Domain, DomainHolder> = self.domain_holders().await?;
        let mut live = Vec::new();
        for scanned in scanned {
            let entry: Entry = decode(&scanned.value, "a certificate")?;
            if entry.counts(holders.get(&entry.cert.domain)) {
                live.push(entry);
            }
        }
        live.sort_by(|a, b| a.cert.domain.cmp(&b.cert.domain));
        Ok(live)
    }

    /// Deletes the domain's certificate key, if any (best effort: a key left behind no
    /// longer counts, see the module's doc).
    pub(super) async fn forget_cert(&self, domain: &Domain) {
        if let Err(e) = self.certs.delete(domain.as_str()).await {
            tracing::debug!("the certificate of {domain} stays in the store: {e}");
        }
    }

    /// Deletes the certificates of a destroyed app (best effort).
    pub(super) async fn forget_certs(&self, id: &str) {
        let Ok(scanned) = within(
            "listing the certificates",
            last_values(&self.nats, &self.certs, ">", false),
        )
        .await
        else {
            return;
        };
        for scanned in scanned {
            if decode::<Entry>(&scanned.value, "a certificate").is_ok_and(|e| e.id == id) {
                let _ = self.certs.delete(&scanned.key).await;
            }
        }
    }
}

#[async_trait]
impl CertStore for ClusterControl {
    async fn put_cert(&self, cert: StoredCert) -> Result<()> {
        self.nats.check()?;
        let id = self.app_id(&cert.app).await?.to_string();
        let holder = self
            .domain_holder(&cert.domain)
            .await?
            .filter(|h| h.id == id)
            .ok_or_else(|| {
                StoreError::NotFound(format!("domain {} of {}", cert.domain, cert.app))
            })?;
        // The budget, counted over what this app has besides this domain. Two nodes
        // putting at once can each pass it: by a certificate or two, never by many.
        let others = self
            .live_certs()
            .await?
            .into_iter()
            .filter(|e| e.id == id && e.cert.domain != cert.domain)
            .count();
        if others >= MAX_CERTS_PER_APP {
            return Err(over_budget(&cert.app));
        }
        let key = cert.domain.to_string();
        let entry = Entry {
            id,
            domain_revision: holder.revision,
            cert,
        };
        self.certs
            .put(&key, encode(&entry)?)
            .await
            .map_err(|e| unavailable(format!("putting the certificate of {key}: {e}")))?;
        Ok(())
    }

    async fn remove_cert(&self, app: &AppName, domain: &Domain) -> Result<StoredCert> {
        self.nats.check()?;
        let id = self.app_id(app).await?.to_string();
        let (entry, revision) =
            read::<Entry>(&self.certs, domain.as_str(), "a certificate").await?;
        let holder = self.domain_holder(domain).await?;
        let entry = entry
            .filter(|e| e.id == id && e.counts(holder.as_ref()))
            .ok_or_else(|| StoreError::NotFound(format!("certificate of {domain} in {app}")))?;
        self.certs
            .delete_expect_revision(domain.as_str(), Some(revision))
            .await
            .map_err(|e| unavailable(format!("removing the certificate of {domain}: {e}")))?;
        Ok(entry.cert)
    }

    async fn certs(&self, app: &AppName) -> Result<Vec<StoredCert>> {
        self.nats.check()?;
        let id = self.app_id(app).await?.to_string();
        Ok(self
            .live_certs()
            .await?
            .into_iter()
            .filter(|e| e.id == id)
            .map(|e| e.cert)
            .collect())
    }

    async fn all_certs(&self) -> Result<Vec<StoredCert>> {
        Ok(self
            .live_certs()
            .await?
            .into_iter()
            .map(|e| e.cert)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ControlStore;
    use crate::certs::testing::manual;
    use crate::cluster::testing::{NatsServer, control};

    #[tokio::test]
    async fn certs_are_shared_need_their_domain_and_go_with_it() {
        let server = NatsServer::start().unwrap();
        let (one, two) = (control(&server, "one").await, control(&server, "two").await);
        let (a, b): (AppName, AppName) = ("alpha".parse().unwrap(), "beta".parse().unwrap());
        let www: Domain = "www.example.com".parse().unwrap();
        let api: Domain = "api.example.com".parse().unwrap();
        one.create_app(&a).await.unwrap();
        one.create_app(&b).await.unwrap();
        one.add_domain(&a, &www).await.unwrap();
        one.add_domain(&a, &api).await.unwrap();

        // Not the app's domain (nor anyone's): refused, nothing stored.
        let theirs = two.put_cert(manual(&b, &www, "CA")).await;
        assert!(matches!(theirs, Err(StoreError::NotFound(_))), "{theirs:?}");
        let nobody = manual(&a, &"x.example.com".parse().unwrap(), "CA");
        assert!(matches!(
            one.put_cert(nobody).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(two.all_certs().await.unwrap().is_empty());

        // Put on one node, read on the other; certs:add replaces an ACME one.
        one.put_cert(StoredCert::ordering(&a, &www)).await.unwrap();
        two.put_cert(manual(&a, &www, "Test CA")).await.unwrap();
        one.put_cert(manual(&a, &api, "Other CA")).await.unwrap();
        let expected = vec![manual(&a, &api, "Other CA"), manual(&a, &www, "Test CA")];
        assert_eq!(two.certs(&a).await.unwrap(), expected);
        assert_eq!(one.all_certs().await.unwrap(), expected);
        assert!(two.certs(&b).await.unwrap().is_empty());
        assert!(matches!(
            two.certs(&"gamma".parse().unwrap()).await,
            Err(StoreError::NotFound(_))
        ));

        // Removed by domain, once; only by its app.
        assert!(matches!(
            two.remove_cert(&b, &www).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            two.remove_cert(&a, &www).await.unwrap().issuer,
            "Test CA".to_string()
        );
        assert!(matches!(
            one.remove_cert(&a, &www).await,
            Err(StoreError::NotFound(_))
        ));

        // A removed domain takes its certificate; added again it has none.
        one.put_cert(manual(&a, &www, "Test CA")).await.unwrap();
        two.remove_domain(&a, &www).await.unwrap();
        assert_eq!(
            one.certs(&a).await.unwrap(),
            vec![manual(&a, &api, "Other CA")]
        );
        assert!(matches!(one.certs.get(www.as_str()).await, Ok(None)));
        one.add_domain(&a, &www).await.unwrap();
        assert_eq!(one.certs(&a).await.unwrap().len(), 1);

        // A destroyed app's go too; its domain is free for another app's certificate.
        one.delete_app(&a).await.unwrap();
        assert!(two.all_certs().await.unwrap().is_empty());
        assert!(matches!(one.certs.get(api.as_str()).await, Ok(None)));
        two.add_domain(&b, &api).await.unwrap();
        two.put_cert(manual(&b, &api, "B CA")).await.unwrap();
        assert_eq!(
            one.all_certs().await.unwrap(),
            vec![manual(&b, &api, "B CA")]
        );
    }

    #[tokio::test]
    async fn a_certificate_left_behind_by_a_removed_domain_never_counts_again() {
        let server = NatsServer::start().unwrap();
        let store = control(&server, "one").await;
        let a: AppName = "alpha".parse().unwrap();
        let www: Domain = "www.example.com".parse().unwrap();
        store.create_app(&a).await.unwrap();
        store.add_domain(&a, &www).await.unwrap();
        store.put_cert(manual(&a, &www, "CA")).await.unwrap();
        let left = store.certs.get(www.as_str()).await.unwrap().unwrap();
        // As if the node had died between removing the domain and its certificate.
        store.remove_domain(&a, &www).await.unwrap();
        store.certs.put(www.as_str(), left).await.unwrap();
        assert!(store.all_certs().await.unwrap().is_empty());
        store.add_domain(&a, &www).await.unwrap();
        assert!(store.certs(&a).await.unwrap().is_empty());
        assert!(matches!(
            store.remove_cert(&a, &www).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn an_app_has_at_most_max_certs_while_its_neighbour_adds_its_own() {
        let server = NatsServer::start().unwrap();
        let store = control(&server, "one").await;
        let (greedy, neighbour): (AppName, AppName) =
            ("greedy".parse().unwrap(), "neighbour".parse().unwrap());
        store.create_app(&greedy).await.unwrap();
        store.create_app(&neighbour).await.unwrap();
        let domain = |n: usize| -> Domain { format!("d{n}.example.com").parse().unwrap() };
        for n in 0..=MAX_CERTS_PER_APP {
            store.add_domain(&greedy, &domain(n)).await.unwrap();
        }
        for n in 0..MAX_CERTS_PER_APP {
            store
                .put_cert(manual(&greedy, &domain(n), "CA"))
                .await
                .unwrap();
        }
        let over = store
            .put_cert(manual(&greedy, &domain(MAX_CERTS_PER_APP), "CA"))
            .await;
        assert!(
            matches!(&over, Err(StoreError::Invalid(m)) if m.contains("the most an app may have")),
            "{over:?}"
        );
        store
            .put_cert(manual(&greedy, &domain(0), "New CA"))
            .await
            .unwrap();
        let shop: Domain = "shop.example.org".parse().unwrap();
        store.add_domain(&neighbour, &shop).await.unwrap();
        store
            .put_cert(manual(&neighbour, &shop, "CA"))
            .await
            .unwrap();
        assert_eq!(store.certs(&greedy).await.unwrap().len(), MAX_CERTS_PER_APP);
        assert_eq!(store.certs(&neighbour).await.unwrap().len(), 1);
    }
}
