//! Tokens streamed from a (fake) LLM node to stdout as they come, with `graph.stream`.
//!
//! `prompt >> llm`: the LLM node "generates" its answer one word at a time (20 ms apart) and
//! emits each token with `ctx.emit`; the consumer prints every token the moment it arrives,
//! then the run's result, the last item of the stream. Every other event (node started with
//! its input, node finished with its output, the sink output) is shown as a bracketed note.
//!
//! Run with `cargo run -p spark-adk --example chat_stream`.

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use spark_adk::prelude::*;

/// A pretend LLM: answers with a fixed sentence, one token every 20 ms.
struct FakeLlm;

impl Node for FakeLlm {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let prompt = ctx.inputs().content["prompt"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let answer = format!("You asked \"{prompt}\". Streaming lets a chat UI show each token as soon as it exists.");
        let mut text = String::new();
        for token in answer.split_inclusive(' ') {
            tokio::time::sleep(Duration::from_millis(20)).await; // the model thinking
            text.push_str(token);
            ctx.emit(token).await; // to the stream, as it comes
        }
        ctx.record_tokens(text.split(' ').count() as u64);
        Ok(json!({ "answer": text }).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut g = Graph::builder();
    let prompt = g.add(
        "prompt",
        node_fn(|ctx| async move {
            let question = ctx.inputs().content["question"]
                .as_str()
                .unwrap_or("hi")
                .to_owned();
            Ok(json!({ "prompt": question.trim() }))
        }),
    );
    let llm = g.add("llm", FakeLlm);
    g.connect(prompt >> llm);
    let graph = g.start(prompt).build()?;

    let mut events = graph.stream(Task::new(json!({ "question": "  why stream?  " })));
    let mut out = std::io::stdout();
    while let Some(event) = events.next().await {
        match event {
            StreamEvent::Emitted { value, .. } => {
                write!(out, "{}", value.as_str().unwrap_or_default())?;
                out.flush()?;
            }
            StreamEvent::NodeStarted { node, input } => {
                println!("[{node} started with {}]", input.content);
            }
            StreamEvent::NodeFinished { node, .. } => println!("\n[{node} finished]"),
            StreamEvent::SinkOutput { node, .. } => println!("[sink output from {node}]"),
            StreamEvent::Lagged(n) => println!("[{n} events dropped]"),
            StreamEvent::Finished(result) => {
                let result = result?;
                println!(
                    "[done: {} steps, {} tokens, stopped: {:?}]",
                    result.metadata.steps, result.metadata.tokens_used, result.metadata.stop_reason
                );
            }
            _ => {}
        }
    }
    Ok(())
}
