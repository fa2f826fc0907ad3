//! Turning an app's source into a slug: buildpacks, the Procfile, slug packing.

pub mod buildpack;
pub mod cache;
pub mod digest;
pub mod procfile;
pub mod settings;
pub mod slug;
pub mod sync;
pub mod wasm;

pub use buildpack::{BuildDirs, BuildRequest, Buildpack, build};
pub use procfile::{ProcessType, Procfile, ProcfileError};
pub use settings::{AppSettings, Isolation};
pub use slug::{Slug, SlugFile, SlugManifest};
