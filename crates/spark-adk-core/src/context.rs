//! The per-activation [`Context`] and the per-run [`RunScope`] it points to.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use serde_json::{Map, Value};

use crate::{Budget, EventBus, EventKind, GraphState, NodeMessage, StreamEvent, StreamSender};

static NEXT_RUN_ID: AtomicU64 = AtomicU64::new(1);

/// A shutdown request made without a node: taken by the next activation of any node.
const ANY_NODE: usize = usize::MAX;

fn no_names() -> Arc<[Arc<str>]> {
    static EMPTY: OnceLock<Arc<[Arc<str>]>> = OnceLock::new();
    Arc::clone(EMPTY.get_or_init(|| Arc::from(Vec::new())))
}

/// What one run shares among all its activations: budget, token counter, cancellation signal,
/// graph state.
///
/// Executors create one per run; nodes reach it through [`Context`]. It is `Send + Sync` and
/// lives behind an `Arc`. The cancellation token and the graph state are created on first use,
/// so a run that never touches them does not pay for them.
#[derive(Debug)]
pub struct RunScope {
    run_id: u64,
    budget: Budget,
    started: Instant,
    deadline: Option<Instant>,
    tokens: AtomicU64,
    cancel: OnceLock<CancellationToken>,
    external_cancel: bool,
    shutdown_requested: AtomicBool,
    /// The nodes (indices) that asked for a shutdown and whose request no executor took yet;
    /// [`ANY_NODE`] for a request made without a node.
    shutdown_requests: Mutex<Vec<usize>>,
    stopping: AtomicBool,
    /// Fired when the graceful stop begins; created on first use (see [`RunScope::stopping`]).
    stop_signal: OnceLock<CancellationToken>,
    state: OnceLock<GraphState>,
    initial_state: Map<String, Value>,
    /// The names of the graph's nodes, by index (what `Context::node_name` reads).
    node_names: Arc<[Arc<str>]>,
    /// Where events published from inside an activation go (e.g. a retry wrapper's
    /// `NodeRetrying`), if the executor gave a bus.
    events: Option<EventBus>,
    /// Where a streamed run's events go (`Graph::stream`); `None` for every other run.
    stream: Option<StreamSender>,
    /// How many subgraph runs this run is nested in (0 for a run the user started).
    subgraph_depth: u32,
    /// The run this one is a subgraph of: tokens recorded here are recorded there too.
    parent: Option<Arc<RunScope>>,
}

impl RunScope {
    /// A scope for a run starting now under `budget` (`None`: unlimited).
    pub fn new(budget: Option<Budget>) -> Self {
        Self::for_run(budget, Map::new(), no_names())
    }

    /// Returns the scope with the graph's node names (by index), which contexts made from it
    /// report as [`Context::node_name`]. Executors set them.
    #[must_use]
    #[inline]
    pub fn with_node_names(self, node_names: Arc<[Arc<str>]>) -> Self {
        Self { node_names, ..self }
    }

    /// The name of the node at `index` in the graph this scope runs, `"?"` if unknown.
    pub fn node_name(&self, index: usize) -> &str {
        self.node_names.get(index).map_or("?", |n| n)
    }

    /// A scope for one run of a graph: `budget`, a graph state starting as `initial_state`,
    /// and the graph's node names (what executors use; built in place, without the moves of
    /// the builder methods).
    pub fn for_run(
        budget: Option<Budget>,
        initial_state: Map<String, Value>,
        node_names: Arc<[Arc<str>]>,
    ) -> Self {
        let run_id = NEXT_RUN_ID.fetch_add(1, Ordering::Relaxed);
        Self::at(
            run_id,
            budget.unwrap_or_default(),
            Instant::now(),
            initial_state,
            node_names,
        )
    }

