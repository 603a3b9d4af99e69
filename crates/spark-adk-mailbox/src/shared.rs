//! What all workers of one long-running run share: mailboxes, counters, the stop signal.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use spark_adk_core::{
    EventKind, NodeCounts, NodeMessage, RunCounts, RunError, RunMetadata, RunResult, RunScope,
    SinkOutput, SinkOutputs, SinkRetention, StopReason, TaskType,
};
use spark_adk_edges::Topology;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::blocked::BlockedSenders;
use crate::mailbox::Mailbox;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) reason: Option<StopReason>,
    pub(crate) error: Option<RunError>,
}

/// The state of one long-running run.
/// One node's counters, written only by the node's own worker. Aligned so two workers never
/// write the same cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct NodeSlot {
    /// `process` calls that finished.
    processed: AtomicU64,
    /// Outputs this node routed to mailboxes (accepted messages).
    routed: AtomicU64,
}

/// The run-wide counters written on the hot path by several threads, on their own cache line:
/// kept away from the flags every worker reads per message (`stopping`, ...), which would
/// otherwise be evicted from every core's cache at each update.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Traffic {
    /// Messages accepted and not yet finished (processed, or routed onward). Zero = quiescent.
    in_flight: AtomicU64,
    /// Messages accepted from outside the workers: the task input and handle sends.
    accepted_outside: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) topology: Arc<Topology>,
    pub(crate) scope: Arc<RunScope>,
    pub(crate) mailboxes: Box<[Mailbox]>,
    /// Cancelled when the graceful stop begins (wakes waiting workers and senders).
    pub(crate) stop: CancellationToken,
    /// Set when the graceful stop begins, before `stop` is cancelled (cheap to read).
    stopping: AtomicBool,
    pub(crate) outcome: Mutex<Outcome>,
    traffic: Traffic,
    /// Per-node counters, each on its own cache line: a worker only ever writes its own.
    slots: Box<[NodeSlot]>,
    sinks: Mutex<SinkOutputs>,
    pub(crate) outputs: Option<broadcast::Sender<SinkOutput>>,
    /// Set once anyone subscribed to `outputs`: until then, nothing is broadcast.
    subscribed: AtomicBool,
    pub(crate) stop_on_quiescence: bool,
    pub(crate) blocked: BlockedSenders,
}

impl Shared {
    pub(crate) fn new(
        topology: Arc<Topology>,
        scope: Arc<RunScope>,
        mailboxes: Box<[Mailbox]>,
        stop_on_quiescence: bool,
        outputs: Option<broadcast::Sender<SinkOutput>>,
        sink_retention: SinkRetention,
    ) -> Self {
        let n = topology.len();
        Self {
            scope,
            mailboxes,
            stop: CancellationToken::new(),
            stopping: AtomicBool::new(false),
            outcome: Mutex::new(Outcome::default()),
            traffic: Traffic::default(),
            slots: (0..n).map(|_| NodeSlot::default()).collect(),
            sinks: Mutex::new(SinkOutputs::with_retention(sink_retention)),
            outputs,
            subscribed: AtomicBool::new(false),
            stop_on_quiescence,
            blocked: BlockedSenders::new(n),
            topology,
        }
    }

    /// Begins the graceful stop with `reason`, unless a stop already began (first reason wins).
    pub(crate) fn request_stop(&self, reason: StopReason) {
        {
            let mut outcome = lock(&self.outcome);
            if outcome.reason.is_none() {
                outcome.reason = Some(reason);
            }
        }
        self.stopping.store(true, Ordering::Release);
        self.scope.begin_stop();
        self.stop.cancel();
    }

    /// Records an error (the first one wins) and begins the graceful stop of the other workers.
    pub(crate) fn fail(&self, error: RunError) {
        {
            let mut outcome = lock(&self.outcome);
            if outcome.error.is_none() {
                outcome.error = Some(error);
            }
        }
        self.stopping.store(true, Ordering::Release);
        self.scope.begin_stop();
        self.stop.cancel();
    }

