//! Each app's share of the host's instance pool, and a reserve for booting dynos.
//!
//! The engine has one pooling allocator for every dyno of every app. Without a share, one
//! app's slow requests (each holding an instance) could take every slot, and then other
//! apps' requests, restarts and workers failed to instantiate. Every instance takes a
//! [`ShareSlot`] of its app before it is created and gives it back when its store is
//! dropped; an app at its share is refused (its own requests get a 503 `H11`), whatever
//! the others do. The last few slots of the pool are kept for booting dynos (a web dyno's
//! first instance, a worker, a one-off): extra instances for requests never take them,
//! so several busy apps together cannot keep another app's dyno from starting.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wdeploy_core::AppName;

/// Instances in use per app, and how many one app may hold.
#[derive(Debug)]
pub struct InstanceShares {
    per_app: u32,
    /// Linear memory one app's instances may hold together, in bytes.
    memory_per_app: usize,
    /// Slots of the pool only booting dynos may take.
    reserve: u32,
    pool: u32,
    in_use: Mutex<InUse>,
}

#[derive(Debug, Default)]
struct InUse {
    total: u32,
    by_app: HashMap<AppName, u32>,
    /// Linear memory each app's live instances have grown to, in bytes.
    memory_by_app: HashMap<AppName, AppMemory>,
}

/// The memory of one app's live instances: together, and how many have each size (so
/// the largest is at hand for the metrics).
#[derive(Debug, Default)]
struct AppMemory {
    total: usize,
    sizes: BTreeMap<usize, u32>,
}

impl AppMemory {
    fn add_size(&mut self, size: usize) {
        if size > 0 {
            *self.sizes.entry(size).or_insert(0) += 1;
        }
    }

    fn remove_size(&mut self, size: usize) {
        if let Some(count) = self.sizes.get_mut(&size) {
            *count -= 1;
            if *count == 0 {
                self.sizes.remove(&size);
            }
        }
    }
}

/// What one app holds of the pool now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppUsage {
    pub instances: u32,
    /// Linear memory of its instances together, in bytes.
    pub memory_bytes: usize,
    /// Linear memory of its largest instance.
    pub largest_instance_bytes: usize,
}

/// What an instance is for, which decides whether it may take the boot reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The instance a dyno needs to run at all: a web dyno's first, a worker, a one-off.
    Boot,
    /// One more instance for a web dyno's concurrent requests.
    Request,
}

/// An instance was refused: the app holds its whole share, or (for a request) only the
/// boot reserve is left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareExhausted {
    #[error("app {app} already runs {share} instances, its share of this host's instance pool")]
    App { app: AppName, share: u32 },
    #[error(
        "this host's instance pool is full but for the {reserve} instances kept for starting dynos"
    )]
    Pool { reserve: u32 },
}

/// Growing an instance's memory would take its app past its memory budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "app {app}'s instances would hold {wanted} bytes of memory together, its budget is {budget}"
)]
pub struct AppMemoryExceeded {
    pub app: AppName,
    pub wanted: usize,
    pub budget: usize,
}

/// One instance of an app, counted (with the memory it grew to) until it is dropped.
#[derive(Debug)]
pub struct ShareSlot {
    shares: Arc<InstanceShares>,
    app: AppName,
    /// Bytes of linear memory this instance has been allowed to grow to.
    memory: usize,
}

impl InstanceShares {
    /// Shares of `per_app` instances out of a pool of `pool`, of which `reserve` are
    /// kept for booting dynos, and `memory_per_app` bytes of linear memory per app.
    pub fn new(
        pool: u32,
        per_app: u32,
        reserve: u32,
        memory_per_app: usize,
    ) -> Arc<InstanceShares> {
        let pool = pool.max(1);
        Arc::new(InstanceShares {
            per_app: per_app.clamp(1, pool),
            memory_per_app,
            reserve: reserve.min(pool - 1),
            pool,
            in_use: Mutex::new(InUse::default()),
        })
    }

    /// How many instances one app may hold.
    pub fn per_app(&self) -> u32 {
        self.per_app
    }

    /// Instances `app` holds now.
    pub fn in_use(&self, app: &AppName) -> u32 {
        self.in_use.lock().by_app.get(app).copied().unwrap_or(0)
    }

    /// What `app` holds now: instances and their memory (for the metrics).
    pub fn usage(&self, app: &AppName) -> AppUsage {
        let in_use = self.in_use.lock();
        let memory = in_use.memory_by_app.get(app);
        AppUsage {
            instances: in_use.by_app.get(app).copied().unwrap_or(0),
            memory_bytes: memory.map_or(0, |m| m.total),
            largest_instance_bytes: memory
                .and_then(|m| m.sizes.keys().next_back().copied())
                .unwrap_or(0),
        }
    }

    /// The pool's slots, and how many are in use.
    pub fn pool(&self) -> (u32, u32) {
        (self.pool, self.in_use.lock().total)
    }

