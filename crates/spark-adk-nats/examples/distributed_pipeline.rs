//! The seed's sensor -> analyzer -> actuator agent with the analyzer on a second process.
//!
//! ```text
//! nats-server -js                                            # 1. the broker (JetStream on)
//! cargo run -p spark-adk-nats --example distributed_pipeline -- worker demo       # 2. analyzer
//! cargo run -p spark-adk-nats --example distributed_pipeline -- coordinator demo  # 3. the run
//! ```
//!
//! Environment: `NATS_URL` (default `127.0.0.1:4222`), `READINGS` (default 20),
//! `ANALYZER_DELAY_MS` (default 0).

#[path = "pipeline/graph.rs"]
mod graph;

use std::time::Duration;

use spark_adk_core::{Budget, Task};
use spark_adk_nats::{connect, DistributedGraph, Options, Serve};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_default();
    let run_id = args.next().unwrap_or_else(|| "demo".to_owned());
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned());
    let topology = graph::agent(
        env_u64("READINGS", 20),
        Duration::from_millis(env_u64("ANALYZER_DELAY_MS", 0)),
    )?;
    let client = connect(&url, Duration::from_secs(10)).await?;
    let options = Options {
        ack_wait: Duration::from_millis(env_u64("ACK_WAIT_MS", 5000)),
        ..Options::default()
    };
    let graph = DistributedGraph::new(client, topology, &run_id)?.with_options(options);
    match role.as_str() {
        "worker" => {
            // Serves the analyzer until the coordinator stops the run.
            let summary = graph.serve(Serve::nodes(["analyzer"])).await?;
            println!(
                "worker: analyzer processed {} messages, {} shutdown delivery",
                summary.processed, summary.shutdown_deliveries
            );
        }
        "coordinator" => {
            // The seed's task: long-running, at most 300 s; ends at quiescence.
            let task =
                Task::long_running(serde_json::json!({})).with_budget(Budget::seconds(300.0)?);
            let result = graph
                .run(task, Serve::nodes(["sensor", "actuator"]))
                .await?;
            let m = &result.metadata;
            println!("result: {}", result.content());
            println!(
                "stop: {:?}; accepted {} = processed {} + unprocessed {}",
                m.stop_reason, m.accepted, m.processed, m.unprocessed
            );
            for c in m.per_node.iter() {
                println!("  {}: {} activations", c.node, c.processed);
            }
        }
        _ => {
            eprintln!("usage: distributed_pipeline (worker|coordinator) [RUN_ID]");
            std::process::exit(2);
        }
    }
    Ok(())
}
