//! The host's HTTP listeners (the router and the control API serve through this): what
//! a connection may hold and for how long, whoever the client is.
//!
//! - `limits`: [`ListenerLimits`], sized from the file-descriptor limit;
//! - `fds`: raising and reading that limit;
//! - `gate`: the caps on open connections, total and per client address;
//! - `clock`: the header-read and idle keep-alive deadlines of one connection;
//! - `memory`: freed memory back to the system once connections drain.
//!
//! Each listener speaks HTTP/1.1 and HTTP/2 ([`Transport`]): over TLS, as ALPN agrees;
//! in plain TCP, HTTP/2 when the client opens with its preface (prior knowledge, "h2c").
//! The router's plain listener also takes the other nodes of its cluster: a connection
//! that opens with a TLS handshake instead of a request is a node's, and must prove it
//! ([`crate::cluster::node_tls`]).
//!
//! A connection over a cap gets a fixed `503` and is closed before anything of it is
//! read, without touching the others; one admitted has [`MAX_HEADER_BYTES`] for its
//! request's headers (hyper answers 431 past them), `header_timeout` to send them and
//! `idle_timeout` of silence between requests.

mod clock;
mod fds;
mod gate;
mod limits;
mod memory;
mod probes;
mod tracked;

pub use fds::raise_fd_limit;
pub use limits::{HEADER_TIMEOUT, IDLE_TIMEOUT, ListenerLimits, MAX_HEADER_BYTES};

use crate::cluster::node_tls::NodeTlsCell;
use clock::{Clock, Watched};
use gate::{Gate, REFUSAL};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracked::Tracked;

type BoxError = Box<dyn StdError + Send + Sync>;

/// How a listener's connections speak: plain TCP (HTTP/1.1, or HTTP/2 with prior
/// knowledge, "h2c"), or TLS, where ALPN picks HTTP/2 or HTTP/1.1.
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(tokio_rustls::TlsAcceptor),
    /// Plain TCP for clients, and TLS for the cluster's other nodes, told apart by a
    /// connection's first byte (a TLS handshake record, which no HTTP request starts
    /// with): the cluster's TLS takes only a peer with its certificate, and a node's
    /// connection is closed once the cluster's TLS (its key rotated) no longer trusts it.
    PlainAndNodes(NodeTlsCell),
}

impl Transport {
    /// The scheme of URLs served over it: `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Plain | Transport::PlainAndNodes(_) => "http",
            Transport::Tls(_) => "https",
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

/// One admitted connection, as the service of its requests is made for it.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's address the client reached.
    pub local: SocketAddr,
    /// Whether the connection is TLS (the request's scheme is `https`).
    pub tls: bool,
    /// Whether the client is another node of the cluster, proved by its certificate
    /// (its requests are forwarded ones; `tls` is false, as the hop is not the client's).
    pub node: bool,
}

/// A TLS record of the handshake: what a connection opening TLS sends first.
const TLS_HANDSHAKE: u8 = 0x16;

