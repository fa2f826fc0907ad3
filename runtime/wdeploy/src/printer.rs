//! Prints the log stream to the terminal, each source in its own colour on a TTY.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use wdeploy_host::{LogLine, LogSource};

pub struct Printer {
    colour: bool,
    /// Set once a write found no reader (`dev | head` done, a closed pager).
    gone: AtomicBool,
}

/// ANSI colours cycled over sources, as `heroku local` does.
const PALETTE: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92"];

impl Printer {
    pub fn stdout() -> Printer {
        Printer {
            // https://no-color.org: any value of NO_COLOR turns colours off.
            colour: colours_on_stdout(),
            gone: AtomicBool::new(false),
        }
    }

    /// Whether the output's reader has gone: `dev` then stops as on Ctrl-C, rather than
    /// run on printing to nobody.
    pub fn reader_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Asks the kernel whether stdout's reader has gone, without writing: a pipe whose
    /// read end is closed reports an error, a hung-up terminal or socket a hang-up. So
    /// `dev` stops even while its app prints nothing. A file never reports either.
    pub fn reader_left(&self) -> bool {
        let mut stdout = libc::pollfd {
            fd: libc::STDOUT_FILENO,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout; `poll` only writes its `revents`.
        let ready = unsafe { libc::poll(&mut stdout, 1, 0) };
        if ready == 1 && stdout.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            self.gone.store(true, Ordering::Relaxed);
        }
        self.reader_gone()
    }

    fn wrote(&self, result: std::io::Result<()>) {
        if result.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
            self.gone.store(true, Ordering::Relaxed);
        }
    }

    pub fn print(&self, line: &LogLine) {
        let mut out = std::io::stdout().lock();
        let written = if self.colour {
            let code = colour_of(line);
            writeln!(
                out,
                "\x1b[{code}m{} {}:\x1b[0m {}",
                line.timestamp(),
                line.source(),
                line.text
            )
        } else {
            writeln!(out, "{line}")
        };
        self.wrote(written.and_then(|()| out.flush()));
    }

    /// A line from `wdeploy` itself about the session (not part of an app's stream).
    pub fn note(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let written = writeln!(out, "{text}").and_then(|()| out.flush());
        self.wrote(written);
    }
}

fn colour_of(line: &LogLine) -> &'static str {
    source_colour(line.kind, &line.process)
}

/// The colour of a source: the router's grey, the platform's magenta, each dyno its own.
fn source_colour(kind: LogSource, process: &str) -> &'static str {
    match kind {
        LogSource::Router => "90",
        LogSource::Platform => "95",
        LogSource::App => {
            let hash = process
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            PALETTE[hash % PALETTE.len()]
        }
    }
}

/// Whether lines written to stdout get colours: on a terminal, unless `NO_COLOR` is set
/// (https://no-color.org).
pub fn colours_on_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A log line as the host sends it (`2026-11-25T10:00:00.123456+00:00 app[web.1]: text`)
/// with its time stamp and source in the source's colour, as `dev` shows them; a line of
/// another shape (the host's notice of dropped lines) as it is.
pub fn paint(line: &str) -> std::borrow::Cow<'_, str> {
    let painted = (|| {
        let (stamp, rest) = line.split_once(' ')?;
        let (source, text) = rest.split_once(": ")?;
        let (origin, process) = source.strip_suffix(']')?.split_once('[')?;
        let kind = match (origin, process) {
            ("wdeploy", "router") => LogSource::Router,
            ("wdeploy", _) => LogSource::Platform,
            ("app", _) => LogSource::App,
            _ => return None,
        };
        let code = source_colour(kind, process);
        Some(format!("\x1b[{code}m{stamp} {source}:\x1b[0m {text}"))
    })();
    painted.map_or(std::borrow::Cow::Borrowed(line), std::borrow::Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::paint;

    #[test]
    fn a_log_line_is_painted_by_its_source() {
        let stamp = "2026-11-28T10:00:00.000000+00:00";
        assert_eq!(
            paint(&format!("{stamp} wdeploy[router]: at=info status=200")),
            format!("\x1b[90m{stamp} wdeploy[router]:\x1b[0m at=info status=200")
        );
        assert_eq!(
            paint(&format!("{stamp} wdeploy[api]: Release v2: x: y")),
            format!("\x1b[95m{stamp} wdeploy[api]:\x1b[0m Release v2: x: y")
        );
        let line = format!("{stamp} app[web.1]: hi");
        let web = paint(&line);
        assert!(
            web.starts_with("\x1b[") && web.ends_with(":\x1b[0m hi"),
            "{web}"
        );
        // The same dyno always gets the same colour, as in `dev`.
        let again = format!("{stamp} app[web.1]: again");
        let colour = |painted: &str| painted.split('m').next().map(str::to_string);
        assert_eq!(colour(&web), colour(&paint(&again)));
        let dropped = "wdeploy: 3 log lines dropped (reader too slow)";
        assert_eq!(paint(dropped), dropped);
    }
}
