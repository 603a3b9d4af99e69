//! [`Layer`] and [`Policies`]: the same stack of policies applied to many nodes (tower's
//! `Layer` and `ServiceBuilder`, for nodes).

use std::time::Duration;

use spark_adk_core::Node;

use crate::{Limited, Limiter, Retry, RetryPolicy, Timeout};

/// Wraps a node in another node (a policy). Implemented by [`RetryPolicy`], [`TimeoutLayer`],
/// [`Limiter`], and stacks of them; implement it for your own wrappers to use them in
/// [`Policies`] and [`NodeExt::with_layer`](crate::NodeExt::with_layer).
pub trait Layer<N> {
    /// The wrapped node.
    type Node: Node;

    /// Wraps `inner`.
    fn layer(&self, inner: N) -> Self::Node;
}

impl<N: Node> Layer<N> for RetryPolicy {
    type Node = Retry<N>;

    fn layer(&self, inner: N) -> Retry<N> {
        Retry::new(inner, self.clone())
    }
}

impl<N: Node> Layer<N> for Limiter {
    type Node = Limited<N>;

    fn layer(&self, inner: N) -> Limited<N> {
        Limited::new(inner, self.clone())
    }
}

/// The layer form of [`Timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// A per-activation time limit (zero is reported at the node, see [`Timeout`]).
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<N: Node> Layer<N> for TimeoutLayer {
    type Node = Timeout<N>;

    fn layer(&self, inner: N) -> Timeout<N> {
        Timeout::new(inner, self.limit)
    }
}

/// The layer that leaves a node as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl<N: Node> Layer<N> for Identity {
    type Node = N;

    fn layer(&self, inner: N) -> N {
        inner
    }
}

/// Two layers: `inner` wraps the node first, then `outer` wraps the result.
#[derive(Clone, Debug)]
pub struct Stack<Inner, Outer> {
    inner: Inner,
    outer: Outer,
}

impl<N, I, O> Layer<N> for Stack<I, O>
where
    I: Layer<N>,
    O: Layer<I::Node>,
{
    type Node = O::Node;

    fn layer(&self, node: N) -> O::Node {
        self.outer.layer(self.inner.layer(node))
    }
}

/// A stack of policies to put around many nodes, like tower's `ServiceBuilder`: the policy
/// added **first is the outermost**.
///
/// # Example
///
/// ```
/// use spark_adk_core::{node_fn, NodeError};
/// use spark_adk_policy::{Limiter, Policies, RetryPolicy};
/// use std::time::Duration;
///
/// let llm = Limiter::new("llm", 4)?;
/// // Each attempt waits for an `llm` slot and may take 30 s; failed attempts are retried.
/// let policies = Policies::new()
///     .retry(RetryPolicy::exponential(Duration::from_millis(200)))
///     .limiter(&llm)
///     .timeout(Duration::from_secs(30));
/// let planner = policies.wrap(node_fn(|_ctx| async { Ok::<_, NodeError>(serde_json::json!({})) }));
/// let writer = policies.wrap(node_fn(|_ctx| async { Ok::<_, NodeError>(serde_json::json!({})) }));
/// # let _ = (planner, writer);
/// # Ok::<(), spark_adk_policy::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Policies<L> {
    layer: L,
}

impl Default for Policies<Identity> {
    fn default() -> Self {
        Self::new()
    }
}

impl Policies<Identity> {
    /// An empty stack.
    pub fn new() -> Self {
        Self { layer: Identity }
    }
}

impl<L> Policies<L> {
    /// Adds `layer` inside the layers added so far.
    pub fn layer<T>(self, layer: T) -> Policies<Stack<T, L>> {
        Policies {
            layer: Stack {
                inner: layer,
                outer: self.layer,
            },
        }
    }

    /// Adds a retry policy.
    pub fn retry(self, policy: RetryPolicy) -> Policies<Stack<RetryPolicy, L>> {
        self.layer(policy)
    }

    /// Adds a per-activation time limit.
    pub fn timeout(self, limit: Duration) -> Policies<Stack<TimeoutLayer, L>> {
        self.layer(TimeoutLayer::new(limit))
    }

    /// Adds a shared concurrency limit.
    pub fn limiter(self, limiter: &Limiter) -> Policies<Stack<Limiter, L>> {
        self.layer(limiter.clone())
    }

    /// Wraps `node` in the stack.
    pub fn wrap<N>(&self, node: N) -> L::Node
    where
        L: Layer<N>,
    {
        self.layer.layer(node)
    }
}