    /// Makes this scope, whose run has ended, the scope of a new run as [`RunScope::for_run`]
    /// and [`RunScope::with_events`] make it, in the same allocation: executors that keep a
    /// finished run's scope for their next run (see [`RunScope::clear`]) call this on a scope
    /// only they hold. Nothing of the previous run stays.
    #[inline]
    pub fn renew(
        &mut self,
        budget: Option<Budget>,
        initial_state: Map<String, Value>,
        node_names: Arc<[Arc<str>]>,
        events: Option<EventBus>,
    ) {
        // Every field, by name (no `..`): a field added to the scope must be set here too.
        let Self {
            run_id,
            budget: run_budget,
            started,
            deadline,
            tokens,
            cancel,
            external_cancel,
            shutdown_requested,
            shutdown_requests,
            stopping,
            stop_signal,
            state,
            initial_state: run_initial_state,
            node_names: run_node_names,
            events: run_events,
            stream,
            subgraph_depth,
            parent,
        } = self;
        let budget = budget.unwrap_or_default();
        let now = Instant::now();
        *run_id = NEXT_RUN_ID.fetch_add(1, Ordering::Relaxed);
        *run_budget = budget;
        *started = now;
        *deadline = budget.max_time().and_then(|d| now.checked_add(d));
        *tokens.get_mut() = 0;
        *cancel = OnceLock::new();
        *external_cancel = false;
        *shutdown_requested.get_mut() = false;
        shutdown_requests
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        *stopping.get_mut() = false;
        *stop_signal = OnceLock::new();
        *state = OnceLock::new();
        *run_initial_state = initial_state;
        *run_node_names = node_names;
        *run_events = events;
        *stream = None;
        *subgraph_depth = 0;
        *parent = None;
    }

    /// Drops what the scope's run referenced (graph state, initial state, cancellation and stop
    /// tokens, event bus, stream, parent, node names) and keeps the allocation, for an executor
    /// that keeps it for its next run ([`RunScope::renew`]).
    #[inline]
    pub fn clear(&mut self) {
        self.cancel = OnceLock::new();
        self.stop_signal = OnceLock::new();
        self.state = OnceLock::new();
        self.initial_state = Map::new();
        self.node_names = no_names();
        self.events = None;
        self.stream = None;
        self.parent = None;
        let requests = self
            .shutdown_requests
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        *requests = Vec::new();
    }

    /// The scope of run `run_id`, started at `started`: every field is set here.
    #[inline]
    fn at(
        run_id: u64,
        budget: Budget,
        started: Instant,
        initial_state: Map<String, Value>,
        node_names: Arc<[Arc<str>]>,
    ) -> Self {
        let deadline = budget.max_time().and_then(|d| started.checked_add(d));
        Self {
            run_id,
            budget,
            started,
            deadline,
            tokens: AtomicU64::new(0),
            cancel: OnceLock::new(),
            external_cancel: false,
            shutdown_requested: AtomicBool::new(false),
            shutdown_requests: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            stop_signal: OnceLock::new(),
            state: OnceLock::new(),
            initial_state,
            node_names,
            events: None,
            stream: None,
            subgraph_depth: 0,
            parent: None,
        }
    }

    /// Returns the scope with `bus` as the place where events published from inside an
    /// activation go ([`RunScope::publish`]); executors give the graph's bus.
    #[must_use]
    #[inline]
    pub fn with_events(mut self, bus: EventBus) -> Self {
        self.events = Some(bus);
        self
    }

    /// Returns the scope of a streamed run: its executor sends the run's events, with their
    /// payloads, to `stream` (see [`StreamEvent`]), and [`Context::emit`] sends there too.
    #[must_use]
    pub fn with_stream(mut self, stream: StreamSender) -> Self {
        self.stream = Some(stream);
        self
    }

    /// The sending half of a streamed run's channel; `None` unless the run is streamed.
    #[inline]
    pub fn stream(&self) -> Option<&StreamSender> {
        self.stream.as_ref()
    }

    /// The bus events published from inside an activation go to, if the run has one.
    pub fn events(&self) -> Option<&EventBus> {
        self.events.as_ref()
    }

