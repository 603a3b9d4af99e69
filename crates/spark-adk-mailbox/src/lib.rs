//! The long-running runtime of Spark for Rust: mailboxes, channels, workers and run handles.
//!
//! In long-running mode every node of a graph is a concurrent worker (a tokio task) with its
//! own bounded mailbox. The task input goes into the start node's mailbox; a worker takes one
//! message at a time, FIFO (a node given a concurrency of `n` has `n` workers on its mailbox,
//! see `lanes.rs`), calls `process`, evaluates its edges (with `spark-adk-edges`) and sends
//! the output to every matching target's mailbox. A full mailbox makes the sender wait
//! (backpressure): nothing is ever dropped silently. Per sender→receiver pair, messages arrive
//! in send order.
//!
//! A run ends at the first of: quiescence (detected exactly by an in-flight counter, no
//! polling), the time budget, the token budget, a shutdown request, a node error, or a
//! deadlock of full mailboxes on a cycle. Every graceful end lets each worker finish its
//! in-flight message within the task's grace period (`Task::with_grace`; what still runs then
//! is dropped and counted) and then calls `process` once more with
//! `metadata["shutdown"] == true`. The result (and every error) counts messages accepted,
//! processed and unprocessed; each unprocessed message is counted where it ends, so
//! `accepted == processed + unprocessed` is a check, not a computation.
//!
//! Module map: `executor` (start, timekeeper, driver), `worker` (a message's path), `lanes`
//! (the workers of a node with a concurrency above 1),
//! `activation` and `catch` (guarded calls of user code), `mailbox` / `mailboxes` / `blocked` (slots,
//! permits, the wait-for-room loop, deadlock detection), `outbox` (held outputs), `accounting`,
//! `stop`, `sinks`, `shared` (the run's parts), `handle`, `envelope`, `channel`, `durable`
//! (durable runs: [`LongRunningExecutor::run_durable`], [`LongRunningExecutor::spawn_durable`],
//! [`LongRunningExecutor::resume_durable`], [`LongRunningExecutor::resume_spawned`]; their
//! workers log each committed activation before delivering what it routed).
//!
//! **Layering**: depends on `spark-adk-core`, `spark-adk-edges`, `spark-adk-durable` (its trait
//! and records, for durable runs only; a plain run never touches it), tokio (`rt`, `sync`, `time`),
//! tokio-util, `tracing` (spans only, without its `attributes` feature), thiserror and serde_json;
//! never on `spark-adk-sequential` (the executors are independent).
//!
//! # Example: a spawned run fed through its handle
//!
//! ```
//! use std::sync::Arc;
//! use spark_adk_core::{node_fn, NodeError, StopReason, Task};
//! use spark_adk_edges::GraphBuilder;
//! use spark_adk_mailbox::LongRunningExecutor;
//! use serde_json::json;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut g = GraphBuilder::new();
//! let echo = g.add("echo", node_fn(|ctx| async move {
//!     Ok::<_, NodeError>(json!({ "echo": ctx.inputs().content["text"].clone() }))
//! }));
//! let topology = Arc::new(g.start(echo).build()?);
//!
//! let task = Task::long_running(json!({ "text": "hello" }));
//! let handle = LongRunningExecutor::new().spawn(topology, task)?;
//! let mut outputs = handle.subscribe();
//! handle.send("echo", json!({ "text": "hi" })).await?;
//! // The task input may be processed before we subscribed: read until our message comes back.
//! loop {
//!     let output = outputs.recv().await?;
//!     if output.message.content["echo"] == "hi" {
//!         break;
//!     }
//! }
//!
//! handle.shutdown();
//! let result = handle.wait().await?;
//! assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
//! assert_eq!(result.metadata.accepted, result.metadata.processed + result.metadata.unprocessed);
//! # Ok(()) }
//! ```
//!
//! See [`LongRunningExecutor`] for `run` (until quiescence), [`RunHandle`] for spawned runs and
//! [`channel`] for the reusable channel types.

mod accounting;
mod activation;
mod blocked;
mod catch;
pub mod channel;
mod durable;
mod envelope;
mod executor;
mod handle;
mod lanes;
mod mailbox;
mod mailboxes;
mod outbox;
mod shared;
mod sinks;
mod stop;
mod worker;

pub use durable::{fingerprint, topology_shape};
pub use executor::{LongRunningExecutor, SPAWN_SINK_RETENTION};
pub use handle::{HandleSendError, RunHandle, RunSender};
