//! Helpers shared by the long-running behaviour tests of this crate (each test file declares
//! `mod support;`). Not every file uses every helper.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub use std::collections::BTreeMap;
pub use std::future::Future;
pub use std::sync::atomic::{AtomicUsize, Ordering};
pub use std::sync::{Arc, Mutex};
pub use std::time::Duration;

pub use serde_json::{json, Value};
pub use spark_adk_core::{
    node_fn, AckHook, Budget, BudgetKind, ChannelMessage, Context, EventKind, Node, NodeError,
    NodeMessage, NodeResult, RunCounts, RunError, RunMetadata, RunResult, SinkOutput,
    SinkRetention, StopReason, Task, TaskType,
};
pub use spark_adk_edges::{GraphBuilder, Topology};
pub use spark_adk_mailbox::{HandleSendError, LongRunningExecutor, RunHandle, RunSender};
pub use tokio::sync::{Barrier, Notify};
pub use tokio::time::Instant;

/// Graphs as the facade builds them, for tests written against its API: `Graph::builder()` is
/// a `GraphBuilder`, and a built `Topology` runs in long-running mode through [`Runs`].
pub struct Graph;

impl Graph {
    pub fn builder() -> GraphBuilder {
        GraphBuilder::new()
    }
}

/// `run` and `spawn` on a built graph, with a fresh `LongRunningExecutor`.
pub trait Runs {
    fn run(&self, task: Task) -> impl Future<Output = Result<RunResult, RunError>> + Send;
    fn spawn(&self, task: Task) -> Result<RunHandle, RunError>;
}

impl Runs for Topology {
    fn run(&self, task: Task) -> impl Future<Output = Result<RunResult, RunError>> + Send {
        let topology = Arc::new(self.clone());
        async move { LongRunningExecutor::new().run(topology, task).await }
    }

    fn spawn(&self, task: Task) -> Result<RunHandle, RunError> {
        LongRunningExecutor::new().spawn(Arc::new(self.clone()), task)
    }
}

/// A guard against hangs in tests whose failure mode would be "never returns" (virtual time in
/// paused-clock tests, where waiting for it costs nothing; longer than any run they make).
pub const GUARD: Duration = Duration::from_secs(60);

/// Awaiting with a guard: a run, a wait or a receive that never finishes fails the test
/// instead of hanging it.
pub trait Guarded: Future + Sized {
    async fn guarded(self) -> Self::Output {
        tokio::time::timeout(GUARD, self)
            .await
            .unwrap_or_else(|_| panic!("did not finish within {GUARD:?}: the run hung"))
    }
}

impl<F: Future> Guarded for F {}

/// Checks the accounting identity of a successful run (the counts are counted where messages
/// end, so this can fail).
#[track_caller]
pub fn assert_balanced(m: &RunMetadata) {
    assert_counts_balanced(&m.counts());
}

/// Checks the accounting identity of the counts an error carries.
#[track_caller]
pub fn assert_counts_balanced(c: &RunCounts) {
    assert_eq!(
        c.accepted,
        c.processed + c.unprocessed,
        "accepted != processed + unprocessed: {c:?}"
    );
}

/// The counts of an error, which every error a long-running run ends with carries.
#[track_caller]
pub fn counts_of(error: &RunError) -> RunCounts {
    *error
        .counts()
        .unwrap_or_else(|| panic!("the error carries no counts: {error:?}"))
}

/// Builds a topology with `f` (which adds nodes and edges and sets the start node).
pub fn topology(f: impl FnOnce(&mut GraphBuilder)) -> Arc<Topology> {
    let mut g = GraphBuilder::new();
    f(&mut g);
    Arc::new(g.build().unwrap())
}

/// Runs `task` (long-running) on `topology` until it ends, guarded against hangs.
pub async fn run(topology: &Arc<Topology>, task: Task) -> Result<RunResult, RunError> {
    LongRunningExecutor::new()
        .run(Arc::clone(topology), task)
        .guarded()
        .await
}

/// A long-running task with an empty object as input.
pub fn task() -> Task {
    Task::long_running(json!({}))
}

/// A node that returns its input unchanged.
pub fn pass() -> impl Node {
    node_fn(|ctx: Context| async move { Ok::<_, NodeError>(ctx.inputs().clone()) })
}

/// A counter shared between a test and its nodes.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A node that counts its data calls in `counter` and returns its input.
pub fn counting(counter: &Counter) -> impl Node {
    let counter = counter.clone();
    node_fn(move |ctx: Context| {
        let counter = counter.clone();
        async move {
            if !ctx.is_shutdown() {
                counter.add();
            }
            Ok::<_, NodeError>(ctx.inputs().clone())
        }
    })
}

/// Sets a flag when dropped: shows that a future (or a node) was dropped.
#[derive(Debug)]
pub struct DropFlag(pub Arc<AtomicUsize>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Names seen, in order (for example the nodes whose shutdown delivery ran).
#[derive(Clone, Debug, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self, s: &str) -> usize {
        self.all().iter().filter(|x| *x == s).count()
    }
}

/// The `(node, content)` pairs of sink outputs.
pub fn sinks(outputs: &[SinkOutput]) -> Vec<(String, Value)> {
    outputs
        .iter()
        .map(|s| (s.node.to_string(), Value::clone(&s.message.content)))
        .collect()
}

/// One call of `process` seen by a [`Probe`].
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub node: &'static str,
    pub shutdown: bool,
    pub content: Value,
}

/// Every `process` call of the probes of one graph, in call order.
#[derive(Clone, Default)]
pub struct Calls(pub Arc<Mutex<Vec<Call>>>);

impl Calls {
    pub fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    /// The contents of the data (non-shutdown) calls of `node`, in order.
    pub fn data(&self, node: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|c| c.node == node && !c.shutdown)
            .map(|c| c.content)
            .collect()
    }

    /// How many shutdown deliveries `node` received.
    pub fn shutdowns(&self, node: &str) -> usize {
        self.all()
            .iter()
            .filter(|c| c.node == node && c.shutdown)
            .count()
    }
}

/// A node that records every call in `calls`. A shutdown delivery returns
/// `{"from_shutdown": name}` (so a test can see whether it was wrongly routed or kept as a sink
/// output); a data call returns `f(input content)`.
pub fn probe<F>(calls: &Calls, name: &'static str, f: F) -> impl Node
where
    F: Fn(&Value) -> Value + Send + Sync + 'static,
{
    let calls = calls.clone();
    let f = Arc::new(f);
    node_fn(move |ctx: Context| {
        let calls = calls.clone();
        let f = Arc::clone(&f);
        async move {
            let content = Value::clone(&ctx.inputs().content);
            let shutdown = ctx.is_shutdown();
            calls.0.lock().unwrap().push(Call {
                node: name,
                shutdown,
                content: content.clone(),
            });
            if shutdown {
                return Ok::<_, NodeError>(json!({ "from_shutdown": name }));
            }
            Ok(f(&content))
        }
    })
}

/// A probe that returns its input unchanged.
pub fn echo(calls: &Calls, name: &'static str) -> impl Node {
    probe(calls, name, Value::clone)
}

/// A counter shared between a test and its nodes.
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

pub fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

/// A source emitting sequence numbers 0..n through a self-loop, each also sent to `receiver`.
pub fn sequence_source(n: u64) -> impl Node {
    node_fn(move |ctx: Context| async move {
        let seq = ctx.inputs().content["next"].as_u64().unwrap_or(0);
        let more = seq + 1 < n;
        Ok::<_, NodeError>(json!({ "seq": seq, "next": seq + 1, "more": more }))
    })
}
