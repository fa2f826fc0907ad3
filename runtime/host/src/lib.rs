//! The wdeploy host: the wasmtime engine, dynos, the router and the log stream.
//!
//! A host runs many apps in one process. Each app has a [`app::AppRuntime`] holding its
//! dynos; the [`router::Router`] sends HTTP requests to the app's web dynos; every dyno's
//! output and the router's lines go to the app's [`logs::LogStream`].

pub mod addons;
pub mod app;
pub mod backoff;
pub mod control;
pub mod egress;
pub mod engine;
pub mod ephemeral;
pub mod imports;
pub mod instance;
pub mod log_writer;
pub mod logs;
pub mod quota;
pub mod ready_body;
pub mod release;
pub mod router;
pub mod router_log;
pub mod state;
pub mod status;
pub mod web;
pub mod worker;

pub use app::{AppRuntime, Formation};
pub use control::{Host, HostConfig};
pub use egress::Egress;
pub use engine::{Engine, EngineOptions};
pub use logs::{LogLine, LogStream, SourceKind};
pub use release::{Release, ReleaseSpec};
pub use router::Router;
/// The add-ons database a host (or `wdeploy dev`) opens and hands to its releases.
pub use wdeploy_store::Addons;
