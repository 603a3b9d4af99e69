//! Durable long-running runs (docs/runtime-semantics.md, "Durable runs"): every message has a
//! [`MessageId`], every committed activation is one [`ActivationRecord`] in the run's log,
//! every handle send is an [`AcceptedRecord`] queued before the message reaches its mailbox, and
//! a run resumes from its log with every mailbox refilled.
//!
//! A plain run never reaches this module: `Shared` holds no [`Durable`], the executor spawns the
//! plain workers (`worker.rs`), and a handle send checks one `Option`. A durable run's workers
//! are the ones here: the same mailboxes, accounting, stop and sinks, with a per-message path
//! that logs before it delivers.
//!
//! **Order in the log.** A record is queued into the log's writer (one channel, committed in
//! order) *before* anything it caused can be seen by another worker: a worker queues its
//! activation record before it delivers the routed messages; a handle send queues its accepted
//! record under the target mailbox's lock, in the same breath as the push. So a message is
//! always accepted in the log before the record of the activation that consumes it, which is
//! what replay checks. In `Sync` mode a worker also waits for the commit before it delivers or
//! records a sink output, and a send returns once its record is committed.
//!
//! **Message ids.** Each mailbox has a queue of ids beside it, pushed under the mailbox's lock
//! with each message, so the worker pops the id of each message it starts, in order; the
//! `Envelope` of plain runs stays as small as it was.
//!
//! **State and tokens.** Writes to the graph state are visible to every worker at once (as in a
//! plain run); a record carries the keys written since the previous record (with their values
//! when it is queued, under one lock) and the tokens recorded since then. The log's state is
//! therefore the live state as of the last record; a crash loses the writes after it.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use spark_adk_core::panic::CatchUnwind;
use spark_adk_core::{
    Budget, ChannelMessage, Context, GraphState, InterruptInfo, NodeMessage, RunCounts, RunError,
    RunResult, StopReason, Task, TaskType, Value,
};
use spark_adk_durable::{
    AcceptedRecord, ActivationRecord, Budgets, DurableError, DurableOptions, DurableRunError,
    EdgeShape, Fingerprint, InterruptRecord, Lease, MessageId, Record, ResumeRecord, RoutedMessage,
    RunHeader, RunImage, RunLog, RunMode, StateChange, StopRecord, Store, StoreExt, TopologyShape,
};
use spark_adk_edges::Topology;
use tokio_util::sync::WaitForCancellationFuture;

use crate::activation::{Ran, Runner};
use crate::envelope::{drop_all, Envelope};
use crate::executor::{drive, start, LongRunningExecutor};
use crate::handle::HandleSendError;
use crate::mailbox::{lock, Mailbox, Permit, StartedSlots};
use crate::mailboxes::{Sender, Undelivered};
use crate::shared::Shared;
use crate::worker::{finished, may_start};

/// The durable crate's picture of `topology` (node names, edges with their conditions as text
/// and priorities, the start node): the same as the standard executor's, so a graph has one
/// fingerprint whichever mode runs it.
pub fn topology_shape(topology: &Topology) -> TopologyShape {
    let names = topology.names();
    let name = |i: usize| {
        names
            .get(i)
            .map_or_else(|| format!("#{i}"), |n| n.to_string())
    };
    TopologyShape {
        nodes: names.iter().map(|n| n.to_string()).collect(),
        edges: topology
            .edges()
            .map(|e| {
                let mut shape = EdgeShape::new(
                    name(e.from),
                    name(e.to),
                    e.condition.label().unwrap_or_else(|| "always".to_owned()),
                );
                shape.priority = i64::from(e.priority);
                shape
            })
            .collect(),
        start: name(topology.start()),
    }
}

/// The fingerprint of `topology` ([`topology_shape`]), written into every durable run's header.
pub fn fingerprint(topology: &Topology) -> Fingerprint {
    Fingerprint::of(topology_shape(topology))
}

/// The pending messages of one node, in log order.
type Backlog = VecDeque<(MessageId, NodeMessage)>;

/// What a durable run adds to a long-running run (see the module docs).
pub(crate) struct Durable {
    log: RunLog,
    /// Per node: the ids of the messages queued in its mailbox, in queue order.
    ids: Box<[Mutex<VecDeque<MessageId>>]>,
    /// Per node: the messages the log left pending (a resume), started before the mailbox's.
    backlog: Box<[Mutex<Backlog>]>,
    next_id: AtomicU64,
    /// Answers to interrupts, by activation; `None` when the image had none (no lock per
    /// activation then).
    resume_values: Option<Mutex<HashMap<MessageId, Value>>>,
    /// Held while a record's state changes and tokens are read and the record is queued, so
    /// records carry them in log order. Holds the tokens logged so far.
    commit: Mutex<u64>,
    interrupt: Mutex<Option<InterruptInfo>>,
    /// The log's first failure: the run stops, and ends with this error.
    failure: Mutex<Option<DurableError>>,
    /// What the image held when the run (re)started, restored into the run's counts.
    image: Mutex<Option<RunImage>>,
}

