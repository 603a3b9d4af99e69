//! One worker per node. Its loop follows a message's path ([`Worker`]'s methods, in order):
//! take it from the mailbox, start it, process it, route the output, settle (deliver or record
//! it, count); and, once the run stops, the shutdown delivery.
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
use std::pin::{pin, Pin};
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use spark_adk_core::{
    AckHook, BudgetKind, Context, EventKind, NodeMessage, RunCounts, RunError, StopReason,
    StreamEvent, StreamSender,
};
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFuture;

use crate::accounting::Accounting;
use crate::activation::{Activation, Polling, Ran, Runner};
use crate::catch::{call_caught, drop_caught, payload_message};
use crate::envelope::{drop_all, Envelope};
use crate::lanes::Left;
use crate::mailbox::{Mailbox, StartedSlots};
use crate::mailboxes::{Sender, Undelivered};
use crate::outbox::Outbox;
use crate::shared::Shared;
use spark_adk_edges::NodeEntry;

/// Runs worker `lane` (of its node, see `lanes.rs`) until the run stops; reports a panic of
/// the worker itself as the node's panic.
pub(crate) async fn run_worker(shared: Arc<Shared>, lane: usize) {
    let mut work = pin!(Some(work(&shared, lane)));
    let run_id = shared.scope().run_id();
    let outcome = poll_fn(|cx| {
        let _polling = Polling::enter(run_id, lane);
        let polled = catch_unwind(AssertUnwindSafe(|| match work.as_mut().as_pin_mut() {
            Some(work) => work.poll(cx),
            None => Poll::Ready(()),
        }));
        match polled {
            Ok(poll) => poll.map(Ok),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    })
    .await;
    if let Err(payload) = outcome {
        let message = payload_message(payload);
        if let Err(again) = call_caught(|| work.set(None)) {
            tracing::warn!(message = %again, "dropping a panicked worker panicked");
        }
        shared.stop().fail(RunError::NodePanicked {
            node: shared.node_name(shared.mailboxes().lanes().node(lane)),
            message: format!("its worker panicked: {message}"),
            counts: RunCounts::default(),
        });
    }
}

/// How the message loop ended.
enum End {
    /// The run stopped: the worker gets its shutdown delivery.
    Stopped,
    /// The node failed (or its activation was dropped): no shutdown delivery.
    Failed,
}

async fn work(shared: &Shared, lane: usize) {
    let Some(mut worker) = Worker::new(shared, lane) else {
        return;
    };
    // A streamed run (`Graph::stream`): one branch per message decides, the plain path is
    // otherwise untouched.
    let stream = shared.scope().stream();
    // Completes when the stop begins (wakes the parked worker). Pinned here, in the task,
    // rather than boxed: one allocation less per worker.
    let mut stopped = pin!(shared.stop().token().cancelled());
    // Each step of the plain path is a plain call except where it may wait (the activation,
    // parking, a full mailbox): a nested future per step would cost its moves, polls and
    // drops per message.
    let end = loop {
        let envelope = match worker.next_queued() {
            Some(envelope) => envelope,
            None => match worker.take(stopped.as_mut()).await {
                Some(envelope) => envelope,
                None => break End::Stopped,
            },
        };
        if !worker.start() {
            let unprocessed = drop_all([envelope]) as u64;
            shared.accounting().unprocessed(unprocessed);
            break End::Stopped;
        }
        let output = if let Some(stream) = stream {
            // Boxed: the plain path's future stays as it was (one allocation per message,
            // streamed runs only).
            let Some(output) = Box::pin(worker.streamed(stream, envelope)).await else {
                break End::Failed;
            };
            output
        } else {
            let (ack, started) = worker.begin(envelope);
            let ran = worker.activation().await;
            let Some(output) = worker.end(ran, ack, started) else {
                break End::Failed;
            };
            if !worker.route(&output) {
                break End::Failed;
            }
            output
        };
        if let Err(blocked) = worker.settle(output) {
            // Boxed: waiting for room is rare, and its future would otherwise make every
            // idle worker's task larger.
            Box::pin(worker.deliver_blocked(blocked)).await;
        }
    };
    worker.deferred.flush();
    // The node's last lane to exit makes its shutdown delivery (unless one of them failed).
    let left = worker._close.leave(matches!(end, End::Failed));
    if left.last && !left.failed && !shared.stop().is_abandoned() {
        // Boxed: made once per worker, and large (a context, an activation, stream sends).
        Box::pin(worker.shutdown_delivery()).await;
    }
}

/// The rest of a delivery that found a full mailbox: the output, and the position in the
/// targets of the one to wait for.
struct Blocked {
    output: NodeMessage,
    at: usize,
}

/// The state of one worker between messages.
struct Worker<'a> {
    shared: &'a Shared,
    /// The node.
    index: usize,
    /// This worker among the run's workers (the node's index unless a node has several lanes).
    lane: usize,
    /// One of several lanes of its node: takes one message at a time (see `lanes.rs`).
    one: bool,
    mailbox: &'a Mailbox,
    /// The node's name and the node (the graph's entry, borrowed: nothing per worker).
    entry: &'a NodeEntry,
    runner: Runner<'a>,
    /// Messages taken out of the mailbox, not started yet (their slots are still taken).
    inbox: Inbox<'a>,
    deferred: Deferred<'a>,
    /// The targets of the current output.
    targets: Vec<usize>,
    /// Whether the last activation ever waited (`Pending`): a node that waits gets no batching.
    pended: bool,
    /// Whether anyone wants per-activation spans, probed once per worker: without a subscriber
    /// no span is built per message.
    node_spans: bool,
    /// One context for all activations of this worker: only its input changes per message. The
    /// previous input is dropped when the next one replaces it, or before the worker idles.
    ctx: Context,
    ctx_holds_input: bool,
    /// Declared last, so it is dropped last: held outputs (`deferred`) are queued before the
    /// worker's own mailbox closes.
    _close: CloseOnExit<'a>,
}

