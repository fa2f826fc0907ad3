//! `nodes`: the cluster's live nodes as an admin sees them, each with the cluster key it
//! proves itself with, found by opening the hop to it as a forward would. After a
//! rotation (`cluster_keys`), every node shows the new key once it has read it; a node
//! this one cannot reach says why.

use super::Host;
use super::errors::Result;
use wdeploy_api::wire::NodeStatus;

impl Host {
    /// `nodes` (an admin's): the live nodes, and the key each proves itself with, found by
    /// opening the hop to each as a forward would (all at once, a second each at most).
    pub(super) async fn node_list(&self) -> Result<Vec<NodeStatus>> {
        let me = &self.store.nodes.me().name;
        let live = self.store.nodes.live().await?;
        let statuses = live.into_iter().map(|node| async move {
            let this = node.name == *me;
            let (key, unreachable) = match this {
                true => (self.router.node_key_id(), None),
                false => match self
                    .router
                    .peers()
                    .probe(node.name.as_str(), &node.advertise)
                    .await
                {
                    Ok(key) => (Some(key), None),
                    Err(why) => (None, Some(why)),
                },
            };
            NodeStatus {
                name: node.name.to_string(),
                advertise: node.advertise,
                started_at: node.started_at,
                version: node.version,
                this,
                key,
                unreachable,
                leaving: node.leaving,
            }
        });
        Ok(futures::future::join_all(statuses).await)
    }
}
