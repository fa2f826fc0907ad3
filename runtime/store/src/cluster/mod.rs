//! The cluster backend: every facet of the store in NATS JetStream, shared by all the
//! nodes of a cluster (`wdeploy host --cluster nats://…`).
//!
//! - `control`: apps, formation, log drains (`drains`), custom domains and their TLS
//!   certificates in KV buckets; each release a key of its own,
//!   created only if absent; every read-modify-write a compare-and-swap on the key's
//!   revision;
//! - `blobs`: an Object Store keyed by digest, with a verified local copy of every blob
//!   this node has read or written (what it runs, so it restarts dynos while NATS is away);
//! - `addons`: the apps' key-value data and job queues, exact and leased across nodes;
//! - `nodes`: heartbeats in a KV bucket whose entries expire, dyno records, change hints;
//! - `people`: people, token hashes and who may act on which app, in KV buckets;
//! - `acme`: ACME accounts and HTTP-01 challenges (which expire by themselves);
//! - `log_bus`: log lines on a subject per app, a stream keeping the last 1,500 of each.
//!
//! Every call fails fast with [`StoreError::Unavailable`] while the connection is down,
//! instead of waiting for it to come back; the client reconnects by itself.

mod acme;
mod addons;
mod address;
mod blobs;
mod control;
mod drains;
mod log_bus;
mod nodes;
mod people;
mod scan;
mod user_key;

pub use acme::ClusterAcme;
pub use addons::ClusterAddons;
pub use address::ClusterAddress;
pub use blobs::ClusterBlobs;
pub use control::ClusterControl;
pub use log_bus::ClusterLogBus;
pub use nodes::ClusterNodes;
pub use people::ClusterPeople;

use crate::error::{Result, StoreError};
use crate::model::{NodeInfo, NodeName};
use async_nats::jetstream;
use std::path::PathBuf;
use std::time::Duration;

/// The layout of the cluster's state in JetStream. A node refuses to join a cluster whose
/// state has another version: it would misread (or miswrite) what the others keep.
pub const SCHEMA_VERSION: u32 = 1;

/// How long one JetStream call may take before it counts as the store being unavailable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The bucket holding the schema version.
const META_BUCKET: &str = "wdeploy-meta";
const SCHEMA_KEY: &str = "schema";

/// How a node joins its cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The NATS server with JetStream, and how to prove this node to it.
    pub address: ClusterAddress,
    pub me: NodeInfo,
    /// Where this node keeps its copies of blobs.
    pub cache_dir: PathBuf,
}

/// A connection to the cluster's NATS, shared by the facets.
#[derive(Clone)]
pub struct Nats {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
}

impl Nats {
    /// Connects to `url` (credentials in it, if any); fails (rather than waiting) when no
    /// server answers.
    pub async fn connect(url: &str, node: &NodeName) -> Result<Nats> {
        Nats::connect_to(&url.parse()?, node).await
    }

