//! Durable runs on [`Graph`]: [`Graph::run_durable`], [`Graph::spawn_durable`],
//! [`Graph::resume`], [`Graph::resume_with`], [`Graph::resume_spawned`]. The executor side is
//! `spark_adk_sequential`'s durable module (standard mode) and `spark_adk_mailbox`'s (long-running
//! mode); the rules are in docs/runtime-semantics.md, "Durable runs".

use std::sync::Arc;

use spark_adk_core::{RunError, RunResult, Task, TaskType, Value};
use spark_adk_durable::{RunMode, StoreExt};
use spark_adk_mailbox::{LongRunningExecutor, RunHandle};
use spark_adk_sequential::{DurableOptions, DurableRunError, SequentialExecutor};

use crate::Graph;

impl Graph {
    /// Runs a task as a durable run: the run's header and one record per committed activation
    /// go to `options.store` under `options.run_id`, so that the run can be resumed after a
    /// crash ([`Graph::resume`]) or an interrupt ([`Graph::resume_with`]). A standard task runs
    /// on the standard executor, a long-running task on the long-running one (until quiescence
    /// by default; see [`Graph::spawn_durable`] for a run fed through a handle).
    ///
    /// A node that calls [`Context::interrupt`](crate::Context::interrupt) stops the run with
    /// [`StopReason::Interrupted`](crate::StopReason::Interrupted); the node and its question are
    /// in the result's [`RunMetadata::interrupt`](crate::RunMetadata::interrupt).
    ///
    /// # Errors
    /// As [`SequentialExecutor::run_durable`] or [`LongRunningExecutor::run_durable`].
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
        if task.task_type == TaskType::LongRunning {
            return LongRunningExecutor::new()
                .run_durable(Arc::clone(self.topology()), task, options)
                .await;
        }
        SequentialExecutor::new()
            .run_durable(self.topology(), task, options)
            .await
    }

    /// Starts a long-running task as a durable run in the background and returns its handle:
    /// every message sent through the handle is recorded as accepted in the run's log before
    /// the send returns. See [`LongRunningExecutor::spawn_durable`].
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use spark_adk::prelude::*;
    /// use spark_adk::{DurableOptions, MemoryStore, Store};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut g = Graph::builder();
    /// let echo = g.add("echo", node_fn(|ctx| async move {
    ///     Ok::<_, NodeError>(ctx.inputs().content.clone())
    /// }));
    /// let graph = g.start(echo).build()?;
    /// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    ///
    /// let handle = graph
    ///     .spawn_durable(Task::long_running(json!({ "n": 0 })), DurableOptions::new(store.clone(), "chat"))
    ///     .await?;
    /// handle.send("echo", json!({ "n": 1 })).await?; // in the log once this returns (Sync) or queued (Async)
    /// handle.shutdown();
    /// let stopped = handle.wait().await?;
    ///
    /// // Later, maybe in another process: what was accepted and not processed runs now; the
    /// // result holds the outputs of both runs.
    /// let resumed = graph.resume(DurableOptions::new(store, "chat")).await?;
    /// assert!(stopped.sink_outputs().len() <= 2);
    /// assert_eq!(resumed.sink_outputs().len(), 2);
    /// assert_eq!(resumed.metadata.accepted, resumed.metadata.processed + resumed.metadata.unprocessed);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`LongRunningExecutor::spawn_durable`]; a standard task is refused.
    pub async fn spawn_durable(
        &self,
        task: Task,
        options: DurableOptions,
    ) -> Result<RunHandle, DurableRunError> {
        if task.task_type != TaskType::LongRunning {
            return Err(RunError::InvalidTask(
                "spawn_durable runs long-running tasks; use run_durable for a standard task"
                    .to_owned(),
            )
            .into());
        }
        LongRunningExecutor::new()
            .spawn_durable(Arc::clone(self.topology()), task, options)
            .await
    }

    /// Resumes a durable long-running run in the background with a new handle (see
    /// [`Graph::resume`]); `value` answers its pending interrupt.
    ///
    /// # Errors
    /// As [`LongRunningExecutor::resume_spawned`].
    pub async fn resume_spawned(
        &self,
        options: DurableOptions,
        value: Option<Value>,
    ) -> Result<RunHandle, DurableRunError> {
        LongRunningExecutor::new()
            .resume_spawned(Arc::clone(self.topology()), options, value)
            .await
    }

    /// The mode the run `options.run_id` was started in, read from its log's header.
    async fn mode_of(&self, options: &DurableOptions) -> Result<RunMode, DurableRunError> {
        Ok(options.store.load_run(&options.run_id).await?.header.mode)
    }

    /// Resumes the durable run `options.run_id` from its log (after a crash, a failed commit
    /// or a stop), in the mode it was started in. Long-running: every mailbox is refilled with
    /// the messages accepted and not processed, in log order (see
    /// [`LongRunningExecutor::resume_durable`]). Standard: the queue, step count, tokens, state and sink outputs come back, the
    /// activation that was running runs again (same [`Context::activation_id`](crate::Context::activation_id)),
    /// and the run goes on.
    ///
    /// # Errors
    /// As [`SequentialExecutor::resume`]: a conflict when another resumer came first, a
    /// refusal naming the differences when this graph is not the one that started the run, and
    /// a refusal when the run waits for an interrupt's answer (use [`Graph::resume_with`]).
    pub async fn resume(&self, options: DurableOptions) -> Result<RunResult, DurableRunError> {
        if self.mode_of(&options).await? == RunMode::LongRunning {
            return LongRunningExecutor::new()
                .resume_durable(Arc::clone(self.topology()), options, None)
                .await;
        }
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
        if self.mode_of(&options).await? == RunMode::LongRunning {
            return LongRunningExecutor::new()
                .resume_durable(Arc::clone(self.topology()), options, Some(value.into()))
                .await;
        }
        SequentialExecutor::new()
            .resume(self.topology(), options, Some(value.into()))
            .await
    }
}
