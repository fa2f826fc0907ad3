//! HTTP drains: a batch of framed lines ([`super::syslog::frame`]) in one POST, as
//! Heroku's logplex sends them: `Content-Type: application/logplex-1`,
//! `Logplex-Msg-Count` (lines in the body), `Logplex-Frame-Id` (the batch's id, the same
//! on every retry, so a receiver can drop a batch it already has) and
//! `Logplex-Drain-Token` (the drain's id). Credentials in the URL go as Basic
//! authentication.

use super::syslog;
use crate::logs::LogLine;
use base64::Engine as _;
use bytes::Bytes;
use std::sync::Arc;
use wdeploy_core::{DrainId, DrainUrl};

/// The most lines one POST carries.
pub const MAX_LINES: usize = 500;
/// A batch stops growing past this many bytes (one line may take it over by a line).
pub const MAX_BYTES: usize = 1 << 20;

/// A batch's body and how many lines it holds.
pub struct Batch {
    pub body: Bytes,
    pub lines: usize,
    pub frame_id: String,
}

impl Batch {
    pub fn new(app: &str, lines: &[Arc<LogLine>]) -> Batch {
        let mut body = Vec::new();
        for line in lines {
            syslog::frame(app, line, &mut body);
        }
        Batch {
            body: body.into(),
            lines: lines.len(),
            frame_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The POST of this batch to `url` (whose authority it names in `Host`).
    pub fn request(
        &self,
        url: &DrainUrl,
        drain: &DrainId,
    ) -> anyhow::Result<http::Request<http_body_util::Full<Bytes>>> {
        let host = if url.host().contains(':') {
            format!("[{}]:{}", url.host(), url.port())
        } else {
            format!("{}:{}", url.host(), url.port())
        };
        let mut request = http::Request::post(url.path_and_query())
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/logplex-1")
            .header(http::header::USER_AGENT, "wdeploy-logplex")
            .header("logplex-msg-count", self.lines)
            .header("logplex-frame-id", &self.frame_id)
            .header("logplex-drain-token", drain.as_str());
        if let Some((user, password)) = url.credentials() {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header(http::header::AUTHORIZATION, format!("Basic {token}"));
        }
        Ok(request.body(http_body_util::Full::new(self.body.clone()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogSource;
    use chrono::{DateTime, Utc};

    #[test]
    fn a_batch_is_the_framed_lines_with_logplex_headers() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let lines: Vec<Arc<LogLine>> = [("web.1", "one"), ("worker.1", "two")]
            .iter()
            .map(|(process, text)| {
                Arc::new(LogLine {
                    at,
                    kind: LogSource::App,
                    process: (*process).into(),
                    text: (*text).into(),
                })
            })
            .collect();
        let batch = Batch::new("hello", &lines);
        assert_eq!(
            &batch.body[..],
            b"62 <190>1 2026-11-26T10:00:00.000000+00:00 hello app web.1 - one\n\
              65 <190>1 2026-11-26T10:00:00.000000+00:00 hello app worker.1 - two\n"
        );
        let url: DrainUrl = "https://user:p%40ss@logs.example.com:8443/in?x=1"
            .parse()
            .unwrap();
        let id: DrainId = "d.9b0b4f60-1c2d-4e5f-8a9b-0c1d2e3f4a5b".parse().unwrap();
        let request = batch.request(&url, &id).unwrap();
        assert_eq!(request.uri(), "/in?x=1");
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("host"), "logs.example.com:8443");
        assert_eq!(header("content-type"), "application/logplex-1");
        assert_eq!(header("logplex-msg-count"), "2");
        assert_eq!(header("logplex-frame-id"), batch.frame_id);
        assert_eq!(header("logplex-drain-token"), id.as_str());
        // user:p@ss
        assert_eq!(header("authorization"), "Basic dXNlcjpwQHNz");
        let plain: DrainUrl = "http://[::1]:8080".parse().unwrap();
        let request = batch.request(&plain, &id).unwrap();
        assert_eq!(request.headers()["host"], "[::1]:8080");
        assert!(!request.headers().contains_key("authorization"));
    }
}
