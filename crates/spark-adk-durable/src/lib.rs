//! Durable runs for Spark for Rust (docs/runtime-semantics.md, "Durable runs"): the log record format, replay, the
//! store trait, the in-memory store, the log writer with its durability modes, and the store
//! conformance suite.
//!
//! A run's log is a [`RunHeader`] (format version, topology [`Fingerprint`], task input, budgets,
//! mode) followed by [`Record`]s: one per committed activation (the message it consumed, the
//! messages it routed with their targets and ids, its sink output, its state changes as changed
//! keys, its tokens), messages accepted from outside, interrupts, resumes and stops. [`replay`]
//! folds a log into the [`RunImage`] a resumed executor continues from; a [`Snapshot`] compacts a
//! log. A [`Store`] keeps the bytes (compare-and-append on the log head, leases for fencing);
//! [`RunLog`] is the one writer task of a run with group commit and the [`Durability`] modes.
//!
//! Stores: [`MemoryStore`] here; `spark-adk-sqlite` (the embedded default) and
//! `spark-adk-postgres` in their own crates. Each runs [`conformance_tests!`].
//!
//! **Layering**: depends on `spark-adk-core` (for [`spark_adk_core::NodeMessage`]), serde,
//! serde_json, thiserror and tokio (`sync`, `rt`, `time`, `macros`: the writer is a tokio task).
//! Never on an executor or a store crate; executors use only this crate's trait and records.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use spark_adk_durable::*;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let fingerprint = Fingerprint::of(TopologyShape {
//!     nodes: vec!["ask".into(), "answer".into()],
//!     edges: vec![EdgeShape::new("ask", "answer", "always")],
//!     start: "ask".into(),
//! });
//! let header = RunHeader::new("run-1", fingerprint.clone(), RunMode::Standard, json!({"q": 1}).into());
//!
//! // The executor appends one record per committed activation.
//! let log = RunLog::create(store.clone(), &header, Durability::Sync).await?;
//! log.append(Record::Activation(ActivationRecord {
//!     activation: MessageId::INPUT,          // it consumed the task input
//!     node: "ask".into(),
//!     attempt: 1,
//!     routed: vec![RoutedMessage { id: MessageId(1), target: "answer".into(), message: json!({"a": 2}).into() }],
//!     sink: None,
//!     state: vec![StateChange::Set { key: "asked".into(), value: json!(true) }],
//!     tokens: 12,
//! })).await?;
//! log.close().await?;
//!
//! // After a crash: load, check the topology, replay.
//! let (_, image) = store.resume_image(&RunId::new("run-1"), &fingerprint).await?;
//! let next: Vec<_> = image.pending().map(|m| (m.to.as_str(), m.id)).collect();
//! assert_eq!(next, vec![("answer", MessageId(1))]);
//! assert_eq!(image.state()["asked"], json!(true));
//! assert_eq!(image.tokens(), 12);
//! # Ok::<(), DurableError>(()) }).unwrap();
//! ```

pub mod checks;
pub mod conformance;
mod error;
mod fingerprint;
mod image;
mod memory;
mod options;
mod record;
mod store;
pub mod testing;
mod writer;

pub use checks::check_ttl;
pub use error::{BackendError, DurableError, StoreFailure};
pub use fingerprint::{EdgeShape, Fingerprint, TopologyShape};
pub use image::{replay, PendingInterrupt, PendingMessage, RunImage, SinkEntry};
pub use memory::MemoryStore;
pub use options::{DurableOptions, DurableRunError};
pub use record::{
    decode, encode, now_ms, AcceptedRecord, ActivationRecord, Budgets, InterruptRecord, MessageId,
    Record, ResumeRecord, RoutedMessage, RunHeader, RunId, RunMode, Snapshot, StateChange,
    StopRecord, FORMAT_VERSION,
};
pub use store::{
    decode_log, BoxFuture, Lease, LoadedRun, RunSummary, Store, StoreExt, StoredLog, StoredRecord,
};
pub use writer::{Commit, Durability, LogSlot, RunLog};

/// The activation id: an activation is named by the message it consumes (stable across retries).
pub type ActivationId = MessageId;
