//! A one-off dyno's stdin fed by its client (`wdeploy run --stdin`): the API hands the
//! request body's chunks to an [`InputSender`], the guest reads them through
//! [`ClientInput`] as its WASI stdin, and the end of the body is the end of its input.
//!
//! The channel holds a few chunks, so a client that sends faster than the guest reads
//! waits on its own upload (TCP flow control) and the host holds no more than that.

use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// Chunks in flight between the API and the guest.
const CHUNKS: usize = 4;

/// Where the client's bytes go; dropping it ends the guest's input (EOF).
pub type InputSender = mpsc::Sender<Bytes>;

/// The guest's side: an `AsyncRead` over the chunks the client sent.
pub struct ClientInput {
    chunks: mpsc::Receiver<Bytes>,
    /// What is left of the chunk being read.
    left: Bytes,
}

/// A new pipe from a client to a guest.
pub fn pipe() -> (InputSender, ClientInput) {
    let (tx, rx) = mpsc::channel(CHUNKS);
    (
        tx,
        ClientInput {
            chunks: rx,
            left: Bytes::new(),
        },
    )
}

impl AsyncRead for ClientInput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.left.is_empty() {
            match ready!(self.chunks.poll_recv(cx)) {
                Some(chunk) => self.left = chunk,
                // Every sender gone: the client's input ended.
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(self.left.len());
        let chunk = self.left.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_guest_reads_the_chunks_in_order_then_the_end() {
        let (tx, mut input) = super::pipe();
        let sending = tokio::spawn(async move {
            for chunk in ["hello ", "", "wor", "ld\n"] {
                tx.send(chunk.into()).await.expect("the guest reads");
            }
        });
        let mut small = [0u8; 4];
        let n = input.read(&mut small).await.expect("reads");
        assert_eq!(&small[..n], b"hell");
        let mut rest = String::new();
        input
            .read_to_string(&mut rest)
            .await
            .expect("reads to the end");
        assert_eq!(rest, "o world\n");
        sending.await.expect("sent");
    }
}
