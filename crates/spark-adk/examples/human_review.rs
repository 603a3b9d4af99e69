//! A standard graph that stops for a human's approval and resumes with the answer.
//!
//! `draft` writes a text, `review` interrupts the run asking for approval, `publish` publishes
//! what was approved. The run is durable: its log is kept in an SQLite file, so the resume could
//! just as well happen in another process, hours later (same graph, same file, same run id).
//!
//! Run with `cargo run -p spark-adk --example human_review`.

use std::sync::Arc;

use spark_adk::prelude::*;
use spark_adk::{DurableOptions, SqliteStore, Store};

fn review_graph() -> Result<Graph, spark_adk::BuildErrors> {
    let mut g = Graph::builder();
    let draft = g.add(
        "draft",
        node_fn(|ctx| async move {
            let topic = ctx.inputs().content["topic"]
                .as_str()
                .unwrap_or("nothing")
                .to_owned();
            Ok(json!({ "text": format!("A short note about {topic}.") }))
        }),
    );
    let review = g.add(
        "review",
        node_fn(|ctx| async move {
            match ctx.resume_value() {
                // Resumed: the human answered.
                Some(answer) => Ok(json!({
                    "text": ctx.inputs().content["text"],
                    "approved": answer == &json!("approve"),
                })),
                // First time here: ask, and stop the run until someone answers.
                None => Err(ctx.interrupt(json!({
                    "question": "publish this text?",
                    "text": ctx.inputs().content["text"],
                }))),
            }
        }),
    );
    let publish = g.add(
        "publish",
        node_fn(|ctx| async move {
            let approved = ctx.inputs().content["approved"] == json!(true);
            ctx.state().set("published", approved);
            Ok(json!({ "published": approved, "text": ctx.inputs().content["text"] }))
        }),
    );
    g.connect(draft >> review >> publish);
    g.start(draft).build()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("spark-human-review-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("runs.sqlite");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path)?);
    let graph = review_graph()?;

    let stopped = graph
        .run_durable(
            Task::new(json!({ "topic": "durable runs" })),
            DurableOptions::new(Arc::clone(&store), "review-1"),
        )
        .await?;
    println!("stopped: {:?}", stopped.metadata.stop_reason);
    if let Some(interrupt) = &stopped.metadata.interrupt {
        println!("`{}` asks: {}", interrupt.node, interrupt.payload);
    }

    // ... a human reads the question; later (maybe in another process) the run goes on.
    let done = graph
        .resume_with(
            DurableOptions::new(Arc::clone(&store), "review-1"),
            "approve",
        )
        .await?;
    println!(
        "resumed: {:?}, output {} after {} steps",
        done.metadata.stop_reason,
        done.content(),
        done.metadata.steps
    );

    // The interrupt was answered once; a second answer is refused.
    match graph
        .resume_with(
            DurableOptions::new(Arc::clone(&store), "review-1"),
            "reject",
        )
        .await
    {
        Err(e) if e.is_conflict() => println!("second answer refused: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
