//! Exporting the runtime's `tracing` spans (`spark.run`, and `spark.node` per activation) to
//! OpenTelemetry, here with the stdout exporter, which prints every finished span.
//!
//! The runtime only emits `tracing` spans; `tracing-opentelemetry` turns them into OpenTelemetry
//! spans (a node's span is a child of its run's), and the SDK's exporter sends them on. To use
//! your own backend, replace `opentelemetry_stdout::SpanExporter` with its exporter (for example
//! `opentelemetry-otlp`'s `SpanExporter` for an OTLP collector, Jaeger, Tempo, Honeycomb, ...)
//! and prefer `with_batch_exporter` in production. Dependencies used here (all without their
//! default features): `opentelemetry` and `opentelemetry_sdk` with `trace`,
//! `opentelemetry-stdout` with `trace`, and `tracing-opentelemetry`.
//!
//! Run with `cargo run -p spark-adk --example otel_tracing`.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use spark_adk::prelude::*;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The OpenTelemetry pipeline: a tracer provider exporting each span as it ends.
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    let tracer = provider.tracer("spark-adk-example");

    // `tracing` → OpenTelemetry. Every level is kept, so the DEBUG `spark.node` spans too; add
    // a filter (`tracing_subscriber::filter::LevelFilter::INFO`) to keep only `spark.run`.
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    tracing::subscriber::set_global_default(subscriber)?;

    let work = |ms: u64| {
        node_fn(move |ctx| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(ctx.inputs().clone())
        })
    };
    let mut g = Graph::builder();
    let fetch = g.add("fetch", work(20));
    let parse = g.add("parse", work(5));
    let store = g.add("store", work(10));
    g.connect(fetch >> parse >> store);
    let graph = g.start(fetch).build()?;

    // Two runs, one per mode: two traces, each a `spark.run` span with three `spark.node` spans.
    graph
        .run_with(json!({ "url": "https://example.invalid" }))
        .await?;
    let task = Task::long_running(json!({ "url": "https://example.invalid" }))
        .with_budget(Budget::seconds(5)?);
    graph.run(task).await?;

    // Flush and stop the exporter before the process ends.
    provider.shutdown()?;
    Ok(())
}