impl Durable {
    fn new(topology: &Topology, image: RunImage, log: RunLog) -> Result<Self, DurableError> {
        let n = topology.len();
        let mut backlog: Vec<Backlog> = vec![VecDeque::new(); n];
        let mut resume_values = HashMap::new();
        for m in image.pending() {
            let Some(index) = topology.index_of(&m.to) else {
                return Err(DurableError::corrupt(
                    image.run_id(),
                    image.last_seq(),
                    format!(
                        "message {} is for `{}`, which is not in the graph",
                        m.id, m.to
                    ),
                ));
            };
            if let Some(v) = image.resume_value(m.id) {
                resume_values.insert(m.id, v.clone());
            }
            backlog[index].push_back((m.id, m.message.clone()));
        }
        for node in image.processed().keys() {
            if topology.index_of(node).is_none() {
                return Err(DurableError::corrupt(
                    image.run_id(),
                    image.last_seq(),
                    format!("node `{node}` is not in the graph"),
                ));
            }
        }
        Ok(Self {
            log,
            ids: (0..n).map(|_| Mutex::new(VecDeque::new())).collect(),
            backlog: backlog.into_iter().map(Mutex::new).collect(),
            next_id: AtomicU64::new(image.next_message_id().0),
            resume_values: (!resume_values.is_empty()).then(|| Mutex::new(resume_values)),
            commit: Mutex::new(image.tokens()),
            interrupt: Mutex::new(None),
            failure: Mutex::new(None),
            image: Mutex::new(Some(image)),
        })
    }

    fn fresh_id(&self) -> MessageId {
        MessageId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Restores the image's counts, tokens and sink outputs into the run, and counts its
    /// pending messages accepted (they are in the workers' backlogs). Called once, before any
    /// worker runs. Returns how many messages are pending.
    pub(crate) fn restore(&self, shared: &Shared) -> u64 {
        let Some(image) = lock(&self.image).take() else {
            return 0;
        };
        shared.scope().record_tokens(image.tokens());
        for (node, n) in image.processed() {
            if let Some(index) = shared.topology().index_of(node) {
                shared.accounting().restore_processed(index, *n);
            }
        }
        for s in image.sinks() {
            let name = shared
                .topology()
                .index_of(&s.node)
                .and_then(|index| shared.topology().names().get(index));
            if let Some(name) = name {
                shared.sinks().record(name, s.output.clone());
            }
        }
        for _ in 0..image.pending_count() {
            shared.accounting().accept_outside();
        }
        image.pending_count()
    }

    /// Records the log's failure and stops the run (it ends with that error).
    fn failed(&self, shared: &Shared, error: DurableError) {
        let text = error.to_string();
        lock(&self.failure).get_or_insert(error);
        shared
            .stop()
            .fail(RunError::Internal(format!("the run's log failed: {text}")));
    }

    /// Queues a record made by `make` from the state changes (when `with_state`) and the
    /// tokens since the previous record, then waits for its commit (`Sync` mode).
    async fn commit(
        &self,
        shared: &Shared,
        with_state: bool,
        make: impl FnOnce(Vec<StateChange>, u64) -> Record,
    ) -> Result<(), DurableError> {
        let slot = self.log.reserve().await?;
        let committed = {
            let mut logged = lock(&self.commit);
            let changes = if with_state {
                state_changes(shared.scope().state())
            } else {
                Vec::new()
            };
            let now = shared.scope().tokens_used();
            let tokens = now.saturating_sub(*logged);
            *logged = now.max(*logged);
            slot.append(make(changes, tokens))
        };
        committed.wait().await
    }

    /// A handle send into mailbox `index` with the slot `permit`: the message gets an id and
    /// its accepted record is queued under the mailbox's lock as it is pushed; then waits for
    /// the commit (`Sync` mode).
    pub(crate) async fn accept(
        &self,
        shared: &Shared,
        index: usize,
        permit: Permit<'_>,
        message: ChannelMessage,
    ) -> Result<(), HandleSendError> {
        let slot = match self.log.reserve().await {
            Ok(slot) => slot,
            Err(e) => {
                self.failed(shared, e);
                return Err(HandleSendError::Stopped(message));
            }
        };
        self.push_accepted(shared, index, permit, slot, message)?
            .wait()
            .await
            .map_err(|error| {
                self.failed(shared, error.clone());
                HandleSendError::NotLogged { error }
            })
    }

    /// [`Durable::accept`] without waiting (a `try_send`): the record is queued, not awaited.
    pub(crate) fn try_accept(
        &self,
        shared: &Shared,
        index: usize,
        node: &str,
        permit: Permit<'_>,
        message: ChannelMessage,
    ) -> Result<(), HandleSendError> {
        let slot = match self.log.try_reserve() {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                return Err(HandleSendError::Full {
                    node: node.to_owned(),
                    message,
                })
            }
            Err(e) => {
                self.failed(shared, e);
                return Err(HandleSendError::Stopped(message));
            }
        };
        self.push_accepted(shared, index, permit, slot, message)
            .map(drop)
    }

