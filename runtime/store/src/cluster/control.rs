//! Apps, release logs and formation in JetStream KV buckets: the cluster backend
//! of [`ControlStore`], behaving like the embedded one (same errors, order and pages).
//!
//! Key layout (every key a valid NATS KV key: app names are `[a-z][a-z0-9-]{1,29}`, ids
//! and token hashes lowercase hex, versions decimal):
//!
//! - `wdeploy-apps`: `NAME` → the app (`{name, id, created_at}`), created only if absent;
//! - `wdeploy-releases`: `ID.N` → release `vN` of the app with id `ID`, created only if
//!   absent, so two nodes can never both write `vN`; `ID.head` → a hint of the newest
//!   version (see [`ClusterControl::latest`]); `ID.N.output` → what going live printed
//!   for `vN` (`releases:output`), a JSON string;
//! - `wdeploy-formation`: `ID` → the formation (`{"web": 2}`);
//! - `wdeploy-drains`: `ID` → the app's log drains (see `drains.rs`);
//! - `wdeploy-domains`: `DOMAIN` → the app that has it (see `control/domains.rs`);
//! - `wdeploy-certs`: `DOMAIN` → its TLS certificate (see `control/certs.rs`).
//!
//! Releases and formation are keyed by the app's id, not its name: destroying an app
//! deletes its name first (from then on nothing reaches the old id), then purges the id's
//! keys; should that purge not happen (a crash, NATS gone), a new app of the same name still
//! gets a new id and starts empty at v1. Every read-modify-write is a compare-and-swap on
//! the key's revision, retried when another node changed the key in between.

mod certs;
mod domains;
mod rename;

use super::{CALL_TIMEOUT, Nats, unavailable};
use crate::control::ControlStore;
use crate::error::{Result, StoreError};
use crate::model::{App, AppId, Drain, NewRelease, Release, ReleaseHead};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use wdeploy_core::{AppName, Digest, Domain, Formation, ReleaseStatus};

const APPS: &str = "wdeploy-apps";
const RELEASES: &str = "wdeploy-releases";
const FORMATION: &str = "wdeploy-formation";

/// How often a compare-and-swap is tried again after another node won the race, before
/// giving up: contention on one key is a handful of nodes, never dozens in a row.
const CAS_ATTEMPTS: usize = 100;

/// How many releases a listing reads at once.
const READ_AHEAD: usize = 16;

/// The control plane in JetStream KV, shared by every node of the cluster.
pub struct ClusterControl {
    nats: Nats,
    apps: kv::Store,
    releases: kv::Store,
    formation: kv::Store,
    pub(super) drains: kv::Store,
    domains: kv::Store,
    certs: kv::Store,
}

#[derive(Serialize, Deserialize, Clone)]
struct StoredApp {
    name: AppName,
    id: String,
    created_at: DateTime<Utc>,
    /// Absent from the records of apps made before maintenance mode: off.
    #[serde(default)]
    maintenance: bool,
}

/// A release as kept under `ID.N` (the app's name is the key's, through its id).
#[derive(Serialize, Deserialize, Clone)]
struct StoredRelease {
    version: u64,
    slug: Option<Digest>,
    procfile: String,
    settings: String,
    config: BTreeMap<String, String>,
    description: String,
    author: String,
    created_at: DateTime<Utc>,
    status: ReleaseStatus,
    /// The node taking it live (absent in releases of an older wdeploy).
    #[serde(default)]
    node: Option<crate::model::NodeName>,
}

/// `ID.head`: a version known to exist, at most the newest (a lower bound, never ahead).
#[derive(Serialize, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
struct Head {
    latest: u64,
}

impl ClusterControl {
    /// Opens (creating them if this is the cluster's first node) the control buckets.
    pub async fn open(nats: &Nats) -> Result<ClusterControl> {
        let bucket = |name: &str| kv::Config {
            bucket: name.to_string(),
            history: 1,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        };
        Ok(ClusterControl {
            nats: nats.clone(),
            apps: nats.bucket(bucket(APPS)).await?,
            releases: nats.bucket(bucket(RELEASES)).await?,
            formation: nats.bucket(bucket(FORMATION)).await?,
            drains: nats.bucket(bucket(super::drains::DRAINS)).await?,
            domains: nats.bucket(bucket(domains::DOMAINS)).await?,
            certs: nats.bucket(bucket(certs::CERTS)).await?,
        })
    }

