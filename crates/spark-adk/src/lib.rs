//! # Spark for Rust
//!
//! A fast, dependable runtime for agent and workflow graphs. Write nodes (async units of work),
//! wire them with edges (plain or conditional), and run the graph in one of two modes:
//!
//! - **Standard** ([`TaskType::Standard`], the default): one node at a time, following edge
//!   conditions; the output of one node is the input of the next; returns the last output.
//! - **Long-running** ([`TaskType::LongRunning`]): every node is a concurrent worker with a
//!   mailbox; runs until quiescence, a budget or a shutdown. Run it to the end with
//!   [`Graph::run`], or in the background with [`Graph::spawn`] and talk to it through its
//!   [`RunHandle`].
//!
//! ```toml
//! [dependencies]
//! spark-adk = "0.1"   # or, before it is published: { git = "<this repository's URL>" }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! serde = { version = "1", features = ["derive"] }   # only for typed payloads
//! ```
//!
//! # Standard mode: the seed's ETL pipeline
//!
//! Each node's output is the next node's input. [`Graph::run_with`] runs a standard task and
//! returns the last node's output.
//!
//! ```
//! use spark_adk::prelude::*;
//!
//! struct Extract;
//! impl Node for Extract {
//!     async fn process(&self, _ctx: &Context) -> Result<NodeMessage, NodeError> {
//!         Ok(json!({ "data": [1, 2, 3] }).into())
//!     }
//! }
//!
//! struct Transform;
//! impl Node for Transform {
//!     async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
//!         let data = ctx.inputs().content["data"].as_array().cloned().unwrap_or_default();
//!         let scaled: Vec<i64> = data.iter().filter_map(|v| v.as_i64()).map(|n| n * 10).collect();
//!         Ok(json!({ "data": scaled }).into())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut g = Graph::builder();
//! let extract = g.add("extract", Extract);
//! let transform = g.add("transform", Transform);
//! // A closure node: no `Ok::<_, NodeError>` needed.
//! let load = g.add("load", node_fn(|ctx| async move {
//!     let rows = ctx.inputs().content["data"].clone();
//!     Ok(json!({ "loaded": rows }))
//! }));
//! g.connect(extract >> transform >> load);
//! let graph = g.start(extract).build()?; // every wiring problem is reported at once
//!
//! let result = graph.run_default().await?;
//! assert_eq!(result.content()["loaded"], json!([10, 20, 30]));
//! # Ok(()) }
//! ```
//!
//! # Long-running mode: run to the end, or spawn and talk to it
//!
//! A long-running [`Task`] starts every node as a worker. [`Graph::run`] waits until the graph
//! is quiet (no message anywhere), a [`Budget`] runs out or a node asks for a shutdown, and
//! returns every sink output. [`Graph::spawn`] returns at once with a [`RunHandle`]: send
//! messages into any node by name, [`subscribe`](RunHandle::subscribe) to sink outputs, then
//! [`shutdown`](RunHandle::shutdown) and [`wait`](RunHandle::wait) for the result. A spawned
//! run does not stop at quiescence (the handle may still send); dropping the handle stops it.
//! Its first subscriber gets the outputs produced before it (as many as the run keeps), so
//! none is lost to a late `subscribe`;
//! [`sender`](RunHandle::sender) gives a cloneable [`RunSender`] to send while
//! [`finished`](RunHandle::finished) waits. Per-run options go on the task:
//! [`with_sink_retention`](Task::with_sink_retention) (a spawned run keeps the last 1,024 sink
//! outputs for its result by default), [`with_mailbox_capacity`](Task::with_mailbox_capacity),
//! [`with_quiescence`](Task::with_quiescence).
//!
//! ```
//! use spark_adk::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut g = Graph::builder();
//! let price = g.add("price", node_fn(|ctx| async move {
//!     let qty = ctx.inputs().content["qty"].as_u64().unwrap_or(0);
//!     Ok(json!({ "order": ctx.inputs().content["order"], "total": qty * 3 }))
//! }));
//! let graph = g.start(price).build()?;
//!
//! // 1. To the end: quiescence after the task's input is processed, or the budget.
//! let task = Task::long_running(json!({ "order": 1, "qty": 2 })).with_budget(Budget::seconds(5)?);
//! let result = graph.run(task).await?;
//! assert_eq!(result.metadata.stop_reason, StopReason::Completed);
//! assert_eq!(result.content()["total"], 6);
//!
//! // 2. In the background, with a handle; the result keeps only the last 100 outputs.
//! let task = Task::long_running(json!({})).with_sink_retention(SinkRetention::Last(100));
//! let mut handle = graph.spawn(task)?;
//! let mut outputs = handle.subscribe(); // the first one also gets what came before it
//! let sender = handle.sender(); // cloneable: send from anywhere while the handle waits
//! sender.send("price", json!({ "order": 7, "qty": 5 })).await?;
//! let total = loop {
//!     let out = outputs.recv().await?;
//!     if out.message.content["order"] == 7 {
//!         break out.message.content["total"].clone();
//!     }
//! };
//! assert_eq!(total, 15);
//! sender.shutdown();
//! let result = handle.finished().await?; // by reference: cancel safe in a `select!`
//! assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
//! # Ok(()) }
//! ```
//!
//! # Writing nodes
//!
//! - A type implementing [`Node`] gets `&Context`: its `async fn process` may borrow.
//! - [`node_fn`] turns a closure into a node. The closure gets the [`Context`] by value (a cheap
//!   clone) because its future must own what it uses; it may return `Ok(value)` without type
//!   annotations (see [`IntoNodeResult`]), and `?` converts errors into [`NodeError`]. To share
//!   state such as an `Arc` between activations, clone it into each future: see [`node_fn`].
//! - Typed payloads: [`NodeMessage::from_serde`] turns your `Serialize` type into a message, and
//!   [`Context::input_as`] reads the input as your `Deserialize` type; a mismatch is a
//!   [`PayloadError`] naming the node, the type and the field (`lines[1].price`).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use spark_adk::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Order { qty: u32, unit_price: f64 }
//! #[derive(Serialize)]
//! struct Invoice { total: f64 }
//!
//! let invoice = node_fn(|ctx| async move {
//!     let order: Order = ctx.input_as()?;
//!     Ok(NodeMessage::from_serde(&Invoice { total: f64::from(order.qty) * order.unit_price })?)
//! });
//! # let _ = invoice;
//! ```
//!
//! # Where things are, most used first
//!
//! - **Build a graph**: [`Graph::builder`] → [`GraphBuilder`] (`add`, `connect`, `edge`,
//!   `start`, `build`); [`NodeRef`] and its conditions (`on`, `when`, `otherwise`, `>>`);
//!   [`EdgeCondition`]; build problems: [`BuildErrors`], [`BuildError`]. Drawing:
//!   [`Graph::to_mermaid`], [`Graph::to_dot`].
//! - **Write nodes**: [`Node`], [`node_fn`], [`Context`], [`NodeMessage`], [`NodeError`],
//!   [`PayloadError`], [`GraphState`] (shared key/value state), [`SubgraphNode`] (a graph as a
//!   node), [`json!`] and [`Value`] (payloads are JSON; the whole [`serde_json`] is re-exported).
//! - **Node policies and parallel map**: [`policy`] (retry with backoff, per-node timeout, a
//!   limiter shared by several nodes: `node.with_retry(..).with_timeout(..)`), [`MapNode`] (run a
//!   node or graph over each item of a list, at most N at once); in long-running mode a node may
//!   process up to N messages at once ([`GraphBuilder::node_concurrency`], default 1).
//! - **Run**: [`Task`], [`TaskType`], [`Budget`]; results: [`RunResult`], [`RunMetadata`],
//!   [`StopReason`], [`SinkOutput`]; failures: [`RunError`] (every variant names the node or
//!   edge).
//! - **Long-running runs**: [`Graph::spawn`] → [`RunHandle`], [`RunSender`] ([`HandleSendError`]
//!   hands an undelivered message back); envelopes: [`ChannelMessage`], [`AckHook`]; output retention:
//!   [`SinkRetention`].
//! - **Observe**: [`Graph::subscribe_events`] → [`Event`], [`EventKind`]; `tracing` spans
//!   `spark.run` and `spark.node` (node spans at `DEBUG`); with the `metrics` cargo feature,
//!   `metrics` (counters, gauges, histograms per node and run: `MetricsExporter`).
//! - **Lower level**: the executors [`SequentialExecutor`] and [`LongRunningExecutor`] (run a
//!   [`Topology`] directly, with executor options), [`DynNode`], [`RunScope`], and the member
//!   crates under [`crates`].
//!
//! [`prelude`] brings the usual names into scope; [`graphs`] and [`nodes`] mirror the Python
//! original's module paths (`spark_adk::graphs::tasks::Task`, `spark_adk::nodes::types::NodeMessage`).
//!
//! **Layering**: the facade depends on every member crate (`spark-adk-core`, `spark-adk-edges`,
//! `spark-adk-sequential`, `spark-adk-mailbox`, `spark-adk-policy`, `spark-adk-durable`,
//! `spark-adk-sqlite` with the `sqlite` feature (default), `spark-adk-postgres` with the
//! `postgres` feature, and `spark-adk-metrics` with the `metrics` feature); nothing depends on it
//! except examples, tests and benches. It holds no execution logic of its own beyond dispatch,
//! the subgraph node and the map node.

