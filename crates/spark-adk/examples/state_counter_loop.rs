//! A loop driven by graph state, in standard mode: `step` increments a counter in the run's
//! graph state and loops back to itself until the counter reaches the target.
//!
//! Run with `cargo run -p spark-adk --example state_counter_loop`.

use spark_adk::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut g = Graph::builder();
    let step = g.add(
        "step",
        node_fn(|ctx| async move {
            let target = ctx
                .state()
                .get("target")
                .and_then(|v| v.as_i64())
                .unwrap_or(3);
            let count = ctx.state().update_with("count", |v| {
                let next = v.as_i64().unwrap_or(0) + 1;
                *v = json!(next);
                next
            });
            Ok(json!({ "count": count, "done": count >= target }))
        }),
    );
    let report = g.add(
        "report",
        node_fn(|ctx| async move {
            let count = ctx.state().get("count").unwrap_or_default();
            Ok(json!({ "message": format!("looped {count} times") }))
        }),
    );
    g.connect(step.on("done", false) >> step);
    g.connect(step.on("done", true) >> report);
    g.initial_state(
        json!({ "target": 5 })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let graph = g.start(step).build()?;

    let result = graph.run_default().await?;
    println!("{}", result.content()["message"]);
    println!("final state: {}", Value::Object(result.state.clone()));
    println!(
        "activations of `step`: {:?}",
        result.metadata.processed_by("step")
    );
    Ok(())
}
