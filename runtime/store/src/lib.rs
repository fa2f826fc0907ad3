//! The store boundary: everything a host keeps durably, behind one interface the rest of
//! the host codes against without knowing which backend runs.
//!
//! A [`Store`] has eight facets: [`ControlStore`] (apps, release logs with their config
//! vars, formation, log drains, custom domains), [`CertStore`] (the TLS certificates of
//! those domains), [`BlobStore`] (slug manifests and components by content
//! digest), [`AddonStore`] (the apps' key-value buckets and job queues), [`Nodes`] (the
//! live nodes and the dynos each runs), [`LogBus`] (log lines between nodes),
//! [`People`] (people, their API tokens, their access to apps) and [`AcmeStore`] (ACME
//! accounts and the HTTP-01 challenges of orders under way). All calls are
//! async; a backend that blocks (SQLite, files) does so on blocking threads, never on
//! the async workers that also run guests and the router. Errors are typed
//! ([`StoreError`], [`AddonError`]) the same for every backend.
//!
//! [`embedded`] is the default backend (files + SQLite under a data directory; a cluster
//! of one). [`cluster`] keeps the same facets in NATS JetStream, shared by every node of a
//! cluster. This crate knows nothing of wasmtime or HTTP.

pub mod acme;
pub mod addons;
pub mod blobs;
pub mod certs;
pub mod cluster;
pub mod control;
pub mod embedded;
pub mod error;
pub mod import;
pub mod log_bus;
pub mod model;
pub mod nodes;
pub mod people;

pub use acme::AcmeStore;
pub use addons::AddonStore;
pub use blobs::{BlobStore, ByteStream};
pub use certs::{CertSource, CertStore, MAX_CERTS_PER_APP, StoredCert};
pub use control::ControlStore;
pub use error::{AddonError, AddonResult, Result, StoreError};
pub use log_bus::LogBus;
pub use model::{
    App, AppId, Drain, DynoRecord, Job, KeyPage, LogRecord, MAX_DRAINS_PER_APP, MAX_RELEASE_OUTPUT,
    NewRelease, NodeDynos, NodeInfo, NodeName, QueueStats, Release, ReleaseHead, RestartRequest,
    Tenant,
};
pub use nodes::{ClusterKey, ClusterKeys, Nodes};
pub use people::{People, RemovedUser, SessionRecord, TokenOwner, TokenRecord, User};

use std::sync::Arc;

/// A host's store: the facets of one backend.
#[derive(Clone)]
pub struct Store {
    pub control: Arc<dyn ControlStore>,
    pub certs: Arc<dyn CertStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub addons: Arc<dyn AddonStore>,
    pub nodes: Arc<dyn Nodes>,
    pub log_bus: Arc<dyn LogBus>,
    pub people: Arc<dyn People>,
    /// ACME accounts and the HTTP-01 challenges of orders under way.
    pub acme: Arc<dyn AcmeStore>,
}

impl Store {
    /// A slug's manifest, read from the blob store: `NotFound` when the store lacks it,
    /// `Invalid` when the blob is no slug manifest.
    pub async fn manifest(
        &self,
        slug: &wdeploy_core::Digest,
    ) -> Result<wdeploy_core::SlugManifest> {
        let bytes = self.blobs.read(slug).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Invalid(format!("slug {slug} is not a slug manifest: {e}")))
    }

    /// Every blob a release of any app references: each slug's manifest and the
    /// components it names. What the collector of unreferenced blobs keeps, and what a
    /// backup must hold. A manifest that cannot be read fails the whole read (what it
    /// references is unknown).
    pub async fn referenced_blobs(
        &self,
    ) -> Result<std::collections::HashSet<wdeploy_core::Digest>> {
        let mut referenced = std::collections::HashSet::new();
        for slug in self.control.release_slugs().await? {
            let manifest = self.manifest(&slug).await?;
            referenced.extend(manifest.components.into_values().map(|file| file.digest));
            referenced.insert(slug);
        }
        Ok(referenced)
    }
}
