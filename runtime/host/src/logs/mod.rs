//! The log stream: per-app ordered lines from dynos, the router and the platform.
//! Dynos' lines are rate limited per app (`rate.rs`); every line written on this node
//! also goes to the app's log drains (`drain/`).

pub mod drain;
pub mod rate;
pub mod writer;

use crate::metrics::AppMetrics;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use rate::{Bucket, LogRate};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast;
pub use wdeploy_core::LogSource;

/// Lines kept per app for `logs` history, as Heroku's logplex does.
pub const BUFFER_LINES: usize = 1500;
/// Longest line; longer output is split into several lines.
pub const MAX_LINE_BYTES: usize = 10_000;
/// Lines a live subscriber may fall behind before it starts losing them.
const SUBSCRIBER_LAG: usize = 4096;

/// One line of the log stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub kind: LogSource,
    /// The dyno (`web.1`), or `router`, or `api` for app-wide platform lines (`scheduler`
    /// for the CPU governor's). Shared, so
    /// a dyno's lines do not each allocate its name.
    pub process: Arc<str>,
    pub text: String,
}

impl LogLine {
    /// The part before the colon: `app[web.1]`.
    pub fn source(&self) -> String {
        match self.kind {
            LogSource::App => format!("app[{}]", self.process),
            LogSource::Router | LogSource::Platform => format!("wdeploy[{}]", self.process),
        }
    }

    pub fn timestamp(&self) -> String {
        self.at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.timestamp(), self.source(), self.text)
    }
}

/// One app's log stream: a bounded history plus live subscribers.
///
/// Writers never wait on readers: a subscriber that falls behind loses lines and is told
/// how many (`broadcast::error::RecvError::Lagged`). Dynos' lines pass at the stream's
/// [`LogRate`]; the rest are dropped, counted and reported (L10).
pub struct LogStream {
    history: Mutex<VecDeque<Arc<LogLine>>>,
    /// Made by the first subscriber: an app nobody tails (most of a host's apps) does not
    /// hold a channel of `SUBSCRIBER_LAG` slots (about 200 KiB), and a line sent with no
    /// subscriber went nowhere anyway.
    live: std::sync::OnceLock<broadcast::Sender<Arc<LogLine>>>,
    rate: Mutex<Bucket>,
    /// Where this node's own lines also go (the log bus, so every node of a cluster
    /// shows them); set once the app's id is known.
    outbox: std::sync::OnceLock<Outbox>,
    /// Where dropped lines are counted for `/metrics`; set once by the app's runtime.
    metrics: std::sync::OnceLock<Arc<AppMetrics>>,
    /// The app's log drains: each line written here is offered to each, without waiting.
    drains: RwLock<Vec<drain::Outlet>>,
}

/// Takes each line written on this node, without waiting.
pub type Outbox = Box<dyn Fn(&LogLine) + Send + Sync>;

impl Default for LogStream {
    fn default() -> Self {
        LogStream::build(LogRate::default())
    }
}

impl LogStream {
    /// A stream at the default [`LogRate`].
    pub fn new() -> Arc<LogStream> {
        Arc::new(LogStream::default())
    }

    /// A stream whose dynos may write `rate`.
    pub fn with_rate(rate: LogRate) -> Arc<LogStream> {
        Arc::new(LogStream::build(rate))
    }

    fn build(rate: LogRate) -> LogStream {
        LogStream {
            // Grows with the lines written: most apps of a big host write a few.
            history: Mutex::new(VecDeque::new()),
            live: std::sync::OnceLock::new(),
            rate: Mutex::new(Bucket::new(rate)),
            outbox: std::sync::OnceLock::new(),
            metrics: std::sync::OnceLock::new(),
            drains: RwLock::new(Vec::new()),
        }
    }

