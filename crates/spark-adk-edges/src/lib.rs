//! How nodes are wired: edge conditions, the graph builder, and routing.
//!
//! This crate answers "which edges fire for this output?" for both executors. It holds:
//!
//! - the condition forms of an edge ([`EdgeCondition`]): always, equality (`a.on("k", v)`),
//!   expressions (`a.when("$.outputs.score >= 0.8")`, see [`Expression`]), predicate closures,
//!   and the fallback edge (`a.otherwise()`);
//! - the wiring syntax (`a >> b >> c`, [`Chain`]) and the [`GraphBuilder`] that validates a graph,
//!   reporting every problem at once ([`BuildErrors`]);
//! - the compiled [`Topology`] with its [`Topology::route`]: every matching edge fires, in
//!   priority order (higher first), then in the order the edges were added; fallback edges fire
//!   only when no other edge did.
//!
//! Everything here is pure and synchronous.
//!
//! **Layering**: depends on `spark-adk-core`, serde_json and thiserror only; never on an executor and
//! never on a tokio runtime feature (checked by the workspace's layering test).
//!
//! # Example
//!
//! ```
//! use spark_adk_edges::GraphBuilder;
//! use spark_adk_core::{node_fn, NodeError, NodeMessage};
//! use serde_json::json;
//!
//! let noop = || node_fn(|_| async { Ok::<_, NodeError>(json!({})) });
//! let mut g = GraphBuilder::new();
//! let router = g.add("router", noop());
//! let fast = g.add("fast", noop());
//! let slow = g.add("slow", noop());
//! g.connect(router.when("$.outputs.score >= 0.8") >> fast);
//! g.connect(router.otherwise() >> slow);
//! let topology = g.start(router).build()?;
//!
//! let mut fired = Vec::new();
//! topology.route(0, &NodeMessage::from(json!({ "score": 0.5 })), |to| fired.push(to)).unwrap();
//! assert_eq!(fired, vec![2]); // only the fallback fired
//! # Ok::<(), spark_adk_edges::BuildErrors>(())
//! ```

mod builder;
mod chain;
mod condition;
pub mod expr;
mod picture;
mod topology;

pub use builder::{
    BuildError, BuildErrors, GraphBuilder, DEFAULT_MAILBOX_CAPACITY, DEFAULT_STEP_LIMIT,
};
pub use chain::{Chain, Endpoint, NodeRef};
pub use condition::{EdgeCondition, PredicateFn};
pub use expr::{json_eq, lookup_path, truthy, ExprError, Expression, Position};
pub use topology::{Edge, NodeEntry, Topology};
