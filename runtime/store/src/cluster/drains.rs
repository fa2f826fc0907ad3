//! The apps' log drains in the KV bucket `wdeploy-drains`: `ID` (the app's id) → its
//! drains, oldest first. Each change is a compare-and-swap of that one key, so two nodes
//! adding drains at once never lose one and the cap holds. Keyed by id, like releases and
//! formation: a new app of a destroyed one's name starts without drains.
//!
//! Apps carry no revision on this backend, so every converge look of every node reads
//! the key (one read per app, as for the formation): each node learns a change within a
//! look, and ships the lines its own dynos and router write to each drain.

use super::control::{ClusterControl, cas, read};
use crate::error::{Result, StoreError};
use crate::model::{Drain, MAX_DRAINS_PER_APP};
use wdeploy_core::AppName;

pub(super) const DRAINS: &str = "wdeploy-drains";

impl ClusterControl {
    pub(super) async fn read_drains(&self, app: &AppName) -> Result<Vec<Drain>> {
        let id = self.app_id(app).await?;
        let (drains, _) = read::<Vec<Drain>>(&self.drains, id.as_str(), "the drains").await?;
        Ok(drains.unwrap_or_default())
    }

    pub(super) async fn insert_drain(&self, app: &AppName, drain: Drain) -> Result<Drain> {
        let id = self.app_id(app).await?;
        let mut refused = None;
        cas(&self.drains, id.as_str(), "adding a drain", |drains| {
            let mut drains: Vec<Drain> = drains.cloned().unwrap_or_default();
            refused = refusal(app, &drains, &drain);
            if refused.is_some() {
                return None;
            }
            drains.push(drain.clone());
            Some(drains)
        })
        .await?;
        match refused {
            Some(e) => Err(e),
            None => Ok(drain),
        }
    }

    pub(super) async fn delete_drain(&self, app: &AppName, which: &str) -> Result<Drain> {
        let id = self.app_id(app).await?;
        let mut removed = None;
        cas(&self.drains, id.as_str(), "removing a drain", |drains| {
            let mut drains: Vec<Drain> = drains.cloned().unwrap_or_default();
            let at = drains.iter().position(|d| d.is(which));
            removed = at.map(|at| drains.remove(at));
            removed.is_some().then_some(drains)
        })
        .await?;
        removed.ok_or_else(|| StoreError::NotFound(format!("drain {which} of {app}")))
    }
}

/// Why `drain` may not join `drains`, if it may not (the same errors as the embedded
/// store's).
fn refusal(app: &AppName, drains: &[Drain], drain: &Drain) -> Option<StoreError> {
    if drains.iter().any(|d| d.url == drain.url) {
        return Some(StoreError::Conflict(format!(
            "{app} already drains to {}",
            drain.url.redacted()
        )));
    }
    (drains.len() >= MAX_DRAINS_PER_APP).then(|| {
        StoreError::Invalid(format!(
            "{app} has {MAX_DRAINS_PER_APP} drains, the most an app may have: remove one first"
        ))
    })
}
