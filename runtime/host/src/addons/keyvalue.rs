//! `wasi:keyvalue` (0.2.0-draft: store, atomics, batch) over the app's buckets.
//!
//! Limits and bad arguments come back as `error::other` with a message naming the limit
//! (a guest can recover from those); only a host-side failure to hand out a handle traps.

use super::bindings::wasi::keyvalue::{atomics, batch, store};
use super::{AddonView, AppAddons};
use crate::metrics::Addon;
use wasmtime::component::Resource;
use wdeploy_core::addons::DEFAULT_BUCKET;
use wdeploy_store::addons::check_name;
use wdeploy_store::{AddonError, AddonResult};

/// An open bucket: just its name, since the app comes from the instance.
pub struct Bucket {
    name: String,
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

fn to_wit(e: AddonError) -> store::Error {
    match e {
        AddonError::Backend(_) => store::Error::Other("the key-value store is unavailable".into()),
        e => store::Error::Other(e.to_string()),
    }
}

impl AddonView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.name.clone())
    }
}

impl AppAddons {
    /// A store call's outcome in WIT terms.
    fn kv<T>(&self, outcome: AddonResult<T>) -> KvResult<T> {
        Ok(self.report(Addon::KeyValue, outcome).map_err(to_wit))
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
        let a = self.addons;
        a.kv(a.store().get(&a.tenant, &bucket, &key).await)
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        let a = self.addons;
        a.kv(a.store().set(&a.tenant, &bucket, &key, value).await)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        let a = self.addons;
        a.kv(a.store().delete(&a.tenant, &bucket, &key).await)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let bucket = self.bucket(&bucket)?;
        let a = self.addons;
        a.kv(a.store().exists(&a.tenant, &bucket, &key).await)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let bucket = self.bucket(&bucket)?;
        let a = self.addons;
        let page = a.kv(a
            .store()
            .keys(&a.tenant, &bucket, "", cursor.unwrap_or(0))
            .await)?;
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
        let a = self.addons;
        a.kv(a.store().increment(&a.tenant, &bucket, &key, delta).await)
    }
}

impl batch::Host for AddonView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let bucket = self.bucket(&bucket)?;
        let a = self.addons;
        let values = a.store().get_many(&a.tenant, &bucket, keys.clone()).await;
        a.kv(values.map(|values| {
            keys.into_iter()
                .zip(values)
                .map(|(key, value)| value.map(|v| (key, v)))
                .collect()
        }))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        let a = self.addons;
        a.kv(a.store().set_many(&a.tenant, &bucket, key_values).await)
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        let a = self.addons;
        a.kv(a.store().delete_many(&a.tenant, &bucket, keys).await)
    }
}
