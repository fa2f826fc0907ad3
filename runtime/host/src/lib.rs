//! The wdeploy host: runs many apps' dynos in one process on wasmtime, routes HTTP to
//! them, streams their logs, and carries out the control API over a store.
//!
//! Layers, bottom up (each only uses the ones before it):
//! - `token_bucket`: a burst then a steady rate, for the lines a tenant can make the host
//!   write at will; `client_tls`: the roots and settings of every TLS connection the
//!   host makes;
//! - `metrics/`: the host's registry (Prometheus text at `/metrics`) and each active
//!   app's counters and last hour;
//! - `listener/`: the HTTP listeners' limits (connections, timeouts, header bytes),
//!   which the router and the control API serve through;
//! - `logs/`: each app's log stream and its log drains;
//! - `addons/`: the add-on imports guests call, served from the store's add-on facet;
//! - `guest/`: the engine and everything one component instance needs;
//! - `release`: a release loaded into the engine (compiled, pre-instantiated);
//! - `deadlines`: how long a boot, a release phase and a one-off may take;
//! - `dyno/`: web and worker dynos made of instances of a release;
//! - `cluster`: this host as a node: live nodes and the placement of dynos on them;
//! - `app`: one app's share of its formation of dynos (deploys with preboot, scaling,
//!   restarts);
//! - `router/`: the HTTP front, routing by host name to an app's web dynos (and
//!   answering ACME HTTP-01 challenges);
//! - `tls/`: the router's TLS: checking the certificates apps are served with, and
//!   ordering them over ACME;
//! - `control/`: the [`Host`]: the control API's [`wdeploy_api::server::Platform`] over
//!   a [`wdeploy_store::Store`] and the apps' runtimes.
//!
//! Modules are private; what the CLI (`wdeploy host`, `wdeploy dev`) and the tests use
//! is re-exported here.

mod addons;
mod app;
mod client_tls;
mod cluster;
mod control;
mod deadlines;
mod dyno;
mod guest;
mod listener;
mod logs;
mod metrics;
mod release;
mod router;
pub mod tls;
mod token_bucket;

pub use addons::AddonBinding;
pub use addons::INTERFACES as ADDON_INTERFACES;
pub use app::{AppRuntime, OneOffCommand};
pub use cluster::placement::Share;
pub use control::{BlobCollection, Host, HostConfig, PersonLimits};
pub use deadlines::Deadlines;
pub use dyno::backoff::Backoff;
pub use dyno::web::WebStart;
pub use guest::egress::Egress;
pub use guest::engine::{
    DEFAULT_MAX_APP_MEMORY_MB, DEFAULT_MAX_DISK_MB, Engine, EngineOptions, Flavor,
};
pub use guest::imports::instantiate_pre;
pub use guest::lane::{LaneOptions, default_lane_threads};
pub use guest::swap::SlotReset;
pub use listener::{
    Accepted, HEADER_TIMEOUT, IDLE_TIMEOUT, ListenerLimits, MAX_STREAMS_PER_CONNECTION, Transport,
    raise_fd_limit, serve as serve_http,
};
pub use logs::drain::DrainOptions;
pub use logs::rate::LogRate;
pub use logs::{BUFFER_LINES, LogLine, LogSource, LogStream};
pub use metrics::{AppMetrics, Metrics};
pub use release::{Release, ReleaseSpec};
pub use router::{CHALLENGE_PATH, ChallengeSource, Router};
pub use tls::acme::{AcmeClient, AcmeOptions, Issued, LETS_ENCRYPT};
