//! Job queues in the cluster: at-least-once delivery with leases, like the embedded
//! backend's, without a sweeper: a pending job's `visible_at` is its enqueue time and
//! then the end of its lease, so an expired lease needs no write to make the job
//! visible again. Taking a job is a compare-and-swap on its key, so two nodes can never
//! both lease it; ids come from a per-app sequence key advanced by compare-and-swap.
//!
//! A pending job's metadata (`<app>.q.<hex queue>.<id>`) is kept apart from its payload
//! (`<app>.p.<id>`) so `take` scans small values only, and an acked job moves to
//! `<app>.d.<id>` so neither `take` nor `ack` scans the day of done jobs kept for stats.

use super::{ClusterAddons, cost, hex, unhex};
use crate::addons::{check_job, check_take};
use crate::error::{AddonError, AddonResult};
use crate::model::{AppId, Job, QueueStats, Tenant};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;
use wdeploy_core::addons::DONE_RETENTION;

/// How often (at most) a node drops one app's done jobs past the retention, in ms: each
/// time scans the app's done jobs, so not on every ack. Until then they count a little
/// longer against the quota; `queue_stats` leaves them out already.
const PURGE_EVERY_MS: i64 = 60_000;

fn seq_key(app: &AppId) -> String {
    format!("{app}.seq")
}
fn job_key(app: &AppId, hex_queue: &str, id: u64) -> String {
    format!("{app}.q.{hex_queue}.{id}")
}
fn payload_key(app: &AppId, id: u64) -> String {
    format!("{app}.p.{id}")
}
fn done_key(app: &AppId, id: u64) -> String {
    format!("{app}.d.{id}")
}

/// A pending job's metadata: `<attempts> <visible_at>`.
fn parse_pending(value: &[u8]) -> Option<(u32, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (attempts, visible_at) = text.split_once(' ')?;
    Some((attempts.parse().ok()?, visible_at.parse().ok()?))
}

/// A done job: `<done_at> <bytes> <hex queue>`.
fn parse_done(value: &[u8]) -> Option<(i64, u64, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, ' ');
    let done_at = parts.next()?.parse().ok()?;
    let bytes = parts.next()?.parse().ok()?;
    Some((done_at, bytes, parts.next()?.to_string()))
}

/// A payload value: `<hex queue>\n<payload>`.
fn split_payload(value: &Bytes) -> Option<(String, Bytes)> {
    let newline = value.iter().position(|&b| b == b'\n')?;
    let queue = std::str::from_utf8(&value[..newline]).ok()?.to_string();
    Some((queue, value.slice(newline + 1..)))
}

impl ClusterAddons {
    /// Charges the job, takes the next id, writes the payload and then the metadata
    /// (which makes it visible, so `take` never finds a job without its payload).
    pub(super) async fn enqueue_at(
        &self,
        app: &Tenant,
        queue: &str,
        payload: Vec<u8>,
        now: i64,
    ) -> AddonResult<u64> {
        check_job(queue, &payload)?;
        self.ready()?;
        let bytes = cost(queue, "", payload.len());
        self.charge(app, bytes).await?;
        let hex_queue = hex(queue.as_bytes());
        let mut written = Vec::new();
        let result: AddonResult<u64> = async {
            let id = self.next_id(&app.app).await?;
            let mut value = Vec::with_capacity(hex_queue.len() + 1 + payload.len());
            value.extend_from_slice(hex_queue.as_bytes());
            value.push(b'\n');
            value.extend_from_slice(&payload);
            let key = payload_key(&app.app, id);
            self.create(&key, value.into()).await?;
            written.push(key);
            let key = job_key(&app.app, &hex_queue, id);
            self.create(&key, format!("0 {now}").into()).await?;
            written.push(key);
            Ok(id)
        }
        .await;
        match result {
            Ok(id) => {
                self.confirm(&app.app, &written).await?;
                Ok(id)
            }
            Err(e) => {
                for key in &written {
                    let _ = self.drop_key(key, None).await;
                }
                let _ = self.refund(&app.app, bytes).await;
                Err(e)
            }
        }
    }

