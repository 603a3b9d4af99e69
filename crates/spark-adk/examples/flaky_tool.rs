//! A flaky tool behind a retry with exponential backoff and a per-attempt timeout.
//!
//! The tool hangs on its first call (the timeout cuts it off after 200 ms), fails on its
//! second (a transient error), and answers on its third. The retry policy retries timeouts and
//! transient errors, at most 3 attempts, waiting up to 100 ms, then up to 200 ms (jitter draws
//! each delay from the upper half of the backoff). Each retry is published as a
//! `NodeRetrying` event; the tool reads `ctx.attempt()`.
//!
//! Run with `cargo run -p spark-adk --example flaky_tool`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use spark_adk::prelude::*;
use spark_adk::{find_cause, TimeoutError};

/// A pretend web-search tool that misbehaves on its first two calls.
#[derive(Default)]
struct SearchTool {
    calls: AtomicU32,
}

impl Node for SearchTool {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        println!("search: attempt {} (call {call})", ctx.attempt());
        match call {
            1 => {
                // Hangs: the timeout ends this attempt.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(json!({}).into())
            }
            2 => Err(NodeError::new("transient: connection reset by peer")),
            _ => {
                let query = ctx.inputs().content["query"].as_str().unwrap_or_default();
                Ok(json!({ "hits": [format!("{query}: the answer is 42")] }).into())
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let retry = RetryPolicy::exponential(Duration::from_millis(100))
        .max_attempts(3)
        .retry_if(|e| {
            find_cause::<TimeoutError>(e).is_some() || e.message().starts_with("transient")
        });

    let mut g = Graph::builder();
    let search = g.add(
        "search",
        SearchTool::default()
            .with_timeout(Duration::from_millis(200)) // each attempt
            .with_retry(retry),
    );
    let graph = g.start(search).build()?;

    let mut events = graph.subscribe_events();
    let result = graph
        .run_with(json!({ "query": "meaning of life" }))
        .await?;
    println!("result: {}", result.content());

    while let Ok(event) = events.try_recv() {
        if let EventKind::NodeRetrying {
            node,
            attempt,
            error,
            delay,
        } = event.kind
        {
            println!("event: `{node}` attempt {attempt} failed ({error}); retrying in {delay:?}");
        }
    }
    Ok(())
}
