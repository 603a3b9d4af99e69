//! The standard-mode executor of Spark for Rust: one node at a time, deterministic.
//!
//! [`SequentialExecutor`] runs a [`Topology`] as a FIFO queue of activations that starts with the
//! start node and the task input. After a node runs, the targets of its matching edges are
//! appended in firing order, each with its own (shared, copy-on-write) copy of the output; a node
//! that receives k messages runs k times. The result is the most recent output that matched no
//! edge, plus every such sink output in completion order.
//!
//! Before each activation the checks run in this order: time budget, token budget, step limit.
//! A node error or panic stops the run with an error naming the node.
//!
//! Durable runs ([`SequentialExecutor::run_durable`], [`SequentialExecutor::resume`]) log each
//! committed activation to a `spark-adk-durable` store and continue from the log; see the
//! `durable` module's rules in `docs/runtime-semantics.md`, "Durable runs".
//!
//! **Layering**: depends on `spark-adk-core`, `spark-adk-edges`, `spark-adk-durable` (its trait
//! and records only, never a concrete store), thiserror, tokio (`time`, `macros`; it needs
//! a tokio runtime with timers only when a time budget is set) and `tracing` (spans only, without
//! its `attributes` feature). It never depends on
//! `spark-adk-mailbox`: the two executors are independent.
//!
//! # Example
//!
//! ```
//! use spark_adk_core::{node_fn, NodeError, Task};
//! use spark_adk_edges::GraphBuilder;
//! use spark_adk_sequential::SequentialExecutor;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut g = GraphBuilder::new();
//! let inc = |name: &str| node_fn(|ctx| async move {
//!     let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
//!     Ok::<_, NodeError>(json!({ "n": n + 1 }))
//! });
//! let a = g.add("a", inc("a"));
//! let b = g.add("b", inc("b"));
//! g.connect(a >> b);
//! let topology = g.start(a).build()?;
//!
//! let result = SequentialExecutor::new().run(&topology, Task::new(json!({ "n": 40 }))).await?;
//! assert_eq!(result.content()["n"], 42);
//! # Ok(()) }
//! ```

mod durable;
mod subgraph;

pub use durable::{fingerprint, topology_shape, DurableOptions, DurableRunError};
pub use subgraph::{SubgraphNode, DEFAULT_SUBGRAPH_DEPTH_LIMIT};

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use spark_adk_core::panic::CatchUnwind;
use spark_adk_core::{
    BoxFuture, Budget, BudgetKind, CancellationToken, Context, EventBus, EventKind, NodeCounts,
    NodeMessage, NodeResult, RunCounts, RunError, RunMetadata, RunResult, RunScope, SinkOutputs,
    StopReason, StreamEvent, StreamSender, Task, TaskType,
};
use spark_adk_edges::{EdgeCondition, NodeEntry, Topology};
use tokio::time::Instant;
use tracing::Instrument;

/// Runs graphs in standard mode. Stateless and cheap: one executor can run any number of graphs,
/// also concurrently.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequentialExecutor {
    _private: (),
}

impl SequentialExecutor {
    /// A new executor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` on `topology` to completion.
    ///
    /// # Errors
    /// - [`RunError::InvalidTask`] for a task that is not [`TaskType::Standard`] or has a step
    ///   limit of zero, and for a time budget when the run is polled outside a tokio runtime or
    ///   on one without timers (the message says which); a run without a time budget needs no
    ///   tokio runtime;
    /// - [`RunError::NodeFailed`] / [`RunError::NodePanicked`] naming the node;
    /// - [`RunError::ConditionPanicked`] naming the edge;
    /// - [`RunError::Timeout`] when the time budget runs out;
    /// - [`RunError::TokenBudgetExhausted`] when recorded tokens reached the token budget before an
    ///   activation;
    /// - [`RunError::StepLimitExceeded`] when the step limit is reached.
    ///
    /// Every error the run ends with carries the run's counts ([`RunError::counts`]),
    /// [`RunError::Cancelled`] included; [`RunError::InvalidTask`], refused before the run
    /// starts, carries none.
    ///
    /// # Cancel safety
    /// Dropping the future stops the run after the current `.await` point of the running node;
    /// nothing is left running in the background.
    #[inline]
    pub fn run<'a>(
        &self,
        topology: &'a Topology,
        task: Task,
    ) -> impl Future<Output = Result<RunResult, RunError>> + Send + 'a {
        execute(
            topology,
            task.inputs,
            task.max_steps,
            Scope::New(task.task_type, task.budget, task.state),
        )
    }

    /// Runs `inputs` on `topology` within a run scope made by the caller (its budget,
    /// cancellation token and graph state). Used for subgraphs, whose scope is derived from the
    /// parent's. The tokens the run recorded are in the result's metadata, or in the error's
    /// counts.
    ///
    /// # Errors
    /// As [`SequentialExecutor::run`], plus [`RunError::Cancelled`] when the scope's cancellation
    /// token is cancelled from outside.
    ///
    /// # Cancel safety
    /// As [`SequentialExecutor::run`].
    pub fn run_scoped<'a>(
        &self,
        topology: &'a Topology,
        inputs: NodeMessage,
        max_steps: Option<u64>,
        scope: RunScope,
    ) -> impl Future<Output = Result<RunResult, RunError>> + Send + 'a {
        execute(topology, inputs, max_steps, Scope::Given(scope))
    }
}

