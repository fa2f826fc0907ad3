//! wdeploy's durable state, knowing nothing of wasmtime: content-addressed blobs on disk
//! and apps, releases, config vars, formation and tokens in SQLite.

pub mod blobs;
pub mod error;
pub mod state;

pub use blobs::BlobStore;
pub use error::{Result, StoreError};
pub use state::{App, NewRelease, Release, ReleaseStatus, State};
