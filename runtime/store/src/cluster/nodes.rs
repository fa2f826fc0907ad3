//! [`Nodes`] in JetStream: heartbeats in a KV bucket whose entries expire, each node's
//! dyno records in another, and change hints from watching every bucket the nodes
//! converge on.
//!
//! - `wdeploy-nodes`: key = node name, value = JSON [`NodeInfo`]; the bucket's `max_age`
//!   is [`HEARTBEAT_TTL`], so a node that stops heartbeating vanishes by itself (no node
//!   has to notice and clean up after a dead one);
//! - `wdeploy-dynos`: key = `<app id>.<node>`, value = JSON `Vec<DynoRecord>`; one key
//!   per node so nodes never write the same key (no compare-and-swap needed), and the app
//!   id first so one app's records are read with the filter `<app id>.*` alone.

use crate::cluster::control::create;
use crate::cluster::scan::last_values;
use crate::cluster::{Nats, unavailable};
use crate::error::{Result, StoreError};
use crate::model::{AppId, DynoRecord, NodeDynos, NodeInfo, RestartRequest};
use crate::nodes::{ClusterKey, ClusterKeys, HEARTBEAT_TTL, Nodes};
use async_nats::jetstream::kv;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Heartbeats: an entry per live node, expiring [`HEARTBEAT_TTL`] after its last put.
pub const NODES_BUCKET: &str = "wdeploy-nodes";
/// What each node says it runs, per app.
pub const DYNOS_BUCKET: &str = "wdeploy-dynos";
/// The control buckets (written by the control facet): a change there may change which
/// dynos should run where.
pub const CONTROL_BUCKETS: [&str; 3] = ["wdeploy-apps", "wdeploy-formation", "wdeploy-releases"];

/// How often the change watcher looks at the connection, to notice an outage (and a
/// reconnect it may have missed in between) and start its watches again.
const CONNECTION_CHECK_EVERY: Duration = Duration::from_millis(200);
/// How long the change watcher waits before trying again after failing to watch.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// The cluster's [`Nodes`], shared with the other nodes through NATS.
pub struct ClusterNodes {
    nats: Nats,
    me: NodeInfo,
    nodes: kv::Store,
    dynos: kv::Store,
    /// Bumped by the change watcher on every change; `changes()` streams follow it, so a
    /// burst of changes reaches a slow reader as one item.
    changed: watch::Receiver<u64>,
    /// Stops the change watcher when this is dropped.
    _stop_watcher: DropGuard,
}

impl ClusterNodes {
    /// Opens (creating if absent) the nodes, dynos and control buckets and starts watching
    /// them for `changes()`. Does not heartbeat: the host does, every `HEARTBEAT_EVERY`.
    pub async fn open(nats: &Nats, me: NodeInfo) -> Result<ClusterNodes> {
        nats.check()?;
        let nodes = nats
            .bucket(kv::Config {
                bucket: NODES_BUCKET.to_string(),
                description: "wdeploy: live nodes (heartbeats that expire)".to_string(),
                history: 1,
                max_age: HEARTBEAT_TTL,
                storage: async_nats::jetstream::stream::StorageType::File,
                // An expired heartbeat leaves a marker behind, so watchers hear that a
                // node died (an entry that just ages out is removed silently).
                limit_markers: Some(HEARTBEAT_TTL),
                ..Default::default()
            })
            .await?;
        let dynos = nats.bucket(plain_bucket(DYNOS_BUCKET)).await?;
        for name in CONTROL_BUCKETS {
            nats.bucket(plain_bucket(name)).await?;
        }
        let (tx, changed) = watch::channel(0u64);
        let stop = CancellationToken::new();
        tokio::spawn(watch_changes(nats.clone(), tx, stop.clone()));
        Ok(ClusterNodes {
            nats: nats.clone(),
            me,
            nodes,
            dynos,
            changed,
            _stop_watcher: stop.drop_guard(),
        })
    }
}

/// A bucket keeping the last value of each key, on disk.
fn plain_bucket(name: &str) -> kv::Config {
    kv::Config {
        bucket: name.to_string(),
        history: 1,
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    }
}

#[async_trait]
impl Nodes for ClusterNodes {
    fn me(&self) -> &NodeInfo {
        &self.me
    }

