//! `releases:cancel`, through any node: the release going live here stops at once; one
//! that another node takes live (the push or change reached that node's API, as behind
//! a load balancer) is cancelled there, over the hop between nodes.

use super::Host;
use super::errors::Result;
use super::releases::release_info;
use crate::router::node_calls::{Asked, NodeCall};
use wdeploy_api::ApiError;
use wdeploy_api::server::Caller;
use wdeploy_api::wire::ReleaseInfo;
use wdeploy_core::{AppName, ReleaseStatus};
use wdeploy_store::App;

impl Host {
    /// `releases:cancel`: stops the release going live (its release phase or its boot)
    /// and returns it once it is recorded as failed; the previous release keeps serving.
    pub(super) async fn cancel_release(&self, app: &AppName, by: &Caller) -> Result<ReleaseInfo> {
        let record = self.store.control.app(app).await?;
        let entry = self.entry_for(&record);
        let version = match entry.cancel_in_progress(None) {
            Some(going) => {
                let line = format!("Cancelling v{} by {by}", going.version);
                entry.runtime.logs.platform("api", line);
                going.finished.cancelled().await;
                going.version
            }
            // Another node may be taking it live (the node this call reached is not the
            // one the push or change reached, as behind a load balancer).
            None => self.cancel_elsewhere(&record, by).await?,
        };
        let release = self.store.control.release(app, version).await?;
        let head = self.store.control.release_head(app).await?;
        Ok(release_info(&release, head.current.map(|r| r.version)))
    }

    /// Cancels the app's newest release on the node taking it live, if it is pending
    /// there; its version.
    async fn cancel_elsewhere(&self, app: &App, by: &Caller) -> Result<u64> {
        let none = || ApiError::invalid(format!("{} has no release in progress", app.name));
        let head = self.store.control.release_head(&app.name).await?;
        if head.latest == 0 {
            return Err(none().into());
        }
        let newest = self.store.control.release(&app.name, head.latest).await?;
        let me = &self.membership.me().name;
        let node = match newest.node {
            Some(node) if newest.status == ReleaseStatus::Pending && node != *me => node,
            _ => return Err(none().into()),
        };
        let call = NodeCall {
            app: app.name.clone(),
            app_id: app.id.clone(),
            by: by.to_string(),
            what: Asked::CancelRelease {
                version: newest.version,
            },
        };
        let empty = http_body_util::Empty::<bytes::Bytes>::new();
        self.call_node(node.as_str(), call, empty).await?;
        Ok(newest.version)
    }
}
