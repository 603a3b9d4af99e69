//! Map-reduce over LLM calls: summarise 20 documents, at most 4 at once, then join the
//! summaries.
//!
//! `MapNode` runs the `summarise` node over each document of the input's `docs` list (4 at a
//! time), returns the summaries in input order, and adds the tokens every call recorded to the
//! run. A `join` node reduces them. With 50 ms per pretend LLM call the map takes about 250 ms
//! instead of the 1 s of a sequential loop.
//!
//! Run with `cargo run -p spark-adk --example map_reduce`.

use std::time::{Duration, Instant};

use spark_adk::prelude::*;

/// A pretend LLM call: the first three words of the document, 50 ms, one token per word.
fn summarise() -> impl Node {
    node_fn(|ctx: Context| async move {
        let text = ctx.inputs().content.as_str().unwrap_or_default().to_owned();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let words: Vec<&str> = text.split_whitespace().collect();
        ctx.record_tokens(words.len() as u64);
        Ok::<_, NodeError>(json!(words
            .iter()
            .take(3)
            .copied()
            .collect::<Vec<_>>()
            .join(" ")))
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let docs: Vec<String> = (1..=20)
        .map(|i| format!("document {i} talks about topic {} at some length", i % 5))
        .collect();

    let mut g = Graph::builder();
    let map = g.add(
        "summarise_all",
        MapNode::over_node(summarise())
            .items_at("docs")
            .concurrency(4)
            .output_key("summaries"),
    );
    let join = g.add(
        "join",
        node_fn(|ctx: Context| async move {
            let summaries = ctx.inputs().content["summaries"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let joined = summaries
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ");
            Ok::<_, NodeError>(json!({ "count": summaries.len(), "digest": joined }))
        }),
    );
    g.connect(map >> join);
    let graph = g.start(map).build()?;

    let started = Instant::now();
    let result = graph.run_with(json!({ "docs": docs })).await?;
    println!(
        "{} summaries in {:?}",
        result.content()["count"],
        started.elapsed()
    );
    println!(
        "digest: {}",
        result.content()["digest"].as_str().unwrap_or_default()
    );
    println!("tokens used: {}", result.metadata.tokens_used);
    Ok(())
}
