//! [`LogBus`] in JetStream: each line a message on `wdeploy.logs.<app id>` (JSON
//! [`LogRecord`]), captured by the stream `WDEPLOY_LOGS`, which keeps the last
//! [`LOG_BUFFER`] of each app: the per-app log buffer, shared by the cluster, so a node
//! that starts (or comes back) shows the lines the others wrote before.
//!
//! Publishing never waits: a dyno's log writer only pushes into a bounded queue, and a
//! task of its own hands the lines to NATS with plain (core) publishes that the stream
//! captures, without waiting for a JetStream ack per line. Reading is an ordered consumer
//! from the oldest kept line, which resumes after the last line it delivered when NATS
//! comes back.

use crate::cluster::{Nats, unavailable};
use crate::error::Result;
use crate::log_bus::LogBus;
use crate::model::{AppId, LogRecord, NodeName};
use async_nats::jetstream::consumer::push::{self, OrderedErrorKind};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// The stream keeping the cluster's log lines.
pub const LOG_STREAM: &str = "WDEPLOY_LOGS";
/// Lines of app `<id>` go to `wdeploy.logs.<id>`.
pub const LOG_SUBJECT_PREFIX: &str = "wdeploy.logs.";
/// Lines kept per app (the log buffer a host keeps for each app).
pub const LOG_BUFFER: i64 = 1500;
/// Lines waiting to be published; more are dropped (and counted), never waited for.
pub const PUBLISH_QUEUE: usize = 16 * 1024;

/// How long a reader waits before making its consumer again after it failed.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// How often a reader looks at the connection, to make its consumer again after an
/// outage.
const CONNECTION_CHECK_EVERY: Duration = Duration::from_millis(200);

/// The cluster's [`LogBus`].
pub struct ClusterLogBus {
    nats: Nats,
    me: NodeName,
    /// Into the publishing task; it ends when this is dropped (and the queue drained).
    queue: mpsc::Sender<(AppId, LogRecord)>,
    dropped: Arc<AtomicU64>,
}

