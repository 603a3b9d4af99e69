//! The standard-mode executor of Spark for Rust: one node at a time, deterministic.
//!
//! [`SequentialExecutor`] runs a [`Topology`] as a FIFO queue of activations that starts with the
//! start node and the task input. After a node runs, the targets of its matching edges are
//! appended in firing order, each with its own (shared, copy-on-write) copy of the output; a node
//! that receives k messages runs k times. The result is the most recent output that matched no
//! edge, plus every such sink output in completion order.
//!
//! Before each activation the checks run in this order: time budget, token budget, step limit.
//! A node error or panic stops the run with an error naming the node.
//!
//! **Layering**: depends on `spark-core`, `spark-edges` and tokio (`time`, `macros`; it needs
//! a tokio runtime with timers only when a time budget is set). It never depends on
//! `spark-mailbox`: the two executors are independent.
//!
//! # Example
//!
//! ```
//! use spark_core::{node_fn, NodeError, Task};
//! use spark_edges::GraphBuilder;
//! use spark_sequential::SequentialExecutor;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut g = GraphBuilder::new();
//! let inc = |name: &str| node_fn(|ctx| async move {
//!     let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
//!     Ok::<_, NodeError>(json!({ "n": n + 1 }))
//! });
//! let a = g.add("a", inc("a"));
//! let b = g.add("b", inc("b"));
//! g.connect(a >> b);
//! let topology = g.start(a).build()?;
//!
//! let result = SequentialExecutor::new().run(&topology, Task::new(json!({ "n": 40 }))).await?;
//! assert_eq!(result.content()["n"], 42);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use spark_core::panic::CatchUnwind;
use spark_core::{
    BudgetKind, CancellationToken, Context, EventKind, GraphState, NodeCount, NodeMessage,
    RunCounts, RunError, RunMetadata, RunResult, RunScope, StopReason, Task, TaskType,
};
use spark_edges::Topology;
use tokio::time::Instant;
use tracing::Instrument;

/// Runs graphs in standard mode. Stateless and cheap: one executor can run any number of graphs,
/// also concurrently.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequentialExecutor {
    _private: (),
}

/// No node has started yet.
const NONE_RUNNING: usize = usize::MAX;

/// What the loop has done so far; read after the loop's future ended (also by a timeout).
struct Progress {
    current: usize,
    accepted: u64,
    processed: u64,
}

impl SequentialExecutor {
    /// A new executor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` on `topology` to completion.
    ///
    /// # Errors
    /// - [`RunError::InvalidTask`] for a task that is not [`TaskType::Standard`] or has a step
    ///   limit of zero;
    /// - [`RunError::NodeFailed`] / [`RunError::NodePanicked`] naming the node;
    /// - [`RunError::ConditionPanicked`] naming the edge;
    /// - [`RunError::Timeout`] when the time budget runs out;
    /// - [`RunError::TokenBudgetExhausted`] when recorded tokens reached the token budget before an
    ///   activation;
    /// - [`RunError::StepLimitExceeded`] when the step limit is reached.
    ///
    /// # Cancel safety
    /// Dropping the future stops the run after the current `.await` point of the running node;
    /// nothing is left running in the background.
    pub async fn run(&self, topology: &Topology, task: Task) -> Result<RunResult, RunError> {
        if task.task_type != TaskType::Standard {
            return Err(RunError::InvalidTask(format!(
                "the sequential executor runs standard tasks, got {:?}",
                task.task_type
            )));
        }
        let state = GraphState::new(
            task.state
                .unwrap_or_else(|| topology.initial_state().clone()),
        );
        let scope = Arc::new(RunScope::with_parts(
            task.budget,
            CancellationToken::new(),
            state,
        ));
        self.run_scoped(topology, task.inputs, task.max_steps, scope)
            .await
    }

