//! The store boundary: everything a host keeps durably, behind one interface the rest of
//! the host codes against without knowing which backend runs.
//!
//! A [`Store`] has three facets: [`ControlStore`] (apps, release logs with their config
//! vars, formation, API tokens), [`BlobStore`] (slug manifests and components by content
//! digest) and [`AddonStore`] (the apps' key-value buckets and job queues). All calls are
//! async; a backend that blocks (SQLite, files) does so on blocking threads, never on
//! the async workers that also run guests and the router. Errors are typed
//! ([`StoreError`], [`AddonError`]) the same for every backend.
//!
//! [`embedded`] is the default backend (files + SQLite under a data directory). This
//! crate knows nothing of wasmtime or HTTP.

pub mod addons;
pub mod blobs;
pub mod control;
pub mod embedded;
pub mod error;
pub mod model;

pub use addons::AddonStore;
pub use blobs::{BlobStore, ByteStream};
pub use control::ControlStore;
pub use error::{AddonError, AddonResult, Result, StoreError};
pub use model::{App, AppId, Job, KeyPage, NewRelease, QueueStats, Release, ReleaseHead, Tenant};

use std::sync::Arc;

/// A host's store: the three facets of one backend.
#[derive(Clone)]
pub struct Store {
    pub control: Arc<dyn ControlStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub addons: Arc<dyn AddonStore>,
}
