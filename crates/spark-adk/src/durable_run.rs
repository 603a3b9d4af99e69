//! Durable runs on [`Graph`]: [`Graph::run_durable`], [`Graph::resume`], [`Graph::resume_with`].
//! The executor side is `spark_adk_sequential`'s durable module; the rules are in
//! docs/runtime-semantics.md, "Durable runs".

use spark_adk_core::{RunError, RunResult, Task, TaskType, Value};
use spark_adk_sequential::{DurableOptions, DurableRunError, SequentialExecutor};

use crate::Graph;

impl Graph {
    /// Runs a standard task as a durable run: the run's header and one record per committed
    /// activation go to `options.store` under `options.run_id`, so that the run can be resumed
    /// after a crash ([`Graph::resume`]) or an interrupt ([`Graph::resume_with`]).
    ///
    /// A node that calls [`Context::interrupt`](crate::Context::interrupt) stops the run with
    /// [`StopReason::Interrupted`](crate::StopReason::Interrupted); the node and its question are
    /// in the result's [`RunMetadata::interrupt`](crate::RunMetadata::interrupt).
    ///
    /// # Errors
    /// As [`SequentialExecutor::run_durable`]; a long-running task is refused (durable
    /// long-running runs come later).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use spark_adk::prelude::*;
    /// use spark_adk::{DurableOptions, MemoryStore, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut g = Graph::builder();
    /// let ask = g.add("ask", node_fn(|ctx| async move {
    ///     match ctx.resume_value() {
    ///         Some(answer) => Ok(json!({ "answer": answer })),
    ///         None => Err(ctx.interrupt(json!("what is the answer?"))),
    ///     }
    /// }));
    /// let graph = g.start(ask).build()?;
    /// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    ///
    /// let stopped = graph.run_durable(Task::new(json!({})), DurableOptions::new(store.clone(), "q")).await?;
    /// assert_eq!(stopped.metadata.stop_reason, StopReason::Interrupted);
    ///
    /// let done = graph.resume_with(DurableOptions::new(store, "q"), json!(42)).await?;
    /// assert_eq!(done.content()["answer"], 42);
    /// # Ok(()) }
    /// ```
    pub async fn run_durable(
        &self,
        task: Task,
        options: DurableOptions,
    ) -> Result<RunResult, DurableRunError> {
        if task.task_type != TaskType::Standard {
            return Err(RunError::InvalidTask(
                "durable runs are standard-mode runs for now; long-running durable runs are not \
                 supported yet"
                    .to_owned(),
            )
            .into());
        }
        SequentialExecutor::new()
            .run_durable(self.topology(), task, options)
            .await
    }

    /// Resumes the durable run `options.run_id` from its log (after a crash, a failed commit
    /// or a stop): the queue, step count, tokens, state and sink outputs come back, the
    /// activation that was running runs again (same [`Context::activation_id`](crate::Context::activation_id)),
    /// and the run goes on.
    ///
    /// # Errors
    /// As [`SequentialExecutor::resume`]: a conflict when another resumer came first, a
    /// refusal naming the differences when this graph is not the one that started the run, and
    /// a refusal when the run waits for an interrupt's answer (use [`Graph::resume_with`]).
    pub async fn resume(&self, options: DurableOptions) -> Result<RunResult, DurableRunError> {
        SequentialExecutor::new()
            .resume(self.topology(), options, None)
            .await
    }

    /// Resumes an interrupted durable run with `value`, the answer to its pending interrupt:
    /// the interrupted node runs again on the same message and reads `value` from
    /// [`Context::resume_value`](crate::Context::resume_value). Answering the same interrupt
    /// twice is a conflict.
    ///
    /// # Errors
    /// As [`Graph::resume`], and a conflict when the run has no pending interrupt.
    pub async fn resume_with(
        &self,
        options: DurableOptions,
        value: impl Into<Value>,
    ) -> Result<RunResult, DurableRunError> {
        SequentialExecutor::new()
            .resume(self.topology(), options, Some(value.into()))
            .await
    }
}
