//! [`AddonStore`] in a NATS KV bucket shared by every node of the cluster: the apps'
//! key-value data and job queues, with the limits and answers of the embedded backend.
//!
//! KV keys allow only `[-/_=.a-zA-Z0-9]` and split on `.`, while bucket names, keys and
//! queue names are arbitrary strings, so every such name is written in lowercase hex
//! (which sorts as the bytes it encodes, so listing in byte order is sorting the hex).
//! The layout of the `wdeploy-addons` bucket, per app id:
//!
//! | key                           | value                                           |
//! |-------------------------------|-------------------------------------------------|
//! | `<app>.usage`                 | bytes counted against the quota (decimal); its presence *is* the registration |
//! | `<app>.kv.<hex bucket>.k<hex key>` | the value (the `k` lets the empty key be a token) |
//! | `<app>.seq`                   | the last job id given out (decimal)             |
//! | `<app>.q.<hex queue>.<id>`    | a pending job: `<attempts> <visible_at ms>`     |
//! | `<app>.p.<id>`                | its payload: `<hex queue>\n<payload bytes>`     |
//! | `<app>.d.<id>`                | a done job: `<done_at ms> <bytes> <hex queue>`  |
//!
//! Every read-modify-write is a compare-and-swap on the key's revision (a missing key is
//! revision 0, or the revision of its delete marker), retried when another node wrote
//! first: that is what keeps counters exact, job ids unique and leases exclusive across
//! nodes. Listing reads one app's keys only, through a consumer filtered on the app's
//! (and bucket's or queue's) subjects. Keys are removed by purging their subject from
//! the stream rather than by KV deletes, so no delete markers pile up for those scans to
//! wade through (every job leaves its keys once done).
//!
//! Quota: KV has no transaction spanning the usage key and the data key, so the order is
//! chosen so usage never under-counts: growth is charged (CAS on `<app>.usage`, refused
//! over the quota) *before* the data write, and refunded only after the write failed or
//! once a shrinking write or a delete is done. A node dying between the two leaves usage
//! counting a little too much, never too little.

mod kv;
mod queue;

