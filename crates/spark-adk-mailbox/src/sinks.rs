//! [`Sinks`]: the sink outputs of a run (outputs that matched no edge), kept for the result and
//! broadcast to the subscribers of a spawned run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use spark_adk_core::{NodeMessage, SinkOutput, SinkOutputs, SinkRetention};
use tokio::sync::broadcast;

use crate::mailbox::lock;

/// The sink outputs of one run. Aligned: its lock is written per sink output, so it stays off
/// the cache lines other workers read per message.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Sinks {
    kept: Mutex<SinkOutputs>,
    outputs: Option<broadcast::Sender<SinkOutput>>,
    /// Set once anyone subscribed to `outputs`: until then, nothing is broadcast.
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

    /// Records one sink output of `node`.
    pub(crate) fn record(&self, node: &Arc<str>, message: NodeMessage) {
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
        lock(&self.kept).push(Arc::clone(node), message);
    }

    /// Takes the kept outputs (when the run ends).
    pub(crate) fn take(&self) -> SinkOutputs {
        std::mem::take(&mut *lock(&self.kept))
    }
}
