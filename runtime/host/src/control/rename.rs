//! Renaming an app (`apps:rename`, `PATCH /apps/NAME` with a `name`), as on Heroku: the
//! app keeps its id and so everything it has (releases, config vars, formation, add-on
//! data, domains, certificates, drains, access, its log); its URL becomes the new
//! name's, and the old name is free at once.
//!
//! A node's runtime of an app is held under its name, and its dynos, router entry and
//! metrics carry that name. So a node follows a rename by retiring the runtime under the
//! old name and running the app under the new one: its log history is carried over and
//! its dynos start again under the new name. The node that renames does so at once and
//! answers once the app runs there; the others at their next look, which finds the
//! app's id under another name ([`Host::follow_rename`]).

use super::errors::Result;
use super::{AppEntry, Host};
use std::sync::Arc;
use wdeploy_api::ApiError;
use wdeploy_api::server::Caller;
use wdeploy_core::AppName;
use wdeploy_store::App;

impl Host {
    /// Renames the app in the store and runs it here under its new name.
    pub(super) async fn rename(&self, name: &AppName, by: &Caller, new: &AppName) -> Result<App> {
        if name == new {
            return Err(ApiError::invalid(format!("the app is already called {name}")).into());
        }
        let entry = self.existing(name).await?;
        // No release or scale of the app goes live under the old name meanwhile.
        let turn = entry.release_turn().await?;
        let app = self.store.control.rename_app(name, new).await?;
        drop(turn);
        let renamed = self.follow_rename(name, &app).await;
        renamed
            .runtime
            .logs
            .platform("api", format!("Renamed from {name} to {new} by {by}"));
        tracing::info!(app = %name, to = %new, "renamed");
        // Run it here before answering, so that the new URL serves when the call returns.
        if let Err(e) = self.converge_app(&app, 0).await {
            tracing::debug!(app = %new, "starting the renamed app: {e:#}");
        }
        Ok(app)
    }

    /// Moves this node's runtime of an app now called `app.name` from `old`: the old
    /// runtime leaves the router and stops in the background (a worker may take its stop
    /// grace; the new name's dynos need not wait for it), a new one takes its log history,
    /// and the next look at the app starts its dynos. Returns the new runtime.
    pub(super) async fn follow_rename(&self, old: &AppName, app: &App) -> Arc<AppEntry> {
        let stale = self.apps.lock().remove(old);
        self.router.remove_app(old);
        self.router.peers().forget(old.as_str());
        let entry = self.entry_for(app);
        if let Some(stale) = stale {
            entry.runtime.logs.inherit(&stale.runtime.logs);
            match self.me.upgrade() {
                Some(host) => {
                    let old = old.clone();
                    tokio::spawn(async move { host.tear_down(&old, stale).await });
                }
                None => self.tear_down(old, stale).await,
            }
        }
        // The domains and certificates now name the new app.
        self.refresh_domains().await;
        self.refresh_certs().await;
        self.nudge(&app.name);
        entry
    }
}
