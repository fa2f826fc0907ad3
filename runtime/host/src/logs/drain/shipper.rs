//! A drain's shipper: the task that takes lines from the drain's bounded queue, frames
//! them and sends them, keeping its connection between batches.
//!
//! Nothing here can slow a dyno or the router: they only ever `try_send` into the queue
//! ([`super::Outlet::offer`]); what does not fit is counted ([`super::overflow`]). A send
//! that fails (refused, reset, a non-2xx answer, no answer within [`SEND_TIMEOUT`]) is
//! retried on a new connection after a back-off (1, 2, 4, 8 s); a batch that failed
//! [`ATTEMPTS`] times is given up and its lines counted as dropped, so one bad batch
//! cannot wedge the drain.

use super::logplex::{self, Batch};
use super::net::{DrainNetwork, Stream};
use super::overflow::Overflow;
use crate::logs::LogLine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wdeploy_core::{DrainId, DrainUrl};

/// How long one batch may take to go out (and, for HTTP, be answered).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries per batch.
const ATTEMPTS: u32 = 5;
/// The most a receiver's answer to a POST may hold (it is read and dropped).
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// Lines one syslog write carries (as many as are waiting, up to this).
const SYSLOG_BATCH: usize = 1000;

pub(super) struct Shipper {
    pub app: String,
    pub id: DrainId,
    pub url: DrainUrl,
    pub queue: mpsc::Receiver<Arc<LogLine>>,
    pub queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
    pub overflow: Arc<Overflow>,
    pub network: DrainNetwork,
    pub stop: CancellationToken,
}

/// An open connection to the receiver.
enum Link {
    Syslog(Box<dyn Stream>),
    Http(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
}

impl Shipper {
    pub(super) async fn run(mut self) {
        let mut link = None;
        let mut failing = false;
        let max = if self.url.scheme().http() {
            logplex::MAX_LINES
        } else {
            SYSLOG_BATCH
        };
        loop {
            let first = tokio::select! {
                () = self.stop.cancelled() => return,
                line = self.queue.recv() => match line {
                    Some(line) => line,
                    None => return,
                },
            };
            let mut lines = vec![first];
            let mut bytes = lines[0].text.len();
            while lines.len() < max && bytes < logplex::MAX_BYTES {
                match self.queue.try_recv() {
                    Ok(line) => {
                        bytes += line.text.len();
                        lines.push(line);
                    }
                    Err(_) => break,
                }
            }
            self.queued_bytes
                .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
            let batch = Batch::new(&self.app, &lines);
            drop(lines);
            let mut attempt = 0;
            loop {
                let sent = tokio::select! {
                    () = self.stop.cancelled() => return,
                    sent = tokio::time::timeout(SEND_TIMEOUT, self.send(&mut link, &batch)) => sent,
                };
                let error = match sent {
                    Ok(Ok(())) => {
                        if failing {
                            tracing::info!(app = %self.app, drain = %self.id, "the drain to {} takes lines again", self.url.redacted());
                            failing = false;
                        }
                        break;
                    }
                    Ok(Err(e)) => e,
                    Err(_) => anyhow::anyhow!("no answer within {SEND_TIMEOUT:?}"),
                };
                link = None;
                attempt += 1;
                if !failing {
                    tracing::warn!(app = %self.app, drain = %self.id, "the drain to {} fails (retrying): {error:#}", self.url.redacted());
                    failing = true;
                }
                if attempt >= ATTEMPTS {
                    self.overflow.count(batch.lines as u64);
                    break;
                }
                let pause = Duration::from_secs(1 << (attempt - 1));
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// Sends one batch over `link`, connecting first if there is none.
    async fn send(&self, link: &mut Option<Link>, batch: &Batch) -> anyhow::Result<()> {
        let reusable = match link {
            Some(Link::Http(sender)) => !sender.is_closed(),
            Some(Link::Syslog(_)) => true,
            None => false,
        };
        if !reusable {
            *link = Some(self.connect().await?);
        }
        match link {
            Some(Link::Syslog(stream)) => {
                stream.write_all(&batch.body).await?;
                stream.flush().await?;
            }
            Some(Link::Http(sender)) => {
                sender.ready().await?;
                let response = sender
                    .send_request(batch.request(&self.url, &self.id)?)
                    .await?;
                let status = response.status();
                // Read (and drop) the answer so the connection can carry the next batch.
                let answer = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES);
                if answer.collect().await.is_err() {
                    *link = None;
                }
                anyhow::ensure!(status.is_success(), "the receiver answered {status}");
            }
            None => {}
        }
        Ok(())
    }

    async fn connect(&self) -> anyhow::Result<Link> {
        let stream = self.network.connect(&self.url).await?;
        if !self.url.scheme().http() {
            return Ok(Link::Syslog(stream));
        }
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        // The connection runs beside the shipper and ends with it (its sender dropped).
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Link::Http(sender))
    }
}