/// HTTP/2 streams one connection may have open at once: what a browser opens, and a
/// bound on what one connection can make the host hold (each stream is a request).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// Serves `transport` on `listener` within `limits` until `shutdown` resolves, then lets
/// open connections finish their current requests (for at most `grace`). `service`
/// makes the service of one connection from what is known of it.
pub async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    transport: Transport,
    limits: ListenerLimits,
    service: impl Fn(Accepted) -> S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send + From<&'static [u8]>,
    B::Error: Into<BoxError>,
{
    let gate = Gate::new(name, limits.max_connections, limits.max_connections_per_ip);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builders = Builders::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors (EMFILE) or the like: let some close.
                    tracing::warn!(listener = name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match gate.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(why) => {
                refuse(&stream);
                gate.note_refusal(peer.ip(), why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        probes::keep_probing(&stream);
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let accepted = Accepted {
            peer,
            local,
            tls: transport.is_tls(),
            node: false,
        };
        let clock = Clock::new();
        let track = |s| Tracked::new(s, clock.clone(), gate.clone(), peer.ip());
        // Which of the two a connection is shows only once it sends: both are ready.
        let node_service = matches!(transport, Transport::PlainAndNodes(_)).then(|| {
            track(service(Accepted {
                node: true,
                ..accepted
            }))
        });
        let service = track(service(accepted));
        let watcher = graceful.watcher();
        let limits = limits.clone();
        let builders = builders.clone();
        let transport = transport.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // The handshake is part of the first request's head: it has the same
            // deadline, so a client stalling in it (or before its first byte, where a
            // node's connection is told from a client's) holds nothing longer.
            let head_by = tokio::time::Instant::now() + limits.header_timeout;
            let (tls, nodes) = match (transport, node_service) {
                (Transport::Tls(acceptor), _) => (Ok((acceptor, service)), None),
                (Transport::PlainAndNodes(nodes), Some(node_service)) => {
                    match tokio::time::timeout_at(head_by, opens_with_tls(&stream)).await {
                        Ok(Ok(true)) => {
                            let acceptor = nodes.current().acceptor();
                            (Ok((acceptor, node_service)), Some(nodes))
                        }
                        Ok(Ok(false)) => (Err(service), None),
                        Ok(Err(_)) | Err(_) => return,
                    }
                }
                _ => (Err(service), None),
            };
            let (acceptor, service) = match tls {
                Ok(tls) => tls,
                Err(plain) => {
                    let stream = TokioIo::new(Watched::new(stream, clock.clone()));
                    let conn = builders.any.serve_connection(stream, plain);
                    let conn = watcher.watch(conn);
                    drive(name, peer, conn, &clock, &limits, std::future::pending()).await;
                    return;
                }
            };
            let handshake = acceptor.accept(Watched::new(stream, clock.clone()));
            let tls = match tokio::time::timeout_at(head_by, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(listener = name, "TLS handshake with {peer} failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(listener = name, "TLS handshake with {peer} timed out");
                    return;
                }
            };
            let builder = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => &builders.h2,
                _ => &builders.h1,
            };
            // A node's connection lasts while the cluster trusts what it proved itself with.
            let chain = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec);
            let conn = watcher.watch(builder.serve_connection(TokioIo::new(tls), service));
            match (nodes, chain) {
                (Some(nodes), Some(chain)) => {
                    let distrusted = nodes.distrusted(chain);
                    drive(name, peer, conn, &clock, &limits, distrusted).await;
                }
                _ => drive(name, peer, conn, &clock, &limits, std::future::pending()).await,
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "stopped with requests still in flight after {grace:?}"
        );
    }
}

/// The connection builders of one listener: any version (HTTP/1.1, or HTTP/2 when the
/// client opens with its preface), and one for each version ALPN can pick.
#[derive(Clone)]
struct Builders {
    any: std::sync::Arc<AutoBuilder>,
    h1: std::sync::Arc<AutoBuilder>,
    h2: std::sync::Arc<AutoBuilder>,
}

type AutoBuilder = hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>;

impl Builders {
    fn new() -> Builders {
        let configured = || {
            let mut builder = AutoBuilder::new(hyper_util::rt::TokioExecutor::new());
            builder
                .http1()
                .keep_alive(true)
                // The listener keeps the header deadline itself (see `clock`).
                .header_read_timeout(None)
                .max_buf_size(MAX_HEADER_BYTES);
            builder
                .http2()
                .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
                .max_header_list_size(MAX_HEADER_BYTES as u32)
                // hyper's guards against streams opened and reset at once ("rapid
                // reset") stay on at their defaults.
                .timer(hyper_util::rt::TokioTimer::new());
            builder
        };
        Builders {
            any: std::sync::Arc::new(configured()),
            h1: std::sync::Arc::new(configured().http1_only()),
            h2: std::sync::Arc::new(configured().http2_only()),
        }
    }
}

