//! Reading a stream that stays open (a log tail, an attached one-off's output, a
//! release going live) so that a host gone without a word is noticed: the host sends a
//! heartbeat in every quiet moment when asked, and a stream silent for three of them is
//! given up.

use crate::client::LiveStream;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

/// How often a client asks the host for a sign of life in a quiet stream.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// How many heartbeats may go missing before the connection counts as dead.
const MISSED: u32 = 3;

/// What reading a live stream came to.
pub enum Next {
    Line(String),
    /// A heartbeat: nothing to show (a log stream sends one right after its history).
    Beat,
    /// The connection broke.
    Broke(std::io::Error),
    /// The host ended the stream.
    Ended,
    /// Nothing came for three heartbeats: the connection is taken for dead. Says so.
    Silent(String),
}

/// The lines of a live stream, read on a thread of their own so that a silent stream
/// can be given up: that thread stays blocked on the dead connection, and ends with it
/// or with the process.
pub struct Lines {
    rx: mpsc::Receiver<std::io::Result<String>>,
    heartbeat: Option<Duration>,
    /// The line the host sends as a heartbeat, returned as [`Next::Beat`].
    beat: &'static str,
}

impl Lines {
    pub fn new(stream: LiveStream, beat: &'static str) -> Lines {
        let (tx, rx) = mpsc::sync_channel(256);
        let reader = stream.reader;
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let failed = line.is_err();
                if tx.send(line).is_err() || failed {
                    return;
                }
            }
        });
        Lines {
            rx,
            heartbeat: stream.heartbeat,
            beat,
        }
    }

    /// The next line or heartbeat, or how the stream ended.
    pub fn next(&self) -> Next {
        let line = match self.heartbeat {
            Some(every) => self.rx.recv_timeout(every * MISSED),
            None => self
                .rx
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match line {
            Ok(Ok(line)) if line == self.beat => Next::Beat,
            Ok(Ok(line)) => Next::Line(line),
            Ok(Err(e)) => Next::Broke(e),
            Err(mpsc::RecvTimeoutError::Disconnected) => Next::Ended,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let every = self.heartbeat.unwrap_or_default().as_secs();
                Next::Silent(format!(
                    "the host sent nothing for {}s (it sends a line at least every {every}s)",
                    every * u64::from(MISSED)
                ))
            }
        }
    }
}