    /// Leases the oldest visible job: scans the queue's pending jobs, then swaps the
    /// oldest visible one's metadata at the revision read; when another node leased (or
    /// acked) it first, reads it again and moves on to the next if it is gone or leased.
    pub(super) async fn take_at(
        &self,
        app: &Tenant,
        queue: &str,
        lease: Duration,
        now: i64,
    ) -> AddonResult<Option<Job>> {
        check_take(queue, lease)?;
        self.ready()?;
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let filter = format!("{}.q.{}.*", app.app, hex(queue.as_bytes()));
        let mut candidates: Vec<(u64, String, u64, u32, i64)> = self
            .scan(&filter, false)
            .await?
            .into_iter()
            .filter_map(|found| {
                let id = found.key.rsplit_once('.')?.1.parse().ok()?;
                let (attempts, visible_at) = parse_pending(&found.value)?;
                Some((id, found.key, found.revision, attempts, visible_at))
            })
            .filter(|&(.., visible_at)| visible_at <= now)
            .collect();
        candidates.sort_unstable_by_key(|c| c.0);
        for (id, key, mut revision, mut attempts, mut visible_at) in candidates {
            for _ in 0..super::MAX_CAS_ROUNDS {
                if visible_at > now {
                    break;
                }
                let leased = Bytes::from(format!("{} {until}", attempts + 1));
                if self.swap(&key, leased, revision).await? {
                    let payload = self.slot(&payload_key(&app.app, id)).await?.value;
                    // Acked by another worker in between: not a job to hand out.
                    let Some((_, payload)) = payload.as_ref().and_then(split_payload) else {
                        break;
                    };
                    return Ok(Some(Job {
                        id,
                        payload: payload.to_vec(),
                        attempt: attempts + 1,
                    }));
                }
                let slot = self.slot(&key).await?;
                let Some(pending) = slot.value.as_deref().and_then(parse_pending) else {
                    break;
                };
                (revision, attempts, visible_at) = (slot.revision, pending.0, pending.1);
            }
        }
        Ok(None)
    }

    /// Marks a job of `app` done: records it as done first, then removes its metadata and
    /// payload, so a job is always pending, done or both (never lost) if a node dies in
    /// between. Already done is fine; an id the app does not have is `NoSuchJob`.
    pub(super) async fn ack_at(&self, app: &Tenant, id: u64, now: i64) -> AddonResult<()> {
        self.ready()?;
        let payload_key = payload_key(&app.app, id);
        let stored = self.slot(&payload_key).await?.value;
        match stored.as_ref().and_then(split_payload) {
            Some((hex_queue, payload)) => {
                let queue = unhex(&hex_queue).unwrap_or_default();
                let bytes = cost(&queue, "", payload.len());
                let done = done_key(&app.app, id);
                let record = Bytes::from(format!("{now} {bytes} {hex_queue}"));
                // Not created: another worker acked it first, which is as good.
                self.create(&done, record).await.or_else(|e| match e {
                    Created::Exists => Ok(()),
                    Created::Failed(e) => Err(e),
                })?;
                self.confirm(&app.app, std::slice::from_ref(&done)).await?;
                for key in [job_key(&app.app, &hex_queue, id), payload_key] {
                    self.drop_key(&key, None).await?;
                }
            }
            None => {
                if self.slot(&done_key(&app.app, id)).await?.value.is_none() {
                    return Err(AddonError::NoSuchJob(id));
                }
            }
        }
        self.purge_done(&app.app, now).await
    }

