//! The graph's `EventBus` in a distributed run: each process publishes the events of the nodes
//! it hosts, the coordinator the run's start, budget and end.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{bounded, process, unique_run, Cleanup};
use serde_json::json;
use spark_adk_core::{node_fn, Event, EventKind, NodeError, StopReason, Task};
use spark_adk_edges::{GraphBuilder, Topology};
use spark_adk_nats::Serve;
use tokio::sync::broadcast;

/// `a >> b`, built anew (each process builds its own graph, so each has its own bus).
fn pipeline() -> Arc<Topology> {
    let mut g = GraphBuilder::new();
    let a = g.add("a", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let b = g.add("b", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    g.connect(a >> b);
    Arc::new(g.start(a).build().unwrap())
}

fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    events
}

/// The event kinds, with the node (or `from>to`) they are about.
fn described(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            EventKind::GraphStarted { .. } => "GraphStarted".to_owned(),
            EventKind::NodeStarted { node } => format!("NodeStarted {node}"),
            EventKind::NodeFinished { node, .. } => format!("NodeFinished {node}"),
            EventKind::NodeFailed { node, .. } => format!("NodeFailed {node}"),
            EventKind::MessageSent { from, to } => format!("MessageSent {from}>{to}"),
            EventKind::GraphFinished { stop_reason, .. } => {
                format!("GraphFinished {stop_reason:?}")
            }
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_publishes_the_events_of_the_nodes_it_hosts_and_the_coordinator_the_runs() {
    let run = unique_run("events");
    let _cleanup = Cleanup(run.clone());
    let coordinator_graph = pipeline();
    let worker_graph = pipeline();
    let mut at_coordinator = coordinator_graph.events().subscribe();
    let mut at_worker = worker_graph.events().subscribe();
    bounded(60, async {
        let worker = process(&worker_graph, &run).await;
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["b"])).await });
        let result = process(&coordinator_graph, &run)
            .await
            .run(Task::long_running(json!({})), Serve::nodes(["a"]))
            .await
            .unwrap();
        worker.await.unwrap().unwrap();
        assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    })
    .await;
    let coordinator_events = drain(&mut at_coordinator);
    let worker_events = drain(&mut at_worker);
    assert_eq!(
        described(&coordinator_events),
        [
            "GraphStarted",
            "NodeStarted a",
            // As in memory: the activation finishes, then its output is routed.
            "NodeFinished a",
            "MessageSent a>b",
            "GraphFinished Some(Completed)",
        ]
    );
    assert_eq!(
        described(&worker_events),
        ["NodeStarted b", "NodeFinished b"]
    );
    let run_ids: std::collections::HashSet<u64> = coordinator_events
        .iter()
        .chain(&worker_events)
        .map(|e| e.run_id)
        .collect();
    assert_eq!(run_ids.len(), 1, "one run id for the run in every process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_error_is_published_as_node_failed_and_the_run_as_finished_with_it() {
    let run = unique_run("evfail");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let bad = g.add(
        "bad",
        node_fn(|_| async { Err::<serde_json::Value, _>(NodeError::new("no luck")) }),
    );
    let topology = Arc::new(g.start(bad).build().unwrap());
    let mut events = topology.events().subscribe();
    bounded(60, async {
        let err = process(&topology, &run)
            .await
            .run(Task::long_running(json!({})), Serve::All)
            .await;
        assert!(err.is_err());
    })
    .await;
    let events = drain(&mut events);
    assert_eq!(
        described(&events),
        [
            "GraphStarted",
            "NodeStarted bad",
            "NodeFailed bad",
            "GraphFinished None"
        ]
    );
    let EventKind::NodeFailed { error, .. } = &events[2].kind else {
        unreachable!()
    };
    assert_eq!(error, "no luck");
}
