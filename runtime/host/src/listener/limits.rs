//! How much a listener lets clients hold: connections (total, per address), the time a
//! request's headers may take, the time a kept-alive connection may sit idle, and the
//! bytes its headers may fill. One value per listener; the router and the API each have
//! their own, so a flood of one never shuts the other.

use std::time::Duration;

/// A listener's limits. [`ListenerLimits::for_fd_limit`] sizes the connection caps from
/// the process's file descriptors; the timeouts default to Heroku's router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Open connections at once; past it a new one gets a fixed `503` and is closed.
    pub max_connections: usize,
    /// Open connections at once from one client address (IPv4-mapped IPv6 counts as
    /// the IPv4 address).
    pub max_connections_per_ip: usize,
    /// A request's headers must be complete this long after its first byte (after the
    /// connection opened, for its first request). Heroku's router allows 30 s.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request in progress is closed after this long
    /// without a byte from the client; so is one whose client stops reading a response
    /// (its socket refusing more bytes) for this long.
    /// Heroku's router allows 55 s.
    pub idle_timeout: Duration,
}

/// Heroku's router: 30 s for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Heroku's router: 55 s of silence on a kept-alive connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(55);
/// A connection's read buffer, which a request's headers must fit in. hyper grows it from
/// 8 KiB up to this, so a hostile client holds at most this much memory (and gets a 431
/// past it), whatever it sends.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// File descriptors kept for everything but the listeners' connections: the store, blobs,
/// compiled components, dynos' files and guests' outgoing connections.
const RESERVED_FDS: u64 = 1024;
/// One address may hold at most this many connections by default: far more than
/// browsers open (6 per host), enough for many clients behind one NAT, and a small
/// share of a host sized for tens of thousands.
const DEFAULT_PER_IP: usize = 1024;
/// The least a listener takes, however few descriptors the process has.
const MIN_CONNECTIONS: usize = 16;

impl ListenerLimits {
    /// Limits for a process that may open `fd_limit` files: what is left after
    /// [`RESERVED_FDS`] (at most half of them) and an eighth of the rest (the host's own
    /// growth) is split between the two listeners, so both full still leave the host
    /// room to work.
    pub fn for_fd_limit(fd_limit: u64) -> ListenerLimits {
        let spare = fd_limit - RESERVED_FDS.min(fd_limit / 2);
        let each = (spare - spare / 8) / 2;
        let max_connections = usize::try_from(each)
            .unwrap_or(usize::MAX)
            .max(MIN_CONNECTIONS);
        ListenerLimits {
            max_connections,
            max_connections_per_ip: DEFAULT_PER_IP.min(max_connections),
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

impl Default for ListenerLimits {
    /// Sized from the process's current soft limit of open files.
    fn default() -> ListenerLimits {
        ListenerLimits::for_fd_limit(super::fds::soft_limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_from_the_descriptors() {
        let small = ListenerLimits::for_fd_limit(1024);
        assert_eq!(small.max_connections, 224);
        assert_eq!(small.max_connections_per_ip, 224);
        assert_eq!(
            ListenerLimits::for_fd_limit(0).max_connections,
            MIN_CONNECTIONS
        );
        let usual = ListenerLimits::for_fd_limit(1 << 20);
        assert_eq!(usual.max_connections, 458_304);
        assert_eq!(usual.max_connections_per_ip, DEFAULT_PER_IP);
        // Both listeners full leave the reserve and an eighth of the rest.
        let limit = 20_000;
        let both = 2 * ListenerLimits::for_fd_limit(limit).max_connections as u64;
        assert!(both + RESERVED_FDS + (limit - RESERVED_FDS) / 8 <= limit);
    }
}
