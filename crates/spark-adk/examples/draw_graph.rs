//! Prints the Mermaid text of the seed's autonomous-agent graph (sensor -> analyzer ->
//! actuator -> sensor, with `analyzer.on("anomaly", true)`), drawn from its actual edges.
//! Paste the output into any Mermaid renderer; pass `--dot` for Graphviz instead.
//!
//! Run with `cargo run -p spark-adk --example draw_graph`.

use spark_adk::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let noop = || node_fn(|ctx| async move { Ok(ctx.inputs().clone()) });
    let mut g = Graph::builder();
    let sensor = g.add("sensor", noop());
    let analyzer = g.add("analyzer", noop());
    let actuator = g.add("actuator", noop());
    g.connect(sensor >> analyzer);
    g.connect(analyzer.on("anomaly", true) >> actuator);
    g.connect(actuator >> sensor);
    let graph = g.start(sensor).build()?;

    if std::env::args().any(|a| a == "--dot") {
        print!("{}", graph.to_dot());
    } else {
        print!("{}", graph.to_mermaid());
    }
    Ok(())
}
