//! Run events: what happened in a run, published to any number of subscribers.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::{BudgetKind, StopReason, TaskType};

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub enum EventKind {
    /// A run started.
    GraphStarted {
        /// Its mode.
        task_type: TaskType,
    },
    /// A node's activation started.
    NodeStarted {
        /// The node.
        node: Arc<str>,
    },
    /// A node's activation finished with an output.
    NodeFinished {
        /// The node.
        node: Arc<str>,
        /// How long `process` took.
        duration: Duration,
    },
    /// A node's activation failed (error or panic).
    NodeFailed {
        /// The node.
        node: Arc<str>,
        /// The error's text.
        error: String,
    },
    /// An attempt of a node's activation failed and a retry wrapper will run it again after
    /// `delay` (published by `spark-adk-policy`'s retry, through [`crate::RunScope::publish`]).
    NodeRetrying {
        /// The node.
        node: Arc<str>,
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// The failed attempt's error text.
        error: String,
        /// How long the wrapper waits before the next attempt.
        delay: Duration,
    },
    /// A node emitted `value` with [`Context::emit`](crate::Context::emit) (for example one
    /// LLM token). Published only while someone listens on the bus.
    NodeEmitted {
        /// The node.
        node: Arc<str>,
        /// What it emitted.
        value: serde_json::Value,
    },
    /// Long-running mode: a message was routed from one node to another.
    MessageSent {
        /// Sender.
        from: Arc<str>,
        /// Receiver.
        to: Arc<str>,
    },
    /// Long-running mode: how many messages wait for `node` (its mailbox's taken slots:
    /// queued, reserved by a sender, or taken by its worker and not started yet). Sampled when
    /// the node's worker takes messages from its mailbox and when it parks; published only while
    /// someone listens on the bus.
    MailboxDepth {
        /// The node.
        node: Arc<str>,
        /// Messages waiting for it.
        depth: u64,
    },
    /// A budget ran out.
    BudgetExhausted {
        /// Which one.
        kind: BudgetKind,
    },
    /// The run ended.
    GraphFinished {
        /// Why, for a successful run.
        stop_reason: Option<StopReason>,
        /// The error's text, for a failed run.
        error: Option<String>,
    },
}

/// One event of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// The run it belongs to.
    pub run_id: u64,
    /// Wall-clock time it happened.
    pub at: SystemTime,
    /// Time since the run started.
    pub elapsed: Duration,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// The node the event is about, if any.
    pub fn node(&self) -> Option<&str> {
        match &self.kind {
            EventKind::NodeStarted { node }
            | EventKind::NodeFinished { node, .. }
            | EventKind::NodeFailed { node, .. }
            | EventKind::NodeRetrying { node, .. }
            | EventKind::NodeEmitted { node, .. }
            | EventKind::MailboxDepth { node, .. } => Some(node),
            EventKind::MessageSent { from, .. } => Some(from),
            _ => None,
        }
    }
}

/// How many events a subscriber may lag behind before it loses the oldest.
const CHANNEL_CAPACITY: usize = 4096;

struct Inner {
    tx: broadcast::Sender<Event>,
    replay: Option<(usize, Mutex<VecDeque<Event>>)>,
    /// Set once anyone subscribed or a replay buffer exists; until then publishing is free.
    active: AtomicBool,
}

/// Publishes run events to any number of subscribers. Cheap to clone (shared).
///
/// With no subscriber and no replay buffer, [`is_active`](Self::is_active) is `false` and the
/// executors skip building events altogether. A slow subscriber never blocks a run: it lags and
/// loses the oldest events (`RecvError::Lagged`). A dropped subscriber costs nothing.
///
/// # Example
///
/// ```
/// use spark_adk_core::{EventBus, EventKind, TaskType};
///
/// let bus = EventBus::with_replay(16);
/// bus.publish(1, std::time::Duration::ZERO, EventKind::GraphStarted { task_type: TaskType::Standard });
/// assert_eq!(bus.replay().len(), 1);
/// ```
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.inner.tx.receiver_count())
            .field("replay", &self.inner.replay.as_ref().map(|(n, _)| *n))
            .finish()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus without replay buffer.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A bus that also keeps the last `n` events for [`replay`](Self::replay).
    pub fn with_replay(n: usize) -> Self {
        Self::build(Some(n))
    }

    fn build(replay: Option<usize>) -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let active = replay.is_some_and(|n| n > 0);
        Self {
            inner: Arc::new(Inner {
                tx,
                replay: replay
                    .filter(|n| *n > 0)
                    .map(|n| (n, Mutex::new(VecDeque::with_capacity(n.min(1024))))),
                active: AtomicBool::new(active),
            }),
        }
    }

    /// Subscribes to events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.active.store(true, Ordering::Release);
        self.inner.tx.subscribe()
    }

    /// `true` when publishing could reach someone (a subscriber exists or existed, or a replay
    /// buffer is kept).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Publishes an event now. Never blocks, never fails.
    pub fn publish(&self, run_id: u64, elapsed: Duration, kind: EventKind) {
        if !self.is_active() {
            return;
        }
        let event = Event {
            run_id,
            at: SystemTime::now(),
            elapsed,
            kind,
        };
        if let Some((n, buffer)) = &self.inner.replay {
            let mut buffer = buffer.lock().unwrap_or_else(PoisonError::into_inner);
            if buffer.len() == *n {
                buffer.pop_front();
            }
            buffer.push_back(event.clone());
        }
        let _ = self.inner.tx.send(event);
    }

    /// The last events kept by the replay buffer, oldest first (empty without a buffer).
    pub fn replay(&self) -> Vec<Event> {
        match &self.inner.replay {
            Some((_, buffer)) => buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }
}