impl<'a> Worker<'a> {
    fn new(shared: &'a Shared, lane: usize) -> Option<Self> {
        let lanes = shared.mailboxes().lanes();
        let index = lanes.node(lane);
        let entry = shared.topology().node(index)?;
        let mailbox = shared.mailboxes().get(index)?;
        let accounting = shared.accounting();
        let scope = shared.scope();
        Some(Self {
            shared,
            index,
            lane,
            one: lanes.count(index) > 1,
            mailbox,
            entry,
            runner: Runner {
                abandon: OnceLock::new(),
                stop: shared.stop(),
            },
            inbox: Inbox {
                items: VecDeque::new(),
                accounting,
            },
            deferred: Deferred::new(shared, mailbox),
            targets: Vec::new(),
            pended: true,
            node_spans: tracing::span_enabled!(tracing::Level::DEBUG),
            ctx: Context::new(NodeMessage::empty(), index, Arc::clone(scope)),
            ctx_holds_input: false,
            _close: CloseOnExit {
                mailbox,
                shared,
                lane,
                processed: 0,
                routed: 0,
                left: None,
            },
        })
    }

    /// Take, without waiting: the next message of the inbox while the run is not stopping.
    #[inline]
    fn next_queued(&mut self) -> Option<Envelope> {
        if self.shared.stop().is_stopping() {
            return None;
        }
        self.inbox.pop_front()
    }

    /// Take: the next message of the inbox, refilled from the mailbox (parking while it is
    /// empty). `None` once the run is stopping.
    async fn take(
        &mut self,
        mut stopped: Pin<&mut WaitForCancellationFuture<'_>>,
    ) -> Option<Envelope> {
        loop {
            if self.shared.stop().is_stopping() {
                return None;
            }
            if let Some(envelope) = self.inbox.pop_front() {
                return Some(envelope);
            }
            // Nothing to start: hand on what this worker batched before looking for more.
            self.deferred.flush();
            if self.ctx_holds_input {
                drop(self.ctx.reset(NodeMessage::empty(), self.index));
                self.ctx_holds_input = false;
            }
            if self.mailbox.take_all(&mut self.inbox, self.one) {
                self.sample_depth();
                continue;
            }
            // Parking: an idle worker holds no buffer (memory per idle node).
            if self.inbox.capacity() > 0 {
                self.inbox.items = VecDeque::new();
            }
            if self.targets.capacity() > 0 {
                self.targets = Vec::new();
            }
            self.sample_depth();
            let (mailbox, one) = (self.mailbox, self.one);
            let inbox = &mut self.inbox;
            let received = tokio::select! {
                biased;
                () = stopped.as_mut() => false,
                received = poll_fn(|cx| mailbox.poll_take_all(cx, inbox, one)) => received,
            };
            if !received {
                return None;
            }
            self.sample_depth();
        }
    }

