//! The operator's window into an app's add-on data: `kv:keys`, `kv:get`, `kv:set`,
//! `kv:del` and `queue:stats`, through the same store facet the app's guests use.

use super::Host;
use super::errors::Result;
use wdeploy_api::ApiError;
use wdeploy_api::server::Caller;
use wdeploy_api::wire::{AddonUsage, KvEntry, KvKeys, QueueInfo};
use wdeploy_core::AppName;
use wdeploy_store::Tenant;

impl Host {
    /// The app's add-on data as its current release sees it: its id, and its quota (the
    /// default `limits.addons_mb` before any release, within the host's ceiling), so the
    /// operator's writes count like the app's.
    async fn tenant(&self, app: &AppName) -> Result<Tenant> {
        let id = self.store.control.app(app).await?.id;
        let settings = self
            .entry(app)
            .runtime
            .current_release()
            .map(|r| r.settings.clone())
            .unwrap_or_default();
        Ok(Tenant {
            app: id,
            quota_bytes: settings.addons_quota_bytes(Some(self.config.max_addons_mb)),
        })
    }

    pub(super) async fn kv_list(
        &self,
        app: &AppName,
        bucket: &str,
        prefix: &str,
    ) -> Result<KvKeys> {
        let tenant = self.tenant(app).await?;
        let page = self.store.addons.keys(&tenant, bucket, prefix, 0).await?;
        Ok(KvKeys {
            bucket: bucket.to_string(),
            keys: page.keys,
            truncated: page.next.is_some(),
        })
    }

    pub(super) async fn kv_read(&self, app: &AppName, bucket: &str, key: &str) -> Result<KvEntry> {
        let tenant = self.tenant(app).await?;
        let value = self
            .store
            .addons
            .get(&tenant, bucket, key)
            .await?
            .ok_or_else(|| not_found(app, bucket, key))?;
        Ok(kv_entry(bucket, key, value))
    }

    pub(super) async fn kv_write(
        &self,
        app: &AppName,
        by: &Caller,
        bucket: &str,
        key: &str,
        value: String,
    ) -> Result<KvEntry> {
        let tenant = self.tenant(app).await?;
        let entry = self.entry(app);
        let bytes = value.into_bytes();
        self.store
            .addons
            .set(&tenant, bucket, key, bytes.clone())
            .await?;
        entry.runtime.logs.platform(
            "api",
            format!("Set key `{key}` of bucket {bucket} by {}", by),
        );
        Ok(kv_entry(bucket, key, bytes))
    }

    /// Deletes `key`; not found if it is not there (a mistyped key is said, not taken
    /// for done).
    pub(super) async fn kv_remove(
        &self,
        app: &AppName,
        by: &Caller,
        bucket: &str,
        key: &str,
    ) -> Result<()> {
        let tenant = self.tenant(app).await?;
        let entry = self.entry(app);
        if !self.store.addons.exists(&tenant, bucket, key).await? {
            return Err(not_found(app, bucket, key).into());
        }
        self.store.addons.delete(&tenant, bucket, key).await?;
        entry.runtime.logs.platform(
            "api",
            format!("Deleted key `{key}` of bucket {bucket} by {by}"),
        );
        Ok(())
    }

    pub(super) async fn addon_usage(&self, app: &AppName) -> Result<AddonUsage> {
        let tenant = self.tenant(app).await?;
        let storage_bytes = self.store.addons.usage(&tenant.app).await?;
        Ok(AddonUsage {
            storage_bytes,
            quota_bytes: tenant.quota_bytes,
            queues: self.queue_list(app).await?,
        })
    }

    pub(super) async fn queue_list(&self, app: &AppName) -> Result<Vec<QueueInfo>> {
        let tenant = self.tenant(app).await?;
        let stats = self.store.addons.queue_stats(&tenant).await?;
        Ok(stats
            .into_iter()
            .map(|q| QueueInfo {
                queue: q.queue,
                ready: q.ready,
                leased: q.leased,
                done: q.done,
            })
            .collect())
    }
}

fn not_found(app: &AppName, bucket: &str, key: &str) -> ApiError {
    ApiError::not_found(format!("key `{key}` not found in bucket {bucket} of {app}"))
}

/// A value as the API shows it: text when it is UTF-8, hex otherwise.
fn kv_entry(bucket: &str, key: &str, value: Vec<u8>) -> KvEntry {
    let (value, encoding) = match String::from_utf8(value) {
        Ok(text) => (text, "utf-8"),
        Err(e) => (
            e.as_bytes().iter().map(|b| format!("{b:02x}")).collect(),
            "hex",
        ),
    };
    KvEntry {
        bucket: bucket.to_string(),
        key: key.to_string(),
        value,
        encoding: encoding.into(),
    }
}
