//! A chat agent that "continuously listens": a long-running graph fed through a `RunHandle`.
//!
//! `graph.spawn(task)` starts the workers in the background and returns a handle. The handle
//! sends user messages into the `listener` node's mailbox, and `subscribe()` streams the
//! graph's sink outputs (outputs that match no edge: here the `responder`'s replies). A spawned
//! run does not end when it is idle, since the handle may still send; `handle.shutdown()` stops
//! it gracefully and `wait()` returns the result.
//!
//! ```text
//! listener.on("kind", "chat") >> responder
//! ```
//!
//! Run with `cargo run -p spark-adk --example chat_agent`.

use spark_adk::prelude::*;

/// Normalises incoming user text and classifies it.
struct Listener;

impl Node for Listener {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if ctx.is_shutdown() {
            println!("[listener] shutting down");
            return Ok(NodeMessage::empty());
        }
        let Some(text) = ctx.inputs().content["user"].as_str() else {
            // The task input: nothing to answer.
            return Ok(json!({ "kind": "ready" }).into());
        };
        let text = text.trim().to_owned();
        Ok(json!({ "kind": "chat", "text": text }).into())
    }
}

/// Answers (a stand-in for an LLM call; it records the tokens it "used").
struct Responder;

impl Node for Responder {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if ctx.is_shutdown() {
            println!("[responder] shutting down");
            return Ok(NodeMessage::empty());
        }
        let text = ctx.inputs().content["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ctx.record_tokens(text.split_whitespace().count() as u64 * 2);
        let reply = if text.ends_with('?') {
            format!("Good question! You asked: \"{text}\"")
        } else {
            format!(
                "Noted: \"{text}\" ({} words)",
                text.split_whitespace().count()
            )
        };
        Ok(json!({ "reply": reply }).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut g = Graph::builder();
    let listener = g.add("listener", Listener);
    let responder = g.add("responder", Responder);
    g.connect(listener.on("kind", "chat") >> responder);
    let graph = g.start(listener).build()?;

    let handle = graph.spawn(Task::long_running(json!({})))?;
    let mut outputs = handle.subscribe();

    let conversation = [
        "Hello there",
        "What can a long-running graph do?",
        "Thanks, that is all",
    ];
    for text in conversation {
        println!("user:  {text}");
        handle.send("listener", json!({ "user": text })).await?;
        // Wait for the responder's reply (other sink outputs, like the listener's "ready",
        // are skipped).
        loop {
            let output = outputs.recv().await?;
            if &*output.node == "responder" {
                let reply = output.message.content["reply"].as_str().unwrap_or_default();
                println!("agent: {reply}");
                break;
            }
        }
    }

    handle.shutdown();
    let result = handle.wait().await?;
    let meta = &result.metadata;
    println!();
    println!("stop reason: {:?}", meta.stop_reason);
    for count in &meta.per_node {
        println!("  {:<10} processed {}", count.node, count.processed);
    }
    println!(
        "tokens used: {}; messages: {} accepted, {} processed, {} unprocessed",
        meta.tokens_used, meta.accepted, meta.processed, meta.unprocessed
    );
    Ok(())
}
