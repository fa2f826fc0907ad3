//! What the store keeps, as the layers above see it.

use crate::error::{Result, StoreError};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use wdeploy_core::{AppName, Digest, ReleaseStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: AppName,
    /// Made when the app is created and never reused: what its add-on data is keyed by,
    /// so a new app of the same name never inherits (or is reached by) an old one's.
    pub id: AppId,
    pub created_at: DateTime<Utc>,
    /// Changes whenever the app's releases (their status included), its formation or its
    /// log drains change, so a reconciler may pass over an app whose revision it has already acted
    /// on. `None` from a backend that keeps no revision: every look is then a full one.
    pub revision: Option<u64>,
    /// Whether the router answers the app's requests with a maintenance page (503)
    /// instead of passing them to its dynos, which keep running (`maintenance:on`).
    pub maintenance: bool,
}

/// An app's identity, as opposed to its name (which a later app may take again): 32
/// lowercase hex digits, random (a v4 UUID from a CSPRNG: 122 random bits), so an id can
/// be neither guessed nor made to collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(String);

impl AppId {
    /// A fresh, random id.
    pub fn random() -> AppId {
        AppId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The id of the one app of a `wdeploy dev` add-ons database, the same on every run
    /// (derived from its name: a laptop's own data, nothing to guess).
    pub fn local(name: &AppName) -> AppId {
        AppId(Digest::of_bytes(format!("wdeploy dev {name}").as_bytes()).hex()[..32].to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for AppId {
    type Err = String;
    fn from_str(s: &str) -> Result<AppId, String> {
        if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(AppId(s.to_string()))
        } else {
            Err(format!("`{s}` is not an app id (32 lowercase hex digits)"))
        }
    }
}

impl std::fmt::Display for AppId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose add-on data a call touches and how much it may hold: what the host binds an
/// instance to (from the app's id and its release's `limits.addons_mb`), never a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub app: AppId,
    /// Bytes of add-on data the app may hold (see [`crate::addons::stored_bytes`]).
    pub quota_bytes: u64,
}

/// One of an app's log drains: where its log lines are also sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Drain {
    pub id: wdeploy_core::DrainId,
    pub url: wdeploy_core::DrainUrl,
    pub created_at: DateTime<Utc>,
}

impl Drain {
    /// A new drain of `url`, with a fresh id (`d.` + a random UUID, as Heroku's).
    pub fn new(url: wdeploy_core::DrainUrl) -> Drain {
        let id = format!("d.{}", uuid::Uuid::new_v4().hyphenated());
        Drain {
            // A UUID's hyphenated form is lowercase hex: always a valid id.
            id: id.parse().unwrap_or_else(|e| unreachable!("{e}")),
            url,
            created_at: Utc::now(),
        }
    }

    /// Whether `which` names this drain: its id, or its URL (written any way that
    /// normalises to it).
    pub fn is(&self, which: &str) -> bool {
        which == self.id.as_str()
            || which == self.url.as_str()
            || which
                .parse::<wdeploy_core::DrainUrl>()
                .is_ok_and(|url| url == self.url)
    }
}

/// Most bytes of what going live printed that a release keeps (`releases:output`): the
/// last of it, where a failure says why.
pub const MAX_RELEASE_OUTPUT: usize = 64 * 1024;

/// `Invalid` for an output over [`MAX_RELEASE_OUTPUT`] bytes (the host keeps its last
/// part; a caller that does not is told).
pub(crate) fn check_release_output(output: &str) -> Result<()> {
    if output.len() > MAX_RELEASE_OUTPUT {
        return Err(StoreError::Invalid(format!(
            "a release's output of {} bytes is over the limit of {MAX_RELEASE_OUTPUT} bytes",
            output.len()
        )));
    }
    Ok(())
}

/// Most drains an app may have (Heroku allows a handful too): each costs the node a
/// connection and a buffer of lines.
pub const MAX_DRAINS_PER_APP: usize = 5;

/// One immutable entry of an app's release log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub app: AppName,
    pub version: u64,
    /// The slug id (its manifest's digest); `None` for config changes before any deploy.
    pub slug: Option<Digest>,
    /// Procfile text of the slug.
    pub procfile: String,
    /// `wdeploy.toml` text of the slug (empty when absent).
    pub settings: String,
    pub config: BTreeMap<String, String>,
    pub description: String,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub status: ReleaseStatus,
    /// The node that made it and takes it live, where the store keeps it (the cluster
    /// store): a release still pending when its node is gone will never finish.
    pub node: Option<NodeName>,
}

/// What a new release is made of; the time and the first status are the store's: pending
/// while a slug is being started, succeeded at once for a config change before any slug.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub slug: Option<Digest>,
    pub procfile: String,
    pub settings: String,
    pub config: BTreeMap<String, String>,
    pub description: String,
    pub author: String,
    /// The node making it (see [`Release::node`]).
    pub node: Option<NodeName>,
    /// When it was made: `None` for now, as for every release the platform makes; an
    /// import (`crate::import`) keeps the time of the release it copies.
    pub created_at: Option<DateTime<Utc>>,
}

