//! One worker per node. [`run_worker`] follows a message's path: take it from the mailbox,
//! start it, process it, route the output, settle the counts; and, once the run stops, the
//! shutdown delivery.
//!
//! Nothing a worker holds is lost when it exits, however it exits: the messages left in its
//! inbox and mailbox and the outputs it held are counted unprocessed by the guards that own them
//! ([`Inbox`], [`CloseOnExit`], [`Deferred`]). A panic on the node's behalf is caught where it
//! happens (see `activation.rs`); a panic of the worker itself, which would be a bug, is still
//! caught and reported as the node's `NodePanicked`: a worker never dies silently.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use spark_adk_core::{
    AckHook, BudgetKind, Context, DynNode, EventKind, NodeMessage, RunCounts, RunError, StopReason,
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::accounting::Accounting;
use crate::activation::{call_caught, payload_message, Ran, Runner};
use crate::envelope::{drop_all, Envelope};
use crate::mailbox::{Mailbox, StartedSlots, IDLE_BUFFER};
use crate::mailboxes::{Sender, Undelivered};
use crate::outbox::Outbox;
use crate::shared::Shared;

/// Runs the worker of node `index` until the run stops; reports a panic of the worker itself
/// as the node's panic.
pub(crate) async fn run_worker(shared: Arc<Shared>, index: usize) {
    let mut work = Box::pin(work(&shared, index));
    let outcome = poll_fn(|cx| {
        catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))).map_or_else(
            |payload| std::task::Poll::Ready(Err(payload)),
            |p| p.map(Ok),
        )
    })
    .await;
    if let Err(payload) = outcome {
        let message = payload_message(payload);
        if let Err(again) = crate::activation::drop_caught(work) {
            tracing::warn!(message = %again, "dropping a panicked worker panicked");
        }
        shared.stop().fail(RunError::NodePanicked {
            node: shared.node_name(index),
            message: format!("its worker panicked: {message}"),
            counts: RunCounts::default(),
        });
    }
    shared.stop().worker_exited();
}

/// How the message loop ended.
enum End {
    /// The run stopped: the worker gets its shutdown delivery.
    Stopped,
    /// The node failed (or its activation was dropped): no shutdown delivery.
    Failed,
}

async fn work(shared: &Shared, index: usize) {
    let (Some(entry), Some(mailbox)) =
        (shared.topology().node(index), shared.mailboxes().get(index))
    else {
        return;
    };
    let accounting = shared.accounting();
    let _close = CloseOnExit {
        mailbox,
        accounting,
    };
    let name = Arc::clone(&entry.name);
    let node = Arc::clone(&entry.node);
    let scope = shared.scope();
    let abandon = shared.stop().abandon_token();
    let runner = Runner {
        run_id: scope.run_id(),
        worker: index,
        abandon: &abandon,
        stop: shared.stop(),
    };
    let mut targets: Vec<usize> = Vec::new();
    // Messages taken out of the mailbox, not started yet (their slots are still taken).
    let mut inbox = Inbox {
        items: VecDeque::new(),
        accounting,
    };
    let mut deferred = Deferred::new(shared, mailbox);
    // Whether the last activation ever waited (`Pending`): a node that waits gets no batching.
    let mut pended = true;
    // Whether anyone wants per-activation spans, probed once per worker: without a subscriber
    // no span is built per message.
    let node_spans = tracing::span_enabled!(tracing::Level::DEBUG);
    // One context for all activations of this worker: only its input changes per message. The
    // previous input is dropped when the next one replaces it, or before the worker idles.
    let mut ctx = Context::new(NodeMessage::empty(), index, Arc::clone(scope));
    let mut ctx_holds_input = false;
    let stopped = shared.stop().token().clone().cancelled_owned();
    tokio::pin!(stopped);

    let end = loop {
        // Take.
        if shared.stop().is_stopping() {
            break End::Stopped;
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
                inbox.items = VecDeque::new();
            }
            let received = tokio::select! {
                biased;
                () = &mut stopped => false,
                received = poll_fn(|cx| mailbox.poll_take_all(cx, &mut inbox)) => received,
            };
            if received {
                continue;
            }
            break End::Stopped;
        };

        // Start. The slot is free: given back at once to a node that waits (`Pending`) or when
        // nothing else is queued here, otherwise with the batch.
        deferred.slots.started(pended || inbox.is_empty());
        if !may_start(shared) {
            accounting.unprocessed(drop_all([envelope]) as u64);
            break End::Stopped;
        }

        // Process.
        let Envelope { payload, ack } = envelope;
        drop(ctx.reset(payload, index));
        ctx_holds_input = true;
        shared.publish(|| EventKind::NodeStarted {
            node: Arc::clone(&name),
        });
        let started = shared.topology().events().is_active().then(Instant::now);
        pended = false;
        let activation = runner.run(node.as_ref(), &ctx, || {
            pended = true;
            deferred.flush();
        });
        let ran = if node_spans {
            let span = tracing::debug_span!("spark.node", node = %name, mode = "long_running");
            activation.instrument(span).await
        } else {
            activation.await
        };
        let output = match finished(shared, index, &name, ran, ack, started) {
            Some(output) => output,
            None => break End::Failed,
        };
        if scope.take_shutdown_request(index) {
            // The stop begins when the requesting activation finishes; its output is still
            // routed (accepted), and not delivered since the run is stopping (unprocessed).
            shared.stop().request(StopReason::Shutdown);
        }

        // Route.
        targets.clear();
        if let Err(error) = shared
            .topology()
            .route(index, &output, |to| targets.push(to))
        {
            shared.stop().fail(error);
            shared.finish_messages(1);
            break End::Failed;
        }

        // Settle.
        if targets.is_empty() {
            shared.sinks().record(&name, output);
            deferred.finished += 1;
        } else {
            accounting.settle(index, targets.len() as u64);
            // Outputs of an activation that never waited may be held while more messages are
            // queued here: they go out together (one lock, one wake-up per batch).
            let may_hold = !pended && !inbox.is_empty();
            deliver(shared, index, &targets, output, &mut deferred, may_hold).await;
        }
    };
    deferred.flush();
    if matches!(end, End::Stopped) && !shared.stop().is_abandoned() {
        shutdown_delivery(shared, &runner, &name, node.as_ref()).await;
    }
}

