//! `logs --tail` that outlives its connection: when the stream breaks, the host closes
//! it (a host restarted for an upgrade, a dropped network, a node of a cluster going
//! down behind a balancer), or the host goes silent past its heartbeat (a machine gone
//! without closing anything), the tail says so on stderr and connects again, printing
//! what came meanwhile and nothing twice.

use chrono::{DateTime, Utc};
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::time::Duration;
use wdeploy_api::live::{Lines, Next};
use wdeploy_api::{ClientError, LiveStream};

/// Lines the host keeps per app: a reconnection asks for all of them, and the tail
/// remembers as many it printed, so each is printed once.
const HISTORY: usize = wdeploy_host::BUFFER_LINES;

/// How long a line may arrive after a newer one (a line from another node of a cluster
/// reaches this node's stream a little late): lines older than the newest printed by
/// more than this are ones the first request left out on purpose (`-n`), not new ones.
const LATE: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// The waits between attempts to connect again (the last repeats).
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// Follows the log stream `open(history)` gives until interrupted, connecting again
/// whenever it ends. Errors the host answers (the app destroyed, the token revoked) end
/// it; a host that cannot be reached is tried again, at most every 5 seconds.
pub fn follow(
    first: usize,
    mut open: impl FnMut(usize) -> Result<LiveStream, ClientError>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut printed = Printed::new(Utc::now());
    let mut stream = open(first)?;
    loop {
        let why = copy_lines(stream, &mut printed, out)?;
        eprintln!("wdeploy: {why}; connecting again (Ctrl-C to stop)");
        printed.reconnecting();
        let mut attempt = 0;
        stream = loop {
            std::thread::sleep(BACKOFF[attempt.min(BACKOFF.len() - 1)]);
            attempt += 1;
            match open(HISTORY) {
                Ok(stream) => break stream,
                Err(ClientError::Unreachable { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        eprintln!("wdeploy: connected again; following the log stream");
    }
}

/// Prints the new lines of `stream` until it ends; why it ended. A write error (no
/// reader of stdout any more) ends the tail.
fn copy_lines(
    stream: LiveStream,
    printed: &mut Printed,
    out: &mut impl Write,
) -> anyhow::Result<String> {
    // A log line is never empty (it starts with its time stamp): an empty one is the
    // host's heartbeat.
    let lines = Lines::new(stream, "");
    let colours = crate::printer::colours_on_stdout();
    loop {
        match lines.next() {
            Next::Line(line) => {
                if printed.is_new(&line) {
                    let line = if colours {
                        crate::printer::paint(&line)
                    } else {
                        line.as_str().into()
                    };
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
            }
            // The first one ends the history: the lines after it are new.
            Next::Beat => printed.live(),
            Next::Broke(e) => return Ok(format!("the log stream broke ({e})")),
            Next::Ended => return Ok("the host closed the log stream".to_string()),
            Next::Silent(why) => return Ok(why),
        }
    }
}

/// What the tail has printed, to tell the lines a reconnection's history repeats from
/// those that came while it was away.
struct Printed {
    /// The most recent lines printed, oldest first, at most [`HISTORY`].
    recent: VecDeque<String>,
    seen: HashSet<String>,
    /// When the tail began, by this machine's clock: the cutoff if nothing was printed
    /// before a reconnection (`-n 0` of a quiet app).
    began: DateTime<Utc>,
    /// The newest time stamp printed, by the host's clock.
    newest: Option<DateTime<Utc>>,
    /// While a reconnection replays the history: lines stamped before this were there
    /// at the last connection, printed or left out by `-n`. Cleared once the host's
    /// heartbeat marks the history's end (a host without heartbeats keeps it).
    cutoff: Option<DateTime<Utc>>,
}

impl Printed {
    fn new(began: DateTime<Utc>) -> Printed {
        Printed {
            recent: VecDeque::new(),
            seen: HashSet::new(),
            began,
            newest: None,
            cutoff: None,
        }
    }

    fn reconnecting(&mut self) {
        self.cutoff = Some(self.newest.unwrap_or(self.began) - LATE);
    }

    /// The history a reconnection replays is over: from now on every line is new unless
    /// printed already, however old its stamp (a node whose clock is behind).
    fn live(&mut self) {
        self.cutoff = None;
    }

    /// Whether `line` is to be printed, noting it if so. A line with no time stamp (the
    /// host's notice of lines a slow reader lost) is always new.
    fn is_new(&mut self, line: &str) -> bool {
        let Some(stamp) = stamp_of(line) else {
            return true;
        };
        if self.cutoff.is_some_and(|cutoff| stamp < cutoff) || self.seen.contains(line) {
            return false;
        }
        self.newest = self.newest.max(Some(stamp));
        if self.recent.len() == HISTORY
            && let Some(oldest) = self.recent.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.recent.push_back(line.to_string());
        self.seen.insert(line.to_string());
        true
    }
}

/// The time stamp a log line starts with (`2026-11-25T10:00:00.123456+00:00 app[web.1]: …`).
fn stamp_of(line: &str) -> Option<DateTime<Utc>> {
    let (stamp, _) = line.split_once(' ')?;
    DateTime::parse_from_rfc3339(stamp)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(second: u32, text: &str) -> String {
        format!("2026-11-28T10:00:{second:02}.000000+00:00 app[web.1]: {text}")
    }

    #[test]
    fn a_reconnection_prints_what_came_meanwhile_and_nothing_twice() {
        let began = stamp_of(&line(0, "")).unwrap();
        let mut printed = Printed::new(began);
        // The first connection: `-n 2` of a longer history, then live lines.
        for text in ["two", "three", "four"] {
            assert!(printed.is_new(&line(20, text)));
        }
        printed.reconnecting();
        // The reconnection replays the whole history: what `-n` left out long before,
        // what was printed, then what came while the tail was away.
        assert!(!printed.is_new(&line(1, "one, left out by -n")));
        for text in ["two", "three", "four"] {
            assert!(!printed.is_new(&line(20, text)), "{text} printed twice");
        }
        assert!(printed.is_new(&line(25, "five")));
        // A line of another node, a little late, is still new; its repeat is not.
        assert!(printed.is_new(&line(15, "from node b")));
        assert!(!printed.is_new(&line(15, "from node b")));
        // The host's notice of lost lines has no time stamp: always shown.
        assert!(printed.is_new("wdeploy: 3 log lines dropped (reader too slow)"));
        // Once the history is over, a line of a node whose clock is well behind is new.
        assert!(!printed.is_new(&line(2, "old stamp, during the history")));
        printed.live();
        assert!(printed.is_new(&line(2, "old stamp, live")));
    }

    #[test]
    fn only_the_most_recent_lines_are_remembered() {
        let mut printed = Printed::new(stamp_of(&line(0, "")).unwrap());
        for n in 0..HISTORY + 10 {
            assert!(printed.is_new(&line(30, &n.to_string())));
        }
        assert_eq!(printed.recent.len(), HISTORY);
        assert_eq!(printed.seen.len(), HISTORY);
        assert!(!printed.is_new(&line(30, &(HISTORY + 9).to_string())));
    }
}
