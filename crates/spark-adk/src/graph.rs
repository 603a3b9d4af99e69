//! [`Graph`] and its [`GraphBuilder`]: build once, run many times in either mode.

use std::fmt;
use std::sync::Arc;

use spark_adk_core::{
    DynNode, Event, EventBus, Node, NodeMessage, RunError, RunResult, Task, TaskType,
};
use spark_adk_edges::{BuildErrors, Chain, EdgeCondition, Endpoint, NodeRef, Topology};
use spark_adk_mailbox::{LongRunningExecutor, RunHandle};
use spark_adk_sequential::SequentialExecutor;

/// A built, validated graph. Cheap to clone (shared); can be run any number of times, also
/// concurrently: runs never share mailboxes, budgets or token counters.
///
/// # Example
///
/// ```
/// use spark_adk::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut g = Graph::builder();
/// let hello = g.add("hello", node_fn(|ctx| async move {
///     let name = ctx.inputs().content["name"].as_str().unwrap_or("world").to_owned();
///     Ok::<_, NodeError>(json!({ "greeting": format!("hello, {name}") }))
/// }));
/// let graph = g.start(hello).build()?;
///
/// let result = graph.run_with(json!({ "name": "spark" })).await?;
/// assert_eq!(result.content()["greeting"], "hello, spark");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Graph {
    topology: Arc<Topology>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", self.topology.names())
            .finish()
    }
}

impl Graph {
    /// A new [`GraphBuilder`].
    pub fn builder() -> GraphBuilder {
        GraphBuilder::default()
    }

    /// The compiled topology (nodes, edges, limits).
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// The bus every run of this graph publishes its events to; call
    /// [`subscribe`](EventBus::subscribe) on it before running.
    pub fn events(&self) -> &EventBus {
        self.topology.events()
    }

    /// Subscribes to the events of every run of this graph from now on.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.topology.events().subscribe()
    }

    /// The graph as a Mermaid flowchart, drawn from its actual edges.
    pub fn to_mermaid(&self) -> String {
        self.topology.to_mermaid()
    }

    /// The graph in Graphviz DOT, drawn from its actual edges.
    pub fn to_dot(&self) -> String {
        self.topology.to_dot()
    }

    /// Runs a task; the task type picks the executor (the seed's `await graph.run(task)`).
    ///
    /// # Errors
    /// Whatever the executor reports: see [`RunError`].
    ///
    /// # Cancel safety
    /// In standard mode, dropping the future stops the run at the running node's next `.await`.
    /// In long-running mode, dropping it begins a graceful stop of the workers.
    pub async fn run(&self, task: Task) -> Result<RunResult, RunError> {
        match task.task_type {
            TaskType::Standard => SequentialExecutor::new().run(&self.topology, task).await,
            // Boxed so that the standard-mode future stays small (it is moved on every run).
            TaskType::LongRunning => {
                Box::pin(LongRunningExecutor::new().run(Arc::clone(&self.topology), task)).await
            }
        }
    }

    /// Starts a long-running task in the background and returns its [`RunHandle`]: send
    /// messages into named nodes, subscribe to sink outputs, request a shutdown, await the
    /// result. The run does not end at quiescence (the handle may still send); it ends on
    /// shutdown, budget, error, or when the handle is dropped.
    ///
    /// # Errors
    /// [`RunError::InvalidTask`] for a standard task, or when called outside a tokio runtime.
    pub fn spawn(&self, task: Task) -> Result<RunHandle, RunError> {
        LongRunningExecutor::new().spawn(Arc::clone(&self.topology), task)
    }

    /// Runs a standard-mode task with `inputs` (the seed's `graph.run(initial_inputs=...)`).
    ///
    /// # Errors
    /// As [`Graph::run`].
    pub async fn run_with(&self, inputs: impl Into<NodeMessage>) -> Result<RunResult, RunError> {
        self.run(Task::new(inputs)).await
    }

    /// Runs a standard-mode task with an empty input (the seed's `await graph.run()`).
    ///
    /// # Errors
    /// As [`Graph::run`].
    pub async fn run_default(&self) -> Result<RunResult, RunError> {
        self.run(Task::default()).await
    }
}

/// A graph is a shared topology: this lets a [`Graph`] go wherever one is wanted, e.g.
/// [`SubgraphNode::new`](crate::SubgraphNode::new).
impl From<Graph> for Arc<Topology> {
    fn from(graph: Graph) -> Self {
        graph.topology
    }
}

impl From<Topology> for Graph {
    fn from(topology: Topology) -> Self {
        Self {
            topology: Arc::new(topology),
        }
    }
}

