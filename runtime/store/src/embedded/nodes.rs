//! A cluster of one: the embedded store's [`Nodes`] and [`LogBus`]. This host is the only
//! node, always alive; its dyno records live in memory (they describe this process).

use crate::error::{Result, StoreError};
use crate::log_bus::LogBus;
use crate::model::{AppId, DynoRecord, LogRecord, NodeDynos, NodeInfo, RestartRequest};
use crate::nodes::{ClusterKey, ClusterKeys, Nodes};
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
    /// The data directory's lock, held while the store is open: the only node.
    _lock: Option<std::fs::File>,
}

impl LocalNode {
    pub fn new(me: NodeInfo) -> Result<LocalNode> {
        Ok(LocalNode {
            me,
            dynos: Mutex::new(HashMap::new()),
            key: ClusterKey::generate()?,
            _lock: None,
        })
    }

    /// The node of the data directory `lock` is the lock of (see `super::lock`).
    pub(super) fn holding(me: NodeInfo, lock: std::fs::File) -> Result<LocalNode> {
        Ok(LocalNode {
            _lock: Some(lock),
            ..LocalNode::new(me)?
        })
    }
}

#[async_trait]
impl Nodes for LocalNode {
    fn me(&self) -> &NodeInfo {
        &self.me
    }
    async fn heartbeat(&self, _leaving: bool) -> Result<()> {
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
    /// Made at start: a host alone forwards to no one, so its key need not outlive it.
    async fn cluster_keys(&self) -> Result<ClusterKeys> {
        Ok(ClusterKeys {
            current: self.key.clone(),
            previous: None,
        })
    }
    async fn rotate_cluster_key(&self, _grace: std::time::Duration) -> Result<ClusterKeys> {
        Err(StoreError::Invalid(
            "this host is a cluster of one, on its embedded store: it forwards to no other \
             node, so its key protects nothing and there is nothing to rotate"
                .into(),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_alone_keeps_its_key_and_refuses_to_rotate_it() {
        let me = NodeInfo {
            name: "solo".parse().unwrap(),
            advertise: "127.0.0.1:8080".into(),
            started_at: chrono::Utc::now(),
            version: String::new(),
            leaving: false,
        };
        let node = LocalNode::new(me).unwrap();
        let keys = node.cluster_keys().await.unwrap();
        assert_eq!(keys.previous, None);
        let refused = node
            .rotate_cluster_key(std::time::Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Invalid(_)), "{refused}");
        assert!(refused.to_string().contains("cluster of one"), "{refused}");
        assert_eq!(node.cluster_keys().await.unwrap(), keys);
    }
}
