//! What the store keeps, as the layers above see it.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use wdeploy_core::{AppName, Digest, ReleaseStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: AppName,
    pub created_at: DateTime<Utc>,
}

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