/// Builds a [`Graph`]: add nodes, connect them, set the start node, [`build`](Self::build).
///
/// A thin wrapper around [`spark_adk_edges::GraphBuilder`] whose `build` returns a runnable
/// [`Graph`].
///
/// # Example
///
/// ```
/// use spark_adk::prelude::*;
///
/// let noop = || node_fn(|_| async { Ok::<_, NodeError>(json!({ "ok": true })) });
/// let mut g = Graph::builder();
/// let (a, b, c) = (g.add("a", noop()), g.add("b", noop()), g.add("c", noop()));
/// g.connect(a >> b >> c);                 // or g.edge(a, b).edge(b, c)
/// g.connect(a.on("ok", false) >> c);      // conditional edge
/// let graph = g.start(a).build()?;
/// assert_eq!(graph.topology().len(), 3);
/// # Ok::<(), spark_adk::BuildErrors>(())
/// ```
#[derive(Debug, Default)]
pub struct GraphBuilder {
    inner: spark_adk_edges::GraphBuilder,
}

impl GraphBuilder {
    /// Adds a node under a unique name and returns its handle.
    pub fn add(&mut self, name: impl Into<String>, node: impl Node) -> NodeRef {
        self.inner.add(name, node)
    }

    /// Adds a node that is already shared.
    pub fn add_shared(&mut self, name: impl Into<String>, node: Arc<dyn DynNode>) -> NodeRef {
        self.inner.add_shared(name, node)
    }

    /// The handle of the node called `name`.
    pub fn node(&self, name: &str) -> Option<NodeRef> {
        self.inner.node(name)
    }

    /// Adds every edge of a chain (`a >> b >> c`, `a.on("k", v) >> b`, `a.otherwise() >> c`).
    pub fn connect(&mut self, chain: impl Into<Chain>) -> &mut Self {
        self.inner.connect(chain);
        self
    }

    /// Adds an unconditional edge.
    pub fn edge(&mut self, from: impl Into<Endpoint>, to: impl Into<Endpoint>) -> &mut Self {
        self.inner.edge(from, to);
        self
    }

    /// Adds a conditional edge.
    pub fn edge_when(
        &mut self,
        from: impl Into<Endpoint>,
        to: impl Into<Endpoint>,
        condition: EdgeCondition,
    ) -> &mut Self {
        self.inner.edge_when(from, to, condition);
        self
    }

    /// Adds an edge whose condition is an expression (errors reported by `build`).
    pub fn edge_when_expr(
        &mut self,
        from: impl Into<Endpoint>,
        to: impl Into<Endpoint>,
        expression: &str,
    ) -> &mut Self {
        self.inner.edge_when_expr(from, to, expression);
        self
    }

    /// Adds an edge with a condition and a priority (higher fires first).
    pub fn edge_with(
        &mut self,
        from: impl Into<Endpoint>,
        to: impl Into<Endpoint>,
        condition: EdgeCondition,
        priority: i32,
    ) -> &mut Self {
        self.inner.edge_with(from, to, condition, priority);
        self
    }

    /// Sets the start node.
    pub fn start(&mut self, node: impl Into<Endpoint>) -> &mut Self {
        self.inner.start(node);
        self
    }

    /// Sets the standard-mode step limit (default 10,000).
    pub fn step_limit(&mut self, limit: u64) -> &mut Self {
        self.inner.step_limit(limit);
        self
    }

    /// Sets the default mailbox capacity of long-running runs (default
    /// [`spark_adk_edges::DEFAULT_MAILBOX_CAPACITY`], 1024).
    pub fn mailbox_capacity(&mut self, capacity: usize) -> &mut Self {
        self.inner.mailbox_capacity(capacity);
        self
    }

    /// Sets the initial graph state of every run (a task can replace it).
    pub fn initial_state(
        &mut self,
        state: spark_adk_core::Map<String, spark_adk_core::Value>,
    ) -> &mut Self {
        self.inner.initial_state(state);
        self
    }

    /// Uses `bus` for the events of every run (for example one with a replay buffer).
    pub fn event_bus(&mut self, bus: EventBus) -> &mut Self {
        self.inner.event_bus(bus);
        self
    }

    /// Overrides one node's mailbox capacity.
    pub fn node_mailbox_capacity(&mut self, node: NodeRef, capacity: usize) -> &mut Self {
        self.inner.node_mailbox_capacity(node, capacity);
        self
    }

    /// Validates and builds the graph; the builder is left empty.
    ///
    /// # Errors
    /// Every problem at once: see [`spark_adk_edges::GraphBuilder::build`].
    pub fn build(&mut self) -> Result<Graph, BuildErrors> {
        self.inner.build().map(Graph::from)
    }
}
