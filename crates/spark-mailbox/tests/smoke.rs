//! Smoke tests of the long-running executor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use serde_json::json;
use spark_core::{node_fn, Budget, NodeError, StopReason, Task};
use spark_edges::GraphBuilder;
use spark_mailbox::LongRunningExecutor;
use std::sync::Arc;

fn inc() -> impl spark_core::Node {
    node_fn(|ctx| async move {
        Ok::<_, NodeError>(json!({ "n": ctx.inputs().content["n"].as_i64().unwrap_or(0) + 1 }))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiescence_ends_run_without_waiting() {
    let mut g = GraphBuilder::new();
    let a = g.add("a", inc());
    let b = g.add("b", inc());
    let c = g.add("c", inc());
    g.connect(a >> b >> c);
    let t = Arc::new(g.start(a).build().unwrap());
    for _ in 0..200 {
        let r = LongRunningExecutor::new()
            .run(t.clone(), Task::long_running(json!({"n": 0})))
            .await
            .unwrap();
        assert_eq!(r.content()["n"], 3);
        assert_eq!(r.metadata.stop_reason, StopReason::Completed);
        assert_eq!(r.metadata.accepted, 3);
        assert_eq!(r.metadata.processed, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_one_cycle_never_hangs() {
    let mut g = GraphBuilder::new();
    let fan = node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) });
    let a = g.add("a", fan);
    let b = g.add(
        "b",
        node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) }),
    );
    g.connect(a >> b);
    g.connect(b >> a);
    g.connect(b >> a);
    g.mailbox_capacity(1);
    let t = Arc::new(g.start(a).build().unwrap());
    let r = LongRunningExecutor::new()
        .run(t, Task::long_running(json!({})))
        .await;
    assert!(
        matches!(r, Err(spark_core::RunError::Deadlock { .. })),
        "{r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn time_budget_stops_cycle() {
    let mut g = GraphBuilder::new();
    let a = g.add(
        "a",
        node_fn(|ctx| async move {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            Ok::<_, NodeError>(ctx.inputs().clone())
        }),
    );
    let b = g.add("b", inc());
    g.connect(a >> b >> a);
    let t = Arc::new(g.start(a).build().unwrap());
    let r = LongRunningExecutor::new()
        .run(
            t,
            Task::long_running(json!({})).with_budget(Budget::seconds(1.0).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(
        r.metadata.stop_reason,
        StopReason::Budget(spark_core::BudgetKind::Time)
    );
    assert_eq!(
        r.metadata.accepted,
        r.metadata.processed + r.metadata.unprocessed
    );
    assert!(r.metadata.processed > 100, "{:?}", r.metadata);
}
