//! Content-addressed blobs: slug manifests and components, by digest.

use crate::error::Result;
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::SystemTime;
use wdeploy_core::Digest;

/// An upload's bytes as they arrive from the client.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static>>;

/// Blobs by content digest. Whatever the backend, a blob is verified when written (its
/// content must hash to its name) and again when read, and the host runs components
/// from a local file ([`BlobStore::local_path`]), so a node keeps a copy of what it runs.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    async fn has(&self, digest: &Digest) -> Result<bool>;
    /// Stores `content` under `digest` as it arrives (never whole in memory), refusing it
    /// past `limit` bytes or if it does not hash to `digest`. Returns the size and the
    /// local file it now has.
    async fn put(&self, digest: &Digest, content: ByteStream, limit: u64)
    -> Result<(u64, PathBuf)>;
    /// A local file holding the blob, checked to still hash to its digest: `NotFound`
    /// when the store lacks it, `Corrupt` when it no longer matches.
    async fn local_path(&self, digest: &Digest) -> Result<PathBuf>;
    /// The whole blob, verified (for small blobs: slug manifests).
    async fn read(&self, digest: &Digest) -> Result<Vec<u8>>;
    /// Every blob the store holds, with when it was stored: what the collector of
    /// unreferenced blobs looks over (it never removes one younger than its grace).
    async fn stored(&self) -> Result<Vec<(Digest, SystemTime)>>;
    /// Removes a blob (the collector's alone: nothing else ever removes one); a blob
    /// already gone is no error.
    async fn remove(&self, digest: &Digest) -> Result<()>;
}