/// Where a run's scope comes from.
enum Scope {
    /// A new run: its task type (validated), budget and initial state.
    New(
        TaskType,
        Option<spark_adk_core::Budget>,
        Option<spark_adk_core::Map<String, spark_adk_core::Value>>,
    ),
    /// A scope made by the caller (subgraphs).
    Given(RunScope),
}

/// The FIFO queue of activations. The front element lives in `front`, so a linear chain (one
/// pending activation at a time) never allocates the deque.
struct Activations {
    front: Option<(usize, NodeMessage)>,
    rest: VecDeque<(usize, NodeMessage)>,
}

impl Activations {
    fn new(first: (usize, NodeMessage)) -> Self {
        Self {
            front: Some(first),
            rest: VecDeque::new(),
        }
    }

    #[inline]
    fn push(&mut self, activation: (usize, NodeMessage)) {
        if self.front.is_none() && self.rest.is_empty() {
            self.front = Some(activation);
        } else {
            self.rest.push_back(activation);
        }
    }

    #[inline]
    fn pop(&mut self) -> Option<(usize, NodeMessage)> {
        self.front.take().or_else(|| self.rest.pop_front())
    }

    /// Drops the `n` activations pushed last.
    #[cold]
    fn drop_last(&mut self, n: usize) {
        for _ in 0..n {
            if self.rest.pop_back().is_none() {
                self.front = None;
            }
        }
    }

    /// How many activations wait.
    fn len(&self) -> u64 {
        u64::from(self.front.is_some()) + self.rest.len() as u64
    }
}

/// How waiting for one activation ended.
enum Waited<T> {
    Done(T),
    Cancelled,
    TimedOut,
}

/// Resolves when `token` is cancelled; never without a token.
async fn cancelled_or_never(token: Option<&CancellationToken>) {
    match token {
        // Boxed: built only once a node has to wait, and kept out of the run's future.
        Some(token) => Box::pin(token.cancelled()).await,
        None => std::future::pending().await,
    }
}

/// Resolves at `deadline`; never without one.
async fn deadline_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => Box::pin(tokio::time::sleep_until(deadline)).await,
        None => std::future::pending().await,
    }
}

