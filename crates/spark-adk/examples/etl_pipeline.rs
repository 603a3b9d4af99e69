//! The seed's ETL pipeline in standard mode: `Extract >> Transform >> Load`, one node at a
//! time, each node's output the next node's input; the last node's output is the result.
//!
//! Run with `cargo run -p spark-adk --example etl_pipeline`.

use std::sync::Mutex;

use spark_adk::prelude::*;

/// Reads records from a source (here: a fixed list standing in for a database query).
struct ExtractNode {
    source: Vec<Value>,
}

impl Node for ExtractNode {
    async fn process(&self, _ctx: &Context) -> Result<NodeMessage, NodeError> {
        Ok(json!({ "data": self.source }).into())
    }
}

/// Normalises every record: trims and lower-cases the name, converts the amount to cents.
struct TransformNode;

impl Node for TransformNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let data = ctx.inputs().content["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let transformed: Vec<Value> = data
            .iter()
            .map(|item| {
                let name = item["name"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_lowercase();
                let cents = (item["amount"].as_f64().unwrap_or(0.0) * 100.0).round();
                json!({ "name": name, "cents": cents })
            })
            .collect();
        Ok(json!({ "data": transformed }).into())
    }
}

/// Writes the records to a destination (here: an in-memory "warehouse").
struct LoadNode {
    warehouse: Mutex<Vec<Value>>,
}

impl Node for LoadNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let data = ctx.inputs().content["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let loaded = data.len();
        self.warehouse
            .lock()
            .map_err(|_| NodeError::new("the warehouse lock is poisoned"))?
            .extend(data);
        Ok(json!({ "loaded": loaded }).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let extract = ExtractNode {
        source: vec![
            json!({ "name": "  Ada ", "amount": 12.5 }),
            json!({ "name": "Grace", "amount": 3.99 }),
            json!({ "name": "LINUS", "amount": 100 }),
        ],
    };
    let load = LoadNode {
        warehouse: Mutex::new(Vec::new()),
    };

    let mut g = Graph::builder();
    let extract = g.add("extract", extract);
    let transform = g.add("transform", TransformNode);
    let load = g.add("load", load);
    g.connect(extract >> transform >> load);
    let graph = g.start(extract).build()?;

    // Standard mode is the default: `run_default()` is the seed's `await graph.run()`.
    let result = graph.run_default().await?;
    println!("Loaded {} records", result.content()["loaded"]);
    println!(
        "({} activations in {:?})",
        result.metadata.steps, result.metadata.elapsed
    );
    Ok(())
}
