//! `wasi:keyvalue` (0.2.0-draft: store, atomics, batch) over the app's buckets.
//!
//! Limits and bad arguments come back as `error::other` with a message naming the limit
//! (a guest can recover from those); only a host-side failure to hand out a handle traps.

use super::bindings::wasi::keyvalue::{atomics, batch, store};
use super::{AddonView, AppAddons};
use wasmtime::component::Resource;
use wdeploy_store::addons::check_name;
use wdeploy_store::{AddonError, DEFAULT_BUCKET};

/// An open bucket: just its name, since the app comes from the instance.
pub struct Bucket {
    name: String,
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

fn to_wit(e: AddonError) -> store::Error {
    match e {
        AddonError::Db(_) => store::Error::Other("the key-value store is unavailable".into()),
        e => store::Error::Other(e.to_string()),
    }
}

impl AddonView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.name.clone())
    }
}

impl AppAddons {
    /// A store call on `bucket`, its error in WIT terms.
    async fn kv<T: Send + 'static>(
        &self,
        bucket: String,
        call: impl FnOnce(&wdeploy_store::Addons, &str, &str) -> Result<T, AddonError> + Send + 'static,
    ) -> KvResult<T> {
        Ok(self
            .blocking(move |store, app| call(store, app, &bucket))
            .await?
            .map_err(to_wit))
    }
}

impl store::Host for AddonView<'_> {
    /// Any bucket name is the app's own; the empty identifier is the default bucket.
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        let name = if identifier.is_empty() {
            DEFAULT_BUCKET.to_string()
        } else {
            identifier
        };
        if let Err(e) = check_name("bucket", &name) {
            return Ok(Err(to_wit(e)));
        }
        Ok(Ok(self.table.push(Bucket { name })?))
    }
}

impl store::HostBucket for AddonView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let bucket = self.bucket(&bucket)?;
        self.addons
            .kv(bucket, move |s, app, b| s.get(app, b, &key))
            .await
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        self.addons
            .kv(bucket, move |s, app, b| s.set(app, b, &key, &value))
            .await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        self.addons
            .kv(bucket, move |s, app, b| s.delete(app, b, &key))
            .await
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let bucket = self.bucket(&bucket)?;
        self.addons
            .kv(bucket, move |s, app, b| s.exists(app, b, &key))
            .await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let bucket = self.bucket(&bucket)?;
        let page = self
            .addons
            .kv(bucket, move |s, app, b| {
                s.keys(app, b, "", cursor.unwrap_or(0))
            })
            .await?;
        Ok(page.map(|page| store::KeyResponse {
            keys: page.keys,
            cursor: page.next,
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for AddonView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> KvResult<u64> {
        let bucket = self.bucket(&bucket)?;
        self.addons
            .kv(bucket, move |s, app, b| s.increment(app, b, &key, delta))
            .await
    }
}

impl batch::Host for AddonView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let bucket = self.bucket(&bucket)?;
        self.addons
            .kv(bucket, move |s, app, b| {
                let values = s.get_many(app, b, &keys)?;
                Ok(keys
                    .into_iter()
                    .zip(values)
                    .map(|(key, value)| value.map(|v| (key, v)))
                    .collect())
            })
            .await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        self.addons
            .kv(bucket, move |s, app, b| s.set_many(app, b, &key_values))
            .await
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        self.addons
            .kv(bucket, move |s, app, b| s.delete_many(app, b, &keys))
            .await
    }
}
