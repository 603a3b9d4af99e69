//! One worker per node: take a message, process it, route the output, repeat; then the
//! shutdown delivery.

use std::sync::Arc;

use spark_core::panic::CatchUnwind;
use spark_core::{BudgetKind, Context, EventKind, NodeMessage, RunCounts, RunError, StopReason};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::Instant;
use tracing::Instrument;

use crate::blocked::Undelivered;
use crate::envelope::Envelope;
use crate::shared::Shared;

/// How many times an idle worker yields, checking its mailbox, before it parks.
const SPIN_YIELDS: usize = 1;

pub(crate) async fn run_worker(
    shared: Arc<Shared>,
    index: usize,
    mut mailbox: mpsc::Receiver<Envelope>,
) {
    let Some(entry) = shared.topology.node(index) else {
        return;
    };
    let name = Arc::clone(&entry.name);
    let node = Arc::clone(&entry.node);
    let scope = Arc::clone(&shared.scope);
    let mut targets: Vec<usize> = Vec::new();
    // Whether anyone wants per-activation spans, probed once per worker: without a subscriber
    // no span is built per message.
    let node_spans = tracing::span_enabled!(tracing::Level::DEBUG);
    let stopped = shared.stop.clone().cancelled_owned();
    tokio::pin!(stopped);

    loop {
        if shared.is_stopping() {
            break;
        }
        let envelope = match mailbox.try_recv() {
            Ok(envelope) => envelope,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                // Before parking, give the other tasks of this thread (often the sender) one
                // turn: under load the mailbox refills meanwhile and the worker skips a
                // park/unpark round trip.
                let mut received = None;
                for _ in 0..SPIN_YIELDS {
                    tokio::task::yield_now().await;
                    if let Ok(envelope) = mailbox.try_recv() {
                        received = Some(envelope);
                        break;
                    }
                }
                let received = match received {
                    Some(envelope) => Some(envelope),
                    None => tokio::select! {
                        biased;
                        () = &mut stopped => None,
                        envelope = mailbox.recv() => envelope,
                    },
                };
                match received {
                    Some(envelope) => envelope,
                    None => break,
                }
            }
        };
        shared.blocked.after_receive(index);
        if shared.is_stopping() {
            // Not processed: stays counted as unprocessed (accepted - processed).
            break;
        }
        if scope.tokens_exhausted() {
            if !shared.is_stopping() {
                shared.publish(|| EventKind::BudgetExhausted {
                    kind: BudgetKind::Tokens,
                });
            }
            shared.request_stop(StopReason::Budget(BudgetKind::Tokens));
            break;
        }
        let Envelope { payload, ack } = envelope;
        let ctx = Context::new(payload, index, Arc::clone(&scope));
        shared.publish(|| EventKind::NodeStarted {
            node: Arc::clone(&name),
        });
        let started = shared.topology.events().is_active().then(Instant::now);
        let activation = CatchUnwind::new(node.process_dyn(&ctx));
        let outcome = if node_spans {
            let span = tracing::debug_span!("spark.node", node = %name, mode = "long_running");
            activation.instrument(span).await
        } else {
            activation.await
        };
        drop(ctx);
        if let Some(started) = started {
            shared.publish(|| match &outcome {
                Ok(Ok(_)) => EventKind::NodeFinished {
                    node: Arc::clone(&name),
                    duration: started.elapsed(),
                },
                Ok(Err(e)) => EventKind::NodeFailed {
                    node: Arc::clone(&name),
                    error: e.to_string(),
                },
                Err(panic) => EventKind::NodeFailed {
                    node: Arc::clone(&name),
                    error: format!("panicked: {panic}"),
                },
            });
        }
        shared.record_processed(index);
        if let Some(ack) = ack {
            ack.fire();
        }
        let output = match outcome {
            Ok(Ok(output)) => output,
            Ok(Err(source)) => {
                shared.fail(RunError::NodeFailed {
                    node: name.to_string(),
                    source,
                    counts: RunCounts::default(),
                });
                shared.finish_one(index);
                return; // a failed worker gets no shutdown delivery
            }
            Err(message) => {
                shared.fail(RunError::NodePanicked {
                    node: name.to_string(),
                    message,
                    counts: RunCounts::default(),
                });
                shared.finish_one(index);
                return;
            }
        };
        if scope.shutdown_requested() {
            // The stop begins when the requesting activation finishes, before its output is
            // routed: the output is accepted but never delivered (counted unprocessed).
            shared.request_stop(StopReason::Shutdown);
        }
        targets.clear();
        if let Err(error) = shared.topology.route(index, &output, |to| targets.push(to)) {
            shared.fail(error);
            shared.finish_one(index);
            return;
        }
        shared.settle(index, targets.len() as u64);
        if targets.is_empty() {
            shared.record_sink(&name, output);
        } else {
            deliver(&shared, index, &targets, output).await;
        }
    }

    shutdown_delivery(index, &name, &node, scope).await;
}

/// Sends `output` to every target in order (per-pair FIFO), waiting for room (backpressure).
/// Every target's message was accepted (see `Shared::settle`) before this is called.
async fn deliver(shared: &Shared, from: usize, targets: &[usize], output: NodeMessage) {
    let last = targets.len().saturating_sub(1);
    let mut output = Some(output);
    for (i, &to) in targets.iter().enumerate() {
        let payload = if i == last {
            output.take().unwrap_or_default()
        } else {
            output.clone().unwrap_or_default()
        };
        if shared.is_stopping() {
            // Accepted but not delivered: counted as unprocessed.
            continue;
        }
        let sent = shared
            .blocked
            .send(
                &shared.mailboxes,
                from,
                to,
                Envelope::routed(payload),
                &shared.stop,
            )
            .await;
        match sent {
            Ok(()) => shared.publish(|| EventKind::MessageSent {
                from: shared
                    .topology
                    .names()
                    .get(from)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("?")),
                to: shared
                    .topology
                    .names()
                    .get(to)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("?")),
            }),
            Err(Undelivered::Stopped | Undelivered::Closed) => {}
            Err(Undelivered::Deadlock(cycle)) => {
                shared.fail(RunError::Deadlock {
                    blocked: cycle.into_iter().map(|i| shared.node_name(i)).collect(),
                    counts: RunCounts::default(),
                });
            }
        }
    }
}

/// The shutdown delivery: `process` once with `metadata["shutdown"] == true`; its output is
/// neither routed nor a sink output, and it is not counted as processed.
async fn shutdown_delivery(
    index: usize,
    name: &Arc<str>,
    node: &Arc<dyn spark_core::DynNode>,
    scope: Arc<spark_core::RunScope>,
) {
    let ctx = Context::new(
        NodeMessage::empty().with_metadata("shutdown", true),
        index,
        scope,
    );
    if let Err(message) = CatchUnwind::new(node.process_dyn(&ctx)).await {
        tracing::warn!(node = %name, %message, "node panicked during its shutdown delivery");
    }
}