    async fn heartbeat(&self, leaving: bool) -> Result<()> {
        self.nats.check()?;
        let me = NodeInfo {
            leaving,
            ..self.me.clone()
        };
        let value = serde_json::to_vec(&me).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.nodes
            .put(self.me.name.as_str(), value.into())
            .await
            .map_err(|e| unavailable(format!("heartbeating: {e}")))?;
        Ok(())
    }

    async fn leave(&self) -> Result<()> {
        self.nats.check()?;
        self.nodes
            .purge(self.me.name.as_str())
            .await
            .map_err(|e| unavailable(format!("leaving the cluster: {e}")))
    }

    async fn live(&self) -> Result<Vec<NodeInfo>> {
        self.nats.check()?;
        let mut live = Vec::new();
        let heartbeats = last_values(&self.nats, &self.nodes, ">", false).await;
        for found in heartbeats.map_err(|e| unavailable(format!("reading the heartbeats: {e}")))? {
            let (key, value) = (found.key, found.value);
            match serde_json::from_slice::<NodeInfo>(&value) {
                Ok(info) => live.push(info),
                // Another version's record, or garbage: not a node this one can use.
                Err(e) => tracing::warn!(node = %key, "unreadable heartbeat: {e}"),
            }
        }
        live.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(live)
    }

    async fn set_dynos(&self, app: &AppId, dynos: Vec<DynoRecord>) -> Result<()> {
        self.nats.check()?;
        let key = format!("{app}.{}", self.me.name);
        if dynos.is_empty() {
            return self
                .dynos
                .purge(&key)
                .await
                .map_err(|e| unavailable(format!("removing the dyno record {key}: {e}")));
        }
        let value = serde_json::to_vec(&dynos).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.dynos
            .put(&key, value.into())
            .await
            .map_err(|e| unavailable(format!("recording the dynos {key}: {e}")))?;
        Ok(())
    }

    async fn dynos(&self, app: &AppId) -> Result<Vec<NodeDynos>> {
        self.nats.check()?;
        let mut all = Vec::new();
        let records = last_values(&self.nats, &self.dynos, &format!("{app}.*"), false).await;
        for found in records.map_err(|e| unavailable(format!("reading the dyno records: {e}")))? {
            let (key, value) = (found.key, found.value);
            let node = key.rsplit('.').next().unwrap_or_default().parse();
            let dynos = serde_json::from_slice::<Vec<DynoRecord>>(&value);
            match (node, dynos) {
                (Ok(node), Ok(dynos)) => all.push(NodeDynos { node, dynos }),
                _ => tracing::warn!(key = %key, "unreadable dyno record"),
            }
        }
        all.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(all)
    }

    /// Kept in the dynos bucket under `restart.ID` (outside the `ID.*` dyno records); the
    /// request's number is the key's revision, which only grows.
    async fn request_restart(&self, app: &AppId, dyno: Option<&str>) -> Result<RestartRequest> {
        self.nats.check()?;
        let value = serde_json::to_vec(&dyno).map_err(|e| StoreError::Backend(e.to_string()))?;
        let number = self
            .dynos
            .put(restart_key(app), value.into())
            .await
            .map_err(|e| unavailable(format!("asking the nodes to restart: {e}")))?;
        Ok(RestartRequest {
            number,
            dyno: dyno.map(str::to_string),
        })
    }

    async fn restart_request(&self, app: &AppId) -> Result<Option<RestartRequest>> {
        self.nats.check()?;
        let entry = self
            .dynos
            .entry(restart_key(app))
            .await
            .map_err(|e| unavailable(format!("reading the restart requests: {e}")))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let dyno: Option<String> = serde_json::from_slice(&entry.value)
            .map_err(|e| StoreError::Backend(format!("unreadable restart request: {e}")))?;
        Ok(Some(RestartRequest {
            number: entry.revision,
            dyno,
        }))
    }

