//! The add-ons guests import: `wasi:keyvalue` (store, atomics, batch), `wasi:config/store`
//! and `wdeploy:platform/queue`, served from the host's add-ons database.
//!
//! The bindings come from the repository's `wit/` (world `wdeploy:platform/addons`), the
//! same files apps generate their bindings from, so the host cannot drift from the WIT
//! it publishes: a change there that the host does not follow fails to compile.
//!
//! Isolation: every instance's store data holds an [`AppAddons`] bound to the app of its
//! release when the instance is created. Guests name buckets, keys and queues, never an
//! app, and every query is scoped to the bound app.

mod config;
mod keyvalue;
mod queue;

use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wdeploy_core::AppName;
use wdeploy_store::{AddonError, AddonResult, AddonStore};

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

/// One app's add-ons, as its instances see them: bound to the app when the release is
/// loaded, shared by every instance of every dyno of that release.
pub struct AppAddons {
    pub app: AppName,
    store: Arc<dyn AddonStore>,
    /// The release's config vars, served by `wasi:config/store`.
    config: BTreeMap<String, String>,
}

impl AppAddons {
    pub fn new(app: AppName, store: Arc<dyn AddonStore>, config: BTreeMap<String, String>) -> Self {
        AppAddons { app, store, config }
    }

    /// The store, for calls on behalf of this app only.
    fn store(&self) -> &dyn AddonStore {
        &*self.store
    }

    /// Notes a failure of the store itself in the host's log (the guest gets the WIT
    /// error value either way).
    fn report<T>(&self, outcome: AddonResult<T>) -> AddonResult<T> {
        if let Err(AddonError::Backend(e)) = &outcome {
            tracing::error!(app = %self.app, "add-on storage failed: {e}");
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
