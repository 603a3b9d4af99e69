//! The seed's hybrid mode: an outer **long-running** graph whose worker is a `SubgraphNode`
//! running an inner **standard** graph, one inner run per message.
//!
//! ```text
//! outer (long-running):  inbox.on("more", true) >> inbox      (one document per message)
//!                        inbox >> analyze                      (SubgraphNode)
//! inner (standard):      tokenize >> score
//! ```
//!
//! The outer run has a budget (5 s, 10,000 tokens); tokens recorded by the inner nodes count
//! toward it. The run ends at quiescence once every document was analysed; the result is the
//! last sink output, and every sink output is listed.
//!
//! Run with `cargo run -p spark-adk --example hybrid_long_running`.

use spark_adk::prelude::*;

/// The inner, standard-mode graph: split a document into words, then score it.
fn analysis_graph() -> Result<Graph, spark_adk::BuildErrors> {
    let mut g = Graph::builder();
    let tokenize = g.add(
        "tokenize",
        node_fn(|ctx: Context| async move {
            let words: Vec<String> = ctx.inputs().content["text"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_lowercase)
                .collect();
            ctx.record_tokens(words.len() as u64);
            Ok(json!({
                "title": ctx.inputs().content["title"].clone(),
                "words": words,
            }))
        }),
    );
    let score = g.add(
        "score",
        node_fn(|ctx: Context| async move {
            let words = ctx.inputs().content["words"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let urgent = words
                .iter()
                .filter(|w| matches!(w.as_str(), Some("outage" | "down" | "urgent")))
                .count();
            Ok(json!({
                "title": ctx.inputs().content["title"].clone(),
                "words": words.len(),
                "urgent": urgent > 0,
            }))
        }),
    );
    g.connect(tokenize >> score);
    g.start(tokenize).build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut outer = Graph::builder();
    // Emits the first document of its input and sends the rest back to itself.
    let inbox = outer.add(
        "inbox",
        node_fn(|ctx: Context| async move {
            let mut docs = ctx.inputs().content["docs"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if docs.is_empty() {
                return Ok(json!({ "more": false }));
            }
            let doc = docs.remove(0);
            Ok(json!({ "doc": doc, "docs": docs, "more": !docs.is_empty() }))
        }),
    );
    let analyze = outer.add(
        "analyze",
        SubgraphNode::new(analysis_graph()?)
            .input_key("doc")
            .output_key("analysis"),
    );
    outer.connect(inbox.on("more", true) >> inbox);
    outer.connect(inbox.when("$.outputs.doc != null") >> analyze);
    let outer = outer.start(inbox).build()?;

    let documents = json!({ "docs": [
        { "title": "weekly report", "text": "All systems nominal this week" },
        { "title": "pager", "text": "Database DOWN in region west, outage ongoing" },
        { "title": "newsletter", "text": "Three new features shipped and one deprecated" },
    ]});
    let task =
        Task::long_running(documents).with_budget(Budget::seconds(5.0)?.with_max_tokens(10_000)?);
    let result = outer.run(task).await?;

    println!("every sink output (completion order):");
    for sink in result.sink_outputs() {
        println!("  {:<8} {}", sink.node, sink.message.content);
    }
    println!("result (last sink output): {}", result.content());
    let meta = &result.metadata;
    println!(
        "stop reason: {:?}; tokens used: {}; processed: {}; unprocessed: {}",
        meta.stop_reason, meta.tokens_used, meta.processed, meta.unprocessed
    );
    Ok(())
}
