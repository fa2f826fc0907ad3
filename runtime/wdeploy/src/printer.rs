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
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
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
    match line.kind {
        LogSource::Router => "90",
        LogSource::Platform => "95",
        LogSource::App => {
            let hash = line
                .process
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            PALETTE[hash % PALETTE.len()]
        }
    }
}
