//! The cluster's key (`cluster:rotate-key`): rotating it, and every node following it.
//!
//! The nodes derive the TLS between them from the key in the store
//! ([`crate::cluster::node_tls`]). A rotation writes a new key and keeps the one it
//! replaced trusted for a grace; each node reads the keys every [`KEYS_EVERY`] and makes
//! its TLS anew when they changed: on the new key, still trusting the old one, until the
//! grace ends, then on the new one alone, closing what connections the old one made.
//! A node that has not read the new key yet keeps forwarding and being forwarded to
//! meanwhile, so a rotation fails no request. What a leaked key (a retired node's) could
//! do ends with the grace.

use super::Host;
use super::errors::{ControlError, Result};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wdeploy_api::ApiError;
use wdeploy_api::server::Caller;
use wdeploy_api::wire::{KeyRotation, RotatedKey};
use wdeploy_store::ClusterKeys;

/// How often a node reads the cluster's keys: every node has read a rotation well
/// within the shortest grace a rotation may have.
pub(super) const KEYS_EVERY: Duration = Duration::from_secs(2);
/// The shortest grace: a few of [`KEYS_EVERY`], so that every live node reads the new
/// key before the old one stops working.
pub const MIN_GRACE: Duration = Duration::from_secs(10);

impl Host {
    /// Follows the cluster's keys until `stop`.
    pub(super) async fn follow_keys(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(KEYS_EVERY) => {}
            }
            self.follow_keys_now().await;
        }
    }

    async fn follow_keys_now(&self) {
        let keys = match self.store.nodes.cluster_keys().await {
            Ok(keys) => Some(keys),
            Err(e) => {
                // The grace of a key read before still ends on time.
                tracing::debug!("reading the cluster's keys: {e}");
                None
            }
        };
        self.follow_keys_read(keys.as_ref());
    }

    /// Makes this node's TLS that of `keys` (`None`: the keys read last), and says so.
    fn follow_keys_read(&self, keys: Option<&ClusterKeys>) {
        match self.router.follow_cluster_keys(keys) {
            Ok(false) => {}
            Ok(true) => match keys.and_then(|k| k.previous.as_ref()) {
                Some((_, until)) if chrono::Utc::now() < *until => tracing::info!(
                    "the cluster's key was rotated: this node proves itself with the new one, \
                     and trusts the one before until {}",
                    until.to_rfc3339()
                ),
                _ => tracing::info!(
                    "the cluster's previous key is trusted no more: connections made with it \
                     are closed"
                ),
            },
            Err(e) => tracing::warn!("making the TLS between nodes from the cluster's keys: {e:#}"),
        }
    }

    /// `cluster:rotate-key` (an admin's): a new key, the old one trusted for `grace`.
    pub(super) async fn rotate_key(&self, by: &Caller, req: KeyRotation) -> Result<RotatedKey> {
        let grace = Duration::from_secs(req.grace_seconds);
        if grace < MIN_GRACE {
            return Err(ControlError::Api(ApiError::invalid(format!(
                "a grace of {}s is too short: every node must read the new key before the old \
                 one stops working; give at least {}s",
                req.grace_seconds,
                MIN_GRACE.as_secs()
            ))));
        }
        let keys = self.store.nodes.rotate_cluster_key(grace).await?;
        tracing::info!(by = %by, "the cluster's key is rotated");
        // This node at once; the others at their next read.
        self.follow_keys_read(Some(&keys));
        let Some((_, previous_trusted_until)) = keys.previous else {
            return Err(ControlError::Api(ApiError::internal(
                "the rotation kept no previous key",
            )));
        };
        Ok(RotatedKey {
            previous_trusted_until,
        })
    }
}
