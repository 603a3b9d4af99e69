//! Long-running graphs across processes, with mailboxes on NATS JetStream.
//!
//! (Crate docs: see below.)

mod coordinator;
mod error;
mod graph;
mod state;
mod wire;
mod worker;

pub use coordinator::DistributedRunHandle;
pub use error::{DistributedError, NatsError, SendError};
pub use graph::{connect, DistributedGraph, Options, Serve};
pub use state::DistributedState;
pub use worker::WorkerSummary;

/// Re-exported so users need not name the client crate.
pub use async_nats;