    /// Publishes an event of this run from inside an activation (for example a policy
    /// wrapper's [`EventKind::NodeRetrying`]). Free when nobody listens: `kind` is built only
    /// when the run has a bus with a subscriber or a replay buffer.
    pub fn publish(&self, kind: impl FnOnce() -> EventKind) {
        if let Some(bus) = self.events.as_ref().filter(|bus| bus.is_active()) {
            bus.publish(self.run_id, self.elapsed(), kind());
        }
    }

    /// A scope whose cancellation signal is `cancel` (for example a child token of a parent run).
    pub fn with_cancellation(budget: Option<Budget>, cancel: CancellationToken) -> Self {
        Self::new(budget).with_cancellation_token(cancel)
    }

    /// Returns the scope with `cancel` as its cancellation signal: cancelling it from outside
    /// cancels the run.
    #[must_use]
    pub fn with_cancellation_token(mut self, cancel: CancellationToken) -> Self {
        let slot = OnceLock::new();
        let _ = slot.set(cancel);
        self.cancel = slot;
        self.external_cancel = true;
        self
    }

    /// Returns the scope with `state` as the run's graph state (shared with whoever else holds
    /// it, for example a parent run).
    #[must_use]
    pub fn with_state(mut self, state: GraphState) -> Self {
        let slot = OnceLock::new();
        let _ = slot.set(state);
        self.state = slot;
        self
    }

    /// Returns the scope with a graph state that starts as `initial` (created on first use).
    #[must_use]
    pub fn with_initial_state(mut self, initial: Map<String, Value>) -> Self {
        self.initial_state = initial;
        self
    }

    /// The run's graph state.
    pub fn state(&self) -> &GraphState {
        self.state
            .get_or_init(|| GraphState::new(self.initial_state.clone()))
    }

    /// How many subgraph runs this run is nested in: 0 for a run started by the user (in
    /// either mode), the parent's depth + 1 for a run made [`with_parent`](Self::with_parent).
    /// It travels with the scope, so subgraph nodes limit their nesting the same way under both
    /// executors.
    pub fn subgraph_depth(&self) -> u32 {
        self.subgraph_depth
    }

    /// Returns the scope as the scope of a subgraph run inside `parent`'s run: its subgraph
    /// depth is the parent's + 1, and every token recorded in it is recorded in the parent (and
    /// its parents) at once, so the outer run counts them also when the inner run is cut off
    /// (timeout, cancellation) before it returns.
    #[must_use]
    pub fn with_parent(mut self, parent: Arc<RunScope>) -> Self {
        self.subgraph_depth = parent.subgraph_depth.saturating_add(1);
        self.parent = Some(parent);
        self
    }

    /// A copy of the graph state as it is now (the initial state if no node touched it).
    #[inline]
    pub fn state_snapshot(&self) -> Map<String, Value> {
        match self.state.get() {
            Some(state) => state.snapshot(),
            None => self.initial_state.clone(),
        }
    }

    /// A process-unique id of this run.
    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// The run's budget.
    #[inline]
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// When the run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The instant the time budget runs out, if there is one.
    #[inline]
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// `true` once the time budget has run out.
    #[inline]
    pub fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Adds `tokens` to the run's counter, and to the counters of the runs it is a subgraph of
    /// ([`with_parent`](Self::with_parent)); returns this run's new total (saturating).
    pub fn record_tokens(&self, tokens: u64) -> u64 {
        let total = add_saturating(&self.tokens, tokens);
        let mut outer = self.parent.as_deref();
        while let Some(scope) = outer {
            add_saturating(&scope.tokens, tokens);
            outer = scope.parent.as_deref();
        }
        total
    }

    /// Tokens recorded so far.
    #[inline]
    pub fn tokens_used(&self) -> u64 {
        self.tokens.load(Ordering::Acquire)
    }

    /// `true` once recorded tokens reached the token budget.
    #[inline]
    pub fn tokens_exhausted(&self) -> bool {
        self.budget
            .max_tokens()
            .is_some_and(|max| self.tokens_used() >= max)
    }

