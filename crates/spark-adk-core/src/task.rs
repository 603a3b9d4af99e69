//! Tasks: what to run, in which mode, under which budget.

use std::time::Duration;

use serde::Serialize;

use serde_json::{Map, Value};

use crate::{Budget, NodeMessage, SinkRetention};

/// The execution mode of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum TaskType {
    /// One node at a time, following edge conditions (the default).
    #[default]
    Standard,
    /// Every node is a concurrent worker with a mailbox.
    LongRunning,
}

/// One run of a graph: its input, its mode and its limits (the seed's `Task`).
///
/// # Example
///
/// ```
/// use spark_adk_core::{Budget, Task, TaskType};
/// use serde_json::json;
///
/// let standard = Task::new(json!({ "data": "value" }));
/// assert_eq!(standard.task_type, TaskType::Standard);
///
/// let long = Task::long_running(json!({ "query": "start" }))
///     .with_budget(Budget::seconds(60.0)?);
/// assert_eq!(long.budget.and_then(|b| b.max_seconds()), Some(60.0));
/// # Ok::<(), spark_adk_core::BudgetError>(())
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Task {
    /// The input delivered to the start node.
    pub inputs: NodeMessage,
    /// The execution mode.
    pub task_type: TaskType,
    /// Resource limits; `None` means unlimited.
    pub budget: Option<Budget>,
    /// Standard mode only: the most activations this run may perform. `None` uses the graph's
    /// limit (10,000 unless the graph sets another).
    pub max_steps: Option<u64>,
    /// The initial graph state of this run; `None` uses the graph's initial state.
    pub state: Option<Map<String, Value>>,
    /// Long-running mode: how long a graceful stop waits for running activations (and
    /// shutdown deliveries) before they are dropped. `None` means [`Task::DEFAULT_GRACE`].
    pub grace: Option<Duration>,
    /// Long-running mode: how many sink outputs the result keeps. `None` uses the executor's
    /// default (every one for a run to its end, the most recent 1,024 for a spawned run).
    pub sink_retention: Option<SinkRetention>,
    /// Long-running mode: the mailbox capacity of every node that has no capacity of its own
    /// (replacing the graph's default). `None` uses the graph's.
    pub mailbox_capacity: Option<usize>,
    /// Long-running mode: whether the run ends once it is quiescent. `None` uses the
    /// executor's default (`true` for a run to its end, `false` for a spawned run).
    pub stop_on_quiescence: Option<bool>,
}

impl Task {
    /// A standard-mode task with the given input.
    pub fn new(inputs: impl Into<NodeMessage>) -> Self {
        Self {
            inputs: inputs.into(),
            task_type: TaskType::Standard,
            budget: None,
            max_steps: None,
            state: None,
            grace: None,
            sink_retention: None,
            mailbox_capacity: None,
            stop_on_quiescence: None,
        }
    }

    /// The grace period of a graceful stop when the task sets none: 30 seconds.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

    /// Sets the grace period (long-running mode): when a graceful stop begins (budget,
    /// shutdown, another node's failure), activations still running get this long to finish;
    /// then the run's cancellation token fires, they are dropped (their messages counted
    /// unprocessed, their number in `RunMetadata::activations_dropped`) and the run returns.
    /// Zero drops them at once. So a run with a time budget returns by `max_seconds + grace`.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// The grace period this task uses: [`Task::grace`], or [`Task::DEFAULT_GRACE`].
    pub fn grace_period(&self) -> Duration {
        self.grace.unwrap_or(Self::DEFAULT_GRACE)
    }

    /// A standard-mode task (the same as [`Task::new`], named for symmetry).
    pub fn standard(inputs: impl Into<NodeMessage>) -> Self {
        Self::new(inputs)
    }

    /// A long-running task with the given input.
    pub fn long_running(inputs: impl Into<NodeMessage>) -> Self {
        Self::new(inputs).with_type(TaskType::LongRunning)
    }

    /// Sets the execution mode.
    #[must_use]
    pub fn with_type(mut self, task_type: TaskType) -> Self {
        self.task_type = task_type;
        self
    }

    /// Sets the budget.
    #[must_use]
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sets the initial graph state of this run (replacing the graph's initial state).
    #[must_use]
    pub fn with_state(mut self, state: Map<String, Value>) -> Self {
        self.state = Some(state);
        self
    }

    /// Sets the per-run step limit (standard mode).
    #[must_use]
    pub fn with_max_steps(mut self, max_steps: u64) -> Self {
        self.max_steps = Some(max_steps);
        self
    }

    /// Sets how many sink outputs the result keeps (long-running mode). A spawned run that
    /// produces outputs for days reads them through its handle's `subscribe` and keeps only the
    /// last few; the result reports how many it did not keep in
    /// `RunMetadata::sink_outputs_discarded`. Standard mode keeps every sink output (its step
    /// limit bounds them).
    ///
    /// ```
    /// use spark_adk_core::{SinkRetention, Task};
    /// use serde_json::json;
    ///
    /// let task = Task::long_running(json!({}))
    ///     .with_sink_retention(SinkRetention::Last(100))
    ///     .with_mailbox_capacity(64)
    ///     .with_quiescence(true);
    /// assert_eq!(task.sink_retention, Some(SinkRetention::Last(100)));
    /// ```
    #[must_use]
    pub fn with_sink_retention(mut self, retention: SinkRetention) -> Self {
        self.sink_retention = Some(retention);
        self
    }

    /// Sets the mailbox capacity of this run's nodes (long-running mode): every node without a
    /// capacity of its own gets `capacity` instead of the graph's default (a node whose own
    /// capacity equals the graph's default counts as having none). Zero is rejected when the
    /// run starts (`RunError::InvalidTask`).
    #[must_use]
    pub fn with_mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = Some(capacity);
        self
    }

    /// Sets whether the run ends once it is quiescent: every mailbox empty and no worker
    /// processing (long-running mode). A run to its end stops at quiescence by default; a
    /// spawned run does not (its handle may still send). A run to its end without quiescence
    /// needs a budget, or it could never end.
    #[must_use]
    pub fn with_quiescence(mut self, stop: bool) -> Self {
        self.stop_on_quiescence = Some(stop);
        self
    }
}
