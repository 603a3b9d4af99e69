//! Subgraph nesting depth (docs/runtime-semantics.md, "Standard mode"): limited (default 64, settable),
//! a deeper run fails with an error naming the subgraph node, and no accepted depth overflows
//! the stack.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use spark_adk_core::{json, node_fn, NodeError, RunError, RunResult, Task};
use spark_adk_edges::{GraphBuilder, Topology};
use spark_adk_sequential::{SequentialExecutor, SubgraphNode, DEFAULT_SUBGRAPH_DEPTH_LIMIT};

/// The stack of a tokio worker thread and of Rust's spawned threads by default.
const TWO_MIB: usize = 2 << 20;

/// A graph whose start node `sub1` runs a subgraph whose start node `sub2` runs ... down to
/// `sub{depth}`, which runs a graph of one node `leaf` returning `{ "leaf": true }`. The run of
/// the graph inside `sub{d}` is `d` subgraphs deep. `limit` is every subgraph node's depth limit
/// (`None`: the default).
fn nested(depth: u32, limit: Option<u32>) -> Arc<Topology> {
    let mut g = GraphBuilder::new();
    let leaf = g.add(
        "leaf",
        node_fn(|_| async { Ok::<_, NodeError>(json!({ "leaf": true })) }),
    );
    let mut inner = Arc::new(g.start(leaf).build().unwrap());
    for d in (1..=depth).rev() {
        let mut node = SubgraphNode::new(inner);
        if let Some(limit) = limit {
            node = node.max_depth(limit);
        }
        let mut g = GraphBuilder::new();
        let sub = g.add(format!("sub{d}"), node);
        inner = Arc::new(g.start(sub).build().unwrap());
    }
    inner
}

/// Runs `topology` on a current-thread runtime on a fresh thread with a 2 MiB stack.
fn run_on_small_stack(topology: Arc<Topology>) -> Result<RunResult, RunError> {
    std::thread::Builder::new()
        .stack_size(TWO_MIB)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            rt.block_on(SequentialExecutor::new().run(&topology, Task::new(json!({}))))
        })
        .unwrap()
        .join()
        .expect("the run did not overflow its stack")
}

#[test]
fn subgraphs_nested_as_deep_as_the_default_limit_run_on_a_two_mib_stack() {
    assert_eq!(DEFAULT_SUBGRAPH_DEPTH_LIMIT, 64);
    let result = run_on_small_stack(nested(DEFAULT_SUBGRAPH_DEPTH_LIMIT, None)).unwrap();
    assert_eq!(result.content()["leaf"], true);
}

#[test]
fn a_subgraph_nested_deeper_than_the_limit_fails_naming_the_subgraph_node() {
    let err = run_on_small_stack(nested(DEFAULT_SUBGRAPH_DEPTH_LIMIT + 1, None)).unwrap_err();
    assert_eq!(
        err.node(),
        Some("sub1"),
        "the outermost node reports: {err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("subgraph node `sub65` not started") && text.contains("limit of 64"),
        "{text}"
    );
}

#[test]
fn subgraphs_nested_300_deep_fail_with_an_error_instead_of_overflowing_the_stack() {
    let err = run_on_small_stack(nested(300, None)).unwrap_err();
    assert!(err.to_string().contains("`sub65` not started"), "{err}");
}

#[test]
fn the_subgraph_depth_limit_is_settable() {
    assert!(run_on_small_stack(nested(3, Some(3))).is_ok());
    let err = run_on_small_stack(nested(4, Some(3))).unwrap_err();
    assert!(
        err.to_string().contains("`sub4` not started") && err.to_string().contains("limit of 3"),
        "{err}"
    );
}
