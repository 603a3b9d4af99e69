//! [`Shared`]: what all workers of one long-running run share, as a few owned parts: the
//! graph, the run scope, the [`Mailboxes`] (with the blocked-sender registry), the
//! [`Accounting`], the [`StopSignal`] and the [`Sinks`].

use std::sync::Arc;

use spark_adk_core::{
    EventKind, NodeCounts, RunError, RunMetadata, RunResult, RunScope, SinkOutput, SinkRetention,
    TaskType,
};
use spark_adk_edges::Topology;
use tokio::sync::broadcast;

use crate::accounting::Accounting;
use crate::durable::Durable;
use crate::lanes::Lanes;
use crate::mailboxes::Mailboxes;
use crate::sinks::Sinks;
use crate::stop::StopSignal;

/// The state of one long-running run, shared by its workers, its driver and its handle.
pub(crate) struct Shared {
    topology: Arc<Topology>,
    scope: Arc<RunScope>,
    mailboxes: Mailboxes,
    accounting: Accounting,
    stop: StopSignal,
    sinks: Sinks,
    stop_on_quiescence: bool,
    /// Set for a durable run only (see `durable.rs`); a plain run checks it once per handle send.
    durable: Option<Arc<Durable>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("run_id", &self.scope.run_id())
            .field("stopping", &self.stop.is_stopping())
            .finish()
    }
}

impl Shared {
    pub(crate) fn new(
        topology: Arc<Topology>,
        scope: Arc<RunScope>,
        stop_on_quiescence: bool,
        outputs: Option<broadcast::Sender<SinkOutput>>,
        sink_retention: SinkRetention,
        mailbox_capacity: Option<usize>,
    ) -> Self {
        // A run's capacity replaces the graph's default; a node's own capacity stays.
        let default = topology.mailbox_capacity();
        let capacity = |own: usize| match mailbox_capacity {
            Some(run) if own == default => run,
            _ => own,
        };
        let lanes = Lanes::new(topology.nodes().iter().map(|n| n.concurrency));
        Self {
            accounting: Accounting::new(lanes.len()),
            mailboxes: Mailboxes::new(
                topology
                    .nodes()
                    .iter()
                    .map(|n| capacity(n.mailbox_capacity)),
                lanes,
            ),
            stop: StopSignal::new(Arc::clone(&scope)),
            sinks: Sinks::new(sink_retention, outputs),
            scope,
            stop_on_quiescence,
            topology,
            durable: None,
        }
    }

    /// Makes this a durable run's shared state.
    pub(crate) fn with_durable(mut self, durable: Option<Arc<Durable>>) -> Self {
        self.durable = durable;
        self
    }

    /// The durable part of a durable run.
    pub(crate) fn durable(&self) -> Option<&Durable> {
        self.durable.as_deref()
    }

    /// Whether the run ends at quiescence.
    pub(crate) fn stops_on_quiescence(&self) -> bool {
        self.stop_on_quiescence
    }

    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    pub(crate) fn scope(&self) -> &Arc<RunScope> {
        &self.scope
    }

    pub(crate) fn mailboxes(&self) -> &Mailboxes {
        &self.mailboxes
    }

    pub(crate) fn accounting(&self) -> &Accounting {
        &self.accounting
    }

    pub(crate) fn stop(&self) -> &StopSignal {
        &self.stop
    }

    pub(crate) fn sinks(&self) -> &Sinks {
        &self.sinks
    }

    /// `n` messages finished without routing anything onward; ends the run if that made it
    /// quiescent and the run ends at quiescence.
    pub(crate) fn finish_messages(&self, n: u64) {
        if self.accounting.finish(n) && self.stop_on_quiescence {
            self.stop.request(spark_adk_core::StopReason::Completed);
        }
    }

    /// Publishes an event if anyone listens.
    #[inline]
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
        let totals = self
            .accounting
            .totals(self.scope.tokens_used(), self.mailboxes.lanes());
        let reason = match self.stop.take_outcome() {
            Ok(reason) => reason,
            Err(error) => {
                let error = match error {
                    RunError::Deadlock { counts, .. } => RunError::Deadlock {
                        blocked: self
                            .mailboxes
                            .deadlocked()
                            .into_iter()
                            .map(|i| self.node_name(i))
                            .collect(),
                        counts,
                    },
                    other => other,
                };
                return Err(error.with_counts(totals.counts));
            }
        };
        let mut metadata = RunMetadata::new(TaskType::LongRunning);
        metadata.stop_reason = reason;
        metadata.steps = totals.counts.processed;
        metadata.tokens_used = totals.counts.tokens_used;
        metadata.elapsed = self.scope.elapsed();
        metadata.accepted = totals.counts.accepted;
        metadata.processed = totals.counts.processed;
        metadata.unprocessed = totals.counts.unprocessed;
        metadata.activations_dropped = totals.activations_dropped;
        metadata.per_node =
            NodeCounts::from_counts(Arc::clone(self.topology.names()), totals.per_node);
        let sinks = self.sinks.take();
        metadata.sink_outputs_discarded = sinks.discarded();
        Ok(RunResult::from_sinks(sinks, metadata).with_state(self.scope.state_snapshot()))
    }
}
