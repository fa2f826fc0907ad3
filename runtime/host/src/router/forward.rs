//! Requests for an app with no web dyno on this node go to a node that runs one.
//!
//! Which nodes run up web dynos of which app comes from the dyno records every node
//! publishes (refreshed by this node's reconciler into [`Peers`]). A node that refuses
//! the connection (down, or its heartbeat not yet expired) is skipped at once and
//! avoided for a few seconds: the request never reached it, so the next node gets it.
//!
//! The hop is TLS both ways ([`NodeTls`](crate::cluster::node_tls::NodeTls)): the
//! forwarding node and the one it forwards to each prove with the cluster's certificate
//! that they are nodes of it. So a request and
//! its answer cross the network between nodes encrypted, a node never hands a request to
//! anyone else, and a request that arrives over such a connection is known to be a
//! forwarded one, whatever address it comes from (`listener`'s
//! [`Transport::PlainAndNodes`](crate::listener::Transport)). Its scheme and port are
//! then the first router's, and it is never forwarded again, so two nodes with stale
//! views cannot bounce it between them. Nothing a client sends can make its request count
//! as forwarded: that would skip `force_https`, and pass its own `X-Forwarded-Proto` to
//! the app as the scheme of its connection.

use crate::cluster::node_tls::NodeTlsCell;
use http::HeaderValue;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How long connecting to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an unreachable peer is skipped without trying it.
const AVOID_FOR: Duration = Duration::from_secs(3);

/// Another node serving an app: its name and its router's advertised address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: String,
    pub addr: String,
}

/// How often the router asks the store for the peers of an app it knows none for.
const LOOKUP_EVERY: Duration = Duration::from_millis(500);

/// Finds the peers of an app on demand (from the nodes' dyno records): the host's.
pub type Finder =
    Arc<dyn Fn(String) -> futures::future::BoxFuture<'static, Vec<Peer>> + Send + Sync>;

/// Idle connections kept per peer: enough for a busy app's concurrent requests to reuse
/// theirs, few enough that a peer is not held open needlessly (it closes idle ones after
/// its own keep-alive timeout anyway).
const IDLE_PER_PEER: usize = 32;

type Sender = hyper::client::conn::http1::SendRequest<Incoming>;

/// An app's peers as one read of the store showed them.
struct Known {
    /// When the read that found them began: two writers (the reconciler's looks and
    /// the router's on-demand lookup) race, and an older read must not undo a newer one.
    read_at: Instant,
    peers: Arc<Vec<Peer>>,
}

impl Known {
    /// Whether any peer is known: an app that lost its peers keeps an empty entry (its
    /// stamp), which counts as none.
    fn any(&self) -> bool {
        !self.peers.is_empty()
    }
}

/// The nodes running up web dynos of each app, other than this one.
#[derive(Default)]
pub struct Peers {
    /// Apps that have, or had, peers. An app that never had any has no entry, so a
    /// single node's map stays empty however many apps it holds.
    by_app: RwLock<HashMap<String, Known>>,
    unreachable: Mutex<HashMap<String, Instant>>,
    next: AtomicUsize,
    /// Connections to peers ready for another request, by address.
    idle: Arc<Mutex<Idle>>,
    finder: std::sync::OnceLock<Finder>,
    /// When each app's peers were last looked up on demand.
    looked_up: Mutex<HashMap<String, Instant>>,
    /// The TLS of the hop to other nodes (set once, by the host, from the cluster's keys,
    /// and following them): without it nothing is forwarded.
    tls: std::sync::OnceLock<NodeTlsCell>,
}

