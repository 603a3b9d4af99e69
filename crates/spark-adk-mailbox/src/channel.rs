//! In-memory channels of [`ChannelMessage`]s: bounded or unbounded, closable from either side,
//! and a forwarding sender that adds default metadata.
//!
//! Every "could not deliver" error hands the message back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};
use spark_adk_core::ChannelMessage;
use tokio::sync::{mpsc, Notify};

/// `send` failed because the channel is closed; the message is handed back.
#[derive(Debug, thiserror::Error)]
#[error("channel closed: the message was not delivered")]
pub struct SendError(pub ChannelMessage);

/// `try_send` failed; the message is handed back.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError {
    /// The channel is full (bounded channels only).
    #[error("channel full: the message was not delivered")]
    Full(ChannelMessage),
    /// The channel is closed.
    #[error("channel closed: the message was not delivered")]
    Closed(ChannelMessage),
}

impl TrySendError {
    /// The message that was not delivered.
    pub fn into_message(self) -> ChannelMessage {
        match self {
            TrySendError::Full(m) | TrySendError::Closed(m) => m,
        }
    }
}

#[derive(Debug, Default)]
struct CloseState {
    closed: AtomicBool,
    notify: Notify,
}

impl CloseState {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone)]
enum Tx {
    Bounded(mpsc::Sender<ChannelMessage>),
    Unbounded(mpsc::UnboundedSender<ChannelMessage>),
}

#[derive(Debug)]
enum Rx {
    Bounded(mpsc::Receiver<ChannelMessage>),
    Unbounded(mpsc::UnboundedReceiver<ChannelMessage>),
}

/// The sending half of a channel. Clone it to have several senders; per sender, messages arrive
/// in send order.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: Tx,
    state: Arc<CloseState>,
}

/// The receiving half of a channel.
#[derive(Debug)]
pub struct Receiver {
    rx: Rx,
    state: Arc<CloseState>,
}

/// A bounded channel holding at most `capacity` messages (`capacity` 0 is raised to 1).
///
/// # Example
///
/// ```
/// use spark_adk_core::ChannelMessage;
/// use spark_adk_mailbox::channel::{bounded, TrySendError};
///
/// let (tx, mut rx) = bounded(1);
/// tx.try_send(ChannelMessage::default()).unwrap();
/// // Full: the message comes back.
/// let err = tx.try_send(ChannelMessage::default().with_metadata("n", 2)).unwrap_err();
/// assert!(matches!(&err, TrySendError::Full(m) if m.metadata["n"] == 2));
/// assert!(rx.try_recv().is_some());
/// ```
pub fn bounded(capacity: usize) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let state = Arc::new(CloseState::default());
    (
        Sender {
            tx: Tx::Bounded(tx),
            state: Arc::clone(&state),
        },
        Receiver {
            rx: Rx::Bounded(rx),
            state,
        },
    )
}

/// An unbounded channel: `send` never waits.
pub fn unbounded() -> (Sender, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(CloseState::default());
    (
        Sender {
            tx: Tx::Unbounded(tx),
            state: Arc::clone(&state),
        },
        Receiver {
            rx: Rx::Unbounded(rx),
            state,
        },
    )
}

impl Sender {
    /// Sends a message, waiting while a bounded channel is full (backpressure).
    ///
    /// # Errors
    /// [`SendError`] with the message when the channel is or becomes closed.
    ///
    /// # Cancel safety
    /// Cancel safe: the message is only moved into the channel once a slot is reserved, so
    /// dropping this future never loses it (it is dropped with the future, undelivered).
    pub async fn send(&self, message: ChannelMessage) -> Result<(), SendError> {
        if self.state.is_closed() {
            return Err(SendError(message));
        }
        match &self.tx {
            Tx::Unbounded(tx) => tx.send(message).map_err(|e| SendError(e.0)),
            Tx::Bounded(tx) => {
                let closed = self.state.notify.notified();
                tokio::pin!(closed);
                closed.as_mut().enable();
                if self.state.is_closed() {
                    return Err(SendError(message));
                }
                tokio::select! {
                    biased;
                    () = &mut closed => Err(SendError(message)),
                    permit = tx.reserve() => match permit {
                        Ok(permit) => {
                            permit.send(message);
                            Ok(())
                        }
                        Err(_) => Err(SendError(message)),
                    },
                }
            }
        }
    }

    /// Sends a message if there is room now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] or [`TrySendError::Closed`], each with the message.
    pub fn try_send(&self, message: ChannelMessage) -> Result<(), TrySendError> {
        if self.state.is_closed() {
            return Err(TrySendError::Closed(message));
        }
        match &self.tx {
            Tx::Unbounded(tx) => tx.send(message).map_err(|e| TrySendError::Closed(e.0)),
            Tx::Bounded(tx) => tx.try_send(message).map_err(|e| match e {
                mpsc::error::TrySendError::Full(m) => TrySendError::Full(m),
                mpsc::error::TrySendError::Closed(m) => TrySendError::Closed(m),
            }),
        }
    }

