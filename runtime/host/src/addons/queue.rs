//! `wdeploy:platform/queue`: the app's job queues, at-least-once with leases.

use super::AddonView;
use super::bindings::wdeploy::platform::queue;
use std::time::Duration;
use wdeploy_store::AddonError;

type QueueResult<T> = wasmtime::Result<Result<T, queue::Error>>;

fn to_wit(e: AddonError) -> queue::Error {
    match e {
        AddonError::NoSuchJob(_) => queue::Error::NoSuchJob,
        AddonError::Db(_) => queue::Error::Other("the job queue is unavailable".into()),
        e @ (AddonError::TooLarge { .. } | AddonError::Invalid(_)) => {
            queue::Error::Invalid(e.to_string())
        }
    }
}

impl queue::Host for AddonView<'_> {
    async fn enqueue(&mut self, queue: String, payload: Vec<u8>) -> QueueResult<u64> {
        Ok(self
            .addons
            .blocking(move |s, app| s.enqueue(app, &queue, &payload))
            .await?
            .map_err(to_wit))
    }

    async fn take(&mut self, queue: String, lease_seconds: u32) -> QueueResult<Option<queue::Job>> {
        let lease = Duration::from_secs(u64::from(lease_seconds));
        let job = self
            .addons
            .blocking(move |s, app| s.take(app, &queue, lease))
            .await?;
        Ok(job.map_err(to_wit).map(|job| {
            job.map(|job| queue::Job {
                id: job.id,
                payload: job.payload,
                attempt: job.attempt,
            })
        }))
    }

    async fn ack(&mut self, id: u64) -> QueueResult<()> {
        Ok(self
            .addons
            .blocking(move |s, app| s.ack(app, id))
            .await?
            .map_err(to_wit))
    }
}