/// TCP, then TLS as `tls` makes it, to the node called `node` at `addr`, within
/// [`CONNECT_TIMEOUT`]; why not, in words, otherwise.
async fn open(
    tls: &crate::cluster::node_tls::NodeTls,
    node: &str,
    addr: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        tls.connect(node, stream).await
    });
    match connected.await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) if names_another_node(&e) => Err(format!(
            "another node answers at {addr}: its certificate is not {node}'s"
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

/// Whether a handshake failed because the peer proved itself a node of the cluster,
/// but not the one asked for.
fn names_another_node(e: &std::io::Error) -> bool {
    use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
    matches!(
        e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(
            NotValidForName | NotValidForNameContext { .. }
        ))
    )
}

/// Connections to peers ready for another request.
#[derive(Default)]
struct Idle {
    /// The generation of the TLS between nodes ([`NodeTlsCell::generation`]) they were
    /// made under: once it changes, none of them is used again (they proved this node
    /// with what the cluster may be giving up).
    generation: u64,
    by_addr: HashMap<String, Vec<Sender>>,
}

impl Idle {
    /// The connections kept under the TLS of `generation`, once those of an earlier one
    /// are dropped; `None` for a generation older than theirs.
    fn of(&mut self, generation: u64) -> Option<&mut HashMap<String, Vec<Sender>>> {
        if generation < self.generation {
            return None;
        }
        if generation > self.generation {
            self.by_addr.clear();
            self.generation = generation;
        }
        Some(&mut self.by_addr)
    }
}

/// Why a request could not be forwarded.
pub enum ForwardError {
    /// No node could be connected to: the request reached none.
    NoPeer,
    /// The peer took the request but failed before a response.
    Failed(String),
}

/// A forwarded request's answer, and the name of the node that gave it.
type Answer = (hyper::Response<HyperOutgoingBody>, String);

/// Makes a request that came over HTTP/2 one an HTTP/1.1 connection can carry: the hop
/// between nodes is HTTP/1.1, and an HTTP/2 request names its host in the URI (its
/// `:authority`), not in a `Host` header, and has its URI in absolute form.
fn as_http1<B>(req: &mut hyper::Request<B>) {
    if req.version() != http::Version::HTTP_2 {
        return;
    }
    *req.version_mut() = http::Version::HTTP_11;
    if let Some(authority) = req.uri().authority()
        && !req.headers().contains_key(http::header::HOST)
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(http::header::HOST, value);
    }
    let origin_form = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<http::Uri>();
    if let Ok(uri) = origin_form {
        *req.uri_mut() = uri;
    }
}

impl Peers {
    /// Replaces the peers of `app` (empty: none) with those a read of the store that
    /// began at `read_at` found, unless a read begun later has already set them.
    pub fn set(&self, app: &str, peers: Vec<Peer>, read_at: Instant) {
        let mut by_app = self.by_app.write();
        match by_app.get_mut(app) {
            Some(known) if known.read_at > read_at => {}
            Some(known) => {
                known.read_at = read_at;
                if *known.peers != peers {
                    known.peers = Arc::new(peers);
                }
            }
            None if peers.is_empty() => {}
            None => {
                let peers = Arc::new(peers);
                by_app.insert(app.to_string(), Known { read_at, peers });
            }
        }
    }

    /// Forgets `app` (destroyed): a later app of the same name starts with no peers.
    pub fn forget(&self, app: &str) {
        self.by_app.write().remove(app);
        self.looked_up.lock().remove(app);
    }

    fn of(&self, app: &str) -> Option<Arc<Vec<Peer>>> {
        let by_app = self.by_app.read();
        let known = by_app.get(app)?;
        known.any().then(|| known.peers.clone())
    }

    /// The TLS this node forwards with and takes forwarded requests with (set once: a
    /// node keeps its cluster, whose keys the cell follows).
    pub fn set_tls(&self, tls: NodeTlsCell) {
        let _ = self.tls.set(tls);
    }

    pub fn tls(&self) -> Option<&NodeTlsCell> {
        self.tls.get()
    }

    /// The generation of the TLS between nodes now.
    fn generation(&self) -> u64 {
        self.tls.get().map_or(0, NodeTlsCell::generation)
    }

    pub fn has(&self, app: &str) -> bool {
        self.by_app.read().get(app).is_some_and(Known::any)
    }

    /// How to find an app's peers when none are known (set once, by the host).
    pub fn set_finder(&self, finder: Finder) {
        let _ = self.finder.set(finder);
    }

    /// Whether `app` has peers, looking them up now if none are known: a release another
    /// node just made may be served before this node's next look.
    pub async fn known_or_found(&self, app: &str) -> bool {
        self.has(app) || self.look_up(app).await
    }

    /// Reads the peers of `app` from the store now, at most once per app per
    /// [`LOOKUP_EVERY`], so requests for an app with no web dyno anywhere cannot turn into
    /// a flood of store calls; whether it has any then.
    async fn look_up(&self, app: &str) -> bool {
        let Some(finder) = self.finder.get().cloned() else {
            return false;
        };
        {
            let mut looked_up = self.looked_up.lock();
            let now = Instant::now();
            match looked_up.get(app) {
                Some(at) if now - *at < LOOKUP_EVERY => return false,
                _ => {
                    looked_up.insert(app.to_string(), now);
                }
            }
        }
        let read_at = Instant::now();
        let peers = finder(app.to_string()).await;
        self.set(app, peers, read_at);
        self.has(app)
    }

    /// Sends `req` to a peer of `app`, trying the next one when one cannot be reached;
    /// returns the peer's response and its name. When none of the peers known can be
    /// reached, they are looked up again once: a node that stopped has handed its dynos
    /// to others this node may not have learned of yet.
    pub async fn forward(
        &self,
        app: &str,
        req: hyper::Request<Incoming>,
    ) -> Result<Answer, ForwardError> {
        let req = match self.forward_to_known(app, req).await {
            Ok(forwarded) => return forwarded,
            Err(unsent) => unsent,
        };
        if !self.look_up(app).await {
            return Err(ForwardError::NoPeer);
        }
        (self.forward_to_known(app, req).await).unwrap_or(Err(ForwardError::NoPeer))
    }

