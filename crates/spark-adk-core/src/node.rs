//! The [`Node`] trait (native `async fn`), its object-safe form [`DynNode`], and closures as nodes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

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
/// `process` gets the [`Context`] by reference, since an `async fn` may borrow it; a closure
/// made into a node with [`node_fn`] gets it by value instead (its future must own it).
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

/// What a [`node_fn`] closure's future may return: the node's output, or a `Result` of it.
///
/// - `Result<O, NodeError>` for any `O: Into<NodeMessage>`, so a closure ending in `Ok(json!(..))`
///   needs no `Ok::<_, NodeError>` annotation, and `?` converts any error that has a
///   `From` conversion into [`NodeError`] (`serde_json::Error`, `std::io::Error`, `&str`,
///   `String`, [`PayloadError`](crate::PayloadError), boxed errors, ...);
/// - a plain [`NodeMessage`], [`Value`], JSON [`Map`] or `()` for a node that cannot fail.
///
/// Only one `Result` form is accepted on purpose: with a single candidate the compiler infers
/// the error type of `Ok(..)` by itself. A closure that produces another error type converts it
/// with `?` or `.map_err(NodeError::from_error)`.
pub trait IntoNodeResult {
    /// Converts into what [`Node::process`] returns.
    fn into_node_result(self) -> NodeResult;
}

impl<O: Into<NodeMessage>> IntoNodeResult for Result<O, NodeError> {
    fn into_node_result(self) -> NodeResult {
        self.map(Into::into)
    }
}

impl IntoNodeResult for NodeMessage {
    fn into_node_result(self) -> NodeResult {
        Ok(self)
    }
}

impl IntoNodeResult for Value {
    fn into_node_result(self) -> NodeResult {
        Ok(self.into())
    }
}

impl IntoNodeResult for Map<String, Value> {
    fn into_node_result(self) -> NodeResult {
        Ok(self.into())
    }
}

impl IntoNodeResult for () {
    fn into_node_result(self) -> NodeResult {
        Ok(NodeMessage::empty())
    }
}

/// Makes a node from a closure: `node_fn(|ctx| async move { ... })`.
///
/// The closure gets the activation's [`Context`] **by value** (an owned clone: a few
/// reference-count increments) and returns a future that owns everything it uses, because that
/// future must be `'static` and `Send`. A node written as a type implementing [`Node`] gets
/// `&Context` instead, since its `async fn` may borrow. Rust's async closures (`async |ctx|`)
/// cannot be used here: a bound saying their future is `Send` is not yet expressible on stable.
///
/// The future returns anything that implements [`IntoNodeResult`]: usually `Ok(value)` with a
/// `serde_json::Value`, a [`NodeMessage`] or anything else `Into<NodeMessage>`; no
/// `Ok::<_, NodeError>` annotation is needed, and `?` works on any error that converts into
/// [`NodeError`].
///
/// # Example
///
/// ```
/// use spark_adk_core::{node_fn, Context, Node};
/// use serde_json::json;
///
/// let inc = node_fn(|ctx| async move {
///     let n = ctx.inputs().content["n"].as_i64().ok_or("input `n` is not an integer")?;
///     Ok(json!({ "n": n + 1 }))
/// });
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let out = inc.process(&Context::detached(json!({ "n": 41 }))).await.unwrap();
/// assert_eq!(out.content["n"], 42);
/// let err = inc.process(&Context::detached(json!({}))).await.unwrap_err();
/// assert_eq!(err.to_string(), "input `n` is not an integer");
/// # });
/// ```
///
/// # Sharing state between activations
///
/// The closure is called once per activation and may be called again while an earlier future
/// still runs, so a future cannot take a captured value away from it: `move |ctx| async move {
/// counter.fetch_add(..) }` fails with E0507 ("cannot move out of `counter`, a captured variable
/// in an `Fn` closure"). Clone the shared handle (an [`Arc`](std::sync::Arc)) into the closure
/// once, and again into each future:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use spark_adk_core::{node_fn, Context, Node};
/// use serde_json::json;
///
/// let seen = Arc::new(AtomicU64::new(0));
/// let counter = node_fn({
///     let seen = Arc::clone(&seen); // the closure's own handle
///     move |_ctx| {
///         let seen = Arc::clone(&seen); // this activation's handle, moved into the future
///         async move {
///             let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
///             json!({ "seen": n }) // a node that cannot fail may return the value itself
///         }
///     }
/// });
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// counter.process(&Context::detached(json!({}))).await.unwrap();
/// let out = counter.process(&Context::detached(json!({}))).await.unwrap();
/// assert_eq!(out.content["seen"], 2);
/// # });
/// assert_eq!(seen.load(Ordering::Relaxed), 2); // the caller's handle sees the same counter
/// ```
pub fn node_fn<F, Fut>(f: F) -> FnNode<F>
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoNodeResult,
{
    FnNode { f }
}

impl<F, Fut> Node for FnNode<F>
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoNodeResult,
{
    fn process(&self, ctx: &Context) -> impl Future<Output = NodeResult> + Send {
        let fut = (self.f)(ctx.clone());
        async move { fut.await.into_node_result() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn io_failure() -> Result<i64, std::io::Error> {
        Err(std::io::Error::other("disk on fire"))
    }

    #[tokio::test]
    async fn a_closure_error_converts_into_a_node_error_with_the_question_mark() {
        let node = node_fn(|_ctx| async {
            let n = io_failure()?;
            Ok(json!({ "n": n }))
        });
        let err = node.process(&Context::detached(json!({}))).await;
        assert_eq!(
            err.map_err(|e| e.to_string()).err().as_deref(),
            Some("disk on fire")
        );
    }

    #[tokio::test]
    async fn a_closure_returning_unit_outputs_an_empty_object() {
        let node = node_fn(|_ctx| async {});
        let out = node.process(&Context::detached(json!({ "x": 1 }))).await;
        assert_eq!(out.map(|m| (*m.content).clone()).ok(), Some(json!({})));
    }

    #[tokio::test]
    async fn a_closure_returning_its_input_message_passes_it_on_unchanged() {
        let node = node_fn(|ctx| async move { ctx.inputs().clone() });
        let out = node.process(&Context::detached(json!({ "x": 1 }))).await;
        assert_eq!(out.map(|m| m.content["x"].clone()).ok(), Some(json!(1)));
    }
}
