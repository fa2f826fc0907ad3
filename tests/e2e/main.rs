//! End-to-end tests: the real `wdeploy` binary (`host`, the CLI, `dev`), the real
//! buildpacks, wasmtime and HTTP over loopback. One binary, a module per area, all behind
//! one fixture ([`fixture`]: `TestHost`, `dev`, the apps, `poll_until`).
//!
//! The user-facing samples (`samples/`) are built by their real buildpacks through one
//! shared build cache; the test-only guests (faults, stranger) are built once by
//! `wdeploy-test-components` and deployed as prebuilt components.
//!
//! `WDEPLOY_SKIP_POLYGLOT=1` skips the tests that need pip or npm (`polyglot`).

mod fixture;

mod acme;
mod addons;
mod api;
mod async_guests;
mod attacks;
mod backup;
mod blob_gc;
mod buildpacks;
mod certs;
mod cluster;
mod cluster_auth;
mod cluster_dynos;
mod cluster_import;
mod dashboard;
mod deploy;
mod dev;
mod domains;
mod drains;
mod durability;
mod egress;
mod idle;
mod isolation;
mod lifecycle;
mod maintenance;
mod metrics;
mod people;
mod polyglot;
mod quotas;
mod releases;
mod rename;
mod streams;
mod tls;
mod write_idioms;