    fn push_accepted<'log>(
        &'log self,
        shared: &Shared,
        index: usize,
        permit: Permit<'_>,
        slot: spark_adk_durable::LogSlot<'log>,
        message: ChannelMessage,
    ) -> Result<spark_adk_durable::Commit<'log>, HandleSendError> {
        if shared.stop().is_stopping() {
            return Err(HandleSendError::Stopped(message));
        }
        let id = self.fresh_id();
        let target = shared.node_name(index);
        let mut committed = None;
        // Under the mailbox's lock, only once the mailbox is known to be open: counted
        // accepted, id queued, record queued, message queued, all in one breath.
        let pushed = permit.push_with(message, |message| {
            let envelope = Envelope::from_channel(message);
            shared.accounting().accept_outside();
            lock(&self.ids[index]).push_back(id);
            committed = Some(slot.append(Record::Accepted(AcceptedRecord {
                sender: Some("handle".to_owned()),
                message: RoutedMessage {
                    id,
                    target,
                    message: envelope.payload.clone(),
                },
            })));
            envelope
        });
        match (pushed, committed) {
            (Ok(()), Some(committed)) => Ok(committed),
            (Err(closed), _) => Err(HandleSendError::Stopped(closed.0)),
            (Ok(()), None) => Err(HandleSendError::NotLogged {
                error: DurableError::Closed {
                    run: self.log.run_id().clone(),
                    seq: 0,
                },
            }),
        }
    }
}

/// The keys written since the previous call, with their values now.
fn state_changes(state: &GraphState) -> Vec<StateChange> {
    let keys = state.take_writes();
    if keys.is_empty() {
        return Vec::new();
    }
    let values = state.values_of(&keys);
    keys.into_iter()
        .zip(values)
        .map(|(key, value)| match value {
            Some(value) => StateChange::Set { key, value },
            None => StateChange::Removed { key },
        })
        .collect()
}

/// Durable long-running runs run one worker per node: a node with a concurrency above 1 is
/// refused (its activations could commit out of their start order).
fn check_one_lane(topology: &Topology) -> Result<(), RunError> {
    match topology.nodes().iter().find(|n| n.concurrency > 1) {
        Some(n) => Err(RunError::InvalidTask(format!(
            "node `{}` has a concurrency of {}; durable long-running runs process one message \
             at a time per node (set its concurrency to 1)",
            n.name, n.concurrency
        ))),
        None => Ok(()),
    }
}

/// Spawns the durable workers of a started run and restores the image into it.
pub(crate) fn launch(
    shared: &Arc<Shared>,
    durable: &Durable,
    tracker: &tokio_util::task::TaskTracker,
) {
    let pending = durable.restore(shared);
    for index in 0..shared.mailboxes().len() {
        tracker.spawn(run_worker(Arc::clone(shared), index));
    }
    if pending == 0 && shared.stops_on_quiescence() {
        // Nothing to do: the run is quiescent from the start.
        shared.stop().request(StopReason::Completed);
    }
}

/// Runs the durable worker of node `index`; a panic of the worker itself (a bug) is reported
/// as the node's panic.
async fn run_worker(shared: Arc<Shared>, index: usize) {
    let Some(durable) = shared.durable() else {
        return;
    };
    let outcome = CatchUnwind::new(Box::pin(work(&shared, durable, index))).await;
    if let Err(message) = outcome {
        shared.stop().fail(RunError::NodePanicked {
            node: shared.node_name(index),
            message: format!("its worker panicked: {message}"),
            counts: RunCounts::default(),
        });
    }
}

/// The messages a durable worker holds and has not started: counted unprocessed when it exits
/// (and its mailbox closed, counting what is still queued there).
struct Held<'a> {
    shared: &'a Shared,
    mailbox: &'a Mailbox,
    backlog: Backlog,
    inbox: VecDeque<Envelope>,
    /// This worker's counts, added to the run's when it exits (however it exits).
    index: usize,
    processed: u64,
    routed: u64,
    /// The ids of the messages of `inbox` and after, taken from the shared queue in batches.
    ids: VecDeque<MessageId>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let left = self.backlog.len() as u64 + drop_all(self.inbox.drain(..)) as u64;
        let accounting = self.shared.accounting();
        accounting.add_worker(self.index, self.processed, self.routed);
        accounting.unprocessed(left);
        accounting.unprocessed(self.mailbox.close() as u64);
    }
}

