//! [`Graph`] and its [`GraphBuilder`]: build once, run many times in either mode.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;
use spark_adk_core::{
    Event, EventBus, NodeMessage, RunError, RunResult, StreamOptions, Task, TaskType,
};
use spark_adk_edges::Topology;
use spark_adk_mailbox::{LongRunningExecutor, RunHandle};
use spark_adk_sequential::SequentialExecutor;

use crate::RunStream;

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
    /// A long-running task's options ([`Task::with_sink_retention`],
    /// [`Task::with_mailbox_capacity`], [`Task::with_quiescence`]) apply to its run.
    ///
    /// # Errors
    /// Whatever the executor reports: see [`RunError`].
    ///
    /// # Cancel safety
    /// In standard mode, dropping the future stops the run at the running node's next `.await`.
    /// In long-running mode, dropping it begins a graceful stop of the workers.
    #[inline]
    pub fn run(&self, task: Task) -> impl Future<Output = Result<RunResult, RunError>> + Send + '_ {
        // The executor's future itself, not one awaiting it: a standard run's result is not
        // moved once more, nor polled through one more layer.
        match task.task_type {
            TaskType::Standard => Either::Left(SequentialExecutor::new().run(&self.topology, task)),
            // Boxed so that the standard-mode future stays small (it is moved on every run).
            TaskType::LongRunning => {
                let topology = Arc::clone(&self.topology);
                Either::Right(Box::pin(async move {
                    LongRunningExecutor::new().run(topology, task).await
                }))
            }
        }
    }

    /// Starts a long-running task in the background and returns its [`RunHandle`]: send
    /// messages into named nodes, subscribe to sink outputs, request a shutdown, await the
    /// result. The run does not end at quiescence (the handle may still send); it ends on
    /// shutdown, budget, error, or when the handle is dropped.
    ///
    /// Per-run options go on the task: [`Task::with_sink_retention`] (default here: the most
    /// recent 1,024 sink outputs are kept for the result, so an endless stream keeps bounded
    /// memory; read them all through [`RunHandle::subscribe`]), [`Task::with_mailbox_capacity`],
    /// [`Task::with_quiescence`].
    ///
    /// # Errors
    /// [`RunError::InvalidTask`] for a standard task, when called outside a tokio runtime, or
    /// for a mailbox capacity of zero.
    pub fn spawn(&self, task: Task) -> Result<RunHandle, RunError> {
        LongRunningExecutor::new().spawn(Arc::clone(&self.topology), task)
    }

    /// Runs a task (either mode) and streams its events with their payloads: each node's
    /// input as it starts, what it emits with [`Context::emit`](crate::Context::emit) (e.g. LLM
    /// tokens), its output as it finishes, sink outputs, and last the result or error
    /// ([`StreamEvent::Finished`](crate::StreamEvent::Finished)). Lossless with backpressure:
    /// see [`stream_with`](Self::stream_with) for the capacity and the lagging mode, and
    /// [`RunStream`] for what dropping the stream does. Call it within a tokio runtime (the
    /// run works in a task of its own); outside one, the only item is
    /// [`RunError::InvalidTask`].
    ///
    /// # Example
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use spark_adk::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut g = Graph::builder();
    /// let llm = g.add("llm", node_fn(|ctx| async move {
    ///     for token in ["Hel", "lo"] {
    ///         ctx.emit(token).await;
    ///     }
    ///     Ok(json!({ "text": "Hello" }))
    /// }));
    /// let graph = g.start(llm).build()?;
    ///
    /// let mut tokens = String::new();
    /// let mut events = graph.stream(Task::new(json!({})));
    /// while let Some(event) = events.next().await {
    ///     match event {
    ///         StreamEvent::Emitted { value, .. } => tokens.push_str(value.as_str().unwrap_or("")),
    ///         StreamEvent::Finished(result) => assert_eq!(result?.content()["text"], "Hello"),
    ///         _ => {}
    ///     }
    /// }
    /// assert_eq!(tokens, "Hello");
    /// # Ok(()) }
    /// ```
    pub fn stream(&self, task: Task) -> RunStream {
        self.stream_with(task, StreamOptions::default())
    }

    /// [`stream`](Self::stream) with a channel capacity and a mode: lossless (the run waits
    /// while the channel is full) or lagging (the run never waits; what does not fit is
    /// dropped and reported as [`StreamEvent::Lagged`](crate::StreamEvent::Lagged)). A
    /// capacity of 0 makes [`RunError::InvalidTask`] the only item.
    pub fn stream_with(&self, task: Task, options: StreamOptions) -> RunStream {
        RunStream::start(Arc::clone(&self.topology), task, options)
    }

    /// Runs a standard-mode task with `inputs` (the seed's `graph.run(initial_inputs=...)`).
    ///
    /// # Errors
    /// As [`Graph::run`].
    ///
    /// # Cancel safety
    /// As [`Graph::run`].
    pub async fn run_with(&self, inputs: impl Into<NodeMessage>) -> Result<RunResult, RunError> {
        self.run(Task::new(inputs)).await
    }

    /// Runs a standard-mode task with an empty input (the seed's `await graph.run()`).
    ///
    /// # Errors
    /// As [`Graph::run`].
    ///
    /// # Cancel safety
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
/// This is [`spark_adk_edges::GraphBuilder`] with [`Graph`] as what `build` returns: every
/// method is documented there.
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
pub type GraphBuilder = spark_adk_edges::GraphBuilder<Graph>;
