//! A cluster of one: the embedded store's [`Nodes`] and [`LogBus`]. This host is the only
//! node, always alive; its dyno records live in memory (they describe this process).

use crate::error::Result;
use crate::log_bus::LogBus;
use crate::model::{AppId, DynoRecord, LogRecord, NodeDynos, NodeInfo, RestartRequest};
use crate::nodes::{ClusterKey, Nodes};
use async_trait::async_trait;
use futures::stream::BoxStream;
use parking_lot::Mutex;
use std::collections::HashMap;

pub struct LocalNode {
    me: NodeInfo,
    dynos: Mutex<HashMap<AppId, Vec<DynoRecord>>>,
    /// This process's own: no other node ever forwards to this one, so nothing needs
    /// the key to outlive it.
    key: ClusterKey,
}

impl LocalNode {
    pub fn new(me: NodeInfo) -> Result<LocalNode> {
        Ok(LocalNode {
            me,
            dynos: Mutex::new(HashMap::new()),
            key: ClusterKey::generate()?,
        })
    }
}

#[async_trait]
impl Nodes for LocalNode {
    fn me(&self) -> &NodeInfo {
        &self.me
    }
    async fn heartbeat(&self) -> Result<()> {
        Ok(())
    }
    async fn leave(&self) -> Result<()> {
        Ok(())
    }
    async fn live(&self) -> Result<Vec<NodeInfo>> {
        Ok(vec![self.me.clone()])
    }
    async fn set_dynos(&self, app: &AppId, dynos: Vec<DynoRecord>) -> Result<()> {
        let mut all = self.dynos.lock();
        if dynos.is_empty() {
            all.remove(app);
        } else {
            all.insert(app.clone(), dynos);
        }
        Ok(())
    }
    async fn dynos(&self, app: &AppId) -> Result<Vec<NodeDynos>> {
        Ok(self
            .dynos
            .lock()
            .get(app)
            .map(|dynos| NodeDynos {
                node: self.me.name.clone(),
                dynos: dynos.clone(),
            })
            .into_iter()
            .collect())
    }
    /// This host restarts its own dynos itself; there is no other node to ask.
    async fn request_restart(&self, _app: &AppId, dyno: Option<&str>) -> Result<RestartRequest> {
        Ok(RestartRequest {
            number: 0,
            dyno: dyno.map(str::to_string),
        })
    }
    async fn restart_request(&self, _app: &AppId) -> Result<Option<RestartRequest>> {
        Ok(None)
    }
    /// Nothing changes behind this host's back: it acts on every change itself.
    async fn changes(&self) -> Result<BoxStream<'static, ()>> {
        Ok(Box::pin(futures::stream::pending()))
    }
    fn is_connected(&self) -> bool {
        true
    }
    async fn cluster_key(&self) -> Result<ClusterKey> {
        Ok(self.key.clone())
    }
}

/// No other node to hear the lines.
pub struct NoBus;

#[async_trait]
impl LogBus for NoBus {
    fn publish(&self, _app: &AppId, _line: LogRecord) {}
    fn carries_lines(&self) -> bool {
        false
    }
    async fn subscribe(&self) -> Result<BoxStream<'static, (AppId, LogRecord)>> {
        Ok(Box::pin(futures::stream::pending()))
    }
}
