//! The control plane's data: apps, their release logs (config vars live in releases),
//! formation, log drains and custom domains (people and tokens are [`crate::People`]'s).

use crate::error::Result;
use crate::model::{App, Drain, NewRelease, Release, ReleaseHead};
use async_trait::async_trait;
use std::collections::HashSet;
use wdeploy_core::{AppName, Digest, Domain, Formation, ReleaseStatus};

/// Apps, releases and formation, behind whichever backend runs.
///
/// Every method that changes data is atomic and, once it returns, durable. Release logs
/// are append-only: [`ControlStore::append_release`] creates version `version` only if
/// no release of that version exists (create-if-absent), so concurrent writers (two
/// requests, two nodes) can never both write `vN`; the loser gets
/// [`crate::StoreError::VersionTaken`] and retries from a fresh [`ReleaseHead`]. A
/// release's only later change is its status, once, from pending.
#[async_trait]
pub trait ControlStore: Send + Sync + 'static {
    /// Creates an app now; `Conflict` if the name is taken.
    async fn create_app(&self, name: &AppName) -> Result<App> {
        self.create_app_at(name, chrono::Utc::now()).await
    }
    /// Creates an app made at `created_at` (an import keeps the time of the app it copies).
    async fn create_app_at(
        &self,
        name: &AppName,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<App>;
    /// Every app, by name.
    async fn apps(&self) -> Result<Vec<App>>;
    /// One app; `NotFound` when it does not exist.
    async fn app(&self, name: &AppName) -> Result<App>;
    /// Deletes an app with its releases and formation (blobs stay: other apps may share
    /// them; add-on data is the add-on store's).
    async fn delete_app(&self, name: &AppName) -> Result<()>;
    /// Turns the app's maintenance mode on or off (a change of the app, not a release);
    /// returns the app after it.
    async fn set_maintenance(&self, name: &AppName, on: bool) -> Result<App>;
    /// Gives the app `new` for a name, with everything it has (its id stays, and with it
    /// its add-on data and access); `Conflict` if `new` is taken. The old name is free
    /// from then on.
    async fn rename_app(&self, name: &AppName, new: &AppName) -> Result<App>;

    /// Appends `new` as `version` of the app's release log, if that version is still free:
    /// pending when it has a slug to start, succeeded when it only changes config.
    async fn append_release(&self, app: &AppName, version: u64, new: NewRelease)
    -> Result<Release>;
    /// Records how a pending release ended. Only a pending release changes status.
    async fn finish_release(
        &self,
        app: &AppName,
        version: u64,
        status: ReleaseStatus,
    ) -> Result<()>;
    /// Keeps `output` as what going live printed for release `version` (its release
    /// phase, its boot, why it failed), replacing what was kept; `NotFound` when there is
    /// no such release, `Invalid` over [`crate::MAX_RELEASE_OUTPUT`] bytes. Kept apart
    /// from the release, so reading the log never reads it.
    async fn set_release_output(&self, app: &AppName, version: u64, output: &str) -> Result<()>;
    /// What going live printed for release `version`: empty when nothing was kept (a
    /// release that went live nowhere, or one made by an older wdeploy); `NotFound` when
    /// there is no such release.
    async fn release_output(&self, app: &AppName, version: u64) -> Result<String>;
    /// The whole release log, newest first.
    async fn releases(&self, app: &AppName) -> Result<Vec<Release>>;
    /// Every slug a release of any app references: what the collector of unreferenced
    /// blobs keeps. By default each app's log in turn, failing (`NotFound`) when an app
    /// leaves its name meanwhile (destroyed or renamed: its releases would go unread); a
    /// backend that can read them all at once does (embedded: one query).
    async fn release_slugs(&self) -> Result<HashSet<Digest>> {
        let mut slugs = HashSet::new();
        for app in self.apps().await? {
            let releases = self.releases(&app.name).await?;
            slugs.extend(releases.into_iter().filter_map(|r| r.slug));
        }
        Ok(slugs)
    }
    /// One page of the release log, newest first: at most `limit` releases older than
    /// `before` (from the newest when `None`). Costs the page, not the log.
    async fn releases_page(
        &self,
        app: &AppName,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Release>>;
    async fn release(&self, app: &AppName, version: u64) -> Result<Release>;
    /// The newest version and the current (newest succeeded) release.
    async fn release_head(&self, app: &AppName) -> Result<ReleaseHead>;

    async fn formation(&self, app: &AppName) -> Result<Formation>;
    /// Sets the quantities `patch` names (the others stay) in one atomic change; returns
    /// the whole formation after it.
    async fn scale(&self, app: &AppName, patch: &Formation) -> Result<Formation>;

    /// Gives `domain` to the app: `Conflict` when another app has it (adding one the app
    /// has already changes nothing). A domain belongs to one app at most.
    async fn add_domain(&self, app: &AppName, domain: &Domain) -> Result<()>;
    /// Takes `domain` from the app; `NotFound` when the app does not have it.
    async fn remove_domain(&self, app: &AppName, domain: &Domain) -> Result<()>;
    /// The app's domains, sorted.
    async fn domains(&self, app: &AppName) -> Result<Vec<Domain>>;
    /// Every domain with the app it belongs to: the router's table.
    async fn all_domains(&self) -> Result<Vec<(Domain, AppName)>>;
    /// The app's log drains, oldest first.
    async fn drains(&self, app: &AppName) -> Result<Vec<Drain>>;
    /// Adds `drain` to the app's drains: `Conflict` when one has its URL already,
    /// `Invalid` when the app has [`crate::MAX_DRAINS_PER_APP`]. Changes the app's
    /// revision, so every node learns of it.
    async fn add_drain(&self, app: &AppName, drain: Drain) -> Result<Drain>;
    /// Removes the drain `which` names (its id or its URL); `NotFound` when none does.
    async fn remove_drain(&self, app: &AppName, which: &str) -> Result<Drain>;
}