    async fn changes(&self) -> Result<BoxStream<'static, ()>> {
        self.nats.check()?;
        let mut rx = self.changed.clone();
        // Only what changes from now on.
        rx.borrow_and_update();
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })))
    }

    fn is_connected(&self) -> bool {
        self.nats.is_connected()
    }

    /// Read every few seconds by every node: two reads, no write once the key exists.
    async fn cluster_keys(&self) -> Result<ClusterKeys> {
        let meta = self.nats.meta().await?;
        let read = async |key| {
            let value = meta.get(key).await;
            value.map_err(|e| unavailable(format!("reading the cluster's key: {e}")))
        };
        let current = match read(CLUSTER_KEY)
            .await?
            .as_deref()
            .and_then(ClusterKey::from_bytes)
        {
            Some(key) => key,
            // Absent (a new cluster) or unreadable: made, or refused with the reason.
            None => self.cluster_key().await?,
        };
        let previous = read(PREVIOUS_KEY).await?.and_then(|v| read_previous(&v));
        Ok(ClusterKeys { current, previous })
    }

    /// The replaced key is recorded first, then the new one is written by compare-and-swap
    /// on the key read: a node reading between the two trusts the old key twice, and of
    /// two rotations at once one fails rather than leaving a key nobody trusts.
    async fn rotate_cluster_key(&self, grace: Duration) -> Result<ClusterKeys> {
        let meta = self.nats.meta().await?;
        self.cluster_key().await?;
        let entry = meta
            .entry(CLUSTER_KEY)
            .await
            .map_err(|e| unavailable(format!("reading the cluster's key: {e}")))?
            .ok_or_else(|| unavailable("the cluster's key vanished while rotating it"))?;
        let old = ClusterKey::from_bytes(&entry.value)
            .ok_or_else(|| StoreError::Invalid("the cluster's key is unreadable".into()))?;
        let too_long = || StoreError::Invalid("that grace is too long".into());
        let until =
            chrono::Utc::now() + chrono::Duration::from_std(grace).map_err(|_| too_long())?;
        // As stored: to the millisecond.
        let until =
            DateTime::from_timestamp_millis(until.timestamp_millis()).ok_or_else(too_long)?;
        meta.put(PREVIOUS_KEY, previous_entry(&old, until).into())
            .await
            .map_err(|e| unavailable(format!("recording the previous cluster key: {e}")))?;
        let new = ClusterKey::generate()?;
        match meta
            .update(CLUSTER_KEY, new.as_bytes().to_vec().into(), entry.revision)
            .await
        {
            Ok(_) => Ok(ClusterKeys {
                current: new,
                previous: Some((old, until)),
            }),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(StoreError::Conflict(
                    "another rotation of the cluster's key happened meanwhile: it is rotated"
                        .into(),
                ))
            }
            Err(e) => Err(unavailable(format!("writing the new cluster key: {e}"))),
        }
    }
}

impl ClusterNodes {
    /// Kept in the meta bucket under [`CLUSTER_KEY`]: the first node to ask creates it
    /// (create-if-absent, so two nodes starting together still agree), the others read it.
    pub async fn cluster_key(&self) -> Result<ClusterKey> {
        let meta = self.nats.meta().await?;
        let mine = ClusterKey::generate()?;
        let what = "recording the cluster's key";
        if create(&meta, CLUSTER_KEY, mine.as_bytes().to_vec().into(), what).await? {
            return Ok(mine);
        }
        let there = meta
            .get(CLUSTER_KEY)
            .await
            .map_err(|e| unavailable(format!("reading the cluster's key: {e}")))?
            .unwrap_or_default();
        ClusterKey::from_bytes(&there).ok_or_else(|| {
            StoreError::Invalid(format!(
                "the cluster's key ({CLUSTER_KEY} in the NATS bucket wdeploy-meta) is {} bytes, \
                 not {}: it was not written by wdeploy; remove it and restart every node",
                there.len(),
                ClusterKey::LEN
            ))
        })
    }
}

/// Where the cluster's key lives in the meta bucket.
const CLUSTER_KEY: &str = "cluster-key";
/// The key the last rotation replaced: its 32 bytes, then until when it is trusted
/// (milliseconds since the epoch, 8 bytes big-endian).
const PREVIOUS_KEY: &str = "cluster-key-previous";

