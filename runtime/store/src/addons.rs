//! The apps' add-on data: key-value buckets and job queues.

use crate::error::{AddonError, AddonResult};
use crate::model::{Job, KeyPage, QueueStats};
use async_trait::async_trait;
use std::time::Duration;
use wdeploy_core::AppName;
use wdeploy_core::addons::MAX_NAME_BYTES;

/// Every app's key-value buckets and job queues. Every call names the app it serves
/// (the host's binding of the instance, never the guest) and touches that app's data
/// only. Limits are those of [`wdeploy_core::addons`], enforced alike by every backend;
/// a call over one returns [`AddonError::TooLarge`] or `Invalid` naming it.
#[async_trait]
pub trait AddonStore: Send + Sync + 'static {
    async fn get(&self, app: &AppName, bucket: &str, key: &str) -> AddonResult<Option<Vec<u8>>>;
    async fn exists(&self, app: &AppName, bucket: &str, key: &str) -> AddonResult<bool>;
    async fn set(&self, app: &AppName, bucket: &str, key: &str, value: Vec<u8>) -> AddonResult<()>;
    /// Deleting a missing key does nothing.
    async fn delete(&self, app: &AppName, bucket: &str, key: &str) -> AddonResult<()>;
    /// Adds `delta` to the counter at `key` (missing counts as 0; counters are decimal
    /// text) and returns the new value, exactly, however many dynos increment at once.
    async fn increment(
        &self,
        app: &AppName,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> AddonResult<u64>;
    /// Keys starting with `prefix` in byte order, a page from `offset`.
    async fn keys(
        &self,
        app: &AppName,
        bucket: &str,
        prefix: &str,
        offset: u64,
    ) -> AddonResult<KeyPage>;
    async fn get_many(
        &self,
        app: &AppName,
        bucket: &str,
        keys: Vec<String>,
    ) -> AddonResult<Vec<Option<Vec<u8>>>>;
    async fn set_many(
        &self,
        app: &AppName,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> AddonResult<()>;
    async fn delete_many(&self, app: &AppName, bucket: &str, keys: Vec<String>) -> AddonResult<()>;

    /// Appends a job to `queue`; returns its id.
    async fn enqueue(&self, app: &AppName, queue: &str, payload: Vec<u8>) -> AddonResult<u64>;
    /// Leases the oldest visible job of `queue` for `lease`, if there is one. A job whose
    /// lease ends before it is acked is visible again (at least once delivery).
    async fn take(&self, app: &AppName, queue: &str, lease: Duration) -> AddonResult<Option<Job>>;
    async fn ack(&self, app: &AppName, id: u64) -> AddonResult<()>;
    async fn queue_stats(&self, app: &AppName) -> AddonResult<Vec<QueueStats>>;

    /// Removes every key and job of `app` (on destroy, so a new app of the same name
    /// starts empty).
    async fn delete_app(&self, app: &AppName) -> AddonResult<()>;
}

/// Refuses an over-long bucket or queue name, or an empty one.
pub fn check_name(what: &'static str, name: &str) -> AddonResult<()> {
    if name.is_empty() {
        return Err(AddonError::Invalid(format!("{what} name is empty")));
    }
    check_size(what, name.len(), MAX_NAME_BYTES)
}

/// Refuses `size` bytes of `what` over `limit`.
pub fn check_size(what: &'static str, size: usize, limit: usize) -> AddonResult<()> {
    if size > limit {
        return Err(AddonError::TooLarge { what, size, limit });
    }
    Ok(())
}
