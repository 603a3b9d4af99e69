//! The seed's ETL pipeline in standard mode: `Extract >> Transform >> Load`, one node at a
//! time, each node's output the next node's input; the last node's output is the result.
//! Every node prints what it received and what it passes on, so you can watch the records move.
//!
//! The payloads are typed: each node reads its input with `ctx.input_as::<T>()` and returns
//! `NodeMessage::from_serde(&value)`; a record of the wrong shape fails with an error naming the
//! node and the field.
//!
//! Run with `cargo run -p spark-adk --example etl_pipeline`.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use spark_adk::prelude::*;

/// A record as the source has it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RawRecord {
    name: String,
    amount: f64,
}

/// A record as the warehouse wants it: a clean name and an amount in cents.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CleanRecord {
    name: String,
    cents: i64,
}

/// What travels between the nodes: `{ "data": [...] }`.
#[derive(Serialize, Deserialize)]
struct Batch<T> {
    data: Vec<T>,
}

/// Reads records from a source (here: a fixed list standing in for a database query).
struct ExtractNode {
    source: Vec<RawRecord>,
}

impl Node for ExtractNode {
    async fn process(&self, _ctx: &Context) -> Result<NodeMessage, NodeError> {
        println!(
            "extract:   read {} records from the source",
            self.source.len()
        );
        for r in &self.source {
            println!("             {:?} {:.2}", r.name, r.amount);
        }
        let batch = Batch {
            data: self.source.clone(),
        };
        Ok(NodeMessage::from_serde(&batch)?)
    }
}

/// Normalises every record: trims and lower-cases the name, converts the amount to cents.
struct TransformNode;

impl Node for TransformNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let batch: Batch<RawRecord> = ctx.input_as()?;
        println!("transform: got {} records", batch.data.len());
        let clean: Vec<CleanRecord> = batch
            .data
            .into_iter()
            .map(|r| {
                let out = CleanRecord {
                    name: r.name.trim().to_lowercase(),
                    // Cents fit an i64 for any amount a ledger holds; `as` saturates otherwise.
                    cents: (r.amount * 100.0).round() as i64,
                };
                println!(
                    "             {:?} {:.2} -> {:?} {} cents",
                    r.name, r.amount, out.name, out.cents
                );
                out
            })
            .collect();
        Ok(NodeMessage::from_serde(&Batch { data: clean })?)
    }
}

/// Writes the records to a destination (here: an in-memory "warehouse").
struct LoadNode {
    warehouse: Mutex<Vec<CleanRecord>>,
}

impl Node for LoadNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let batch: Batch<CleanRecord> = ctx.input_as()?;
        let loaded = batch.data.len();
        let total: i64 = batch.data.iter().map(|r| r.cents).sum();
        self.warehouse
            .lock()
            .map_err(|_| NodeError::new("the warehouse lock is poisoned"))?
            .extend(batch.data);
        println!("load:      wrote {loaded} records ({total} cents) to the warehouse");
        Ok(json!({ "loaded": loaded, "total_cents": total }).into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let raw = |name: &str, amount: f64| RawRecord {
        name: name.to_owned(),
        amount,
    };
    let extract = ExtractNode {
        source: vec![raw("  Ada ", 12.5), raw("Grace", 3.99), raw("LINUS", 100.0)],
    };

    let mut g = Graph::builder();
    let extract = g.add("extract", extract);
    let transform = g.add("transform", TransformNode);
    let load = g.add(
        "load",
        LoadNode {
            warehouse: Mutex::new(Vec::new()),
        },
    );
    g.connect(extract >> transform >> load);
    let graph = g.start(extract).build()?;

    // Standard mode is the default: `run_default()` is the seed's `await graph.run()`.
    let result = graph.run_default().await?;
    println!(
        "result:    {} (from `{}`, {} activations in {:?})",
        result.content(),
        result.output_node().unwrap_or("?"),
        result.metadata.steps,
        result.metadata.elapsed
    );
    Ok(())
}