/// The next message of a durable worker.
struct Next {
    id: MessageId,
    payload: NodeMessage,
    ack: Option<spark_adk_core::AckHook>,
}

/// What [`take`] found.
enum Taken {
    /// The next message to start.
    Next(Next),
    /// The run is stopping: nothing more starts.
    Stopping,
    /// A mailbox message had no id (a bug; the run fails).
    NoId,
}

/// The worker's next message: from its backlog, else its inbox, refilled from its mailbox
/// (parking while it is empty).
async fn take(
    held: &mut Held<'_>,
    slots: &mut StartedSlots<'_>,
    mut stopped: Pin<&mut WaitForCancellationFuture<'_>>,
    durable: &Durable,
    index: usize,
) -> Taken {
    if let Some((id, payload)) = held.backlog.pop_front() {
        return Taken::Next(Next {
            id,
            payload,
            ack: None,
        });
    }
    let (shared, mailbox) = (held.shared, held.mailbox);
    let envelope = loop {
        if shared.stop().is_stopping() {
            return Taken::Stopping;
        }
        if let Some(envelope) = held.inbox.pop_front() {
            break envelope;
        }
        if mailbox.take_all(&mut held.inbox, false) {
            continue;
        }
        let inbox = &mut held.inbox;
        let received = tokio::select! {
            biased;
            () = &mut stopped => false,
            received = poll_fn(|cx| mailbox.poll_take_all(cx, inbox, false)) => received,
        };
        if !received {
            return Taken::Stopping;
        }
    };
    slots.started(true);
    if held.ids.is_empty() {
        // One lock per batch: the shared queue holds the ids of the messages queued so far,
        // in queue order, so taking them all keeps them in step with the envelopes.
        std::mem::swap(&mut held.ids, &mut *lock(&durable.ids[index]));
    }
    let Some(id) = held.ids.pop_front() else {
        shared.stop().fail(RunError::Internal(format!(
            "a message of `{}` has no id",
            shared.node_name(index)
        )));
        shared.accounting().unprocessed(drop_all([envelope]) as u64);
        return Taken::NoId;
    };
    Taken::Next(Next {
        id,
        payload: envelope.payload,
        ack: envelope.ack,
    })
}

async fn work(shared: &Shared, durable: &Durable, index: usize) {
    let (Some(entry), Some(mailbox)) =
        (shared.topology().node(index), shared.mailboxes().get(index))
    else {
        return;
    };
    let mut held = Held {
        shared,
        mailbox,
        backlog: std::mem::take(&mut *lock(&durable.backlog[index])),
        inbox: VecDeque::new(),
        index,
        processed: 0,
        routed: 0,
        ids: VecDeque::new(),
    };
    let mut slots = StartedSlots::new(mailbox);
    let runner = Runner {
        abandon: OnceLock::new(),
        stop: shared.stop(),
    };
    let mut stopped = pin!(shared.stop().token().cancelled());
    let mut targets = Vec::new();
    let clean = loop {
        // Take: the backlog first (accepted before anything new), then the mailbox.
        let next = match take(&mut held, &mut slots, stopped.as_mut(), durable, index).await {
            Taken::Next(next) => next,
            Taken::Stopping => break true,
            Taken::NoId => break false,
        };
        // Start.
        if !may_start(shared) {
            shared.accounting().unprocessed(1);
            if let Some(ack) = next.ack {
                let _ = crate::catch::drop_caught(ack);
            }
            break true;
        }
        // Process.
        let resume = durable
            .resume_values
            .as_ref()
            .and_then(|values| lock(values).remove(&next.id));
        let ctx = Context::new(next.payload, index, Arc::clone(shared.scope()))
            .with_activation(next.id.0, resume);
        shared.publish(|| spark_adk_core::EventKind::NodeStarted {
            node: Arc::clone(&entry.name),
        });
        let started = shared
            .topology()
            .events()
            .is_active()
            .then(tokio::time::Instant::now);
        let ran = runner.run(entry.node.as_ref(), &ctx, None, || {}).await;
        if let Ran::Done(Err(e)) = &ran {
            if let Some(payload) = e.interrupt_payload() {
                if started.is_some() {
                    shared.publish(|| spark_adk_core::EventKind::NodeFailed {
                        node: Arc::clone(&entry.name),
                        error: e.to_string(),
                    });
                }
                interrupt(shared, durable, index, next.id, payload.clone(), next.ack).await;
                break true;
            }
        }
        let Some(output) = finished(
            shared,
            &mut held.processed,
            &entry.name,
            ran,
            next.ack,
            started,
        ) else {
            break false;
        };
        if shared.scope().take_shutdown_request(index) {
            shared.stop().request(StopReason::Shutdown);
        }
        // Route (logged, never recomputed on resume).
        targets.clear();
        if let Err(error) = shared
            .topology()
            .route(index, &output, |to| targets.push(to))
        {
            shared.stop().fail(error);
            shared.finish_messages(1);
            break false;
        }
        let routed: Vec<(usize, MessageId)> =
            targets.iter().map(|&to| (to, durable.fresh_id())).collect();
        let sink = targets.is_empty().then(|| output.clone());
        let record = |state, tokens| {
            Record::Activation(ActivationRecord {
                activation: next.id,
                node: entry.name.to_string(),
                attempt: ctx.attempt(),
                routed: routed
                    .iter()
                    .map(|&(to, id)| RoutedMessage {
                        id,
                        target: shared.node_name(to),
                        message: output.clone(),
                    })
                    .collect(),
                sink,
                state,
                tokens,
            })
        };
        if let Err(error) = durable.commit(shared, true, record).await {
            durable.failed(shared, error);
            shared.finish_messages(1);
            break false;
        }
        // Settle: committed (or queued, in order), so now visible.
        if routed.is_empty() {
            shared.sinks().record(&entry.name, output);
            shared.finish_messages(1);
        } else {
            shared.accounting().settle(routed.len() as u64);
            held.routed += routed.len() as u64;
            deliver(shared, durable, index, &routed, output).await;
        }
    };
    if clean && !shared.stop().is_abandoned() {
        shutdown_delivery(shared, index, &runner).await;
    }
    drop(held);
}

