//! Helpers shared by the standard-mode test files.
#![allow(dead_code, unused_imports, clippy::panic)]

/// Panics with its message when dropped (unless the thread is already panicking).
pub struct PanicOnDrop(pub &'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("{}", self.0);
        }
    }
}

use std::future::Future;

use spark_adk_core::{NodeMessage, RunError, RunResult, Task};
use spark_adk_edges::{GraphBuilder, Topology};
use spark_adk_sequential::SequentialExecutor;

/// What a test graph is here: the built topology, run by [`SequentialExecutor`].
pub type Graph = Topology;

/// The facade's `Graph` methods the standard-mode tests use, on a [`Topology`] run by the
/// standard-mode executor, so the tests read as a user's code without depending on the facade.
pub trait GraphExt {
    /// A new builder (`Graph::builder()`).
    fn builder() -> GraphBuilder;
    /// Runs `task` in standard mode.
    fn run(&self, task: Task) -> impl Future<Output = Result<RunResult, RunError>> + Send + '_;
    /// Runs a standard task with `inputs`.
    fn run_with(
        &self,
        inputs: impl Into<NodeMessage>,
    ) -> impl Future<Output = Result<RunResult, RunError>> + Send + '_;
    /// Runs a standard task with an empty input.
    fn run_default(&self) -> impl Future<Output = Result<RunResult, RunError>> + Send + '_;
    /// The topology itself (the facade's `Graph::topology`).
    fn topology(&self) -> &Topology;
}

impl GraphExt for Topology {
    fn builder() -> GraphBuilder {
        GraphBuilder::new()
    }

    fn run(&self, task: Task) -> impl Future<Output = Result<RunResult, RunError>> + Send + '_ {
        SequentialExecutor::new().run(self, task)
    }

    fn run_with(
        &self,
        inputs: impl Into<NodeMessage>,
    ) -> impl Future<Output = Result<RunResult, RunError>> + Send + '_ {
        self.run(Task::new(inputs))
    }

    fn run_default(&self) -> impl Future<Output = Result<RunResult, RunError>> + Send + '_ {
        self.run(Task::default())
    }

    fn topology(&self) -> &Topology {
        self
    }
}

/// What the facade's prelude gives a test, from the member crates.
pub mod prelude {
    pub use super::{Graph, GraphExt};
    pub use spark_adk_core::{
        json, node_fn, Budget, Context, Event, EventKind, GraphState, Node, NodeError, NodeMessage,
        RunError, RunResult, StopReason, Task, TaskType, Value,
    };
    pub use spark_adk_edges::{EdgeCondition, GraphBuilder, NodeRef};
    pub use spark_adk_sequential::{SequentialExecutor, SubgraphNode};
}
