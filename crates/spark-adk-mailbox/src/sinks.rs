//! [`Sinks`]: the sink outputs of a run (outputs that matched no edge), kept for the result and
//! broadcast to the subscribers of a spawned run.
//!
//! Nothing is broadcast until the first subscription, so a run nobody listens to pays nothing
//! for it. The first subscription does not miss what came before it (spec section 11): it is
//! made under the lock that records outputs, and the outputs kept so far (as many as the run's
//! retention keeps, at most [`OUTPUT_BUFFER`]) are replayed into it first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use spark_adk_core::{NodeMessage, SinkOutput, SinkOutputs, SinkRetention};
use tokio::sync::broadcast;

use crate::mailbox::lock;

/// How many sink outputs a subscriber of a spawned run may lag behind before it loses some;
/// also the most outputs replayed to the first subscriber.
pub(crate) const OUTPUT_BUFFER: usize = 1024;

/// The sink outputs of one run. Aligned: its lock is written per sink output, so it stays off
/// the cache lines other workers read per message.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Sinks {
    kept: Mutex<SinkOutputs>,
    outputs: Option<broadcast::Sender<SinkOutput>>,
    /// Set (under the `kept` lock) once anyone subscribed to `outputs`: until then, nothing is
    /// broadcast.
    subscribed: AtomicBool,
}

impl Sinks {
    /// Sinks keeping `retention`, broadcast through `outputs` if given.
    pub(crate) fn new(
        retention: SinkRetention,
        outputs: Option<broadcast::Sender<SinkOutput>>,
    ) -> Self {
        Self {
            kept: Mutex::new(SinkOutputs::with_retention(retention)),
            outputs,
            subscribed: AtomicBool::new(false),
        }
    }

    /// A receiver of the sink outputs broadcast from now on (an already closed one for a run
    /// that does not broadcast them). The first one also gets the outputs kept so far, oldest
    /// first (at most [`OUTPUT_BUFFER`]).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SinkOutput> {
        let Some(tx) = &self.outputs else {
            return broadcast::channel(1).1;
        };
        let kept = lock(&self.kept);
        let rx = tx.subscribe();
        if !self.subscribed.swap(true, Ordering::Relaxed) {
            // The first receiver is the only one: the replay reaches it alone.
            let kept = kept.as_slice();
            for output in &kept[kept.len().saturating_sub(OUTPUT_BUFFER)..] {
                let _ = tx.send(output.clone());
            }
        }
        rx
    }

    /// Records one sink output of `node`.
    pub(crate) fn record(&self, node: &Arc<str>, message: NodeMessage) {
        let mut kept = lock(&self.kept);
        // Read under the lock, so that each output is either replayed to the first subscriber
        // or broadcast to it, never both, never neither.
        if self.subscribed.load(Ordering::Relaxed) {
            if let Some(outputs) = &self.outputs {
                // A lagging subscriber never blocks or fails the run.
                let _ = outputs.send(SinkOutput {
                    node: Arc::clone(node),
                    message: message.clone(),
                });
            }
        }
        kept.push(Arc::clone(node), message);
    }

    /// Takes the kept outputs (when the run ends). A spawned run's handle outlives its run, so
    /// while nobody has subscribed a copy of the last [`OUTPUT_BUFFER`] outputs stays for the
    /// replay to a first subscriber that comes after the end.
    pub(crate) fn take(&self) -> SinkOutputs {
        let mut kept = lock(&self.kept);
        let all = std::mem::take(&mut *kept);
        if self.outputs.is_some() && !self.subscribed.load(Ordering::Relaxed) {
            let outputs = all.as_slice();
            for output in &outputs[outputs.len().saturating_sub(OUTPUT_BUFFER)..] {
                kept.push(Arc::clone(&output.node), output.message.clone());
            }
        }
        all
    }
}
