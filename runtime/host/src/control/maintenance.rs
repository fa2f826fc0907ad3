//! Changes of the app itself (`PATCH /apps/NAME`): its name (see `rename.rs`) and
//! maintenance mode.
//!
//! Maintenance mode (`maintenance:on`, `maintenance:off`): the router answers the app's
//! requests with a 503 maintenance page while its dynos keep running, as on Heroku, for
//! a migration or an outage of something the app needs.
//!
//! The mode is the app's, in the store, not a release's: turning it on deploys nothing.
//! This node applies it at once; the others at their next look at the app, which a
//! change to the app's record brings about in a cluster.

use super::Host;
use super::errors::Result;
use wdeploy_api::server::Caller;
use wdeploy_api::wire::{AppInfo, AppUpdate};
use wdeploy_core::AppName;

impl Host {
    pub(super) async fn update(
        &self,
        name: &AppName,
        by: &Caller,
        update: AppUpdate,
    ) -> Result<AppInfo> {
        let mut app = self.store.control.app(name).await?;
        if let Some(new) = &update.name {
            app = self.rename(name, by, new).await?;
        }
        let name = app.name.clone();
        if let Some(on) = update.maintenance {
            let before = app.maintenance;
            app = self.store.control.set_maintenance(&name, on).await?;
            let entry = self.entry_for(&app);
            // A look that read the app before the change may set it back here: the next
            // one, made now, reads it again.
            self.nudge(&name);
            if before != on {
                let what = if on { "Enable" } else { "Disable" };
                entry
                    .runtime
                    .logs
                    .platform("api", format!("{what} maintenance mode by {by}"));
            }
        }
        self.app_info(&app).await
    }
}