/// One standard-mode run. `SequentialExecutor::run` returns this future directly, so a run
/// nests only `execute` and `run_loop` (little is moved per run).
async fn execute(
    topology: &Topology,
    inputs: NodeMessage,
    max_steps: Option<u64>,
    scope: Scope,
) -> Result<RunResult, RunError> {
    let names = Arc::clone(topology.names());
    let scope = match scope {
        Scope::Given(scope) => Arc::new(scope.with_node_names(names)),
        Scope::New(TaskType::Standard, budget, state) => new_scope(
            budget,
            state.unwrap_or_else(|| topology.initial_state().clone()),
            names,
            topology.events(),
        ),
        Scope::New(other, ..) => {
            return Err(RunError::InvalidTask(format!(
                "the sequential executor runs standard tasks, got {other:?}"
            )))
        }
    };
    let limit = max_steps.unwrap_or_else(|| topology.step_limit());
    if limit == 0 {
        return Err(RunError::InvalidTask(
            "the step limit must be at least 1".to_owned(),
        ));
    }
    if let Some(deadline) = scope.deadline() {
        check_timers(deadline)?;
    }
    let bus = topology.events();
    let events = bus.is_active();
    if events {
        bus.publish(
            scope.run_id(),
            scope.elapsed(),
            EventKind::GraphStarted {
                task_type: TaskType::Standard,
            },
        );
    }
    let run_span = tracing::info_span!("spark.run", run_id = scope.run_id(), mode = "standard");
    let mut state = LoopState {
        queue: Activations::new((topology.start(), inputs)),
        in_hand: false,
        accepted: 1,
        processed: 0,
        sinks: SinkOutputs::new(),
        per_node: NodeCounts::new(Arc::clone(topology.names())),
    };
    let run = Run::new(topology, limit, &scope, events, &run_span);
    let outcome = match scope.stream() {
        None => run_loop(&run, &mut state).instrument(run_span).await,
        // Boxed, so that the plain run's future does not grow.
        Some(stream) => {
            Box::pin(run_loop_streamed(&run, &mut state, stream).instrument(run_span)).await
        }
    };
    // Counted where they are: the activations still queued, and the one the loop held when it
    // stopped (refused by a check, or cut off while it ran).
    let unprocessed = state.queue.len() + u64::from(state.in_hand);
    debug_assert_eq!(
        state.accepted,
        state.processed + unprocessed,
        "every accepted activation is processed or unprocessed"
    );
    let counts = RunCounts {
        accepted: state.accepted,
        processed: state.processed,
        unprocessed,
        tokens_used: scope.tokens_used(),
    };
    let outcome = match outcome {
        Ok(()) => {
            let mut metadata = RunMetadata::new(TaskType::Standard);
            metadata.stop_reason = StopReason::Completed;
            metadata.steps = counts.processed;
            metadata.tokens_used = counts.tokens_used;
            metadata.elapsed = scope.elapsed();
            metadata.accepted = counts.accepted;
            metadata.processed = counts.processed;
            metadata.unprocessed = counts.unprocessed;
            metadata.per_node = state.per_node;
            Ok(RunResult::from_sinks(state.sinks, metadata).with_state(scope.state_snapshot()))
        }
        Err(e) => Err(e.with_counts(counts)),
    };
    // The run is over, whatever its outcome: tell anything a node started in the background.
    scope.cancel();
    if events {
        publish_end(topology, &scope, &outcome);
    }
    keep_scope(scope);
    outcome
}

thread_local! {
    /// The scope of a run that ended on this thread, cleared ([`RunScope::clear`]), kept for
    /// the next run started here: a standard run then allocates no scope.
    static SPARE_SCOPE: Cell<Option<Arc<RunScope>>> = const { Cell::new(None) };
}

/// The scope of a new run: the spare one of this thread if there is one, renewed, or a new one.
#[inline]
fn new_scope(
    budget: Option<Budget>,
    initial_state: spark_adk_core::Map<String, spark_adk_core::Value>,
    names: Arc<[Arc<str>]>,
    bus: &EventBus,
) -> Arc<RunScope> {
    if let Some(mut spare) = SPARE_SCOPE.take() {
        // Only a scope nobody else held was kept; `get_mut` checks it again.
        if let Some(scope) = Arc::get_mut(&mut spare) {
            scope.renew(budget, initial_state, names, Some(bus.clone()));
            return spare;
        }
    }
    Arc::new(RunScope::for_run(budget, initial_state, names).with_events(bus.clone()))
}

/// Keeps the scope of a run that ended for the next run on this thread, cleared, when nothing
/// else holds it (a node may have kept a clone); otherwise drops it.
#[inline]
fn keep_scope(mut scope: Arc<RunScope>) {
    if let Some(cleared) = Arc::get_mut(&mut scope) {
        cleared.clear();
        SPARE_SCOPE.set(Some(scope));
    }
}