    /// What is left of the budget now: the remaining time and tokens. `Ok(None)` when the run
    /// is unlimited; `Err(kind)` when a limit is already used up.
    pub fn remaining_budget(&self) -> Result<Option<Budget>, crate::BudgetKind> {
        if self.budget.is_unlimited() {
            return Ok(None);
        }
        let mut left = Budget::UNLIMITED;
        if let Some(deadline) = self.deadline {
            let time = deadline.saturating_duration_since(Instant::now());
            left = left
                .with_max_time(time)
                .map_err(|_| crate::BudgetKind::Time)?;
        }
        if let Some(max) = self.budget.max_tokens() {
            let tokens = max.saturating_sub(self.tokens_used());
            left = left
                .with_max_tokens(tokens)
                .map_err(|_| crate::BudgetKind::Tokens)?;
        }
        Ok(Some(left))
    }

    /// The run's cancellation signal.
    pub fn cancellation(&self) -> &CancellationToken {
        self.cancel.get_or_init(CancellationToken::new)
    }

    /// `true` when the run has been cancelled (without creating the token).
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .get()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// The cancellation token given from outside when the scope was made, if any: only such a
    /// token can cancel the run while it is going.
    #[inline]
    pub fn external_cancellation(&self) -> Option<&CancellationToken> {
        if self.external_cancel {
            self.cancel.get()
        } else {
            None
        }
    }

    /// Cancels the run's token if anyone created or gave one (executors call this when the
    /// run has ended).
    pub fn cancel(&self) {
        if let Some(token) = self.cancel.get() {
            token.cancel();
        }
    }

    /// Asks the run to stop gracefully (long-running mode) once the next activation of any
    /// node finishes. A node asks through [`Context::request_shutdown`] instead, which waits
    /// for *its* activation.
    pub fn request_shutdown(&self) {
        self.request_shutdown_from(ANY_NODE);
    }

    /// Asks the run to stop gracefully (long-running mode) once the current activation of the
    /// node at `node_index` finishes.
    pub fn request_shutdown_from(&self, node_index: usize) {
        self.shutdown_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(node_index);
        self.shutdown_requested.store(true, Ordering::Release);
    }