    /// Publishes how many messages wait in this node's mailbox, if anyone listens (the
    /// `MailboxDepth` event; nothing is read without a subscriber).
    fn sample_depth(&self) {
        self.shared.publish(|| EventKind::MailboxDepth {
            node: Arc::clone(&self.entry.name),
            depth: self.mailbox.depth() as u64,
        });
    }

    /// Start: the message's slot is free (given back at once to a node that waits, or when
    /// nothing else is queued here, otherwise with the batch). `false` when the run is
    /// stopping or the token budget is used up: the message does not start (the caller counts
    /// it unprocessed).
    #[inline]
    fn start(&mut self) -> bool {
        self.deferred
            .slots
            .started(self.pended || self.inbox.is_empty());
        may_start(self.shared)
    }

    /// Process: runs the node (see `activation.rs`), counts and acknowledges the message.
    /// `None` when the node failed or its activation was dropped (recorded; no shutdown
    /// delivery then). The plain path calls its three parts itself.
    async fn process(&mut self, envelope: Envelope) -> Option<NodeMessage> {
        let (ack, started) = self.begin(envelope);
        let ran = self.activation().await;
        self.end(ran, ack, started)
    }

    /// Process, first part: the message becomes the context's input; returns its
    /// acknowledgement hook and, when anyone listens to events, the start time.
    #[inline]
    fn begin(&mut self, envelope: Envelope) -> (Option<AckHook>, Option<Instant>) {
        let Envelope { payload, ack } = envelope;
        drop(self.ctx.reset(payload, self.index));
        self.ctx_holds_input = true;
        let started = if self.shared.topology().events().is_active() {
            self.shared.publish(|| EventKind::NodeStarted {
                node: Arc::clone(&self.entry.name),
            });
            Some(Instant::now())
        } else {
            None
        };
        self.pended = false;
        (ack, started)
    }