/// Whether a taken message may start: not once the run is stopping, nor once the token budget
/// is used up (which begins the stop).
fn may_start(shared: &Shared) -> bool {
    if shared.stop().is_stopping() {
        return false;
    }
    if shared.scope().tokens_exhausted() {
        if !shared.stop().is_stopping() {
            shared.publish(|| EventKind::BudgetExhausted {
                kind: BudgetKind::Tokens,
            });
        }
        shared
            .stop()
            .request(StopReason::Budget(BudgetKind::Tokens));
        return false;
    }
    true
}

/// Settles an activation that ended: counts it, publishes its event, fires its
/// acknowledgement hook. Returns the output to route, or `None` when the node failed (the
/// run's failure is recorded) or its activation was dropped.
fn finished(
    shared: &Shared,
    index: usize,
    name: &Arc<str>,
    ran: Ran,
    ack: Option<AckHook>,
    started: Option<Instant>,
) -> Option<NodeMessage> {
    let accounting = shared.accounting();
    let outcome = match ran {
        Ran::Dropped(panic) => {
            // The grace period ended while it ran: not processed.
            accounting.unprocessed(1);
            accounting.activation_dropped();
            if let Some(ack) = ack {
                let _ = crate::activation::drop_caught(ack);
            }
            if let Some(message) = panic {
                shared.stop().fail(RunError::NodePanicked {
                    node: name.to_string(),
                    message,
                    counts: RunCounts::default(),
                });
            }
            return None;
        }
        Ran::Done(Ok(output)) => Ok(output),
        Ran::Done(Err(source)) => Err(RunError::NodeFailed {
            node: name.to_string(),
            source,
            counts: RunCounts::default(),
        }),
        Ran::Panicked(message) => Err(RunError::NodePanicked {
            node: name.to_string(),
            message,
            counts: RunCounts::default(),
        }),
    };
    if let Some(started) = started {
        shared.publish(|| match &outcome {
            Ok(_) => EventKind::NodeFinished {
                node: Arc::clone(name),
                duration: started.elapsed(),
            },
            Err(e) => EventKind::NodeFailed {
                node: Arc::clone(name),
                error: e.to_string(),
            },
        });
    }
    accounting.record_processed(index);
    let acked = match ack {
        Some(ack) => call_caught(move || ack.fire()),
        None => Ok(()),
    };
    let outcome = match (outcome, acked) {
        (Ok(output), Ok(())) => Ok(output),
        (Err(error), _) => Err(error),
        (Ok(_), Err(message)) => Err(RunError::NodePanicked {
            node: name.to_string(),
            message: format!("its acknowledgement hook panicked: {message}"),
            counts: RunCounts::default(),
        }),
    };
    match outcome {
        Ok(output) => Some(output),
        Err(error) => {
            shared.stop().fail(error);
            shared.finish_messages(1);
            None
        }
    }
}