    /// The app and its entry's revision; `NotFound` when there is no such app.
    async fn app_entry(&self, name: &AppName) -> Result<(App, u64)> {
        let (stored, revision) = read::<StoredApp>(&self.apps, name.as_str(), "an app").await?;
        let stored = stored.ok_or_else(|| StoreError::NotFound(format!("app {name}")))?;
        Ok((to_app(stored)?, revision))
    }

    pub(super) async fn app_id(&self, name: &AppName) -> Result<AppId> {
        Ok(self.app_entry(name).await?.0.id)
    }

    async fn read_release(&self, id: &AppId, version: u64) -> Result<Option<StoredRelease>> {
        let key = release_key(id, version);
        Ok(read(&self.releases, &key, "a release").await?.0)
    }

    /// The newest version of the app's log (0 when it is empty), without reading the log.
    ///
    /// Versions are dense (`append_release` creates `vN` only once `vN-1` exists, and a
    /// release is never deleted while its app lives), so the newest is the last of the
    /// versions that exist counting up from any one that does. `ID.head` keeps such a
    /// version, advanced (by compare-and-swap, never backwards) after every append: the
    /// newest is found in two reads, the hint and the missing version after it. A hint a
    /// crash left behind only costs a read more per release it missed, and is repaired
    /// by the first read that notices.
    async fn latest(&self, id: &AppId) -> Result<u64> {
        let hint = read::<Head>(&self.releases, &head_key(id), "a release log's head")
            .await?
            .0
            .unwrap_or_default();
        let mut latest = hint.latest;
        while self.read_release(id, latest + 1).await?.is_some() {
            latest += 1;
        }
        if latest > hint.latest {
            self.advance_head(id, latest).await;
        }
        Ok(latest)
    }

    /// Moves `ID.head` up to `version` (never down). Best effort: the head is a hint that
    /// readers correct, so failing to move it fails nothing.
    async fn advance_head(&self, id: &AppId, version: u64) {
        let moved = cas(
            &self.releases,
            &head_key(id),
            "a release log's head",
            |head| {
                let head: Head = head.copied().unwrap_or_default();
                (head.latest < version).then_some(Head { latest: version })
            },
        )
        .await;
        if let Err(e) = moved {
            tracing::warn!("the release log head of app {id} stays behind v{version}: {e}");
        }
    }

    /// Releases `versions` of the app, in that order, read a few at a time.
    async fn read_releases(
        &self,
        app: &AppName,
        id: &AppId,
        versions: impl Iterator<Item = u64>,
    ) -> Result<Vec<Release>> {
        let releases: Vec<Option<StoredRelease>> = futures::stream::iter(versions)
            .map(|version| self.read_release(id, version))
            .buffered(READ_AHEAD)
            .try_collect()
            .await?;
        Ok(releases
            .into_iter()
            .flatten()
            .map(|r| to_release(app, r))
            .collect())
    }
}

#[async_trait]
impl ControlStore for ClusterControl {
    async fn create_app_at(&self, name: &AppName, created_at: DateTime<Utc>) -> Result<App> {
        self.nats.check()?;
        let app = App {
            name: name.clone(),
            id: AppId::random(),
            created_at,
            // No revision here: a converge look reads every app (see App::revision).
            revision: None,
            maintenance: false,
        };
        let value = encode(&StoredApp {
            name: name.clone(),
            id: app.id.to_string(),
            created_at: app.created_at,
            maintenance: false,
        })?;
        if create(&self.apps, name.as_str(), value, "creating an app").await? {
            Ok(app)
        } else {
            Err(StoreError::Conflict(format!("app {name} already exists")))
        }
    }

    async fn apps(&self) -> Result<Vec<App>> {
        self.nats.check()?;
        let names = list_keys(&self.apps, "listing the apps").await?;
        let stored: Vec<(Option<StoredApp>, u64)> = futures::stream::iter(names)
            .map(|name| async move { read(&self.apps, &name, "an app").await })
            .buffered(READ_AHEAD)
            .try_collect()
            .await?;
        let mut apps = stored
            .into_iter()
            // An app destroyed since the listing is gone.
            .filter_map(|(app, _)| app)
            .map(to_app)
            .collect::<Result<Vec<App>>>()?;
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(apps)
    }

