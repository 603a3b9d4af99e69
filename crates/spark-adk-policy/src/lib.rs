//! Node policies for Spark for Rust: retries with backoff, per-node timeouts and shared
//! concurrency limiters, composable around any [`Node`].
//!
//! # Example
//!
//! ```
//! use spark_adk_core::{node_fn, Context, Node, NodeError};
//! use spark_adk_policy::{find_cause, Limiter, NodeExt, RetryPolicy, TimeoutError};
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = Arc::clone(&calls);
//! // A tool that fails on its first two calls.
//! let flaky = node_fn(move |ctx: Context| {
//!     let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
//!     async move {
//!         if n < 3 {
//!             return Err(NodeError::new(format!("transient failure {n}")));
//!         }
//!         Ok(serde_json::json!({ "answer": 42, "attempt": ctx.attempt() }))
//!     }
//! });
//!
//! let llm = Limiter::new("llm", 4)?;
//! let node = flaky
//!     .with_timeout(Duration::from_secs(5)) // each attempt
//!     .with_retry(
//!         RetryPolicy::exponential(Duration::from_millis(10))
//!             .max_attempts(3)
//!             .retry_if(|e| find_cause::<TimeoutError>(e).is_some() || e.message().contains("transient")),
//!     )
//!     .with_limiter(&llm);
//!
//! let out = node.process(&Context::detached(serde_json::json!({}))).await?;
//! assert_eq!(out.content["attempt"], 3);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(()) }
//! ```
//!
//! Each policy is a node wrapping a node ([`Retry`], [`Timeout`], [`Limited`]), made with the
//! [`NodeExt`] methods every node has, or with a [`Policies`] stack applied to many nodes
//! (tower's `Layer`/`ServiceBuilder` model). They work the same in both execution modes: the
//! executors only see a node. The order of the wrappers is the order of the calls, innermost
//! first: `node.with_timeout(d).with_retry(p)` limits each attempt;
//! `node.with_retry(p).with_timeout(d)` limits all attempts together.
//!
//! What the policies promise (retries never hide a panic, budgets win over retries, the errors
//! name the node) is written on [`Retry`], [`Timeout`] and [`Limiter`], and in the repository's
//! `docs/runtime-semantics.md`.
//!
//! **Why a hand-written backoff**: `backon` was considered. Its value is its retry loop, which
//! we cannot use: between attempts the wrapper must check the run's stop, budgets and
//! cancellation, publish an event, give the node its attempt number, and let panics through.
//! What remains is the delay sequence, a few lines ([`RetryPolicy::delay`]); the jitter uses
//! `fastrand` (small, no dependencies, already in the workspace's lock file).
//!
//! **Layering**: depends on `spark-adk-core` only among the workspace crates, and on tokio's
//! `sync` and `time` features (no runtime), `thiserror`, `tracing` and `fastrand`. The
//! executors do not know it; the facade `spark-adk` re-exports it.

mod error;
mod layer;
mod limiter;
mod retry;
mod timeout;

use std::time::Duration;

use spark_adk_core::Node;

pub use error::{find_cause, GiveUp, PolicyError, RetryError, TimeoutError};
pub use layer::{Identity, Layer, Policies, Stack, TimeoutLayer};
pub use limiter::{Limited, Limiter};
pub use retry::{Retry, RetryPolicy};
pub use timeout::Timeout;

/// Policy methods for every [`Node`]: `node.with_retry(policy).with_timeout(limit)`.
pub trait NodeExt: Node + Sized {
    /// Runs the node again after a failed attempt, as `policy` says (see [`Retry`]).
    fn with_retry(self, policy: RetryPolicy) -> Retry<Self> {
        Retry::new(self, policy)
    }

    /// Fails an activation that takes longer than `limit` with a [`TimeoutError`] (see
    /// [`Timeout`]).
    fn with_timeout(self, limit: Duration) -> Timeout<Self> {
        Timeout::new(self, limit)
    }

    /// Runs the node only while it holds a slot of `limiter`, shared with other nodes (see
    /// [`Limiter`]).
    fn with_limiter(self, limiter: &Limiter) -> Limited<Self> {
        Limited::new(self, limiter.clone())
    }

    /// Wraps the node in any [`Layer`] (a policy of yours, or a [`Policies`] stack's layer).
    fn with_layer<L: Layer<Self>>(self, layer: &L) -> L::Node {
        layer.layer(self)
    }
}

impl<N: Node> NodeExt for N {}