/// [`PREVIOUS_KEY`]'s value.
fn previous_entry(key: &ClusterKey, until: DateTime<Utc>) -> Vec<u8> {
    let mut value = key.as_bytes().to_vec();
    value.extend_from_slice(&until.timestamp_millis().to_be_bytes());
    value
}

/// [`PREVIOUS_KEY`]'s value read; `None` for one not written so (nothing to trust).
fn read_previous(value: &[u8]) -> Option<(ClusterKey, DateTime<Utc>)> {
    let (key, until) = value.split_at_checked(ClusterKey::LEN)?;
    let until = i64::from_be_bytes(until.try_into().ok()?);
    Some((
        ClusterKey::from_bytes(key)?,
        DateTime::from_timestamp_millis(until)?,
    ))
}

/// Where an app's newest restart request is kept.
fn restart_key(app: &AppId) -> String {
    format!("restart.{app}")
}

/// Watches every bucket the nodes converge on and bumps `tx` on each change, until
/// `stop`. The watches are made again after an outage (or when one fails), with one bump
/// then: changes made while this node was cut off were not seen.
async fn watch_changes(nats: Nats, tx: watch::Sender<u64>, stop: CancellationToken) {
    let bump = || tx.send_modify(|n| *n = n.wrapping_add(1));
    let stats = nats.client.statistics();
    let mut first = true;
    loop {
        if !first && !pause(&stop, RETRY_AFTER).await {
            return;
        }
        let missed_some = !first;
        first = false;
        if !nats.is_connected() {
            continue;
        }
        let connects = stats.connects.load(Ordering::Relaxed);
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            opened = open_watches(&nats) => opened,
        };
        let watches = match opened {
            Ok(watches) => watches,
            Err(e) => {
                tracing::debug!("watching the cluster's buckets: {e}");
                continue;
            }
        };
        if missed_some {
            bump();
        }
        let mut events = futures::stream::select_all(watches);
        // The nodes the nodes bucket's watch has seen alive: a heartbeat of one of them
        // changes nothing (each node puts one a second), its arrival or departure does.
        let mut members = HashSet::new();
        let mut check = tokio::time::interval(CONNECTION_CHECK_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                event = events.next() => match event {
                    Some(Ok(entry)) => {
                        if entry.bucket != NODES_BUCKET || joined_or_left(&mut members, entry) {
                            bump();
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!("watching the cluster's buckets: {e}");
                        break;
                    }
                    None => break,
                },
                _ = check.tick() => {
                    // Down, or down and back up since the watches were made: they may
                    // have missed changes (or died with the server), so make them again.
                    if !nats.is_connected() || stats.connects.load(Ordering::Relaxed) != connects {
                        break;
                    }
                }
            }
        }
    }
}

/// Whether a nodes bucket entry changes who is in the cluster (rather than being one
/// more heartbeat of a node already in it).
fn joined_or_left(members: &mut HashSet<String>, entry: kv::Entry) -> bool {
    match entry.operation {
        kv::Operation::Put => members.insert(entry.key),
        kv::Operation::Delete | kv::Operation::Purge => members.remove(&entry.key),
    }
}

/// Sleeps `how_long`; false when `stop` came first.
async fn pause(stop: &CancellationToken, how_long: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(how_long) => true,
    }
}

/// A watch of every key of each bucket the nodes converge on (each created if absent).
async fn open_watches(nats: &Nats) -> Result<Vec<kv::Watch>> {
    let mut watches = Vec::new();
    for name in [NODES_BUCKET, DYNOS_BUCKET]
        .into_iter()
        .chain(CONTROL_BUCKETS)
    {
        let bucket = match name {
            NODES_BUCKET => nats.js.get_key_value(name).await,
            _ => Ok(nats.bucket(plain_bucket(name)).await?),
        }
        .map_err(|e| unavailable(format!("opening the KV bucket {name}: {e}")))?;
        let watch = match name {
            // With the current entries first, to know who is in before telling changes.
            NODES_BUCKET => bucket.watch_with_history(">").await,
            _ => bucket.watch_all().await,
        }
        .map_err(|e| unavailable(format!("watching the KV bucket {name}: {e}")))?;
        watches.push(watch);
    }
    Ok(watches)
}

#[cfg(test)]
#[path = "nodes_tests.rs"]
mod tests;
