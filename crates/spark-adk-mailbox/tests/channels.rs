//! Tests of the channel module (`spark_adk_mailbox::channel`): bounded and unbounded channels,
//! backpressure, closing from either side, messages handed back on every failed delivery, and
//! the forwarding sender's default metadata.
//!
//! "Pending" is checked by polling a future once by hand, never by sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use serde_json::json;
use spark_adk_core::{ChannelMessage, NodeMessage};
use spark_adk_mailbox::channel::{bounded, unbounded, ForwardingSender, SendError, TrySendError};

/// A message tagged `n` (in its payload and its metadata).
fn msg(n: i64) -> ChannelMessage {
    ChannelMessage::new(NodeMessage::from(json!({ "n": n }))).with_metadata("n", n)
}

fn tag(m: &ChannelMessage) -> i64 {
    m.payload.content["n"].as_i64().unwrap()
}

/// Awaiting with a guard: a future that should complete but never does fails the test instead
/// of hanging it.
trait Guarded: Future + Sized {
    async fn guarded(self) -> Self::Output {
        tokio::time::timeout(Duration::from_secs(10), self)
            .await
            .unwrap_or_else(|_| panic!("a channel operation hung"))
    }
}

impl<F: Future> Guarded for F {}

/// Polls `fut` once; `true` when it is still pending.
async fn is_pending<F: Future>(fut: &mut Pin<&mut F>) -> bool {
    poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await
}

#[tokio::test]
async fn bounded_send_waits_when_full_then_proceeds_after_a_recv() {
    let (tx, mut rx) = bounded(1);
    tx.send(msg(1)).await.unwrap();

    let mut second = pin!(tx.send(msg(2)));
    assert!(
        is_pending(&mut second).await,
        "send on a full channel did not wait"
    );
    assert!(is_pending(&mut second).await);

    assert_eq!(tag(&rx.recv().await.unwrap()), 1);
    second.guarded().await.unwrap();
    assert_eq!(tag(&rx.recv().await.unwrap()), 2);
}

#[tokio::test]
async fn capacity_zero_is_raised_to_one() {
    let (tx, mut rx) = bounded(0);
    tx.try_send(msg(1)).unwrap();
    assert!(matches!(tx.try_send(msg(2)), Err(TrySendError::Full(_))));
    assert_eq!(tag(&rx.recv().await.unwrap()), 1);
}

#[tokio::test]
async fn try_send_hands_back_the_message_on_full_and_closed() {
    let (tx, _rx) = bounded(1);
    tx.try_send(msg(1)).unwrap();
    match tx.try_send(msg(2)) {
        Err(TrySendError::Full(m)) => {
            assert_eq!(tag(&m), 2);
            assert_eq!(m.metadata["n"], 2);
        }
        other => panic!("expected Full, got {other:?}"),
    }

    tx.close();
    match tx.try_send(msg(3)) {
        Err(TrySendError::Closed(m)) => assert_eq!(tag(&m), 3),
        other => panic!("expected Closed, got {other:?}"),
    }
    let (utx, _urx) = unbounded();
    utx.close();
    let err = utx.try_send(msg(4)).unwrap_err();
    assert!(matches!(err, TrySendError::Closed(_)));
    assert_eq!(tag(&err.into_message()), 4);
}

#[tokio::test]
async fn close_wakes_a_waiting_receiver() {
    for capacity in [None, Some(4)] {
        let (tx, mut rx) = match capacity {
            Some(c) => bounded(c),
            None => unbounded(),
        };
        let mut recv = pin!(rx.recv());
        assert!(is_pending(&mut recv).await);

        // The sender is still alive: only the close can end the wait.
        tx.close();

        assert!(recv.guarded().await.is_none(), "capacity {capacity:?}");
        assert!(tx.is_closed());
    }
}

