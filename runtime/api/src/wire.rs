//! The JSON bodies of the control API (shaped after Heroku's Platform API v3).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wdeploy_core::{AppName, Digest, Domain, DynoState, Formation, ProcessType, ReleaseStatus};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppInfo {
    pub name: AppName,
    pub created_at: DateTime<Utc>,
    /// `http://NAME.DOMAIN:PORT`
    pub web_url: String,
    /// Version of the release serving now, if any.
    pub release: Option<u64>,
    pub formation: Formation,
    /// Whether the router answers with the maintenance page (`maintenance:on`).
    #[serde(default)]
    pub maintenance: bool,
}

/// One node of the cluster, as `GET /cluster/nodes` (an admin's) shows it: what its
/// heartbeat says, and what the answering node found when it opened the hop to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    /// Where the other nodes forward requests to it.
    pub advertise: String,
    pub started_at: DateTime<Utc>,
    /// Empty for a node of a version that does not say.
    pub version: String,
    /// The node that answered.
    pub this: bool,
    /// Which cluster key it proves itself with (a short id; the same on every node once a
    /// rotation has reached them all).
    pub key: Option<String>,
    /// Why the hop to it could not be opened (`key` is then unknown).
    pub unreachable: Option<String>,
    /// It is stopping, and hands its dynos to the other nodes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

/// `POST /cluster/rotate-key` (an admin's): a new key for the TLS between the nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRotation {
    /// How long nodes still trust the key it replaces (every node reads the new one
    /// meanwhile): 60 s unless given, at least 10.
    #[serde(default = "KeyRotation::default_grace")]
    pub grace_seconds: u64,
}

impl KeyRotation {
    pub const DEFAULT_GRACE_SECONDS: u64 = 60;

    fn default_grace() -> u64 {
        KeyRotation::DEFAULT_GRACE_SECONDS
    }
}

/// A rotation done: until when the replaced key is trusted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotatedKey {
    pub previous_trusted_until: DateTime<Utc>,
}

/// `PATCH /apps/NAME`: what to change of the app itself (each field: unchanged if absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppUpdate {
    /// Turn maintenance mode on or off: the router answers 503 with a maintenance page,
    /// and the dynos keep running.
    #[serde(default)]
    pub maintenance: Option<bool>,
    /// A new name for the app (`apps:rename`): its URL changes, and all it has stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<AppName>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateApp {
    pub name: Option<String>,
}

/// `POST /blobs/missing`: which of these the host lacks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobList {
    pub digests: Vec<Digest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRelease {
    /// The slug id (`sha256:` of the slug manifest), uploaded as a blob beforehand.
    pub slug: Digest,
    pub procfile: String,
    /// `wdeploy.toml` text (empty when the app has none).
    #[serde(default)]
    pub settings: String,
    pub description: String,
    /// Send [`HEARTBEAT_MARKER`] each period of this many seconds (1–300) without a progress line
    /// (a long release command, a slow boot), so the client can tell those from a host
    /// that vanished without closing the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub version: u64,
    pub description: String,
    pub slug: Option<Digest>,
    pub user: String,
    pub created_at: DateTime<Utc>,
    pub status: ReleaseStatus,
    /// Whether this release serves now.
    pub current: bool,
}

/// `GET /apps/{app}/releases/{version}`: one release in full, as it was released.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseDetail {
    #[serde(flatten)]
    pub release: ReleaseInfo,
    /// Its Procfile.
    pub procfile: String,
    /// Its `wdeploy.toml` (empty: none).
    pub settings: String,
    /// Its config vars.
    pub config: BTreeMap<String, String>,
}

/// `GET /apps/{app}/releases/{version}/output`: what going live printed for a release
/// (its release phase, its boot, why it failed), its last 64 KiB; empty when nothing was
/// kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseOutput {
    pub version: u64,
    pub output: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rollback {
    pub version: Option<u64>,
    /// Heroku's `releases:retry`: release the newest release again (its release phase
    /// runs again), live or failed, rather than go back to an earlier one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
    /// Answer as a release stream, with [`HEARTBEAT_MARKER`] each quiet period of this
    /// many seconds (1–300), as [`CreateRelease::heartbeat`]; otherwise plain JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<u64>,
}