/// The node interrupted activation `id`: the interrupt is committed, then the run stops with
/// [`StopReason::Interrupted`]. The message stays pending in the log (unprocessed here).
async fn interrupt(
    shared: &Shared,
    durable: &Durable,
    index: usize,
    id: MessageId,
    payload: Value,
    ack: Option<spark_adk_core::AckHook>,
) {
    let node = shared.node_name(index);
    let record = |_, tokens| {
        Record::Interrupt(InterruptRecord {
            activation: id,
            node: node.clone(),
            payload: payload.clone(),
            tokens,
        })
    };
    let logged = match durable.commit(shared, false, record).await {
        Ok(()) => durable.log.flush().await.map(drop),
        Err(e) => Err(e),
    };
    match logged {
        Ok(()) => {
            lock(&durable.interrupt).get_or_insert(InterruptInfo {
                node: Arc::from(node.as_str()),
                payload,
            });
            shared.stop().request(StopReason::Interrupted);
        }
        Err(e) => durable.failed(shared, e),
    }
    if let Some(ack) = ack {
        let _ = crate::catch::drop_caught(ack);
    }
    shared.accounting().unprocessed(1);
    shared.finish_messages(1);
}

/// Sends `output` to every routed target in order, each with its id (pushed under the target
/// mailbox's lock). Each message was accepted before; it is delivered or counted unprocessed.
async fn deliver(
    shared: &Shared,
    durable: &Durable,
    from: usize,
    routed: &[(usize, MessageId)],
    output: NodeMessage,
) {
    let accounting = shared.accounting();
    let mailboxes = shared.mailboxes();
    for &(to, id) in routed {
        if shared.stop().is_stopping() {
            accounting.unprocessed(1);
            continue;
        }
        let permit = match mailboxes.get(to).and_then(Mailbox::try_reserve) {
            Some(permit) => Ok(permit),
            None => {
                mailboxes
                    .reserve(to, Sender::Worker(from), shared.stop().token())
                    .await
            }
        };
        let sent = match permit {
            Ok(permit) => permit
                .push_with(Envelope::routed(output.clone()), |envelope| {
                    lock(&durable.ids[to]).push_back(id);
                    envelope
                })
                .is_ok(),
            Err(Undelivered::Deadlock) => {
                shared.stop().fail(RunError::Deadlock {
                    blocked: Vec::new(),
                    counts: RunCounts::default(),
                });
                false
            }
            Err(Undelivered::Stopped | Undelivered::Closed) => false,
        };
        if sent {
            shared.publish(|| spark_adk_core::EventKind::MessageSent {
                from: shared.node_name(from).into(),
                to: shared.node_name(to).into(),
            });
        } else {
            accounting.unprocessed(1);
        }
    }
}

/// The shutdown delivery: `process` once with `metadata["shutdown"] == true` (not logged).
async fn shutdown_delivery(shared: &Shared, index: usize, runner: &Runner<'_>) {
    let Some(entry) = shared.topology().node(index) else {
        return;
    };
    let ctx = Context::new(
        NodeMessage::empty().with_metadata("shutdown", true),
        index,
        Arc::clone(shared.scope()),
    );
    let panic = match runner.run(entry.node.as_ref(), &ctx, None, || {}).await {
        Ran::Done(_) => None,
        Ran::Panicked(message) => Some(message),
        Ran::Dropped(panic) => {
            shared.accounting().activation_dropped();
            panic
        }
    };
    if let Some(message) = panic {
        shared.stop().fail(RunError::NodePanicked {
            node: entry.name.to_string(),
            message: format!("during its shutdown delivery: {message}"),
            counts: RunCounts::default(),
        });
    }
}

