//! The cluster blob store against a real `nats-server`: shared through the Object Store,
//! verified on every node, and served from the local cache while NATS is away.

use std::time::{Duration, Instant};
use wdeploy_core::Digest;
use wdeploy_store::cluster::testing::NatsServer;
use wdeploy_store::cluster::{ClusterBlobs, Nats};
use wdeploy_store::{BlobStore, ByteStream, StoreError};

struct Node {
    nats: Nats,
    blobs: ClusterBlobs,
    _cache: tempfile::TempDir,
}

async fn node(server: &NatsServer, name: &str) -> Node {
    let nats = Nats::connect(&server.url(), &name.parse().unwrap())
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let blobs = ClusterBlobs::open(&nats, cache.path()).await.unwrap();
    Node {
        nats,
        blobs,
        _cache: cache,
    }
}

/// `content` as an upload, in chunks of 100 KiB as a client would send it.
fn upload(content: &[u8]) -> ByteStream {
    let chunks: Vec<std::io::Result<bytes::Bytes>> = content
        .chunks(100 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// 300 KiB that span several of the Object Store's 128 KiB chunks.
fn component() -> Vec<u8> {
    (0..300 * 1024u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_put_on_one_node_is_downloaded_and_verified_on_another() {
    let server = NatsServer::start().unwrap();
    let (a, b) = (node(&server, "node-a").await, node(&server, "node-b").await);
    let content = component();
    let digest = Digest::of_bytes(&content);
    assert!(!b.blobs.has(&digest).await.unwrap());
    let (size, path) = a
        .blobs
        .put(&digest, upload(&content), 1 << 20)
        .await
        .unwrap();
    assert_eq!(size, content.len() as u64);
    assert_eq!(std::fs::read(path).unwrap(), content);

    assert!(b.blobs.has(&digest).await.unwrap());
    let local = b.blobs.local_path(&digest).await.unwrap();
    assert_eq!(std::fs::read(&local).unwrap(), content);
    assert_eq!(b.blobs.read(&digest).await.unwrap(), content);
    // A second put of the same blob (the bucket has it) is fine.
    b.blobs
        .put(&digest, upload(&content), 1 << 20)
        .await
        .unwrap();

    let empty = Digest::of_bytes(b"");
    a.blobs.put(&empty, upload(b""), 10).await.unwrap();
    assert_eq!(b.blobs.read(&empty).await.unwrap(), b"");

    let err = a
        .blobs
        .put(&Digest::of_bytes(b"other"), upload(b"not other"), 100)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    let err = a
        .blobs
        .put(&digest, upload(&content), 1000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    let missing = Digest::of_bytes(b"missing");
    let err = b.blobs.local_path(&missing).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_object_in_the_bucket_is_never_used() {
    let server = NatsServer::start().unwrap();
    let b = node(&server, "node-b").await;
    let digest = Digest::of_bytes(b"the real content");
    // Someone stores other bytes under the digest's name, straight into the bucket.
    let client = async_nats::connect(server.url()).await.unwrap();
    let bucket = async_nats::jetstream::new(client)
        .get_object_store("wdeploy-blobs")
        .await
        .unwrap();
    bucket
        .put(digest.as_str(), &mut &b"forged content"[..])
        .await
        .unwrap();

    let err = b.blobs.local_path(&digest).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    // It is gone from the bucket, so the next push uploads the real one.
    assert!(matches!(
        b.blobs.read(&digest).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(!b.blobs.has(&digest).await.unwrap());
    b.blobs
        .put(&digest, upload(b"the real content"), 100)
        .await
        .unwrap();
    assert_eq!(b.blobs.read(&digest).await.unwrap(), b"the real content");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_blobs_are_served_while_nats_is_down() {
    let mut server = NatsServer::start().unwrap();
    let (a, b) = (node(&server, "node-a").await, node(&server, "node-b").await);
    let content = component();
    let digest = Digest::of_bytes(&content);
    a.blobs
        .put(&digest, upload(&content), 1 << 20)
        .await
        .unwrap();
    let manifest = Digest::of_bytes(b"manifest");
    a.blobs
        .put(&manifest, upload(b"manifest"), 100)
        .await
        .unwrap();
    b.blobs.local_path(&manifest).await.unwrap();

    server.stop();
    while a.nats.is_connected() || b.nats.is_connected() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.blobs.read(&digest).await.unwrap(), content);
    assert!(a.blobs.local_path(&digest).await.is_ok());
    assert_eq!(b.blobs.read(&manifest).await.unwrap(), b"manifest");

    // What b never cached it cannot get now: it says so at once.
    let started = Instant::now();
    let err = b.blobs.local_path(&digest).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let err = b.blobs.has(&digest).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let err = b
        .blobs
        .put(&digest, upload(&content), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_listed_across_nodes_and_removed_from_the_bucket_and_the_cache() {
    let server = NatsServer::start().unwrap();
    let (a, b) = (node(&server, "node-a").await, node(&server, "node-b").await);
    let before = std::time::SystemTime::now() - Duration::from_secs(5);
    let (one, two) = (component(), b"a small blob".to_vec());
    let (d1, d2) = (Digest::of_bytes(&one), Digest::of_bytes(&two));
    a.blobs.put(&d1, upload(&one), 1 << 20).await.unwrap();
    a.blobs.put(&d2, upload(&two), 1 << 20).await.unwrap();

    // b lists the bucket's blobs, with when they were stored.
    let mut listed = b.blobs.stored().await.unwrap();
    listed.sort();
    let mut wanted = vec![d1.clone(), d2.clone()];
    wanted.sort();
    assert_eq!(
        listed.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        wanted
    );
    assert!(listed.iter().all(|(_, at)| *at >= before), "{listed:?}");

    // Removed through b: gone from the bucket, so b no longer has it; a's cached copy
    // goes with a's own pass (which lists it) and the blob is nowhere.
    b.blobs.remove(&d1).await.unwrap();
    b.blobs.remove(&d1).await.unwrap();
    assert!(!b.blobs.has(&d1).await.unwrap());
    assert!(
        a.blobs
            .stored()
            .await
            .unwrap()
            .iter()
            .any(|(d, _)| *d == d1)
    );
    a.blobs.remove(&d1).await.unwrap();
    assert!(!a.blobs.has(&d1).await.unwrap());
    assert!(matches!(
        b.blobs.read(&d1).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(a.blobs.read(&d2).await.unwrap(), two);
}