impl ClusterLogBus {
    /// Opens (creating if absent) the log stream and starts the task that publishes this
    /// node's lines.
    pub async fn open(nats: &Nats, me: NodeName) -> Result<ClusterLogBus> {
        nats.check()?;
        nats.js
            .get_or_create_stream(stream::Config {
                name: LOG_STREAM.to_string(),
                description: Some("wdeploy: the last log lines of each app".to_string()),
                subjects: vec![format!("{LOG_SUBJECT_PREFIX}>")],
                max_messages_per_subject: LOG_BUFFER,
                discard: DiscardPolicy::Old,
                storage: StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("opening the log stream {LOG_STREAM}: {e}")))?;
        let (queue, lines) = mpsc::channel(PUBLISH_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(forward(nats.client.clone(), lines, dropped.clone()));
        Ok(ClusterLogBus {
            nats: nats.clone(),
            me,
            queue,
            dropped,
        })
    }

    /// Lines this node could not hand to the others (its queue full, NATS away), since
    /// it opened the bus.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl LogBus for ClusterLogBus {
    fn publish(&self, app: &AppId, line: LogRecord) {
        if self.queue.try_send((app.clone(), line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn subscribe(&self) -> Result<BoxStream<'static, (AppId, LogRecord)>> {
        self.nats.check()?;
        let mut reader = Reader::new(&self.nats, self.me.clone());
        // The first consumer now, so a bus that cannot be read says so to the caller.
        reader.connect().await?;
        Ok(Box::pin(futures::stream::unfold(
            reader,
            |mut reader| async move {
                let line = reader.next().await;
                Some((line, reader))
            },
        )))
    }
}

/// Publishes the queued lines until the bus is dropped. While NATS is away the lines are
/// dropped at once: the client would otherwise buffer them in memory, or make this task
/// wait while the queue fills.
async fn forward(
    client: async_nats::Client,
    mut lines: mpsc::Receiver<(AppId, LogRecord)>,
    dropped: Arc<AtomicU64>,
) {
    while let Some((app, line)) = lines.recv().await {
        if !matches!(
            client.connection_state(),
            async_nats::connection::State::Connected
        ) {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let sent = match serde_json::to_vec(&line) {
            Ok(payload) => client
                .publish(format!("{LOG_SUBJECT_PREFIX}{app}"), payload.into())
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !sent {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Follows the log stream for one subscriber, remembering the last line it delivered so
/// that a consumer made again (after an outage, or when one fails) neither repeats nor
/// skips lines the stream still keeps.
///
/// The ordered consumer of async-nats makes itself again after an outage too, but backs
/// off up to 10 s between attempts while the server is away, and can miss an outage
/// shorter than its look at the connection; so this reader watches the connection itself
/// and makes a new consumer as soon as the connection is back.
struct Reader {
    nats: Nats,
    me: NodeName,
    /// Stream sequence of the last line delivered (0: none yet).
    last: u64,
    messages: Option<push::Ordered>,
    /// The client's count of connects when the consumer was made: another count means a
    /// reconnect since, which the consumer may not have survived.
    connects: u64,
    check: tokio::time::Interval,
}

impl Reader {
    fn new(nats: &Nats, me: NodeName) -> Reader {
        let mut check = tokio::time::interval(CONNECTION_CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Reader {
            nats: nats.clone(),
            me,
            last: 0,
            messages: None,
            connects: 0,
            check,
        }
    }

    fn connects(&self) -> u64 {
        self.nats
            .client
            .statistics()
            .connects
            .load(Ordering::Relaxed)
    }

    /// Makes the consumer: every app's lines from the one after `last` (the oldest kept
    /// when none).
    async fn connect(&mut self) -> Result<()> {
        self.nats.check()?;
        let connects = self.connects();
        let deliver_policy = match self.last {
            0 => DeliverPolicy::All,
            last => DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
        };
        let what = |e: &dyn std::fmt::Display| unavailable(format!("reading {LOG_STREAM}: {e}"));
        let messages = self
            .nats
            .js
            .create_consumer_on_stream(
                push::OrderedConfig {
                    deliver_subject: self.nats.client.new_inbox(),
                    description: Some("wdeploy log bus reader".to_string()),
                    filter_subject: format!("{LOG_SUBJECT_PREFIX}>"),
                    deliver_policy,
                    replay_policy: ReplayPolicy::Instant,
                    ..Default::default()
                },
                LOG_STREAM,
            )
            .await
            .map_err(|e| what(&e))?
            .messages()
            .await
            .map_err(|e| what(&e))?;
        self.messages = Some(messages);
        self.connects = connects;
        Ok(())
    }

    /// The next line of another node, waiting (and making the consumer again) as long as
    /// it takes.
    async fn next(&mut self) -> (AppId, LogRecord) {
        loop {
            let Some(messages) = self.messages.as_mut() else {
                if let Err(e) = self.connect().await {
                    tracing::debug!("log bus reader: {e}");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                continue;
            };
            let message = tokio::select! {
                message = messages.next() => message,
                _ = self.check.tick() => {
                    if !self.nats.is_connected() || self.connects() != self.connects {
                        self.messages = None;
                    }
                    continue;
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    // A gap makes the ordered consumer start again by itself; one that
                    // stopped hearing from the server is made again here.
                    tracing::debug!("log bus reader: {e}");
                    if matches!(e.kind(), OrderedErrorKind::MissingHeartbeat) {
                        self.messages = None;
                    }
                    continue;
                }
                None => {
                    self.messages = None;
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
            };
            if let Ok(info) = message.info() {
                self.last = info.stream_sequence;
            }
            let app = message
                .subject
                .strip_prefix(LOG_SUBJECT_PREFIX)
                .and_then(|id| id.parse::<AppId>().ok());
            let line = serde_json::from_slice::<LogRecord>(&message.payload);
            match (app, line) {
                (Some(app), Ok(line)) if line.node != self.me => return (app, line),
                (Some(_), Ok(_)) => {}
                _ => tracing::debug!(subject = %message.subject, "unreadable log line"),
            }
        }
    }
}

#[cfg(test)]
#[path = "log_bus_tests.rs"]
mod tests;
