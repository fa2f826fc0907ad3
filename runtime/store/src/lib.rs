//! wdeploy's durable state, knowing nothing of wasmtime: content-addressed blobs on disk,
//! apps, releases, config vars, formation and tokens in SQLite, and the apps' add-on data
//! (key-value buckets and job queues) in a SQLite of its own.

pub mod addons;
pub mod blobs;
pub mod error;
pub mod kv;
pub mod queue;
pub mod state;

pub use addons::{AddonError, Addons};
pub use blobs::BlobStore;
pub use error::{Result, StoreError};
pub use kv::{DEFAULT_BUCKET, KeyPage};
pub use queue::{Job, QueueStats};
pub use state::{App, NewRelease, Release, ReleaseStatus, State};
