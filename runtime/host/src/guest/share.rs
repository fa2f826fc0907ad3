//! Each app's share of the host's instance pool.
//!
//! The engine has one pooling allocator for every dyno of every app. Without a share, one
//! app's slow requests (each holding an instance) could take every slot, and then other
//! apps' requests, restarts and workers failed to instantiate. Every instance takes a
//! [`ShareSlot`] of its app before it is created and gives it back when its store is
//! dropped; an app at its share is refused (its own requests get a 503 `H11`), whatever
//! the others do.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use wdeploy_core::AppName;

/// Instances in use per app, and how many one app may hold.
#[derive(Debug)]
pub struct InstanceShares {
    per_app: u32,
    in_use: Mutex<HashMap<AppName, u32>>,
}

/// An app has all the instances it may hold on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("app {app} already runs {share} instances, its share of this host's instance pool")]
pub struct ShareExhausted {
    pub app: AppName,
    pub share: u32,
}

/// One instance of an app, counted until it is dropped.
#[derive(Debug)]
pub struct ShareSlot {
    shares: Arc<InstanceShares>,
    app: AppName,
}

impl InstanceShares {
    pub fn new(per_app: u32) -> Arc<InstanceShares> {
        Arc::new(InstanceShares {
            per_app: per_app.max(1),
            in_use: Mutex::new(HashMap::new()),
        })
    }

    /// How many instances one app may hold.
    pub fn per_app(&self) -> u32 {
        self.per_app
    }

    /// Instances `app` holds now.
    pub fn in_use(&self, app: &AppName) -> u32 {
        self.in_use.lock().get(app).copied().unwrap_or(0)
    }

    /// A slot for one more instance of `app`, unless it holds its whole share.
    pub fn take(self: &Arc<Self>, app: &AppName) -> Result<ShareSlot, ShareExhausted> {
        let mut in_use = self.in_use.lock();
        let count = in_use.entry(app.clone()).or_insert(0);
        if *count >= self.per_app {
            return Err(ShareExhausted {
                app: app.clone(),
                share: self.per_app,
            });
        }
        *count += 1;
        Ok(ShareSlot {
            shares: self.clone(),
            app: app.clone(),
        })
    }
}

impl Drop for ShareSlot {
    fn drop(&mut self) {
        let mut in_use = self.shares.in_use.lock();
        if let Some(count) = in_use.get_mut(&self.app) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_use.remove(&self.app);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_holds_at_most_its_share_and_others_are_unaffected() {
        let shares = InstanceShares::new(2);
        let greedy: AppName = "greedy".parse().unwrap();
        let quiet: AppName = "quiet".parse().unwrap();
        let a = shares.take(&greedy).unwrap();
        let _b = shares.take(&greedy).unwrap();
        let refused = shares.take(&greedy).unwrap_err();
        assert_eq!(refused.share, 2);
        assert!(refused.to_string().contains("app greedy"), "{refused}");
        let _q = shares.take(&quiet).unwrap();
        assert_eq!((shares.in_use(&greedy), shares.in_use(&quiet)), (2, 1));
        drop(a);
        assert_eq!(shares.in_use(&greedy), 1);
        let _c = shares.take(&greedy).unwrap();
    }
}
