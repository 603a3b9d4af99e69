//! Long-running workers updating shared graph state concurrently: a `fan` node sends one
//! message to each of eight workers; every worker increments one counter 1,000 times with the
//! atomic `update_with`. No update is lost: the final counter is exactly 8,000.
//!
//! Run with `cargo run -p spark-adk --example concurrent_counter`.

use spark_adk::prelude::*;

const WORKERS: usize = 8;
const INCREMENTS: i64 = 1_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut g = Graph::builder();
    let fan = g.add("fan", node_fn(|_| async { Ok(json!({})) }));
    for i in 0..WORKERS {
        let worker = g.add(
            format!("worker{i}"),
            node_fn(|ctx| async move {
                if ctx.is_shutdown() {
                    return Ok(json!({})); // nothing to clean up
                }
                for _ in 0..INCREMENTS {
                    ctx.state()
                        .update_with("counter", |v| *v = json!(v.as_i64().unwrap_or(0) + 1));
                    tokio::task::yield_now().await; // let the other workers interleave
                }
                Ok(json!({ "worker": ctx.node_name() }))
            }),
        );
        g.connect(fan >> worker);
    }
    let graph = g.start(fan).build()?;

    let result = graph.run(Task::long_running(json!({}))).await?;
    println!(
        "counter = {} (expected {})",
        result.state["counter"],
        WORKERS as i64 * INCREMENTS
    );
    println!(
        "stop reason: {:?}, messages processed: {}",
        result.metadata.stop_reason, result.metadata.processed
    );
    Ok(())
}