/// What a durable run (or resume) has prepared before its workers start.
struct Prepared {
    durable: Arc<Durable>,
    store: Arc<dyn Store>,
    lease: Lease,
}

impl LongRunningExecutor {
    /// Runs the long-running `task` as a durable run: the run's header, one record per committed
    /// activation and one per message sent through a handle go to `options.store` under
    /// `options.run_id`, so that the run can be resumed after a crash
    /// ([`resume_durable`](Self::resume_durable)) or an interrupt. Ends as
    /// [`run`](Self::run) does (at quiescence by default).
    ///
    /// A node that calls `Context::interrupt` stops the run with [`StopReason::Interrupted`]
    /// once the interrupt is committed; the node and its question are in the result's
    /// `RunMetadata::interrupt`.
    ///
    /// # Errors
    /// As [`run`](Self::run) (as [`DurableRunError::Run`]); a [`DurableRunError::Store`] when
    /// the run id is taken (a conflict), the lease is held, or a commit fails (the run stops;
    /// everything committed before is kept and the run can be resumed).
    ///
    /// # Cancel safety
    /// As [`run`](Self::run): dropping the future stops the run gracefully. What was committed
    /// stays; no stop record is written and the lease is not released (another owner's resume
    /// gets a conflict until it expires, `DurableOptions::lease_ttl`); the run can be resumed.
    pub async fn run_durable(
        &self,
        topology: Arc<Topology>,
        task: Task,
        options: DurableOptions,
    ) -> Result<RunResult, DurableRunError> {
        let (task, prepared) = self.create(&topology, task, &options).await?;
        self.run_prepared(topology, task, prepared).await
    }

    /// Starts the long-running `task` as a durable run in the background and returns its
    /// [`RunHandle`](crate::RunHandle): every message sent through the handle is recorded as
    /// accepted before the send returns. See [`run_durable`](Self::run_durable) and
    /// [`spawn`](Self::spawn) (a spawned run does not end at quiescence by default).
    ///
    /// The handle's result reports a failure of the log as [`RunError::Internal`] naming the
    /// run and the record; everything committed before it is kept.
    ///
    /// # Errors
    /// As [`run_durable`](Self::run_durable), for what can fail before the run starts.
    pub async fn spawn_durable(
        &self,
        topology: Arc<Topology>,
        task: Task,
        options: DurableOptions,
    ) -> Result<crate::RunHandle, DurableRunError> {
        let (task, prepared) = self.create(&topology, task, &options).await?;
        self.spawn_prepared(topology, task, prepared)
    }

    /// Resumes the durable long-running run `options.run_id` from its log: every mailbox is
    /// refilled with the messages accepted and not processed, in log order; the counts, tokens,
    /// state and sink outputs come back; the run goes on (until quiescence by default). With
    /// `resume_value`, it answers the run's pending interrupt: the interrupted node runs again
    /// on the same message with the value in `Context::resume_value`.
    ///
    /// # Errors
    /// [`DurableRunError::Store`] with [`DurableError::NotFound`] for an unknown run,
    /// [`DurableError::FingerprintMismatch`] when `topology` differs from the run's graph,
    /// [`DurableError::Conflict`] when another resumer holds the lease or appended first, or
    /// when `resume_value` answers an interrupt that was already answered (or none),
    /// [`DurableError::InvalidArgument`] when the run waits for an answer and none is given or
    /// the run is a standard-mode run, a corrupt log's error; otherwise as
    /// [`run_durable`](Self::run_durable).
    ///
    /// # Cancel safety
    /// As [`run_durable`](Self::run_durable).
    pub async fn resume_durable(
        &self,
        topology: Arc<Topology>,
        options: DurableOptions,
        resume_value: Option<Value>,
    ) -> Result<RunResult, DurableRunError> {
        let (task, prepared) = self.reopen(&topology, &options, resume_value).await?;
        self.run_prepared(topology, task, prepared).await
    }

    /// [`resume_durable`](Self::resume_durable) in the background: a new handle to the resumed
    /// run (as [`spawn_durable`](Self::spawn_durable)).
    ///
    /// # Errors
    /// As [`resume_durable`](Self::resume_durable), for what can fail before the run starts.
    pub async fn resume_spawned(
        &self,
        topology: Arc<Topology>,
        options: DurableOptions,
        resume_value: Option<Value>,
    ) -> Result<crate::RunHandle, DurableRunError> {
        let (task, prepared) = self.reopen(&topology, &options, resume_value).await?;
        self.spawn_prepared(topology, task, prepared)
    }