    async fn app(&self, name: &AppName) -> Result<App> {
        self.nats.check()?;
        Ok(self.app_entry(name).await?.0)
    }

    async fn set_maintenance(&self, name: &AppName, on: bool) -> Result<App> {
        self.nats.check()?;
        // The app's own record: a compare-and-swap, so a concurrent destroy is not undone.
        let stored = cas::<StoredApp>(&self.apps, name.as_str(), "setting maintenance", |app| {
            let app = app.filter(|app| app.maintenance != on)?;
            Some(StoredApp {
                maintenance: on,
                ..app.clone()
            })
        })
        .await?;
        to_app(stored.ok_or_else(|| StoreError::NotFound(format!("app {name}")))?)
    }

    async fn rename_app(&self, name: &AppName, new: &AppName) -> Result<App> {
        self.rename_app_here(name, new).await
    }

    async fn delete_app(&self, name: &AppName) -> Result<()> {
        self.nats.check()?;
        let mut deleted = None;
        for _ in 0..CAS_ATTEMPTS {
            let (app, revision) = self.app_entry(name).await?;
            // Only the app read: if it was destroyed and made again meanwhile, the new
            // one (another id) is not this call's to delete without looking again.
            match self
                .apps
                .delete_expect_revision(name.as_str(), Some(revision))
                .await
            {
                Ok(()) => {
                    deleted = Some(app);
                    break;
                }
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable(format!("deleting app {name}: {e}"))),
            }
        }
        let app = deleted.ok_or_else(|| contended("deleting an app"))?;
        // The name is free now and nothing reaches the old id: what follows only frees
        // space, so it failing leaves nothing anyone would see.
        for (store, subject) in [
            (
                &self.releases,
                format!("{}{}.>", self.releases.prefix, app.id),
            ),
            (
                &self.formation,
                format!("{}{}", self.formation.prefix, app.id),
            ),
            (&self.drains, format!("{}{}", self.drains.prefix, app.id)),
        ] {
            if let Err(e) = store.stream.purge().filter(subject).await {
                tracing::warn!(
                    "app {name} is deleted but its data stays in {}: {e}",
                    store.name
                );
            }
        }
        self.forget_certs(app.id.as_str()).await;
        self.forget_domains(app.id.as_str()).await;
        Ok(())
    }

    async fn append_release(
        &self,
        app: &AppName,
        version: u64,
        new: NewRelease,
    ) -> Result<Release> {
        self.nats.check()?;
        let id = self.app_id(app).await?;
        // Versions stay dense (what keeps finding the newest cheap): `vN` follows `vN-1`.
        let follows =
            version == 1 || (version > 1 && self.read_release(&id, version - 1).await?.is_some());
        if !follows {
            return Err(StoreError::Invalid(format!(
                "release v{version} of {app} does not follow the newest release: read the log's head again"
            )));
        }
        let status = new.first_status();
        let stored = StoredRelease {
            version,
            slug: new.slug,
            procfile: new.procfile,
            settings: new.settings,
            config: new.config,
            description: new.description,
            author: new.author,
            created_at: new.created_at.unwrap_or_else(Utc::now),
            status,
            node: new.node,
        };
        let value = encode(&stored)?;
        let key = release_key(&id, version);
        if !create(&self.releases, &key, value, "appending a release").await? {
            return Err(StoreError::VersionTaken {
                app: app.to_string(),
                version,
            });
        }
        self.advance_head(&id, version).await;
        Ok(to_release(app, stored))
    }

    async fn finish_release(
        &self,
        app: &AppName,
        version: u64,
        status: ReleaseStatus,
    ) -> Result<()> {
        self.nats.check()?;
        // Like the embedded store: finishing what does not exist changes nothing.
        let id = match self.app_id(app).await {
            Ok(id) => id,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let key = release_key(&id, version);
        cas(&self.releases, &key, "finishing a release", |release| {
            let release: &StoredRelease = release?;
            (release.status == ReleaseStatus::Pending).then(|| StoredRelease {
                status,
                ..release.clone()
            })
        })
        .await?;
        Ok(())
    }

    async fn set_release_output(&self, app: &AppName, version: u64, output: &str) -> Result<()> {
        crate::model::check_release_output(output)?;
        self.nats.check()?;
        let id = self.app_id(app).await?;
        if self.read_release(&id, version).await?.is_none() {
            return Err(StoreError::NotFound(format!("release v{version} of {app}")));
        }
        let key = output_key(&id, version);
        let value = encode(&output)?;
        within("keeping a release's output", async {
            self.releases
                .put(key, value)
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        Ok(())
    }

    async fn release_output(&self, app: &AppName, version: u64) -> Result<String> {
        self.nats.check()?;
        let id = self.app_id(app).await?;
        if self.read_release(&id, version).await?.is_none() {
            return Err(StoreError::NotFound(format!("release v{version} of {app}")));
        }
        let (output, _) = read::<String>(
            &self.releases,
            &output_key(&id, version),
            "a release's output",
        )
        .await?;
        Ok(output.unwrap_or_default())
    }

    async fn releases(&self, app: &AppName) -> Result<Vec<Release>> {
        self.nats.check()?;
        let id = self.app_id(app).await?;
        let latest = self.latest(&id).await?;
        self.read_releases(app, &id, (1..=latest).rev()).await
    }

    async fn releases_page(
        &self,
        app: &AppName,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Release>> {
        self.nats.check()?;
        let id = self.app_id(app).await?;
        let latest = self.latest(&id).await?;
        let top = before.map_or(latest, |before| before.saturating_sub(1).min(latest));
        let versions = (1..=top).rev().take(limit as usize);
        self.read_releases(app, &id, versions).await
    }

    async fn release(&self, app: &AppName, version: u64) -> Result<Release> {
        self.nats.check()?;
        let id = self.app_id(app).await?;
        let release = self
            .read_release(&id, version)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("release v{version} of {app}")))?;
        Ok(to_release(app, release))
    }

    /// The newest version ([`ClusterControl::latest`]), then the releases from it down
    /// to the first succeeded one: the cost is the releases newer than the current one
    /// (usually none, or the one being deployed), not the log.
    async fn release_head(&self, app: &AppName) -> Result<ReleaseHead> {
        self.nats.check()?;
        let id = self.app_id(app).await?;
        let latest = self.latest(&id).await?;
        let mut current = None;
        for version in (1..=latest).rev() {
            if let Some(release) = self.read_release(&id, version).await?
                && release.status == ReleaseStatus::Succeeded
            {
                current = Some(to_release(app, release));
                break;
            }
        }
        Ok(ReleaseHead { latest, current })
    }

    async fn formation(&self, app: &AppName) -> Result<Formation> {
        self.nats.check()?;
        let id = self.app_id(app).await?;
        let (formation, _) = read(&self.formation, id.as_str(), "a formation").await?;
        Ok(formation.unwrap_or_default())
    }

    async fn scale(&self, app: &AppName, patch: &Formation) -> Result<Formation> {
        self.nats.check()?;
        let id = self.app_id(app).await?;
        let formation = cas(&self.formation, id.as_str(), "scaling", |formation| {
            let mut formation: Formation = formation.cloned().unwrap_or_default();
            for (process_type, quantity) in patch.iter() {
                formation.set(process_type.clone(), quantity);
            }
            Some(formation)
        })
        .await?;
        Ok(formation.unwrap_or_default())
    }

    async fn drains(&self, app: &AppName) -> Result<Vec<Drain>> {
        self.nats.check()?;
        self.read_drains(app).await
    }

    async fn add_drain(&self, app: &AppName, drain: Drain) -> Result<Drain> {
        self.nats.check()?;
        self.insert_drain(app, drain).await
    }

    async fn remove_drain(&self, app: &AppName, which: &str) -> Result<Drain> {
        self.nats.check()?;
        self.delete_drain(app, which).await
    }

    async fn add_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        self.add_domain_here(app, domain).await
    }
    async fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()> {
        self.remove_domain_here(app, domain).await
    }
    async fn domains(&self, app: &AppName) -> Result<Vec<Domain>> {
        self.domains_here(app).await
    }
    async fn all_domains(&self) -> Result<Vec<(Domain, AppName)>> {
        self.all_domains_here().await
    }
}

