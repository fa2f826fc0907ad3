//! [`AddonStore`] over the embedded add-ons database: every call on a blocking thread,
//! so SQLite never stalls the async runtime's workers (and through them other guests and
//! the router).

use super::addons_db::AddonDb;
use crate::addons::AddonStore;
use crate::error::{AddonError, AddonResult};
use crate::model::{AppId, Job, KeyPage, QueueStats, Tenant};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct EmbeddedAddons(pub(crate) Arc<AddonDb>);

impl EmbeddedAddons {
    /// Runs `call` with the app's id and quota on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        app: &Tenant,
        call: impl FnOnce(&AddonDb, &str, u64) -> AddonResult<T> + Send + 'static,
    ) -> AddonResult<T> {
        let (db, id, quota) = (self.0.clone(), app.app.clone(), app.quota_bytes);
        super::off_async("add-on", move || call(&db, id.as_str(), quota))
            .await
            .map_err(AddonError::Backend)?
    }

    async fn admin<T: Send + 'static>(
        &self,
        app: &AppId,
        call: impl FnOnce(&AddonDb, &str) -> AddonResult<T> + Send + 'static,
    ) -> AddonResult<T> {
        let (db, id) = (self.0.clone(), app.clone());
        super::off_async("add-on", move || call(&db, id.as_str()))
            .await
            .map_err(AddonError::Backend)?
    }
}

#[async_trait]
impl AddonStore for EmbeddedAddons {
    async fn get(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<Option<Vec<u8>>> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app, _| db.get(app, &bucket, &key))
            .await
    }
    async fn exists(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<bool> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app, _| db.exists(app, &bucket, &key))
            .await
    }
    async fn set(&self, app: &Tenant, bucket: &str, key: &str, value: Vec<u8>) -> AddonResult<()> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app, quota| {
            db.set(app, quota, &bucket, &key, &value)
        })
        .await
    }
    async fn delete(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<()> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app, _| db.delete(app, &bucket, &key))
            .await
    }
    async fn increment(
        &self,
        app: &Tenant,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> AddonResult<u64> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app, quota| {
            db.increment(app, quota, &bucket, &key, delta)
        })
        .await
    }
    async fn keys(
        &self,
        app: &Tenant,
        bucket: &str,
        prefix: &str,
        offset: u64,
    ) -> AddonResult<KeyPage> {
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        self.blocking(app, move |db, app, _| {
            db.keys(app, &bucket, &prefix, offset)
        })
        .await
    }
    async fn get_many(
        &self,
        app: &Tenant,
        bucket: &str,
        keys: Vec<String>,
    ) -> AddonResult<Vec<Option<Vec<u8>>>> {
        let bucket = bucket.to_string();
        self.blocking(app, move |db, app, _| db.get_many(app, &bucket, &keys))
            .await
    }
    async fn set_many(
        &self,
        app: &Tenant,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> AddonResult<()> {
        let bucket = bucket.to_string();
        self.blocking(app, move |db, app, quota| {
            db.set_many(app, quota, &bucket, &entries)
        })
        .await
    }
    async fn delete_many(&self, app: &Tenant, bucket: &str, keys: Vec<String>) -> AddonResult<()> {
        let bucket = bucket.to_string();
        self.blocking(app, move |db, app, _| db.delete_many(app, &bucket, &keys))
            .await
    }
    async fn enqueue(&self, app: &Tenant, queue: &str, payload: Vec<u8>) -> AddonResult<u64> {
        let queue = queue.to_string();
        self.blocking(app, move |db, app, quota| {
            db.enqueue(app, quota, &queue, &payload)
        })
        .await
    }
    async fn take(&self, app: &Tenant, queue: &str, lease: Duration) -> AddonResult<Option<Job>> {
        let queue = queue.to_string();
        self.blocking(app, move |db, app, _| db.take(app, &queue, lease))
            .await
    }
    async fn ack(&self, app: &Tenant, id: u64) -> AddonResult<()> {
        self.blocking(app, move |db, app, _| db.ack(app, id)).await
    }
    async fn queue_stats(&self, app: &Tenant) -> AddonResult<Vec<QueueStats>> {
        self.blocking(app, |db, app, _| db.queue_stats(app)).await
    }
    async fn create_app(&self, app: &AppId) -> AddonResult<()> {
        self.admin(app, |db, app| db.create_app(app)).await
    }
    async fn delete_app(&self, app: &AppId) -> AddonResult<()> {
        self.admin(app, |db, app| db.delete_app(app)).await
    }
    async fn usage(&self, app: &AppId) -> AddonResult<u64> {
        self.admin(app, |db, app| db.usage(app)).await
    }
}
