//! The long-running runtime of Spark for Rust: mailboxes, channels, workers and run handles.
//!
//! In long-running mode every node of a graph is a concurrent worker (a tokio task) with its
//! own bounded mailbox. The task input goes into the start node's mailbox; a worker takes one
//! message at a time, FIFO, calls `process`, evaluates its edges (with `spark-edges`) and sends
//! the output to every matching target's mailbox. A full mailbox makes the sender wait
//! (backpressure): nothing is ever dropped silently. Per sender→receiver pair, messages arrive
//! in send order.
//!
//! A run ends at the first of: quiescence (detected exactly by an in-flight counter, no
//! polling), the time budget, the token budget, a shutdown request, a node error, or a
//! deadlock of full mailboxes on a cycle. Every graceful end lets each worker finish its
//! in-flight message and then calls `process` once more with `metadata["shutdown"] == true`.
//! The result counts messages accepted, processed and unprocessed, with
//! `accepted == processed + unprocessed`.
//!
//! **Layering**: depends on `spark-core`, `spark-edges`, tokio (`rt`, `sync`, `time`) and
//! tokio-util; never on `spark-sequential` (the executors are independent).
//!
//! See [`LongRunningExecutor`] for an example, [`RunHandle`] for spawned runs and [`channel`]
//! for the reusable channel types.

mod blocked;
pub mod channel;
mod envelope;
mod executor;
mod handle;
mod shared;
mod worker;

pub use executor::LongRunningExecutor;
pub use handle::{HandleSendError, RunHandle};