impl NewRelease {
    /// The status it is appended with: pending while its slug is started, succeeded at
    /// once for a config change before any slug.
    pub fn first_status(&self) -> ReleaseStatus {
        if self.slug.is_some() {
            ReleaseStatus::Pending
        } else {
            ReleaseStatus::Succeeded
        }
    }
}

/// The head of an app's release log: what a read-modify-write of it starts from.
#[derive(Debug, Clone, Default)]
pub struct ReleaseHead {
    /// The newest version of any status (0 before the first release): the next one is
    /// `latest + 1`.
    pub latest: u64,
    /// The newest succeeded release: its slug runs, its config is current.
    pub current: Option<Release>,
}

/// One page of keys: the keys and, when more follow, the offset of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub next: Option<u64>,
}

impl KeyPage {
    /// The page of keys read from `offset`, fetched one past a page
    /// ([`wdeploy_core::addons::PAGE_KEYS`] + 1) to learn whether another page follows.
    pub fn from_fetched(mut keys: Vec<String>, offset: u64) -> KeyPage {
        use wdeploy_core::addons::PAGE_KEYS;
        let next = (keys.len() > PAGE_KEYS).then(|| {
            keys.truncate(PAGE_KEYS);
            offset + PAGE_KEYS as u64
        });
        KeyPage { keys, next }
    }
}

/// A job leased to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub payload: Vec<u8>,
    /// 1 on the first lease, one more on each lease after an expiry.
    pub attempt: u32,
}

/// How many jobs of one queue are in each state, for `queue:stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: String,
    /// Waiting to be taken (never taken, or their lease expired).
    pub ready: u64,
    /// Taken, lease running.
    pub leased: u64,
    /// Acked within the add-ons' done-job retention.
    pub done: u64,
}

/// A node's name in its cluster: like a host name's label, `[a-z0-9-]{1,63}` neither
/// starting nor ending with a dash, so it is also a valid NATS subject and key token, and
/// the first label of the name its TLS certificate is for.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for NodeName {
    type Err = String;
    fn from_str(s: &str) -> Result<NodeName, String> {
        let valid = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            && !s.starts_with('-')
            && !s.ends_with('-');
        if valid {
            Ok(NodeName(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not a node name: use 1 to 63 lowercase letters, digits and dashes, not starting or ending with a dash"
            ))
        }
    }
}

impl TryFrom<String> for NodeName {
    type Error = String;
    fn try_from(s: String) -> Result<NodeName, String> {
        s.parse()
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0
    }
}

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A live node as the others see it, from its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    pub name: NodeName,
    /// Where other nodes' routers forward requests for the web dynos this node runs
    /// (`host:port` of its router).
    pub advertise: String,
    pub started_at: DateTime<Utc>,
    /// The wdeploy version the node runs (empty from a node of a version before it).
    #[serde(default)]
    pub version: String,
    /// The node is stopping, and hands its dynos to the others first: no dyno is placed
    /// on it any more, and it serves those it runs until they run elsewhere.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

/// One dyno as `ps` shows it, wherever it runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DynoRecord {
    pub name: String,
    pub process_type: wdeploy_core::ProcessType,
    pub state: wdeploy_core::DynoState,
    pub since: DateTime<Utc>,
    /// While crashed: when the next start is due.
    pub next_start: Option<DateTime<Utc>>,
    pub release: u64,
    pub command: String,
}

/// The dynos of one app that one node runs, as that node last recorded them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeDynos {
    pub node: NodeName,
    pub dynos: Vec<DynoRecord>,
}

/// A log line on its way between nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogRecord {
    /// The node whose dyno, router or platform wrote it.
    pub node: NodeName,
    pub at: DateTime<Utc>,
    pub kind: wdeploy_core::LogSource,
    /// `web.1`, `router`, `api`…
    pub process: String,
    pub text: String,
}

/// A request that every node restart its dynos of an app (or the one dyno named, on
/// whichever node runs it): `restart` sent to any node reaches them all.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestartRequest {
    /// Grows with every request of the app: a node acts on each number once.
    pub number: u64,
    /// `web.2`; `None` for all of the app's dynos.
    pub dyno: Option<String>,
}

/// What the backends' tests store.
#[cfg(test)]
pub(crate) mod testing {
    use super::NewRelease;

    /// A release of a slug with a web process and `config`, by the admin.
    pub fn new_release(description: &str, config: &[(&str, &str)]) -> NewRelease {
        NewRelease {
            node: None,
            slug: Some(wdeploy_core::Digest::of_bytes(b"slug")),
            procfile: "web: web\n".into(),
            settings: String::new(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            description: description.into(),
            author: "admin".into(),
            created_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_name_is_a_host_name_label() {
        for good in ["a", "node-1", "0", &"x".repeat(63)] {
            assert!(good.parse::<NodeName>().is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"x".repeat(64)] {
            let err = bad.parse::<NodeName>().unwrap_err();
            assert!(
                err.contains("not starting or ending with a dash"),
                "{bad}: {err}"
            );
        }
    }
}