    /// Connects to `address`; fails (rather than waiting) when no server answers or it
    /// refuses this node's credentials.
    pub async fn connect_to(address: &ClusterAddress, node: &NodeName) -> Result<Nats> {
        let client = address
            .options()?
            .name(format!("wdeploy node {node}"))
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(CALL_TIMEOUT))
            .max_reconnects(None)
            // Back at most 1 s apart, so a node is back soon after NATS is.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1000))
            })
            .connect(address.url())
            .await
            .map_err(|e| not_joined(address, e))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(CALL_TIMEOUT);
        Ok(Nats { client, js })
    }

    /// `Unavailable` at once while the connection is down.
    pub(crate) fn check(&self) -> Result<()> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(unavailable("not connected to NATS")),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.check().is_ok()
    }

    /// A KV bucket, created with `config` if it does not exist yet.
    pub(crate) async fn bucket(
        &self,
        config: jetstream::kv::Config,
    ) -> Result<jetstream::kv::Store> {
        let name = config.bucket.clone();
        self.check()?;
        if let Ok(store) = self.js.get_key_value(&name).await {
            return Ok(store);
        }
        match self.js.create_key_value(config).await {
            Ok(store) => Ok(store),
            // Another node made it meanwhile.
            Err(_) => self
                .js
                .get_key_value(&name)
                .await
                .map_err(|e| unavailable(format!("opening the KV bucket {name}: {e}"))),
        }
    }

    /// The bucket of facts about the cluster itself (its schema version, its key).
    pub(crate) async fn meta(&self) -> Result<jetstream::kv::Store> {
        self.bucket(jetstream::kv::Config {
            bucket: META_BUCKET.to_string(),
            history: 1,
            ..Default::default()
        })
        .await
    }

    /// Joins the cluster's state: records [`SCHEMA_VERSION`] if the cluster is new, and
    /// refuses a cluster that keeps its state in another version.
    pub async fn check_schema(&self) -> Result<()> {
        let meta = self.meta().await?;
        let mine = SCHEMA_VERSION.to_string();
        if meta.create(SCHEMA_KEY, mine.clone().into()).await.is_ok() {
            return Ok(());
        }
        let theirs = meta
            .get(SCHEMA_KEY)
            .await
            .map_err(|e| unavailable(format!("reading the cluster's schema version: {e}")))?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        if theirs == mine {
            return Ok(());
        }
        Err(StoreError::Invalid(format!(
            "this host keeps cluster state in schema v{SCHEMA_VERSION} but the cluster uses \
             schema v{theirs}: run the same wdeploy version on every node (upgrade or \
             downgrade this one) to join it"
        )))
    }
}

/// Joins the cluster at `options.url`: connects, checks the schema, opens every facet.
/// Fails at once (rather than waiting for NATS) when no server answers, or when the
/// cluster keeps its state in another schema version.
pub async fn open(options: ClusterOptions) -> Result<crate::Store> {
    use std::sync::Arc;
    let nats = Nats::connect_to(&options.address, &options.me.name).await?;
    nats.check_schema().await?;
    let control = Arc::new(ClusterControl::open(&nats).await?);
    Ok(crate::Store {
        control: control.clone(),
        certs: control,
        blobs: Arc::new(ClusterBlobs::open(&nats, &options.cache_dir).await?),
        addons: Arc::new(ClusterAddons::open(&nats).await?),
        nodes: Arc::new(ClusterNodes::open(&nats, options.me.clone()).await?),
        log_bus: Arc::new(ClusterLogBus::open(&nats, options.me.name.clone()).await?),
        people: Arc::new(ClusterPeople::open(&nats).await?),
        acme: Arc::new(ClusterAcme::open(&nats).await?),
    })
}

/// Why a node could not connect, with what to do: only a server that did not answer is
/// worth waiting for; refused credentials or an untrusted certificate are the node's
/// configuration to fix.
fn not_joined(address: &ClusterAddress, e: async_nats::ConnectError) -> StoreError {
    use async_nats::ConnectErrorKind as Kind;
    // rustls reports a failed handshake (an untrusted certificate, a name mismatch) as
    // invalid data from the socket.
    let handshake = e.kind() == Kind::Tls
        || std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData);
    match e.kind() {
        Kind::AuthorizationViolation | Kind::Authentication => StoreError::Invalid(format!(
            "the NATS server at {address} refused this node ({e}): give the credentials it \
             expects, in the URL as nats://USER:PASSWORD@HOST:PORT or nats://TOKEN@HOST:PORT, \
             or as a .creds or nkey seed file with --cluster-creds FILE"
        )),
        _ if handshake => StoreError::Invalid(format!(
            "no TLS connection to the NATS server at {address} ({e}): if a private CA \
             signed its certificate, give that CA with --cluster-ca FILE"
        )),
        _ => unavailable(format!("cannot connect to {address}: {e}")),
    }
}

/// An `Unavailable` error saying what was being done.
pub(crate) fn unavailable(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(what.to_string())
}

/// A real `nats-server` for tests, and the keys of a server in operator mode.
pub mod testing;
