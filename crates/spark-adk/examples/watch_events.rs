//! Subscribing to a graph's events and printing a per-node timing summary (on stdout), plus the
//! tracing spans of the run printed by `tracing-subscriber` (on stderr, coloured only when stderr
//! is a terminal: `2>spans.log` gives plain text).
//!
//! Run with `cargo run -p spark-adk --example watch_events`.

use std::collections::BTreeMap;
use std::time::Duration;

use spark_adk::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Show the run's spans (`spark.run`, `spark.node`) on stderr, so that stdout carries only
    // the summary; no ANSI colour codes unless stderr is a terminal.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_target(false)
        .init();

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

    let mut events = graph.subscribe_events();
    let collector = tokio::spawn(async move {
        let mut per_node: BTreeMap<String, (u32, Duration)> = BTreeMap::new();
        while let Ok(event) = events.recv().await {
            match event.kind {
                EventKind::NodeFinished { node, duration } => {
                    let entry = per_node.entry(node.to_string()).or_default();
                    entry.0 += 1;
                    entry.1 += duration;
                }
                EventKind::GraphFinished { .. } => break,
                _ => {}
            }
        }
        per_node
    });

    graph
        .run_with(json!({ "url": "https://example.invalid" }))
        .await?;
    let summary = collector.await?;
    println!("{:<8} {:>5} {:>10}", "node", "runs", "total");
    for (node, (runs, total)) in summary {
        println!(
            "{node:<8} {runs:>5} {:>8.1}ms",
            total.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