/// `PATCH config-vars`: a value sets, `null` unsets.
pub type ConfigPatch = BTreeMap<String, Option<String>>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DynoInfo {
    pub name: String,
    pub process_type: ProcessType,
    pub state: DynoState,
    pub since: DateTime<Utc>,
    /// When a crashed dyno starts again.
    #[serde(default)]
    pub next_start: Option<DateTime<Utc>>,
    pub release: u64,
    pub command: String,
    /// The node running it (in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    pub process_type: ProcessType,
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds the dyno may live (Heroku's `time_to_live`); the host's limit caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_live: Option<u64>,
    /// In the background (Heroku's `run:detached`): the stream ends once the dyno runs,
    /// its output goes to the log stream only, and it runs on whatever its client does,
    /// until its command ends, its time limit, or `ps:stop`. Otherwise the dyno is
    /// attached to its client and stops when the client goes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
    /// Variables set in this dyno's environment over the release's config vars (Heroku's
    /// `env`), for it alone: nothing is released.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Attached: send [`HEARTBEAT_MARKER`] each period of this many seconds (1–300) without a
    /// line, so the client can tell a quiet command from a host that vanished without
    /// closing the connection (the answer's `x-wdeploy-heartbeat` says the host does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<u64>,
    /// Attached: the client sends the dyno's stdin, with a `PUT` of
    /// `/apps/APP/dynos/NAME/stdin` (the name is in the answer's `x-wdeploy-dyno`); the
    /// end of that body is the end of the dyno's input. Otherwise its stdin stays open
    /// and empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
}

/// Every error body: `{"id": "not_found", "message": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub id: String,
    pub message: String,
}

/// The last line of a `run` output stream carries the exit status: `\u{0}exit=N`.
pub const EXIT_MARKER: &str = "\u{0}exit=";
/// The line a `run` output stream or a release stream carries in each quiet moment when
/// its client asked for a heartbeat ([`RunRequest::heartbeat`],
/// [`CreateRelease::heartbeat`]): no output of a dyno's, which is text.
pub const HEARTBEAT_MARKER: &str = "\u{0}";
/// The last line of a release stream when it went live: `\u{0}result=` + [`ReleaseInfo`].
pub const RESULT_MARKER: &str = "\u{0}result=";
/// The last line of a release stream when it failed: `\u{0}error=STATUS ` + [`ErrorBody`].
pub const ERROR_MARKER: &str = "\u{0}error=";

/// `GET /apps/{app}/kv/keys` and `/kv/entry`: which bucket (default `default`), which key or
/// key prefix.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KvQuery {
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub prefix: Option<String>,
}

/// A key-value entry of an app's add-on store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KvEntry {
    pub bucket: String,
    pub key: String,
    /// The value: as text when it is UTF-8, else in hex (see `encoding`).
    pub value: String,
    /// `utf-8` or `hex`.
    pub encoding: String,
}

/// `PUT /apps/{app}/kv/entry`: the new value, as text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KvSet {
    pub value: String,
}

/// `GET /apps/{app}/kv/keys`: keys in byte order, at most `limit` of them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KvKeys {
    pub bucket: String,
    pub keys: Vec<String>,
    /// More keys match than were listed.
    pub truncated: bool,
}

/// `GET /apps/{app}/queues`: jobs of one queue by state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueInfo {
    pub queue: String,
    /// Waiting to be taken (never taken, or their lease expired).
    pub ready: u64,
    /// Taken by a worker, lease running.
    pub leased: u64,
    /// Acknowledged in the last 24 hours.
    pub done: u64,
}

/// A custom domain of an app (`GET /apps/{app}/domains`): the router serves the app at
/// it besides `NAME.DOMAIN`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainInfo {
    pub hostname: Domain,
    /// Where the domain's DNS must point: this host's router (`NAME.DOMAIN`).
    pub cname: String,
}

/// `POST /apps/{app}/domains`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateDomain {
    /// As typed: any case, a trailing dot or not.
    pub hostname: String,
    /// Have the host order (and renew) a certificate for it over ACME.
    #[serde(default)]
    pub acme: bool,
}