    /// `true` once some node asked for a shutdown.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested.load(Ordering::Acquire)
    }

    /// Takes the shutdown request of the node at `node_index` (or one made without a node),
    /// if there is one: executors call this when an activation of that node finished. A plain
    /// atomic load while nobody asked.
    #[inline]
    pub fn take_shutdown_request(&self, node_index: usize) -> bool {
        if !self.shutdown_requested.load(Ordering::Acquire) {
            return false;
        }
        self.take_shutdown_request_slow(node_index)
    }

    #[cold]
    fn take_shutdown_request_slow(&self, node_index: usize) -> bool {
        let mut requests = self
            .shutdown_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match requests
            .iter()
            .position(|&n| n == node_index || n == ANY_NODE)
        {
            Some(i) => {
                requests.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Marks that the run's graceful stop began (long-running executors call this; in-flight
    /// activations still finish) and fires the stop signal ([`RunScope::stopping`]).
    pub fn begin_stop(&self) {
        // `SeqCst` pairs with `stopping`: a waiter either sees the flag or the token it
        // created is found here.
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(signal) = self.stop_signal.get() {
            signal.cancel();
        }
    }

    /// Completes once the run's graceful stop began (at once if it already did); see
    /// [`Context::stopping`].
    pub async fn stopping(&self) {
        let signal = self.stop_signal.get_or_init(CancellationToken::new);
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        signal.cancelled().await;
    }

    /// `true` once the run's graceful stop began (budget, shutdown, another node's error,
    /// quiescence); see [`Context::is_stopping`].
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// Adds `n` to `counter` without overflowing; returns the new value.
fn add_saturating(counter: &AtomicU64, n: u64) -> u64 {
    let mut current = counter.load(Ordering::Relaxed);
    loop {
        let next = current.saturating_add(n);
        match counter.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => current = actual,
        }
    }
}

/// What a node sees during one activation: its input, its name, and the run it belongs to.
///
/// Cloning costs two reference-count increments (the input's payload and the run scope) plus a
/// copy of the input's metadata and id, which are empty, and so copy nothing, in the common case.
///
/// # Example
///
/// ```
/// use spark_adk_core::{Context, NodeMessage};
/// use serde_json::json;
///
/// // A detached context lets you call a node's `process` in a unit test.
/// let ctx = Context::detached(json!({ "query": "hi" }));
/// assert_eq!(ctx.inputs().content["query"], "hi");
/// ctx.record_tokens(12);
/// assert_eq!(ctx.tokens_used(), 12);
/// ```
#[derive(Clone, Debug)]
pub struct Context {
    inputs: NodeMessage,
    node_index: usize,
    /// Which attempt of this activation is running (1 unless a retry wrapper says otherwise).
    attempt: u32,
    scope: Arc<RunScope>,
    /// Durable runs only: the activation id and the resume value (`None` otherwise, and free).
    durable: Option<Arc<(u64, Option<Value>)>>,
}

impl Context {
    /// A context for one activation of the node at `node_index` of the graph `scope` runs
    /// (its name comes from the scope's node names). Executors call this; nodes receive the
    /// result. Making one costs a single reference-count increment.
    pub fn new(inputs: NodeMessage, node_index: usize, scope: Arc<RunScope>) -> Self {
        Self {
            inputs,
            node_index,
            attempt: 1,
            scope,
            durable: None,
        }
    }

    /// A context outside any graph (node name `"detached"`, unlimited budget), for unit tests
    /// of a node.
    pub fn detached(inputs: impl Into<NodeMessage>) -> Self {
        let names: Arc<[Arc<str>]> = Arc::from(vec![Arc::from("detached")]);
        Self::new(
            inputs.into(),
            0,
            Arc::new(RunScope::new(None).with_node_names(names)),
        )
    }

    /// Makes this context the one of the next activation, of the node at `node_index` with
    /// `inputs`, in the same run; returns the previous input message. Executors that run many
    /// activations call this instead of [`Context::new`], so the run scope's reference count is
    /// not touched per activation. Nodes receive `&Context` and cannot call it.
    #[inline]
    pub fn reset(&mut self, inputs: NodeMessage, node_index: usize) -> NodeMessage {
        self.node_index = node_index;
        self.attempt = 1;
        self.durable = None;
        std::mem::replace(&mut self.inputs, inputs)
    }

    /// The input message of this activation (the seed's `context.inputs`).
    #[inline]
    pub fn inputs(&self) -> &NodeMessage {
        &self.inputs
    }

    /// The input's content deserialized into `T` (the typed form of [`Context::inputs`]).
    ///
    /// # Example
    ///
    /// ```
    /// use serde::Deserialize;
    /// use spark_adk_core::{node_fn, Context, Node, NodeMessage};
    ///
    /// #[derive(Deserialize)]
    /// struct Query { text: String, limit: u32 }
    ///
    /// let search = node_fn(|ctx| async move {
    ///     let q: Query = ctx.input_as()?; // names the node and the field if the input is wrong
    ///     Ok(NodeMessage::from_serde(&vec![q.text; q.limit as usize])?)
    /// });
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let ok = search.process(&Context::detached(serde_json::json!({ "text": "a", "limit": 2 }))).await;
    /// assert_eq!(ok.unwrap().content, serde_json::json!(["a", "a"]).into());
    /// let bad = search.process(&Context::detached(serde_json::json!({ "text": "a" }))).await;
    /// assert!(bad.unwrap_err().to_string().contains("input of node `detached` does not match"));
    /// # });
    /// ```
    ///
    /// # Errors
    /// [`PayloadError::Deserialize`](crate::PayloadError::Deserialize) naming this node, `T` and
    /// the path of the field that failed.
    pub fn input_as<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, crate::PayloadError> {
        crate::message::deserialize_content(&self.inputs.content, Some(self.node_name()))
    }

    /// `true` when this activation is a shutdown delivery (`inputs().metadata["shutdown"] == true`).
    pub fn is_shutdown(&self) -> bool {
        self.inputs.is_shutdown()
    }

    /// The name of the running node.
    pub fn node_name(&self) -> &str {
        self.scope.node_name(self.node_index)
    }

    /// Which attempt of this activation is running: 1 for the first, 2 for the first retry,
    /// and so on. It is 1 unless a retry wrapper (`spark-adk-policy`'s `with_retry`) runs the
    /// node again, so a node can make its outside effects idempotent or log the retry.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A copy of this context that reports `attempt` as [`Context::attempt`] (same input, node
    /// and run). Retry wrappers hand it to the node they wrap; an `attempt` of 0 is read as 1.
    #[must_use]
    pub fn for_attempt(&self, attempt: u32) -> Self {
        Self {
            attempt: attempt.max(1),
            ..self.clone()
        }
    }

    /// Emits `value` from inside this activation, for example one LLM token as it arrives.
    ///
    /// - In a streamed run (`Graph::stream`) it reaches the stream as
    ///   [`StreamEvent::Emitted`], between this activation's `NodeStarted` and `NodeFinished`;
    ///   in lossless mode the await waits while the consumer is behind (backpressure).
    /// - Otherwise it costs a branch or two and does nothing, unless someone subscribed to the
    ///   graph's event bus: then it is published there as [`EventKind::NodeEmitted`].
    ///
    /// It never fails: once the consumer dropped the stream, emitted values are discarded (the
    /// run is stopping, see "Streaming" in `docs/runtime-semantics.md`).
    ///
    /// # Example
    ///
    /// ```
    /// use spark_adk_core::{node_fn, Context, Node};
    /// use serde_json::json;
    ///
    /// let llm = node_fn(|ctx| async move {
    ///     for token in ["Hel", "lo"] {
    ///         ctx.emit(token).await; // streamed when the run is; a no-op otherwise
    ///     }
    ///     Ok(json!({ "text": "Hello" }))
    /// });
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let out = llm.process(&Context::detached(json!({}))).await.unwrap();
    /// assert_eq!(out.content["text"], "Hello");
    /// # });
    /// ```
    pub fn emit(
        &self,
        value: impl Into<serde_json::Value>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        let value = value.into();
        async move {
            let node = || {
                self.scope
                    .node_names
                    .get(self.node_index)
                    .map_or_else(|| Arc::from("?"), Arc::clone)
            };
            match self.scope.stream() {
                Some(stream) => {
                    self.scope.publish(|| EventKind::NodeEmitted {
                        node: node(),
                        value: value.clone(),
                    });
                    let _ = stream
                        .send(StreamEvent::Emitted {
                            node: node(),
                            value,
                        })
                        .await;
                }
                None => self.scope.publish(|| EventKind::NodeEmitted {
                    node: node(),
                    value,
                }),
            }
        }
    }

    /// A copy of this context for an activation of a durable run: `activation` is its id (the
    /// id of the message it consumes, the same on every retry and after a resume), and
    /// `resume_value` the answer to its interrupt, when the run was resumed with one. Durable
    /// executors call this.
    #[must_use]
    pub fn with_activation(mut self, activation: u64, resume_value: Option<Value>) -> Self {
        self.durable = Some(Arc::new((activation, resume_value)));
        self
    }

    /// The activation id in a durable run: the id of the message this activation consumes,
    /// stable across retries and resumes (so an outside effect can be keyed by it). `None`
    /// outside durable runs.
    pub fn activation_id(&self) -> Option<u64> {
        self.durable.as_ref().map(|d| d.0)
    }

    /// The value the run was resumed with, when this activation interrupted itself before (see
    /// [`Context::interrupt`]) and the run was resumed with an answer.
    pub fn resume_value(&self) -> Option<&Value> {
        self.durable.as_ref().and_then(|d| d.1.as_ref())
    }

    /// Asks for outside input: returns the error the node returns (`return Err(ctx.interrupt(..))`)
    /// to stop a durable run with `StopReason::Interrupted` once the interrupt is logged. The
    /// run is resumed with an answer, and this node runs again on the same message with the
    /// answer in [`Context::resume_value`]. State writes the interrupted attempt made are not
    /// logged (the node runs again). Outside a durable run it is an ordinary node error.
    ///
    /// ```
    /// use spark_adk_core::{Context, NodeError};
    /// use serde_json::json;
    ///
    /// fn review(ctx: &Context) -> Result<bool, NodeError> {
    ///     match ctx.resume_value() {
    ///         Some(answer) => Ok(answer == &json!("approve")),
    ///         None => Err(ctx.interrupt(json!({ "question": "approve?" }))),
    ///     }
    /// }
    /// let err = review(&Context::detached(json!({}))).unwrap_err();
    /// assert_eq!(err.interrupt_payload(), Some(&json!({ "question": "approve?" })));
    /// ```
    pub fn interrupt(&self, payload: impl Into<Value>) -> crate::NodeError {
        crate::NodeError::with_source(
            format!("node `{}` interrupted the run", self.node_name()),
            crate::Interrupt {
                payload: payload.into(),
            },
        )
    }

    /// The index of the running node in its graph.
    #[inline]
    pub fn node_index(&self) -> usize {
        self.node_index
    }

    /// The id of the run this activation belongs to.
    pub fn run_id(&self) -> u64 {
        self.scope.run_id()
    }

    /// Records LLM tokens used by this activation; returns the run's new total.
    pub fn record_tokens(&self, tokens: u64) -> u64 {
        self.scope.record_tokens(tokens)
    }

    /// Tokens recorded by the whole run so far.
    pub fn tokens_used(&self) -> u64 {
        self.scope.tokens_used()
    }

    /// The run's cancellation signal. It is cancelled once the run has ended (any outcome,
    /// including a standard-mode timeout), so background work a node started can stop with it;
    /// and cancelling it from outside cancels a standard run given that token
    /// ([`RunScope::with_cancellation`]). A long-running graceful stop does **not** cancel it
    /// while activations are still finishing: it fires when the grace period ends (see
    /// `Task::with_grace`) or after every worker has exited, whichever comes first. To wind
    /// down at the start of a graceful stop, watch [`Context::stopping`].
    pub fn cancellation(&self) -> &CancellationToken {
        self.scope.cancellation()
    }

    /// `true` once the run has been cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.scope.is_cancelled()
    }

    /// Asks the run to stop gracefully once this activation has finished (long-running mode; in
    /// standard mode it has no effect). The stop begins when *this* node's activation finishes,
    /// not when some other worker's does.
    pub fn request_shutdown(&self) {
        self.scope.request_shutdown_from(self.node_index);
    }

    /// The run's graph state: a key/value store shared by every node of the run.
    pub fn state(&self) -> &GraphState {
        self.scope.state()
    }

    /// `true` once a long-running run began its graceful stop (a budget ran out, a shutdown was
    /// requested, another node failed): this activation will still be allowed to finish, so a
    /// long-running node can check this between steps of its work and return early. Always
    /// `false` in standard mode, where a time budget cuts the node off instead.
    pub fn is_stopping(&self) -> bool {
        self.scope.is_stopping()
    }

    /// Completes once the run began its graceful stop (at once if it already did): the
    /// awaitable form of [`Context::is_stopping`]. A long operation can race it to wind down
    /// early, for example `tokio::select! { r = work => r, () = ctx.stopping() => partial }`.
    /// Activations still running when the grace period ends are dropped (see
    /// `Task::with_grace`).
    pub async fn stopping(&self) {
        self.scope.stopping().await;
    }

    /// The run this activation belongs to.
    pub fn scope(&self) -> &Arc<RunScope> {
        &self.scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_gives_the_context_the_next_activations_input_and_node() {
        let names: Arc<[Arc<str>]> = vec![Arc::from("a"), Arc::from("b")].into();
        let scope = Arc::new(RunScope::new(None).with_node_names(names));
        let mut ctx = Context::new(
            NodeMessage::new(serde_json::json!(1)),
            0,
            Arc::clone(&scope),
        );
        assert_eq!(ctx.node_name(), "a");
        let previous = ctx.reset(NodeMessage::new(serde_json::json!(2)), 1);
        assert_eq!(*previous.content, serde_json::json!(1));
        assert_eq!(*ctx.inputs().content, serde_json::json!(2));
        assert_eq!(ctx.node_name(), "b");
        assert!(Arc::ptr_eq(ctx.scope(), &scope), "the run scope is kept");
    }

    #[tokio::test]
    async fn stopping_completes_when_the_stop_begins_and_at_once_after() {
        let scope = Arc::new(RunScope::new(None));
        let waiter = {
            let scope = Arc::clone(&scope);
            tokio::spawn(async move { scope.stopping().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no stop began yet");
        scope.begin_stop();
        waiter
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let ctx = Context::new(NodeMessage::empty(), 0, scope);
        assert!(ctx.is_stopping());
        ctx.stopping().await;
    }

    #[test]
    fn a_shutdown_request_is_taken_by_the_requesting_nodes_activation_only() {
        let scope = RunScope::new(None);
        assert!(!scope.take_shutdown_request(0));
        scope.request_shutdown_from(1);
        assert!(scope.shutdown_requested());
        assert!(!scope.take_shutdown_request(0), "another node's request");
        assert!(scope.take_shutdown_request(1));
        assert!(!scope.take_shutdown_request(1), "taken once");
        scope.request_shutdown();
        assert!(
            scope.take_shutdown_request(0),
            "a request without a node: any node's"
        );
    }

    #[test]
    fn a_context_for_a_retry_reports_its_attempt_and_reset_starts_again_at_one() {
        let mut ctx = Context::detached(serde_json::json!(1));
        assert_eq!(ctx.attempt(), 1);
        let retry = ctx.for_attempt(3);
        assert_eq!(retry.attempt(), 3);
        assert_eq!(retry.node_name(), "detached");
        assert!(Arc::ptr_eq(retry.scope(), ctx.scope()), "same run");
        ctx = retry;
        ctx.reset(NodeMessage::new(serde_json::json!(2)), 0);
        assert_eq!(ctx.attempt(), 1, "the next activation is a first attempt");
    }

    #[test]
    fn events_published_from_an_activation_reach_the_runs_bus_only_when_someone_listens() {
        let quiet = RunScope::new(None).with_events(EventBus::new());
        let mut built = false;
        quiet.publish(|| {
            built = true;
            EventKind::BudgetExhausted {
                kind: crate::BudgetKind::Tokens,
            }
        });
        assert!(!built, "no subscriber: the event is not even built");

        let bus = EventBus::with_replay(4);
        let scope = RunScope::new(None).with_events(bus.clone());
        scope.publish(|| EventKind::BudgetExhausted {
            kind: crate::BudgetKind::Tokens,
        });
        let replay = bus.replay();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].run_id, scope.run_id());
    }

    #[test]
    fn tokens_reach_the_budget_exactly() {
        let scope = RunScope::new(Budget::tokens(10).ok());
        assert!(!scope.tokens_exhausted());
        assert_eq!(scope.record_tokens(9), 9);
        assert!(!scope.tokens_exhausted());
        scope.record_tokens(1);
        assert!(scope.tokens_exhausted());
        assert_eq!(scope.remaining_budget(), Err(crate::BudgetKind::Tokens));
    }

    #[test]
    fn token_counter_saturates_instead_of_overflowing() {
        let scope = RunScope::new(None);
        scope.record_tokens(u64::MAX);
        assert_eq!(scope.record_tokens(5), u64::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_budget_shrinks_with_time() {
        let scope = RunScope::new(Budget::seconds(10.0).ok());
        tokio::time::advance(Duration::from_secs(4)).await;
        let left = scope
            .remaining_budget()
            .ok()
            .flatten()
            .and_then(|b| b.max_time());
        assert_eq!(left, Some(Duration::from_secs(6)));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(scope.deadline_passed());
        assert_eq!(scope.remaining_budget(), Err(crate::BudgetKind::Time));
    }
}
