//! [`MapNode`]: a parallel map over the items of a list, as a node.

use std::fmt;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Map, Value};
use spark_adk_core::{
    Budget, CancellationToken, Context, DynNode, Node, NodeError, NodeMessage, RunError, RunScope,
};
use spark_adk_sequential::SequentialExecutor;

use crate::Graph;

/// What a [`MapNode`] does when one item's run fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnItemError {
    /// The map fails with [`MapError::ItemFailed`] naming the item's index; items still
    /// running are cancelled, no further item starts. The default.
    #[default]
    Fail,
    /// The failure is collected: the item's result is `null` and `errors` lists
    /// `{ "index": i, "error": "..." }`; the other items go on. Budgets and stops still fail
    /// the map (they are not an item's failure).
    Collect,
}

/// Why a [`MapNode`] failed. It reaches the run inside the map node's [`NodeError`] (find it
/// with `spark_adk::policy::find_cause::<MapError>`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The input at the items path is not a list.
    #[error("map `{node}`: the input {at} is not a list but {found}")]
    NotAList {
        /// The map node.
        node: String,
        /// Where the list was looked for (`content` or `content at <path>`).
        at: String,
        /// What was there (`null` when missing, `an object`, `a string`, ...).
        found: &'static str,
    },
    /// A concurrency of 0 would run nothing.
    #[error("map `{node}`: the concurrency must be at least 1, got 0")]
    ZeroConcurrency {
        /// The map node.
        node: String,
    },
    /// The node given to [`MapNode::over_node`] could not be made into a graph.
    #[error("map `{node}`: the inner graph is invalid: {message}")]
    InvalidInner {
        /// The map node.
        node: String,
        /// What the graph builder reported.
        message: String,
    },
    /// An item's run failed (in [`OnItemError::Fail`] mode, or for a budget or cancellation).
    #[error("map `{node}` failed at item {index}: {source}")]
    ItemFailed {
        /// The map node.
        node: String,
        /// The item's index in the input list.
        index: usize,
        /// The item's run error.
        #[source]
        source: Box<RunError>,
    },
    /// The run began to stop, was cancelled, or ran out of budget before every item started:
    /// budgets win, no further item starts.
    #[error("map `{node}` stopped with {not_started} of {total} items not started: the run is stopping or out of budget")]
    Stopped {
        /// The map node.
        node: String,
        /// Items that never started.
        not_started: usize,
        /// Items in the input list.
        total: usize,
    },
}

/// A node that runs an inner graph (or node) over each item of a list in its input, at most
/// `concurrency` at once, and returns the results in input order (a parallel map, for
/// map-reduce over LLM calls). Works in both modes.
///
/// - **Items**: the input content itself, or the value at [`items_at`](Self::items_at). Each
///   item is the input content of one standard run of the inner graph, with metadata
///   `map_index`. Anything but a list is a [`MapError::NotAList`] at the node.
/// - **Output**: `{ "results": [r0, r1, ...] }` (key settable with
///   [`output_key`](Self::output_key)), `ri` the content of item `i`'s run result (`null`
///   without one). With [`OnItemError::Collect`] also `"errors": [{ "index", "error" }]`.
/// - **Concurrency**: items run concurrently on the map node's own task (interleaved at their
///   `.await`s, no spawned tasks), at most [`concurrency`](Self::concurrency) at once
///   (default 1). That suits I/O-bound items (LLM and tool calls); combine with a
///   [`Limiter`](crate::policy::Limiter) inside to share a provider's cap with other nodes.
/// - **Cancellation and budgets** reach every item: each item's run uses a child of the run's
///   cancellation token and gets what is left of the token budget when it starts. No item
///   starts once the run is stopping, cancelled or out of budget ([`MapError::Stopped`]); a
///   standard run's time budget drops the map, and every running item with it. An item that
///   ends with a token-budget error or cancellation fails the map also in `Collect` mode.
/// - **Roll-up**: the tokens each item's run recorded are added to the parent run's counter as
///   soon as the item ends (tokens of an item cut off by cancellation are counted when its
///   error carries counts). The output's metadata `map` holds
///   `{ "items", "failed", "activations" }` (activations of the inner runs whose outcome is
///   in the output), since the parent run counts the map as one activation. Inner runs get the inner graph's initial state; events published
///   by their nodes through the context (e.g. retries) reach the parent run's bus.
/// - **Shutdown delivery** (long-running outer graph): returns at once, runs nothing.
///
/// # Example
///
/// ```
/// use spark_adk::prelude::*;
/// use spark_adk::MapNode;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let square = node_fn(|ctx| async move {
///     let n = ctx.inputs().content.as_i64().unwrap_or(0);
///     Ok::<_, NodeError>(json!(n * n))
/// });
/// let mut g = Graph::builder();
/// let map = g.add("squares", MapNode::over_node(square).items_at("numbers").concurrency(4));
/// let graph = g.start(map).build()?;
/// let result = graph.run_with(json!({ "numbers": [1, 2, 3] })).await?;
/// assert_eq!(result.content()["results"], json!([1, 4, 9]));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MapNode {
    inner: Result<Graph, String>,
    items_at: Option<ItemsPath>,
    concurrency: usize,
    on_error: OnItemError,
    output_key: String,
}