use crate::addons::{AddonStore, stored_bytes};
use crate::cluster::Nats;
use crate::cluster::scan::{Scanned, last_values};
use crate::error::{AddonError, AddonResult, Result};
use crate::model::{AppId, Job, KeyPage, QueueStats, Tenant};
use async_nats::jetstream::kv::{Config, Store, UpdateErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The KV bucket holding every app's add-on data.
const BUCKET: &str = "wdeploy-addons";

/// Room left in a message for its subject's headers beside the value (the
/// compare-and-swap header takes about 60 bytes).
const HEADER_ROOM: usize = 1024;

/// How many times a compare-and-swap is retried against other writers before giving up
/// (a bound against livelock; real contention settles in a few rounds).
const MAX_CAS_ROUNDS: usize = 10_000;

/// The add-on data of every app, in the cluster's NATS: the same on every node.
pub struct ClusterAddons {
    nats: Nats,
    kv: Store,
    /// When this node last dropped each app's done jobs past the retention (Unix ms): that
    /// takes a scan of the app's done jobs, so it runs at most once a minute per app.
    purged: Mutex<HashMap<String, i64>>,
}

impl ClusterAddons {
    /// Opens the add-ons bucket on `nats` (creating it if this is the first node).
    pub async fn open(nats: &Nats) -> Result<ClusterAddons> {
        let kv = nats
            .bucket(Config {
                bucket: BUCKET.to_string(),
                description: "wdeploy: the apps' add-on key-value data and job queues".into(),
                // One value per key: every write is a compare-and-swap on the last one.
                history: 1,
                ..Default::default()
            })
            .await?;
        Ok(ClusterAddons {
            nats: nats.clone(),
            kv,
            purged: Mutex::new(HashMap::new()),
        })
    }

    /// Fails at once while NATS is unreachable, instead of waiting on a request timeout.
    fn ready(&self) -> AddonResult<()> {
        if self.nats.is_connected() {
            Ok(())
        } else {
            Err(unavailable("not connected to NATS"))
        }
    }

    /// The current value of `key` and the revision a compare-and-swap must name: `None`
    /// and 0 (or the delete marker's revision) when missing.
    async fn slot(&self, key: &str) -> AddonResult<Slot> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| unavailable(format!("reading {key}: {e}")))?;
        Ok(match entry {
            None => Slot {
                revision: 0,
                value: None,
            },
            Some(entry) => Slot {
                revision: entry.revision,
                value: (entry.operation == async_nats::jetstream::kv::Operation::Put)
                    .then_some(entry.value),
            },
        })
    }

    /// Writes `value` at `key` if its revision is still `revision`: `Ok(false)` when
    /// another writer got there first.
    async fn swap(&self, key: &str, value: Bytes, revision: u64) -> AddonResult<bool> {
        self.check_fits(value.len())?;
        match self.kv.update(key, value, revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable(format!("writing {key}: {e}"))),
        }
    }

    /// Removes `key` (at `revision` only, when given: a newer value stays) by purging its
    /// subject from the stream, which unlike a KV delete leaves no marker behind, so
    /// scans never wade through the keys of jobs long done. `Ok(true)` when this call
    /// removed it (another node doing the same at once gets `false`, so exactly one of
    /// them refunds it).
    async fn drop_key(&self, key: &str, revision: Option<u64>) -> AddonResult<bool> {
        let purge = self
            .kv
            .stream
            .purge()
            .filter(format!("{}{key}", self.kv.prefix));
        let purged = match revision {
            Some(revision) => purge.sequence(revision + 1).await,
            None => purge.await,
        };
        purged
            .map(|response| response.purged > 0)
            .map_err(|e| unavailable(format!("removing {key}: {e}")))
    }

    /// Refuses, before sending it, a value the NATS server would not take in one message
    /// (its `max_payload`, 1 MB by default, counts the compare-and-swap header too): the
    /// server answers an oversized message by closing the connection, which would cut
    /// every other call of this node off for a reconnect. Values up to the add-ons' 1 MiB
    /// limit need `max_payload: 2MB` in the server's configuration.
    fn check_fits(&self, len: usize) -> AddonResult<()> {
        let max = self.nats.client.server_info().max_payload;
        if len.saturating_add(HEADER_ROOM) > max {
            return Err(AddonError::Backend(format!(
                "the cluster's NATS server takes messages of at most {max} bytes (max_payload) \
                 and this value is {len} bytes: set `max_payload: 2MB` in its configuration"
            )));
        }
        Ok(())
    }

    /// Counts `grow` more bytes against the app's quota before a write that needs them:
    /// `AppGone` when the app is not registered (also when `grow` is 0: every write checks),
    /// `OverQuota` when they do not fit.
    async fn charge(&self, app: &Tenant, grow: u64) -> AddonResult<()> {
        let key = usage_key(&app.app);
        for _ in 0..MAX_CAS_ROUNDS {
            let slot = self.slot(&key).await?;
            let used = slot.value.as_deref().ok_or(AddonError::AppGone)?;
            if grow == 0 {
                return Ok(());
            }
            let used = parse_u64(used);
            if used.saturating_add(grow) > app.quota_bytes {
                return Err(AddonError::OverQuota {
                    used,
                    quota: app.quota_bytes,
                    needed: grow,
                });
            }
            let next = Bytes::from((used + grow).to_string());
            if self.swap(&key, next, slot.revision).await? {
                return Ok(());
            }
        }
        Err(contended(&key))
    }

    /// Stops counting `bytes` against the app's quota (after a delete, a shrinking write or
    /// a write that failed after its charge). Nothing to do for an app no longer registered.
    async fn refund(&self, app: &AppId, bytes: u64) -> AddonResult<()> {
        if bytes == 0 {
            return Ok(());
        }
        let key = usage_key(app);
        for _ in 0..MAX_CAS_ROUNDS {
            let slot = self.slot(&key).await?;
            let Some(used) = slot.value.as_deref() else {
                return Ok(());
            };
            let next = Bytes::from(parse_u64(used).saturating_sub(bytes).to_string());
            if self.swap(&key, next, slot.revision).await? {
                return Ok(());
            }
        }
        Err(contended(&key))
    }

    /// After a write: if the app was deleted meanwhile, `delete_app` may have swept its
    /// keys before this write landed, so remove what was written and answer `AppGone`.
    /// (`delete_app` drops the registration before sweeping: a write that still sees the
    /// registration here landed before the sweep, which removes it.)
    async fn confirm(&self, app: &AppId, written: &[String]) -> AddonResult<()> {
        if self.slot(&usage_key(app)).await?.value.is_some() {
            return Ok(());
        }
        for key in written {
            let _ = self.drop_key(key, None).await;
        }
        Err(AddonError::AppGone)
    }

    /// The last value of every key matching `filter` (a subject filter under the bucket,
    /// like `<app>.q.<queue>.*`), deleted keys left out; other apps' keys never scanned.
    async fn scan(&self, filter: &str, headers_only: bool) -> AddonResult<Vec<Scanned>> {
        last_values(&self.nats, &self.kv, filter, headers_only)
            .await
            .map_err(|e| unavailable(format!("listing {filter}: {e}")))
    }
}

