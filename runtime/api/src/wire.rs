//! The JSON bodies of the control API (shaped after Heroku's Platform API v3).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppInfo {
    pub name: String,
    pub created_at: String,
    /// `http://NAME.DOMAIN:PORT`
    pub web_url: String,
    /// Version of the release serving now, if any.
    pub release: Option<u64>,
    pub formation: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateApp {
    pub name: Option<String>,
}

/// `POST /blobs/missing`: which of these the host lacks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobList {
    pub digests: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRelease {
    /// `sha256:` of the slug manifest, uploaded as a blob beforehand.
    pub slug: String,
    pub procfile: String,
    /// `wdeploy.toml` text (empty when the app has none).
    #[serde(default)]
    pub settings: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub version: u64,
    pub description: String,
    pub slug: Option<String>,
    pub user: String,
    pub created_at: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Whether this release serves now.
    pub current: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rollback {
    pub version: Option<u64>,
}

/// `PATCH config-vars`: a value sets, `null` unsets.
pub type ConfigPatch = BTreeMap<String, Option<String>>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DynoInfo {
    pub name: String,
    pub process_type: String,
    /// `starting`, `up`, `crashed` or `idle`.
    pub state: String,
    pub since: String,
    /// When a crashed dyno starts again.
    #[serde(default)]
    pub next_start: Option<String>,
    pub release: u64,
    pub command: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    pub process_type: String,
    #[serde(default)]
    pub args: Vec<String>,
}

/// Every error body: `{"id": "not_found", "message": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub id: String,
    pub message: String,
}

/// The last line of a `run` output stream carries the exit status: `\u{0}exit=N`.
pub const EXIT_MARKER: &str = "\u{0}exit=";
/// The last line of a release stream when it went live: `\u{0}result=` + [`ReleaseInfo`].
pub const RESULT_MARKER: &str = "\u{0}result=";
/// The last line of a release stream when it failed: `\u{0}error=STATUS ` + [`ErrorBody`].
pub const ERROR_MARKER: &str = "\u{0}error=";