    /// Runs `inputs` on `topology` within an existing run scope (its budget, token counter and
    /// cancellation). Used for subgraphs, whose scope is derived from the parent's.
    ///
    /// # Errors
    /// As [`SequentialExecutor::run`], plus [`RunError::Cancelled`] when the scope's cancellation
    /// token is cancelled from outside.
    ///
    /// # Cancel safety
    /// As [`SequentialExecutor::run`].
    pub async fn run_scoped(
        &self,
        topology: &Topology,
        inputs: NodeMessage,
        max_steps: Option<u64>,
        scope: Arc<RunScope>,
    ) -> Result<RunResult, RunError> {
        let limit = max_steps.unwrap_or_else(|| topology.step_limit());
        if limit == 0 {
            return Err(RunError::InvalidTask(
                "the step limit must be at least 1".to_owned(),
            ));
        }
        let bus = topology.events();
        let events = bus.is_active();
        if events {
            bus.publish(
                scope.run_id(),
                scope.elapsed(),
                EventKind::GraphStarted {
                    task_type: TaskType::Standard,
                },
            );
        }
        let mut progress = Progress {
            current: NONE_RUNNING,
            accepted: 0,
            processed: 0,
        };
        let cancel = scope.cancellation().clone();
        let body = async {
            tokio::select! {
                biased;
                r = run_loop(topology, inputs, limit, &scope, &mut progress, events) => r,
                () = cancel.cancelled() => Err(RunError::Cancelled),
            }
        };
        let span = tracing::info_span!("spark.run", run_id = scope.run_id(), mode = "standard");
        let body = async {
            if span.is_disabled() {
                body.await
            } else {
                body.instrument(span).await
            }
        };
        let outcome = match (scope.deadline(), scope.budget().max_time()) {
            (Some(deadline), Some(budget)) => {
                let timed = tokio::time::timeout_at(deadline, body).await;
                timed.unwrap_or_else(|_| {
                    let node = if progress.current == NONE_RUNNING {
                        topology.start()
                    } else {
                        progress.current
                    };
                    Err(RunError::Timeout {
                        budget,
                        node: topology.node(node).map(|n| n.name.to_string()),
                        counts: RunCounts::default(),
                    })
                })
            }
            _ => body.await,
        };
        let outcome = outcome.map_err(|e| {
            e.with_counts(RunCounts {
                accepted: progress.accepted,
                processed: progress.processed,
                unprocessed: progress.accepted.saturating_sub(progress.processed),
                tokens_used: scope.tokens_used(),
            })
        });
        // The run is over, whatever its outcome: tell anything a node started in the background.
        scope.cancellation().cancel();
        if events {
            publish_end(topology, &scope, &outcome);
        }
        outcome.map(|result| result.with_state(scope.state().snapshot()))
    }
}

fn publish_end(topology: &Topology, scope: &RunScope, outcome: &Result<RunResult, RunError>) {
    let bus = topology.events();
    let (run_id, elapsed) = (scope.run_id(), scope.elapsed());
    match outcome {
        Err(RunError::Timeout { .. }) => bus.publish(
            run_id,
            elapsed,
            EventKind::BudgetExhausted {
                kind: BudgetKind::Time,
            },
        ),
        Err(RunError::TokenBudgetExhausted { .. }) => bus.publish(
            run_id,
            elapsed,
            EventKind::BudgetExhausted {
                kind: BudgetKind::Tokens,
            },
        ),
        _ => {}
    }
    let (stop_reason, error) = match outcome {
        Ok(r) => (Some(r.metadata.stop_reason), None),
        Err(e) => (None, Some(e.to_string())),
    };
    bus.publish(
        run_id,
        elapsed,
        EventKind::GraphFinished { stop_reason, error },
    );
}