    async fn create(
        &self,
        topology: &Topology,
        task: Task,
        options: &DurableOptions,
    ) -> Result<(Task, Prepared), DurableRunError> {
        check_one_lane(topology)?;
        if task.task_type != TaskType::LongRunning {
            return Err(RunError::InvalidTask(format!(
                "durable long-running runs take long-running tasks, got {:?}",
                task.task_type
            ))
            .into());
        }
        let mut header = RunHeader::new(
            options.run_id.clone(),
            fingerprint(topology),
            RunMode::LongRunning,
            task.inputs.clone(),
        );
        header.initial_state = task
            .state
            .clone()
            .unwrap_or_else(|| topology.initial_state().clone());
        header.budgets = Budgets {
            max_seconds: task.budget.and_then(|b| b.max_seconds()),
            max_tokens: task.budget.and_then(|b| b.max_tokens()),
            max_steps: None,
            grace_seconds: task.grace.map(|g| g.as_secs_f64()),
        };
        let image = RunImage::new(&header);
        // One step (one commit for a disk store): the run exists only with its lease held.
        let lease = options
            .store
            .create_leased(&header, &options.owner, options.lease_ttl)
            .await?;
        // The writer renews the lease while the run goes on and fences every commit with it.
        let log = match RunLog::open_leased(
            Arc::clone(&options.store),
            0,
            options.durability,
            lease.clone(),
            options.lease_ttl,
        ) {
            Ok(log) => log,
            Err(e) => {
                let _ = options.store.release_lease(&lease).await;
                return Err(e.into());
            }
        };
        let prepared = self.prepared(topology, image, log, options, lease).await?;
        Ok((task, prepared))
    }

    async fn reopen(
        &self,
        topology: &Topology,
        options: &DurableOptions,
        resume_value: Option<Value>,
    ) -> Result<(Task, Prepared), DurableRunError> {
        check_one_lane(topology)?;
        let run = &options.run_id;
        let store = options.store.as_ref();
        let (loaded, mut image) = store.resume_image(run, &fingerprint(topology)).await?;
        let header = &loaded.header;
        if header.mode != RunMode::LongRunning {
            return Err(DurableError::InvalidArgument {
                run: run.clone(),
                reason: "the run was started in standard mode".to_owned(),
            }
            .into());
        }
        let record = match resume_value {
            Some(value) => image.answer_interrupt(None, value, Some(options.owner.clone()))?,
            None => {
                if let Some(waiting) = image.interrupts().first() {
                    return Err(DurableError::InvalidArgument {
                        run: run.clone(),
                        reason: format!(
                            "node `{}` interrupted activation {} and waits for an answer: resume with a value",
                            waiting.node, waiting.activation
                        ),
                    }
                    .into());
                }
                Record::Resume(ResumeRecord {
                    activation: None,
                    value: None,
                    owner: Some(options.owner.clone()),
                })
            }
        };
        let lease = store
            .acquire_lease(run, &options.owner, options.lease_ttl)
            .await?;
        // Compare-and-append on the head the image was replayed from: a second resumer that
        // loaded the same log gets a conflict here.
        let head = match store
            .append_records(run, image.last_seq(), std::slice::from_ref(&record))
            .await
        {
            Ok(head) => head,
            Err(e) => {
                let _ = store.release_lease(&lease).await;
                return Err(e.into());
            }
        };
        image.apply(head, &record)?;
        let mut task = Task::long_running(header.inputs.clone()).with_state(image.state().clone());
        let budgets = &header.budgets;
        if budgets.max_seconds.is_some() || budgets.max_tokens.is_some() {
            let budget = Budget::new(budgets.max_seconds, budgets.max_tokens).map_err(|e| {
                DurableError::corrupt(run, 0, format!("the logged budget is invalid: {e}"))
            })?;
            task = task.with_budget(budget);
        }
        if let Some(grace) = budgets.grace_seconds {
            let grace = std::time::Duration::try_from_secs_f64(grace).map_err(|e| {
                DurableError::corrupt(run, 0, format!("the logged grace period is invalid: {e}"))
            })?;
            task = task.with_grace(grace);
        }
        let log = match RunLog::open_leased(
            Arc::clone(&options.store),
            head,
            options.durability,
            lease.clone(),
            options.lease_ttl,
        ) {
            Ok(log) => log,
            Err(e) => {
                let _ = store.release_lease(&lease).await;
                return Err(e.into());
            }
        };
        let prepared = self.prepared(topology, image, log, options, lease).await?;
        Ok((task, prepared))
    }

