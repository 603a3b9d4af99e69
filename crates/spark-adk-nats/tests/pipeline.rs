//! The seed's agent across processes (tokio tasks with their own connections, and a real child
//! process), against the in-memory runtime.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../examples/pipeline/graph.rs"]
mod graph;

use std::time::Duration;

use common::{bounded, process, unique_run, Cleanup};
use serde_json::json;
use spark_adk_core::{StopReason, Task};
use spark_adk_mailbox::LongRunningExecutor;
use spark_adk_nats::Serve;

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
            .run(
                Task::long_running(json!({})),
                Serve::nodes(["sensor", "actuator"]),
            )
            .await
            .unwrap();
        let summary = worker.await.unwrap().unwrap();
        assert_eq!(result.content(), expected.content());
        assert_eq!(result.content()["readings_done"], 12);
        let m = &result.metadata;
        assert_eq!(m.stop_reason, StopReason::Completed);
        assert_eq!(m.processed_by("analyzer"), Some(12));
        assert_eq!(
            m.processed_by("sensor"),
            expected.metadata.processed_by("sensor")
        );
        assert_eq!(
            m.processed_by("actuator"),
            expected.metadata.processed_by("actuator")
        );
        assert_eq!(m.accepted, expected.metadata.accepted);
        assert_eq!(m.unprocessed, 0);
        assert_eq!(m.accepted, m.processed + m.unprocessed);
        assert_eq!(
            summary.processed, 12,
            "the analyzer ran on the worker process"
        );
        assert_eq!(summary.shutdown_deliveries, 1);
    })
    .await;
}

/// The `distributed_pipeline` example binary (cargo builds examples with the tests).
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(|p| p.parent()).unwrap();
    let path = target.join("examples").join("distributed_pipeline");
    if !path.exists() {
        // `cargo test --test pipeline` does not build examples; `cargo test` does.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "-p",
                "spark-adk-nats",
                "--example",
                "distributed_pipeline",
            ])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "building the distributed_pipeline example"
        );
    }
    path
}

fn worker_child(run: &str) -> tokio::process::Child {
    tokio::process::Command::new(example_binary())
        .args(["worker", run])
        .env("READINGS", "10")
        .env("ANALYZER_DELAY_MS", "150")
        .env("ACK_WAIT_MS", "2000")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the distributed_pipeline example is built with the tests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_mid_run_loses_nothing_and_its_work_is_redone_once() {
    let run = unique_run("kill");
    let _cleanup = Cleanup(run.clone());
    let topology = graph::agent(10, Duration::from_millis(150)).unwrap();
    let expected = LongRunningExecutor::new()
        .run(topology.clone(), Task::long_running(json!({})))
        .await
        .unwrap();
    bounded(90, async {
        let mut first = worker_child(&run);
        let coordinator = process(&topology, &run).await;
        let handle = coordinator
            .start(
                Task::long_running(json!({})),
                Serve::nodes(["sensor", "actuator"]),
            )
            .await
            .unwrap();
        // Let the first worker take a few readings, then kill it in the middle of the analyzer's
        // 150 ms activation (SIGKILL: no cleanup at all).
        tokio::time::sleep(Duration::from_millis(700)).await;
        first.start_kill().unwrap();
        let status = first.wait().await.unwrap();
        assert!(!status.success(), "the first worker was killed");
        let mut second = worker_child(&run);
        // The run ends at quiescence: poll for it through the handle's outputs.
        let mut outputs = handle.subscribe();
        let done = loop {
            let out = outputs.recv().await.unwrap();
            if out.message.content.get("readings_done").is_some() {
                break out;
            }
        };
        assert_eq!(done.message.content["readings_done"], 10);
        handle.shutdown();
        let result = handle.wait().await.unwrap();
        let exit = second.wait().await.unwrap();
        assert!(exit.success());
        let m = &result.metadata;
        // Every reading analysed exactly once as far as the run is concerned (the killed
        // activation ran again, its duplicate effects were dropped by the broker).
        assert_eq!(m.processed_by("analyzer"), Some(10));
        assert_eq!(
            m.processed_by("sensor"),
            expected.metadata.processed_by("sensor")
        );
        assert_eq!(m.accepted, expected.metadata.accepted);
        assert_eq!(m.unprocessed, 0);
        assert_eq!(m.accepted, m.processed + m.unprocessed);
        assert_eq!(result.content(), expected.content());
    })
    .await;
}