fn release_key(id: &AppId, version: u64) -> String {
    format!("{id}.{version}")
}

/// Where what going live printed for `vN` is kept: under the app's id like its releases,
/// so destroying the app purges it with them.
fn output_key(id: &AppId, version: u64) -> String {
    format!("{id}.{version}.output")
}

fn head_key(id: &AppId) -> String {
    format!("{id}.head")
}

/// Runs a call that may wait on NATS for longer than one request (a listing), giving up
/// after [`CALL_TIMEOUT`] as `Unavailable`.
pub(super) async fn within<T>(
    what: &str,
    call: impl Future<Output = std::result::Result<T, String>>,
) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(unavailable(format!("{what}: {e}"))),
        Err(_) => Err(unavailable(format!("{what}: timed out"))),
    }
}

/// Every key of a bucket (deleted ones left out).
pub(super) async fn list_keys(store: &kv::Store, what: &str) -> Result<Vec<String>> {
    within(what, async {
        let keys = store.keys().await.map_err(|e| e.to_string())?;
        keys.try_collect().await.map_err(|e| e.to_string())
    })
    .await
}

/// A key's value (`None` when absent or deleted) and the revision a compare-and-swap of
/// it must name (0 when the key never was).
pub(super) async fn read<T: DeserializeOwned>(
    store: &kv::Store,
    key: &str,
    what: &str,
) -> Result<(Option<T>, u64)> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| unavailable(format!("reading {what}: {e}")))?;
    match entry {
        None => Ok((None, 0)),
        Some(entry) if entry.operation == Operation::Put => {
            Ok((Some(decode(&entry.value, what)?), entry.revision))
        }
        Some(entry) => Ok((None, entry.revision)),
    }
}

