//! One worker per node: take a message, process it, route the output, repeat; then the
//! shutdown delivery.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;

use spark_adk_core::panic::CatchUnwind;
use spark_adk_core::{
    BudgetKind, Context, EventKind, NodeMessage, RunCounts, RunError, StopReason,
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::blocked::Undelivered;
use crate::envelope::Envelope;
use crate::mailbox::{Mailbox, StartedSlots};
use crate::outbox::Outbox;
use crate::shared::Shared;

/// Message buffers larger than this (in messages) are freed when the worker parks.
pub(crate) const IDLE_BUFFER: usize = 64;

/// Closes the worker's mailbox when the worker exits, however it exits.
struct CloseOnExit<'a>(&'a Mailbox);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What a worker batches between the moments it may wait: outputs it holds for a moment (see
/// [`Outbox`]), the slots of started messages (see [`StartedSlots`]) and messages finished
/// without routing anything onward. The in-flight count drops by the batch before the worker
/// idles, so quiescence is detected when the last worker idles and never early (a deferred
/// finish only keeps the count higher). Everything is handed on when the worker is about to
/// wait: its inbox ran empty, its node returned `Pending`, it blocks on a full mailbox, or it
/// exits.
struct Deferred<'a> {
    shared: &'a Shared,
    outbox: Outbox,
    slots: StartedSlots<'a>,
    finished: u64,
}

impl<'a> Deferred<'a> {
    fn new(shared: &'a Shared, mailbox: &'a Mailbox) -> Self {
        Self {
            shared,
            outbox: Outbox::default(),
            slots: StartedSlots::new(mailbox),
            finished: 0,
        }
    }

    /// Hands on everything batched: held outputs, started slots, finished messages.
    fn flush(&mut self) {
        self.outbox.flush_all(&self.shared.mailboxes);
        self.give_back();
    }

    /// Gives back the started slots and finishes the finished messages.
    fn give_back(&mut self) {
        self.slots.flush();
        self.shared
            .finish_messages(std::mem::take(&mut self.finished));
    }
}

impl Drop for Deferred<'_> {
    /// Held outputs are not delivered: the worker only exits once the run stops, and they stay
    /// counted as unprocessed.
    fn drop(&mut self) {
        self.give_back();
    }
}

/// Awaits `activation`, recording whether it ever returned `Pending`. The first time it does,
/// everything the worker batched is handed on (it is about to wait; see [`Deferred`]).
async fn track_pending<F: Future>(
    activation: F,
    pended: &mut bool,
    deferred: &mut Deferred<'_>,
) -> F::Output {
    let mut activation = pin!(activation);
    poll_fn(|cx| {
        let poll = activation.as_mut().poll(cx);
        if poll.is_pending() && !*pended {
            *pended = true;
            deferred.flush();
        }
        poll
    })
    .await
}

