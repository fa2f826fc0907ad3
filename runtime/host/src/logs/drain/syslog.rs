//! A log line as Heroku's drains write it: an RFC 5424 message in RFC 6587 octet-counting
//! framing, `LEN <PRI>1 TIMESTAMP HOST APP-NAME PROCID - MSG\n`, where LEN counts the
//! bytes after its space (the closing newline included).
//!
//! As Heroku's: HOST is the app's name, APP-NAME the source (`app` for the dynos' own
//! output, `wdeploy` for the router and the platform), PROCID the dyno or `router`, MSGID
//! `-`, and no STRUCTURED-DATA field. PRI is Heroku's per source: 190 (local7.info) for
//! dynos, 158 (local3.info) for the router, 45 (syslog.notice) for the platform. Both
//! syslog drains (one message after another on a connection) and HTTP drains (a batch of
//! them in a POST body, `application/logplex-1`) use this framing.

use crate::logs::{LogLine, LogSource};
use std::io::Write as _;

/// The syslog priority of a line from `source`, as Heroku's logplex gives it.
fn priority(source: LogSource) -> u8 {
    match source {
        LogSource::App => 190,
        LogSource::Router => 158,
        LogSource::Platform => 45,
    }
}

/// Appends `line` of app `app`, framed, to `out`.
pub fn frame(app: &str, line: &LogLine, out: &mut Vec<u8>) {
    let mut message = Vec::with_capacity(line.text.len() + 96);
    // Writing to a Vec cannot fail.
    let _ = writeln!(
        message,
        "<{}>1 {} {app} {} {} - {}",
        priority(line.kind),
        line.timestamp(),
        match line.kind {
            LogSource::App => "app",
            LogSource::Router | LogSource::Platform => "wdeploy",
        },
        line.process,
        line.text
    );
    let _ = write!(out, "{} ", message.len());
    out.extend_from_slice(&message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn line(kind: LogSource, process: &str, text: &str) -> LogLine {
        LogLine {
            at: DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
            kind,
            process: process.into(),
            text: text.into(),
        }
    }

    fn framed(kind: LogSource, process: &str, text: &str) -> String {
        let mut out = Vec::new();
        frame("hello", &line(kind, process, text), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_source_framed_exactly() {
        assert_eq!(
            framed(LogSource::App, "web.1", "handling / on web.1"),
            "78 <190>1 2026-11-26T10:00:00.123456+00:00 hello app web.1 - handling / on web.1\n"
        );
        assert_eq!(
            framed(LogSource::App, "worker.1", "tick 1"),
            "68 <190>1 2026-11-26T10:00:00.123456+00:00 hello app worker.1 - tick 1\n"
        );
        assert_eq!(
            framed(
                LogSource::Router,
                "router",
                "at=info method=GET path=\"/\" status=200"
            ),
            "102 <158>1 2026-11-26T10:00:00.123456+00:00 hello wdeploy router - at=info method=GET path=\"/\" status=200\n"
        );
        assert_eq!(
            framed(
                LogSource::Platform,
                "web.1",
                "State changed from starting to up"
            ),
            "95 <45>1 2026-11-26T10:00:00.123456+00:00 hello wdeploy web.1 - State changed from starting to up\n"
        );
    }

    #[test]
    fn the_count_is_of_bytes_not_characters() {
        let text = framed(LogSource::App, "web.1", "héllo ✓");
        let (count, rest) = text.split_once(' ').unwrap();
        assert_eq!(count.parse::<usize>().unwrap(), rest.len());
        assert!(rest.len() > rest.chars().count());
    }
}
