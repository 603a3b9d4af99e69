//! The seed's agent across processes (tokio tasks with their own connections, and a real child
//! process), against the in-memory runtime.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/pipeline/graph.rs"]
mod graph;
mod common;

use std::time::Duration;

use common::{bounded, process, unique_run, Cleanup};
use spark_adk_core::{StopReason, Task};
use spark_adk_mailbox::LongRunningExecutor;
use spark_adk_nats::Serve;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_with_its_analyzer_on_a_second_process_gives_the_in_memory_result() {
    let run = unique_run("agent");
    let _cleanup = Cleanup(run.clone());
    let topology = graph::agent(12, Duration::ZERO).unwrap();
    let expected = LongRunningExecutor::new()
        .run(topology.clone(), Task::long_running(json!({})))
        .await
        .unwrap();
    bounded(60, async {
        let worker = process(&topology, &run).await;
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["analyzer"])).await });
        let coordinator = process(&topology, &run).await;
        let result = coordinator
            .run(Task::long_running(json!({})), Serve::nodes(["sensor", "actuator"]))
            .await
            .unwrap();
        let summary = worker.await.unwrap().unwrap();
        assert_eq!(result.content(), expected.content());
        assert_eq!(result.content()["readings_done"], 12);
        let m = &result.metadata;
        assert_eq!(m.stop_reason, StopReason::Completed);
        assert_eq!(m.processed_by("analyzer"), Some(12));
        assert_eq!(m.processed_by("sensor"), expected.metadata.processed_by("sensor"));
        assert_eq!(m.processed_by("actuator"), expected.metadata.processed_by("actuator"));
        assert_eq!(m.accepted, expected.metadata.accepted);
        assert_eq!(m.unprocessed, 0);
        assert_eq!(m.accepted, m.processed + m.unprocessed);
        assert_eq!(summary.processed, 12, "the analyzer ran on the worker process");
        assert_eq!(summary.shutdown_deliveries, 1);
    })
    .await;
}
