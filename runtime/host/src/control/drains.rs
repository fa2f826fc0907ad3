//! The apps' log drains: `log-drains` calls, and making each app's log stream on this
//! node ship to the drains the store has (on a change made here at once; on a change
//! made through another node, or after a restart, at the next look that sees the app's
//! revision move: `converge.rs` and `restore_apps`).

use super::errors::Result;
use super::{AppEntry, Host};
use wdeploy_api::ApiError;
use wdeploy_api::wire::{CreateDrain, DrainInfo};
use wdeploy_core::{AppName, DrainUrl};
use wdeploy_store::{App, Drain};

impl Host {
    pub(super) async fn drain_list(&self, app: &AppName) -> Result<Vec<DrainInfo>> {
        let drains = self.store.control.drains(app).await?;
        Ok(drains.iter().map(drain_info).collect())
    }

    pub(super) async fn drain_add(&self, app: &AppName, req: CreateDrain) -> Result<DrainInfo> {
        let url: DrainUrl = req
            .url
            .parse()
            .map_err(|e: wdeploy_core::drain::DrainUrlError| ApiError::invalid(e.to_string()))?;
        self.drain_network
            .check_literal(&url)
            .map_err(ApiError::invalid)?;
        let entry = self.existing(app).await?;
        let drain = self.store.control.add_drain(app, Drain::new(url)).await?;
        self.ship_to_drains(app, &entry).await;
        Ok(drain_info(&drain))
    }

    pub(super) async fn drain_remove(&self, app: &AppName, which: &str) -> Result<DrainInfo> {
        let entry = self.existing(app).await?;
        let drain = self.store.control.remove_drain(app, which).await?;
        self.ship_to_drains(app, &entry).await;
        Ok(drain_info(&drain))
    }

    /// After a change made here: this node ships to the new drains at once, and its
    /// next look (like every other node's) sees the app's revision move.
    async fn ship_to_drains(&self, app: &AppName, entry: &AppEntry) {
        if let Ok(stored) = self.store.control.app(app).await
            && let Err(e) = self.apply_drains(&stored, entry).await
        {
            tracing::debug!(app = %app, "drains: {e}");
        }
        self.nudge(app);
    }

    /// Makes the app's log stream here ship to the drains the store has for it.
    pub(super) async fn apply_drains(
        &self,
        app: &App,
        entry: &AppEntry,
    ) -> Result<(), wdeploy_store::StoreError> {
        let drains = self.store.control.drains(&app.name).await?;
        let logs = &entry.runtime.logs;
        if logs.drains() != drains {
            logs.set_drains(app.name.as_str(), &drains, &self.drain_network);
        }
        Ok(())
    }
}

fn drain_info(drain: &Drain) -> DrainInfo {
    DrainInfo {
        id: drain.id.to_string(),
        url: drain.url.to_string(),
        created_at: drain.created_at,
    }
}