impl fmt::Debug for MapNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapNode")
            .field("inner", &self.inner)
            .field("items_at", &self.items_at.as_ref().map(|p| &p.text))
            .field("concurrency", &self.concurrency)
            .field("on_error", &self.on_error)
            .field("output_key", &self.output_key)
            .finish()
    }
}

#[derive(Clone, Debug)]
struct ItemsPath {
    text: String,
    segments: Vec<String>,
}

impl MapNode {
    /// A map running `graph` (standard mode) over each item.
    pub fn over_graph(graph: Graph) -> Self {
        Self::with_inner(Ok(graph))
    }

    /// A map running `node` over each item (as a one-node graph whose node is called `item`).
    pub fn over_node(node: impl Node) -> Self {
        Self::over_dyn_node(Arc::new(node))
    }

    /// As [`over_node`](Self::over_node), for a shared node.
    pub fn over_dyn_node(node: Arc<dyn DynNode>) -> Self {
        let mut g = Graph::builder();
        let item = g.add_shared("item", node);
        Self::with_inner(g.start(item).build().map_err(|e| e.to_string()))
    }

    fn with_inner(inner: Result<Graph, String>) -> Self {
        Self {
            inner,
            items_at: None,
            concurrency: 1,
            on_error: OnItemError::Fail,
            output_key: "results".to_owned(),
        }
    }

    /// Reads the list at `path` of the input content: a key (`"docs"`) or a dotted path
    /// starting with `$.` (`"$.batch.docs"`). Without it the input content is the list.
    #[must_use]
    pub fn items_at(mut self, path: impl Into<String>) -> Self {
        let text = path.into();
        let segments = match text.strip_prefix("$.") {
            Some(rest) => rest.split('.').map(str::to_owned).collect(),
            None => vec![text.clone()],
        };
        self.items_at = Some(ItemsPath { text, segments });
        self
    }

    /// Runs at most `n` items at once (default 1; 0 is a [`MapError::ZeroConcurrency`] at the
    /// node).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// What an item's failure does (default [`OnItemError::Fail`]).
    #[must_use]
    pub fn on_item_error(mut self, mode: OnItemError) -> Self {
        self.on_error = mode;
        self
    }

    /// The output key of the results list (default `results`).
    #[must_use]
    pub fn output_key(mut self, key: impl Into<String>) -> Self {
        self.output_key = key.into();
        self
    }

    /// The list to map over, or why there is none.
    fn items<'a>(&self, node: &str, content: &'a Value) -> Result<&'a [Value], MapError> {
        let mut value = Some(content);
        if let Some(path) = &self.items_at {
            for segment in &path.segments {
                value = value.and_then(|v| v.get(segment));
            }
        }
        match value {
            Some(Value::Array(items)) => Ok(items),
            other => Err(MapError::NotAList {
                node: node.to_owned(),
                at: self.items_at.as_ref().map_or_else(
                    || "content".to_owned(),
                    |p| format!("content at `{}`", p.text),
                ),
                found: match other {
                    None | Some(Value::Null) => "null",
                    Some(Value::Bool(_)) => "a boolean",
                    Some(Value::Number(_)) => "a number",
                    Some(Value::String(_)) => "a string",
                    Some(Value::Object(_)) => "an object",
                    Some(Value::Array(_)) => "a list",
                },
            }),
        }
    }
}

/// How one item ended.
enum Item {
    /// Its result content and the activations its run performed.
    Done(Value, u64),
    /// Its run's error and the activations it performed.
    Failed(RunError, u64),
    NotStarted,
}

/// `true` when no further item may start: budgets and stops win.
fn must_stop(ctx: &Context) -> bool {
    let scope = ctx.scope();
    ctx.is_cancelled() || ctx.is_stopping() || scope.tokens_exhausted() || scope.deadline_passed()
}

