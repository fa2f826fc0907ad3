//! Key-value buckets of the add-ons database: what `wasi:keyvalue` and `wdeploy kv:*` use.
//!
//! A bucket is a name within an app; keys are strings, values bytes. Counters are values
//! holding a decimal number (as other wasi:keyvalue hosts store them), so `kv:get` shows
//! them as text.

use super::addons_db::{AddonDb, Result, charge, refund};
use crate::addons::{check_batch, check_entry, check_key, stored_bytes};
use crate::model::KeyPage;
use rusqlite::{OptionalExtension, params};
use wdeploy_core::addons::PAGE_KEYS;

impl AddonDb {
    pub fn get(&self, app: &str, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(bucket, key)?;
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM kv WHERE app = ?1 AND bucket = ?2 AND key = ?3")?
                .query_row(params![app, bucket, key], |r| r.get(0))
                .optional()?)
        })
    }

    pub fn exists(&self, app: &str, bucket: &str, key: &str) -> Result<bool> {
        Ok(self.get(app, bucket, key)?.is_some())
    }

    pub async fn set(
        &self,
        app: &str,
        quota: u64,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<()> {
        check_entry(bucket, key, &value)?;
        let (app, bucket, key) = owned(app, bucket, key);
        self.write(move |tx| put(tx, &app, quota, &bucket, &key, &value))
            .await
    }

    /// Deletes a key; deleting a missing key does nothing.
    pub async fn delete(&self, app: &str, bucket: &str, key: &str) -> Result<()> {
        check_key(bucket, key)?;
        let (app, bucket, key) = owned(app, bucket, key);
        self.write(move |tx| remove(tx, &app, &bucket, &key)).await
    }

    /// Adds `delta` to the counter at `key` (a missing key counts as 0) and returns the new
    /// value. One write transaction: exact however many dynos increment at once.
    pub async fn increment(
        &self,
        app: &str,
        quota: u64,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64> {
        check_key(bucket, key)?;
        let (app, bucket, key) = owned(app, bucket, key);
        self.write(move |tx| {
            let current: Option<Vec<u8>> = tx
                .prepare_cached("SELECT value FROM kv WHERE app = ?1 AND bucket = ?2 AND key = ?3")?
                .query_row(params![app, bucket, key], |r| r.get(0))
                .optional()?;
            let next = crate::addons::incremented(&key, current.as_deref(), delta)?;
            let before = current.map_or(0, |v| stored_bytes(&bucket, &key, v.len()));
            let entry = Entry {
                app: &app,
                bucket: &bucket,
                key: &key,
            };
            store(tx, &entry, quota, before, next.to_string().as_bytes())?;
            Ok(next)
        })
        .await
    }

    /// A page of the bucket's keys starting with `prefix`, in byte order, from `offset`.
    pub fn keys(&self, app: &str, bucket: &str, prefix: &str, offset: u64) -> Result<KeyPage> {
        check_key(bucket, prefix)?;
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT key FROM kv
                 WHERE app = ?1 AND bucket = ?2 AND key >= ?3 AND substr(key, 1, ?4) = ?3
                 ORDER BY key LIMIT ?5 OFFSET ?6",
            )?;
            let rows = stmt.query_map(
                params![
                    app,
                    bucket,
                    prefix,
                    prefix.chars().count() as i64,
                    // One more than a page, to know whether another follows.
                    (PAGE_KEYS + 1) as i64,
                    offset as i64
                ],
                |r| r.get::<_, String>(0),
            )?;
            let keys = rows.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(KeyPage::from_fetched(keys, offset))
        })
    }

    /// Values of several keys (`None` for missing ones), in the order asked.
    pub fn get_many(
        &self,
        app: &str,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        check_batch(keys.len())?;
        for key in keys {
            check_key(bucket, key)?;
        }
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT value FROM kv WHERE app = ?1 AND bucket = ?2 AND key = ?3",
            )?;
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(
                    stmt.query_row(params![app, bucket, key], |r| r.get(0))
                        .optional()?,
                );
            }
            Ok(values)
        })
    }

    /// Sets several keys in one transaction: all or none.
    pub async fn set_many(
        &self,
        app: &str,
        quota: u64,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        check_batch(entries.len())?;
        for (key, value) in &entries {
            check_entry(bucket, key, value)?;
        }
        let (app, bucket) = (app.to_string(), bucket.to_string());
        self.write(move |tx| {
            for (key, value) in &entries {
                put(tx, &app, quota, &bucket, key, value)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn delete_many(&self, app: &str, bucket: &str, keys: Vec<String>) -> Result<()> {
        check_batch(keys.len())?;
        for key in &keys {
            check_key(bucket, key)?;
        }
        let (app, bucket) = (app.to_string(), bucket.to_string());
        self.write(move |tx| {
            for key in &keys {
                remove(tx, &app, &bucket, key)?;
            }
            Ok(())
        })
        .await
    }
}

/// Bytes the entry at `key` counts now (0 when missing).
fn current_bytes(tx: &rusqlite::Connection, app: &str, bucket: &str, key: &str) -> Result<u64> {
    let len: Option<i64> = tx
        .prepare_cached("SELECT length(value) FROM kv WHERE app = ?1 AND bucket = ?2 AND key = ?3")?
        .query_row(params![app, bucket, key], |r| r.get(0))
        .optional()?;
    Ok(len.map_or(0, |len| stored_bytes(bucket, key, len.max(0) as usize)))
}

/// Owned copies of a write's names, for the writer thread.
fn owned(app: &str, bucket: &str, key: &str) -> (String, String, String) {
    (app.to_string(), bucket.to_string(), key.to_string())
}

/// Writes an entry, counting the change in size against the app's quota first.
fn put(
    tx: &rusqlite::Connection,
    app: &str,
    quota: u64,
    bucket: &str,
    key: &str,
    value: &[u8],
) -> Result<()> {
    let before = current_bytes(tx, app, bucket, key)?;
    store(tx, &Entry { app, bucket, key }, quota, before, value)
}

/// Where an entry lives.
struct Entry<'a> {
    app: &'a str,
    bucket: &'a str,
    key: &'a str,
}

/// Writes an entry that counts `before` bytes now (known to the caller).
fn store(
    tx: &rusqlite::Connection,
    at: &Entry<'_>,
    quota: u64,
    before: u64,
    value: &[u8],
) -> Result<()> {
    let after = stored_bytes(at.bucket, at.key, value.len());
    charge(tx, at.app, quota, after as i64 - before as i64)?;
    tx.prepare_cached(
        "INSERT INTO kv (app, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (app, bucket, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![at.app, at.bucket, at.key, value])?;
    Ok(())
}

/// Deletes an entry (if present) and stops counting it.
fn remove(tx: &rusqlite::Connection, app: &str, bucket: &str, key: &str) -> Result<()> {
    let bytes = current_bytes(tx, app, bucket, key)?;
    tx.prepare_cached("DELETE FROM kv WHERE app = ?1 AND bucket = ?2 AND key = ?3")?
        .execute(params![app, bucket, key])?;
    refund(tx, app, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AddonError;
    use wdeploy_core::addons::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

    use super::super::addons_db::AddonDb;
    use super::super::addons_db::{NO_QUOTA, open_temp as open};

    #[tokio::test]
    async fn values_survive_reopening_and_apps_are_isolated() {
        let (dir, addons) = open().await;
        addons
            .set("a", NO_QUOTA, "default", "greeting", b"hi from a".to_vec())
            .await
            .unwrap();
        addons
            .set("b", NO_QUOTA, "default", "greeting", b"hi from b".to_vec())
            .await
            .unwrap();
        assert_eq!(
            addons
                .increment("a", NO_QUOTA, "default", "hits", 2)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            addons
                .increment("a", NO_QUOTA, "default", "hits", 3)
                .await
                .unwrap(),
            5
        );
        assert_eq!(
            addons
                .increment("b", NO_QUOTA, "default", "hits", 1)
                .await
                .unwrap(),
            1
        );
        drop(addons);

        let addons = AddonDb::open(&dir.path().join("addons.db"), &[]).unwrap();
        assert_eq!(
            addons.get("a", "default", "greeting").unwrap().as_deref(),
            Some(&b"hi from a"[..])
        );
        assert_eq!(
            addons.get("b", "default", "greeting").unwrap().as_deref(),
            Some(&b"hi from b"[..])
        );
        assert_eq!(
            addons.get("a", "default", "hits").unwrap().as_deref(),
            Some(&b"5"[..])
        );
        assert_eq!(addons.get("a", "other", "hits").unwrap(), None);
        assert_eq!(addons.get("c", "default", "greeting").unwrap(), None);

        addons.delete_app("a").await.unwrap();
        assert_eq!(addons.get("a", "default", "greeting").unwrap(), None);
        assert!(addons.exists("b", "default", "greeting").unwrap());
    }

    #[tokio::test]
    async fn keys_and_values_are_capped_with_a_clear_error() {
        let (_dir, addons) = open().await;
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        let err = addons
            .set("a", NO_QUOTA, "default", &long_key, b"v".to_vec())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "key of {} bytes is over the limit of {MAX_KEY_BYTES} bytes",
                MAX_KEY_BYTES + 1
            )
        );
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        let err = addons
            .set("a", NO_QUOTA, "default", "k", big.clone())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("value of 1048577 bytes is over"),
            "{err}"
        );
        addons
            .set(
                "a",
                NO_QUOTA,
                "default",
                "k",
                big[..MAX_VALUE_BYTES].to_vec(),
            )
            .await
            .unwrap();
        assert!(matches!(
            addons
                .set("a", NO_QUOTA, &"b".repeat(65), "k", b"v".to_vec())
                .await,
            Err(AddonError::TooLarge { what: "bucket", .. })
        ));
        addons
            .set("a", NO_QUOTA, "default", "word", b"abc".to_vec())
            .await
            .unwrap();
        assert!(
            addons
                .increment("a", NO_QUOTA, "default", "word", 1)
                .await
                .unwrap_err()
                .to_string()
                .contains("not a decimal number")
        );
        addons
            .set(
                "a",
                NO_QUOTA,
                "default",
                "max",
                u64::MAX.to_string().into_bytes(),
            )
            .await
            .unwrap();
        assert!(
            addons
                .increment("a", NO_QUOTA, "default", "max", 1)
                .await
                .is_err()
        );
        // A refused batch writes nothing.
        let entries = vec![
            ("ok".to_string(), b"1".to_vec()),
            ("too-big".to_string(), big.clone()),
        ];
        assert!(
            addons
                .set_many("a", NO_QUOTA, "default", entries.clone())
                .await
                .is_err()
        );
        assert_eq!(addons.get("a", "default", "ok").unwrap(), None);
    }

    #[tokio::test]
    async fn keys_list_by_prefix_in_pages() {
        let (_dir, addons) = open().await;
        for n in 0..(PAGE_KEYS + 5) {
            addons
                .set(
                    "a",
                    NO_QUOTA,
                    "default",
                    &format!("user/{n:05}"),
                    b"x".to_vec(),
                )
                .await
                .unwrap();
        }
        addons
            .set("a", NO_QUOTA, "default", "users", b"x".to_vec())
            .await
            .unwrap();
        addons
            .set("b", NO_QUOTA, "default", "user/zzz", b"x".to_vec())
            .await
            .unwrap();
        let first = addons.keys("a", "default", "user/", 0).unwrap();
        assert_eq!(first.keys.len(), PAGE_KEYS);
        assert_eq!(first.keys[0], "user/00000");
        let second = addons
            .keys("a", "default", "user/", first.next.unwrap())
            .unwrap();
        assert_eq!(second.keys.len(), 5);
        assert_eq!(second.next, None);
        assert!(!second.keys.iter().any(|k| k == "users" || k == "user/zzz"));
        let all = addons.keys("a", "default", "", 0).unwrap();
        assert!(all.next.is_some());

        addons
            .set_many(
                "a",
                NO_QUOTA,
                "default",
                vec![("x".into(), b"1".to_vec()), ("y".into(), b"2".to_vec())],
            )
            .await
            .unwrap();
        assert_eq!(
            addons
                .get_many("a", "default", &["y".into(), "nope".into(), "x".into()])
                .unwrap(),
            vec![Some(b"2".to_vec()), None, Some(b"1".to_vec())]
        );
        addons
            .delete_many("a", "default", vec!["x".into(), "nope".into()])
            .await
            .unwrap();
        assert!(!addons.exists("a", "default", "x").unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_increments_are_exact() {
        let (_dir, addons) = open().await;
        let addons = std::sync::Arc::new(addons);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let addons = addons.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for _ in 0..25 {
                        seen.push(
                            addons
                                .increment("a", NO_QUOTA, "default", "n", 1)
                                .await
                                .unwrap(),
                        );
                    }
                    seen
                })
            })
            .collect();
        let mut seen = Vec::new();
        for task in tasks {
            seen.extend(task.await.unwrap());
        }
        seen.sort();
        assert_eq!(seen, (1..=200).collect::<Vec<_>>());
    }
}