/// Runs one connection until it ends, passes a deadline of its [`Clock`], or `cut`
/// resolves (its peer no longer trusted).
async fn drive<E: std::fmt::Display>(
    name: &'static str,
    peer: SocketAddr,
    conn: impl Future<Output = Result<(), E>>,
    clock: &Clock,
    limits: &ListenerLimits,
    cut: impl Future<Output = ()>,
) {
    tokio::pin!(conn);
    tokio::pin!(cut);
    loop {
        let deadline = clock.deadline(limits);
        // With no deadline (a request in progress), wait for a change.
        let wake = deadline.map_or_else(
            || tokio::time::Instant::now() + limits.idle_timeout,
            |(at, _)| at,
        );
        tokio::select! {
            () = clock.changed() => {}
            () = &mut cut => {
                tracing::info!(listener = name, "closing the connection from node {peer}: the cluster no longer trusts its key");
                return;
            }
            ended = &mut conn => {
                if let Err(e) = ended {
                    tracing::debug!(listener = name, "connection from {peer} ended: {e}");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if let Some((at, why)) = clock.deadline(limits)
                    && at <= tokio::time::Instant::now()
                {
                    // Nothing is lost: no request is being answered, or its
                    // client stopped reading. Dropping closes the socket.
                    tracing::debug!(listener = name, "closing the connection from {peer}: {why:?}");
                    return;
                }
            }
        }
    }
}

/// Whether the client's first byte opens a TLS handshake (waits for it; an error when the
/// connection closes first).
async fn opens_with_tls(stream: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(first[0] == TLS_HANDSHAKE),
    }
}

