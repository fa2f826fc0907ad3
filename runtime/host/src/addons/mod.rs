//! The add-ons guests import: `wasi:keyvalue` (store, atomics, batch), `wasi:config/store`
//! and `wdeploy:platform/queue`, served from the host's add-ons database.
//!
//! The bindings come from the repository's `wit/` (world `wdeploy:platform/addons`), the
//! same files apps generate their bindings from, so the host cannot drift from the WIT
//! it publishes: a change there that the host does not follow fails to compile.
//!
//! Isolation: every instance's store data holds an [`AppAddons`] bound to the app of its
//! release when the instance is created: to the app's id (a new app of the same name is
//! another tenant) and its add-on quota. Guests name buckets, keys and queues, never an
//! app, and every query is scoped to the bound app. Over its quota a guest gets the
//! interface's error value, and the app's log an `R18` line now and then (`notice.rs`).

mod config;
mod keyvalue;
mod notice;
mod queue;

use crate::logs::LogStream;
use crate::metrics::{Addon, AppMetrics};
use notice::QuotaNotice;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wdeploy_core::AppName;
use wdeploy_store::{AddonError, AddonResult, AddonStore, Tenant};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "wdeploy:platform/addons",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::keyvalue::Bucket,
        },
    });
}

/// The interfaces this module serves, as guests import them. Worlds in `wit/` that import
/// add-ons must import exactly these (checked by `tests/wit.rs`).
pub const INTERFACES: &[&str] = &[
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
    "wasi:config/store@0.2.0-rc.1",
    "wdeploy:platform/queue@0.1.0",
];

/// Where a release's add-on data lives and whose it is: what the host (or `dev`) hands
/// [`crate::Release::load`].
pub struct AddonBinding {
    pub store: Arc<dyn AddonStore>,
    /// The app's id and its quota (the release's `limits.addons_mb`, capped by the host).
    pub tenant: Tenant,
    /// The app's log stream, told when the quota refuses a write.
    pub logs: Arc<LogStream>,
    /// Where the app's add-on calls and failures are counted.
    pub metrics: Arc<AppMetrics>,
}

/// One app's add-ons, as its instances see them: bound to the app when the release is
/// loaded, shared by every instance of every dyno of that release.
pub struct AppAddons {
    pub app: AppName,
    tenant: Tenant,
    store: Arc<dyn AddonStore>,
    /// The release's config vars, served by `wasi:config/store`.
    config: BTreeMap<String, String>,
    over_quota: QuotaNotice,
    metrics: Arc<AppMetrics>,
}

impl AppAddons {
    pub fn new(app: AppName, binding: AddonBinding, config: BTreeMap<String, String>) -> Self {
        AppAddons {
            app,
            tenant: binding.tenant,
            store: binding.store,
            config,
            over_quota: QuotaNotice::new(binding.logs),
            metrics: binding.metrics,
        }
    }

    /// The store, for calls on behalf of this app only.
    fn store(&self) -> &dyn AddonStore {
        &*self.store
    }

    /// Counts a call to `addon`; notes a failure of the store itself in the host's log,
    /// and an over-quota refusal in the app's (rate limited); the guest gets the WIT
    /// error value either way.
    fn report<T>(&self, addon: Addon, outcome: AddonResult<T>) -> AddonResult<T> {
        self.metrics.addon_call(addon, outcome.is_err());
        match &outcome {
            Err(AddonError::Backend(e)) => {
                tracing::error!(app = %self.app, "add-on storage failed: {e}");
            }
            Err(AddonError::OverQuota { used, quota, .. }) => {
                self.over_quota.refused(*used, *quota);
            }
            _ => {}
        }
        outcome
    }
}

/// What the add-on host functions see of the store data.
pub struct AddonView<'a> {
    addons: &'a AppAddons,
    table: &'a mut ResourceTable,
}

struct HasAddons;

impl HasData for HasAddons {
    type Data<'a> = AddonView<'a>;
}

impl<'a> AddonView<'a> {
    /// The add-ons of an instance and the resource table their handles live in.
    pub fn new(addons: &'a AppAddons, table: &'a mut ResourceTable) -> Self {
        AddonView { addons, table }
    }
}

/// Adds every add-on interface to a linker whose store data `view` projects onto an
/// [`AddonView`] (the guest layer's store data does, so this module needs nothing of it).
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> AddonView<'_>,
) -> wasmtime::Result<()> {
    bindings::Addons::add_to_linker::<T, HasAddons>(linker, view)
}
