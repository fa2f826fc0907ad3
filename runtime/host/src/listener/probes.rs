//! TCP keepalive probes on every accepted connection, so a client that vanished without
//! closing (a laptop gone to sleep, a network that dropped, a NAT that forgot the
//! connection) is noticed within about two minutes.
//!
//! The listener's own deadlines cannot see such a client while a response is in flight
//! and silent: a `wdeploy run` of a one-off that prints nothing, a `logs --tail` of a
//! quiet app, a long poll. Without probes the dyno attached to such a run would go on
//! until the one-off deadline (a day by default), and every such stream would hold its
//! connection, its slot of the per-address budget and its log subscription for as long.
//! A live peer's kernel answers the probes, so they never close a connection whose
//! client is still there, however quiet.

use std::time::Duration;
use tokio::net::TcpStream;

/// Silence on a connection before the first probe.
pub(super) const IDLE: Duration = Duration::from_secs(60);
/// Between unanswered probes.
const INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel gives the connection up (so 60 + 6 × 10 s).
const RETRIES: u32 = 6;

/// Turns the probes on for `stream`. A socket that refuses is served without them, as
/// before: nothing the client sent is lost for it.
pub(super) fn keep_probing(stream: &TcpStream) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(IDLE)
        .with_interval(INTERVAL)
        .with_retries(RETRIES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&probes) {
        tracing::debug!("no keepalive probes on a connection: {e}");
    }
}
