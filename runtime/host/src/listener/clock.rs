//! A connection's clock: when its current request's head began, whether a request is in
//! progress, when a byte last moved. hyper 1's http1 server has a header-read timer but
//! starts it whenever it waits for a head, idle keep-alive included (so a kept-alive
//! connection would be closed at 30 s, never at 55), and has no idle timer; the listener
//! keeps both deadlines itself from what this clock sees: the socket's reads and writes
//! (a write the socket refuses means a client not reading)
//! ([`Watched`]), the requests hyper hands to the service and the responses it finishes
//! ([`Tracked`]).

use super::ListenerLimits;

use parking_lot::Mutex;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

pub(super) struct Clock {
    state: Mutex<State>,
    /// Told when a deadline may have come closer (a head began, a request started or
    /// ended, a write was refused), so the connection's driver looks again.
    changed: tokio::sync::Notify,
}

struct State {
    /// Requests handed to the service whose response is not finished (one at a time in
    /// HTTP/1.1, but hyper may take the next while the last body is dropped).
    in_flight: usize,
    /// When the head of the next request began: its first byte, or the connection's
    /// opening for its first request. `None` while idle between requests.
    head_started: Option<Instant>,
    /// When the connection last had no request in progress.
    idle_since: Instant,
    /// Since when the socket has refused more bytes (the client stopped reading);
    /// `None` while writes go through.
    write_blocked: Option<Instant>,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// The request's headers were not complete in time.
    Headers,
    /// Nothing was sent on an idle kept-alive connection.
    Idle,
    /// The client stopped reading the response for the idle timeout.
    Stalled,
}

impl Clock {
    pub(super) fn new() -> Arc<Clock> {
        let now = Instant::now();
        Arc::new(Clock {
            state: Mutex::new(State {
                in_flight: 0,
                head_started: Some(now),
                idle_since: now,
                write_blocked: None,
            }),
            changed: tokio::sync::Notify::new(),
        })
    }

    /// The next deadline and what passing it means; `None` while the service works on
    /// a request and its client reads what it is sent (the service's own timeout bounds
    /// the work: the router's `web.timeout`; a stream such as `logs --tail` may be
    /// silent for long).
    pub(super) fn deadline(&self, limits: &ListenerLimits) -> Option<(Instant, Expired)> {
        let state = self.state.lock();
        if state.in_flight > 0 {
            return state
                .write_blocked
                .map(|since| (since + limits.idle_timeout, Expired::Stalled));
        }
        Some(match state.head_started {
            Some(at) => (at + limits.header_timeout, Expired::Headers),
            None => (state.idle_since + limits.idle_timeout, Expired::Idle),
        })
    }

    /// Resolves when the deadline may have changed since the last call.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    fn read(&self) {
        let mut state = self.state.lock();
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            self.changed.notify_one();
        }
    }

    /// A write went through (`true`) or the socket's buffer is full (`false`).
    fn wrote(&self, went_through: bool) {
        let mut state = self.state.lock();
        if went_through {
            state.write_blocked = None;
        } else if state.write_blocked.is_none() {
            state.write_blocked = Some(Instant::now());
            self.changed.notify_one();
        }
    }

    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        let mut state = self.state.lock();
        state.in_flight += 1;
        state.head_started = None;
        self.changed.notify_one();
        InFlight(self.clone())
    }
}

/// A request in progress, from its head to the end of its response (or until hyper
/// drops the response, the connection having failed).
pub(super) struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

/// A socket whose reads and writes move the clock.
pub(super) struct Watched<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, clock: Arc<Clock>) -> Watched<T> {
        Watched { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        match polled {
            Poll::Ready(Ok(n)) if n > 0 => self.clock.wrote(true),
            Poll::Pending => self.clock.wrote(false),
            _ => {}
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        match polled {
            Poll::Ready(Ok(n)) if n > 0 => self.clock.wrote(true),
            Poll::Pending => self.clock.wrote(false),
            _ => {}
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> ListenerLimits {
        ListenerLimits {
            max_connections: 1,
            max_connections_per_ip: 1,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(55),
        }
    }

    #[test]
    fn deadlines_follow_the_request() {
        let limits = limits();
        let clock = Clock::new();
        // A new connection: its first request's headers within the header timeout.
        let (at, why) = clock.deadline(&limits).unwrap();
        assert_eq!(why, Expired::Headers);
        assert!(at > Instant::now() + Duration::from_secs(29));
        // Bytes of the head do not move the deadline (slowloris).
        clock.read();
        assert_eq!(clock.deadline(&limits), Some((at, Expired::Headers)));
        // A request in progress has no deadline while its client reads what it is sent,
        // however long the response takes…
        let in_flight = clock.request_started();
        assert_eq!(clock.deadline(&limits), None);
        clock.wrote(true);
        assert_eq!(clock.deadline(&limits), None);
        // …but one when the client stops reading, which a write that goes through ends.
        clock.wrote(false);
        let (stalled_at, why) = clock.deadline(&limits).unwrap();
        assert_eq!(why, Expired::Stalled);
        clock.wrote(false);
        assert_eq!(clock.deadline(&limits), Some((stalled_at, why)));
        clock.wrote(true);
        assert_eq!(clock.deadline(&limits), None);
        // Once answered, the connection idles until the next request's first byte.
        drop(in_flight);
        let (idle_until, why) = clock.deadline(&limits).unwrap();
        assert_eq!(why, Expired::Idle);
        assert!(idle_until > Instant::now() + Duration::from_secs(54));
        clock.read();
        assert_eq!(clock.deadline(&limits).unwrap().1, Expired::Headers);
    }
}
