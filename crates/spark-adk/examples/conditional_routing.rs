//! Conditional routing in standard mode: an equality condition (`on`), an expression
//! (`when`), and a fallback (`otherwise`) that fires only when no other edge of the router
//! fired. Runs a few inputs through one graph and prints which branch handled each.
//!
//! Run with `cargo run -p spark-adk --example conditional_routing`.

use spark_adk::prelude::*;

/// A branch handler: tags the ticket with the branch that handled it.
fn handler(branch: &'static str) -> impl Node {
    node_fn(move |ctx: Context| async move {
        let id = ctx.inputs().content["id"].clone();
        Ok(json!({ "id": id, "handled_by": branch }))
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut g = Graph::builder();
    // The router classifies a ticket; its output is what the edge conditions see.
    let router = g.add(
        "router",
        node_fn(|ctx: Context| async move {
            let ticket = &ctx.inputs().content;
            let text = ticket["text"].as_str().unwrap_or_default().to_lowercase();
            let urgent = text.contains("outage") || text.contains("down");
            let score = ticket["confidence"].as_f64().unwrap_or(0.0);
            Ok(json!({
                "id": ticket["id"],
                "urgent": urgent,
                "score": score,
                "status": if text.is_empty() { "empty" } else { "ok" },
            }))
        }),
    );
    let pager = g.add("pager", handler("pager (urgent)"));
    let auto_reply = g.add("auto_reply", handler("auto-reply (confident)"));
    let human = g.add("human", handler("human review (fallback)"));

    // Equality: the seed's `router.on(urgent=True) >> pager`.
    g.connect(router.on("urgent", true).priority(1) >> pager);
    // Expression over the router's output.
    g.connect(
        router.when("not $.outputs.urgent and $.outputs.score >= 0.8 and $.outputs.status == 'ok'")
            >> auto_reply,
    );
    // Fallback: only when neither edge above fired.
    g.connect(router.otherwise() >> human);
    let graph = g.start(router).build()?;

    let tickets = [
        json!({ "id": 1, "text": "Checkout is DOWN for everyone", "confidence": 0.99 }),
        json!({ "id": 2, "text": "How do I reset my password?", "confidence": 0.93 }),
        json!({ "id": 3, "text": "Strange invoice line", "confidence": 0.41 }),
        json!({ "id": 4, "text": "", "confidence": 0.95 }),
    ];
    for ticket in tickets {
        let result = graph.run_with(ticket).await?;
        println!(
            "ticket {} -> {} (node `{}`)",
            result.content()["id"],
            result.content()["handled_by"].as_str().unwrap_or("nobody"),
            result.output_node().unwrap_or("none"),
        );
    }
    Ok(())
}
