//! Guest stdout/stderr as a host-side stream that turns bytes into log lines.
//!
//! Each instance gets its own writer (so concurrent instances of a dyno never interleave
//! half lines); the partial line survives across the guest's `get-stdout` calls because
//! every stream handed out shares one buffer.

use crate::logs::{LogStream, MAX_LINE_BYTES};
use bytes::Bytes;
use parking_lot::Mutex;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// A guest output stream feeding one dyno's lines into the app's log stream.
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Mutex<Pending>>,
}

struct Pending {
    logs: Arc<LogStream>,
    dyno: Arc<str>,
    partial: Vec<u8>,
}

impl LogWriter {
    pub fn new(logs: Arc<LogStream>, dyno: Arc<str>) -> LogWriter {
        LogWriter {
            inner: Arc::new(Mutex::new(Pending {
                logs,
                dyno,
                partial: Vec::new(),
            })),
        }
    }

    fn write_bytes(&self, mut bytes: &[u8]) {
        let mut p = self.inner.lock();
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            p.partial.extend_from_slice(&bytes[..nl]);
            p.emit_full();
            bytes = &bytes[nl + 1..];
        }
        p.partial.extend_from_slice(bytes);
        // A line longer than the limit is cut into several lines as it arrives, so a
        // guest that never writes a newline cannot grow the host's buffer without bound.
        while p.partial.len() >= MAX_LINE_BYTES {
            let rest = p.partial.split_off(MAX_LINE_BYTES);
            p.emit_full();
            p.partial = rest;
        }
    }
}

impl Pending {
    fn emit_full(&mut self) {
        self.logs.app_line(&self.dyno, &self.partial);
        self.partial.clear();
    }
}

impl Drop for Pending {
    /// An unterminated last line is still a line.
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.emit_full();
        }
    }
}

impl IsTerminal for LogWriter {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogWriter {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogWriter {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogWriter {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_long_output() {
        let logs = LogStream::new();
        {
            let w = LogWriter::new(logs.clone(), "web.1".into());
            w.write_bytes(b"one\ntw");
            w.write_bytes(b"o\n");
            w.write_bytes(&vec![b'x'; MAX_LINE_BYTES + 5]);
            w.write_bytes(b"tail");
        }
        let lines: Vec<_> = logs
            .replay_and_subscribe(10)
            .0
            .iter()
            .map(|l| l.text.clone())
            .collect();
        assert_eq!(lines[0], "one");
        assert_eq!(lines[1], "two");
        assert_eq!(lines[2].len(), MAX_LINE_BYTES);
        assert_eq!(lines[3], "xxxxxtail");
        assert_eq!(lines.len(), 4);
    }
}