/// Tells a client over a cap so, without reading its request or waiting on it: what the
/// socket buffer takes now is written, then the socket is closed.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSAL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::node_tls::NodeTls;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wdeploy_store::ClusterKey;

    /// A router's plain listener of the cluster with `key` on a free port, answering
    /// each request with who sent it (`node` or `client`).
    async fn listening(key: &ClusterKey, header_timeout: Duration) -> SocketAddr {
        let keys = wdeploy_store::ClusterKeys {
            current: key.clone(),
            previous: None,
        };
        let nodes = NodeTlsCell::of("a", &keys, chrono::Utc::now()).expect("node tls");
        listening_with(nodes, header_timeout).await
    }

    /// [`listening`] with the cluster's TLS in `nodes`.
    async fn listening_with(nodes: NodeTlsCell, header_timeout: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ListenerLimits {
            header_timeout,
            ..ListenerLimits::default()
        };
        let service = |conn: Accepted| {
            hyper::service::service_fn(move |_req| async move {
                let who = if conn.node { "node" } else { "client" };
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(who),
                )))
            })
        };
        let transport = Transport::PlainAndNodes(nodes);
        let forever = std::future::pending::<()>();
        tokio::spawn(serve(
            "router",
            listener,
            transport,
            limits,
            service,
            forever,
            Duration::ZERO,
        ));
        addr
    }

    /// The body of a GET sent over `io`, or `None` if the connection failed.
    async fn get<I>(io: I) -> Option<String>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .ok()?;
        tokio::spawn(conn);
        again(&mut sender).await
    }

    /// A GET over an open HTTP/1.1 connection: the body, or `None` if it failed.
    async fn again(
        sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    ) -> Option<String> {
        sender.ready().await.ok()?;
        let req = hyper::Request::get("/")
            .header("host", "app.localhost")
            .body(http_body_util::Empty::new())
            .ok()?;
        let response = sender.send_request(req).await.ok()?;
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .ok()?;
        String::from_utf8(body.to_bytes().to_vec()).ok()
    }

    /// The kernel's own view of the listener's side of a connection (`/proc/net/tcp`): a
    /// keepalive timer runs on it (timer kind 2), due within [`probes::IDLE`].
    #[tokio::test]
    async fn an_accepted_connection_is_probed_for_a_client_that_vanished() {
        let key = ClusterKey::from_bytes(&[7; ClusterKey::LEN]).expect("key");
        let addr = listening(&key, HEADER_TIMEOUT).await;
        let client = TcpStream::connect(addr).await.expect("connect");
        let ends = format!(
            ":{:04X} 0100007F:{:04X} ",
            addr.port(),
            client.local_addr().expect("addr").port()
        );
        let mut timer = String::new();
        for _ in 0..200 {
            let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
            let row = table.lines().find(|l| l.contains(&ends));
            // Fields: sl, local, remote, state, queues, then the timer as `kind:when`.
            timer = row
                .and_then(|row| row.split_whitespace().nth(5))
                .unwrap_or_default()
                .to_string();
            if timer.starts_with("02:") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (kind, when) = timer.split_once(':').expect("the server's socket");
        assert_eq!(
            kind, "02",
            "no keepalive timer on the accepted socket: {timer}"
        );
        // In clock ticks (USER_HZ, 100 a second).
        let due = u64::from_str_radix(when, 16).expect("hex") / 100;
        assert!(due > 0 && due <= probes::IDLE.as_secs(), "{timer}");
        drop(client);
    }

    #[tokio::test]
    async fn the_plain_listener_takes_clients_in_http_and_nodes_in_tls_only() {
        let key = ClusterKey::from_bytes(&[7; ClusterKey::LEN]).expect("key");
        let addr = listening(&key, HEADER_TIMEOUT).await;
        let plain = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(get(plain).await.as_deref(), Some("client"));

        let node = NodeTls::new(&key, "b").expect("another node of the cluster");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let tls = node.connect("a", tcp).await.expect("a node's handshake");
        assert_eq!(get(tls).await.as_deref(), Some("node"));

        let other = ClusterKey::from_bytes(&[8; ClusterKey::LEN]).expect("key");
        let stranger = NodeTls::new(&other, "b").expect("another cluster's node");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let answered = match stranger.connect("a", tcp).await {
            Ok(tls) => get(tls).await,
            Err(_) => None,
        };
        assert_eq!(answered, None, "another cluster's node must not be served");

        // Still serving clients after the refusal.
        let plain = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(get(plain).await.as_deref(), Some("client"));
    }

    #[tokio::test]
    async fn a_node_connection_on_a_key_given_up_is_closed_and_others_stay() {
        let (old, new) = (
            ClusterKey::from_bytes(&[1; ClusterKey::LEN]).expect("key"),
            ClusterKey::from_bytes(&[2; ClusterKey::LEN]).expect("key"),
        );
        let now = chrono::Utc::now();
        let keys = wdeploy_store::ClusterKeys {
            current: new.clone(),
            previous: Some((old.clone(), now + chrono::Duration::seconds(10))),
        };
        let nodes = NodeTlsCell::of("a", &keys, now).expect("rotated, in the grace");
        let in_grace = nodes.current();
        let addr = listening_with(nodes.clone(), HEADER_TIMEOUT).await;
        let keep_alive = |tls: NodeTls| async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let io = tls.connect("a", tcp).await.expect("a node's handshake");
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .expect("http");
            tokio::spawn(conn);
            sender
        };
        let mut stale = keep_alive(NodeTls::new(&old, "b").expect("a node on the old key")).await;
        let mut current = keep_alive(in_grace).await;
        assert_eq!(again(&mut stale).await.as_deref(), Some("node"));
        assert_eq!(again(&mut current).await.as_deref(), Some("node"));

        // The grace ends: the old key's connection goes, the new key's stays.
        let after = now + chrono::Duration::seconds(11);
        assert!(nodes.follow(&keys, after).expect("after the grace"));
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            while !stale.is_closed() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(
            closed.await.is_ok(),
            "the old key's connection must be closed"
        );
        assert_eq!(again(&mut stale).await, None);
        assert_eq!(again(&mut current).await.as_deref(), Some("node"));
    }

    #[tokio::test]
    async fn a_connection_silent_before_or_in_its_handshake_is_closed_at_the_header_deadline() {
        let key = ClusterKey::from_bytes(&[7; ClusterKey::LEN]).expect("key");
        let addr = listening(&key, Duration::from_millis(300)).await;
        // Nothing sent (no first byte to tell a client from a node), and a TLS record
        // header with nothing after it.
        for opening in [&b""[..], &[TLS_HANDSHAKE, 3, 1][..]] {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(opening).await.expect("write");
            let mut rest = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest));
            assert!(
                matches!(closed.await, Ok(Ok(0))),
                "a connection opening with {opening:?} must be closed, without an answer"
            );
        }
    }
}
