//! The [`Timeout`] wrapper: a per-node time limit.

use std::time::Duration;

use spark_adk_core::{Context, Node, NodeError, NodeMessage};

use crate::{PolicyError, TimeoutError};

/// A node whose activation fails with a [`TimeoutError`] (naming the node and the limit) when
/// it takes longer than `limit`; made by [`NodeExt::with_timeout`](crate::NodeExt::with_timeout).
///
/// At the limit the wrapped node's future is dropped (it stops at its next `.await`). Put the
/// timeout inside a retry (`node.with_timeout(d).with_retry(p)`) to limit each attempt and retry
/// timeouts; outside (`node.with_retry(p).with_timeout(d)`) to limit all attempts together.
/// A zero limit is a [`PolicyError::ZeroTimeout`] at the node. Needs a tokio runtime with
/// timers, like the run's time budget.
#[derive(Clone, Debug)]
pub struct Timeout<N> {
    inner: N,
    limit: Duration,
}

impl<N> Timeout<N> {
    /// Wraps `inner` with a time limit.
    pub fn new(inner: N, limit: Duration) -> Self {
        Self { inner, limit }
    }

    /// The wrapped node.
    pub fn inner(&self) -> &N {
        &self.inner
    }

    /// The limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

impl<N: Node> Node for Timeout<N> {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if self.limit.is_zero() {
            return Err(PolicyError::ZeroTimeout.at_node(ctx.node_name()));
        }
        match tokio::time::timeout(self.limit, self.inner.process(ctx)).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(NodeError::from_error(TimeoutError {
                node: ctx.node_name().to_owned(),
                limit: self.limit,
                attempt: ctx.attempt(),
            })),
        }
    }
}
