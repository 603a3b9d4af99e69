//! Per-run options through the facade (issue 11, item 9): `Graph::spawn` and `Graph::run` take
//! sink retention, mailbox capacity and the quiescence policy from the task, without dropping
//! to `LongRunningExecutor`. The executor's own cases are in
//! `crates/spark-adk-mailbox/tests/handles.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use spark_adk::prelude::*;

/// `src` emits `n` numbered outputs, one per activation, each to the sink `out`.
fn stream_of(n: u64) -> Graph {
    let mut g = Graph::builder();
    let src = g.add(
        "src",
        node_fn(move |ctx| async move {
            let seq = ctx.inputs().content["next"].as_u64().unwrap_or(0);
            Ok(json!({ "seq": seq, "next": seq + 1, "more": seq + 1 < n }))
        }),
    );
    let out = g.add(
        "out",
        node_fn(|ctx| async move { Ok(ctx.inputs().clone()) }),
    );
    g.connect(src >> out);
    g.connect(src.on("more", true) >> src);
    g.start(src).build().unwrap()
}

fn kept(result: &RunResult) -> Vec<u64> {
    result
        .sink_outputs()
        .iter()
        .map(|s| s.message.content["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn graph_spawn_takes_retention_capacity_and_quiescence_from_the_task() {
    let task = Task::long_running(json!({}))
        .with_sink_retention(SinkRetention::Last(5))
        .with_mailbox_capacity(2)
        .with_quiescence(true);
    let mut handle = stream_of(50).spawn(task).unwrap();
    let mut outputs = handle.subscribe();

    let result = handle.finished().await.unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_eq!(kept(&result), [45, 46, 47, 48, 49]);
    assert_eq!(result.metadata.sink_outputs_discarded, 45);
    // The first subscriber saw every output, from the first one.
    let mut seen = Vec::new();
    while let Ok(out) = outputs.try_recv() {
        seen.push(out.message.content["seq"].as_u64().unwrap());
    }
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn graph_run_takes_the_sink_retention_from_the_task() {
    let task = Task::long_running(json!({})).with_sink_retention(SinkRetention::Last(2));
    let result = stream_of(10).run(task).await.unwrap();
    assert_eq!(kept(&result), [8, 9]);
    assert_eq!(result.metadata.sink_outputs_discarded, 8);
}

#[tokio::test]
async fn graph_spawn_rejects_a_mailbox_capacity_of_zero() {
    let err = stream_of(1)
        .spawn(Task::long_running(json!({})).with_mailbox_capacity(0))
        .unwrap_err();
    assert!(matches!(err, RunError::InvalidTask(_)), "{err}");
}
