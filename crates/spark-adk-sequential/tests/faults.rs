//! Standard mode under faults (docs/runtime-semantics.md, "Standard mode" and "Graph state"):
//! panics in the drop of a node's future, panics inside state transactions, runs outside a
//! tokio runtime, and subgraphs nested deeper than the limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use spark_adk_core::{
    json, node_fn, BoxFuture, Budget, Context, DynNode, NodeError, NodeResult, RunError, Task,
};
use spark_adk_edges::GraphBuilder;
use spark_adk_sequential::{SequentialExecutor, SubgraphNode};

use support::PanicOnDrop;

/// A node whose future holds a [`PanicOnDrop`] and waits an hour.
fn stuck_and_panics_when_dropped() -> impl spark_adk_core::Node {
    node_fn(|_ctx| async move {
        let _guard = PanicOnDrop("dropped at the deadline");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, NodeError>(json!({}))
    })
}

fn one_second() -> Budget {
    Budget::duration(Duration::from_secs(1)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_node_future_that_panics_when_dropped_at_the_deadline_gives_the_timeout_error() {
    let mut g = GraphBuilder::new();
    let stuck = g.add("stuck", stuck_and_panics_when_dropped());
    let topology = g.start(stuck).build().unwrap();

    let err = SequentialExecutor::new()
        .run(&topology, Task::new(json!({})).with_budget(one_second()))
        .await
        .unwrap_err();

    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.node(), Some("stuck"));
}

#[tokio::test(start_paused = true)]
async fn a_subgraph_whose_node_panics_when_dropped_at_the_deadline_gives_the_timeout_error() {
    let mut inner = GraphBuilder::new();
    let stuck = inner.add("stuck", stuck_and_panics_when_dropped());
    let inner = inner.start(stuck).build().unwrap();
    let mut outer = GraphBuilder::new();
    let sub = outer.add("sub", SubgraphNode::new(inner));
    let outer = outer.start(sub).build().unwrap();

    let err = SequentialExecutor::new()
        .run(&outer, Task::new(json!({})).with_budget(one_second()))
        .await
        .unwrap_err();

    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.node(), Some("sub"));
}