#[async_trait]
impl AddonStore for ClusterAddons {
    async fn get(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<Option<Vec<u8>>> {
        self.kv_get(app, bucket, key).await
    }
    async fn exists(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<bool> {
        Ok(self.kv_get(app, bucket, key).await?.is_some())
    }
    async fn set(&self, app: &Tenant, bucket: &str, key: &str, value: Vec<u8>) -> AddonResult<()> {
        self.kv_set(app, bucket, key, value).await
    }
    async fn delete(&self, app: &Tenant, bucket: &str, key: &str) -> AddonResult<()> {
        self.kv_delete(app, bucket, key).await
    }
    async fn increment(
        &self,
        app: &Tenant,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> AddonResult<u64> {
        self.kv_increment(app, bucket, key, delta).await
    }
    async fn keys(
        &self,
        app: &Tenant,
        bucket: &str,
        prefix: &str,
        offset: u64,
    ) -> AddonResult<KeyPage> {
        self.kv_keys(app, bucket, prefix, offset).await
    }
    async fn get_many(
        &self,
        app: &Tenant,
        bucket: &str,
        keys: Vec<String>,
    ) -> AddonResult<Vec<Option<Vec<u8>>>> {
        self.kv_get_many(app, bucket, keys).await
    }
    async fn set_many(
        &self,
        app: &Tenant,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> AddonResult<()> {
        self.kv_set_many(app, bucket, entries).await
    }
    async fn delete_many(&self, app: &Tenant, bucket: &str, keys: Vec<String>) -> AddonResult<()> {
        self.kv_delete_many(app, bucket, keys).await
    }

    async fn enqueue(&self, app: &Tenant, queue: &str, payload: Vec<u8>) -> AddonResult<u64> {
        self.enqueue_at(app, queue, payload, now_ms()).await
    }
    async fn take(&self, app: &Tenant, queue: &str, lease: Duration) -> AddonResult<Option<Job>> {
        self.take_at(app, queue, lease, now_ms()).await
    }
    async fn ack(&self, app: &Tenant, id: u64) -> AddonResult<()> {
        self.ack_at(app, id, now_ms()).await
    }
    async fn queue_stats(&self, app: &Tenant) -> AddonResult<Vec<QueueStats>> {
        self.queue_stats_at(app, now_ms()).await
    }

    async fn create_app(&self, app: &AppId) -> AddonResult<()> {
        self.ready()?;
        let key = usage_key(app);
        let slot = self.slot(&key).await?;
        if slot.value.is_some() {
            return Ok(());
        }
        // Lost to another node registering it too: registered either way.
        self.swap(&key, Bytes::from_static(b"0"), slot.revision)
            .await
            .map(drop)
    }

    /// Drops the registration first (so no write of the app starts after this), then
    /// every key and job of the app at once: a purge of the stream's subjects under
    /// `<app>.`.
    async fn delete_app(&self, app: &AppId) -> AddonResult<()> {
        self.ready()?;
        let key = usage_key(app);
        self.drop_key(&key, None).await?;
        self.kv
            .stream
            .purge()
            .filter(format!("{}{app}.>", self.kv.prefix))
            .await
            .map_err(|e| unavailable(format!("deleting the add-on data of {app}: {e}")))?;
        self.purged.lock().remove(app.as_str());
        Ok(())
    }

    async fn usage(&self, app: &AppId) -> AddonResult<u64> {
        self.ready()?;
        let slot = self.slot(&usage_key(app)).await?;
        Ok(slot.value.as_deref().map_or(0, parse_u64))
    }
}

/// A key's value (`None` when missing or deleted) and the revision to swap it at.
struct Slot {
    revision: u64,
    value: Option<Bytes>,
}

/// One key found by [`ClusterAddons::scan`], relative to the bucket.
fn usage_key(app: &AppId) -> String {
    format!("{app}.usage")
}

/// `bytes` as lowercase hex: valid in a KV key whatever they are, and sorting as they do.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// The string [`hex`] encoded (`None` if `s` is not such an encoding).
fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// A number this backend wrote as decimal text (0 if it is somehow not one).
fn parse_u64(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// How much `(bucket or queue, key, value)` counts against the quota: as the embedded
/// backend counts it.
fn cost(name: &str, key: &str, len: usize) -> u64 {
    stored_bytes(name, key, len)
}

/// The cluster store cannot be reached (or did not answer in time).
fn unavailable(what: impl std::fmt::Display) -> AddonError {
    AddonError::Backend(format!("the cluster store is unavailable: {what}"))
}

fn contended(key: &str) -> AddonError {
    AddonError::Backend(format!(
        "gave up writing {key} after {MAX_CAS_ROUNDS} concurrent changes in a row"
    ))
}

/// Now, in Unix milliseconds. Leases and done times are wall-clock times compared by
/// whichever node reads them, so the nodes of a cluster are assumed NTP-synced: a node
/// whose clock runs ahead sees leases end (and takes jobs again) that much early.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
