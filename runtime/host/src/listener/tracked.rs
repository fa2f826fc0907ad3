//! The service of one connection: every request timed by the connection's [`Clock`], and
//! each HTTP/2 stream counted against its client address's budget of requests in flight.

use super::clock::{Clock, InFlight};
use super::gate::{Gate, RequestPermit};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// What a client over its budget of requests in flight is told.
const TOO_MANY_REQUESTS: &[u8] = b"Too many requests in flight from this address\n";

/// A connection's service, whose requests are in flight from the call until their response
/// body is done.
#[derive(Clone)]
pub(super) struct Tracked<S> {
    inner: S,
    clock: Arc<Clock>,
    gate: Arc<Gate>,
    client: IpAddr,
}

impl<S> Tracked<S> {
    pub(super) fn new(inner: S, clock: Arc<Clock>, gate: Arc<Gate>, client: IpAddr) -> Tracked<S> {
        Tracked {
            inner,
            clock,
            gate,
            client,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> hyper::service::Service<hyper::Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = hyper::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let in_flight = self.clock.request_started();
        // An HTTP/1.1 connection carries one request at a time: its connection's place
        // at the gate bounds it already.
        let permit = match (req.version() == http::Version::HTTP_2)
            .then(|| self.gate.start_request(self.client))
        {
            None => None,
            Some(Ok(permit)) => Some(permit),
            Some(Err(why)) => {
                // Answered here, without reading the request or calling the service.
                self.gate.note_refusal(self.client, why);
                let refused = TrackedBody {
                    inner: None,
                    refusal: Some(TOO_MANY_REQUESTS),
                    _in_flight: in_flight,
                    _permit: None,
                };
                let mut response = hyper::Response::new(refused);
                *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
                let headers = response.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain"),
                );
                headers.insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
                return Box::pin(std::future::ready(Ok(response)));
            }
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody {
                inner: Some(inner),
                refusal: None,
                _in_flight: in_flight,
                _permit: permit,
            }))
        })
    }
}

/// A response body that ends its request's time in flight, and gives its place in the
/// address's budget back, when hyper drops it (written out, or the connection gone).
pub(super) struct TrackedBody<B> {
    /// The service's body; none for a request refused over the budget.
    inner: Option<B>,
    /// The refusal's text, until it is sent.
    refusal: Option<&'static [u8]>,
    _in_flight: InFlight,
    _permit: Option<RequestPermit>,
}

impl<B> Body for TrackedBody<B>
where
    B: Body + Unpin,
    B::Data: From<&'static [u8]>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match &mut self.inner {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(
                self.refusal
                    .take()
                    .map(|text| Ok(Frame::data(B::Data::from(text)))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self.refusal.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(self.refusal.map_or(0, |t| t.len() as u64)),
        }
    }
}