/// A future that is ready at once and panics when dropped afterwards.
struct ReadyThenPanicOnDrop(#[allow(dead_code)] PanicOnDrop);

impl Future for ReadyThenPanicOnDrop {
    type Output = NodeResult;
    fn poll(self: Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> Poll<NodeResult> {
        Poll::Ready(Ok(json!({ "done": true }).into()))
    }
}

/// A node implemented on [`DynNode`] directly, so its future is dropped only after it finished.
struct DropPanicsAfterFinishing;

impl DynNode for DropPanicsAfterFinishing {
    fn process_dyn<'a>(&'a self, _ctx: &'a Context) -> BoxFuture<'a, NodeResult> {
        Box::pin(ReadyThenPanicOnDrop(PanicOnDrop("dropped after finishing")))
    }
}

#[tokio::test]
async fn a_node_future_that_panics_when_dropped_after_finishing_is_reported_as_the_nodes_panic() {
    let mut g = GraphBuilder::new();
    let node = g.add_shared("finisher", Arc::new(DropPanicsAfterFinishing));
    let topology = g.start(node).build().unwrap();

    let err = SequentialExecutor::new()
        .run(&topology, Task::new(json!({})))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, RunError::NodePanicked { node, message, .. }
            if node == "finisher" && message.contains("dropped after finishing")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_panic_inside_a_state_transaction_is_the_nodes_panic_and_leaves_the_state_unchanged() {
    let mut g = GraphBuilder::new();
    let writer = g.add(
        "writer",
        node_fn(|ctx: Context| async move {
            ctx.state().transaction(|map| {
                map.insert("partial".into(), json!(true));
                map.insert("count".into(), json!(99));
                panic!("transaction failed half-way");
            });
            #[allow(unreachable_code)]
            Ok::<_, NodeError>(json!({}))
        }),
    );
    let topology = g.start(writer).build().unwrap();
    let state = spark_adk_core::GraphState::new(
        json!({ "count": 1 })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let scope = spark_adk_core::RunScope::new(None).with_state(state.clone());

    let err = SequentialExecutor::new()
        .run_scoped(&topology, json!({}).into(), None, scope)
        .await
        .unwrap_err();

    assert!(
        matches!(&err, RunError::NodePanicked { node, message, .. }
            if node == "writer" && message.contains("half-way")),
        "{err:?}"
    );
    assert_eq!(
        state.snapshot(),
        json!({ "count": 1 }).as_object().cloned().unwrap()
    );
}

#[tokio::test]
async fn a_panic_inside_update_with_is_the_nodes_panic_and_leaves_the_state_unchanged() {
    let mut g = GraphBuilder::new();
    let writer = g.add(
        "writer",
        node_fn(|ctx: Context| async move {
            ctx.state().update_with("count", |v| {
                *v = json!(99);
                panic!("update failed half-way");
            });
            #[allow(unreachable_code)]
            Ok::<_, NodeError>(json!({}))
        }),
    );
    let topology = g.start(writer).build().unwrap();
    let state = spark_adk_core::GraphState::new(
        json!({ "count": 1 })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let scope = spark_adk_core::RunScope::new(None).with_state(state.clone());

    let err = SequentialExecutor::new()
        .run_scoped(&topology, json!({}).into(), None, scope)
        .await
        .unwrap_err();

    assert!(
        matches!(&err, RunError::NodePanicked { node, .. } if node == "writer"),
        "{err:?}"
    );
    assert_eq!(state.get("count"), Some(json!(1)));
}

/// A node that returns `Pending` once (waking itself at once) before it finishes, so the run
/// has to wait for it: that is when a time budget needs a timer.
fn waits_once() -> impl spark_adk_core::Node {
    node_fn(|_ctx| async move {
        let mut first = true;
        std::future::poll_fn(|cx| {
            if std::mem::take(&mut first) {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        Ok::<_, NodeError>(json!({ "waited": true }))
    })
}

fn waiting_graph() -> spark_adk_edges::Topology {
    let mut g = GraphBuilder::new();
    let wait = g.add("wait", waits_once());
    g.start(wait).build().unwrap()
}

#[test]
fn a_run_with_a_time_budget_outside_a_tokio_runtime_is_an_invalid_task_saying_so() {
    let topology = waiting_graph();
    let err = futures::executor::block_on(
        SequentialExecutor::new().run(&topology, Task::new(json!({})).with_budget(one_second())),
    )
    .unwrap_err();
    assert!(
        matches!(&err, RunError::InvalidTask(why) if why.contains("no tokio runtime")),
        "{err:?}"
    );
}

#[test]
fn a_run_with_a_time_budget_on_a_runtime_without_timers_is_an_invalid_task_saying_so() {
    let topology = waiting_graph();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(
            SequentialExecutor::new()
                .run(&topology, Task::new(json!({})).with_budget(one_second())),
        )
        .unwrap_err();
    assert!(
        matches!(&err, RunError::InvalidTask(why) if why.contains("timers are disabled")),
        "{err:?}"
    );
}

#[test]
fn a_run_without_a_time_budget_needs_no_tokio_runtime() {
    let topology = waiting_graph();
    let result =
        futures::executor::block_on(SequentialExecutor::new().run(&topology, Task::new(json!({}))))
            .unwrap();
    assert_eq!(result.content()["waited"], true);
}

/// A graph of one node that records `tokens`, then waits an hour.
fn records_then_waits(tokens: u64) -> spark_adk_edges::Topology {
    let mut g = GraphBuilder::new();
    let node = g.add(
        "spender",
        node_fn(move |ctx: Context| async move {
            ctx.record_tokens(tokens);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, NodeError>(json!({}))
        }),
    );
    g.start(node).build().unwrap()
}

fn outer_of(inner: spark_adk_edges::Topology) -> spark_adk_edges::Topology {
    let mut g = GraphBuilder::new();
    let sub = g.add("sub", SubgraphNode::new(inner));
    g.start(sub).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn tokens_recorded_by_a_subgraph_cut_off_at_the_deadline_count_in_the_timeout_error() {
    let outer = outer_of(records_then_waits(7));

    let err = SequentialExecutor::new()
        .run(&outer, Task::new(json!({})).with_budget(one_second()))
        .await
        .unwrap_err();

    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.counts().map(|c| c.tokens_used), Some(7), "{err:?}");
}

#[tokio::test]
async fn a_cancelled_run_carries_its_counts_including_a_cancelled_subgraphs_tokens() {
    let outer = outer_of(records_then_waits(7));
    let token = spark_adk_core::CancellationToken::new();
    let scope = spark_adk_core::RunScope::with_cancellation(None, token.clone());
    let cancel = async {
        // Let the inner node record its tokens and start waiting, then cancel from outside.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        token.cancel();
    };

    let (outcome, ()) = tokio::join!(
        SequentialExecutor::new().run_scoped(&outer, json!({}).into(), None, scope),
        cancel
    );

    let err = outcome.unwrap_err();
    assert!(
        // `sub` finished (with its inner run's cancellation as its error): processed.
        matches!(err, RunError::Cancelled { counts } if counts.tokens_used == 7
            && counts.accepted == 1 && counts.processed == 1 && counts.unprocessed == 0),
        "{err:?}"
    );
}
