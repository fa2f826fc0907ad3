//! Turning a guest's response body that is already complete into one buffer.
//!
//! Most handlers set their response and finish writing the body before they return, in
//! whatever idiom they write it (see [`super::drive`], which holds the head until then).
//! When that has happened, the body's frames are all waiting in wasmtime-wasi-http's
//! channel; reading them now lets hyper send a `content-length` response in a single write
//! instead of a chunk, a wake-up and a final chunk, which on loopback is most of a
//! request's cost.

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::Frame;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Bodies larger than this keep streaming: buffering them would only add latency.
const MAX_BUFFERED: usize = 256 << 10;

/// The same body, as a single buffer when every frame is ready now and it has no
/// trailers; otherwise the frames read so far followed by the rest of the stream.
pub fn collect_ready(mut body: HyperOutgoingBody) -> HyperOutgoingBody {
    let mut buffered = BytesMut::new();
    let mut held: Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>> = None;
    while buffered.len() <= MAX_BUFFERED {
        match body.frame().now_or_never() {
            // The end of the body: everything is in hand.
            Some(None) => {
                return Full::new(buffered.freeze())
                    .map_err(|never| match never {})
                    .boxed_unsync();
            }
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => buffered.extend_from_slice(&data),
                // Trailers: stream them after the data as they are.
                Err(frame) => {
                    held = Some(Ok(frame));
                    break;
                }
            },
            Some(Some(Err(e))) => {
                held = Some(Err(e));
                break;
            }
            // The guest is still writing.
            None => break,
        }
    }
    let mut first = Vec::with_capacity(2);
    if !buffered.is_empty() {
        first.push(Ok(Frame::data(buffered.freeze())));
    }
    first.extend(held);
    if first.is_empty() {
        return body;
    }
    StreamBody::new(futures::stream::iter(first).chain(BodyStream::new(body))).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body;

    fn boxed(chunks: Vec<&'static str>) -> HyperOutgoingBody {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, wasmtime_wasi_http::Error>(Frame::data(Bytes::from(c))));
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_complete_body_becomes_one_buffer_with_a_length() {
        let body = collect_ready(boxed(vec!["hello ", "world"]));
        assert_eq!(body.size_hint().exact(), Some(11));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello world");
    }

    #[tokio::test]
    async fn a_body_still_being_written_keeps_streaming() {
        let (tx, rx) =
            futures::channel::mpsc::channel::<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>(4);
        let mut tx = tx;
        tx.try_send(Ok(Frame::data(Bytes::from("first ")))).unwrap();
        let body = collect_ready(StreamBody::new(rx).boxed_unsync());
        assert_eq!(body.size_hint().exact(), None);
        tx.try_send(Ok(Frame::data(Bytes::from("second")))).unwrap();
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "first second");
    }
}