    /// A slot for one more instance of `app`, unless it holds its whole share or, for a
    /// request, the pool is down to its boot reserve.
    pub fn take(
        self: &Arc<Self>,
        app: &AppName,
        purpose: Purpose,
    ) -> Result<ShareSlot, ShareExhausted> {
        let mut in_use = self.in_use.lock();
        let held = in_use.by_app.get(app).copied().unwrap_or(0);
        if held >= self.per_app {
            return Err(ShareExhausted::App {
                app: app.clone(),
                share: self.per_app,
            });
        }
        if purpose == Purpose::Request && in_use.total >= self.pool - self.reserve {
            return Err(ShareExhausted::Pool {
                reserve: self.reserve,
            });
        }
        in_use.total += 1;
        *in_use.by_app.entry(app.clone()).or_insert(0) += 1;
        Ok(ShareSlot {
            shares: self.clone(),
            app: app.clone(),
            memory: 0,
        })
    }
}

impl ShareSlot {
    /// Lets this instance's memory grow by `bytes`, unless the app's instances together
    /// would then hold more than its budget.
    pub fn grow_memory(&mut self, bytes: usize) -> Result<(), AppMemoryExceeded> {
        let budget = self.shares.memory_per_app;
        let mut in_use = self.shares.in_use.lock();
        let held = in_use.memory_by_app.entry(self.app.clone()).or_default();
        let wanted = held.total.saturating_add(bytes);
        if wanted > budget {
            return Err(AppMemoryExceeded {
                app: self.app.clone(),
                wanted,
                budget,
            });
        }
        held.total = wanted;
        held.remove_size(self.memory);
        self.memory += bytes;
        held.add_size(self.memory);
        Ok(())
    }
}

impl Drop for ShareSlot {
    fn drop(&mut self) {
        let mut in_use = self.shares.in_use.lock();
        if let Some(held) = in_use.memory_by_app.get_mut(&self.app) {
            held.total = held.total.saturating_sub(self.memory);
            held.remove_size(self.memory);
            if held.total == 0 && held.sizes.is_empty() {
                in_use.memory_by_app.remove(&self.app);
            }
        }
        in_use.total = in_use.total.saturating_sub(1);
        if let Some(count) = in_use.by_app.get_mut(&self.app) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_use.by_app.remove(&self.app);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> AppName {
        name.parse().unwrap()
    }

    #[test]
    fn an_app_holds_at_most_its_share_and_others_are_unaffected() {
        let shares = InstanceShares::new(100, 2, 0, usize::MAX);
        let (greedy, quiet) = (app("greedy"), app("quiet"));
        let a = shares.take(&greedy, Purpose::Request).unwrap();
        let _b = shares.take(&greedy, Purpose::Request).unwrap();
        for purpose in [Purpose::Request, Purpose::Boot] {
            let refused = shares.take(&greedy, purpose).unwrap_err();
            assert_eq!(
                refused,
                ShareExhausted::App {
                    app: greedy.clone(),
                    share: 2
                }
            );
            assert!(refused.to_string().contains("app greedy"), "{refused}");
        }
        let _q = shares.take(&quiet, Purpose::Request).unwrap();
        assert_eq!((shares.in_use(&greedy), shares.in_use(&quiet)), (2, 1));
        drop(a);
        assert_eq!(shares.in_use(&greedy), 1);
        let _c = shares.take(&greedy, Purpose::Request).unwrap();
    }

    #[test]
    fn the_last_slots_are_kept_for_booting_dynos() {
        // A pool of 4 with 1 kept: busy apps' requests get 3 slots between them.
        let shares = InstanceShares::new(4, 2, 1, usize::MAX);
        let _a = shares.take(&app("alpha"), Purpose::Request).unwrap();
        let _b = shares.take(&app("alpha"), Purpose::Request).unwrap();
        let _c = shares.take(&app("beta"), Purpose::Request).unwrap();
        assert_eq!(
            shares.take(&app("beta"), Purpose::Request).unwrap_err(),
            ShareExhausted::Pool { reserve: 1 }
        );
        // A quiet app's dyno still starts.
        let boot = shares.take(&app("quiet"), Purpose::Boot).unwrap();
        drop(boot);
        // A reserve never swallows the whole pool.
        let tiny = InstanceShares::new(1, 5, 3, usize::MAX);
        assert_eq!(tiny.per_app(), 1);
        let _only = tiny.take(&app("alpha"), Purpose::Request).unwrap();
    }

    #[test]
    fn an_apps_instances_share_one_memory_budget_and_give_it_back() {
        let shares = InstanceShares::new(100, 10, 0, 100);
        let (big, other) = (app("big"), app("other"));
        let mut first = shares.take(&big, Purpose::Boot).unwrap();
        let mut second = shares.take(&big, Purpose::Request).unwrap();
        first.grow_memory(60).unwrap();
        let refused = second.grow_memory(50).unwrap_err();
        assert_eq!((refused.wanted, refused.budget), (110, 100));
        second.grow_memory(40).unwrap();
        // Another app has a budget of its own.
        let mut theirs = shares.take(&other, Purpose::Boot).unwrap();
        theirs.grow_memory(100).unwrap();
        let usage = shares.usage(&big);
        assert_eq!(
            (
                usage.instances,
                usage.memory_bytes,
                usage.largest_instance_bytes
            ),
            (2, 100, 60)
        );
        // A dropped instance gives its memory back.
        drop(first);
        assert_eq!(shares.usage(&big).largest_instance_bytes, 40);
        second.grow_memory(60).unwrap();
        assert!(second.grow_memory(1).is_err());
        assert_eq!(shares.usage(&big).largest_instance_bytes, 100);
        drop(second);
        assert_eq!(shares.usage(&big), AppUsage::default());
        assert_eq!(shares.pool(), (100, 1));
    }
}