async fn run_loop(
    topology: &Topology,
    inputs: NodeMessage,
    limit: u64,
    scope: &Arc<RunScope>,
    progress: &mut Progress,
    events: bool,
) -> Result<RunResult, RunError> {
    let bus = topology.events();
    let nodes = topology.nodes();
    let mut queue: VecDeque<(usize, NodeMessage)> = VecDeque::with_capacity(4);
    queue.push_back((topology.start(), inputs));
    let mut per_node = vec![0_u64; nodes.len()];
    let mut sinks: Vec<(Arc<str>, NodeMessage)> = Vec::new();
    let mut steps: u64 = 0;
    let mut accepted: u64 = 1;
    progress.accepted = accepted;
    let budget = scope.budget();

    while let Some((index, message)) = queue.pop_front() {
        let Some(entry) = nodes.get(index) else {
            return Err(RunError::InvalidTask(format!(
                "node index {index} is outside the graph"
            )));
        };
        if scope.cancellation().is_cancelled() {
            return Err(RunError::Cancelled);
        }
        // The checks, in the order SEMANTICS section 9 fixes: time, tokens, step limit.
        if scope.deadline_passed() {
            return Err(RunError::Timeout {
                budget: budget.max_time().unwrap_or_default(),
                node: Some(entry.name.to_string()),
                counts: RunCounts::default(),
            });
        }
        if let Some(max) = budget.max_tokens() {
            let used = scope.tokens_used();
            if used >= max {
                return Err(RunError::TokenBudgetExhausted {
                    used,
                    max,
                    node: entry.name.to_string(),
                    counts: RunCounts::default(),
                });
            }
        }
        if steps >= limit {
            return Err(RunError::StepLimitExceeded {
                node: entry.name.to_string(),
                limit,
                counts: RunCounts::default(),
            });
        }

        progress.current = index;
        let ctx = Context::new(message, Arc::clone(&entry.name), index, Arc::clone(scope));
        if events {
            bus.publish(
                scope.run_id(),
                scope.elapsed(),
                EventKind::NodeStarted {
                    node: Arc::clone(&entry.name),
                },
            );
        }
        let started = events.then(Instant::now);
        let activation = CatchUnwind::new(entry.node.process_dyn(&ctx));
        let span = tracing::debug_span!("spark.node", node = %entry.name, mode = "standard");
        let outcome = if span.is_disabled() {
            activation.await
        } else {
            activation.instrument(span).await
        };
        if let Some(started) = started {
            let kind = match &outcome {
                Ok(Ok(_)) => EventKind::NodeFinished {
                    node: Arc::clone(&entry.name),
                    duration: started.elapsed(),
                },
                Ok(Err(e)) => EventKind::NodeFailed {
                    node: Arc::clone(&entry.name),
                    error: e.to_string(),
                },
                Err(panic) => EventKind::NodeFailed {
                    node: Arc::clone(&entry.name),
                    error: format!("panicked: {panic}"),
                },
            };
            bus.publish(scope.run_id(), scope.elapsed(), kind);
        }
        steps += 1;
        progress.processed = steps;
        if scope.cancellation().is_cancelled() {
            // Cancelled from outside while the node ran: whatever it returned (often an error
            // caused by the cancellation, e.g. from a subgraph), the run was cancelled.
            return Err(RunError::Cancelled);
        }
        if let Some(count) = per_node.get_mut(index) {
            *count += 1;
        }
        let output = match outcome {
            Ok(Ok(output)) => output,
            Ok(Err(source)) => {
                return Err(RunError::NodeFailed {
                    node: entry.name.to_string(),
                    source,
                    counts: RunCounts::default(),
                })
            }
            Err(message) => {
                return Err(RunError::NodePanicked {
                    node: entry.name.to_string(),
                    message,
                    counts: RunCounts::default(),
                })
            }
        };
        let fired = topology.route(index, &output, |to| {
            queue.push_back((to, output.clone()));
        })?;
        accepted += fired as u64;
        progress.accepted = accepted;
        if fired == 0 {
            sinks.push((Arc::clone(&entry.name), output));
        }
    }

    let mut metadata = RunMetadata::new(TaskType::Standard);
    metadata.stop_reason = StopReason::Completed;
    metadata.steps = steps;
    metadata.tokens_used = scope.tokens_used();
    metadata.elapsed = scope.elapsed();
    metadata.accepted = accepted;
    metadata.processed = steps;
    metadata.unprocessed = accepted.saturating_sub(steps);
    metadata.per_node = topology
        .names()
        .iter()
        .zip(per_node)
        .map(|(node, processed)| NodeCount {
            node: Arc::clone(node),
            processed,
        })
        .collect();
    Ok(RunResult::new(sinks, metadata))
}
