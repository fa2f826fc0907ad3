//! Driving a WASI 0.2 handler until its response head should go to the router.
//!
//! A handler sets its response (`response-outparam.set`) and then writes and finishes its
//! body, usually in one run: whatever the idiom (`writeln!` and `flush`,
//! `blocking-write-and-flush`, a few `write`s and `flush`es, one `write` then `finish`),
//! a small body fits in the host's body buffer (`guest::data::BODY_BUFFER_WRITES`), so no
//! write waits for the router. When the handler returns, the whole body is in hand and
//! goes out as one buffer with a `content-length` ([`super::ready_body`]).
//!
//! The one thing that used to split such a response was a pause that is not a wait: the
//! guest yields to its lane at every epoch tick (10 ms) and tokio makes a task yield
//! after 128 operations. Had the head been handed over at that yield, the router would
//! stream a body that the guest completes microseconds later, in chunks, with a wake-up
//! per chunk. So the head is held while the guest only yields (it woke itself and can go
//! on at once), and handed over as soon as the guest waits for something outside itself:
//! its body's reader once the body buffer is full (a large body), a timer (a slow one),
//! the request body, an outgoing request. A guest that computes on after answering holds
//! its head for at most [`MAX_HELD_YIELDS`] yields.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// Yields after the guest answered before its head goes out anyway: about this many
/// epoch ticks (10 ms each) of computing after `response-outparam.set`.
pub const MAX_HELD_YIELDS: u32 = 4;

/// What driving a handler's call came to.
pub enum Driven<T, R> {
    /// The call returned, with the response the guest set, if any: the body is complete.
    Returned(T, Option<R>),
    /// The guest set its response and is now waiting: the head goes out while it writes.
    Answered(R),
}

/// Polls `call` until it returns, or until the guest has answered (`answer` takes the
/// response it set, once) and then waits for something other than the CPU.
pub async fn until_answered<F: Future, R>(
    mut call: Pin<&mut F>,
    mut answer: impl FnMut() -> Option<R>,
) -> Driven<F::Output, R> {
    let mut answered = None;
    let mut held = 0;
    std::future::poll_fn(|cx| {
        let (polled, woke_itself) = poll_noticing_self_wake(call.as_mut(), cx);
        if answered.is_none() {
            answered = answer();
        }
        if let Poll::Ready(ended) = polled {
            return Poll::Ready(Driven::Returned(ended, answered.take()));
        }
        // tokio defers the wake of a task out of budget until its poll ends, so an
        // empty budget counts as a yield too.
        let yielded = woke_itself || !tokio::task::coop::has_budget_remaining();
        match answered.take() {
            None => Poll::Pending,
            Some(response) if yielded && held < MAX_HELD_YIELDS => {
                held += 1;
                answered = Some(response);
                // Only yielding: polled again after the lane's other tasks, head held.
                // (Woken here too, so a hold never waits on anything but the lane.)
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(response) => Poll::Ready(Driven::Answered(response)),
        }
    })
    .await
}

/// Polls `future` once and tells whether it woke its own task while being polled (a
/// yield: it returned `Pending` but can go on at once).
fn poll_noticing_self_wake<F: Future>(
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> (Poll<F::Output>, bool) {
    let noticing = Arc::new(Noticing {
        woken: AtomicBool::new(false),
        task: cx.waker().clone(),
    });
    let waker = Waker::from(noticing.clone());
    let polled = future.poll(&mut Context::from_waker(&waker));
    (polled, noticing.woken.load(Ordering::Acquire))
}

/// A waker that remembers it was woken and wakes the task it stands for.
struct Noticing {
    woken: AtomicBool,
    task: Waker,
}

impl Wake for Noticing {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// Yields once as wasmtime does at an epoch tick: wakes its task, then `Pending`.
    async fn yield_once() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                return Poll::Ready(());
            }
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await
    }

    /// A call that answers, yields `yields` times, then returns.
    async fn answers_then_yields(out: oneshot::Sender<&'static str>, yields: u32) -> u32 {
        let _ = out.send("head");
        for _ in 0..yields {
            yield_once().await;
        }
        yields
    }

    #[tokio::test]
    async fn a_call_that_only_yields_after_answering_returns_with_its_answer() {
        let (tx, mut rx) = oneshot::channel();
        let call = std::pin::pin!(answers_then_yields(tx, 2));
        match until_answered(call, || rx.try_recv().ok()).await {
            Driven::Returned(2, Some("head")) => {}
            _ => panic!("the head went out before the call returned"),
        }
    }

    #[tokio::test]
    async fn a_call_computing_on_after_answering_has_its_head_sent_after_a_few_yields() {
        let (tx, mut rx) = oneshot::channel();
        let mut call = std::pin::pin!(answers_then_yields(tx, MAX_HELD_YIELDS + 3));
        match until_answered(call.as_mut(), || rx.try_recv().ok()).await {
            Driven::Answered("head") => {}
            _ => panic!("the head was held for more than {MAX_HELD_YIELDS} yields"),
        }
        assert_eq!(call.await, MAX_HELD_YIELDS + 3);
    }

    #[tokio::test]
    async fn a_call_waiting_after_answering_has_its_head_sent_at_once() {
        let (tx, mut rx) = oneshot::channel();
        let (go_on, wait) = oneshot::channel::<()>();
        let mut call = std::pin::pin!(async move {
            let _ = tx.send("head");
            let _ = wait.await;
            "body written"
        });
        match until_answered(call.as_mut(), || rx.try_recv().ok()).await {
            Driven::Answered("head") => {}
            _ => panic!("the head was held while the guest waited"),
        }
        go_on.send(()).unwrap();
        assert_eq!(call.await, "body written");
    }

    #[tokio::test]
    async fn a_call_returning_without_an_answer_says_so() {
        let (tx, mut rx) = oneshot::channel::<&'static str>();
        let call = std::pin::pin!(async move {
            drop(tx);
            yield_once().await;
        });
        match until_answered(call, || rx.try_recv().ok()).await {
            Driven::Returned((), None) => {}
            _ => panic!("an answer appeared from nowhere"),
        }
    }
}