pub(crate) async fn run_worker(shared: Arc<Shared>, index: usize) {
    let (Some(entry), Some(mailbox)) = (shared.topology.node(index), shared.mailboxes.get(index))
    else {
        return;
    };
    let _close = CloseOnExit(mailbox);
    let name = Arc::clone(&entry.name);
    let node = Arc::clone(&entry.node);
    let scope = Arc::clone(&shared.scope);
    let mut targets: Vec<usize> = Vec::new();
    // Messages taken out of the mailbox, not started yet (their slots are still taken).
    let mut inbox: VecDeque<Envelope> = VecDeque::new();
    let mut deferred = Deferred::new(&shared, mailbox);
    // Whether the last activation ever waited (`Pending`): a node that waits gets no batching.
    let mut pended = true;
    // Whether anyone wants per-activation spans, probed once per worker: without a subscriber
    // no span is built per message.
    let node_spans = tracing::span_enabled!(tracing::Level::DEBUG);
    // One context for all activations of this worker: only its input changes per message. The
    // previous input is dropped when the next one replaces it, or before the worker idles.
    let mut ctx = Context::new(NodeMessage::empty(), index, Arc::clone(&scope));
    let mut ctx_holds_input = false;
    let stopped = shared.stop.clone().cancelled_owned();
    tokio::pin!(stopped);

    loop {
        if shared.is_stopping() {
            break;
        }
        let Some(envelope) = inbox.pop_front() else {
            // Nothing to start: hand on what this worker batched before looking for more.
            deferred.flush();
            if ctx_holds_input {
                drop(ctx.reset(NodeMessage::empty(), index));
                ctx_holds_input = false;
            }
            if mailbox.take_all(&mut inbox) {
                continue;
            }
            // Parking: give back the space a burst grew the inbox to.
            if inbox.capacity() > IDLE_BUFFER {
                inbox = VecDeque::new();
            }
            let received = tokio::select! {
                biased;
                () = &mut stopped => false,
                received = poll_fn(|cx| mailbox.poll_take_all(cx, &mut inbox)) => received,
            };
            if received {
                continue;
            }
            break;
        };
        // The message is started: its slot is free. Given back at once to a node that waits
        // (`Pending`) or when nothing else is queued here, otherwise with the batch.
        deferred.slots.started(pended || inbox.is_empty());
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
        drop(ctx.reset(payload, index));
        ctx_holds_input = true;
        shared.publish(|| EventKind::NodeStarted {
            node: Arc::clone(&name),
        });
        let started = shared.topology.events().is_active().then(Instant::now);
        let activation = CatchUnwind::new(node.process_dyn(&ctx));
        pended = false;
        let outcome = if node_spans {
            let span = tracing::debug_span!("spark.node", node = %name, mode = "long_running");
            track_pending(activation.instrument(span), &mut pended, &mut deferred).await
        } else {
            track_pending(activation, &mut pended, &mut deferred).await
        };
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
                shared.finish_messages(1);
                return; // a failed worker gets no shutdown delivery
            }
            Err(message) => {
                shared.fail(RunError::NodePanicked {
                    node: name.to_string(),
                    message,
                    counts: RunCounts::default(),
                });
                shared.finish_messages(1);
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
            shared.finish_messages(1);
            return;
        }
        if targets.is_empty() {
            shared.record_sink(&name, output);
            deferred.finished += 1;
        } else {
            shared.settle(index, targets.len() as u64);
            // Outputs of an activation that never waited may be held while more messages are
            // queued here: they go out together (one lock, one wake-up per batch).
            let may_hold = !pended && !inbox.is_empty();
            deliver(&shared, index, &targets, output, &mut deferred, may_hold).await;
        }
    }
    shutdown_delivery(index, &name, &node, scope).await;
}

/// Sends `output` to every target in order (per-pair FIFO). Every target's message was
/// accepted (see `Shared::settle`) before this is called.
///
/// A message for a mailbox with a free slot takes the slot at once and is held in the outbox
/// when `may_hold` (see [`Outbox`]); otherwise it is queued now. A full mailbox makes the
/// worker hand on everything it holds and then wait for room (backpressure, deadlock
/// detection).
async fn deliver(
    shared: &Shared,
    from: usize,
    targets: &[usize],
    output: NodeMessage,
    deferred: &mut Deferred<'_>,
    may_hold: bool,
) {
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
        let Some(mailbox) = shared.mailboxes.get(to) else {
            continue;
        };
        let sent = if mailbox.try_reserve() {
            deferred
                .outbox
                .hold(&shared.mailboxes, to, Envelope::routed(payload), may_hold);
            Ok(())
        } else {
            // About to block: hand on everything batched first.
            deferred.flush();
            shared
                .blocked
                .send(
                    &shared.mailboxes,
                    from,
                    to,
                    Envelope::routed(payload),
                    &shared.stop,
                )
                .await
        };
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
    node: &Arc<dyn spark_adk_core::DynNode>,
    scope: Arc<spark_adk_core::RunScope>,
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