    /// Process, the activation (see `activation.rs`), in a span when anyone wants one. Not an
    /// `async fn`: it returns the runner's future itself, so awaiting it adds no future.
    #[inline]
    fn activation(&mut self) -> Activation<'_, impl FnMut() + Unpin + use<'_, 'a>> {
        let pended = &mut self.pended;
        let deferred = &mut self.deferred;
        let on_first_pending = || {
            *pended = true;
            deferred.flush();
        };
        let span = self.node_spans.then(
            || tracing::debug_span!("spark.node", node = %self.entry.name, mode = "long_running"),
        );
        self.runner
            .run(self.entry.node.as_ref(), &self.ctx, span, on_first_pending)
    }

    /// Process, last part: counts and acknowledges the message (see [`finished`]), and begins
    /// the stop if the node requested a shutdown.
    #[inline]
    fn end(
        &mut self,
        ran: Ran,
        ack: Option<AckHook>,
        started: Option<Instant>,
    ) -> Option<NodeMessage> {
        let shared = self.shared;
        let output = finished(
            shared,
            &mut self._close.processed,
            &self.entry.name,
            ran,
            ack,
            started,
        )?;
        if shared.scope().take_shutdown_request(self.index) {
            // The stop begins when the requesting activation finishes; its output is still
            // routed (accepted), and not delivered since the run is stopping (unprocessed).
            shared.stop().request(StopReason::Shutdown);
        }
        Some(output)
    }

    /// Process and route, as in a plain run, in a streamed run: the activation's input, output
    /// and sink output go to the stream too. `None` when the node failed or a predicate
    /// panicked (as `process` and `route`).
    async fn streamed(&mut self, stream: &StreamSender, envelope: Envelope) -> Option<NodeMessage> {
        let (node, input) = (Arc::clone(&self.entry.name), envelope.payload.clone());
        self.send(stream, StreamEvent::NodeStarted { node, input })
            .await;
        let output = self.process(envelope).await?;
        let (node, finished) = (Arc::clone(&self.entry.name), output.clone());
        self.send(
            stream,
            StreamEvent::NodeFinished {
                node,
                output: finished,
            },
        )
        .await;
        if !self.route(&output) {
            return None;
        }
        if self.targets.is_empty() {
            let (node, sink) = (Arc::clone(&self.entry.name), output.clone());
            self.send(stream, StreamEvent::SinkOutput { node, output: sink })
                .await;
        }
        Some(output)
    }

    /// Sends `event` to the run's stream; once the consumer dropped the stream, the run stops
    /// gracefully as if its handle was dropped ([`StopReason::HandleDropped`]).
    async fn send(&self, stream: &StreamSender, event: StreamEvent) {
        if !stream.send(event).await && !self.shared.stop().is_stopping() {
            self.shared.stop().request(StopReason::HandleDropped);
        }
    }

    /// Route: the targets of `output` (`Topology::route`). `false` when a predicate panicked
    /// (recorded as the run's error).
    #[inline]
    fn route(&mut self, output: &NodeMessage) -> bool {
        let targets = &mut self.targets;
        targets.clear();
        match self
            .shared
            .topology()
            .route(self.index, output, |to| targets.push(to))
        {
            Ok(_) => true,
            Err(error) => {
                self.shared.stop().fail(error);
                self.shared.finish_messages(1);
                false
            }
        }
    }

    /// Settle: a sink output is recorded and its message finished (with the batch); otherwise
    /// the targets' messages are accepted, and delivered or counted. `Err` when a target's
    /// mailbox is full: the caller waits for room with [`deliver_blocked`](Self::deliver_blocked).
    #[inline]
    fn settle(&mut self, output: NodeMessage) -> Result<(), Blocked> {
        if self.targets.is_empty() {
            self.shared.sinks().record(&self.entry.name, output);
            self.deferred.finished += 1;
            return Ok(());
        }
        let targets = self.targets.len() as u64;
        self._close.routed += targets;
        self.shared.accounting().settle(targets);
        self.deliver(output, 0)
    }

    /// Sends `output` to the targets from position `from` on, in order (per-pair FIFO). Every
    /// target's message was accepted (see `Accounting::settle`) before this is called; each
    /// one is delivered or counted unprocessed here, or, at the first full mailbox, left to
    /// [`deliver_blocked`](Self::deliver_blocked) (`Err`).
    ///
    /// A message for a mailbox with a free slot takes the slot at once and is held in the
    /// outbox when the activation never waited and more messages are queued here (see
    /// [`Outbox`]: they go out together, one lock and one wake-up per batch); otherwise it is
    /// queued now.
    #[inline]
    fn deliver(&mut self, output: NodeMessage, from: usize) -> Result<(), Blocked> {
        let shared = self.shared;
        let accounting = shared.accounting();
        let mailboxes = shared.mailboxes();
        let may_hold = !self.pended && !self.inbox.is_empty();
        let last = self.targets.len().saturating_sub(1);
        let mut output = Some(output);
        for at in from..self.targets.len() {
            let Some(&to) = self.targets.get(at) else {
                break;
            };
            if shared.stop().is_stopping() {
                // Accepted, not delivered after the stop.
                accounting.unprocessed(1);
                continue;
            }
            let Some(permit) = mailboxes.get(to).and_then(Mailbox::try_reserve) else {
                return Err(Blocked {
                    output: output.take().unwrap_or_default(),
                    at,
                });
            };
            let payload = if at == last {
                output.take().unwrap_or_default()
            } else {
                output.clone().unwrap_or_default()
            };
            // Counts what a closed mailbox refused (this message, or held ones with it).
            let refused = self.deferred.outbox.hold(
                mailboxes,
                to,
                permit,
                Envelope::routed(payload),
                may_hold,
            );
            accounting.unprocessed(refused);
            if refused == 0 {
                self.sent(to);
            }
        }
        Ok(())
    }

    /// The rest of a delivery that found the mailbox of the target at `blocked.at` full: hands
    /// on everything batched, then waits for room (backpressure, deadlock detection), and
    /// goes on with the next targets.
    async fn deliver_blocked(&mut self, mut blocked: Blocked) {
        let shared = self.shared;
        loop {
            let Blocked { output, at } = blocked;
            let Some(&to) = self.targets.get(at) else {
                return;
            };
            let (payload, rest) = if at + 1 >= self.targets.len() {
                (output, None)
            } else {
                (output.clone(), Some(output))
            };
            // About to block: hand on everything batched first.
            self.deferred.flush();
            let sent = match shared
                .mailboxes()
                .reserve(to, Sender::Worker(self.lane), shared.stop().token())
                .await
            {
                Ok(permit) => permit.push(Envelope::routed(payload)).is_ok(),
                Err(Undelivered::Deadlock) => {
                    shared.stop().fail(RunError::Deadlock {
                        blocked: Vec::new(), // named when the run ends (see `Shared::finish`)
                        counts: RunCounts::default(),
                    });
                    false
                }
                Err(Undelivered::Stopped | Undelivered::Closed) => false,
            };
            if sent {
                self.sent(to);
            } else {
                // A closed mailbox, the stop, or a deadlock.
                shared.accounting().unprocessed(1);
            }
            let Some(output) = rest else {
                return;
            };
            match self.deliver(output, at + 1) {
                Ok(()) => return,
                Err(next) => blocked = next,
            }
        }
    }

    /// Publishes that a message went from this node to `to`, if anyone listens.
    #[inline]
    fn sent(&self, to: usize) {
        let shared = self.shared;
        shared.publish(|| EventKind::MessageSent {
            from: Arc::clone(&self.entry.name),
            to: name_of(shared, to),
        });
    }

    /// The shutdown delivery: `process` once with `metadata["shutdown"] == true`; its output is
    /// neither routed nor a sink output, and it is not counted as processed. Dropped (and
    /// counted in `activations_dropped`) if it still runs when the grace period ends.
    async fn shutdown_delivery(&mut self) {
        let ctx = Context::new(
            NodeMessage::empty().with_metadata("shutdown", true),
            self.index,
            Arc::clone(self.shared.scope()),
        );
        // A streamed run streams the delivery like an activation (its input says `shutdown`),
        // so what the node emits meanwhile comes between a `NodeStarted` and a `NodeFinished`.
        let stream = self.shared.scope().stream();
        if let Some(stream) = stream {
            let (node, input) = (Arc::clone(&self.entry.name), ctx.inputs().clone());
            self.send(stream, StreamEvent::NodeStarted { node, input })
                .await;
        }
        let panic = match self
            .runner
            .run(self.entry.node.as_ref(), &ctx, None, || {})
            .await
        {
            Ran::Done(Ok(output)) => {
                if let Some(stream) = stream {
                    let node = Arc::clone(&self.entry.name);
                    self.send(stream, StreamEvent::NodeFinished { node, output })
                        .await;
                }
                None
            }
            Ran::Done(Err(error)) => {
                tracing::warn!(node = %self.entry.name, %error, "the shutdown delivery returned an error");
                None
            }
            Ran::Panicked(message) => Some(message),
            Ran::Dropped(panic) => {
                self.shared.accounting().activation_dropped();
                panic
            }
        };
        if let Some(message) = panic {
            self.shared.stop().fail(RunError::NodePanicked {
                node: self.entry.name.to_string(),
                message: format!("during its shutdown delivery: {message}"),
                counts: RunCounts::default(),
            });
        }
    }
}

