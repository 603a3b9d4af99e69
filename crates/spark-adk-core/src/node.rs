//! The [`Node`] trait (native `async fn`), its object-safe form [`DynNode`], and closures as nodes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::{Context, NodeError, NodeMessage};

/// What a node's `process` returns.
pub type NodeResult = Result<NodeMessage, NodeError>;

/// A boxed, `Send` future (what [`DynNode`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An async unit of work in a graph.
///
/// Implement it with a plain `async fn`. Nodes are shared by reference (`&self`) between
/// activations and, in long-running mode, live on their own worker; a node that keeps state
/// across activations uses interior mutability (atomics, a mutex) or graph state.
///
/// # Example
///
/// ```
/// use spark_adk_core::{Context, Node, NodeError, NodeMessage};
/// use serde_json::json;
///
/// struct Transform;
///
/// impl Node for Transform {
///     async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
///         let data = ctx.inputs().content["data"].as_array().cloned().unwrap_or_default();
///         let doubled: Vec<_> = data.iter().filter_map(|v| v.as_i64()).map(|n| n * 2).collect();
///         Ok(json!({ "data": doubled }).into())
///     }
/// }
/// ```
pub trait Node: Send + Sync + 'static {
    /// Processes one input (available as `ctx.inputs()`) and returns the output message.
    fn process(&self, ctx: &Context) -> impl Future<Output = NodeResult> + Send;
}

/// The object-safe form of [`Node`] the executors store (`Arc<dyn DynNode>`).
///
/// Every [`Node`] implements it; you never implement it yourself.
pub trait DynNode: Send + Sync + 'static {
    /// Boxes the future of [`Node::process`].
    fn process_dyn<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, NodeResult>;
}

impl<N: Node> DynNode for N {
    fn process_dyn<'a>(&'a self, ctx: &'a Context) -> BoxFuture<'a, NodeResult> {
        // `process` is called inside the boxed future, so code that runs before the node's
        // future exists (for example a closure's body before its `async` block) runs on the
        // first poll, where the executors catch its panics too.
        Box::pin(async move { self.process(ctx).await })
    }
}

/// A node made from a closure; see [`node_fn`].
pub struct FnNode<F> {
    f: F,
}

impl<F> fmt::Debug for FnNode<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnNode")
    }
}

/// Makes a node from a closure that takes the activation's [`Context`] (by value: it is cheap to
/// clone) and returns a future of `Result<impl Into<NodeMessage>, impl Into<NodeError>>`.
///
/// # Example
///
/// ```
/// use spark_adk_core::{node_fn, NodeError};
/// use serde_json::json;
///
/// let inc = node_fn(|ctx| async move {
///     let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
///     Ok::<_, NodeError>(json!({ "n": n + 1 }))
/// });
/// # let _ = inc;
/// ```
pub fn node_fn<F, Fut, O, E>(f: F) -> FnNode<F>
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    O: Into<NodeMessage>,
    E: Into<NodeError>,
{
    FnNode { f }
}

impl<F, Fut, O, E> Node for FnNode<F>
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    O: Into<NodeMessage>,
    E: Into<NodeError>,
{
    fn process(&self, ctx: &Context) -> impl Future<Output = NodeResult> + Send {
        let fut = (self.f)(ctx.clone());
        async move {
            match fut.await {
                Ok(out) => Ok(out.into()),
                Err(e) => Err(e.into()),
            }
        }
    }
}
