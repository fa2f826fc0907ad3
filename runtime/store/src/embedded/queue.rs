//! Job queues of the add-ons database: what `wdeploy:platform/queue` and `queue:stats` use.
//!
//! At-least-once delivery without a background sweeper: a job's `visible_at` is when it
//! may next be taken, its enqueue time at first and the end of its lease once taken, so an
//! expired lease needs no update to make the job visible again; `take` simply finds it.
//! Leases are wall-clock times, so they run on across host restarts.

use super::addons_db::{AddonDb, JOB_ROW_BYTES, Result, charge, now_ms, refund};
use crate::addons::{check_job, check_take, stored_bytes};
use crate::error::AddonError;
use crate::model::{Job, QueueStats};
use rusqlite::{OptionalExtension, params};
use std::time::Duration;
use wdeploy_core::addons::DONE_RETENTION;

impl AddonDb {
    /// Appends a job to `queue` and returns its id.
    pub async fn enqueue(
        &self,
        app: &str,
        quota: u64,
        queue: &str,
        payload: Vec<u8>,
    ) -> Result<u64> {
        check_job(queue, &payload)?;
        let now = now_ms();
        let (app, queue) = (app.to_string(), queue.to_string());
        self.write(move |tx| {
            charge(
                tx,
                &app,
                quota,
                stored_bytes(&queue, "", payload.len()) as i64,
            )?;
            tx.execute(
                "INSERT INTO jobs (app, queue, payload, visible_at, enqueued_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![app, queue, payload, now],
            )?;
            Ok(tx.last_insert_rowid() as u64)
        })
        .await
    }

    /// Leases the oldest visible job of `queue` for `lease`, if there is one.
    pub async fn take(&self, app: &str, queue: &str, lease: Duration) -> Result<Option<Job>> {
        self.take_at(app, queue, lease, now_ms()).await
    }

