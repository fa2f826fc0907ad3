//! Renaming an app in the cluster. Its releases, formation and drains are keyed by its
//! id and stay where they are; what names it is its key in `wdeploy-apps`, and the app
//! name its domains and certificates carry. The new key is made only if absent, so two
//! nodes can never give one name to two apps; the old key is deleted only at the
//! revision read, so a change made to it meanwhile (maintenance) is carried over first;
//! the app's domains and certificates take the new name in between.
//! Between the two writes both names lead to the same id: a node that looks then goes on
//! running the app under the old name, and follows the rename at its next look.

use super::certs::Entry as CertEntry;
use super::domains::StoredDomain;
use super::{CAS_ATTEMPTS, ClusterControl, StoredApp, contended, encode, read, unavailable};
use crate::error::{Result, StoreError};
use crate::model::App;
use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
use wdeploy_core::AppName;

impl ClusterControl {
    pub(super) async fn rename_app_here(&self, name: &AppName, new: &AppName) -> Result<App> {
        self.nats.check()?;
        let taken = || StoreError::Conflict(format!("app {new} already exists"));
        // The id this call made `new` lead to, once it has.
        let mut claimed: Option<String> = None;
        for _ in 0..CAS_ATTEMPTS {
            let (app, revision) = match self.app_entry(name).await {
                Ok(found) => found,
                Err(StoreError::NotFound(what)) => {
                    // Destroyed meanwhile: the new name this call claimed goes too.
                    if let Some(id) = &claimed {
                        self.release_claim(new, id).await;
                    }
                    return Err(StoreError::NotFound(what));
                }
                Err(e) => return Err(e),
            };
            let record = encode(&StoredApp {
                name: new.clone(),
                id: app.id.to_string(),
                created_at: app.created_at,
                maintenance: app.maintenance,
            })?;
            // Claim the new name, or bring this call's earlier claim up to date.
            match self.apps.create(new.as_str(), record.clone()).await {
                Ok(_) => {}
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                    let (there, claim) =
                        read::<StoredApp>(&self.apps, new.as_str(), "an app").await?;
                    if there.is_none_or(|there| there.id != app.id.as_str()) {
                        return Err(taken());
                    }
                    self.apps
                        .update(new.as_str(), record, claim)
                        .await
                        .map_err(|e| unavailable(format!("renaming app {name}: {e}")))?;
                }
                Err(e) => return Err(unavailable(format!("renaming app {name}: {e}"))),
            }
            claimed = Some(app.id.to_string());
            // Before the old name goes: a rename cut short here is finished by the same
            // call again, which finds its claim and the domains already moved.
            self.rename_domains(app.id.as_str(), new).await?;
            match self
                .apps
                .delete_expect_revision(name.as_str(), Some(revision))
                .await
            {
                Ok(()) => return self.app_entry(new).await.map(|(app, _)| app),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable(format!("renaming app {name}: {e}"))),
            }
        }
        Err(contended("renaming an app"))
    }

    /// Deletes the key `new` if it leads to `id` (a claim of a rename that did not
    /// happen).
    async fn release_claim(&self, new: &AppName, id: &str) {
        if let Ok((Some(there), revision)) =
            read::<StoredApp>(&self.apps, new.as_str(), "an app").await
            && there.id == *id
        {
            let _ = self
                .apps
                .delete_expect_revision(new.as_str(), Some(revision))
                .await;
        }
    }

    /// Writes the app's new name into the entries of its domains, and each certificate
    /// after its domain, naming the domain entry's new revision (a certificate counts only
    /// for the very entry it was put for).
    async fn rename_domains(&self, id: &str, new: &AppName) -> Result<()> {
        for (domain, stored, revision) in self.scan_domains().await? {
            if stored.id != id {
                continue;
            }
            let renamed = StoredDomain {
                app: new.clone(),
                ..stored
            };
            let Ok(domain_revision) = self
                .domains
                .update(domain.as_str(), encode(&renamed)?, revision)
                .await
            else {
                continue; // removed or taken meanwhile: it is no longer this app's
            };
            let (cert, cert_revision) =
                read::<CertEntry>(&self.certs, domain.as_str(), "a certificate").await?;
            let Some(mut cert) = cert.filter(|c| c.id == id) else {
                continue;
            };
            cert.domain_revision = domain_revision;
            cert.cert.app = new.clone();
            self.certs
                .update(domain.as_str(), encode(&cert)?, cert_revision)
                .await
                .map_err(|e| unavailable(format!("renaming the certificate of {domain}: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::CertStore;
    use crate::certs::testing::manual;
    use crate::cluster::testing::{NatsServer, control};
    use crate::control::ControlStore;
    use crate::model::Drain;
    use crate::model::testing::new_release;
    use wdeploy_core::{Domain, Formation};

    fn app(s: &str) -> AppName {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_renamed_app_keeps_everything_and_every_node_sees_it_under_the_new_name() {
        let server = NatsServer::start().unwrap();
        let (one, two) = (control(&server, "one").await, control(&server, "two").await);
        let (old, new, other) = (app("old-name"), app("new-name"), app("other"));
        let made = one.create_app(&old).await.unwrap();
        one.create_app(&other).await.unwrap();
        one.append_release(&old, 1, new_release("Deploy", &[("A", "1")]))
            .await
            .unwrap();
        let web3: Formation = serde_json::from_str(r#"{"web": 3}"#).unwrap();
        one.scale(&old, &web3).await.unwrap();
        one.set_maintenance(&old, true).await.unwrap();
        let drain = Drain::new("syslog://logs.example.com:514".parse().unwrap());
        one.add_drain(&old, drain.clone()).await.unwrap();
        let www: Domain = "www.example.com".parse().unwrap();
        one.add_domain(&old, &www).await.unwrap();
        one.put_cert(manual(&old, &www, "CA")).await.unwrap();

        let renamed = one.rename_app(&old, &new).await.unwrap();
        assert_eq!((&renamed.name, &renamed.id), (&new, &made.id));
        assert!(renamed.maintenance);
        // The other node sees it all under the new name, and nothing under the old.
        assert!(matches!(two.app(&old).await, Err(StoreError::NotFound(_))));
        assert_eq!(two.releases(&new).await.unwrap().len(), 1);
        assert_eq!(two.formation(&new).await.unwrap(), web3);
        assert_eq!(two.drains(&new).await.unwrap(), vec![drain]);
        assert_eq!(
            two.all_domains().await.unwrap(),
            vec![(www.clone(), new.clone())]
        );
        let certs = two.certs(&new).await.unwrap();
        assert_eq!(certs.len(), 1, "the certificate still counts");
        assert_eq!(certs[0].app, new);
        let names: Vec<_> = two
            .apps()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, vec![new.clone(), other.clone()]);

        // A taken name, or a missing app, is refused and changes nothing.
        assert!(matches!(
            two.rename_app(&new, &other).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            two.rename_app(&old, &app("third")).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(two.app(&other).await.unwrap().name, other);
        assert!(matches!(
            two.app(&app("third")).await,
            Err(StoreError::NotFound(_))
        ));
        // The old name is free for a new app, which starts empty.
        two.create_app(&old).await.unwrap();
        assert!(two.releases(&old).await.unwrap().is_empty());
        assert_eq!(one.releases(&new).await.unwrap().len(), 1);
    }
}
