//! The door of a listener: counts open connections, in total and per client address, and
//! turns away those past either cap before anything of them is read; and counts each
//! address's requests in flight, which over HTTP/2 many streams of one connection carry.

use super::memory;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// What a refused client is told: fixed bytes written without reading its request, so
/// refusing costs no parsing and no allocation.
pub(super) const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain\r\ncontent-length: 20\r\nconnection: close\r\n\r\n\
Too many connections";

/// Connections that must have closed since the busiest moment before freed memory is
/// handed back to the system (see [`memory`]).
const DRAINED: usize = 256;
/// At most one log line about refused connections per listener in this window.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Gate {
    /// `router` or `api`, for log lines.
    name: &'static str,
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
    /// HTTP/2 requests in flight per client address (apart from `open`: taken per
    /// request).
    requests: Mutex<HashMap<IpAddr, usize>>,
    refusals: Mutex<Refusals>,
    /// A memory trim is scheduled and has not run yet.
    trim_pending: Arc<AtomicBool>,
}

struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// The most connections open since memory was last trimmed.
    peak: usize,
}

/// Refusals counted since the last log line about them.
struct Refusals {
    logged_at: Option<Instant>,
    since: u64,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    Total,
    PerIp,
    /// Too many HTTP/2 requests in flight from one address.
    Requests,
}

/// A request's place in its address's budget; given back when its response is done.
pub(super) struct RequestPermit {
    gate: Arc<Gate>,
    ip: IpAddr,
}

/// An admitted connection's place; giving it back when the connection ends.
pub(super) struct Permit {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Gate {
    pub(super) fn new(name: &'static str, max_total: usize, max_per_ip: usize) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
            open: Mutex::new(Open {
                total: 0,
                per_ip: HashMap::new(),
                peak: 0,
            }),
            requests: Mutex::new(HashMap::new()),
            refusals: Mutex::new(Refusals {
                logged_at: None,
                since: 0,
            }),
            trim_pending: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Lets a connection from `ip` in, or says which cap it is over.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock();
        if open.total >= self.max_total {
            return Err(Refused::Total);
        }
        let from_ip = open.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        *from_ip += 1;
        open.total += 1;
        open.peak = open.peak.max(open.total);
        Ok(Permit {
            gate: self.clone(),
            ip,
        })
    }

    /// Counts an HTTP/2 request (a stream) from `ip` in flight, or says it is over the
    /// address's budget: as many streams as it may have connections. Without it, streams
    /// (up to [`super::MAX_STREAMS_PER_CONNECTION`] per connection) would multiply what one
    /// address may have the host work on by that much. (An HTTP/1.1 connection carries one
    /// request at a time, so its requests are bounded by the connection cap already, and
    /// are not counted here: an address has at most twice its cap in flight, half of it
    /// over HTTP/1.1.)
    pub(super) fn start_request(self: &Arc<Self>, ip: IpAddr) -> Result<RequestPermit, Refused> {
        let ip = ip.to_canonical();
        let mut requests = self.requests.lock();
        let from_ip = requests.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refused::Requests);
        }
        *from_ip += 1;
        Ok(RequestPermit {
            gate: self.clone(),
            ip,
        })
    }

    /// Counts a refusal; logs the first, then at most one line per
    /// [`REFUSALS_LOGGED_EVERY`] with how many there were, so a flood of refusals is no
    /// flood of log lines. They go to the host's log, never to an app's log stream.
    pub(super) fn note_refusal(&self, ip: IpAddr, why: Refused) {
        let mut refusals = self.refusals.lock();
        refusals.since += 1;
        let due = refusals
            .logged_at
            .is_none_or(|at| at.elapsed() >= REFUSALS_LOGGED_EVERY);
        if !due {
            return;
        }
        let count = std::mem::take(&mut refusals.since);
        refusals.logged_at = Some(Instant::now());
        drop(refusals);
        let cap = match why {
            Refused::Total => format!("{} connections in all", self.max_total),
            Refused::PerIp => format!("{} connections per address", self.max_per_ip),
            Refused::Requests => format!("{} HTTP/2 streams per address", self.max_per_ip),
        };
        tracing::warn!(
            listener = self.name,
            refused = count,
            last_client = %ip,
            "refused over the cap of {cap} (at most one such line per {}s)",
            REFUSALS_LOGGED_EVERY.as_secs()
        );
    }

    /// Open connections now (for tests).
    #[cfg(test)]
    fn open(&self) -> (usize, usize) {
        let open = self.open.lock();
        (open.total, open.per_ip.len())
    }
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        count_down(&mut self.gate.requests.lock(), self.ip);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock();
        open.total -= 1;
        count_down(&mut open.per_ip, self.ip);
        if open.peak - open.total >= DRAINED {
            open.peak = open.total;
            drop(open);
            memory::trim_soon(&self.gate.trim_pending);
        }
    }
}

/// One less for `ip` in `counts`, which keeps no address at zero.
fn count_down(counts: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(count) = counts.get_mut(&ip) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total() {
        let gate = Gate::new("test", 3, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = gate.admit(a).unwrap();
        let _a2 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refused::PerIp));
        // The same address as IPv4-mapped IPv6 is the same client.
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(gate.admit(mapped).err(), Some(Refused::PerIp));
        let _b1 = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).err(), Some(Refused::Total));
        assert_eq!(gate.open(), (3, 2));
        drop(a1);
        let _a3 = gate.admit(a).unwrap();
        assert_eq!(gate.open(), (3, 2));
    }

    #[test]
    fn requests_in_flight_are_capped_per_address() {
        let gate = Gate::new("test", 100, 2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = gate.start_request(a).unwrap();
        let _second = gate.start_request(a).unwrap();
        assert_eq!(gate.start_request(a).err(), Some(Refused::Requests));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(gate.start_request(mapped).err(), Some(Refused::Requests));
        // Another address has its own budget; a finished request gives its place back.
        let _other = gate.start_request(b).unwrap();
        drop(first);
        let _third = gate.start_request(a).unwrap();
        assert_eq!(gate.requests.lock().get(&a), Some(&2));
    }

    #[test]
    fn closed_connections_give_their_place_back() {
        let gate = Gate::new("test", 10, 10);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let permits: Vec<_> = (0..10).map(|_| gate.admit(ip).unwrap()).collect();
        assert!(gate.admit(ip).is_err());
        drop(permits);
        assert_eq!(gate.open(), (0, 0));
    }
}
