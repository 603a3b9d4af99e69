//! The seed's sensor -> analyzer -> actuator agent (shared by the `distributed_pipeline`
//! example and the crate's tests: every process builds the same graph from the same code).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use spark_adk_core::{node_fn, NodeError};
use spark_adk_edges::{GraphBuilder, Topology};

/// The agent: the sensor reads `readings` values (one per activation), the analyzer flags
/// values above 70 (`analyzer.on(anomaly=True) >> actuator` as in the seed; without an anomaly
/// it asks the sensor for the next reading), the actuator reacts and loops back to the sensor
/// (`actuator >> sensor`). After the last reading the sensor's output matches no edge: it is the
/// run's result. `analyzer_delay` makes the analyzer slow.
pub fn agent(
    readings: u64,
    analyzer_delay: Duration,
) -> Result<Arc<Topology>, spark_adk_edges::BuildErrors> {
    let mut g = GraphBuilder::new();
    let sensor = g.add(
        "sensor",
        node_fn(move |ctx| async move {
            let i = ctx.inputs().content["next"].as_u64().unwrap_or(0);
            if i >= readings {
                return Ok::<_, NodeError>(json!({ "readings_done": i }));
            }
            // A deterministic "sensor": a value in 0..100 for reading i.
            let value = (i * 37 + 11) % 100;
            Ok(json!({ "sensor_data": value, "reading": i }))
        }),
    );
    let analyzer = g.add(
        "analyzer",
        node_fn(move |ctx| async move {
            if !analyzer_delay.is_zero() {
                tokio::time::sleep(analyzer_delay).await;
            }
            let c = ctx.inputs().content.clone();
            let value = c["sensor_data"].as_u64().unwrap_or(0);
            Ok::<_, NodeError>(json!({
                "anomaly": value > 70,
                "data": value,
                "reading": c["reading"].clone(),
                "next": c["reading"].as_u64().unwrap_or(0) + 1,
            }))
        }),
    );
    let actuator = g.add(
        "actuator",
        node_fn(|ctx| async move {
            let next = ctx.inputs().content["reading"].as_u64().unwrap_or(0) + 1;
            Ok::<_, NodeError>(json!({ "continue": true, "next": next, "alerted": ctx.inputs().content["data"].clone() }))
        }),
    );
    g.connect(sensor.when("$.outputs.sensor_data != null") >> analyzer);
    g.connect(analyzer.on("anomaly", true) >> actuator);
    g.connect(analyzer.otherwise() >> sensor);
    g.connect(actuator >> sensor);
    g.start(sensor);
    g.build().map(Arc::new)
}
