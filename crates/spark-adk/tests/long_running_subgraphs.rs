//! Long-running mode through the facade: what only the facade can build, a `SubgraphNode`
//! running an inner graph inside a long-running worker (the seed's hybrid mode). The
//! long-running runtime's own behaviour is tested beside it, in `crates/spark-adk-mailbox/tests`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spark_adk::prelude::*;
use spark_adk::RunMetadata;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A guard against hangs in tests whose failure mode would be "never returns" (virtual time in
/// paused-clock tests, where waiting for it costs nothing; longer than any run they make).
const GUARD: Duration = Duration::from_secs(30);

/// Awaiting with a guard: a run, a wait or a receive that never finishes fails the test
/// instead of hanging it.
trait Guarded: std::future::Future + Sized {
    async fn guarded(self) -> Self::Output {
        tokio::time::timeout(GUARD, self)
            .await
            .unwrap_or_else(|_| panic!("did not finish within {GUARD:?}: the run hung"))
    }
}

impl<F: std::future::Future> Guarded for F {}

/// Checks the accounting identity of section 9.
#[track_caller]
fn assert_balanced(m: &RunMetadata) {
    assert_eq!(
        m.accepted,
        m.processed + m.unprocessed,
        "accepted != processed + unprocessed: {m:?}"
    );
}

/// One call of `process` seen by a [`Probe`].
#[derive(Clone, Debug, PartialEq)]
struct Call {
    node: &'static str,
    shutdown: bool,
    content: Value,
}

/// Every `process` call of the probes of one graph, in call order.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }
}

/// A node that records every call in `calls`. A shutdown delivery returns
/// `{"from_shutdown": name}` (so a test can see whether it was wrongly routed or kept as a sink
/// output); a data call returns `f(input content)`.
fn probe<F>(calls: &Calls, name: &'static str, f: F) -> impl Node
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
fn echo(calls: &Calls, name: &'static str) -> impl Node {
    probe(calls, name, Value::clone)
}

// ---------------------------------------------------------------------------------------------

// -----------------------------------------------------------------------------------------
// Hybrid mode (seed "Hybrid Mode")
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn subgraph_node_runs_an_inner_standard_graph_in_long_running_mode() {
    let mut inner = Graph::builder();
    let double = inner.add(
        "double",
        node_fn(|ctx: Context| async move {
            ctx.record_tokens(3);
            Ok::<_, NodeError>(json!({ "n": ctx.inputs().content["n"].as_i64().unwrap_or(0) * 2 }))
        }),
    );
    let inc = inner.add(
        "inc",
        node_fn(|ctx: Context| async move {
            Ok::<_, NodeError>(json!({ "n": ctx.inputs().content["n"].as_i64().unwrap_or(0) + 1 }))
        }),
    );
    inner.connect(double >> inc);
    let inner = inner.start(double).build().unwrap();

    let mut outer = Graph::builder();
    let sub = outer.add("sub", SubgraphNode::new(inner));
    let outer = outer.start(sub).build().unwrap();

    let result = outer
        .run(Task::long_running(json!({ "n": 20 })).with_budget(Budget::seconds(60.0).unwrap()))
        .guarded()
        .await
        .unwrap();

    assert_eq!(result.content(), &json!({ "n": 41 }));
    assert!(
        result.metadata.tokens_used >= 3,
        "inner tokens reach the outer run"
    );
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_balanced(&result.metadata);
}

/// The outer worker's shutdown delivery is control, not data: a `SubgraphNode` must not run
/// its inner graph for it (that would activate every inner node once more, with an empty
/// input, and record their tokens).
#[tokio::test]
async fn subgraph_node_does_not_run_its_inner_graph_on_the_shutdown_delivery() {
    let calls = Calls::default();
    let mut inner = Graph::builder();
    let first = inner.add("first", echo(&calls, "first"));
    let second = inner.add("second", echo(&calls, "second"));
    inner.connect(first >> second);
    let inner = inner.start(first).build().unwrap();

    let mut outer = Graph::builder();
    let sub = outer.add("sub", SubgraphNode::new(inner));
    let outer = outer.start(sub).build().unwrap();

    let result = outer
        .run(Task::long_running(json!({ "job": 1 })))
        .guarded()
        .await
        .unwrap();

    assert_eq!(result.content(), &json!({ "job": 1 }));
    assert_eq!(
        calls.all(),
        [
            Call {
                node: "first",
                shutdown: false,
                content: json!({ "job": 1 })
            },
            Call {
                node: "second",
                shutdown: false,
                content: json!({ "job": 1 })
            },
        ],
        "the inner graph ran again on the outer shutdown delivery"
    );
    assert_balanced(&result.metadata);
}
