//! Reading the current value of every key a filter matches in a KV bucket, without
//! scanning the rest of the bucket: an ordered consumer on the filter, delivering the last
//! message of each subject. Shared by the add-ons (an app's keys, a queue's jobs) and the
//! nodes (heartbeats, an app's dyno records).

use super::{CALL_TIMEOUT, Nats};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;

/// How long a scan waits for its next key before asking the server whether any are left.
const QUIET: Duration = Duration::from_millis(100);

/// One key's current value and its revision.
pub(crate) struct Scanned {
    pub key: String,
    pub revision: u64,
    pub value: Bytes,
}

/// The current value of every key of `bucket` matching `filter` (NATS wildcards), deleted
/// and expired keys left out; with `headers_only` the values are left empty (listing keys
/// without moving their data). The error says what failed; callers map it onto their own
/// "unavailable" error.
pub(crate) async fn last_values(
    nats: &Nats,
    bucket: &kv::Store,
    filter: &str,
    headers_only: bool,
) -> Result<Vec<Scanned>, String> {
    let consumer = bucket
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: nats.client.new_inbox(),
            description: Some("wdeploy scan".to_string()),
            filter_subject: format!("{}{filter}", bucket.prefix),
            headers_only,
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let name = consumer.cached_info().name.clone();
    let _cleanup = DeleteConsumer {
        stream: bucket.stream.clone(),
        name: name.clone(),
    };
    // Nothing matches: no message will come to say so.
    if consumer.cached_info().num_pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    loop {
        let next = match tokio::time::timeout(QUIET, messages.next()).await {
            Ok(next) => next,
            // Keys counted when the consumer was made may have gone since (a job acked,
            // a heartbeat expired): no message will come for them.
            Err(_) => {
                let left = bucket.stream.consumer_info(&name).await;
                if left.is_ok_and(|info| info.num_pending == 0) {
                    return Ok(found);
                }
                if tokio::time::Instant::now() > deadline {
                    return Err("timed out".to_string());
                }
                continue;
            }
        };
        let message = next
            .ok_or("the listing ended early")?
            .map_err(|e| e.to_string())?;
        let info = message.info().map_err(|e| e.to_string())?;
        let (revision, pending) = (info.stream_sequence, info.pending);
        if is_value(&message.message)
            && let Some(key) = message.subject.strip_prefix(bucket.prefix.as_str())
        {
            found.push(Scanned {
                key: key.to_string(),
                revision,
                value: message.payload.clone(),
            });
        }
        if pending == 0 {
            return Ok(found);
        }
    }
}

/// Whether a KV message holds a value (not a delete, a purge or an expiry marker).
fn is_value(message: &async_nats::Message) -> bool {
    let Some(headers) = message.headers.as_ref() else {
        return true;
    };
    let operation = headers.get("KV-Operation").map(|v| v.as_str());
    matches!(operation, None | Some("PUT")) && headers.get("Nats-Marker-Reason").is_none()
}

/// Deletes a scan's consumer when the scan ends, rather than leaving it to the server's
/// inactivity timer (each scan would otherwise leave one behind for 30 s).
struct DeleteConsumer {
    stream: async_nats::jetstream::stream::Stream,
    name: String,
}

impl Drop for DeleteConsumer {
    fn drop(&mut self) {
        let (stream, name) = (self.stream.clone(), std::mem::take(&mut self.name));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Gone already (NATS restarted) or NATS away: the server drops it anyway.
                let _ = stream.delete_consumer(&name).await;
            });
        }
    }
}
