//! Key-value buckets in the cluster: each key of each app's bucket a KV key of its own.

use super::{ClusterAddons, cost, hex, unhex};
use crate::addons::{check_batch, check_entry, check_key};
use crate::error::{AddonError, AddonResult};
use crate::model::{KeyPage, Tenant};
use bytes::Bytes;
use std::collections::BTreeMap;
use wdeploy_core::addons::PAGE_KEYS;

/// The KV key of `key` in the app's `bucket`.
fn data_key(app: &Tenant, bucket: &str, key: &str) -> String {
    format!(
        "{}.kv.{}.k{}",
        app.app,
        hex(bucket.as_bytes()),
        hex(key.as_bytes())
    )
}

impl ClusterAddons {
    pub(super) async fn kv_get(
        &self,
        app: &Tenant,
        bucket: &str,
        key: &str,
    ) -> AddonResult<Option<Vec<u8>>> {
        check_key(bucket, key)?;
        self.ready()?;
        let slot = self.slot(&data_key(app, bucket, key)).await?;
        Ok(slot.value.map(|v| v.to_vec()))
    }

    pub(super) async fn kv_set(
        &self,
        app: &Tenant,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> AddonResult<()> {
        check_entry(bucket, key, &value)?;
        self.ready()?;
        let value = Bytes::from(value);
        self.put_with(app, bucket, key, |_| Ok(value.clone()))
            .await?;
        self.confirm(&app.app, &[data_key(app, bucket, key)]).await
    }

    pub(super) async fn kv_delete(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<()> {
        check_key(bucket, key)?;
        self.ready()?;
        self.remove(app, bucket, key).await
    }

    /// A compare-and-swap loop on the counter's revision (creating it if missing): exact
    /// however many nodes increment it at once.
    pub(super) async fn kv_increment(
        &self,
        app: &Tenant,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> AddonResult<u64> {
        check_key(bucket, key)?;
        self.ready()?;
        let value = self
            .put_with(app, bucket, key, |current| {
                let next = crate::addons::incremented(key, current, delta)?;
                Ok(Bytes::from(next.to_string()))
            })
            .await?;
        self.confirm(&app.app, &[data_key(app, bucket, key)])
            .await?;
        Ok(super::parse_u64(&value))
    }

    /// Lists the keys of the app's bucket (headers only, through a consumer filtered on
    /// the bucket's subjects), keeps those starting with `prefix` and sorts them: hex
    /// sorts as the bytes it encodes, so this is byte order.
    pub(super) async fn kv_keys(
        &self,
        app: &Tenant,
        bucket: &str,
        prefix: &str,
        offset: u64,
    ) -> AddonResult<KeyPage> {
        check_key(bucket, prefix)?;
        self.ready()?;
        let filter = format!("{}.kv.{}.*", app.app, hex(bucket.as_bytes()));
        let wanted = format!("k{}", hex(prefix.as_bytes()));
        let mut tokens: Vec<String> = self
            .scan(&filter, true)
            .await?
            .into_iter()
            .filter_map(|found| {
                let (_, token) = found.key.rsplit_once('.')?;
                token.starts_with(&wanted).then(|| token.to_string())
            })
            .collect();
        tokens.sort_unstable();
        let keys: Vec<String> = tokens
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            // One more than a page, to know whether another follows.
            .take(PAGE_KEYS + 1)
            .filter_map(|token| unhex(token.strip_prefix('k')?))
            .collect();
        Ok(KeyPage::from_fetched(keys, offset))
    }

    pub(super) async fn kv_get_many(
        &self,
        app: &Tenant,
        bucket: &str,
        keys: Vec<String>,
    ) -> AddonResult<Vec<Option<Vec<u8>>>> {
        check_batch(keys.len())?;
        for key in &keys {
            check_key(bucket, key)?;
        }
        self.ready()?;
        let reads = keys.iter().map(|key| self.slot_of(app, bucket, key));
        let slots = futures::future::try_join_all(reads).await?;
        Ok(slots.into_iter().map(|v| v.map(|v| v.to_vec())).collect())
    }

    /// Sets several keys. Limits and the quota are checked for the whole batch before
    /// anything is written, as the embedded backend refuses a batch whole; KV has no
    /// transaction across keys, though, so a batch cut off by NATS going away (or by a
    /// concurrent write taking the last of the quota) can leave some of its keys written.
    pub(super) async fn kv_set_many(
        &self,
        app: &Tenant,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> AddonResult<()> {
        check_batch(entries.len())?;
        for (key, value) in &entries {
            check_entry(bucket, key, value)?;
        }
        self.ready()?;
        // The last value of a key given twice wins, as when written in order.
        let entries: BTreeMap<String, Bytes> = entries
            .into_iter()
            .map(|(k, v)| (k, Bytes::from(v)))
            .collect();
        let reads = entries.keys().map(|key| self.slot_of(app, bucket, key));
        let before = futures::future::try_join_all(reads).await?;
        let growth: i64 = entries
            .iter()
            .zip(&before)
            .map(|((key, value), old)| {
                let old = old.as_ref().map_or(0, |v| cost(bucket, key, v.len()));
                cost(bucket, key, value.len()) as i64 - old as i64
            })
            .sum();
        let used = self.usage_of(app).await?;
        if growth > 0 && used.saturating_add(growth as u64) > app.quota_bytes {
            return Err(AddonError::OverQuota {
                used,
                quota: app.quota_bytes,
                needed: growth as u64,
            });
        }
        let mut written = Vec::with_capacity(entries.len());
        for (key, value) in &entries {
            self.put_with(app, bucket, key, |_| Ok(value.clone()))
                .await?;
            written.push(data_key(app, bucket, key));
        }
        self.confirm(&app.app, &written).await
    }

    pub(super) async fn kv_delete_many(
        &self,
        app: &Tenant,
        bucket: &str,
        keys: Vec<String>,
    ) -> AddonResult<()> {
        check_batch(keys.len())?;
        for key in &keys {
            check_key(bucket, key)?;
        }
        self.ready()?;
        for key in &keys {
            self.remove(app, bucket, key).await?;
        }
        Ok(())
    }

    async fn slot_of(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<Option<Bytes>> {
        Ok(self.slot(&data_key(app, bucket, key)).await?.value)
    }

    /// The app's usage, `AppGone` when it is not registered.
    async fn usage_of(&self, app: &Tenant) -> AddonResult<u64> {
        let slot = self.slot(&super::usage_key(&app.app)).await?;
        slot.value
            .as_deref()
            .map(super::parse_u64)
            .ok_or(AddonError::AppGone)
    }

    /// Writes `key` to what `next` makes of its current value, as a compare-and-swap on
    /// the key's revision, retried (with `next` called again) when another writer got
    /// there first. Growth is charged before the write and handed back if the write
    /// fails; shrinkage is refunded after it: usage never counts less than is stored.
    async fn put_with(
        &self,
        app: &Tenant,
        bucket: &str,
        key: &str,
        mut next: impl FnMut(Option<&[u8]>) -> AddonResult<Bytes> + Send,
    ) -> AddonResult<Bytes> {
        let subject = data_key(app, bucket, key);
        for _ in 0..super::MAX_CAS_ROUNDS {
            let slot = self.slot(&subject).await?;
            let value = next(slot.value.as_deref())?;
            let before = slot
                .value
                .as_ref()
                .map_or(0, |v| cost(bucket, key, v.len()));
            let after = cost(bucket, key, value.len());
            let grow = after.saturating_sub(before);
            self.charge(app, grow).await?;
            match self.swap(&subject, value.clone(), slot.revision).await {
                Ok(true) => {
                    self.refund(&app.app, before.saturating_sub(after)).await?;
                    return Ok(value);
                }
                Ok(false) => self.refund(&app.app, grow).await?,
                Err(e) => {
                    // Best effort: if this fails too, usage over-counts (never under).
                    let _ = self.refund(&app.app, grow).await;
                    return Err(e);
                }
            }
        }
        Err(super::contended(&subject))
    }

    /// Deletes `key` if present (at the revision read, so its size is what is refunded).
    async fn remove(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<()> {
        let subject = data_key(app, bucket, key);
        for _ in 0..super::MAX_CAS_ROUNDS {
            let slot = self.slot(&subject).await?;
            let Some(value) = slot.value else {
                return Ok(());
            };
            if self.drop_key(&subject, Some(slot.revision)).await? {
                return self.refund(&app.app, cost(bucket, key, value.len())).await;
            }
        }
        Err(super::contended(&subject))
    }
}