    /// Closes the channel: later sends fail with the message handed back, senders waiting on a
    /// full channel get their message back, and the receiver can still drain what is queued.
    pub fn close(&self) {
        self.state.close();
    }

    /// `true` once the channel is closed (by either side) or the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.state.is_closed()
            || match &self.tx {
                Tx::Bounded(tx) => tx.is_closed(),
                Tx::Unbounded(tx) => tx.is_closed(),
            }
    }
}

impl Receiver {
    /// Receives the next message. After the channel is closed, returns what is still queued,
    /// then `None`.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it completes, no message is lost.
    pub async fn recv(&mut self) -> Option<ChannelMessage> {
        loop {
            if self.state.is_closed() {
                return self.drain_after_close().await;
            }
            let closed = self.state.notify.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.state.is_closed() {
                continue;
            }
            tokio::select! {
                biased;
                m = recv_inner(&mut self.rx) => return m,
                () = &mut closed => {}
            }
        }
    }

    async fn drain_after_close(&mut self) -> Option<ChannelMessage> {
        // Closing the inner channel makes in-progress sends fail (handing their message back)
        // or complete into the queue, which `recv` then drains; nothing is lost in between.
        match &mut self.rx {
            Rx::Bounded(rx) => {
                rx.close();
                rx.recv().await
            }
            Rx::Unbounded(rx) => {
                rx.close();
                rx.recv().await
            }
        }
    }

    /// Receives a message if one is queued now.
    pub fn try_recv(&mut self) -> Option<ChannelMessage> {
        match &mut self.rx {
            Rx::Bounded(rx) => rx.try_recv().ok(),
            Rx::Unbounded(rx) => rx.try_recv().ok(),
        }
    }

    /// Closes the channel from the receiving side; queued messages can still be drained.
    pub fn close(&mut self) {
        self.state.close();
        match &mut self.rx {
            Rx::Bounded(rx) => rx.close(),
            Rx::Unbounded(rx) => rx.close(),
        }
    }

    /// Number of queued messages.
    pub fn len(&self) -> usize {
        match &self.rx {
            Rx::Bounded(rx) => rx.len(),
            Rx::Unbounded(rx) => rx.len(),
        }
    }

    /// `true` when no message is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn recv_inner(rx: &mut Rx) -> Option<ChannelMessage> {
    match rx {
        Rx::Bounded(rx) => rx.recv().await,
        Rx::Unbounded(rx) => rx.recv().await,
    }
}

/// A sender that adds default metadata to every message it sends; keys the message already
/// has keep their own value.
///
/// # Example
///
/// ```
/// use spark_adk_core::ChannelMessage;
/// use spark_adk_mailbox::channel::{unbounded, ForwardingSender};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (tx, mut rx) = unbounded();
/// let fwd = ForwardingSender::new(tx).with_default("source", "sensor").with_default("hop", 1);
/// fwd.send(ChannelMessage::default().with_metadata("hop", 7)).await.unwrap();
/// let got = rx.recv().await.unwrap();
/// assert_eq!(got.metadata["source"], "sensor");
/// assert_eq!(got.metadata["hop"], 7); // the message's own metadata wins
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ForwardingSender {
    inner: Sender,
    defaults: Map<String, Value>,
}

impl ForwardingSender {
    /// Wraps a sender with no defaults.
    pub fn new(inner: Sender) -> Self {
        Self {
            inner,
            defaults: Map::new(),
        }
    }

    /// Adds one default metadata entry.
    #[must_use]
    pub fn with_default(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.defaults.insert(key.into(), value.into());
        self
    }

    fn apply(&self, mut message: ChannelMessage) -> ChannelMessage {
        for (k, v) in &self.defaults {
            message
                .metadata
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        message
    }

    /// Sends with the defaults added; see [`Sender::send`].
    ///
    /// # Errors
    /// As [`Sender::send`] (the returned message includes the defaults).
    ///
    /// # Cancel safety
    /// As [`Sender::send`].
    pub async fn send(&self, message: ChannelMessage) -> Result<(), SendError> {
        self.inner.send(self.apply(message)).await
    }

    /// Tries to send with the defaults added; see [`Sender::try_send`].
    ///
    /// # Errors
    /// As [`Sender::try_send`].
    pub fn try_send(&self, message: ChannelMessage) -> Result<(), TrySendError> {
        self.inner.try_send(self.apply(message))
    }

    /// Closes the underlying channel.
    pub fn close(&self) {
        self.inner.close();
    }
}
