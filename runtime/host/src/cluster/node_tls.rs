//! The hop between nodes: TLS both ways, each side proving it belongs to the cluster.
//!
//! A request one node forwards to another carries whatever its client sent, over HTTPS
//! or not, and nodes at the edge reach each other over networks nobody vouches for. So
//! the hop is encrypted, and a node accepts a forwarded request only from a peer that
//! shows a certificate of the cluster (mutual TLS); the forwarding node checks the same of
//! the node it forwards to, and that it is the node it meant.
//!
//! The identity comes from the cluster's key ([`wdeploy_store::Nodes::cluster_keys`]),
//! which every node reads from the store: each node derives the same Ed25519 CA key from
//! it (HKDF-SHA256, one label each), makes the same small CA, and trusts only that CA.
//! Each node's own certificate, signed by the CA, is for its name
//! (`NAME.node.wdeploy.invalid`, [`node_server_name`]), with a key derived under a label
//! naming it. So nothing more is kept or shared, nodes never disagree, a new key (a new
//! cluster) is a new identity, and a node is told from another by its certificate: a
//! forward to an address where another node now answers (a node restarted there under
//! a new name) fails its handshake instead of reaching a node that does not expect it.
//! (Every node can derive the CA key, so a name tells nodes apart; it does not make one
//! node's key a secret from another.)
//!
//! A connection made so is also how a node knows a request was forwarded by another
//! node: the router's plain listener takes TLS from nodes only (`listener`), and treats
//! every request over it as forwarded, whatever address it comes from. No header a
//! client can send, and no clock, enters into it.

use anyhow::Context;
use ring::hkdf;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::sync::Arc;
use wdeploy_store::{ClusterKey, ClusterKeys};

/// The domain of the names nodes' certificates are for: a node is known by its
/// certificate, not by a DNS name (`.invalid` is reserved never to be one, RFC 2606).
const NODE_DOMAIN: &str = "node.wdeploy.invalid";

/// The name the certificate of the node called `node` is for, and that a node forwarding
/// to it asks for.
pub fn node_server_name(node: &str) -> String {
    format!("{node}.{NODE_DOMAIN}")
}

/// How a CA's name begins: the rest is its key's [`key_id`].
const CA_NAME: &str = "wdeploy cluster ";

/// The TLS ends of the hop between this node and the others of its cluster.
#[derive(Clone)]
pub struct NodeTls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    /// Judges a peer's certificate chain as the acceptor does, for connections made
    /// before the trust changed ([`NodeTlsCell::distrusted`]).
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// Which key this node proves itself with ([`key_id`] of its certificate).
    key_id: String,
    /// This node's name, which its certificate is for.
    node: Arc<str>,
}

/// A short name of the cluster key a node's certificate is made from, read from the
/// name of the CA that signed it: the first 8 bytes of the SHA-256 of the CA's public
/// key, in hex. Every node on one key shows the same, and it tells nothing of the key
/// (`None`: not a node's certificate).
pub fn key_id(certificate: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(certificate).ok()?;
    let issuer = parsed.issuer().iter_common_name().next()?.as_str().ok()?;
    let id = issuer.strip_prefix(CA_NAME)?;
    id.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| id.to_string())
}

/// The [`key_id`] of a CA's public key.
fn ca_key_id(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    hex::encode(&digest.as_ref()[..8])
}

