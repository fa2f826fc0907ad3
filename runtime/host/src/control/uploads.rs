//! What a push uploads: the blobs the store lacks, each stored and compiled as it
//! arrives, and the check that a slug is whole before it is released.

use super::Host;
use super::errors::Result;
use wdeploy_api::ApiError;
use wdeploy_api::server::{BlobStream, MAX_BLOB_BYTES};
use wdeploy_core::Digest;

impl Host {
    /// The digests of `digests` the store lacks, in order.
    pub(super) async fn missing(&self, digests: Vec<Digest>) -> Result<Vec<Digest>> {
        let mut missing = Vec::new();
        for digest in digests {
            if !self.store.blobs.has(&digest).await? {
                missing.push(digest);
            }
        }
        Ok(missing)
    }

    pub(super) async fn store_blob(&self, digest: &Digest, body: BlobStream) -> Result<()> {
        let (_, path) = self
            .store
            .blobs
            .put(digest, body, MAX_BLOB_BYTES as u64)
            .await?;
        // Compile while the client uploads the rest and creates the release.
        self.engine.precompile(path, digest.clone());
        Ok(())
    }

    /// Refuses a slug the store does not hold whole: its manifest and every component
    /// it names. A push asks which blobs are missing before it uploads, and the
    /// collector (`blob_gc.rs`) may remove an old unreferenced one after that answer, so
    /// the refusal is [`ApiError::blobs_missing`]: the client uploads again and retries,
    /// rather than a release that fails when its dynos load.
    pub(super) async fn check_slug_whole(&self, slug: &Digest) -> Result<()> {
        if !self.store.blobs.has(slug).await? {
            return Err(ApiError::blobs_missing(format!(
                "slug {slug} has not been uploaded: upload it (`wdeploy push` does) and \
                 release again"
            ))
            .into());
        }
        let manifest = self.store.manifest(slug).await?;
        let mut missing = Vec::new();
        for file in manifest.components.values() {
            if !self.store.blobs.has(&file.digest).await? {
                missing.push(file.digest.abbreviated());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(ApiError::blobs_missing(format!(
            "the host no longer holds {} of slug {}'s components ({}): upload them (`wdeploy \
             push` does) and release again",
            missing.len(),
            slug.abbreviated(),
            missing.join(", ")
        ))
        .into())
    }
}