    /// `true` once the stop began. A plain atomic load: `CancellationToken::is_cancelled` takes
    /// a lock, which workers on several threads would contend for on every message.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Counts one message accepted from outside the workers (task input, handle send), before
    /// it is sent.
    pub(crate) fn accept_outside(&self) {
        self.traffic
            .accepted_outside
            .fetch_add(1, Ordering::Relaxed);
        self.traffic.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Node `node` finished processing one message: counts it processed. Only the node's own
    /// worker writes its slot, so a load and a store do (no locked read-modify-write).
    pub(crate) fn record_processed(&self, node: usize) {
        if let Some(slot) = self.slots.get(node) {
            let processed = slot.processed.load(Ordering::Relaxed);
            slot.processed.store(processed + 1, Ordering::Release);
        }
    }

    /// Node `node` is about to route its output to `targets` (at least one) mailboxes: the
    /// outputs are accepted, and the message it processed is finished. One atomic update of the
    /// in-flight count covers both (none at all for exactly one target), and it happens before
    /// anything is sent, so the count cannot reach zero early.
    pub(crate) fn settle(&self, node: usize, targets: u64) {
        if let Some(slot) = self.slots.get(node) {
            // Single writer, as in `record_processed`.
            let routed = slot.routed.load(Ordering::Relaxed);
            slot.routed.store(routed + targets, Ordering::Release);
        }
        if targets > 1 {
            self.traffic
                .in_flight
                .fetch_add(targets - 1, Ordering::AcqRel);
        }
    }

    /// `n` messages finished without routing anything onward (sink outputs, or given up by a
    /// failed node). Detects quiescence.
    pub(crate) fn finish_messages(&self, n: u64) {
        if n > 0
            && self.traffic.in_flight.fetch_sub(n, Ordering::AcqRel) == n
            && self.stop_on_quiescence
        {
            self.request_stop(StopReason::Completed);
        }
    }

    /// A receiver of the sink outputs broadcast from now on (an already closed one for a run
    /// that does not broadcast them).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SinkOutput> {
        match &self.outputs {
            Some(tx) => {
                let rx = tx.subscribe();
                self.subscribed.store(true, Ordering::Release);
                rx
            }
            None => broadcast::channel(1).1,
        }
    }

    pub(crate) fn record_sink(&self, node: &Arc<str>, message: NodeMessage) {
        let outputs = self
            .outputs
            .as_ref()
            .filter(|_| self.subscribed.load(Ordering::Acquire));
        if let Some(outputs) = outputs {
            // No subscriber, or a lagging one, never blocks or fails the run.
            let _ = outputs.send(SinkOutput {
                node: Arc::clone(node),
                message: message.clone(),
            });
        }
        lock(&self.sinks).push(Arc::clone(node), message);
    }

    /// Publishes an event if anyone listens.
    pub(crate) fn publish(&self, kind: impl FnOnce() -> EventKind) {
        let bus = self.topology.events();
        if bus.is_active() {
            bus.publish(self.scope.run_id(), self.scope.elapsed(), kind());
        }
    }

    pub(crate) fn node_name(&self, index: usize) -> String {
        self.topology
            .node(index)
            .map_or_else(|| format!("#{index}"), |n| n.name.to_string())
    }

    /// Builds the final result; call once every worker has exited.
    pub(crate) fn finish(&self) -> Result<RunResult, RunError> {
        let outcome = std::mem::take(&mut *lock(&self.outcome));
        let processed: u64 = self
            .slots
            .iter()
            .map(|s| s.processed.load(Ordering::Acquire))
            .sum();
        let accepted = self.traffic.accepted_outside.load(Ordering::Acquire)
            + self
                .slots
                .iter()
                .map(|s| s.routed.load(Ordering::Acquire))
                .sum::<u64>();
        if let Some(error) = outcome.error {
            return Err(error.with_counts(RunCounts {
                accepted,
                processed,
                unprocessed: accepted.saturating_sub(processed),
                tokens_used: self.scope.tokens_used(),
            }));
        }
        let mut metadata = RunMetadata::new(TaskType::LongRunning);
        metadata.stop_reason = outcome.reason.unwrap_or(StopReason::Completed);
        metadata.steps = processed;
        metadata.tokens_used = self.scope.tokens_used();
        metadata.elapsed = self.scope.elapsed();
        metadata.accepted = accepted;
        metadata.processed = processed;
        metadata.unprocessed = accepted.saturating_sub(processed);
        metadata.per_node = NodeCounts::from_counts(
            Arc::clone(self.topology.names()),
            self.slots
                .iter()
                .map(|slot| slot.processed.load(Ordering::Acquire)),
        );
        let sinks = std::mem::take(&mut *lock(&self.sinks));
        metadata.sink_outputs_discarded = sinks.discarded();
        Ok(RunResult::from_sinks(sinks, metadata).with_state(self.scope.state_snapshot()))
    }
}
