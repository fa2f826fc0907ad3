//! The nodes of a cluster: which are alive, which dynos each runs, and when anything the
//! nodes converge on may have changed. On the embedded store a host is a cluster of one.

use crate::error::{Result, StoreError};
use crate::model::{AppId, DynoRecord, NodeDynos, NodeInfo, NodeName, RestartRequest};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use std::time::Duration;

/// How often a node says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a heartbeat counts: a node not heard from for this long is dead, and the
/// others take over its dynos.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5);

/// Membership and placement facts every node reads to decide, by itself, which dynos it
/// runs (no central scheduler), and what each node says it runs (for `ps` and routing).
#[async_trait]
pub trait Nodes: Send + Sync + 'static {
    /// This node.
    fn me(&self) -> &NodeInfo;
    /// Says this node is alive until [`HEARTBEAT_TTL`] from now, and whether it is
    /// `leaving` ([`NodeInfo::leaving`]).
    async fn heartbeat(&self, leaving: bool) -> Result<()>;
    /// Takes this node out at once (a clean stop), so the others do not wait for its
    /// heartbeat to expire.
    async fn leave(&self) -> Result<()>;
    /// The nodes whose heartbeat has not expired, by name.
    async fn live(&self) -> Result<Vec<NodeInfo>>;
    /// Records the dynos of `app` this node runs now, replacing what it said before (an
    /// empty list removes the record).
    async fn set_dynos(&self, app: &AppId, dynos: Vec<DynoRecord>) -> Result<()>;
    /// Every node's record of `app`'s dynos, by node (records of dead nodes included:
    /// check them against [`Nodes::live`]).
    async fn dynos(&self, app: &AppId) -> Result<Vec<NodeDynos>>;
    /// Asks every node to restart its dynos of `app` (only `dyno`, wherever it runs,
    /// when named); returns the request.
    async fn request_restart(&self, app: &AppId, dyno: Option<&str>) -> Result<RestartRequest>;
    /// The app's newest restart request, if it ever had one.
    async fn restart_request(&self, app: &AppId) -> Result<Option<RestartRequest>>;
    /// One item each time apps, releases, formation, nodes or dyno records may have
    /// changed, anywhere in the cluster. A hint, not a log: items may be merged or (while
    /// the backend is away) lost, so a reconciler also looks at a steady interval.
    async fn changes(&self) -> Result<BoxStream<'static, ()>>;
    /// Whether the cluster store can be reached now.
    fn is_connected(&self) -> bool;
    /// The secrets every node of the cluster holds: the key nodes prove themselves with
    /// now, and the one before the last rotation while nodes still trust it. The nodes
    /// derive the TLS between them from these, so a node forwards requests only to
    /// another node, and can tell a forwarded request from a client's without trusting
    /// addresses. The first key is made by the first node that asks, the same for every
    /// node after, and kept (restarts included) until rotated.
    async fn cluster_keys(&self) -> Result<ClusterKeys>;
    /// Replaces the cluster's key with a new one; nodes trust the one it replaces for
    /// `grace` more (so that each has read the new one meanwhile), then no more. What a
    /// leaked key (a retired node's, say) could do ends then. `Invalid` on a store with no
    /// other node to agree with (the embedded one).
    async fn rotate_cluster_key(&self, grace: Duration) -> Result<ClusterKeys>;
}

/// The cluster's keys ([`Nodes::cluster_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterKeys {
    pub current: ClusterKey,
    /// The key the last rotation replaced, and until when nodes still trust it.
    pub previous: Option<(ClusterKey, DateTime<Utc>)>,
}

impl ClusterKeys {
    /// The key before the last rotation if nodes still trust it at `now`.
    pub fn previous_at(&self, now: DateTime<Utc>) -> Option<&ClusterKey> {
        self.previous
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(key, _)| key)
    }
}

/// A cluster's shared secret ([`Nodes::cluster_keys`]): 32 random bytes. Its `Debug`
/// shows none of them, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; ClusterKey::LEN]);

impl ClusterKey {
    pub const LEN: usize = 32;

    /// A new key from the operating system's random source.
    pub fn generate() -> Result<ClusterKey> {
        let mut bytes = [0u8; ClusterKey::LEN];
        getrandom::getrandom(&mut bytes).map_err(|e| {
            StoreError::Backend(format!("no random bytes for the cluster key: {e}"))
        })?;
        Ok(ClusterKey(bytes))
    }

    /// A key as stored; `None` unless exactly [`ClusterKey::LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<ClusterKey> {
        bytes.try_into().ok().map(ClusterKey)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// A node's name from the host name (or `node` when there is none usable).
pub fn default_node_name() -> NodeName {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let cleaned: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    cleaned
        .trim_matches('-')
        .parse()
        .unwrap_or_else(|_| "node".parse().expect("a valid name"))
}
