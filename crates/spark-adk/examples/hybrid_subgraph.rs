//! Hybrid mode: a `SubgraphNode` runs an inner graph in standard mode as one step of an outer
//! standard-mode graph. The inner graph gets its input from a key of the outer message
//! (`input_key`), and its result is put under a key of the node's output (`output_key`). The
//! outer run's budget and cancellation reach the inner run; tokens recorded inside count toward
//! the outer token budget.
//!
//! The seed's hybrid example wraps standard-mode subgraphs in a *long-running* outer graph; that
//! variant will come as the `hybrid_long_running` example once long-running mode is available.
//!
//! Run with `cargo run -p spark-adk --example hybrid_subgraph`.

use spark_adk::prelude::*;

/// The inner graph: summarise a document (pretend LLM call), then grade the summary.
fn summariser() -> Result<Graph, spark_adk::BuildErrors> {
    let mut g = Graph::builder();
    let summarise = g.add(
        "summarise",
        node_fn(|ctx: Context| async move {
            let text = ctx.inputs().content["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let words: Vec<&str> = text.split_whitespace().collect();
            // Pretend the LLM call used one token per word read.
            ctx.record_tokens(words.len() as u64);
            let summary = words.iter().take(4).copied().collect::<Vec<_>>().join(" ");
            Ok(json!({ "summary": summary, "words": words.len() }))
        }),
    );
    let grade = g.add(
        "grade",
        node_fn(|ctx: Context| async move {
            let words = ctx.inputs().content["words"].as_u64().unwrap_or(0);
            let mut out = ctx.inputs().clone();
            out.content_mut()["grade"] = json!(if words > 8 { "long" } else { "short" });
            Ok(out)
        }),
    );
    g.connect(summarise >> grade);
    g.start(summarise).build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut g = Graph::builder();
    let fetch = g.add(
        "fetch",
        node_fn(|ctx: Context| async move {
            let id = ctx.inputs().content["doc"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            let text = format!(
                "Document {id} explains how standard mode runs one node at a time, in order"
            );
            Ok(json!({ "doc": id, "document": { "text": text } }))
        }),
    );
    let summarise = g.add(
        "summarise_doc",
        SubgraphNode::new(summariser()?)
            .input_key("document")
            .output_key("summary"),
    );
    let publish = g.add(
        "publish",
        node_fn(|ctx: Context| async move {
            let summary = &ctx.inputs().content["summary"];
            Ok(json!({
                "published": summary["summary"],
                "grade": summary["grade"],
                "tokens_so_far": ctx.tokens_used(),
            }))
        }),
    );
    g.connect(fetch >> summarise >> publish);
    let graph = g.start(fetch).build()?;

    let task =
        Task::new(json!({ "doc": "A-17" })).with_budget(Budget::new(Some(5.0), Some(1_000))?);
    let result = graph.run(task).await?;
    println!("published: {}", result.content()["published"]);
    println!("grade:     {}", result.content()["grade"]);
    println!(
        "tokens:    {} (recorded inside the subgraph, counted by the outer run)",
        result.metadata.tokens_used
    );
    Ok(())
}
