//! The vocabulary every wdeploy crate shares, as types.
//!
//! An app is named by an [`AppName`]; its source builds into a slug described by a
//! [`SlugManifest`] whose id is a [`Digest`]; a [`Procfile`] names its [`ProcessType`]s;
//! a [`Formation`] says how many dynos of each run; [`AppSettings`] come from
//! `wdeploy.toml`. Releases move through [`ReleaseStatus`], dynos through [`DynoState`],
//! and every log line has a [`LogSource`]; a
//! log drain is a [`DrainUrl`] with a [`DrainId`].
//!
//! Each type serialises exactly as the string or map it replaced, so stored data and the
//! wire format stay compatible. This crate knows nothing of wasmtime, SQLite or HTTP.

mod text;

pub mod addons;
pub mod app_name;
pub mod config_vars;
pub mod counted;
pub mod digest;
pub mod domain;
pub mod drain;
pub mod dyno;
pub mod egress;
pub mod formation;
pub mod idle;
pub mod logs;
pub mod page_url;
pub mod person;
pub mod process;
pub mod procfile;
pub mod release;
pub mod settings;
pub mod slug;
pub mod wasm;

pub use app_name::AppName;
pub use digest::Digest;
pub use domain::Domain;
pub use drain::{DrainId, DrainScheme, DrainUrl};
pub use dyno::DynoState;
pub use formation::Formation;
pub use idle::IdleAfter;
pub use logs::LogSource;
pub use person::{Person, TokenId};
pub use process::ProcessType;
pub use procfile::{Process, Procfile, ProcfileError};
pub use release::ReleaseStatus;
pub use settings::{AppSettings, Isolation, SettingsError};
pub use slug::{SlugFile, SlugManifest};
