//! Blobs in a JetStream Object Store, with a verified local copy on every node: the
//! cluster backend of [`BlobStore`].
//!
//! The Object Store bucket `wdeploy-blobs` holds every blob under its digest
//! (`sha256:…`), shared by the nodes. Each node also keeps a cache directory that is an
//! embedded [`BlobDir`]: what it uploads is written (and verified) there first, and what
//! it runs is downloaded there (and verified) before use. So a node restarts its dynos from
//! local files while NATS is away, and a blob that does not hash to its name (corrupted in
//! the bucket, or by whoever wrote it) is never run.

use super::{CALL_TIMEOUT, Nats, unavailable};
use crate::blobs::{BlobStore, ByteStream};
use crate::embedded::BlobDir;
use crate::error::{Result, StoreError};
use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use async_nats::jetstream::object_store::{self, InfoErrorKind, ObjectInfo, ObjectStore};
use async_nats::jetstream::stream::{StorageType, Stream};
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use wdeploy_core::Digest;

const BUCKET: &str = "wdeploy-blobs";

/// How many times a download is tried when the object was replaced while it was read
/// (another node uploading the same blob again): the second read sees the new one.
const DOWNLOAD_ATTEMPTS: usize = 2;

/// The shared Object Store and this node's verified copies.
pub struct ClusterBlobs {
    nats: Nats,
    local: BlobDir,
    remote: ObjectStore,
    /// The bucket's stream, whose chunk messages downloads read directly (so that a
    /// failure mid-way is an error this store maps, never a panic or a wait forever).
    stream: Stream,
}

impl ClusterBlobs {
    /// Opens the bucket (creating it if this is the cluster's first node) and the cache
    /// in `cache_dir` (its half-written files of a previous run are removed).
    pub async fn open(nats: &Nats, cache_dir: &Path) -> Result<ClusterBlobs> {
        let dir = cache_dir.to_path_buf();
        let local = tokio::task::spawn_blocking(move || BlobDir::open(&dir))
            .await
            .map_err(|e| StoreError::Backend(format!("opening the blob cache: {e}")))??;
        nats.check()?;
        let remote = match nats.js.get_object_store(BUCKET).await {
            Ok(remote) => remote,
            Err(_) => {
                let config = object_store::Config {
                    bucket: BUCKET.to_string(),
                    storage: StorageType::File,
                    ..Default::default()
                };
                match nats.js.create_object_store(config).await {
                    Ok(remote) => remote,
                    // Another node made it meanwhile.
                    Err(_) => nats.js.get_object_store(BUCKET).await.map_err(|e| {
                        unavailable(format!("opening the object store {BUCKET}: {e}"))
                    })?,
                }
            }
        };
        let stream = nats
            .js
            .get_stream(format!("OBJ_{BUCKET}"))
            .await
            .map_err(|e| unavailable(format!("opening the object store {BUCKET}: {e}")))?;
        Ok(ClusterBlobs {
            nats: nats.clone(),
            local,
            remote,
            stream,
        })
    }

    /// The bucket's entry for a blob; `None` when it has none (or a deleted one).
    async fn remote_info(&self, digest: &Digest) -> Result<Option<ObjectInfo>> {
        match self.remote.info(digest.as_str()).await {
            Ok(info) if !info.deleted => Ok(Some(info)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable(format!("looking up blob {digest}: {e}"))),
        }
    }