/// The CA one cluster key makes: every node makes the same.
struct Ca {
    params: rcgen::CertificateParams,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn of(key: &ClusterKey) -> anyhow::Result<Ca> {
        let ca_key = derived_key(key, b"wdeploy node tls: ca")?;
        // Each key's CA has a name of its own, so that while two are trusted (after a
        // rotation) a chain is built to the right one; the name also says which key a
        // node's certificate comes from ([`key_id`]).
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("{CA_NAME}{}", ca_key_id(ca_key.public_key_raw())),
        );
        // One CA below another: the previous key's CA vouches for this one while both
        // are trusted.
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = rcgen::CertifiedIssuer::self_signed(params.clone(), ca_key)
            .context("making the cluster's CA certificate")?;
        Ok(Ca { params, issuer })
    }

    /// The key and certificate of the node called `node` under `key`, this CA's.
    fn node_certificate(
        &self,
        key: &ClusterKey,
        node: &str,
    ) -> anyhow::Result<(rcgen::KeyPair, rcgen::Certificate)> {
        let node_key = derived_key(key, format!("wdeploy node tls: node {node}").as_bytes())?;
        // What a forwarding node will ask for must be a DNS name.
        let name = ServerName::try_from(node_server_name(node))
            .ok()
            .and_then(|name| rcgen::CertificateParams::new(vec![name.to_str().into_owned()]).ok());
        let mut params =
            name.with_context(|| format!("`{node}` cannot name a node's certificate"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let certificate = params
            .signed_by(&node_key, &self.issuer)
            .context("making the node's certificate")?;
        Ok((node_key, certificate))
    }
}

impl NodeTls {
    /// The identity of `node` in the cluster whose key is `key`, trusting no other.
    pub fn new(key: &ClusterKey, node: &str) -> anyhow::Result<NodeTls> {
        NodeTls::rotated(key, None, node)
    }

    /// The identity of `node` under `key`, also trusting `previous`, the key a rotation
    /// replaced, and trusted by a node that knows only that one: this node's chain then
    /// carries the new CA signed by the previous one. So whichever key a node has read,
    /// the hop works both ways until the previous key's grace ends.
    pub fn rotated(
        key: &ClusterKey,
        previous: Option<&ClusterKey>,
        node: &str,
    ) -> anyhow::Result<NodeTls> {
        let ca = Ca::of(key)?;
        let (node_key, certificate) = ca.node_certificate(key, node)?;

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.issuer.der().clone())
            .context("trusting the cluster's CA")?;
        let mut chain: Vec<CertificateDer<'static>> = vec![certificate.der().clone()];
        if let Some(previous) = previous.map(Ca::of).transpose()? {
            roots
                .add(previous.issuer.der().clone())
                .context("trusting the cluster's previous CA")?;
            let vouched = ca
                .params
                .signed_by(ca.issuer.key(), &previous.issuer)
                .context("vouching for the new CA with the previous one")?;
            chain.push(vouched.der().clone());
        }
        let roots = Arc::new(roots);
        let key_id = ca_key_id(ca.issuer.key().public_key_raw());
        let node_key = node_key.serialize_der();
        let private = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(node_key.clone()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls13 = [&rustls::version::TLS13];

        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .context("the nodes' client verifier")?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&tls13)?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(chain.clone(), private())
            .context("the nodes' server configuration")?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];

        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&tls13)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, private())
            .context("the nodes' client configuration")?;
        client.alpn_protocols = vec![b"http/1.1".to_vec()];

        Ok(NodeTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            verifier,
            key_id,
            node: node.into(),
        })
    }

    /// Accepts the TLS of a connection from another node; a peer without the cluster's
    /// certificate fails the handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// Opens TLS to the node called `node` over `stream`, proving this node and checking
    /// that the other is `node` of this cluster.
    pub async fn connect<S>(
        &self,
        node: &str,
        stream: S,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(node_server_name(node))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.connector.connect(name, stream).await
    }

    /// Which key this node proves itself with ([`key_id`]).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The name of the node this TLS proves.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether a peer that proved itself with `chain` (its certificate first) would be
    /// accepted now.
    pub fn trusts(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
            .is_ok()
    }
}

