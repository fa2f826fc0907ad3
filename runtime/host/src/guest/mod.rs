//! Running guest code: the one wasmtime engine of a host and each app's share of it, the `Store` of each instance
//! with what it carries (WASI context, add-ons, limits), the import check, memory quotas
//! the ephemeral disk quota (with the `wasi:filesystem` that enforces it)
//! and the egress rules for guests' outgoing HTTP (the host's, and each app's allow-list). Nothing here knows about dynos or apps
//! beyond the add-on binding an instance carries.

pub mod allow_list;
pub mod compile_cache;
pub mod cpu;
pub mod data;
pub mod disk;
pub mod egress;
pub mod engine;
pub mod imports;
pub mod instance;
pub mod lane;
pub mod lane_spares;
pub mod outgoing;
pub mod preopens;
pub mod quota;
pub mod quota_fs;
pub mod share;
pub mod swap;