/// A time budget needs a tokio runtime with timers (a node that waits is raced against the
/// deadline): say which is missing rather than panic later. tokio cannot be asked whether the
/// current runtime has timers except by making one, so the missing timers are found by catching
/// the panic of that (its message still reaches the panic hook).
fn check_timers(deadline: Instant) -> Result<(), RunError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RunError::InvalidTask(
            "a time budget needs a tokio runtime with timers, and there is no tokio runtime here: \
             run the graph inside one (for example under #[tokio::main])"
                .to_owned(),
        ));
    }
    spark_adk_core::panic::catch_panic(|| drop(tokio::time::sleep_until(deadline))).map_err(|_| {
        RunError::InvalidTask(
            "a time budget needs a tokio runtime with timers, and timers are disabled on this \
             runtime: call `enable_time` (or `enable_all`) on its builder"
                .to_owned(),
        )
    })
}

/// What the loop produced and counted; it stays readable when the loop fails.
struct LoopState {
    /// The activations not started yet.
    queue: Activations,
    /// `true` while the loop holds an activation taken from the queue and not processed yet.
    in_hand: bool,
    accepted: u64,
    processed: u64,
    sinks: SinkOutputs,
    per_node: NodeCounts,
}

/// What the activation loops read and never change during a run.
struct Run<'a> {
    topology: &'a Topology,
    scope: &'a Arc<RunScope>,
    limit: u64,
    budget: Budget,
    /// Someone listens on the graph's event bus.
    events: bool,
    /// A subscriber wants the run's span: build one per activation too.
    node_spans: bool,
    /// There is outside cancellation or a deadline to race a node against.
    guarded: bool,
    /// Neither `node_spans` nor `guarded`: the node's future is awaited as it is.
    plain: bool,
}

impl<'a> Run<'a> {
    fn new(
        topology: &'a Topology,
        limit: u64,
        scope: &'a Arc<RunScope>,
        events: bool,
        run_span: &tracing::Span,
    ) -> Self {
        let node_spans = !run_span.is_disabled();
        let guarded = scope.external_cancellation().is_some() || scope.deadline().is_some();
        Self {
            topology,
            scope,
            limit,
            budget: scope.budget(),
            events,
            node_spans,
            guarded,
            plain: !node_spans && !guarded,
        }
    }

    fn timeout(&self, node: &str) -> RunError {
        RunError::Timeout {
            budget: self.budget.max_time().unwrap_or_default(),
            node: Some(node.to_owned()),
            counts: RunCounts::default(),
        }
    }