#[tokio::test]
async fn queued_messages_can_be_drained_after_close() {
    for close_from_receiver in [false, true] {
        let (tx, mut rx) = bounded(8);
        for n in 0..3 {
            tx.send(msg(n)).await.unwrap();
        }
        if close_from_receiver {
            rx.close();
        } else {
            tx.close();
        }
        assert_eq!(rx.len(), 3);
        let drained: Vec<i64> = [
            rx.recv().await.unwrap(),
            rx.try_recv().unwrap(),
            rx.recv().await.unwrap(),
        ]
        .iter()
        .map(tag)
        .collect();
        assert_eq!(drained, [0, 1, 2]);
        assert!(rx.recv().guarded().await.is_none());
        assert!(rx.is_empty());
    }
}

#[tokio::test]
async fn send_after_close_returns_the_message() {
    for close_from_receiver in [false, true] {
        let (tx, mut rx) = bounded(8);
        if close_from_receiver {
            rx.close();
        } else {
            tx.close();
        }
        let SendError(m) = tx.send(msg(7)).await.unwrap_err();
        assert_eq!(tag(&m), 7);
        assert_eq!(m.metadata["n"], 7);
    }
    let (tx, rx) = unbounded();
    drop(rx);
    let SendError(m) = tx.send(msg(8)).await.unwrap_err();
    assert_eq!(tag(&m), 8);
}

#[tokio::test]
async fn a_sender_waiting_on_a_full_channel_gets_its_message_back_on_close() {
    for close_from_receiver in [false, true] {
        let (tx, mut rx) = bounded(1);
        tx.send(msg(1)).await.unwrap();
        let other = tx.clone();
        let mut waiting = pin!(other.send(msg(2)));
        assert!(is_pending(&mut waiting).await);

        if close_from_receiver {
            rx.close();
        } else {
            tx.close();
        }

        let SendError(m) = waiting.guarded().await.unwrap_err();
        assert_eq!(tag(&m), 2, "close_from_receiver: {close_from_receiver}");
        // The message queued before the close is still there; the handed-back one is not.
        assert_eq!(tag(&rx.recv().await.unwrap()), 1);
        assert!(rx.recv().guarded().await.is_none());
    }
}

#[tokio::test]
async fn forwarding_sender_adds_default_metadata_and_the_messages_own_metadata_wins() {
    let (tx, mut rx) = bounded(4);
    let fwd = ForwardingSender::new(tx)
        .with_default("source", "sensor")
        .with_default("n", 99);

    fwd.send(msg(1)).await.unwrap();
    fwd.try_send(ChannelMessage::new(NodeMessage::empty()))
        .unwrap();

    let first = rx.recv().await.unwrap();
    assert_eq!(first.metadata["source"], "sensor");
    assert_eq!(
        first.metadata["n"], 1,
        "the default overwrote the message's own value"
    );
    let second = rx.recv().await.unwrap();
    assert_eq!(second.metadata["source"], "sensor");
    assert_eq!(second.metadata["n"], 99);

    // A failed delivery hands back the message with the defaults added.
    fwd.close();
    let SendError(m) = fwd.send(ChannelMessage::default()).await.unwrap_err();
    assert_eq!(m.metadata["source"], "sensor");
}

#[tokio::test]
async fn unbounded_never_blocks() {
    let (tx, mut rx) = unbounded();
    for n in 0..10_000 {
        let mut send = pin!(tx.send(msg(n)));
        assert!(!is_pending(&mut send).await, "unbounded send {n} waited");
    }
    assert_eq!(rx.len(), 10_000);
    for n in 0..10_000 {
        assert_eq!(tag(&rx.try_recv().unwrap()), n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sender_order_is_kept_with_concurrent_senders() {
    const PER_SENDER: i64 = 2_000;
    let (tx, mut rx) = bounded(3);
    let senders: Vec<_> = (0..3i64)
        .map(|s| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for n in 0..PER_SENDER {
                    tx.send(
                        ChannelMessage::new(NodeMessage::from(json!({ "n": n })))
                            .with_metadata("sender", s),
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    let mut next = [0i64; 3];
    for _ in 0..3 * PER_SENDER {
        let m = rx.recv().guarded().await.unwrap();
        let s = usize::try_from(m.metadata["sender"].as_i64().unwrap()).unwrap();
        assert_eq!(tag(&m), next[s], "sender {s} out of order");
        next[s] += 1;
    }
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(next, [PER_SENDER; 3]);
}
