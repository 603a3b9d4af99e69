#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The mailbox depth gauge fed by a real long-running run: the worker samples its mailbox when
//! it takes messages and when it parks.

use std::sync::Arc;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use spark_adk_core::{node_fn, Context, EventKind, NodeError, Task};
use spark_adk_edges::GraphBuilder;
use spark_adk_mailbox::LongRunningExecutor;
use spark_adk_metrics::MetricsExporter;
use tokio::sync::{mpsc, Semaphore};

/// The gauge `spark_mailbox_depth{node}` as the recorder holds it now.
fn depth_gauge(snapshotter: &metrics_util::debugging::Snapshotter, node: &str) -> Option<f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let is_it = key.name() == "spark_mailbox_depth"
                && key.labels().any(|l| l.key() == "node" && l.value() == node);
            match value {
                DebugValue::Gauge(g) if is_it => Some(g.into_inner()),
                _ => None,
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_node_with_queued_messages_shows_them_in_the_mailbox_depth_gauge() {
    // `slow` takes one permit per message; the test gives them out one by one and hears from
    // the node as each message starts.
    let permits = Arc::new(Semaphore::new(0));
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let mut g = GraphBuilder::new();
    let gate = Arc::clone(&permits);
    let slow = g.add(
        "slow",
        node_fn(move |ctx: Context| {
            let (gate, entered) = (Arc::clone(&gate), entered_tx.clone());
            async move {
                if !ctx.is_shutdown() {
                    let _ = entered.send(ctx.inputs().content["n"].clone());
                    gate.acquire().await.unwrap().forget();
                }
                Ok::<_, NodeError>(json!({}))
            }
        }),
    );
    let topology = Arc::new(g.start(slow).build().unwrap());
    let mut exporter = MetricsExporter::attach(topology.events(), "g");
    let mut events = topology.events().subscribe();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();

    let handle = LongRunningExecutor::new()
        .spawn(Arc::clone(&topology), Task::long_running(json!({ "n": 0 })))
        .unwrap();
    assert_eq!(entered.recv().await, Some(json!(0)));
    for n in 1..=4 {
        handle.send("slow", json!({ "n": n })).await.unwrap();
    }
    // Message 0 finishes; the worker takes the four queued ones (a sample: 4) and starts 1.
    permits.add_permits(1);
    assert_eq!(entered.recv().await, Some(json!(1)));
    metrics::with_local_recorder(&recorder, || exporter.drain());
    assert_eq!(depth_gauge(&snapshotter, "slow"), Some(4.0));

    // The rest finishes; the worker parks with nothing left (a sample: 0).
    permits.add_permits(4);
    for n in 2..=4 {
        assert_eq!(entered.recv().await, Some(json!(n)));
    }
    handle.shutdown();
    let result = handle.wait().await.unwrap();
    assert_eq!(result.metadata.processed, 5);
    metrics::with_local_recorder(&recorder, || exporter.drain());
    assert_eq!(depth_gauge(&snapshotter, "slow"), Some(0.0));

    let mut samples = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let EventKind::MailboxDepth { node, depth } = event.kind {
            assert_eq!(&*node, "slow");
            samples.push(depth);
        }
    }
    assert!(samples.contains(&4), "{samples:?}");
    assert_eq!(samples.last(), Some(&0), "{samples:?}");
}