    /// The checks before an activation of the node at `index` (just taken from the queue), in
    /// this order (docs/runtime-semantics.md, "Standard mode"): time budget, token budget, step
    /// limit; the first that fails is the error. Returns the node.
    #[inline(always)]
    fn check(&self, state: &LoopState, index: usize) -> Result<&'a NodeEntry, RunError> {
        let Some(entry) = self.topology.nodes().get(index) else {
            return Err(RunError::InvalidTask(format!(
                "node index {index} is outside the graph"
            )));
        };
        let scope = self.scope;
        if scope.is_cancelled() {
            return Err(RunError::Cancelled {
                counts: RunCounts::default(),
            });
        }
        if scope.deadline_passed() {
            return Err(self.timeout(&entry.name));
        }
        if let Some(max) = self.budget.max_tokens() {
            let used = scope.tokens_used();
            if used >= max {
                return Err(RunError::TokenBudgetExhausted {
                    used,
                    max,
                    node: entry.name.to_string(),
                    counts: RunCounts::default(),
                });
            }
        }
        if state.processed >= self.limit {
            return Err(RunError::StepLimitExceeded {
                node: entry.name.to_string(),
                limit: self.limit,
                counts: RunCounts::default(),
            });
        }
        Ok(entry)
    }

    /// Publishes `NodeStarted` when someone listens; returns when the activation started then.
    #[inline(always)]
    fn started(&self, entry: &NodeEntry) -> Option<Instant> {
        if !self.events {
            return None;
        }
        self.topology.events().publish(
            self.scope.run_id(),
            self.scope.elapsed(),
            EventKind::NodeStarted {
                node: Arc::clone(&entry.name),
            },
        );
        Some(Instant::now())
    }

    /// Runs one activation of a guarded run or one with node spans: the node's future, caught
    /// if it panics, in its span, and raced against outside cancellation and the deadline when
    /// the run has them.
    async fn activate(
        &self,
        entry: &NodeEntry,
        activation: CatchUnwind<BoxFuture<'_, NodeResult>>,
    ) -> Result<Result<NodeResult, String>, RunError> {
        // No subscriber wants the run's span: skip building one per activation too.
        let span = if self.node_spans {
            tracing::debug_span!("spark.node", node = %entry.name, mode = "standard")
        } else {
            tracing::Span::none()
        };
        let activation = activation.instrument(span);
        if !self.guarded {
            return Ok(activation.await);
        }
        let scope = self.scope;
        // Polled in this order: the node (trivial nodes finish at once, and the other two are
        // then never built), outside cancellation, the deadline.
        let waited = tokio::select! {
            biased;
            outcome = activation => Waited::Done(outcome),
            () = cancelled_or_never(scope.external_cancellation()) => Waited::Cancelled,
            () = deadline_or_never(scope.deadline()) => Waited::TimedOut,
        };
        match waited {
            Waited::Done(outcome) => Ok(outcome),
            Waited::Cancelled => Err(RunError::Cancelled {
                counts: RunCounts::default(),
            }),
            Waited::TimedOut => Err(self.timeout(&entry.name)),
        }
    }

    /// After an activation: its event, the counts, outside cancellation, and the node's error
    /// or panic. Returns the node's output.
    #[inline(always)]
    fn settle(
        &self,
        state: &mut LoopState,
        entry: &NodeEntry,
        index: usize,
        started: Option<Instant>,
        outcome: Result<NodeResult, String>,
    ) -> Result<NodeMessage, RunError> {
        if let Some(started) = started {
            publish_finished(self.topology, self.scope, entry, started, &outcome);
        }
        state.processed += 1;
        state.in_hand = false;
        if self.scope.is_cancelled() {
            // Cancelled from outside while the node ran: whatever it returned (often an error
            // caused by the cancellation, e.g. from a subgraph), the run was cancelled.
            return Err(RunError::Cancelled {
                counts: RunCounts::default(),
            });
        }
        state.per_node.increment(index);
        match outcome {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(source)) => Err(RunError::NodeFailed {
                node: entry.name.to_string(),
                source,
                counts: RunCounts::default(),
            }),
            Err(message) => Err(RunError::NodePanicked {
                node: entry.name.to_string(),
                message,
                counts: RunCounts::default(),
            }),
        }
    }

    /// Queues the targets of the node's fired edges in firing order, each with its own copy of
    /// `output` (the last takes `output` itself). Returns `output` when no edge fired: it is a
    /// sink output. When a condition panics, nothing of this activation stays queued.
    #[inline(always)]
    fn route(
        &self,
        state: &mut LoopState,
        index: usize,
        output: NodeMessage,
    ) -> Result<Option<NodeMessage>, RunError> {
        // The common shapes first: no edge (a sink), and one edge that fires whatever the
        // output (`Always`, or a lone fallback: no regular edge can fire before it), as
        // `Topology::route` would route them.
        match self.topology.edges_from(index) {
            [] => return Ok(Some(output)),
            [edge]
                if matches!(
                    edge.condition,
                    EdgeCondition::Always | EdgeCondition::Fallback
                ) =>
            {
                state.accepted += 1;
                state.queue.push((edge.to, output));
                return Ok(None);
            }
            _ => {}
        }
        let queue = &mut state.queue;
        let (mut last, mut queued) = (None, 0);
        let routed = self.topology.route(index, &output, |to| {
            if let Some(previous) = last.replace(to) {
                queue.push((previous, output.clone()));
                queued += 1;
            }
        });
        let fired = match routed {
            Ok(fired) => fired,
            Err(e) => {
                queue.drop_last(queued);
                return Err(e);
            }
        };
        state.accepted += fired as u64;
        match last {
            None => Ok(Some(output)),
            Some(last) => {
                state.queue.push((last, output));
                Ok(None)
            }
        }
    }
}

/// Publishes `NodeFinished` or `NodeFailed` for an activation that began at `started`.
#[cold]
fn publish_finished(
    topology: &Topology,
    scope: &RunScope,
    entry: &NodeEntry,
    started: Instant,
    outcome: &Result<NodeResult, String>,
) {
    let kind = match outcome {
        Ok(Ok(_)) => EventKind::NodeFinished {
            node: Arc::clone(&entry.name),
            duration: started.elapsed(),
        },
        Ok(Err(e)) => EventKind::NodeFailed {
            node: Arc::clone(&entry.name),
            error: e.to_string(),
        },
        Err(panic) => EventKind::NodeFailed {
            node: Arc::clone(&entry.name),
            error: format!("panicked: {panic}"),
        },
    };
    topology
        .events()
        .publish(scope.run_id(), scope.elapsed(), kind);
}