    /// Sends `req` to one of the peers of `app` known now: how that went, or the
    /// request, unsent, when no peer could be reached.
    async fn forward_to_known(
        &self,
        app: &str,
        mut req: hyper::Request<Incoming>,
    ) -> Result<Result<Answer, ForwardError>, hyper::Request<Incoming>> {
        let Some(peers) = self.of(app) else {
            return Err(req);
        };
        as_http1(&mut req);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..peers.len() {
            let peer = &peers[(start + i) % peers.len()];
            if self.avoided(&peer.addr) {
                continue;
            }
            // A kept connection the peer closed meanwhile gives the request back unsent;
            // it then goes on a fresh one.
            let generation = self.generation();
            if let Some(mut sender) = self.reuse(&peer.addr, generation) {
                match sender.try_send_request(req).await {
                    Ok(response) => return Ok(Ok(self.answer(peer, sender, generation, response))),
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => req = unsent,
                        None => {
                            let why = e.into_error();
                            let failed = format!("{}: {why}", peer.node);
                            return Ok(Err(ForwardError::Failed(failed)));
                        }
                    },
                }
            }
            let Some(mut sender) = self.connect(peer).await else {
                continue;
            };
            return Ok(match sender.send_request(req).await {
                Ok(response) => Ok(self.answer(peer, sender, generation, response)),
                Err(e) => Err(ForwardError::Failed(format!("{}: {e}", peer.node))),
            });
        }
        Err(req)
    }

    /// The peer's response as the router sends it; its connection goes back to the idle
    /// ones once the response is done with (if there is room, and the TLS between nodes
    /// is still that of `generation`, the one it was made or kept under).
    fn answer(
        &self,
        peer: &Peer,
        mut sender: Sender,
        generation: u64,
        response: hyper::Response<Incoming>,
    ) -> Answer {
        let (idle, addr) = (self.idle.clone(), peer.addr.clone());
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                let mut idle = idle.lock();
                let Some(by_addr) = idle.of(generation) else {
                    return;
                };
                let kept = by_addr.entry(addr).or_default();
                if kept.len() < IDLE_PER_PEER {
                    kept.push(sender);
                }
            }
        });
        let (parts, body) = response.into_parts();
        let body = body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync();
        (hyper::Response::from_parts(parts, body), peer.node.clone())
    }

    /// A kept connection to `addr` ready for a request, if there is one made under the
    /// TLS of `generation` (those of an earlier one are closed).
    fn reuse(&self, addr: &str, generation: u64) -> Option<Sender> {
        let mut idle = self.idle.lock();
        let kept = idle.of(generation)?.get_mut(addr)?;
        while let Some(sender) = kept.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn avoided(&self, addr: &str) -> bool {
        let mut unreachable = self.unreachable.lock();
        match unreachable.get(addr) {
            Some(since) if since.elapsed() < AVOID_FOR => true,
            Some(_) => {
                unreachable.remove(addr);
                false
            }
            None => false,
        }
    }

    /// A fresh HTTP/1 connection over TLS to `peer`, or `None` (and the peer avoided) if
    /// it does not answer, or does not prove it is a node of this cluster.
    async fn connect(
        &self,
        peer: &Peer,
    ) -> Option<hyper::client::conn::http1::SendRequest<Incoming>> {
        let Some(tls) = self.tls.get().map(NodeTlsCell::current) else {
            tracing::warn!(node = %peer.node, "not forwarding: this node has no cluster TLS yet");
            return None;
        };
        let stream = match open(&tls, &peer.node, &peer.addr).await {
            Ok(stream) => stream,
            Err(why) => return self.unreachable(peer, &why),
        };
        let io = hyper_util::rt::TokioIo::new(stream);
        match hyper::client::conn::http1::handshake(io).await {
            Ok((sender, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Some(sender)
            }
            Err(e) => self.unreachable(peer, &e.to_string()),
        }
    }

    /// Sends a node call ([`super::node_calls`]) to the node called `node` at `addr`,
    /// on a connection of its own: a call's body may stream for as long as its client
    /// types, so it never holds one of the connections kept for forwarded requests.
    pub async fn call<B>(
        &self,
        node: &str,
        addr: &str,
        req: hyper::Request<B>,
    ) -> Result<hyper::Response<Incoming>, String>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.tls.get().map(NodeTlsCell::current);
        let stream = open(&tls.ok_or("this node has no cluster TLS")?, node, addr).await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender.send_request(req).await.map_err(|e| e.to_string())
    }

    /// Opens the hop to the node called `node` at `addr` as a forward would, and says
    /// which key it proves itself with ([`crate::cluster::node_tls::key_id`]), or why it
    /// could not (another node answering there included).
    pub async fn probe(&self, node: &str, addr: &str) -> Result<String, String> {
        let tls = self.tls.get().map(NodeTlsCell::current);
        let stream = open(&tls.ok_or("this node has no cluster TLS")?, node, addr).await?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first);
        leaf.and_then(crate::cluster::node_tls::key_id)
            .ok_or_else(|| "no certificate".into())
    }

    fn unreachable<T>(&self, peer: &Peer, why: &str) -> Option<T> {
        tracing::warn!(node = %peer.node, addr = %peer.addr, "peer unreachable: {why}");
        self.unreachable
            .lock()
            .insert(peer.addr.clone(), Instant::now());
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(node: &str) -> Peer {
        Peer {
            node: node.to_string(),
            addr: format!("{node}.internal:8080"),
        }
    }

    /// The reconciler's look and the router's lookup both set an app's peers; a look
    /// whose read began before the lookup's must not wipe what the lookup found (a node
    /// answered H14 just after forwarding to a peer it had found).
    #[test]
    fn an_older_read_never_replaces_a_newer_one() {
        let peers = Peers::default();
        let before = Instant::now();
        let after = before + Duration::from_millis(1);
        let later = after + Duration::from_millis(1);
        peers.set("app", vec![peer("a")], after);
        peers.set("app", Vec::new(), before);
        assert!(peers.has("app"), "a stale empty view was ignored");
        peers.set("app", vec![peer("a"), peer("b")], after);
        assert_eq!(
            peers.of("app").map(|p| p.len()),
            Some(2),
            "same read time: the last wins"
        );
        peers.set("app", Vec::new(), later);
        assert!(!peers.has("app"), "a newer empty view clears them");
        peers.set("app", vec![peer("a")], after);
        assert!(
            !peers.has("app"),
            "and an older one does not bring them back"
        );
        peers.forget("app");
        peers.set("app", vec![peer("c")], before);
        assert!(peers.has("app"), "a destroyed app's name starts afresh");
    }

    #[test]
    fn connections_kept_under_an_earlier_tls_are_never_used_again() {
        let mut idle = Idle::default();
        idle.of(0)
            .expect("the first")
            .insert("a:1".into(), Vec::new());
        assert!(idle.of(0).expect("the same").contains_key("a:1"));
        assert!(idle.of(1).expect("a newer one").is_empty(), "dropped");
        assert!(idle.of(0).is_none(), "one made before goes back to no one");
    }

    #[tokio::test]
    async fn a_probe_says_why_a_node_cannot_be_reached() {
        let peers = Peers::default();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr").to_string();
        drop(closed);
        let none = peers.probe("b", &addr).await.unwrap_err();
        assert!(none.contains("no cluster TLS"), "{none}");
        let keys = wdeploy_store::ClusterKeys {
            current: wdeploy_store::ClusterKey::from_bytes(&[1; 32]).expect("key"),
            previous: None,
        };
        peers.set_tls(NodeTlsCell::of("a", &keys, chrono::Utc::now()).expect("tls"));
        let refused = peers.probe("b", &addr).await.unwrap_err();
        assert!(refused.contains("refused"), "{refused}");

        // Node b of the cluster answers: it is b, and not c.
        let b = crate::cluster::node_tls::NodeTls::new(&keys.current, "b").expect("node b");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let acceptor = b.acceptor();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut [0u8; 1]).await;
                    }
                });
            }
        });
        assert_eq!(peers.probe("b", &addr).await.as_deref(), Ok(b.key_id()));
        let another = peers.probe("c", &addr).await.unwrap_err();
        assert_eq!(
            another,
            format!("another node answers at {addr}: its certificate is not c's")
        );
    }

    #[test]
    fn http2_requests_are_forwarded_as_http1() {
        let mut req = hyper::Request::builder()
            .version(http::Version::HTTP_2)
            .uri("https://www.example.test:8443/a?b=c")
            .body(())
            .expect("request");
        as_http1(&mut req);
        assert_eq!(req.version(), http::Version::HTTP_11);
        assert_eq!(req.uri(), "/a?b=c");
        assert_eq!(req.headers()[http::header::HOST], "www.example.test:8443");

        // An HTTP/1.1 request goes as it came.
        let mut req = hyper::Request::builder()
            .uri("http://app.localhost/x")
            .body(())
            .expect("request");
        as_http1(&mut req);
        assert_eq!(req.uri(), "http://app.localhost/x");
    }
}