    pub(crate) async fn take_at(
        &self,
        app: &str,
        queue: &str,
        lease: Duration,
        now: i64,
    ) -> Result<Option<Job>> {
        check_take(queue, lease)?;
        let until = now + lease.as_millis() as i64;
        let (app, queue) = (app.to_string(), queue.to_string());
        self.write(move |tx| {
            Ok(tx
                .query_row(
                    "UPDATE jobs SET attempts = attempts + 1, visible_at = ?4
                     WHERE id = (
                        SELECT id FROM jobs
                        WHERE app = ?1 AND queue = ?2 AND done_at IS NULL AND visible_at <= ?3
                        ORDER BY id LIMIT 1)
                     RETURNING id, payload, attempts",
                    params![app, queue, now, until],
                    |r| {
                        Ok(Job {
                            id: r.get::<_, i64>(0)? as u64,
                            payload: r.get(1)?,
                            attempt: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Marks a job of `app` done. Already done is fine (another worker finished it after
    /// this one's lease expired); an id `app` never enqueued is an error.
    pub async fn ack(&self, app: &str, id: u64) -> Result<()> {
        self.ack_at(app, id, now_ms()).await
    }

    pub(crate) async fn ack_at(&self, app: &str, id: u64, now: i64) -> Result<()> {
        let id_sql = i64::try_from(id).map_err(|_| AddonError::NoSuchJob(id))?;
        let app = app.to_string();
        self.write(move |tx| {
            let updated = tx.execute(
                "UPDATE jobs SET done_at = ?3 WHERE app = ?1 AND id = ?2 AND done_at IS NULL",
                params![app, id_sql, now],
            )?;
            if updated == 0 {
                let exists = tx
                    .query_row(
                        "SELECT 1 FROM jobs WHERE app = ?1 AND id = ?2",
                        params![app, id_sql],
                        |_| Ok(()),
                    )
                    .optional()?;
                if exists.is_none() {
                    return Err(AddonError::NoSuchJob(id));
                }
            }
            // Done jobs are kept a while for `queue:stats`, then dropped.
            let dropped: i64 = tx
                .prepare_cached(&format!(
                    "DELETE FROM jobs WHERE app = ?1 AND done_at IS NOT NULL AND done_at < ?2
                     RETURNING {JOB_ROW_BYTES}"
                ))?
                .query_map(params![app, now - DONE_RETENTION.as_millis() as i64], |r| {
                    r.get::<_, i64>(0)
                })?
                .sum::<rusqlite::Result<i64>>()?;
            refund(tx, &app, dropped.max(0) as u64)
        })
        .await
    }

    /// Jobs per state for each of the app's queues, by queue name.
    pub fn queue_stats(&self, app: &str) -> Result<Vec<QueueStats>> {
        self.queue_stats_at(app, now_ms())
    }

    pub(crate) fn queue_stats_at(&self, app: &str, now: i64) -> Result<Vec<QueueStats>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT queue,
                        SUM(done_at IS NULL AND visible_at <= ?2),
                        SUM(done_at IS NULL AND visible_at > ?2),
                        SUM(done_at IS NOT NULL)
                 FROM jobs WHERE app = ?1 GROUP BY queue ORDER BY queue",
            )?;
            let rows = stmt.query_map(params![app, now], |r| {
                Ok(QueueStats {
                    queue: r.get(0)?,
                    ready: r.get::<_, i64>(1)? as u64,
                    leased: r.get::<_, i64>(2)? as u64,
                    done: r.get::<_, i64>(3)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wdeploy_core::addons::{MAX_LEASE, MAX_PAYLOAD_BYTES};

    use super::super::addons_db::AddonDb;
    use super::super::addons_db::{NO_QUOTA, open_temp as open};

    const LEASE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn jobs_come_out_in_order_once_each_and_again_after_a_lease_expires() {
        let (_dir, addons) = open().await;
        let first = addons
            .enqueue("a", NO_QUOTA, "jobs", b"one".to_vec())
            .await
            .unwrap();
        let second = addons
            .enqueue("a", NO_QUOTA, "jobs", b"two".to_vec())
            .await
            .unwrap();
        let now = now_ms();

        let job = addons
            .take_at("a", "jobs", LEASE, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (job.id, job.payload.as_slice(), job.attempt),
            (first, &b"one"[..], 1)
        );
        let job = addons
            .take_at("a", "jobs", LEASE, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((job.id, job.attempt), (second, 1));
        // Both leased: nothing to take until a lease ends.
        assert_eq!(
            addons
                .take_at("a", "jobs", LEASE, now + 29_999)
                .await
                .unwrap(),
            None
        );
        addons.ack_at("a", second, now + 1000).await.unwrap();
        let stats = addons.queue_stats_at("a", now + 1000).unwrap();
        assert_eq!(
            stats,
            vec![QueueStats {
                queue: "jobs".into(),
                ready: 0,
                leased: 1,
                done: 1
            }]
        );

        // The first job's worker never acked: after its lease it is delivered again.
        let later = now + 30_000;
        assert_eq!(addons.queue_stats_at("a", later).unwrap()[0].ready, 1);
        let again = addons
            .take_at("a", "jobs", LEASE, later)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.attempt), (first, 2));
        addons.ack_at("a", first, later).await.unwrap();
        // A late ack from the first worker is harmless.
        addons.ack_at("a", first, later + 1).await.unwrap();
        assert_eq!(
            addons
                .take_at("a", "jobs", LEASE, later + 60_000)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn queues_are_per_app_and_survive_reopening() {
        let (dir, addons) = open().await;
        let id = addons
            .enqueue("a", NO_QUOTA, "jobs", b"for a".to_vec())
            .await
            .unwrap();
        addons
            .enqueue("b", NO_QUOTA, "jobs", b"for b".to_vec())
            .await
            .unwrap();
        assert!(matches!(
            addons.ack("b", id).await,
            Err(AddonError::NoSuchJob(_))
        ));
        drop(addons);

        let addons = AddonDb::open(&dir.path().join("addons.db"), &[]).unwrap();
        let job = addons.take("b", "jobs", LEASE).await.unwrap().unwrap();
        assert_eq!(job.payload, b"for b");
        assert_eq!(addons.take("b", "jobs", LEASE).await.unwrap(), None);
        assert_eq!(addons.take("a", "other", LEASE).await.unwrap(), None);
        assert_eq!(
            addons
                .take("a", "jobs", LEASE)
                .await
                .unwrap()
                .unwrap()
                .payload,
            b"for a"
        );
    }

    #[tokio::test]
    async fn names_payloads_and_leases_are_capped() {
        let (_dir, addons) = open().await;
        let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            addons
                .enqueue("a", NO_QUOTA, "jobs", big.clone())
                .await
                .unwrap_err()
                .to_string(),
            format!(
                "payload of {} bytes is over the limit of {MAX_PAYLOAD_BYTES} bytes",
                MAX_PAYLOAD_BYTES + 1
            )
        );
        assert!(
            addons
                .enqueue("a", NO_QUOTA, "", b"x".to_vec())
                .await
                .is_err()
        );
        assert!(
            addons
                .enqueue("a", NO_QUOTA, &"q".repeat(65), b"x".to_vec())
                .await
                .is_err()
        );
        assert!(addons.take("a", "jobs", Duration::ZERO).await.is_err());
        assert!(
            addons
                .take("a", "jobs", MAX_LEASE + Duration::from_secs(1))
                .await
                .is_err()
        );
        assert!(matches!(
            addons.ack("a", u64::MAX).await,
            Err(AddonError::NoSuchJob(_))
        ));
    }

    #[tokio::test]
    async fn done_jobs_are_forgotten_after_the_retention() {
        let (_dir, addons) = open().await;
        let old = addons
            .enqueue("a", NO_QUOTA, "jobs", b"old".to_vec())
            .await
            .unwrap();
        let now = now_ms();
        addons.take_at("a", "jobs", LEASE, now).await.unwrap();
        addons.ack_at("a", old, now).await.unwrap();
        let new = addons
            .enqueue("a", NO_QUOTA, "jobs", b"new".to_vec())
            .await
            .unwrap();
        let later = now + DONE_RETENTION.as_millis() as i64 + 1;
        addons.take_at("a", "jobs", LEASE, later).await.unwrap();
        let before = addons.usage("a").unwrap();
        addons.ack_at("a", new, later).await.unwrap();
        assert_eq!(addons.queue_stats_at("a", later).unwrap()[0].done, 1);
        // The dropped job no longer counts against the quota; the kept one does.
        assert_eq!(
            before - addons.usage("a").unwrap(),
            crate::addons::stored_bytes("jobs", "", 3)
        );
    }
}