/// Where an app's certificate comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CertSource {
    /// Brought by the user (`certs:add`).
    Manual,
    /// Ordered and renewed by the host over ACME (`domains:add --acme`).
    Acme,
}

/// How a certificate stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CertStatus {
    /// Served.
    Ok,
    /// An ACME certificate not issued yet.
    Ordering,
    /// Past its expiry: clients refuse it.
    Expired,
    /// The last ACME order or renewal failed (`error` says why).
    Error,
}

/// A domain's certificate (`GET /apps/{app}/certs`). Never carries the private key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertInfo {
    pub domain: Domain,
    pub source: CertSource,
    /// The issuer of the leaf (its CN); empty while ordering.
    pub issuer: String,
    /// When the leaf expires; absent while ordering.
    pub expires_at: Option<DateTime<Utc>>,
    pub status: CertStatus,
    /// The last ACME failure, if any.
    pub error: Option<String>,
}

/// `POST /apps/{app}/certs`: a certificate the user brings, as PEM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateCert {
    /// The leaf first, then its intermediates.
    pub certificate_chain: String,
    /// PKCS#8, SEC1 or PKCS#1.
    pub private_key: String,
    /// The domain to serve it for; without one, every domain of the app it covers.
    #[serde(default)]
    pub domain: Option<String>,
}

/// `GET /apps/{app}/addons`: what the app's add-on data takes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddonUsage {
    /// Bytes the app's keys and jobs count against its quota.
    pub storage_bytes: u64,
    /// The app's add-on storage quota, in bytes.
    pub quota_bytes: u64,
    pub queues: Vec<QueueInfo>,
}

/// `GET /apps/{app}/metrics`: the app's last hour on the node answering, one sample per
/// interval, oldest first, from the same counts `/metrics` exports (none before the
/// app's first traffic there, and none after an hour without any).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsHistory {
    pub app: AppName,
    pub interval_seconds: u64,
    pub samples: Vec<MetricsSample>,
}

/// One interval of an app's [`MetricsHistory`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsSample {
    /// When the interval ended.
    pub at: DateTime<Utc>,
    /// Requests the router answered for the app in the interval, and of them 5xx.
    pub requests: u64,
    pub errors: u64,
    /// Requests the router answered for the app, per second over the interval.
    pub requests_per_second: f64,
    /// Of which 5xx.
    pub errors_per_second: f64,
    /// Router latency quantiles over the interval (absent without requests).
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// Linear memory of the app's instances at the end of the interval.
    pub memory_bytes: u64,
}

/// A person, as `GET /users` lists them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    pub email: wdeploy_core::Person,
    pub admin: bool,
    pub created_at: DateTime<Utc>,
}

/// `GET /account`: who the caller's token belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub email: wdeploy_core::Person,
    pub admin: bool,
}

/// `POST /users`: a new person, with a first token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateUser {
    pub email: wdeploy_core::Person,
    /// What the first token is for (default `made by users:add`).
    #[serde(default)]
    pub description: Option<String>,
}

/// `DELETE /users/EMAIL`: what went with the person.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRemoved {
    pub email: wdeploy_core::Person,
    /// How many of their tokens were revoked.
    pub tokens: usize,
    /// The apps they had access to (those that still exist), by name.
    pub apps: Vec<AppName>,
}

/// `POST /tokens`: a new token for the caller, or (an admin's call) for `user`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateToken {
    #[serde(default)]
    pub description: Option<String>,
    /// Whose token it is, when not the caller's: a person who lost theirs gets a new one
    /// from an admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<wdeploy_core::Person>,
}

/// A token as listed: its public id, never the token or its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: wdeploy_core::TokenId,
    pub user: wdeploy_core::Person,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

/// A token just made: the only time the token itself is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

/// Someone with access to an app (Heroku's collaborator).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Collaborator {
    pub email: wdeploy_core::Person,
}

/// A log drain (`GET /apps/{app}/log-drains`), shaped like Heroku's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DrainInfo {
    /// `d.` + a UUID: what `DELETE /apps/{app}/log-drains/{id}` takes (or the URL).
    pub id: String,
    /// The URL as added (credentials included: the app's own data).
    pub url: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /apps/{app}/log-drains`: `{"url": "syslog+tls://logs.example.com:6514"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateDrain {
    pub url: String,
}
