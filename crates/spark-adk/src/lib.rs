//! # Spark for Rust
//!
//! A fast, dependable runtime for agent and workflow graphs. Write nodes (async units of work),
//! wire them with edges (plain or conditional), and run the graph in one of two modes:
//!
//! - **Standard** ([`TaskType::Standard`], the default): one node at a time, following edge
//!   conditions; the output of one node is the input of the next; returns the last output.
//! - **Long-running** ([`TaskType::LongRunning`]): every node is a concurrent worker with a
//!   mailbox; runs until quiescence, a budget, or a shutdown.
//!
//! This crate is the facade: it re-exports the member crates and adds [`Graph`] (which picks the
//! executor from the task type), [`SubgraphNode`], the [`prelude`] and module paths that mirror
//! the Python original (`spark_adk::graphs::tasks::Task`, `spark_adk::nodes::types::NodeMessage`, ...).
//!
//! # Example: the seed's ETL pipeline
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
//!         let doubled: Vec<i64> = data.iter().filter_map(|v| v.as_i64()).map(|n| n * 10).collect();
//!         Ok(json!({ "data": doubled }).into())
//!     }
//! }
//!
//! struct Load;
//! impl Node for Load {
//!     async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
//!         let n = ctx.inputs().content["data"].as_array().map_or(0, Vec::len);
//!         Ok(json!({ "loaded": n }).into())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut g = Graph::builder();
//! let extract = g.add("extract", Extract);
//! let transform = g.add("transform", Transform);
//! let load = g.add("load", Load);
//! g.connect(extract >> transform >> load);
//! let graph = g.start(extract).build()?;
//!
//! let result = graph.run_default().await?;
//! assert_eq!(result.content()["loaded"], 3);
//! # Ok(()) }
//! ```
//!
//! **Layering**: the facade depends on every member crate (`spark-adk-core`, `spark-adk-edges`,
//! `spark-adk-sequential`, `spark-adk-mailbox`); nothing depends on it except examples, tests and
//! benches. It holds no execution logic of its own beyond dispatch and the subgraph node.

mod graph;

pub use graph::{Graph, GraphBuilder};

pub use spark_adk_core::{
    json, node_fn, AckHook, Budget, BudgetError, BudgetKind, CancellationToken, ChannelMessage,
    Context, DynNode, Event, EventBus, EventKind, GraphState, Map, Node, NodeCount, NodeCounts,
    NodeError, NodeMessage, NodeResult, RunCounts, RunError, RunMetadata, RunResult, RunScope,
    SinkOutput, SinkOutputs, SinkRetention, StopReason, Task, TaskType, Value,
};
pub use spark_adk_edges::{
    BuildError, BuildErrors, Chain, EdgeCondition, Endpoint, ExprError, Expression, NodeRef,
    Topology, DEFAULT_MAILBOX_CAPACITY, DEFAULT_STEP_LIMIT,
};
pub use spark_adk_mailbox::{channel, HandleSendError, LongRunningExecutor, RunHandle};
pub use spark_adk_sequential::{SequentialExecutor, SubgraphNode, DEFAULT_SUBGRAPH_DEPTH_LIMIT};

/// The member crates, for users who need what the facade does not re-export.
pub mod crates {
    pub use spark_adk_core as core;
    pub use spark_adk_edges as edges;
    pub use spark_adk_mailbox as mailbox;
    pub use spark_adk_sequential as sequential;
}

/// Everything a graph author usually needs: `use spark_adk::prelude::*;`.
pub mod prelude {
    pub use crate::{
        json, node_fn, Budget, ChannelMessage, Context, EdgeCondition, Event, EventKind, Graph,
        GraphBuilder, GraphState, Node, NodeError, NodeMessage, NodeRef, RunError, RunHandle,
        RunResult, StopReason, SubgraphNode, Task, TaskType, Value,
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

/// The README's code blocks, compiled and run as doctests so the quick start stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
