//! `wdeploy:platform/queue`: the app's job queues, at-least-once with leases.

use super::AddonView;
use super::bindings::wdeploy::platform::queue;
use crate::metrics::Addon;
use std::time::Duration;
use wdeploy_store::AddonError;

type QueueResult<T> = wasmtime::Result<Result<T, queue::Error>>;

fn to_wit(e: AddonError) -> queue::Error {
    match e {
        AddonError::NoSuchJob(_) => queue::Error::NoSuchJob,
        AddonError::Backend(_) => queue::Error::Other("the job queue is unavailable".into()),
        e @ AddonError::AppGone => queue::Error::Other(e.to_string()),
        // A job over what the app's quota has left is over the host's limits, as the
        // WIT's `invalid` says (the message names the quota).
        e @ (AddonError::TooLarge { .. }
        | AddonError::Invalid(_)
        | AddonError::OverQuota { .. }) => queue::Error::Invalid(e.to_string()),
    }
}

impl queue::Host for AddonView<'_> {
    async fn enqueue(&mut self, queue: String, payload: Vec<u8>) -> QueueResult<u64> {
        let a = self.addons;
        Ok(a.report(
            Addon::Queue,
            a.store().enqueue(&a.tenant, &queue, payload).await,
        )
        .map_err(to_wit))
    }

    async fn take(&mut self, queue: String, lease_seconds: u32) -> QueueResult<Option<queue::Job>> {
        let lease = Duration::from_secs(u64::from(lease_seconds));
        let a = self.addons;
        let job = a.report(Addon::Queue, a.store().take(&a.tenant, &queue, lease).await);
        Ok(job.map_err(to_wit).map(|job| {
            job.map(|job| queue::Job {
                id: job.id,
                payload: job.payload,
                attempt: job.attempt,
            })
        }))
    }

    async fn ack(&mut self, id: u64) -> QueueResult<()> {
        let a = self.addons;
        Ok(a.report(Addon::Queue, a.store().ack(&a.tenant, id).await)
            .map_err(to_wit))
    }
}
