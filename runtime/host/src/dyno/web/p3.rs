//! A web dyno's WASI 0.3 (component-model async) requests: the same instances, limits
//! and reuse as WASI 0.2 ones, run in wasmtime's concurrent scheduler.

use super::{Answered, DynoError, Inner, Warm};
use crate::dyno::absolute_uri::with_absolute_uri;
use crate::guest::data::StoreData;
use crate::guest::instance::{DeadlineExceeded, describe_failure};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use wasmtime::AsContextMut;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::Prepared;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

impl Inner {
    /// [`Inner::serve`] for a WASI 0.3 handler. It runs in wasmtime's concurrent
    /// scheduler, which must keep running after the handler has returned its response:
    /// the guest writes the body from tasks of its own, so the request ends when the
    /// instance has no such task left.
    pub(super) async fn serve_async(
        self: &Arc<Self>,
        mut warm: Warm,
        req: hyper::Request<Incoming>,
        deadline: Instant,
        head: oneshot::Sender<Result<hyper::Response<HyperOutgoingBody>, DynoError>>,
    ) {
        use http_body_util::BodyExt as _;
        let req = with_absolute_uri(req).map(|body| body.map_err(Into::into).boxed_unsync());
        let (sender, mut receiver) = futures::channel::oneshot::channel();
        warm.store.data_mut().deadline = Some(deadline);
        // `Some(head)` while the guest has not answered.
        let (unanswered, result) = {
            let Warm { store, proxy, .. } = &mut warm;
            let prepared = match Prepared::new(
                store.as_context_mut(),
                proxy,
                req,
                <StoreData as WasiHttpView>::http,
                sender,
            ) {
                Ok(prepared) => prepared,
                Err(e) => {
                    let _ = head.send(Err(DynoError::Boot(format!("{e:#}"))));
                    return;
                }
            };
            let run = store.run_concurrent(async |accessor| {
                prepared.run(accessor, std::future::pending()).await?;
                std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                wasmtime::Result::Ok(())
            });
            // The epoch callback stops a guest that computes past its deadline; one that
            // only waits (a timer, a task that never ends) is stopped here, so a request
            // holds its instance no longer than a WASI 0.2 one could.
            let mut run = Box::pin(async move {
                match tokio::time::timeout_at(deadline.into(), run).await {
                    Ok(ran) => ran,
                    Err(_) => Err(wasmtime::Error::new(DeadlineExceeded)),
                }
            });
            let (response, ran) = tokio::select! {
                biased;
                response = &mut receiver => (response.ok(), None),
                ran = &mut run => (receiver.try_recv().ok().flatten(), Some(ran)),
            };
            let answer = response
                .map(|response| response.map_err(|e| DynoError::Guest(describe_failure(&e))));
            let unanswered = match answer {
                Some(answer) => {
                    let _ = head.send(answer);
                    None
                }
                None => Some(head),
            };
            // The guest writes its body (or winds down) until its last task ends.
            let ran = match ran {
                Some(ran) => ran,
                None => run.await,
            };
            (unanswered, ran.and_then(|ran| ran))
        };
        warm.store.data_mut().deadline = None;
        match unanswered {
            None => {
                let _ = self.finish(warm, result, Answered::Yes);
            }
            Some(head) => {
                let outcome = self.finish(warm, result, Answered::No);
                let _ = head.send(outcome.and(Err(DynoError::NoResponse)));
            }
        }
    }
}
