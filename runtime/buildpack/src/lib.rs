//! The buildpack runner: turns an app's source into a slug on this machine (detect,
//! compile with the Heroku buildpack API, pack the components), with a build cache.
//!
//! It knows nothing of wasmtime or the host: what it produces is a [`Slug`] on disk,
//! described by the shared vocabulary of `wdeploy-core`.

pub mod buildpack;
pub mod cache;
pub mod slug;
pub mod sync;

pub use buildpack::{BuildDirs, BuildRequest, Buildpack, PLATFORM_WIT, build};
pub use slug::Slug;