    /// Counts the lines dropped over the rate in `metrics` from now on (the first call
    /// wins: an app's stream has one).
    pub fn count_drops_in(&self, metrics: Arc<AppMetrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Hands every line written here from now on to `outbox` as well (the first call
    /// wins: an app's stream has one).
    pub fn set_outbox(&self, outbox: Outbox) {
        let _ = self.outbox.set(outbox);
    }

    /// Appends a line a dyno wrote (raw bytes, escaped here) if the app's rate allows;
    /// a line over it is dropped before any work is spent on it, and counted.
    pub fn app_line(&self, process: &Arc<str>, raw: &[u8]) {
        let now = Instant::now();
        let (admitted, notice) = {
            let mut bucket = self.rate.lock();
            let admitted = bucket.admit(now);
            (admitted, bucket.notice(now))
        };
        if let Some(notice) = notice {
            self.write(LogSource::Platform, "logs", notice);
        }
        if admitted {
            self.write(LogSource::App, process.clone(), sanitize(raw));
        } else if let Some(metrics) = self.metrics.get() {
            metrics.log_line_dropped();
        }
    }

    /// Writes the L10 line of lines dropped since the last one, if one is due: so a
    /// reader learns of the end of a flood even if the app wrote nothing after it.
    fn report_dropped(&self) {
        let notice = self.rate.lock().notice(Instant::now());
        if let Some(notice) = notice {
            self.write(LogSource::Platform, "logs", notice);
        }
    }

    /// Appends a line, stamped now, whose text is already safe to show: a guest's output
    /// escaped by [`LogStream::app_line`], or a router line made of parts hyper has
    /// validated (method, URI, visible-ASCII header values). The hot paths, so nothing is
    /// scanned again.
    pub fn write(&self, kind: LogSource, process: impl Into<Arc<str>>, text: impl Into<String>) {
        let line = LogLine {
            at: Utc::now(),
            kind,
            process: process.into(),
            text: text.into(),
        };
        if let Some(outbox) = self.outbox.get() {
            outbox(&line);
        }
        let line = Arc::new(line);
        for outlet in self.drains.read().iter() {
            outlet.offer(&line);
        }
        self.push_shared(line);
    }

    /// Appends a platform line about `process` (a dyno name, or `api`). Its text often
    /// quotes what users and guests chose (a key name, a trap message), so anything that
    /// could forge another line or reorder what a terminal shows is escaped.
    pub fn platform(&self, process: &str, text: impl Into<String>) {
        let mut text = text.into();
        if text.chars().any(needs_escape) {
            text = sanitize(text.as_bytes());
        }
        self.write(LogSource::Platform, process, text);
    }

    /// Puts `from`'s history before this stream's own (an app renamed: its log goes on
    /// under the new name), keeping the newest [`BUFFER_LINES`].
    pub fn inherit(&self, from: &LogStream) {
        let older: Vec<Arc<LogLine>> = from.history.lock().iter().cloned().collect();
        let mut history = self.history.lock();
        let newer = std::mem::take(&mut *history);
        let all = older.len() + newer.len();
        history.extend(
            older
                .into_iter()
                .chain(newer)
                .skip(all.saturating_sub(BUFFER_LINES)),
        );
    }

    /// Appends a line another node wrote: neither handed to the outbox nor to the drains
    /// (its node ships it).
    pub fn push(&self, line: LogLine) {
        self.push_shared(Arc::new(line));
    }

    fn push_shared(&self, line: Arc<LogLine>) {
        let mut history = self.history.lock();
        if history.len() == BUFFER_LINES {
            history.pop_front();
        }
        history.push_back(line.clone());
        // Sent under the history lock, so `replay_and_subscribe` sees each line exactly
        // once. No subscribers is fine: the line stays in history.
        if let Some(live) = self.live.get() {
            let _ = live.send(line);
        }
    }

    /// The last `n` lines and a subscription to every later one, with no gap or overlap.
    pub fn replay_and_subscribe(
        &self,
        n: usize,
    ) -> (Vec<Arc<LogLine>>, broadcast::Receiver<Arc<LogLine>>) {
        self.report_dropped();
        let history = self.history.lock();
        let recent = history
            .iter()
            .skip(history.len().saturating_sub(n))
            .cloned()
            .collect();
        (recent, self.live().subscribe())
    }

    /// Lines written from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        let _history = self.history.lock();
        self.live().subscribe()
    }

    /// The live channel, made now if nobody subscribed before (under the history lock, so
    /// no line falls between the history and the channel).
    fn live(&self) -> &broadcast::Sender<Arc<LogLine>> {
        self.live
            .get_or_init(|| broadcast::channel(SUBSCRIBER_LAG).0)
    }
}

/// Makes guest output safe to print: control characters (other than tab) are escaped.
/// Control characters (but tab), Unicode line and paragraph separators and the
/// bidirectional formatting characters: what could end a line or make a terminal show
/// one line's text as another's.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061C}' | '\u{200E}' | '\u{200F}'
                | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

pub fn sanitize(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    if !text.chars().any(needs_escape) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_matches_logplex() {
        let line = LogLine {
            at: DateTime::parse_from_rfc3339("2026-11-25T10:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
            kind: LogSource::App,
            process: "web.1".into(),
            text: "hello".into(),
        };
        assert_eq!(
            line.to_string(),
            "2026-11-25T10:00:00.123456+00:00 app[web.1]: hello"
        );
        let router = LogLine {
            kind: LogSource::Router,
            process: "router".into(),
            ..line
        };
        assert!(router.to_string().contains(" wdeploy[router]: hello"));
    }

    #[test]
    fn history_is_bounded() {
        let logs = LogStream::new();
        for i in 0..BUFFER_LINES + 10 {
            logs.write(LogSource::App, "web.1", format!("{i}"));
        }
        let recent = logs.replay_and_subscribe(usize::MAX).0;
        assert_eq!(recent.len(), BUFFER_LINES);
        assert_eq!(recent[0].text, "10");
        assert_eq!(logs.replay_and_subscribe(2).0.len(), 2);
    }

    #[test]
    fn an_inherited_history_comes_first_and_the_newest_lines_are_kept() {
        let (old, new) = (LogStream::new(), LogStream::new());
        for i in 0..BUFFER_LINES {
            old.write(LogSource::App, "web.1", format!("old {i}"));
        }
        new.write(LogSource::Platform, "api", "new 0");
        new.inherit(&old);
        let texts: Vec<String> = new
            .replay_and_subscribe(usize::MAX)
            .0
            .iter()
            .map(|l| l.text.clone())
            .collect();
        assert_eq!(texts.len(), BUFFER_LINES);
        assert_eq!(texts[0], "old 1", "the oldest line makes room");
        assert_eq!(texts[BUFFER_LINES - 2], format!("old {}", BUFFER_LINES - 1));
        assert_eq!(texts[BUFFER_LINES - 1], "new 0");
    }

    #[test]
    fn dyno_lines_over_the_rate_are_dropped_and_counted() {
        let logs = LogStream::with_rate(LogRate {
            per_second: 1,
            burst: 5,
        });
        let web: Arc<str> = "web.1".into();
        for n in 0..100 {
            logs.app_line(&web, format!("line {n}").as_bytes());
        }
        logs.platform("api", "not rate limited");
        // Drops are told once the first is a second old (here: when the logs are read).
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (lines, _) = logs.replay_and_subscribe(usize::MAX);
        let texts: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let app = texts
            .iter()
            .filter(|t| t.contains(" app[web.1]: line "))
            .count();
        assert!((5..=7).contains(&app), "{texts:#?}");
        let l10: Vec<&String> = texts.iter().filter(|t| t.contains("Error L10")).collect();
        assert_eq!(l10.len(), 1, "{texts:#?}");
        assert!(l10[0].contains("wdeploy[logs]: Error L10 (output buffer overflow): "));
        let dropped: usize = l10[0]
            .split(": ")
            .nth(2)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a count");
        assert_eq!(app + dropped, 100, "{texts:#?}");
        assert!(texts.iter().any(|t| t.ends_with("not rate limited")));
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(sanitize(b"a\x1b[31mb\r"), "a\\u{1b}[31mb");
        assert_eq!(sanitize(b"tab\there"), "tab\there");
        assert_eq!(
            sanitize("a\u{202E}b\u{2028}c".as_bytes()),
            "a\\u{202e}b\\u{2028}c"
        );
    }

    #[test]
    fn platform_lines_cannot_forge_other_lines() {
        let logs = LogStream::new();
        logs.platform(
            "api",
            "Set key `x\n2026-11-25T10:00:00+00:00 app[web.1]: \u{1b}[2Kforged`",
        );
        let (history, _) = logs.replay_and_subscribe(10);
        let shown = history[0].to_string();
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(
            shown.contains("\\n2026") && shown.contains("\\u{1b}"),
            "{shown}"
        );
    }
}