/// Runs item `index` as one standard run of `graph`, unless the parent must stop.
async fn run_item(
    graph: &Graph,
    ctx: &Context,
    cancel: &CancellationToken,
    index: usize,
    item: &Value,
) -> (usize, Item) {
    if must_stop(ctx) || cancel.is_cancelled() {
        return (index, Item::NotStarted);
    }
    let tokens_left = match ctx.scope().remaining_budget() {
        Ok(left) => left.and_then(|b| b.max_tokens()),
        Err(_) => return (index, Item::NotStarted),
    };
    let budget = tokens_left.and_then(|t| Budget::tokens(t).ok());
    let mut scope = RunScope::with_cancellation(budget, cancel.child_token())
        .with_initial_state(graph.topology().initial_state().clone());
    if let Some(bus) = ctx.scope().events() {
        scope = scope.with_events(bus.clone());
    }
    let inputs = NodeMessage::new(item.clone()).with_metadata("map_index", index);
    let outcome = SequentialExecutor::new()
        .run_scoped(graph.topology(), inputs, None, scope)
        .await;
    let (tokens, activations) = match &outcome {
        Ok(result) => (result.metadata.tokens_used, result.metadata.processed),
        Err(e) => e.counts().map_or((0, 0), |c| (c.tokens_used, c.processed)),
    };
    if tokens > 0 {
        ctx.record_tokens(tokens);
    }
    match outcome {
        Ok(result) => {
            let content = result
                .into_output()
                .map_or(Value::Null, |m| Value::clone(&m.content));
            (index, Item::Done(content, activations))
        }
        Err(e) => (index, Item::Failed(e, activations)),
    }
}

/// Item errors that are the run's limits rather than the item's failure.
fn is_budget_or_cancel(e: &RunError) -> bool {
    matches!(
        e,
        RunError::Cancelled { .. }
            | RunError::TokenBudgetExhausted { .. }
            | RunError::Timeout { .. }
    )
}

impl Node for MapNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if ctx.is_shutdown() {
            return Ok(NodeMessage::empty());
        }
        let node = ctx.node_name();
        let graph = self.inner.as_ref().map_err(|message| {
            NodeError::from_error(MapError::InvalidInner {
                node: node.to_owned(),
                message: message.clone(),
            })
        })?;
        if self.concurrency == 0 {
            return Err(NodeError::from_error(MapError::ZeroConcurrency {
                node: node.to_owned(),
            }));
        }
        let content = Arc::clone(&ctx.inputs().content);
        let items = self.items(node, &content).map_err(NodeError::from_error)?;
        let total = items.len();

        // Cancelled when the map fails early, so that running items stop; a child of the
        // run's token, so that the run's cancellation reaches every item.
        let cancel = ctx.cancellation().child_token();
        let mut results = vec![Value::Null; total];
        let mut errors: Vec<(usize, RunError)> = Vec::new();
        let mut failure: Option<MapError> = None;
        let mut not_started = 0;
        let mut activations: u64 = 0;
        let mut pending = items.iter().enumerate();
        let mut running = FuturesUnordered::new();
        loop {
            while failure.is_none() && running.len() < self.concurrency {
                match pending.next() {
                    Some((index, item)) => running.push(run_item(graph, ctx, &cancel, index, item)),
                    None => break,
                }
            }
            let Some((index, item)) = running.next().await else {
                break;
            };
            match item {
                Item::Done(value, steps) => {
                    activations = activations.saturating_add(steps);
                    if let Some(slot) = results.get_mut(index) {
                        *slot = value;
                    }
                }
                Item::NotStarted => not_started += 1,
                Item::Failed(e, steps)
                    if self.on_error == OnItemError::Collect && !is_budget_or_cancel(&e) =>
                {
                    activations = activations.saturating_add(steps);
                    errors.push((index, e));
                }
                Item::Failed(e, _) => {
                    if failure.is_none() {
                        cancel.cancel();
                        failure = Some(MapError::ItemFailed {
                            node: node.to_owned(),
                            index,
                            source: Box::new(e),
                        });
                    }
                }
            }
        }
        cancel.cancel();
        if let Some(failure) = failure {
            return Err(NodeError::from_error(failure));
        }
        if not_started > 0 {
            return Err(NodeError::from_error(MapError::Stopped {
                node: node.to_owned(),
                not_started,
                total,
            }));
        }
        let mut out = Map::new();
        out.insert(self.output_key.clone(), Value::Array(results));
        let failed = errors.len();
        if self.on_error == OnItemError::Collect {
            errors.sort_by_key(|(index, _)| *index);
            let errors = errors
                .into_iter()
                .map(|(index, e)| json!({ "index": index, "error": e.to_string() }))
                .collect();
            out.insert("errors".to_owned(), Value::Array(errors));
        }
        Ok(NodeMessage::from(out).with_metadata(
            "map",
            json!({ "items": total, "failed": failed, "activations": activations }),
        ))
    }
}