    /// Jobs per state for each of the app's queues, by queue name (byte order: the hex
    /// names sort as the names do).
    pub(super) async fn queue_stats_at(
        &self,
        app: &Tenant,
        now: i64,
    ) -> AddonResult<Vec<QueueStats>> {
        self.ready()?;
        let mut stats: BTreeMap<String, QueueStats> = BTreeMap::new();
        let entry = |stats: &mut BTreeMap<String, QueueStats>, hex_queue: &str| {
            stats.entry(hex_queue.to_string()).or_insert(QueueStats {
                queue: unhex(hex_queue).unwrap_or_default(),
                ready: 0,
                leased: 0,
                done: 0,
            });
        };
        for found in self.scan(&format!("{}.q.*.*", app.app), false).await? {
            let mut tokens = found.key.rsplit('.');
            let (Some(_id), Some(hex_queue)) = (tokens.next(), tokens.next()) else {
                continue;
            };
            let Some((_, visible_at)) = parse_pending(&found.value) else {
                continue;
            };
            entry(&mut stats, hex_queue);
            if let Some(s) = stats.get_mut(hex_queue) {
                if visible_at <= now {
                    s.ready += 1;
                } else {
                    s.leased += 1;
                }
            }
        }
        let oldest = now - DONE_RETENTION.as_millis() as i64;
        for found in self.scan(&format!("{}.d.*", app.app), false).await? {
            let Some((done_at, _, hex_queue)) = parse_done(&found.value) else {
                continue;
            };
            if done_at < oldest {
                continue;
            }
            entry(&mut stats, &hex_queue);
            if let Some(s) = stats.get_mut(&hex_queue) {
                s.done += 1;
            }
        }
        Ok(stats.into_values().collect())
    }

    /// The app's next job id: its sequence key advanced by compare-and-swap (created at 1).
    async fn next_id(&self, app: &AppId) -> AddonResult<u64> {
        let key = seq_key(app);
        for _ in 0..super::MAX_CAS_ROUNDS {
            let slot = self.slot(&key).await?;
            let next = slot.value.as_deref().map_or(0, super::parse_u64) + 1;
            if self
                .swap(&key, Bytes::from(next.to_string()), slot.revision)
                .await?
            {
                return Ok(next);
            }
        }
        Err(super::contended(&key))
    }

    /// Writes a key that must not exist yet.
    async fn create(&self, key: &str, value: Bytes) -> Result<(), Created> {
        let slot = self.slot(key).await.map_err(Created::Failed)?;
        if slot.value.is_some() {
            return Err(Created::Exists);
        }
        match self.swap(key, value, slot.revision).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Created::Exists),
            Err(e) => Err(Created::Failed(e)),
        }
    }

    /// Drops the app's done jobs acked more than [`DONE_RETENTION`] ago, refunding what
    /// they counted (each deleted at the revision read, so only one node refunds it). At
    /// most once per [`PURGE_EVERY_MS`] per app on this node.
    async fn purge_done(&self, app: &AppId, now: i64) -> AddonResult<()> {
        {
            let mut purged = self.purged.lock();
            let last = purged.entry(app.as_str().to_string()).or_insert(i64::MIN);
            if now.saturating_sub(*last) < PURGE_EVERY_MS {
                return Ok(());
            }
            *last = now;
        }
        let oldest = now - DONE_RETENTION.as_millis() as i64;
        for found in self.scan(&format!("{app}.d.*"), false).await? {
            let Some((done_at, bytes, _)) = parse_done(&found.value) else {
                continue;
            };
            if done_at < oldest && self.drop_key(&found.key, Some(found.revision)).await? {
                self.refund(app, bytes).await?;
            }
        }
        Ok(())
    }
}

/// Why [`ClusterAddons::create`] wrote nothing.
enum Created {
    Exists,
    Failed(AddonError),
}

impl From<Created> for AddonError {
    fn from(c: Created) -> AddonError {
        match c {
            Created::Exists => AddonError::Backend("the key exists already".into()),
            Created::Failed(e) => e,
        }
    }
}
