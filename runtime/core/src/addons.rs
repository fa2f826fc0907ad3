//! The add-ons' contract with guests: names and limits every store backend enforces
//! alike, so an app behaves the same on one host or a cluster.

use std::time::Duration;

/// The bucket a guest's `open("")` and the `kv:*` commands use unless told otherwise.
pub const DEFAULT_BUCKET: &str = "default";

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Longest bucket or queue name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Largest job payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 256 << 10;
/// Shortest lease a worker may take on a job.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// Longest lease a worker may take on a job.
pub const MAX_LEASE: Duration = Duration::from_secs(12 * 3600);
/// Most keys in one batch call.
pub const MAX_BATCH: usize = 1000;
/// Most keys in one page of a listing.
pub const PAGE_KEYS: usize = 1000;
/// How long done jobs are kept (they count in `queue:stats`).
pub const DONE_RETENTION: Duration = Duration::from_secs(24 * 3600);