/// Creates `key` only if absent: `false` when it exists. A create whose
/// acknowledgement was lost but which did land (the value there is this very one) is
/// this call's.
pub(super) async fn create(store: &kv::Store, key: &str, value: Bytes, what: &str) -> Result<bool> {
    match store.create(key, value.clone()).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
            let there = store
                .get(key)
                .await
                .map_err(|e| unavailable(format!("{what}: {e}")))?;
            Ok(there.as_ref() == Some(&value))
        }
        Err(e) => Err(unavailable(format!("{what}: {e}"))),
    }
}

/// A compare-and-swap of one key: `change` gets the value there and returns the one to
/// write (`None`: nothing to change); written only if the key is still at the revision
/// read, else read and changed again. Returns the value the key holds after.
pub(super) async fn cas<T: Serialize + DeserializeOwned>(
    store: &kv::Store,
    key: &str,
    what: &str,
    mut change: impl FnMut(Option<&T>) -> Option<T>,
) -> Result<Option<T>> {
    for _ in 0..CAS_ATTEMPTS {
        let (value, revision) = read::<T>(store, key, what).await?;
        let Some(new) = change(value.as_ref()) else {
            return Ok(value);
        };
        match store.update(key, encode(&new)?, revision).await {
            Ok(_) => return Ok(Some(new)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(unavailable(format!("{what}: {e}"))),
        }
    }
    Err(contended(what))
}

fn contended(what: &str) -> StoreError {
    unavailable(format!(
        "{what}: other nodes changed it {CAS_ATTEMPTS} times in a row"
    ))
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| StoreError::Backend(format!("encoding a value: {e}")))
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Backend(format!("stored {what} is unreadable: {e}")))
}

fn to_app(stored: StoredApp) -> Result<App> {
    Ok(App {
        id: stored
            .id
            .parse()
            .map_err(|e| StoreError::Backend(format!("stored app is unreadable: {e}")))?,
        name: stored.name,
        created_at: stored.created_at,
        revision: None,
        maintenance: stored.maintenance,
    })
}

fn to_release(app: &AppName, r: StoredRelease) -> Release {
    Release {
        app: app.clone(),
        version: r.version,
        slug: r.slug,
        procfile: r.procfile,
        settings: r.settings,
        config: r.config,
        description: r.description,
        author: r.author,
        created_at: r.created_at,
        status: r.status,
        node: r.node,
    }
}
