//! The calls this node makes to the other nodes of its cluster, and takes from them,
//! over the hop between their routers ([`crate::router::node_calls`]): what a client's
//! API call asks of something another node holds (a one-off's input, a release going
//! live there) is done there, so that any node's API serves every call.

use super::Host;
use super::errors::ControlError;
use super::one_offs::feed;
use crate::app::InputError;
use crate::router::node_calls::{Asked, NodeCall};
use wdeploy_api::ApiError;
use wdeploy_api::server::BlobStream;
use wdeploy_store::StoreError;

impl Host {
    /// Makes `call` of `node`, with `body`, and answers as it did.
    pub(super) async fn call_node<B>(
        &self,
        node: &str,
        call: NodeCall,
        body: B,
    ) -> Result<(), ApiError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let unreachable = |why: &str| {
            ApiError::new(
                503,
                "unavailable",
                format!("node {node}, which must do this, cannot be reached: {why}"),
            )
        };
        let live = self.membership.live();
        let Some(addr) = live
            .iter()
            .find(|n| n.name.as_str() == node)
            .map(|n| n.advertise.clone())
            .filter(|addr| !addr.is_empty())
        else {
            return Err(unreachable(
                "it is not live, or advertises no router address",
            ));
        };
        let request = call.request(body)?;
        let response = self.router.peers().call(node, &addr, request).await;
        NodeCall::answer(node, response.map_err(|why| unreachable(&why))?).await
    }

    /// A call another node sent on to this one (the router serves them with this).
    /// Never sent on again: what is not here now has ended, or was never here.
    pub(super) async fn serve_node_call(
        &self,
        call: NodeCall,
        input: BlobStream,
    ) -> Result<(), ApiError> {
        let gone = || match &call.what {
            Asked::OneOffInput { dyno } => format!("no one-off dyno {dyno} is running"),
            Asked::CancelRelease { version } => {
                format!("v{version} of {} is not going live", call.app)
            }
        };
        let record = match self.store.control.app(&call.app).await {
            Ok(record) if record.id == call.app_id => record,
            Ok(_) | Err(StoreError::NotFound(_)) => return Err(ApiError::not_found(gone())),
            Err(e) => return Err(ControlError::from(e).into()),
        };
        let entry = self.entry_for(&record);
        let by = &call.by;
        match &call.what {
            Asked::OneOffInput { dyno } => {
                let sender = match entry.runtime.take_one_off_input(dyno) {
                    Ok(sender) => sender,
                    Err(InputError::NotHere(_)) => return Err(ApiError::not_found(gone())),
                    Err(e) => return Err(ApiError::conflict(e.to_string())),
                };
                tracing::debug!(app = %call.app, dyno, by, "a one-off's input from another node");
                feed(sender, input).await;
            }
            Asked::CancelRelease { version } => {
                let Some(going) = entry.cancel_in_progress(Some(*version)) else {
                    return Err(ApiError::not_found(gone()));
                };
                entry.runtime.logs.platform(
                    "api",
                    format!("Cancelling v{version} by {by} through another node"),
                );
                going.finished.cancelled().await;
            }
        }
        Ok(())
    }
}
