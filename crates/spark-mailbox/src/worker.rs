//! One worker per node: take a message, process it, route the output, repeat; then the
//! shutdown delivery.

use std::sync::Arc;

use spark_core::panic::CatchUnwind;
use spark_core::{
    BudgetKind, ChannelMessage, Context, EventKind, NodeMessage, RunCounts, RunError, StopReason,
};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::Instant;
use tracing::Instrument;

use crate::blocked::Undelivered;
use crate::shared::Shared;

/// How many messages a worker takes out of its mailbox at once.
const BATCH: usize = 32;

pub(crate) async fn run_worker(
    shared: Arc<Shared>,
    index: usize,
    mut mailbox: mpsc::Receiver<ChannelMessage>,
) {
    let Some(entry) = shared.topology.node(index) else {
        return;
    };
    let name = Arc::clone(&entry.name);
    let node = Arc::clone(&entry.node);
    let mut batch: Vec<ChannelMessage> = Vec::with_capacity(BATCH);
    let mut targets: Vec<usize> = Vec::new();
    let stopped = shared.stop.clone().cancelled_owned();
    tokio::pin!(stopped);

    'run: loop {
        if shared.is_stopping() {
            break;
        }
        if batch.is_empty() {
            match mailbox.try_recv() {
                Ok(m) => batch.push(m),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let received = tokio::select! {
                        biased;
                        () = &mut stopped => break 'run,
                        n = mailbox.recv_many(&mut batch, BATCH) => n,
                    };
                    if received == 0 {
                        break;
                    }
                }
            }
            shared.blocked.after_receive(index);
            batch.reverse(); // pop() from the back keeps FIFO order
        }
        while let Some(envelope) = batch.pop() {
            if shared.is_stopping() {
                // Not processed: stays counted as unprocessed (accepted - processed).
                break 'run;
            }
            if envelope.shutdown {
                shared.request_stop(StopReason::Shutdown);
                break 'run;
            }
            if shared.scope.tokens_exhausted() {
                if !shared.is_stopping() {
                    shared.publish(|| EventKind::BudgetExhausted {
                        kind: BudgetKind::Tokens,
                    });
                }
                shared.request_stop(StopReason::Budget(BudgetKind::Tokens));
                break 'run;
            }
            let ack = envelope.ack;
            let ctx = Context::new(
                envelope.payload,
                Arc::clone(&name),
                index,
                Arc::clone(&shared.scope),
            );
            shared.publish(|| EventKind::NodeStarted {
                node: Arc::clone(&name),
            });
            let started = shared.topology.events().is_active().then(Instant::now);
            let activation = CatchUnwind::new(node.process_dyn(&ctx));
            let span = tracing::debug_span!("spark.node", node = %name, mode = "long_running");
            let outcome = if span.is_disabled() {
                activation.await
            } else {
                activation.instrument(span).await
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
                    shared.finish_one();
                    return; // a failed worker gets no shutdown delivery
                }
                Err(message) => {
                    shared.fail(RunError::NodePanicked {
                        node: name.to_string(),
                        message,
                        counts: RunCounts::default(),
                    });
                    shared.finish_one();
                    return;
                }
            };
            if shared.scope.shutdown_requested() {
                // The stop begins when the requesting activation finishes, before its output is
                // routed: the output is accepted but never delivered (counted unprocessed).
                shared.request_stop(StopReason::Shutdown);
            }
            targets.clear();
            if let Err(error) = shared.topology.route(index, &output, |to| targets.push(to)) {
                shared.fail(error);
                shared.finish_one();
                return;
            }
            if targets.is_empty() {
                shared.record_sink(&name, output);
            } else {
                deliver(&shared, index, &targets, output).await;
            }
            shared.finish_one();
        }
    }

    shutdown_delivery(&shared, index, &name, &node).await;
}

/// Sends `output` to every target in order (per-pair FIFO), waiting for room (backpressure).
/// Every target's message is accepted first, so the in-flight count never drops to zero early.
async fn deliver(shared: &Shared, from: usize, targets: &[usize], output: NodeMessage) {
    shared.accept(targets.len() as u64);
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
                ChannelMessage::new(payload),
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
    shared: &Arc<Shared>,
    index: usize,
    name: &Arc<str>,
    node: &Arc<dyn spark_core::DynNode>,
) {
    let ctx = Context::new(
        NodeMessage::empty().with_metadata("shutdown", true),
        Arc::clone(name),
        index,
        Arc::clone(&shared.scope),
    );
    if let Err(message) = CatchUnwind::new(node.process_dyn(&ctx)).await {
        tracing::warn!(node = %name, %message, "node panicked during its shutdown delivery");
    }
}