/// The cluster's TLS as it is now, shared by the router's listener and its forwarding:
/// replaced when the cluster's key is rotated, and when the previous key's grace ends.
#[derive(Clone)]
pub struct NodeTlsCell {
    current: Arc<parking_lot::RwLock<Current>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

struct Current {
    tls: NodeTls,
    /// What it was made from: this node's key, and the previous one while trusted.
    made_of: (ClusterKey, Option<ClusterKey>),
    /// The cluster's keys as last read, so that the previous key's grace ends on time
    /// even while the store cannot be read.
    read: ClusterKeys,
}

impl Current {
    /// The TLS of `node` under the cluster's `keys` as they stand at `now`.
    fn of(
        node: Arc<str>,
        keys: &ClusterKeys,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Current> {
        let made_of = Current::made_of(keys, now);
        Ok(Current {
            tls: NodeTls::rotated(&made_of.0, made_of.1.as_ref(), &node)?,
            made_of,
            read: keys.clone(),
        })
    }

    fn made_of(
        keys: &ClusterKeys,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (ClusterKey, Option<ClusterKey>) {
        (keys.current.clone(), keys.previous_at(now).cloned())
    }
}

impl NodeTlsCell {
    /// The TLS of the node called `node` under the cluster's `keys` as they stand at
    /// `now`.
    pub fn of(
        node: &str,
        keys: &ClusterKeys,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<NodeTlsCell> {
        let current = Current::of(node.into(), keys, now)?;
        Ok(NodeTlsCell {
            current: Arc::new(parking_lot::RwLock::new(current)),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// The TLS to accept or make a connection with now.
    pub fn current(&self) -> NodeTls {
        self.current.read().tls.clone()
    }

    /// How many times the TLS changed: a connection made under an earlier one proved
    /// itself with what the cluster may be giving up.
    pub fn generation(&self) -> u64 {
        *self.changed.borrow()
    }

    /// Makes the TLS of the cluster's `keys` as they stand at `now` (the previous key
    /// trusted only in its grace) if it differs from the one in use; whether it did.
    /// Open connections whose peer it does not trust are closed then
    /// ([`NodeTlsCell::distrusted`]).
    pub fn follow(
        &self,
        keys: &ClusterKeys,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<bool> {
        let node = {
            let current = self.current.read();
            if current.made_of == Current::made_of(keys, now) {
                return Ok(false);
            }
            current.tls.node.clone()
        };
        *self.current.write() = Current::of(node, keys, now)?;
        self.changed.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// [`NodeTlsCell::follow`] with the keys as last read: for when the store cannot be
    /// read, so that a grace ends at its time whatever the store's state.
    pub fn follow_last(&self, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<bool> {
        let read = self.current.read().read.clone();
        self.follow(&read, now)
    }

    /// Resolves once the TLS no longer trusts the peer that proved itself with `chain`:
    /// a connection made with a key the cluster has since given up is closed then.
    pub async fn distrusted(&self, chain: Vec<CertificateDer<'static>>) {
        let mut changes = self.changed.subscribe();
        loop {
            // Checked first too: the trust may have changed while the handshake ran.
            if !self.current().trusts(&chain) {
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// An Ed25519 key made from the cluster's key under `label`: the same on every node.
fn derived_key(key: &ClusterKey, label: &[u8]) -> anyhow::Result<rcgen::KeyPair> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"wdeploy cluster key");
    let info = [label];
    let mut seed = [0u8; 32];
    salt.extract(key.as_bytes())
        .expand(&info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut seed))
        .map_err(|_| anyhow::anyhow!("deriving the nodes' TLS key"))?;
    // PKCS #8 v1 of an Ed25519 private key (RFC 8410): a fixed prefix, then the seed.
    let mut pkcs8 = hex::decode("302e020100300506032b657004220420")?;
    pkcs8.extend_from_slice(&seed);
    rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8),
        &rcgen::PKCS_ED25519,
    )
    .context("the nodes' TLS key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn key(byte: u8) -> ClusterKey {
        ClusterKey::from_bytes(&[byte; ClusterKey::LEN]).expect("32 bytes")
    }

    /// Runs a handshake between `client` and `server` over an in-memory pipe, then one
    /// byte each way; the chain `client` proved itself with, as `server` saw it, if both
    /// ends got through.
    async fn presented(client: &NodeTls, server: &NodeTls) -> Option<Vec<CertificateDer<'static>>> {
        presented_to(client, server, server.node()).await
    }

    /// [`presented`], `client` asking for the node called `meant`.
    async fn presented_to(
        client: &NodeTls,
        server: &NodeTls,
        meant: &str,
    ) -> Option<Vec<CertificateDer<'static>>> {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let acceptor = server.acceptor();
        let serving = tokio::spawn(async move {
            let mut tls = acceptor.accept(far).await.ok()?;
            let mut byte = [0u8];
            tls.read_exact(&mut byte).await.ok()?;
            tls.write_all(&byte).await.ok()?;
            tls.flush().await.ok()?;
            tls.get_ref().1.peer_certificates().map(<[_]>::to_vec)
        });
        let asked = async {
            let mut tls = client.connect(meant, near).await.ok()?;
            tls.write_all(b"x").await.ok()?;
            tls.flush().await.ok()?;
            let mut byte = [0u8];
            tls.read_exact(&mut byte).await.ok()?;
            (byte == *b"x").then_some(())
        };
        let asked = asked.await.is_some();
        let chain = serving.await.ok().flatten();
        chain.filter(|_| asked)
    }

    /// Whether `client` and `server` get through a handshake and a byte each way.
    async fn talk(client: &NodeTls, server: &NodeTls) -> bool {
        presented(client, server).await.is_some()
    }

    #[tokio::test]
    async fn nodes_of_one_cluster_know_each_other_and_no_one_else() {
        let a = NodeTls::new(&key(1), "a").expect("node a");
        let b = NodeTls::new(&key(1), "b").expect("node b, made apart from a");
        let stranger = NodeTls::new(&key(2), "a").expect("another cluster's node");
        assert_eq!(a.key_id(), b.key_id(), "one key, one id");
        assert_ne!(a.key_id(), stranger.key_id());
        assert_eq!(key_id(&CertificateDer::from(vec![1, 2, 3])), None);
        let chain = presented(&a, &b).await.expect("a proved itself to b");
        assert_eq!(key_id(&chain[0]).as_deref(), Some(a.key_id()));
        assert!(talk(&a, &b).await, "two nodes of one cluster");
        assert!(talk(&b, &a).await, "the other way");
        assert!(
            !talk(&stranger, &a).await,
            "another cluster's node forwarding"
        );
        assert!(
            !talk(&a, &stranger).await,
            "forwarding to another cluster's node"
        );
    }

    #[tokio::test]
    async fn a_node_is_told_from_another_by_its_certificate() {
        let a = NodeTls::new(&key(1), "a").expect("node a");
        let b = NodeTls::new(&key(1), "b").expect("node b");
        let a_again = NodeTls::new(&key(1), "a").expect("node a, made again");
        assert!(
            talk(&a, &a_again).await,
            "a node made again is the same node"
        );
        // Node b answers where a forward meant node c: the forward goes nowhere.
        assert!(presented_to(&a, &b, "c").await.is_none());
        assert!(presented_to(&a, &b, "b").await.is_some());
        assert!(NodeTls::new(&key(1), "not a name").is_err());
    }

    #[tokio::test]
    async fn after_a_rotation_nodes_on_either_key_know_each_other_until_the_grace_ends() {
        let old = NodeTls::new(&key(1), "old").expect("a node that has not read the new key");
        let rotated = NodeTls::rotated(&key(2), Some(&key(1)), "rotated").expect("a node that has");
        let after = NodeTls::new(&key(2), "after").expect("a node after the grace");
        for (client, server, what) in [
            (&rotated, &old, "rotated to old"),
            (&old, &rotated, "old to rotated"),
            (&rotated, &after, "rotated to after"),
            (&after, &rotated, "after to rotated"),
        ] {
            assert!(talk(client, server).await, "{what}");
        }
        // Once the grace is over, the previous key proves nothing either way.
        assert!(!talk(&old, &after).await, "old to after");
        assert!(!talk(&after, &old).await, "after to old");
        let stranger = NodeTls::rotated(&key(3), Some(&key(4)), "after").expect("another cluster");
        assert!(!talk(&stranger, &rotated).await);
        assert!(!talk(&rotated, &stranger).await);

        // A connection an old node made during the grace is judged again when it ends.
        let old_chain = presented(&old, &rotated)
            .await
            .expect("accepted in the grace");
        assert!(rotated.trusts(&old_chain));
        assert!(!after.trusts(&old_chain));
        let new_chain = presented(&rotated, &rotated).await.expect("accepted");
        assert!(after.trusts(&new_chain));
        assert!(!after.trusts(&[]));
    }

    /// The keys a rotation at `now` from `key(1)` to `key(2)` leaves, with `grace`.
    fn rotated_keys(now: chrono::DateTime<chrono::Utc>, grace: i64) -> ClusterKeys {
        ClusterKeys {
            current: key(2),
            previous: Some((key(1), now + chrono::Duration::seconds(grace))),
        }
    }

    #[tokio::test]
    async fn a_connection_is_distrusted_when_the_grace_of_its_key_ends() {
        let now = chrono::Utc::now();
        let cell = NodeTlsCell::of("me", &rotated_keys(now, 10), now).expect("in the grace");
        let old = NodeTls::new(&key(1), "old").expect("an old node");
        let old_chain = presented(&old, &cell.current())
            .await
            .expect("accepted in the grace");
        let watching = tokio::spawn({
            let cell = cell.clone();
            let chain = old_chain.clone();
            async move { cell.distrusted(chain).await }
        });
        // The same keys read again: nothing changes.
        let generation = cell.generation();
        assert!(!cell.follow(&rotated_keys(now, 10), now).expect("tls"));
        assert_eq!(cell.generation(), generation);
        // The grace ends: the connection goes.
        assert!(
            cell.follow(&rotated_keys(now, 10), now + chrono::Duration::seconds(11))
                .expect("tls")
        );
        assert_ne!(cell.generation(), generation);
        assert_eq!(
            cell.current().node(),
            "me",
            "a node keeps its name across keys"
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), watching)
            .await
            .expect("distrusted at once")
            .expect("task");
        // A handshake that ended after the change is judged by it at once.
        let late = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            cell.distrusted(old_chain),
        );
        late.await.expect("a chain already distrusted");
    }

    #[tokio::test]
    async fn a_grace_ends_on_time_with_the_keys_last_read() {
        let now = chrono::Utc::now();
        let cell = NodeTlsCell::of("me", &rotated_keys(now, 10), now).expect("in the grace");
        let old = NodeTls::new(&key(1), "old").expect("a node on the old key");
        let chain = presented(&old, &cell.current())
            .await
            .expect("trusted in the grace");
        // The store cannot be read: the keys read last still say when the grace ends.
        assert!(
            !cell
                .follow_last(now + chrono::Duration::seconds(5))
                .expect("tls")
        );
        assert!(cell.current().trusts(&chain));
        assert!(
            cell.follow_last(now + chrono::Duration::seconds(11))
                .expect("tls")
        );
        assert!(!cell.current().trusts(&chain));
    }

    #[tokio::test]
    async fn a_client_without_the_clusters_certificate_is_refused() {
        let node = NodeTls::new(&key(1), "a").expect("node");
        // A client that trusts anything still has no certificate of the cluster to show.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let anyone = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustsAnything))
            .with_no_client_auth();
        let (near, far) = tokio::io::duplex(64 * 1024);
        let acceptor = node.acceptor();
        let serving = tokio::spawn(async move { acceptor.accept(far).await.is_ok() });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(anyone));
        let name = ServerName::try_from(node_server_name("a")).expect("name");
        // TLS 1.3 finishes the client's side before the server has judged it: the
        // refusal shows as the server's failed accept and a closed connection.
        if let Ok(mut tls) = connector.connect(name, near).await {
            let _ = tls.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
            let mut rest = Vec::new();
            let _ = tls.read_to_end(&mut rest).await;
            assert!(rest.is_empty(), "a refused client read {rest:?}");
        }
        assert!(!serving.await.expect("task"), "the handshake must fail");
    }

    /// A verifier that takes any server certificate (a client that does not care who it
    /// talks to, which still cannot prove it is a node).
    #[derive(Debug)]
    struct TrustsAnything;

    impl rustls::client::danger::ServerCertVerifier for TrustsAnything {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}
