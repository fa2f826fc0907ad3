//! Collecting the blobs no release references: a destroyed app's components, a push that
//! never became a release. Without it the blob store only ever grows, by a component's
//! size (a Python one is 17 MiB) at every push.
//!
//! A blob is removed only when it is older than the grace (`wdeploy host
//! --blob-gc-grace`, a day) and no release of any app references it, directly (a slug's
//! manifest) or through a manifest (its components). The blobs are listed before the
//! releases are read, so a blob stored while a pass runs is never in its list; a pass
//! that cannot read a release log or a manifest removes nothing (an app destroyed or
//! renamed while it reads included: the next pass looks again). Every node runs it over
//! what it sees (in a cluster: the shared bucket and its own cache), so no node's cache
//! outgrows the cluster's; each also removes its compiled code of those components. A
//! push may reuse a blob the host told it it had, older than the grace and unreferenced:
//! should a pass remove it before the push's release, the release is refused before it
//! is appended (`uploads.rs`) and `wdeploy push` uploads the blob again.

use super::Host;
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use wdeploy_core::Digest;

/// How often blobs are collected, and how old an unreferenced one must be to go.
#[derive(Debug, Clone, Copy)]
pub struct BlobCollection {
    /// Between two passes; `None`: never.
    pub every: Option<Duration>,
    pub grace: Duration,
}

impl Default for BlobCollection {
    fn default() -> Self {
        BlobCollection {
            every: Some(Duration::from_secs(3600)),
            grace: Duration::from_secs(24 * 3600),
        }
    }
}

impl Host {
    /// Collects blobs every `blob_gc.every` until `stop`.
    pub(super) async fn collect_blobs_loop(self: &Arc<Self>, stop: CancellationToken) {
        let Some(every) = self.config.blob_gc.every else {
            return;
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.collect_blobs().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "collected blobs no release references"),
                Err(e) => tracing::warn!("collecting blobs: {e:#}: nothing removed"),
            }
        }
    }

    /// One pass; how many blobs it removed.
    pub(super) async fn collect_blobs(&self) -> anyhow::Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(self.config.blob_gc.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // Listed first: what is stored from here on is not this pass's to remove.
        let old: Vec<Digest> = (self
            .store
            .blobs
            .stored()
            .await
            .context("listing the blobs")?)
        .into_iter()
        .filter(|(_, at)| *at <= cutoff)
        .map(|(digest, _)| digest)
        .collect();
        if old.is_empty() {
            return Ok(0);
        }
        let keep = (self.store.referenced_blobs().await)
            .context("reading the blobs the releases reference")?;
        let mut removed = 0;
        for digest in old.iter().filter(|d| !keep.contains(*d)) {
            (self.store.blobs.remove(digest).await)
                .with_context(|| format!("removing {digest}"))?;
            removed += 1;
        }
        // This node's compiled code of the components no release references.
        if let Some(dir) = self.engine.compile_cache_dir() {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || {
                crate::guest::compile_cache::sweep(&dir, &keep, cutoff)
            })
            .await
            .context("sweeping the compile cache")?
            .context("sweeping the compile cache")?;
        }
        Ok(removed)
    }
}
