//! The seed's autonomous agent in long-running mode: a sensor, an analyzer and an actuator run
//! as concurrent workers, each with its own mailbox.
//!
//! ```text
//! sensor >> analyzer
//! analyzer.on("anomaly", true) >> actuator
//! actuator >> sensor                      (loop back)
//! analyzer.otherwise() >> sensor          (no anomaly: read again)
//! ```
//!
//! The seed's graph stops looping as soon as a reading is normal (the analyzer's output then
//! matches no edge, and the run becomes quiescent); the `otherwise` edge keeps the agent
//! reading until its time budget (0.2 s here, so the example ends quickly) stops it gracefully:
//! each worker finishes its current message, then `process` is called once more with
//! `ctx.is_shutdown()` so it can clean up (the seed's
//! `if context.inputs.metadata.get('shutdown')`).
//!
//! Run with `cargo run -p spark-adk --example autonomous_agent`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spark_adk::prelude::*;

/// Reads the (simulated) sensor every 5 ms.
#[derive(Default)]
struct SensorNode {
    readings: AtomicU64,
}

impl Node for SensorNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if ctx.is_shutdown() {
            let n = self.readings.load(Ordering::Relaxed);
            println!("sensor:   shutting down after {n} readings");
            return Ok(json!({ "shutdown": true }).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let n = self.readings.fetch_add(1, Ordering::Relaxed);
        // A deterministic "temperature" between 15 and 34 with occasional spikes.
        let data = 15 + (n * 7919 % 20);
        Ok(json!({ "sensor_data": data }).into())
    }
}

/// Flags readings above 32 as anomalies.
struct AnalyzerNode;

impl Node for AnalyzerNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if ctx.is_shutdown() {
            println!("analyzer: shutting down");
            return Ok(json!({ "shutdown": true }).into());
        }
        let Some(data) = ctx.inputs().content["sensor_data"].as_u64() else {
            return Ok(json!({ "continue": true }).into());
        };
        Ok(json!({ "anomaly": data > 32, "data": data }).into())
    }
}

/// Reacts to anomalies.
#[derive(Default)]
struct ActuatorNode {
    alerts: AtomicU64,
}

impl Node for ActuatorNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if ctx.is_shutdown() {
            let n = self.alerts.load(Ordering::Relaxed);
            println!("actuator: shutting down after {n} alerts");
            return Ok(json!({ "shutdown": true }).into());
        }
        if ctx.inputs().content["anomaly"] == true {
            self.alerts.fetch_add(1, Ordering::Relaxed);
            println!("actuator: ALERT, reading {}", ctx.inputs().content["data"]);
        }
        Ok(json!({ "continue": true }).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut g = Graph::builder();
    let sensor = g.add("sensor", SensorNode::default());
    let analyzer = g.add("analyzer", AnalyzerNode);
    let actuator = g.add("actuator", ActuatorNode::default());
    g.connect(sensor >> analyzer);
    g.connect(analyzer.on("anomaly", true) >> actuator);
    g.connect(actuator >> sensor);
    g.connect(analyzer.otherwise() >> sensor);
    let graph = g.start(sensor).build()?;

    let task = Task::long_running(json!({})).with_budget(Budget::seconds(0.2)?);
    let result = graph.run(task).await?;

    let meta = &result.metadata;
    println!();
    println!("stop reason:  {:?}", meta.stop_reason);
    println!("elapsed:      {:?}", meta.elapsed);
    println!("processed per node:");
    for count in &meta.per_node {
        println!("  {:<9} {}", count.node, count.processed);
    }
    println!(
        "messages:     {} accepted = {} processed + {} unprocessed",
        meta.accepted, meta.processed, meta.unprocessed
    );
    println!(
        "result:       {} (a cycle stopped by its budget has no sink output)",
        result.content()
    );
    Ok(())
}
