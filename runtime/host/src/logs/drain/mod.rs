//! Log drains: every line written on this node for an app (its dynos', its router
//! lines, the platform's) also goes to each of the app's drains, as Heroku's logplex
//! sends them. Lines other nodes wrote (relayed over the log bus) are theirs to ship.
//!
//! - `syslog`: a line framed as RFC 5424 with RFC 6587 octet counting;
//! - `logplex`: a batch of framed lines as an `application/logplex-1` POST;
//! - `net`: where drains may connect (public addresses unless allowed) and TLS;
//! - `overflow`: lines a drain had no room for, and the L10 line that tells them;
//! - `shipper`: the task that sends a drain's lines, with back-off.
//!
//! Each drain is an [`Outlet`] on its app's [`LogStream`]: a queue of [`QUEUE_LINES`]
//! lines (and at most [`QUEUE_BYTES`] of text) that writers only `try_send` into, never waiting, and a shipper task draining
//! it. A slow or dead receiver fills its own queue; past that its lines are dropped and
//! counted, and the app's log says how many once a second (L10), while the dynos, the
//! router and the app's other drains go on as before.

mod logplex;
mod net;
mod overflow;
mod shipper;
mod syslog;

pub use net::{DrainNetwork, DrainOptions};

use super::{LogLine, LogSource, LogStream};
use overflow::Overflow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use wdeploy_store::Drain;

/// Lines a drain's queue holds before it drops them (Heroku's logplex buffers as many).
pub const QUEUE_LINES: usize = 10_000;
/// Bytes of line text a drain's queue holds at most: 10,000 lines of the longest kind
/// (10,000 bytes) would be 100 MB an app could make the host hold per stuck drain.
pub const QUEUE_BYTES: usize = 8 << 20;

/// How often a drain's dropped lines are told.
const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// One drain of an app's log stream: its queue and its shipper, which stops when the
/// outlet is dropped (the drain removed, the app gone).
pub struct Outlet {
    drain: Drain,
    queue: mpsc::Sender<Arc<LogLine>>,
    /// Bytes of text in the queue now (the shipper takes off what it takes out).
    queued_bytes: Arc<AtomicUsize>,
    overflow: Arc<Overflow>,
    _stop: DropGuard,
}

impl Outlet {
    /// Starts shipping to `drain` what `logs` (app `app`) is offered from now on.
    fn start(logs: Weak<LogStream>, app: &str, drain: &Drain, network: &DrainNetwork) -> Outlet {
        let (queue, lines) = mpsc::channel(QUEUE_LINES);
        let overflow = Arc::new(Overflow::default());
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        tokio::spawn(
            shipper::Shipper {
                app: app.to_string(),
                id: drain.id.clone(),
                url: drain.url.clone(),
                queue: lines,
                queued_bytes: queued_bytes.clone(),
                overflow: overflow.clone(),
                network: network.clone(),
                stop: stop.clone(),
            }
            .run(),
        );
        tokio::spawn(tell_drops(
            logs,
            drain.id.to_string(),
            overflow.clone(),
            stop.clone(),
        ));
        tracing::debug!(app, drain = %drain.id, "draining to {}", drain.url.redacted());
        Outlet {
            drain: drain.clone(),
            queue,
            queued_bytes,
            overflow,
            _stop: stop.drop_guard(),
        }
    }

    /// Queues a line for the drain if there is room, else counts it: never waits.
    pub(super) fn offer(&self, line: &Arc<LogLine>) {
        let size = line.text.len();
        let queued = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if queued + size > QUEUE_BYTES || self.queue.try_send(line.clone()).is_err() {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.overflow.count(1);
        }
    }
}

impl LogStream {
    /// Makes this stream (app `app`'s) ship to exactly `wanted`: drains it already ships
    /// to keep their queue and connection, new ones start, removed ones stop.
    pub fn set_drains(self: &Arc<Self>, app: &str, wanted: &[Drain], network: &DrainNetwork) {
        let mut outlets = self.drains.write();
        let mut kept: Vec<Outlet> = std::mem::take(&mut *outlets)
            .into_iter()
            .filter(|o| wanted.iter().any(|d| same(d, &o.drain)))
            .collect();
        for drain in wanted {
            if !kept.iter().any(|o| same(&o.drain, drain)) {
                kept.push(Outlet::start(Arc::downgrade(self), app, drain, network));
            }
        }
        *outlets = kept;
    }

    /// The drains this stream ships to now.
    pub fn drains(&self) -> Vec<Drain> {
        self.drains.read().iter().map(|o| o.drain.clone()).collect()
    }
}

