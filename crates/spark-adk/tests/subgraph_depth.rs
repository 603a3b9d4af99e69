//! Subgraph nesting under a long-running outer graph (docs/runtime-semantics.md, "Standard mode"): the
//! depth travels with the run scope, so the limit holds whichever executor runs the outer
//! graph. The standard-mode cases are beside the executor, in
//! `crates/spark-adk-sequential/tests/subgraph_depth.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use spark_adk::prelude::*;

/// A graph whose start node `sub1` runs a subgraph ... down to `sub{depth}`, which runs a graph
/// of one node `leaf` returning `{ "leaf": true }`.
fn nested(depth: u32) -> Graph {
    let mut g = Graph::builder();
    let leaf = g.add(
        "leaf",
        node_fn(|_| async { Ok::<_, NodeError>(json!({ "leaf": true })) }),
    );
    let mut inner = g.start(leaf).build().unwrap();
    for d in (1..=depth).rev() {
        let mut g = Graph::builder();
        let sub = g.add(format!("sub{d}"), SubgraphNode::new(inner));
        inner = g.start(sub).build().unwrap();
    }
    inner
}

// The default multi-thread runtime: workers have tokio's default 2 MiB stacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_long_running_graph_runs_subgraphs_nested_as_deep_as_the_limit() {
    let result = nested(64).run(Task::long_running(json!({}))).await.unwrap();
    assert_eq!(result.content()["leaf"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_long_running_graph_with_subgraphs_nested_300_deep_fails_instead_of_overflowing() {
    let err = nested(300)
        .run(Task::long_running(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.node(), Some("sub1"), "{err}");
    assert!(err.to_string().contains("`sub65` not started"), "{err}");
}
