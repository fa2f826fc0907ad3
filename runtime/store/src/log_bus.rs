//! Log lines between nodes: each node hands the lines its dynos, router and platform
//! write to the bus, and shows the lines of every other node's dynos of the same app.

use crate::error::Result;
use crate::model::{AppId, LogRecord};
use async_trait::async_trait;
use futures::stream::BoxStream;

/// The cluster's log transport. On the embedded store there are no other nodes: lines
/// stay in the host's own streams and the bus carries nothing.
#[async_trait]
pub trait LogBus: Send + Sync + 'static {
    /// Hands a line of `app` to the other nodes. Never waits: a line the bus cannot take
    /// now (the backend away, its buffer full) is dropped, so dynos never slow down.
    fn publish(&self, app: &AppId, line: LogRecord);
    /// Whether any other node hears what is published: when none can, writers need not
    /// copy their lines into records at all (the per-line cost of a cluster of one).
    fn carries_lines(&self) -> bool {
        true
    }
    /// Lines other nodes published: the ones still kept (at most the log buffer per app,
    /// oldest first), then live ones, in the order each node published them.
    async fn subscribe(&self) -> Result<BoxStream<'static, (AppId, LogRecord)>>;
}
