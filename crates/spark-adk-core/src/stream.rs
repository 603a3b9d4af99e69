//! Streamed runs: the per-run channel that carries a run's events, with their payloads, to the
//! one consumer of `Graph::stream`.
//!
//! An executor finds the sending half in the run's scope ([`RunScope::stream`]); without one
//! (every run that is not streamed) nothing here is touched: no event is built, no channel
//! exists. See "Streaming" in `docs/runtime-semantics.md`.
//!
//! [`RunScope::stream`]: crate::RunScope::stream

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::{NodeMessage, RunError, RunResult};

/// One item of a streamed run, in the order things happened (per node; events of concurrent
/// long-running workers interleave).
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamEvent {
    /// A node's activation is about to start with `input`.
    NodeStarted {
        /// The node.
        node: Arc<str>,
        /// Its input (shares the payload; no copy).
        input: NodeMessage,
    },
    /// Something a node emitted during its activation with
    /// [`Context::emit`](crate::Context::emit) (for example one LLM token). It comes between
    /// the node's `NodeStarted` and `NodeFinished`.
    Emitted {
        /// The node.
        node: Arc<str>,
        /// What it emitted.
        value: Value,
    },
    /// A node's activation finished with `output` (a failed activation has no `NodeFinished`:
    /// the run's error comes as the last item).
    NodeFinished {
        /// The node.
        node: Arc<str>,
        /// Its output (shares the payload; no copy).
        output: NodeMessage,
    },
    /// An output that matched no outgoing edge: one of the run's sink outputs. It follows the
    /// `NodeFinished` of the activation that produced it.
    SinkOutput {
        /// The node that produced it.
        node: Arc<str>,
        /// The output.
        output: NodeMessage,
    },
    /// Lagging mode only: this many events were dropped because the consumer was behind. It
    /// is reported before the next item the consumer receives (the dropped events came after
    /// the items that were still buffered then). Never sent in lossless mode.
    Lagged(u64),
    /// The run ended: its result or error. Always the last item, never dropped (also not in
    /// lagging mode).
    Finished(Result<RunResult, RunError>),
}

/// What a streamed run does when its consumer falls behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamMode {
    /// Nothing is dropped: once the channel is full, the run waits for the consumer where it
    /// publishes (backpressure). A consumer that stops reading without dropping the stream
    /// stalls the run.
    #[default]
    Lossless,
    /// The run never waits: an event that finds the channel full is dropped and counted, and
    /// the consumer receives [`StreamEvent::Lagged`] with the count.
    Lagging,
}

/// How a run is streamed: the channel's capacity and the [`StreamMode`].
///
/// # Example
///
/// ```
/// use spark_adk_core::{StreamMode, StreamOptions};
///
/// let options = StreamOptions::lagging(256);
/// assert_eq!(options.mode(), StreamMode::Lagging);
/// assert_eq!(StreamOptions::default().capacity(), StreamOptions::DEFAULT_CAPACITY);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    capacity: usize,
    mode: StreamMode,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self::lossless(Self::DEFAULT_CAPACITY)
    }
}

impl StreamOptions {
    /// The channel capacity of [`StreamOptions::default`] (lossless).
    pub const DEFAULT_CAPACITY: usize = 64;

    /// Lossless with room for `capacity` events before the run waits. A capacity of 0 is
    /// refused when the stream starts ([`RunError::InvalidTask`] as the only item).
    pub fn lossless(capacity: usize) -> Self {
        Self {
            capacity,
            mode: StreamMode::Lossless,
        }
    }

    /// Lagging with room for `capacity` events before events are dropped. A capacity of 0 is
    /// refused as for [`StreamOptions::lossless`].
    pub fn lagging(capacity: usize) -> Self {
        Self {
            capacity,
            mode: StreamMode::Lagging,
        }
    }

    /// The channel capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The mode.
    pub fn mode(&self) -> StreamMode {
        self.mode
    }
}

/// The sending half of a streamed run's channel; executors find it in the run's scope
/// ([`RunScope::stream`](crate::RunScope::stream)). Cheap to clone.
#[derive(Clone, Debug)]
pub struct StreamSender {
    tx: mpsc::Sender<StreamEvent>,
    mode: StreamMode,
    dropped: Arc<AtomicU64>,
}