/// Sends `output` to every target in order (per-pair FIFO). Every target's message was
/// accepted (see `Accounting::settle`) before this is called; each one is delivered or counted
/// unprocessed here.
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
    let accounting = shared.accounting();
    let mailboxes = shared.mailboxes();
    let last = targets.len().saturating_sub(1);
    let mut output = Some(output);
    for (i, &to) in targets.iter().enumerate() {
        let payload = if i == last {
            output.take().unwrap_or_default()
        } else {
            output.clone().unwrap_or_default()
        };
        if shared.stop().is_stopping() {
            // Accepted, not delivered after the stop.
            accounting.unprocessed(1);
            continue;
        }
        let envelope = Envelope::routed(payload);
        let delivered = if let Some(permit) = mailboxes.get(to).and_then(Mailbox::try_reserve) {
            // Counts what a closed mailbox refused (this message, or held ones with it).
            let refused = deferred
                .outbox
                .hold(mailboxes, to, permit, envelope, may_hold);
            accounting.unprocessed(refused);
            refused == 0
        } else {
            // About to block: hand on everything batched first.
            deferred.flush();
            let sent = match mailboxes
                .reserve(to, Sender::Worker(from), shared.stop().token())
                .await
            {
                Ok(permit) => permit.push(envelope).is_ok(),
                Err(Undelivered::Deadlock) => {
                    shared.stop().fail(RunError::Deadlock {
                        blocked: Vec::new(), // named when the run ends (see `Shared::finish`)
                        counts: RunCounts::default(),
                    });
                    false
                }
                Err(Undelivered::Stopped | Undelivered::Closed) => false,
            };
            if !sent {
                // A closed mailbox, the stop, or a deadlock.
                accounting.unprocessed(1);
            }
            sent
        };
        if delivered {
            shared.publish(|| EventKind::MessageSent {
                from: name_of(shared, from),
                to: name_of(shared, to),
            });
        }
    }
}

fn name_of(shared: &Shared, index: usize) -> Arc<str> {
    shared
        .topology()
        .names()
        .get(index)
        .cloned()
        .unwrap_or_else(|| Arc::from("?"))
}

/// The shutdown delivery: `process` once with `metadata["shutdown"] == true`; its output is
/// neither routed nor a sink output, and it is not counted as processed. Dropped (and counted
/// in `activations_dropped`) if it still runs when the grace period ends.
async fn shutdown_delivery(
    shared: &Shared,
    runner: &Runner<'_>,
    name: &Arc<str>,
    node: &dyn DynNode,
) {
    let ctx = Context::new(
        NodeMessage::empty().with_metadata("shutdown", true),
        runner.worker,
        Arc::clone(shared.scope()),
    );
    match runner.run(node, &ctx, || {}).await {
        Ran::Done(_) => {}
        Ran::Panicked(message) => {
            tracing::warn!(node = %name, %message, "node panicked during its shutdown delivery");
        }
        Ran::Dropped(panic) => {
            shared.accounting().activation_dropped();
            if let Some(message) = panic {
                tracing::warn!(node = %name, %message, "dropping a shutdown delivery panicked");
            }
        }
    }
}

/// Closes the worker's mailbox when the worker exits, however it exits, and counts the
/// messages still queued there unprocessed.
struct CloseOnExit<'a> {
    mailbox: &'a Mailbox,
    accounting: &'a Accounting,
}

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        self.accounting.unprocessed(self.mailbox.close() as u64);
    }
}

/// The messages a worker took out of its mailbox and has not started; counted unprocessed if
/// the worker exits before starting them.
struct Inbox<'a> {
    items: VecDeque<Envelope>,
    accounting: &'a Accounting,
}

impl Deref for Inbox<'_> {
    type Target = VecDeque<Envelope>;

    fn deref(&self) -> &VecDeque<Envelope> {
        &self.items
    }
}

impl DerefMut for Inbox<'_> {
    fn deref_mut(&mut self) -> &mut VecDeque<Envelope> {
        &mut self.items
    }
}

impl Drop for Inbox<'_> {
    fn drop(&mut self) {
        let left = drop_all(self.items.drain(..));
        self.accounting.unprocessed(left as u64);
    }
}

/// What a worker batches between the moments it may wait: outputs it holds for a moment (see
/// [`Outbox`]), the slots of started messages (see [`StartedSlots`]) and messages finished
/// without routing anything onward. The in-flight count drops by the batch before the worker
/// idles, so quiescence is detected when the last worker idles and never early (a deferred
/// finish only keeps the count higher). Everything is handed on when the worker is about to
/// wait: its inbox ran empty, its node returned `Pending`, it blocks on a full mailbox, or it
/// exits (held outputs are then queued, or counted unprocessed if their mailbox is closed).
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
        let refused = self.outbox.flush_all(self.shared.mailboxes());
        self.shared.accounting().unprocessed(refused);
        self.slots.flush();
        self.shared
            .finish_messages(std::mem::take(&mut self.finished));
    }
}

impl Drop for Deferred<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}
