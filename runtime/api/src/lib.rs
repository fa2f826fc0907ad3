//! The control API: wire types, the server routes over a [`server::Platform`], and the
//! typed client the CLI uses. Only this crate knows the wire format; its types come from
//! `wdeploy-core` and serialise as the strings and maps they stand for.

pub mod client;
pub mod dashboard;
pub mod error;
pub mod live;
pub mod people;
pub mod server;
pub mod wire;

pub use client::{Client, ClientError, LiveStream};
pub use error::ApiError;