/// Whether a taken message may start: not once the run is stopping, nor once the token budget
/// is used up (which begins the stop).
#[inline]
pub(crate) fn may_start(shared: &Shared) -> bool {
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

/// Settles an activation of worker `lane` that ended: counts it, publishes its event, fires
/// its acknowledgement hook. Returns the output to route, or `None` when the node failed (the
/// run's failure is recorded) or its activation was dropped.
#[inline]
pub(crate) fn finished(
    shared: &Shared,
    processed: &mut u64,
    name: &Arc<str>,
    ran: Ran,
    ack: Option<AckHook>,
    started: Option<Instant>,
) -> Option<NodeMessage> {
    let output = match ran {
        Ran::Done(Ok(output)) => output,
        Ran::Done(Err(source)) => {
            let error = RunError::NodeFailed {
                node: name.to_string(),
                source,
                counts: RunCounts::default(),
            };
            return failed(shared, processed, name, error, ack, started);
        }
        Ran::Panicked(message) => {
            let error = RunError::NodePanicked {
                node: name.to_string(),
                message,
                counts: RunCounts::default(),
            };
            return failed(shared, processed, name, error, ack, started);
        }
        Ran::Dropped(panic) => {
            dropped(shared, name, ack, panic);
            return None;
        }
    };
    if let Some(started) = started {
        shared.publish(|| EventKind::NodeFinished {
            node: Arc::clone(name),
            duration: started.elapsed(),
        });
    }
    *processed += 1;
    if let Some(ack) = ack {
        if let Err(message) = call_caught(move || ack.fire()) {
            shared.stop().fail(RunError::NodePanicked {
                node: name.to_string(),
                message: format!("its acknowledgement hook panicked: {message}"),
                counts: RunCounts::default(),
            });
            shared.finish_messages(1);
            return None;
        }
    }
    Some(output)
}

/// The node's activation ended with `error` (its message was processed).
#[cold]
fn failed(
    shared: &Shared,
    processed: &mut u64,
    name: &Arc<str>,
    error: RunError,
    ack: Option<AckHook>,
    started: Option<Instant>,
) -> Option<NodeMessage> {
    if started.is_some() {
        shared.publish(|| EventKind::NodeFailed {
            node: Arc::clone(name),
            error: error.to_string(),
        });
    }
    *processed += 1;
    if let Some(ack) = ack {
        if let Err(message) = call_caught(move || ack.fire()) {
            tracing::warn!(node = %name, %message, "an acknowledgement hook panicked after the node failed");
        }
    }
    shared.stop().fail(error);
    shared.finish_messages(1);
    None
}

/// The activation was dropped at the end of the grace period: its message is not processed.
#[cold]
fn dropped(shared: &Shared, name: &Arc<str>, ack: Option<AckHook>, panic: Option<String>) {
    let accounting = shared.accounting();
    accounting.unprocessed(1);
    accounting.activation_dropped();
    if let Some(ack) = ack {
        let _ = drop_caught(ack);
    }
    if let Some(message) = panic {
        shared.stop().fail(RunError::NodePanicked {
            node: name.to_string(),
            message,
            counts: RunCounts::default(),
        });
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

/// When the worker exits, however it exits: adds its counts to the run's
/// ([`Accounting::add_worker`]), and, for the node's last lane (see `lanes.rs`), closes the
/// mailbox and counts the messages still queued there unprocessed.
struct CloseOnExit<'a> {
    mailbox: &'a Mailbox,
    shared: &'a Shared,
    lane: usize,
    /// Messages this worker processed.
    processed: u64,
    /// Outputs this worker routed to mailboxes (accepted messages).
    routed: u64,
    /// Set once this lane left its node.
    left: Option<Left>,
}

impl CloseOnExit<'_> {
    /// This lane leaves its node (once; a worker dropped by a panic leaves as failed).
    fn leave(&mut self, failed: bool) -> Left {
        *self
            .left
            .get_or_insert_with(|| self.shared.mailboxes().lanes().leave(self.lane, failed))
    }
}

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        self.shared
            .accounting()
            .add_worker(self.lane, self.processed, self.routed);
        if self.leave(true).last {
            self.shared
                .accounting()
                .unprocessed(self.mailbox.close() as u64);
        }
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
