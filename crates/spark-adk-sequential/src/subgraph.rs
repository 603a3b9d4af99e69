//! [`SubgraphNode`]: a node that runs another graph (the seed's hybrid mode).

use std::fmt;
use std::sync::Arc;

use spark_adk_core::{Context, Map, Node, NodeError, NodeMessage, RunScope, Value};
use spark_adk_edges::Topology;

use crate::SequentialExecutor;

/// How deep subgraph runs may nest by default: the run a [`SubgraphNode`] starts may be at most
/// this many subgraphs deep (a run the user started is 0 deep). It is also the most that
/// [`SubgraphNode::max_depth`] accepts: this depth is tested to fit a 2 MiB stack (a tokio
/// worker thread's) in debug and release builds.
pub const DEFAULT_SUBGRAPH_DEPTH_LIMIT: u32 = 64;

/// A node that runs an inner graph in standard mode on each activation and returns the inner
/// run's result (the seed's `SubgraphNode` / hybrid mode).
///
/// - **Inputs**: the activation's input message, or with [`SubgraphNode::input_key`] only the
///   value at that key of the input content.
/// - **Output**: the inner run's result, or with [`SubgraphNode::output_key`] an object
///   `{ key: result }`.
/// - **Cancellation**: the inner run uses a child of the outer run's cancellation token, so
///   cancelling the outer run cancels the inner one. When the outer standard run times out its
///   future is dropped, and the inner run with it.
/// - **State**: the inner run gets its own graph state (the inner graph's initial state), or
///   shares the outer run's with [`SubgraphNode::share_parent_state`].
/// - **Shutdown delivery**: in a long-running outer graph, the worker's shutdown call returns
///   at once without running the inner graph.
/// - **Budget**: the inner run gets what is left of the outer token budget; the tokens it
///   records are added to the outer run's counter as they are recorded (so they count also when
///   the inner run is cut off). An inner failure becomes this node's error,
///   with the inner [`spark_adk_core::RunError`] as its source.
/// - **Nesting**: subgraphs may nest at most [`SubgraphNode::max_depth`] deep (default
///   [`DEFAULT_SUBGRAPH_DEPTH_LIMIT`], 64). The depth travels with the run scope
///   ([`RunScope::subgraph_depth`]), so the limit holds in a long-running outer graph too. A node
///   whose run would be deeper fails without starting it, with an error naming it.
///
/// # Example
///
/// ```
/// use spark_adk_core::{json, node_fn, NodeError, Task};
/// use spark_adk_edges::GraphBuilder;
/// use spark_adk_sequential::{SequentialExecutor, SubgraphNode};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut inner = GraphBuilder::new();
/// let double = inner.add("double", node_fn(|ctx| async move {
///     Ok::<_, NodeError>(json!({ "n": ctx.inputs().content["n"].as_i64().unwrap_or(0) * 2 }))
/// }));
/// let inner = inner.start(double).build()?;
///
/// let mut outer = GraphBuilder::new();
/// let sub = outer.add("sub", SubgraphNode::new(inner));
/// let outer = outer.start(sub).build()?;
/// let result = SequentialExecutor::new().run(&outer, Task::new(json!({ "n": 21 }))).await?;
/// assert_eq!(result.content()["n"], 42);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SubgraphNode {
    graph: Arc<Topology>,
    input_key: Option<String>,
    output_key: Option<String>,
    share_state: bool,
    max_depth: u32,
}

impl SubgraphNode {
    /// A node running `graph` (a built [`Topology`], or anything that converts into a shared
    /// one, such as the facade's `Graph`).
    pub fn new(graph: impl Into<Arc<Topology>>) -> Self {
        Self {
            graph: graph.into(),
            input_key: None,
            output_key: None,
            share_state: false,
            max_depth: DEFAULT_SUBGRAPH_DEPTH_LIMIT,
        }
    }

    /// Sets how many subgraphs deep the run this node starts may be (its own run is 1 deep
    /// when this node is in a graph the user ran). Values above
    /// [`DEFAULT_SUBGRAPH_DEPTH_LIMIT`] are lowered to it, the deepest nesting tested not to
    /// overflow a 2 MiB stack.
    #[must_use]
    pub fn max_depth(mut self, max_depth: u32) -> Self {
        self.max_depth = max_depth.min(DEFAULT_SUBGRAPH_DEPTH_LIMIT);
        self
    }

    /// Feeds the inner graph only the value at `key` of the input content.
    #[must_use]
    pub fn input_key(mut self, key: impl Into<String>) -> Self {
        self.input_key = Some(key.into());
        self
    }

    /// Lets the inner run share the outer run's graph state instead of getting its own (by
    /// default the inner run starts from the inner graph's initial state, and its final state is
    /// discarded).
    #[must_use]
    pub fn share_parent_state(mut self, share: bool) -> Self {
        self.share_state = share;
        self
    }

    /// Wraps the inner result as `{ key: result }`.
    #[must_use]
    pub fn output_key(mut self, key: impl Into<String>) -> Self {
        self.output_key = Some(key.into());
        self
    }
}

impl fmt::Debug for SubgraphNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubgraphNode")
            .field("graph", &self.graph.names())
            .field("input_key", &self.input_key)
            .field("output_key", &self.output_key)
            .field("share_state", &self.share_state)
            .field("max_depth", &self.max_depth)
            .finish()
    }
}

impl Node for SubgraphNode {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if ctx.is_shutdown() {
            // A shutdown delivery (long-running outer graph) is control, not data: the inner
            // graph does not run for it.
            return Ok(NodeMessage::empty());
        }
        let depth = ctx.scope().subgraph_depth().saturating_add(1);
        if depth > self.max_depth {
            return Err(NodeError::new(format!(
                "subgraph node `{}` not started: its run would be nested {depth} subgraphs deep, \
                 beyond the limit of {}",
                ctx.node_name(),
                self.max_depth
            )));
        }
        let inputs = match &self.input_key {
            Some(key) => {
                NodeMessage::new(ctx.inputs().content.get(key).cloned().unwrap_or_default())
            }
            None => ctx.inputs().clone(),
        };
        let remaining = ctx.scope().remaining_budget().map_err(|kind| {
            NodeError::new(format!(
                "subgraph `{}` not started: the outer {kind:?} budget is used up",
                ctx.node_name()
            ))
        })?;
        // Time is enforced by the outer run (dropping or cancelling this future); tokens by the
        // inner run itself, with what is left.
        let inner_budget = remaining
            .and_then(|b| b.max_tokens())
            .and_then(|t| spark_adk_core::Budget::tokens(t).ok());
        // The parent link gives the inner run its depth and records its tokens in the outer
        // run as they are recorded.
        let scope = RunScope::with_cancellation(inner_budget, ctx.cancellation().child_token())
            .with_parent(Arc::clone(ctx.scope()));
        let scope = if self.share_state {
            scope.with_state(ctx.state().clone())
        } else {
            scope.with_initial_state(self.graph.initial_state().clone())
        };
        // Boxed: this node's future stays small, so each nesting level takes less stack (in a
        // debug build, 64 levels take about 1.3 MiB of a 2 MiB stack instead of 1.6 MiB).
        let outcome =
            Box::pin(SequentialExecutor::new().run_scoped(&self.graph, inputs, None, scope)).await;
        let result = outcome?;
        let output = result.into_output().unwrap_or_default();
        Ok(match &self.output_key {
            Some(key) => {
                let mut map = Map::new();
                map.insert(key.clone(), Value::clone(&output.content));
                NodeMessage::from(map)
            }
            None => output,
        })
    }
}