mod durable_run;
mod graph;
mod map;
mod stream;

pub use graph::{Graph, GraphBuilder};
pub use map::{MapError, MapNode, OnItemError};
pub use stream::RunStream;

/// Node policies (retry, timeout, shared limiter): the `spark-adk-policy` crate.
pub use spark_adk_policy as policy;
pub use spark_adk_policy::{
    find_cause, Limiter, NodeExt, Policies, PolicyError, RetryError, RetryPolicy, TimeoutError,
};

pub use spark_adk_core::{
    json, node_fn, AckHook, Budget, BudgetError, BudgetKind, CancellationToken, ChannelMessage,
    Context, DynNode, Event, EventBus, EventKind, GraphState, Map, Node, NodeCount, NodeCounts,
    NodeError, NodeMessage, NodeResult, RunCounts, RunError, RunMetadata, RunResult, RunScope,
    SinkOutput, SinkOutputs, SinkRetention, StopReason, StreamEvent, StreamMode, StreamOptions,
    Task, TaskType, Value,
};
pub use spark_adk_edges::{
    BuildError, BuildErrors, Chain, EdgeCondition, Endpoint, ExprError, Expression, NodeRef,
    Topology, DEFAULT_MAILBOX_CAPACITY, DEFAULT_STEP_LIMIT,
};
pub use spark_adk_mailbox::{channel, HandleSendError, LongRunningExecutor, RunHandle, RunSender};
pub use spark_adk_sequential::{SequentialExecutor, SubgraphNode, DEFAULT_SUBGRAPH_DEPTH_LIMIT};