/// The receiving half of a streamed run's channel (the facade's `RunStream` wraps it).
#[derive(Debug)]
pub struct StreamReceiver {
    rx: mpsc::Receiver<StreamEvent>,
    dropped: Arc<AtomicU64>,
}

/// A streamed run's channel.
///
/// # Errors
/// [`RunError::InvalidTask`] for a capacity of 0.
pub fn stream_channel(options: StreamOptions) -> Result<(StreamSender, StreamReceiver), RunError> {
    if options.capacity == 0 {
        return Err(RunError::InvalidTask(
            "a stream's capacity must be at least 1 (StreamOptions)".to_owned(),
        ));
    }
    let (tx, rx) = mpsc::channel(options.capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    Ok((
        StreamSender {
            tx,
            mode: options.mode,
            dropped: Arc::clone(&dropped),
        },
        StreamReceiver { rx, dropped },
    ))
}

impl StreamSender {
    /// Sends `event` as the mode says: lossless waits for room, lagging drops it (and counts
    /// it) when the channel is full. `false` once the consumer dropped the stream (the event
    /// is discarded).
    pub async fn send(&self, event: StreamEvent) -> bool {
        match self.mode {
            StreamMode::Lossless => self.tx.send(event).await.is_ok(),
            StreamMode::Lagging => match self.tx.try_send(event) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        }
    }

    /// Sends `event` waiting for room whatever the mode (the run's last item). Gives the
    /// event back when the consumer dropped the stream.
    ///
    /// # Errors
    /// The event, when the consumer is gone.
    pub async fn send_last(&self, event: StreamEvent) -> Result<(), StreamEvent> {
        self.tx.send(event).await.map_err(|e| e.0)
    }

    /// `true` once the consumer dropped the stream.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl StreamReceiver {
    /// A receiver whose only item is [`StreamEvent::Finished`] with `outcome` (for a run that
    /// could not start).
    pub fn finished(outcome: Result<RunResult, RunError>) -> Self {
        let (tx, rx) = mpsc::channel(1);
        // A new channel of capacity 1 has room for one item.
        let _ = tx.try_send(StreamEvent::Finished(outcome));
        Self {
            rx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Polls for the next item: a [`StreamEvent::Lagged`] first if events were dropped since
    /// the last one. `None` once every sender is gone and the channel is empty.
    pub fn poll_recv(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<StreamEvent>> {
        if self.dropped.load(Ordering::Relaxed) > 0 {
            let n = self.dropped.swap(0, Ordering::Relaxed);
            if n > 0 {
                return Poll::Ready(Some(StreamEvent::Lagged(n)));
            }
        }
        self.rx.poll_recv(cx)
    }

    /// The next item (see [`poll_recv`](Self::poll_recv)).
    pub async fn recv(&mut self) -> Option<StreamEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_of_capacity_zero_is_refused() {
        let refused = stream_channel(StreamOptions::lossless(0));
        assert!(matches!(refused, Err(RunError::InvalidTask(m)) if m.contains("capacity")));
    }

    #[tokio::test]
    #[allow(clippy::panic)]
    async fn lagging_mode_drops_what_finds_the_channel_full_and_reports_the_count_first() {
        let (tx, mut rx) =
            stream_channel(StreamOptions::lagging(2)).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..5 {
            let value = Value::from(i);
            assert!(
                tx.send(StreamEvent::Emitted {
                    node: Arc::from("n"),
                    value
                })
                .await
            );
        }
        assert!(matches!(rx.recv().await, Some(StreamEvent::Lagged(3))));
        assert!(matches!(rx.recv().await, Some(StreamEvent::Emitted { value, .. }) if value == 0));
        assert!(matches!(rx.recv().await, Some(StreamEvent::Emitted { value, .. }) if value == 1));
        drop(rx);
        assert!(tx.is_closed());
        assert!(
            !tx.send(StreamEvent::Lagged(0)).await,
            "a dropped consumer is reported"
        );
    }
}