    /// Uploads the local copy of a blob (`size` bytes) unless the bucket has it.
    async fn upload(&self, digest: &Digest, path: &Path, size: u64) -> Result<()> {
        if let Some(info) = self.remote_info(digest).await?
            && info.size as u64 == size
        {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(path).await?;
        self.remote
            .put(digest.as_str(), &mut file)
            .await
            .map_err(|e| match e.kind() {
                object_store::PutErrorKind::ReadChunks => {
                    StoreError::Io(std::io::Error::other(format!("reading blob {digest}: {e}")))
                }
                _ => unavailable(format!("uploading blob {digest}: {e}")),
            })?;
        Ok(())
    }

    /// Downloads a blob into the cache, verifying it there as it is written; returns
    /// its local path. A blob in the bucket that does not hash to its name is deleted
    /// from the bucket (so the next push uploads it again) and is `Corrupt`.
    async fn download(&self, digest: &Digest) -> Result<PathBuf> {
        self.nats.check()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let info = self
                .remote_info(digest)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("blob {digest}")))?;
            let chunks = self.chunks(&info).await?;
            match BlobStore::put(&self.local, digest, chunks, u64::MAX).await {
                Ok((_, path)) => return Ok(path),
                Err(StoreError::Io(e)) if is_remote(&e) => {
                    return Err(unavailable(format!("downloading blob {digest}: {e}")));
                }
                Err(StoreError::DigestMismatch { actual, .. }) => {
                    // Replaced while read (its old chunks purged): read the new one.
                    let now = self.remote_info(digest).await?;
                    if now.as_ref().is_some_and(|now| now.nuid != info.nuid)
                        && attempt < DOWNLOAD_ATTEMPTS
                    {
                        continue;
                    }
                    tracing::warn!(
                        "blob {digest} in the cluster's object store hashes to {actual}: deleting it"
                    );
                    if let Err(e) = self.remote.delete(digest.as_str()).await {
                        tracing::warn!("could not delete the corrupt blob {digest}: {e}");
                    }
                    return Err(StoreError::Corrupt {
                        digest: digest.clone(),
                        actual,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The content of an object as a stream of its chunks, each awaited at most
    /// [`CALL_TIMEOUT`]: a server gone mid-way ends it with an error [`is_remote`] tells.
    async fn chunks(&self, info: &ObjectInfo) -> Result<ByteStream> {
        if info.chunks == 0 {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let what = format!("downloading blob {}", info.name);
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                deliver_subject: self.nats.client.new_inbox(),
                filter_subject: format!("$O.{BUCKET}.C.{}", info.nuid),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("{what}: {e}")))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(format!("{what}: {e}")))?;
        let chunks =
            futures::stream::unfold(Some(messages), |messages: Option<Ordered>| async move {
                let mut messages = messages?;
                let item = match tokio::time::timeout(CALL_TIMEOUT, messages.next()).await {
                    Ok(Some(Ok(message))) => {
                        // The server counts what is left: the last chunk has none after it.
                        let last = match message.info() {
                            Ok(info) => info.pending == 0,
                            Err(e) => {
                                let e = remote_error(format!("reading a chunk's metadata: {e}"));
                                return Some((Err(e), None));
                            }
                        };
                        let payload = message.message.payload;
                        return Some((Ok(payload), (!last).then_some(messages)));
                    }
                    Ok(Some(Err(e))) => remote_error(format!("reading a chunk: {e}")),
                    Ok(None) => remote_error("the chunks ended early"),
                    Err(_) => remote_error("no chunk came in time"),
                };
                Some((Err(item), None))
            });
        Ok(Box::pin(chunks))
    }
}

#[async_trait]
impl BlobStore for ClusterBlobs {
    /// Whether the cluster has the blob: in the bucket, or in this node's cache. A blob
    /// only the cache has (an upload cut short by NATS going away) is uploaded now, so
    /// that "has" means every node can get it and a push that skips it misses nothing.
    async fn has(&self, digest: &Digest) -> Result<bool> {
        self.nats.check()?;
        if self.remote_info(digest).await?.is_some() {
            return Ok(true);
        }
        match BlobStore::local_path(&self.local, digest).await {
            Ok(path) => {
                let size = tokio::fs::metadata(&path).await?.len();
                self.upload(digest, &path, size).await?;
                Ok(true)
            }
            Err(StoreError::NotFound(_) | StoreError::Corrupt { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Written to the cache first (verified against `digest` and `limit` as it arrives),
    /// then uploaded unless the bucket has it already.
    async fn put(
        &self,
        digest: &Digest,
        content: ByteStream,
        limit: u64,
    ) -> Result<(u64, PathBuf)> {
        // Before taking the upload: with NATS away it could not be shared anyway.
        self.nats.check()?;
        let (size, path) = BlobStore::put(&self.local, digest, content, limit).await?;
        self.upload(digest, &path, size).await?;
        Ok((size, path))
    }

    /// The cached copy when it is there and still verifies, else a fresh one from the
    /// bucket. Without NATS, what is cached is still served.
    async fn local_path(&self, digest: &Digest) -> Result<PathBuf> {
        match BlobStore::local_path(&self.local, digest).await {
            Ok(path) => Ok(path),
            Err(StoreError::NotFound(_)) => self.download(digest).await,
            Err(corrupt @ StoreError::Corrupt { .. }) => {
                tracing::warn!("{corrupt}: fetching it again from the cluster");
                self.download(digest).await.map_err(|_| corrupt)
            }
            Err(e) => Err(e),
        }
    }

    async fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.local_path(digest).await?;
        Ok(tokio::fs::read(path).await?)
    }

    /// The bucket's blobs and this node's copies: every node collects what it can see,
    /// so each one's cache is swept too.
    async fn stored(&self) -> Result<Vec<(Digest, SystemTime)>> {
        self.nats.check()?;
        let mut all: HashMap<Digest, SystemTime> =
            BlobStore::stored(&self.local).await?.into_iter().collect();
        let listed = tokio::time::timeout(CALL_TIMEOUT * 10, async {
            let mut list = self.remote.list().await.map_err(|e| e.to_string())?;
            let mut infos = Vec::new();
            while let Some(info) = list.next().await {
                infos.push(info.map_err(|e| e.to_string())?);
            }
            Ok::<_, String>(infos)
        })
        .await
        .map_err(|_| unavailable("listing the blobs: no answer"))?
        .map_err(|e| unavailable(format!("listing the blobs: {e}")))?;
        for info in listed.into_iter().filter(|i| !i.deleted) {
            let Ok(digest) = info.name.parse::<Digest>() else {
                continue;
            };
            let at = info.modified.map_or(SystemTime::now(), |m| {
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(m.unix_timestamp()).unwrap_or(0))
            });
            // The newer of the two: a blob is as young as its latest copy.
            let entry = all.entry(digest).or_insert(at);
            *entry = (*entry).max(at);
        }
        Ok(all.into_iter().collect())
    }

    async fn remove(&self, digest: &Digest) -> Result<()> {
        self.nats.check()?;
        match self.remote.delete(digest.as_str()).await {
            Ok(()) => {}
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => {}
            Err(e) => return Err(unavailable(format!("removing blob {digest}: {e}"))),
        }
        BlobStore::remove(&self.local, digest).await
    }
}

/// An error of the remote side while a download streams, told apart from the local
/// disk's once it comes back out of [`BlobDir`] as I/O.
#[derive(Debug)]
struct Remote(String);

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Remote {}

fn remote_error(what: impl Into<String>) -> std::io::Error {
    std::io::Error::other(Remote(what.into()))
}

fn is_remote(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Remote>())
}