/// Durable runs (checkpoints, resume, interrupts): start one with [`Graph::run_durable`], go on
/// with [`Graph::resume`] / [`Graph::resume_with`]. The whole `spark-adk-durable` API (records,
/// replay, the store trait, the in-memory store, the conformance suite) is in [`durable`].
pub use spark_adk_core::{Interrupt, InterruptInfo};
pub use spark_adk_durable::{Durability, DurableError, MemoryStore, RunId, Store, StoreExt};
/// The PostgreSQL store (the `postgres` feature).
#[cfg(feature = "postgres")]
pub use spark_adk_postgres::PostgresStore;
pub use spark_adk_sequential::{DurableOptions, DurableRunError};
/// The embedded SQLite store (the `sqlite` feature, on by default).
#[cfg(feature = "sqlite")]
pub use spark_adk_sqlite::SqliteStore;

/// Durable runs: the `spark-adk-durable` crate (log records, replay, the [`Store`] trait,
/// [`MemoryStore`], the log writer, the store conformance suite), plus the standard executor's
/// [`DurableOptions`], [`DurableRunError`] and topology fingerprint helpers. Rules:
/// docs/runtime-semantics.md, "Durable runs".
pub mod durable {
    pub use spark_adk_durable::*;
    pub use spark_adk_sequential::{fingerprint, topology_shape, DurableOptions, DurableRunError};
}

/// Run events as `metrics` counters, gauges and histograms (activations, failures, retries and
/// durations per node; runs by mode and stop reason): the `spark-adk-metrics` crate, with the
/// `metrics` cargo feature. Start with `metrics::MetricsExporter::attach(graph.events(), "name")`.
#[cfg(feature = "metrics")]
pub use spark_adk_metrics as metrics;

/// Payloads are `serde_json` values; re-exported so that `serde_json` needs no entry in your
/// `Cargo.toml` (add `serde` with its `derive` feature for your own typed payloads).
pub use serde_json;
pub use spark_adk_core::{IntoNodeResult, PayloadError};

/// The member crates, for users who need what the facade does not re-export.
pub mod crates {
    pub use spark_adk_core as core;
    pub use spark_adk_durable as durable;
    pub use spark_adk_edges as edges;
    pub use spark_adk_mailbox as mailbox;
    #[cfg(feature = "metrics")]
    pub use spark_adk_metrics as metrics;
    pub use spark_adk_policy as policy;
    #[cfg(feature = "postgres")]
    pub use spark_adk_postgres as postgres;
    pub use spark_adk_sequential as sequential;
    #[cfg(feature = "sqlite")]
    pub use spark_adk_sqlite as sqlite;
}

/// Everything a graph author usually needs: `use spark_adk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        json, node_fn, Budget, ChannelMessage, Context, EdgeCondition, Event, EventKind, Graph,
        GraphBuilder, GraphState, Limiter, MapNode, Node, NodeError, NodeExt, NodeMessage, NodeRef,
        OnItemError, RetryPolicy, RunError, RunHandle, RunResult, RunSender, SinkRetention,
        StopReason, StreamEvent, StreamOptions, SubgraphNode, Task, TaskType, Value,
    };
}

/// Module paths that mirror the Python original's `spark.graphs`.
pub mod graphs {
    pub use crate::{Graph, GraphBuilder, SubgraphNode};

    /// Mirrors `spark.graphs.tasks`.
    pub mod tasks {
        pub use spark_adk_core::{Budget, BudgetError, Task, TaskType};
    }
}

/// Module paths that mirror the Python original's `spark.nodes`.
pub mod nodes {
    pub use spark_adk_core::{node_fn, Context, Node, NodeError};

    /// Mirrors `spark.nodes.types`.
    pub mod types {
        pub use spark_adk_core::NodeMessage;
    }

    /// Mirrors `spark.nodes.channels`.
    pub mod channels {
        pub use spark_adk_core::{AckHook, ChannelMessage};
    }
}

/// The crate README's code blocks (its quick start), compiled and run as doctests. The README
/// is inside this package, so the doctests also run from the published `.crate`.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
