//! [`Accounting`]: what a run counts, each count made where it happens.
//!
//! - *accepted*: the task input and handle sends ([`accept_outside`](Accounting::accept_outside)),
//!   and every routed output (counted by the sending worker);
//! - *processed*: `process` calls that finished (counted by the worker);
//! - *unprocessed*: counted where a message ends without being processed
//!   ([`unprocessed`](Accounting::unprocessed)): queued when its mailbox closed, left in a worker's
//!   inbox at the stop, not started because the run was stopping, not delivered after the stop,
//!   refused by a closed mailbox, or dropped with its activation at the end of the grace period.
//!
//! A worker counts what it processed and routed in its own memory (no shared cache line per
//! message) and adds its counts here once, when it exits, however it exits
//! ([`add_worker`](Accounting::add_worker)); the totals are read once every worker has exited.
//! `accepted == processed + unprocessed` is then a check, made when the run ends (a debug
//! assertion here, and the tests), never a computation.
//!
//! The in-flight count (accepted and not yet finished) detects quiescence exactly: zero means
//! every mailbox is empty and no worker is processing.

use std::sync::atomic::{AtomicU64, Ordering};

use spark_adk_core::RunCounts;

use crate::lanes::Lanes;

/// One worker's counts (a lane's, see `lanes.rs`: one per node unless a node has several),
/// added once, when the worker exits.
#[derive(Debug, Default)]
struct NodeSlot {
    /// `process` calls that finished.
    processed: AtomicU64,
    /// Outputs this node routed to mailboxes (accepted messages).
    routed: AtomicU64,
}

/// The run-wide counters written on the hot path by several threads, on their own cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Traffic {
    /// Messages accepted and not yet finished (processed, or routed onward). Zero = quiescent.
    in_flight: AtomicU64,
    /// Messages accepted from outside the workers: the task input and handle sends.
    accepted_outside: AtomicU64,
}

/// Counts written only when messages end unprocessed (at a stop or a failure), off the hot path.
#[derive(Debug, Default)]
struct Ends {
    unprocessed: AtomicU64,
    activations_dropped: AtomicU64,
}

/// The counts of one run (see the module docs).
#[derive(Debug)]
pub(crate) struct Accounting {
    traffic: Traffic,
    /// Per-worker (lane) counts, added when each worker exits.
    slots: Box<[NodeSlot]>,
    ends: Ends,
}

/// The totals when the run ended.
#[derive(Debug)]
pub(crate) struct Totals {
    pub(crate) counts: RunCounts,
    pub(crate) activations_dropped: u64,
    /// Messages processed, per node (graph order).
    pub(crate) per_node: Vec<u64>,
}

impl Accounting {
    /// Counters for a run of `workers` workers (lanes).
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            traffic: Traffic::default(),
            slots: (0..workers).map(|_| NodeSlot::default()).collect(),
            ends: Ends::default(),
        }
    }

    /// Counts one message accepted from outside the workers (task input, handle send), before
    /// it is queued.
    pub(crate) fn accept_outside(&self) {
        self.traffic
            .accepted_outside
            .fetch_add(1, Ordering::Relaxed);
        self.traffic.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A resumed durable run: worker `lane` (a durable run has one per node) processed `n`
    /// messages before, counted accepted and processed (they are not in flight). Call before
    /// any worker runs.
    pub(crate) fn restore_processed(&self, lane: usize, n: u64) {
        if let Some(slot) = self.slots.get(lane) {
            slot.processed.fetch_add(n, Ordering::AcqRel);
            self.traffic.accepted_outside.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Worker `lane` exits: it processed `processed` messages and routed `routed` outputs
    /// (accepted messages) to mailboxes. Called once per worker, however it exits.
    pub(crate) fn add_worker(&self, lane: usize, processed: u64, routed: u64) {
        if let Some(slot) = self.slots.get(lane) {
            slot.processed.fetch_add(processed, Ordering::AcqRel);
            slot.routed.fetch_add(routed, Ordering::AcqRel);
        }
    }

    /// A worker is about to route its output to `targets` (at least one) mailboxes: the
    /// outputs are accepted (the worker counts them), and the message it processed is
    /// finished. One atomic update of the in-flight count covers both (none at all for exactly
    /// one target), and it happens before anything is sent, so the count cannot reach zero
    /// early.
    pub(crate) fn settle(&self, targets: u64) {
        if targets > 1 {
            self.traffic
                .in_flight
                .fetch_add(targets - 1, Ordering::AcqRel);
        }
    }

    /// `n` messages finished without routing anything onward (sink outputs, failures).
    /// Returns `true` when this made the run quiescent.
    pub(crate) fn finish(&self, n: u64) -> bool {
        n > 0 && self.traffic.in_flight.fetch_sub(n, Ordering::AcqRel) == n
    }

    /// `n` accepted messages end without being processed (see the module docs).
    pub(crate) fn unprocessed(&self, n: u64) {
        if n > 0 {
            self.ends.unprocessed.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// An activation (its message is counted with [`unprocessed`](Self::unprocessed)) or a
    /// shutdown delivery was dropped at the end of the grace period.
    pub(crate) fn activation_dropped(&self) {
        self.ends.activations_dropped.fetch_add(1, Ordering::AcqRel);
    }

    /// The totals; call once every worker has exited. Checks the identity in debug builds.
    pub(crate) fn totals(&self, tokens_used: u64, lanes: &Lanes) -> Totals {
        let processed_by = |lane: usize| {
            self.slots
                .get(lane)
                .map_or(0, |s| s.processed.load(Ordering::Acquire))
        };
        let per_node: Vec<u64> = (0..lanes.nodes())
            .map(|node| lanes.of(node).map(processed_by).sum())
            .collect();
        let processed = per_node.iter().sum();
        let accepted = self.traffic.accepted_outside.load(Ordering::Acquire)
            + self
                .slots
                .iter()
                .map(|s| s.routed.load(Ordering::Acquire))
                .sum::<u64>();
        let unprocessed = self.ends.unprocessed.load(Ordering::Acquire);
        debug_assert_eq!(
            accepted,
            processed + unprocessed,
            "accepted != processed + unprocessed (processed {processed}, unprocessed {unprocessed})"
        );
        Totals {
            counts: RunCounts {
                accepted,
                processed,
                unprocessed,
                tokens_used,
            },
            activations_dropped: self.ends.activations_dropped.load(Ordering::Acquire),
            per_node,
        }
    }
}
