//! The router's one line per request, written when the response body has been sent.

use crate::app::AppRuntime;
use crate::logs::{LogSource, LogStream};
use crate::metrics::AppMetrics;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The source name of router lines, shared by all of them.
pub static ROUTER: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "router".into());

/// A Heroku-style code of the router's answer (`H12`, `H14`…) and its description. Most
/// are errors; maintenance (`H80`) is not (the app's owners asked for it), and its line
/// says `at=info`, as on Heroku.
#[derive(Debug, Clone, Copy)]
pub struct RouterCode {
    pub code: &'static str,
    pub desc: &'static str,
    pub error: bool,
}

impl RouterCode {
    pub const MAINTENANCE: RouterCode = RouterCode {
        code: "H80",
        desc: "Maintenance mode",
        error: false,
    };

    pub const fn error((code, desc): (&'static str, &'static str)) -> RouterCode {
        RouterCode {
            code,
            desc,
            error: true,
        }
    }
}

/// What the router knows about one request, printed logplex-style.
#[derive(Debug, Clone)]
pub struct RouterLine {
    pub method: String,
    pub path: String,
    pub host: String,
    pub request_id: String,
    pub fwd: String,
    pub dyno: Option<String>,
    /// The node whose router served the request.
    pub node: Arc<str>,
    /// The answer's code, if the router answered by itself.
    pub code: Option<RouterCode>,
    pub connect_ms: u128,
    pub service_ms: u128,
    pub status: u16,
    pub bytes: u64,
    /// How the client spoke to the router.
    pub protocol: Protocol,
}

/// The router line's `protocol=`: the scheme, or the HTTP/2 flavour (`h2` over TLS,
/// `h2c` in the clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    H2,
    H2c,
}

impl Protocol {
    pub fn of(tls: bool, version: http::Version) -> Protocol {
        match (tls, version == http::Version::HTTP_2) {
            (true, true) => Protocol::H2,
            (true, false) => Protocol::Https,
            (false, true) => Protocol::H2c,
            (false, false) => Protocol::Http,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::H2 => "h2",
            Protocol::H2c => "h2c",
        }
    }
}

impl fmt::Display for RouterLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(RouterCode { code, desc, error }) => {
                let at = if error { "error" } else { "info" };
                write!(f, "at={at} code={code} desc=\"{desc}\" ")?
            }
            None => write!(f, "at=info ")?,
        }
        write!(
            f,
            "method={} path=\"{}\" host={} request_id={} fwd=\"{}\" dyno={} node={} connect={}ms service={}ms status={} bytes={} protocol={}",
            self.method,
            self.path.replace('"', "%22"),
            field_safe(&self.host),
            self.request_id,
            self.fwd,
            self.dyno.as_deref().unwrap_or(""),
            self.node,
            self.connect_ms,
            self.service_ms,
            self.status,
            self.bytes,
            self.protocol.as_str(),
        )
    }
}

/// An unquoted field's value as it may appear in the line: a client's Host header can hold
/// spaces or quotes (visible ASCII and blanks are valid in a header value), which would
/// otherwise read as extra `key=value` fields to whoever parses the log.
fn field_safe(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains([' ', '\t', '"']) {
        return value.into();
    }
    value
        .replace(' ', "%20")
        .replace('\t', "%09")
        .replace('"', "%22")
        .into()
}

/// Where an app's router lines go: its log stream, and its counts (`/metrics`), both
/// written from the same figures when the line is.
#[derive(Clone)]
pub struct LineSink {
    logs: Arc<LogStream>,
    metrics: Arc<AppMetrics>,
}

impl LineSink {
    pub fn of(app: &AppRuntime) -> LineSink {
        LineSink {
            logs: app.logs.clone(),
            metrics: app.metrics.clone(),
        }
    }

    /// Stamps `line` with its service time and writes it.
    pub fn write(&self, mut line: RouterLine, started: Instant) {
        let elapsed = started.elapsed();
        line.service_ms = elapsed.as_millis();
        self.metrics
            .request(line.status, line.code.map(|c| c.code), elapsed);
        self.logs
            .write(LogSource::Router, ROUTER.clone(), line.to_string());
    }
}

/// A response body that counts what it sends and writes the router line when it ends
/// (or when the client goes away), so `bytes` and `service` are the real figures.
pub struct Metered {
    inner: HyperOutgoingBody,
    pending: Option<(RouterLine, Instant, LineSink)>,
}

impl Metered {
    /// Wraps `inner`; the router line is written once the body ends or is dropped.
    pub fn wrap(
        inner: HyperOutgoingBody,
        line: RouterLine,
        started: Instant,
        sink: LineSink,
    ) -> HyperOutgoingBody {
        Metered {
            inner,
            pending: Some((line, started, sink)),
        }
        .boxed_unsync()
    }

    fn finish(&mut self) {
        if let Some((line, started, sink)) = self.pending.take() {
            sink.write(line, started);
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some((line, _, _))) = (frame.data_ref(), self.pending.as_mut())
                {
                    line.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_header_cannot_add_fields_to_the_line() {
        let line = RouterLine {
            method: "GET".into(),
            path: "/\"x\"".into(),
            host: "app.localhost status=200 dyno=\"web.9\"".into(),
            request_id: "id".into(),
            fwd: "127.0.0.1".into(),
            dyno: Some("web.1".into()),
            node: "local".into(),
            code: None,
            connect_ms: 0,
            service_ms: 1,
            status: 404,
            bytes: 0,
            protocol: Protocol::H2,
        };
        let text = line.to_string();
        assert!(text.ends_with(" protocol=h2"), "{text}");
        assert!(
            text.contains(
                "path=\"/%22x%22\" host=app.localhost%20status=200%20dyno=%22web.9%22 request_id="
            ),
            "{text}"
        );
        let fields: Vec<&str> = text.split(' ').collect();
        assert_eq!(
            fields.iter().filter(|f| f.starts_with("status=")).count(),
            1,
            "{text}"
        );
    }
}
