//! [`AddonStore`] over the embedded add-ons database: every call on a blocking thread,
//! so SQLite never stalls the async runtime's workers (and through them other guests and
//! the router).

use super::addons_db::AddonDb;
use crate::addons::AddonStore;
use crate::error::{AddonError, AddonResult};
use crate::model::{Job, KeyPage, QueueStats};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use wdeploy_core::AppName;

#[derive(Clone)]
pub struct EmbeddedAddons(pub(crate) Arc<AddonDb>);

impl EmbeddedAddons {
    async fn blocking<T: Send + 'static>(
        &self,
        app: &AppName,
        call: impl FnOnce(&AddonDb, &str) -> AddonResult<T> + Send + 'static,
    ) -> AddonResult<T> {
        let (db, app) = (self.0.clone(), app.clone());
        super::off_async("add-on", move || call(&db, &app))
            .await
            .map_err(AddonError::Backend)?
    }
}

#[async_trait]
impl AddonStore for EmbeddedAddons {
    async fn get(&self, app: &AppName, bucket: &str, key: &str) -> AddonResult<Option<Vec<u8>>> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app| db.get(app, &bucket, &key))
            .await
    }
    async fn exists(&self, app: &AppName, bucket: &str, key: &str) -> AddonResult<bool> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app| db.exists(app, &bucket, &key))
            .await
    }
    async fn set(&self, app: &AppName, bucket: &str, key: &str, value: Vec<u8>) -> AddonResult<()> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app| db.set(app, &bucket, &key, &value))
            .await
    }
    async fn delete(&self, app: &AppName, bucket: &str, key: &str) -> AddonResult<()> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app| db.delete(app, &bucket, &key))
            .await
    }
    async fn increment(
        &self,
        app: &AppName,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> AddonResult<u64> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.blocking(app, move |db, app| db.increment(app, &bucket, &key, delta))
            .await
    }
    async fn keys(
        &self,
        app: &AppName,
        bucket: &str,
        prefix: &str,
        offset: u64,
    ) -> AddonResult<KeyPage> {
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        self.blocking(app, move |db, app| db.keys(app, &bucket, &prefix, offset))
            .await
    }
    async fn get_many(
        &self,
        app: &AppName,
        bucket: &str,
        keys: Vec<String>,
    ) -> AddonResult<Vec<Option<Vec<u8>>>> {
        let bucket = bucket.to_string();
        self.blocking(app, move |db, app| db.get_many(app, &bucket, &keys))
            .await
    }
    async fn set_many(
        &self,
        app: &AppName,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> AddonResult<()> {
        let bucket = bucket.to_string();
        self.blocking(app, move |db, app| db.set_many(app, &bucket, &entries))
            .await
    }
    async fn delete_many(&self, app: &AppName, bucket: &str, keys: Vec<String>) -> AddonResult<()> {
        let bucket = bucket.to_string();
        self.blocking(app, move |db, app| db.delete_many(app, &bucket, &keys))
            .await
    }
    async fn enqueue(&self, app: &AppName, queue: &str, payload: Vec<u8>) -> AddonResult<u64> {
        let queue = queue.to_string();
        self.blocking(app, move |db, app| db.enqueue(app, &queue, &payload))
            .await
    }
    async fn take(&self, app: &AppName, queue: &str, lease: Duration) -> AddonResult<Option<Job>> {
        let queue = queue.to_string();
        self.blocking(app, move |db, app| db.take(app, &queue, lease))
            .await
    }
    async fn ack(&self, app: &AppName, id: u64) -> AddonResult<()> {
        self.blocking(app, move |db, app| db.ack(app, id)).await
    }
    async fn queue_stats(&self, app: &AppName) -> AddonResult<Vec<QueueStats>> {
        self.blocking(app, |db, app| db.queue_stats(app)).await
    }
    async fn delete_app(&self, app: &AppName) -> AddonResult<()> {
        self.blocking(app, |db, app| db.delete_app(app)).await
    }
}