fn same(a: &Drain, b: &Drain) -> bool {
    a.id == b.id && a.url == b.url
}

/// Writes the drain's L10 line into the app's log a second after an overflow episode
/// began (so at most once a second while it drops lines); waits without a timer while
/// nothing is dropped.
async fn tell_drops(
    logs: Weak<LogStream>,
    drain: String,
    overflow: Arc<Overflow>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = overflow.began() => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(NOTICE_EVERY) => {}
        }
        let Some(notice) = overflow.notice() else {
            continue;
        };
        match logs.upgrade() {
            Some(logs) => logs.write(LogSource::Platform, drain.as_str(), notice),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn network() -> DrainNetwork {
        DrainNetwork::new(&DrainOptions {
            allow_private: true,
            ..DrainOptions::default()
        })
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_written_here_go_out_framed_and_relayed_ones_do_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("syslog://{}", listener.local_addr().unwrap());
        let drain = Drain::new(url.parse().unwrap());
        let logs = LogStream::new();
        logs.set_drains("hello", std::slice::from_ref(&drain), &network());
        logs.write(LogSource::App, "web.1", "one");
        logs.push(LogLine {
            at: chrono::Utc::now(),
            kind: LogSource::App,
            process: "web.2".into(),
            text: "from another node".into(),
        });
        logs.platform("web.1", "two");
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut received = String::new();
        while received.matches('\n').count() < 2 {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {received:?}");
            received.push_str(std::str::from_utf8(&chunk[..n]).unwrap());
        }
        let lines: Vec<&str> = received.lines().collect();
        assert_eq!(lines.len(), 2, "{received}");
        assert!(lines[0].ends_with(" hello app web.1 - one"), "{received}");
        assert!(
            lines[1].ends_with(" hello wdeploy web.1 - two"),
            "{received}"
        );
        assert!(!received.contains("another node"));
        // Removed: the shipper stops and the stream no longer offers lines to it.
        logs.set_drains("hello", &[], &network());
        assert!(logs.drains().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drains_queue_holds_a_bounded_number_of_bytes_too() {
        // A port nobody listens on: nothing leaves the queue but the batch the shipper
        // holds while it retries.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("syslog://{}", listener.local_addr().unwrap());
        drop(listener);
        let drain = Drain::new(url.parse().unwrap());
        let stream = LogStream::new();
        stream.set_drains("hello", std::slice::from_ref(&drain), &network());
        let outlet_bytes = || stream.drains.read()[0].queued_bytes.load(Ordering::Relaxed);
        let long = "x".repeat(10_000);
        for _ in 0..QUEUE_LINES {
            stream.write(LogSource::App, "web.1", long.clone());
        }
        assert!(outlet_bytes() <= QUEUE_BYTES, "{}", outlet_bytes());
        let dropped = stream.drains.read()[0].overflow.dropped.lock().count as usize;
        // At most the queue's bytes, and one batch in the shipper's hands, were kept.
        let batch = logplex::MAX_BYTES / long.len() + 1;
        assert!(
            dropped >= QUEUE_LINES - QUEUE_BYTES / long.len() - batch,
            "{dropped}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receiver_that_never_answers_costs_dropped_lines_told_as_l10() {
        // Accepts, reads nothing, answers nothing: the shipper waits on its first batch.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/logs", listener.local_addr().unwrap());
        let drain = Drain::new(url.parse().unwrap());
        let logs = LogStream::new();
        logs.set_drains("hello", std::slice::from_ref(&drain), &network());
        logs.write(LogSource::App, "web.1", "the first batch");
        let (_socket, _) = listener.accept().await.unwrap();
        // Writing never waits on the drain: every write returns, the stuck drain or not.
        let written = QUEUE_LINES * 2;
        for n in 0..written {
            logs.write(LogSource::App, "web.1", format!("line {n}"));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let l10 = loop {
            let (lines, _) = logs.replay_and_subscribe(usize::MAX);
            if let Some(line) = lines.iter().find(|l| l.text.contains("Error L10")) {
                break line.clone();
            }
            assert!(std::time::Instant::now() < deadline, "no L10 line");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(l10.kind, LogSource::Platform);
        assert_eq!(&*l10.process, drain.id.as_str());
        let dropped: usize = l10
            .text
            .strip_prefix("Error L10 (output buffer overflow): ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", l10.text));
        // The queue and the batch in flight hold the rest.
        assert!(
            dropped >= written - QUEUE_LINES - logplex::MAX_LINES,
            "{}",
            l10.text
        );
        assert!(dropped <= written - QUEUE_LINES, "{}", l10.text);
    }
}