    async fn prepared(
        &self,
        topology: &Topology,
        image: RunImage,
        log: RunLog,
        options: &DurableOptions,
        lease: Lease,
    ) -> Result<Prepared, DurableRunError> {
        match Durable::new(topology, image, log) {
            Ok(durable) => Ok(Prepared {
                durable: Arc::new(durable),
                store: Arc::clone(&options.store),
                lease,
            }),
            Err(e) => {
                let _ = options.store.release_lease(&lease).await;
                Err(e.into())
            }
        }
    }

    async fn run_prepared(
        &self,
        topology: Arc<Topology>,
        task: Task,
        prepared: Prepared,
    ) -> Result<RunResult, DurableRunError> {
        let quiescence = task
            .stop_on_quiescence
            .or(self.stop_on_quiescence)
            .unwrap_or(true);
        if !quiescence && task.budget.is_none_or(|b| b.is_unlimited()) {
            let _ = prepared.store.release_lease(&prepared.lease).await;
            return Err(RunError::InvalidTask(
                "a long-running run without quiescence stop and without budget would never end; \
                 set a budget or use spawn_durable() and its handle"
                    .to_owned(),
            )
            .into());
        }
        let retention = self
            .sink_retention
            .unwrap_or(spark_adk_core::SinkRetention::All);
        let started = match start(
            topology,
            task,
            quiescence,
            false,
            retention,
            None,
            Some(Arc::clone(&prepared.durable)),
        ) {
            Ok(started) => started,
            Err(e) => {
                let _ = prepared.store.release_lease(&prepared.lease).await;
                return Err(e.into());
            }
        };
        let outcome = drive(started).await;
        finish(outcome, prepared).await
    }

    fn spawn_prepared(
        &self,
        topology: Arc<Topology>,
        task: Task,
        prepared: Prepared,
    ) -> Result<crate::RunHandle, DurableRunError> {
        let quiescence = task
            .stop_on_quiescence
            .or(self.stop_on_quiescence)
            .unwrap_or(false);
        let retention = self
            .sink_retention
            .unwrap_or(crate::executor::SPAWN_SINK_RETENTION);
        let started = start(
            topology,
            task,
            quiescence,
            true,
            retention,
            None,
            Some(Arc::clone(&prepared.durable)),
        )?;
        let shared = Arc::clone(&started.shared);
        let driver = tokio::spawn(async move {
            let outcome = drive(started).await;
            finish(outcome, prepared).await.map_err(|e| match e {
                DurableRunError::Run(e) => e,
                DurableRunError::Store(e) => {
                    RunError::Internal(format!("the run's log failed: {e}"))
                }
            })
        });
        Ok(crate::RunHandle::new(shared, driver))
    }
}

/// Logs how the run stopped, commits everything, gives the lease up, and puts the interrupt
/// into the result.
async fn finish(
    outcome: Result<RunResult, RunError>,
    prepared: Prepared,
) -> Result<RunResult, DurableRunError> {
    let Prepared {
        durable,
        store,
        lease,
    } = prepared;
    let failure = lock(&durable.failure).take();
    let logged = match failure {
        Some(e) => Err(e),
        None => {
            let stop = match &outcome {
                Ok(r) => match r.metadata.stop_reason {
                    StopReason::Completed => StopRecord::Completed,
                    StopReason::Budget(spark_adk_core::BudgetKind::Time) => StopRecord::TimeBudget,
                    StopReason::Budget(_) => StopRecord::TokenBudget,
                    StopReason::Shutdown => StopRecord::Shutdown,
                    StopReason::HandleDropped => StopRecord::HandleDropped,
                    StopReason::Interrupted => StopRecord::Interrupted {
                        node: lock(&durable.interrupt)
                            .as_ref()
                            .map_or_else(String::new, |i| i.node.to_string()),
                    },
                },
                Err(e) => stop_record(e),
            };
            match durable.log.append(Record::Stop(stop)).await {
                Ok(()) => durable.log.flush().await.map(drop),
                Err(e) => Err(e),
            }
        }
    };
    let _ = store.release_lease(&lease).await;
    match (outcome, logged) {
        (_, Err(e)) => Err(e.into()),
        (Ok(mut result), Ok(())) => {
            result.metadata.interrupt = lock(&durable.interrupt).take();
            Ok(result)
        }
        (Err(e), Ok(())) => Err(e.into()),
    }
}

fn stop_record(e: &RunError) -> StopRecord {
    match e {
        RunError::Timeout { .. } => StopRecord::TimeBudget,
        RunError::TokenBudgetExhausted { .. } => StopRecord::TokenBudget,
        RunError::StepLimitExceeded { .. } => StopRecord::StepLimit,
        RunError::Cancelled { .. } => StopRecord::Cancelled,
        RunError::NodeFailed { node, .. } | RunError::NodePanicked { node, .. } => {
            StopRecord::Failed {
                node: Some(node.clone()),
                message: e.to_string(),
            }
        }
        other => StopRecord::Failed {
            node: None,
            message: other.to_string(),
        },
    }
}