/// The activation loop of a plain run. A plain `async fn` awaited once by [`execute`]: its
/// future is built in place, and its only `.await` is the node's. One [`Context`] serves every
/// activation ([`Context::reset`]).
async fn run_loop(run: &Run<'_>, state: &mut LoopState) -> Result<(), RunError> {
    let Some((index, message)) = state.queue.pop() else {
        return Ok(());
    };
    state.in_hand = true;
    let mut entry = run.check(state, index)?;
    let mut ctx = Context::new(message, index, Arc::clone(run.scope));
    loop {
        let index = ctx.node_index();
        let started = run.started(entry);
        let activation = CatchUnwind::new(entry.node.process_dyn(&ctx));
        let outcome = if run.plain {
            activation.await
        } else {
            run.activate(entry, activation).await?
        };
        let output = run.settle(state, entry, index, started, outcome)?;
        if let Some(output) = run.route(state, index, output)? {
            state.sinks.push(Arc::clone(&entry.name), output);
        }
        let Some((index, message)) = state.queue.pop() else {
            return Ok(());
        };
        state.in_hand = true;
        entry = run.check(state, index)?;
        ctx.reset(message, index);
    }
}

/// The activation loop of a streamed run (`Graph::stream`): [`run_loop`], and the run's events
/// with their payloads sent to `stream`. A failed send (the consumer is gone) is ignored: the
/// stream cancels the run's token when it is dropped.
async fn run_loop_streamed(
    run: &Run<'_>,
    state: &mut LoopState,
    stream: &StreamSender,
) -> Result<(), RunError> {
    let Some((index, message)) = state.queue.pop() else {
        return Ok(());
    };
    state.in_hand = true;
    let mut entry = run.check(state, index)?;
    let mut ctx = Context::new(message, index, Arc::clone(run.scope));
    loop {
        let index = ctx.node_index();
        let (node, input) = (Arc::clone(&entry.name), ctx.inputs().clone());
        stream.send(StreamEvent::NodeStarted { node, input }).await;
        let started = run.started(entry);
        let activation = CatchUnwind::new(entry.node.process_dyn(&ctx));
        let outcome = if run.plain {
            activation.await
        } else {
            run.activate(entry, activation).await?
        };
        let output = run.settle(state, entry, index, started, outcome)?;
        let (node, finished) = (Arc::clone(&entry.name), output.clone());
        stream
            .send(StreamEvent::NodeFinished {
                node,
                output: finished,
            })
            .await;
        if let Some(output) = run.route(state, index, output)? {
            let (node, sink) = (Arc::clone(&entry.name), output.clone());
            stream
                .send(StreamEvent::SinkOutput { node, output: sink })
                .await;
            state.sinks.push(Arc::clone(&entry.name), output);
        }
        let Some((index, message)) = state.queue.pop() else {
            return Ok(());
        };
        state.in_hand = true;
        entry = run.check(state, index)?;
        ctx.reset(message, index);
    }
}

fn publish_end(topology: &Topology, scope: &RunScope, outcome: &Result<RunResult, RunError>) {
    let bus = topology.events();
    let (run_id, elapsed) = (scope.run_id(), scope.elapsed());
    match outcome {
        Err(RunError::Timeout { .. }) => bus.publish(
            run_id,
            elapsed,
            EventKind::BudgetExhausted {
                kind: BudgetKind::Time,
            },
        ),
        Err(RunError::TokenBudgetExhausted { .. }) => bus.publish(
            run_id,
            elapsed,
            EventKind::BudgetExhausted {
                kind: BudgetKind::Tokens,
            },
        ),
        _ => {}
    }
    let (stop_reason, error) = match outcome {
        Ok(r) => (Some(r.metadata.stop_reason), None),
        Err(e) => (None, Some(e.to_string())),
    };
    bus.publish(
        run_id,
        elapsed,
        EventKind::GraphFinished { stop_reason, error },
    );
}
