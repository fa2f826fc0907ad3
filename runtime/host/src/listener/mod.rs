//! The host's HTTP listeners (the router and the control API serve through this): what
//! a connection may hold and for how long, whoever the client is.
//!
//! - `limits`: [`ListenerLimits`], sized from the file-descriptor limit;
//! - `fds`: raising and reading that limit;
//! - `gate`: the caps on open connections, total and per client address;
//! - `clock`: the header-read and idle keep-alive deadlines of one connection;
//! - `memory`: freed memory back to the system once connections drain.
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

pub use fds::raise_fd_limit;
pub use limits::{HEADER_TIMEOUT, IDLE_TIMEOUT, ListenerLimits, MAX_HEADER_BYTES};

use clock::{Clock, Tracked, Watched};
use gate::{Gate, REFUSAL};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Serves HTTP/1.1 on `listener` within `limits` until `shutdown` resolves, then lets
/// open connections finish their current requests (for at most `grace`). `service`
/// makes the service of one connection from the client's address and the local address
/// it reached.
pub async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    limits: ListenerLimits,
    service: impl Fn(SocketAddr, SocketAddr) -> S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let gate = Gate::new(name, limits.max_connections, limits.max_connections_per_ip);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let clock = Clock::new();
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            // The listener keeps the header deadline itself (see `clock`).
            .header_read_timeout(None)
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(
                TokioIo::new(Watched::new(stream, clock.clone())),
                Tracked::new(service(peer, local), clock.clone()),
            );
        let conn = graceful.watch(conn);
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            loop {
                let deadline = clock.deadline(&limits);
                // With no deadline (a request in progress), wait for a change.
                let wake = deadline.map_or_else(
                    || tokio::time::Instant::now() + limits.idle_timeout,
                    |(at, _)| at,
                );
                tokio::select! {
                    () = clock.changed() => {}
                    ended = &mut conn => {
                        if let Err(e) = ended {
                            tracing::debug!(listener = name, "connection from {peer} ended: {e}");
                        }
                        return;
                    }
                    () = tokio::time::sleep_until(wake) => {
                        if let Some((at, why)) = clock.deadline(&limits)
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

/// Tells a client over a cap so, without reading its request or waiting on it: what the
/// socket buffer takes now is written, then the socket is closed.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(REFUSAL);
}
