//! The hop between nodes: TLS both ways, each side proving it belongs to the cluster.
//!
//! A request one node forwards to another carries whatever its client sent, over HTTPS
//! or not, and nodes at the edge reach each other over networks nobody vouches for. So
//! the hop is encrypted, and a node accepts a forwarded request only from a peer that
//! shows the cluster's certificate (mutual TLS); the forwarding node checks the same of
//! the node it forwards to.
//!
//! The identity comes from the cluster's key ([`wdeploy_store::Nodes::cluster_key`]),
//! which every node reads from the store: each node derives the same two Ed25519 keys
//! from it (HKDF-SHA256, one label each), makes the same small CA with the first and
//! a certificate for [`NODE_SERVER_NAME`] with the second, and trusts only that CA. So
//! nothing more is kept or shared, nodes never disagree, and a new key (a new cluster)
//! is a new identity. Each key is derived under a label of its own, so a later use of
//! the cluster's key can have its own too.
//!
//! A connection made so is also how a node knows a request was forwarded by another
//! node: the router's plain listener takes TLS from nodes only (`listener`), and treats
//! every request over it as forwarded, whatever address it comes from. No header a
//! client can send, and no clock, enters into it.

use anyhow::Context;
use ring::hkdf;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::sync::Arc;
use wdeploy_store::ClusterKey;

/// The name every node's certificate is for, and that a forwarding node asks for: a node
/// is known by its certificate, not by a DNS name (`.invalid` is reserved never to be
/// one, RFC 2606).
pub const NODE_SERVER_NAME: &str = "node.wdeploy.invalid";

/// The TLS ends of the hop between this node and the others of its cluster.
#[derive(Clone)]
pub struct NodeTls {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
}

impl NodeTls {
    /// The identity of the cluster whose key is `key`.
    pub fn new(key: &ClusterKey) -> anyhow::Result<NodeTls> {
        let ca_key = derived_key(key, b"wdeploy node tls: ca")?;
        let node_key = derived_key(key, b"wdeploy node tls: node")?;

        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name = rcgen::DistinguishedName::new();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "wdeploy cluster");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key)
            .context("making the cluster's CA certificate")?;

        let mut node = rcgen::CertificateParams::new(vec![NODE_SERVER_NAME.to_string()])?;
        node.distinguished_name = rcgen::DistinguishedName::new();
        node.distinguished_name
            .push(rcgen::DnType::CommonName, NODE_SERVER_NAME);
        node.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let node_cert = node
            .signed_by(&node_key, &ca)
            .context("making the nodes' certificate")?;

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.der().clone())
            .context("trusting the cluster's CA")?;
        let roots = Arc::new(roots);
        let chain: Vec<CertificateDer<'static>> = vec![node_cert.der().clone()];
        let private = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(node_key.serialize_der()));
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
            .with_client_cert_verifier(verifier)
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
        })
    }

    /// Accepts the TLS of a connection from another node; a peer without the cluster's
    /// certificate fails the handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// Opens TLS to another node over `stream`, proving this node and checking that one.
    pub async fn connect<S>(&self, stream: S) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(NODE_SERVER_NAME)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.connector.connect(name, stream).await
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
    /// byte each way; whether both ends got through.
    async fn talk(client: &NodeTls, server: &NodeTls) -> bool {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let acceptor = server.acceptor();
        let serving = tokio::spawn(async move {
            let mut tls = acceptor.accept(far).await.ok()?;
            let mut byte = [0u8];
            tls.read_exact(&mut byte).await.ok()?;
            tls.write_all(&byte).await.ok()?;
            tls.flush().await.ok()
        });
        let asked = async {
            let mut tls = client.connect(near).await.ok()?;
            tls.write_all(b"x").await.ok()?;
            tls.flush().await.ok()?;
            let mut byte = [0u8];
            tls.read_exact(&mut byte).await.ok()?;
            (byte == *b"x").then_some(())
        };
        let asked = asked.await.is_some();
        let served = serving.await.ok().flatten().is_some();
        asked && served
    }

    #[tokio::test]
    async fn nodes_of_one_cluster_know_each_other_and_no_one_else() {
        let a = NodeTls::new(&key(1)).expect("node a");
        let b = NodeTls::new(&key(1)).expect("node b, made apart from a");
        let stranger = NodeTls::new(&key(2)).expect("another cluster's node");
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
    async fn a_client_without_the_clusters_certificate_is_refused() {
        let node = NodeTls::new(&key(1)).expect("node");
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
        let name = ServerName::try_from(NODE_SERVER_NAME).expect("name");
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
