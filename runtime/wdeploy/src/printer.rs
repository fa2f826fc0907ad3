//! Prints the log stream to the terminal, each source in its own colour on a TTY.

use std::io::{IsTerminal, Write};
use wdeploy_host::{LogLine, LogSource};

pub struct Printer {
    colour: bool,
}

/// ANSI colours cycled over sources, as `heroku local` does.
const PALETTE: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92"];

impl Printer {
    pub fn stdout() -> Printer {
        Printer {
            // https://no-color.org: any value of NO_COLOR turns colours off.
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub fn print(&self, line: &LogLine) {
        let mut out = std::io::stdout().lock();
        let _ = if self.colour {
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
        let _ = out.flush();
    }

    /// A line from `wdeploy` itself about the session (not part of an app's stream).
    pub fn note(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
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
