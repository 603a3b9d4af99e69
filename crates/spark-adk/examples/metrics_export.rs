//! Exporting a graph's run events as metrics (counters, gauges, histograms) through the
//! `metrics` facade crate, then printing what was recorded after two runs.
//!
//! An application enables the facade's `metrics` feature
//! (`spark-adk = { version = "0.1", features = ["metrics"] }`) and uses `spark_adk::metrics`,
//! installs its exporter's recorder (for example `metrics-exporter-prometheus`) once, and runs
//! `tokio::spawn(MetricsExporter::attach(graph.events(), "name").run())`. This example uses
//! `spark-adk-metrics` directly (the same crate) and metrics-util's `DebuggingRecorder`, which
//! keeps everything in memory, so that it can print the values.
//!
//! Run with `cargo run -p spark-adk --example metrics_export`.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use spark_adk::prelude::*;
use spark_adk::{find_cause, TimeoutError};
use spark_adk_metrics::MetricsExporter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install()?;
    spark_adk_metrics::describe();

    let mut g = Graph::builder();
    let fetch = g.add(
        "fetch",
        node_fn(|ctx| async move {
            // Times out on the first attempt; the retry runs it again.
            if ctx.attempt() == 1 {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok(json!({ "body": "<html>…</html>" }))
        })
        .with_timeout(Duration::from_millis(50))
        .with_retry(
            RetryPolicy::exponential(Duration::from_millis(10))
                .max_attempts(3)
                .retry_if(|e| find_cause::<TimeoutError>(e).is_some()),
        ),
    );
    let parse = g.add(
        "parse",
        node_fn(|ctx| async move {
            Ok(json!({ "bytes": ctx.inputs().content["body"].to_string().len() }))
        }),
    );
    g.connect(fetch >> parse);
    let graph = g.start(fetch).build()?;

    // Attach before running; the exporter ends by itself when the graph is dropped.
    let exporter = tokio::spawn(MetricsExporter::attach(graph.events(), "crawler").run());

    graph
        .run_with(json!({ "url": "https://example.invalid" }))
        .await?;
    let task = Task::long_running(json!({ "url": "https://example.invalid" }))
        .with_budget(Budget::seconds(5)?);
    graph.run(task).await?;
    drop(graph);
    exporter.await?; // every event recorded

    let mut lines: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, unit, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n.to_string(),
                DebugValue::Gauge(g) => g.to_string(),
                DebugValue::Histogram(v) => {
                    let sum: f64 = v.iter().map(|x| x.into_inner()).sum();
                    format!("count={} sum={sum:.3}", v.len())
                }
            };
            let unit = unit
                .map(|u| format!(" ({})", u.as_str()))
                .unwrap_or_default();
            format!("{}{{{}}} {value}{unit}", key.name(), labels.join(","))
        })
        .collect();
    lines.sort();
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
