//! The apps' add-on data: key-value buckets and job queues.

use crate::error::{AddonError, AddonResult};
use crate::model::{AppId, Job, KeyPage, QueueStats, Tenant};
use async_trait::async_trait;
use std::time::Duration;
use wdeploy_core::addons::{
    MAX_BATCH, MAX_KEY_BYTES, MAX_LEASE, MAX_NAME_BYTES, MAX_PAYLOAD_BYTES, MAX_VALUE_BYTES,
    MIN_LEASE,
};

/// Every app's key-value buckets and job queues, keyed by app id (never by name, which a
/// later app may take). Every call names the app it serves (the host's binding of the
/// instance, never the guest) and touches that app's data only. Limits are those of
/// [`wdeploy_core::addons`] plus the app's quota, enforced alike by every backend: a call
/// over one returns [`AddonError::TooLarge`], `Invalid` or `OverQuota` naming it.
///
/// The quota counts [`stored_bytes`] of every key and job the app holds, kept as a running
/// total changed in the same transaction as each write (no scan per write). A write of an
/// app that is not registered (never created, or destroyed) fails with `AppGone`, so a
/// dyno outliving its app cannot leave data behind.
#[async_trait]
pub trait AddonStore: Send + Sync + 'static {
    async fn get(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<Option<Vec<u8>>>;
    async fn exists(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<bool>;
    async fn set(&self, app: &Tenant, bucket: &str, key: &str, value: Vec<u8>) -> AddonResult<()>;
    /// Deleting a missing key does nothing.
    async fn delete(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<()>;
    /// Adds `delta` to the counter at `key` (missing counts as 0; counters are decimal
    /// text) and returns the new value, exactly, however many dynos increment at once.
    async fn increment(
        &self,
        app: &Tenant,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> AddonResult<u64>;
    /// Keys starting with `prefix` in byte order, a page from `offset`.
    async fn keys(
        &self,
        app: &Tenant,
        bucket: &str,
        prefix: &str,
        offset: u64,
    ) -> AddonResult<KeyPage>;
    async fn get_many(
        &self,
        app: &Tenant,
        bucket: &str,
        keys: Vec<String>,
    ) -> AddonResult<Vec<Option<Vec<u8>>>>;
    async fn set_many(
        &self,
        app: &Tenant,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> AddonResult<()>;
    async fn delete_many(&self, app: &Tenant, bucket: &str, keys: Vec<String>) -> AddonResult<()>;

    /// Appends a job to `queue`; returns its id.
    async fn enqueue(&self, app: &Tenant, queue: &str, payload: Vec<u8>) -> AddonResult<u64>;
    /// Leases the oldest visible job of `queue` for `lease`, if there is one. A job whose
    /// lease ends before it is acked is visible again (at least once delivery).
    async fn take(&self, app: &Tenant, queue: &str, lease: Duration) -> AddonResult<Option<Job>>;
    async fn ack(&self, app: &Tenant, id: u64) -> AddonResult<()>;
    async fn queue_stats(&self, app: &Tenant) -> AddonResult<Vec<QueueStats>>;

    /// Registers a new app (with no data): its writes are accepted from now on.
    async fn create_app(&self, app: &AppId) -> AddonResult<()>;
    /// Removes every key and job of `app` and its registration (on destroy): later writes
    /// of instances still bound to it fail with `AppGone`.
    async fn delete_app(&self, app: &AppId) -> AddonResult<()>;
    /// Bytes the app's data counts against its quota.
    async fn usage(&self, app: &AppId) -> AddonResult<u64>;
}

/// Refuses an over-long bucket or queue name, or an empty one.
pub fn check_name(what: &'static str, name: &str) -> AddonResult<()> {
    if name.is_empty() {
        return Err(AddonError::Invalid(format!("{what} name is empty")));
    }
    check_size(what, name.len(), MAX_NAME_BYTES)
}

/// Refuses a bad bucket name or an over-long key (or key prefix).
pub fn check_key(bucket: &str, key: &str) -> AddonResult<()> {
    check_name("bucket", bucket)?;
    check_size("key", key.len(), MAX_KEY_BYTES)
}

/// Refuses what [`check_key`] refuses, or an over-large value.
pub fn check_entry(bucket: &str, key: &str, value: &[u8]) -> AddonResult<()> {
    check_key(bucket, key)?;
    check_size("value", value.len(), MAX_VALUE_BYTES)
}

/// Refuses a batch call of more than [`MAX_BATCH`] keys.
pub fn check_batch(n: usize) -> AddonResult<()> {
    if n > MAX_BATCH {
        return Err(AddonError::Invalid(format!(
            "a batch of {n} keys is over the limit of {MAX_BATCH}"
        )));
    }
    Ok(())
}

/// Refuses a bad queue name or an over-large job payload.
pub fn check_job(queue: &str, payload: &[u8]) -> AddonResult<()> {
    check_name("queue", queue)?;
    check_size("payload", payload.len(), MAX_PAYLOAD_BYTES)
}

/// Refuses a bad queue name or a lease outside [`MIN_LEASE`]..=[`MAX_LEASE`].
pub fn check_take(queue: &str, lease: Duration) -> AddonResult<()> {
    check_name("queue", queue)?;
    if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
        return Err(AddonError::Invalid(format!(
            "a lease of {}s is outside {}..={}s",
            lease.as_secs(),
            MIN_LEASE.as_secs(),
            MAX_LEASE.as_secs()
        )));
    }
    Ok(())
}

/// Refuses `size` bytes of `what` over `limit`.
pub fn check_size(what: &'static str, size: usize, limit: usize) -> AddonResult<()> {
    if size > limit {
        return Err(AddonError::TooLarge { what, size, limit });
    }
    Ok(())
}

/// A counter's value after adding `delta` to `current` (missing counts as 0; counters are
/// decimal text), or why it cannot be: the same rule for every backend.
pub fn incremented(key: &str, current: Option<&[u8]>, delta: u64) -> AddonResult<u64> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                AddonError::Invalid(format!(
                    "cannot increment `{key}`: its value is not a decimal number"
                ))
            })?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| AddonError::Invalid(format!("incrementing `{key}` overflows a u64")))
}

/// What one stored row costs against a quota beyond its own bytes: the row's header, its
/// index entries and page slack, so many tiny entries cannot hold far more disk than the
/// quota says.
pub const ROW_OVERHEAD_BYTES: u64 = 64;

/// Bytes a key (with its bucket name) and value, or a job (with its queue name and
/// payload), count against the app's quota.
pub fn stored_bytes(name: &str, key: &str, value_len: usize) -> u64 {
    ROW_OVERHEAD_BYTES + name.len() as u64 + key.len() as u64 + value_len as u64
}
