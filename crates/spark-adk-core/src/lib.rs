//! Core types of Spark for Rust.
//!
//! This crate holds what every other crate of the workspace shares: the messages that travel
//! between nodes ([`NodeMessage`], [`ChannelMessage`]), the description of a run ([`Task`],
//! [`TaskType`], [`Budget`]), the [`Node`] trait with its per-activation [`Context`], the run's
//! shared bookkeeping ([`RunScope`]), the result of a run ([`RunResult`]) and the typed errors
//! ([`NodeError`], [`RunError`]).
//!
//! **Layering**: `spark-adk-core` depends only on serde, serde_json, serde_path_to_error (field
//! paths in [`PayloadError`]), thiserror, tokio's `sync` and `time` features (no runtime: no
//! `rt`, no `net`) and tokio-util's `CancellationToken`. It must never depend on another
//! `spark-adk-*` crate, and never on a tokio runtime feature; the workspace's
//! layering test (`crates/spark-adk/tests/layering.rs`) checks this with `cargo tree`.
//!
//! # Example
//!
//! ```
//! use spark_adk_core::{node_fn, Budget, NodeMessage, Task, TaskType};
//! use serde_json::json;
//!
//! // A node written as a closure: it reads its input and returns a new message.
//! let double = node_fn(|ctx| async move {
//!     let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
//!     Ok(json!({ "n": n * 2 }))
//! });
//! # let _ = double;
//!
//! // A long-running task with a 60 second budget.
//! let task = Task::long_running(json!({ "query": "start" }))
//!     .with_budget(Budget::seconds(60)?);
//! assert_eq!(task.task_type, TaskType::LongRunning);
//! # Ok::<(), spark_adk_core::BudgetError>(())
//! ```

mod budget;
mod context;
mod error;
mod events;
mod message;
mod node;
pub mod panic;
mod result;
mod state;
mod stream;
mod task;

pub use budget::{Budget, BudgetError, BudgetKind};
pub use context::{Context, RunScope};
pub use error::{Interrupt, NodeError, RunCounts, RunError};
pub use events::{Event, EventBus, EventKind};
pub use message::{AckHook, ChannelMessage, NodeMessage, PayloadError};
pub use node::{node_fn, BoxFuture, DynNode, FnNode, IntoNodeResult, Node, NodeResult};
pub use result::{
    InterruptInfo, NodeCount, NodeCounts, RunMetadata, RunResult, SinkOutput, SinkOutputs,
    SinkRetention, StopReason,
};
pub use state::{GraphState, StateBackend, StateWrite};
pub use stream::{
    stream_channel, StreamEvent, StreamMode, StreamOptions, StreamReceiver, StreamSender,
};
pub use task::{Task, TaskType};

/// Re-exported so users can cancel and observe cancellation without naming tokio-util.
pub use tokio_util::sync::CancellationToken;

/// Re-exported JSON types: payloads are `serde_json` values.
pub use serde_json::{json, Map, Value};
