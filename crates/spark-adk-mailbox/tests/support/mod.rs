//! Helpers shared by the long-running behaviour tests of this crate (each test file declares
//! `mod support;`). Not every file uses every helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use spark_adk_core::{
    node_fn, Context, Node, NodeError, RunCounts, RunError, RunMetadata, RunResult, SinkOutput,
    Task,
};
use spark_adk_edges::{GraphBuilder, Topology};
use spark_adk_mailbox::LongRunningExecutor;

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
