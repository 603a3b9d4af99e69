//! [`LongRunningExecutor`]: start one worker per node, drive the run to its end, collect.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use spark_adk_core::{
    BudgetKind, EventKind, GraphState, Map, RunError, RunResult, RunScope, SinkRetention,
    StopReason, StreamSender, Task, TaskType,
};
use spark_adk_edges::Topology;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::catch::call_caught;
use crate::durable::Durable;
use crate::envelope::Envelope;
use crate::handle::RunHandle;
use crate::shared::Shared;
use crate::sinks::OUTPUT_BUFFER;
use crate::worker::run_worker;

/// How many sink outputs a spawned run keeps for its result unless the task or executor says
/// otherwise (see [`LongRunningExecutor::sink_retention`]).
pub const SPAWN_SINK_RETENTION: SinkRetention = SinkRetention::Last(OUTPUT_BUFFER);

/// Runs graphs in long-running mode: every node a concurrent worker (a tokio task) with a
/// bounded mailbox.
///
/// - [`run`](Self::run) ends at quiescence by default (every mailbox empty, no worker
///   processing), or earlier at a budget, a shutdown request or a node error.
/// - [`spawn`](Self::spawn) returns a [`RunHandle`] and does not end at quiescence by default,
///   since the handle may still send.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use spark_adk_core::{node_fn, NodeError, StopReason, Task};
/// use spark_adk_edges::GraphBuilder;
/// use spark_adk_mailbox::LongRunningExecutor;
/// use serde_json::json;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut g = GraphBuilder::new();
/// let inc = || node_fn(|ctx| async move {
///     Ok::<_, NodeError>(json!({ "n": ctx.inputs().content["n"].as_i64().unwrap_or(0) + 1 }))
/// });
/// let a = g.add("a", inc());
/// let b = g.add("b", inc());
/// g.connect(a >> b);
/// let topology = Arc::new(g.start(a).build()?);
///
/// let result = LongRunningExecutor::new()
///     .run(topology, Task::long_running(json!({ "n": 0 })))
///     .await?;
/// assert_eq!(result.content()["n"], 2);
/// assert_eq!(result.metadata.stop_reason, StopReason::Completed);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LongRunningExecutor {
    pub(crate) stop_on_quiescence: Option<bool>,
    pub(crate) sink_retention: Option<SinkRetention>,
}

pub(crate) struct Started {
    pub(crate) shared: Arc<Shared>,
    tracker: TaskTracker,
    grace: Duration,
}

impl LongRunningExecutor {
    /// An executor with the default policies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a run ends once it is quiescent. Default: `true` for [`run`](Self::run),
    /// `false` for [`spawn`](Self::spawn). A task that sets its own
    /// (`Task::with_quiescence`) overrides this.
    #[must_use]
    pub fn stop_on_quiescence(mut self, stop: bool) -> Self {
        self.stop_on_quiescence = Some(stop);
        self
    }

    /// How many sink outputs the result keeps. A task that sets its own
    /// (`Task::with_sink_retention`) overrides this.
    ///
    /// Default for [`run`](Self::run): [`SinkRetention::All`], every one in completion order
    /// (the spec's result). Default for [`spawn`](Self::spawn): [`SPAWN_SINK_RETENTION`], the
    /// most recent 1,024: a spawned run may produce outputs for days, and keeping them all
    /// would grow its memory without bound; it reads them through [`RunHandle::subscribe`]. The
    /// result reports how many it did not keep in `RunMetadata::sink_outputs_discarded`.
    #[must_use]
    pub fn sink_retention(mut self, retention: SinkRetention) -> Self {
        self.sink_retention = Some(retention);
        self
    }

    /// Runs `task` until quiescence, a budget, a shutdown requested by a node, or an error.
    ///
    /// # Errors
    /// - [`RunError::InvalidTask`]: not a long-running task; called outside a tokio runtime;
    ///   a time budget on a runtime without timers; or quiescence disabled without a budget
    ///   (the run could never end);
    /// - [`RunError::NodeFailed`], [`RunError::NodePanicked`], [`RunError::ConditionPanicked`]:
    ///   the other workers were stopped gracefully first;
    /// - [`RunError::Deadlock`]: bounded mailboxes on a cycle filled up.
    ///
    /// A budget ends the run with `Ok` and [`StopReason::Budget`]. Every graceful stop waits
    /// at most the task's grace period (`Task::with_grace`) for running activations, then
    /// drops them: a run with a time budget returns by `max_seconds + grace`.
    ///
    /// Every error the run ends with carries its counts ([`RunError::counts`]).
    ///
    /// # Cancel safety
    /// Dropping the future begins a graceful stop ([`StopReason::HandleDropped`]): the workers
    /// finish their in-flight message, get their shutdown delivery and exit in the background,
    /// within the grace period (then what still runs is dropped): no worker task is left behind.
    pub async fn run(&self, topology: Arc<Topology>, task: Task) -> Result<RunResult, RunError> {
        self.run_to_end(topology, task, None).await
    }

    /// Runs `task` as [`run`](Self::run) does, sending its events with their payloads to
    /// `stream` (what `Graph::stream` uses; see `spark_adk_core::StreamEvent`). Each worker
    /// sends where it starts and finishes an activation; in lossless mode it waits there for
    /// room. Once the consumer dropped the stream, the run stops gracefully with
    /// [`StopReason::HandleDropped`] at the next event a worker sends.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_streamed(
        &self,
        topology: Arc<Topology>,
        task: Task,
        stream: StreamSender,
    ) -> Result<RunResult, RunError> {
        self.run_to_end(topology, task, Some(stream)).await
    }

    /// What [`run`](Self::run) and [`run_streamed`](Self::run_streamed) share: a run to its
    /// end, at quiescence unless the task or the executor turned that off.
    async fn run_to_end(
        &self,
        topology: Arc<Topology>,
        task: Task,
        stream: Option<StreamSender>,
    ) -> Result<RunResult, RunError> {
        let quiescence = task
            .stop_on_quiescence
            .or(self.stop_on_quiescence)
            .unwrap_or(true);
        if !quiescence && task.budget.is_none_or(|b| b.is_unlimited()) {
            return Err(RunError::InvalidTask(
                "a long-running run without quiescence stop and without budget would never end; \
                 set a budget or use spawn() and its handle"
                    .to_owned(),
            ));
        }
        let retention = self.sink_retention.unwrap_or(SinkRetention::All);
        let started = start(topology, task, quiescence, false, retention, stream, None)?;
        drive(started).await
    }

    /// Starts `task` in the background and returns a handle to send messages into nodes,
    /// subscribe to outputs, request a shutdown and await the result. Dropping the handle stops
    /// the run gracefully unless it was [detached](RunHandle::detach).
    ///
    /// The handle's first [`subscribe`](RunHandle::subscribe) sees the run's sink outputs from
    /// the first one, however late it is called.
    ///
    /// # Errors
    /// [`RunError::InvalidTask`] for a task that is not long-running, when called outside a
    /// tokio runtime, for a time budget on a runtime without timers, or for a mailbox capacity
    /// of zero.
    pub fn spawn(&self, topology: Arc<Topology>, task: Task) -> Result<RunHandle, RunError> {
        let quiescence = task
            .stop_on_quiescence
            .or(self.stop_on_quiescence)
            .unwrap_or(false);
        let retention = self.sink_retention.unwrap_or(SPAWN_SINK_RETENTION);
        let started = start(topology, task, quiescence, true, retention, None, None)?;
        let shared = Arc::clone(&started.shared);
        let driver = tokio::spawn(drive(started));
        Ok(RunHandle::new(shared, driver))
    }
}

/// Starts a run: its shared state, the task input, one worker per node. A durable run
/// (`durable`) gets a graph state that logs its writes, and its own workers, which start from
/// the log's pending messages instead of the task input (see `durable.rs`).
pub(crate) fn start(
    topology: Arc<Topology>,
    task: Task,
    stop_on_quiescence: bool,
    with_outputs: bool,
    sink_retention: SinkRetention,
    stream: Option<StreamSender>,
    durable: Option<Arc<Durable>>,
) -> Result<Started, RunError> {
    if task.task_type != TaskType::LongRunning {
        return Err(RunError::InvalidTask(format!(
            "the long-running executor runs long-running tasks, got {:?}",
            task.task_type
        )));
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RunError::InvalidTask(
            "long-running mode must be started from within a tokio runtime; none is running \
             on this thread"
                .to_owned(),
        ));
    }
    if task.budget.and_then(|b| b.max_time()).is_some() && !timers_enabled() {
        return Err(RunError::InvalidTask(
            "a time budget needs the tokio runtime's timers, which are disabled on this \
             runtime; build it with `enable_time()` (or `enable_all()`)"
                .to_owned(),
        ));
    }
    if task.mailbox_capacity == Some(0) {
        return Err(RunError::InvalidTask(
            "the task's mailbox capacity must be at least 1".to_owned(),
        ));
    }
    let sink_retention = task.sink_retention.unwrap_or(sink_retention);
    let grace = task.grace_period();
    let start_node = topology.start();
    let outputs = with_outputs.then(|| broadcast::channel(OUTPUT_BUFFER).0);
    let initial = task
        .state
        .unwrap_or_else(|| topology.initial_state().clone());
    let names = Arc::clone(topology.names());
    let scope = match durable {
        None => RunScope::for_run(task.budget, initial, names),
        Some(_) => RunScope::for_run(task.budget, Map::new(), names)
            .with_state(GraphState::with_write_log(initial)),
    }
    .with_events(topology.events().clone());
    let scope = Arc::new(match stream {
        Some(stream) => scope.with_stream(stream),
        None => scope,
    });
    let shared = Arc::new(
        Shared::new(
            topology,
            scope,
            stop_on_quiescence,
            outputs,
            sink_retention,
            task.mailbox_capacity,
        )
        .with_durable(durable),
    );
    shared.publish(|| EventKind::GraphStarted {
        task_type: TaskType::LongRunning,
    });
    if let Some(durable) = shared.durable() {
        let tracker = TaskTracker::new();
        crate::durable::launch(&shared, durable, &tracker);
        tracker.close();
        return Ok(Started {
            shared,
            tracker,
            grace,
        });
    }
    // The task input goes into the start node's mailbox before any worker runs; a new mailbox
    // always has room for it.
    shared.accounting().accept_outside();
    let delivered = shared
        .mailboxes()
        .get(start_node)
        .and_then(|mailbox| mailbox.try_reserve())
        .is_some_and(|permit| permit.push(Envelope::routed(task.inputs)).is_ok());
    if !delivered {
        return Err(RunError::Internal(
            "the start node's new mailbox refused the task input".to_owned(),
        ));
    }
    let tracker = TaskTracker::new();
    for lane in 0..shared.mailboxes().lanes().len() {
        tracker.spawn(run_worker(Arc::clone(&shared), lane));
    }
    tracker.close();
    Ok(Started {
        shared,
        tracker,
        grace,
    })
}

/// `true` when the current tokio runtime has its timers enabled. Tokio has no query for it:
/// making a timer panics without them, so this makes one and catches the panic (a binary built
/// with `panic = "abort"` cannot catch it; there, use a runtime with timers).
fn timers_enabled() -> bool {
    call_caught(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok()
}

/// Keeps the run's time until `all_exited` completes: begins the stop at the time budget's
/// deadline, then, once the grace period must be kept
/// ([`StopSignal::need_grace`](crate::stop::StopSignal::need_grace)), ends it (see
/// [`StopSignal::abandon`](crate::stop::StopSignal::abandon)). The driver runs it; if the
/// driver is dropped first, a task of its own does (see [`StopOnDrop`]), so the grace period
/// also ends for a run whose future was dropped.
async fn keep_time<F: Future<Output = ()>>(
    shared: &Shared,
    grace: Duration,
    mut all_exited: Pin<&mut F>,
) {
    let stop = shared.stop();
    match shared.scope().deadline() {
        Some(deadline) => {
            tokio::select! {
                biased;
                () = all_exited.as_mut() => return,
                () = stop.grace_needed().cancelled() => {}
                () = tokio::time::sleep_until(deadline) => {
                    if !stop.is_stopping() {
                        shared.publish(|| EventKind::BudgetExhausted {
                            kind: BudgetKind::Time,
                        });
                    }
                    stop.request(StopReason::Budget(BudgetKind::Time));
                }
            }
        }
        None => {
            tokio::select! {
                biased;
                () = all_exited.as_mut() => return,
                () = stop.grace_needed().cancelled() => {}
            }
        }
    }
    if grace.is_zero() {
        stop.abandon();
        return all_exited.await;
    }
    let end = stop.began().unwrap_or_else(Instant::now).checked_add(grace);
    // Without timers (possible only for a run without a time budget) or for a grace period
    // too long to represent, the stop waits for the workers as long as they take.
    let Some(grace_over) = end.and_then(|end| call_caught(|| tokio::time::sleep_until(end)).ok())
    else {
        return all_exited.await;
    };
    tokio::select! {
        biased;
        () = all_exited.as_mut() => return,
        () = grace_over => stop.abandon(),
    }
    all_exited.await;
}

/// Begins a graceful stop if the run is abandoned before it finished, and hands its
/// timekeeping to a task of its own (the grace period must still end).
struct StopOnDrop {
    shared: Option<Arc<Shared>>,
    tracker: TaskTracker,
    grace: Duration,
}

impl StopOnDrop {
    /// The run finished: nothing to do on drop.
    fn disarm(&mut self) {
        self.shared = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        if !shared.stop().is_stopping() {
            shared.stop().request(StopReason::HandleDropped);
        }
        let grace = self.grace;
        let tracker = self.tracker.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                keep_time(&shared, grace, std::pin::pin!(tracker.wait())).await;
            });
        }
    }
}

pub(crate) async fn drive(started: Started) -> Result<RunResult, RunError> {
    let span = tracing::info_span!(
        "spark.run",
        run_id = started.shared.scope().run_id(),
        mode = "long_running"
    );
    if span.is_disabled() {
        drive_inner(started).await
    } else {
        drive_inner(started).instrument(span).await
    }
}

async fn drive_inner(started: Started) -> Result<RunResult, RunError> {
    let Started {
        shared,
        tracker,
        grace,
    } = started;
    let mut guard = StopOnDrop {
        shared: Some(Arc::clone(&shared)),
        tracker: tracker.clone(),
        grace,
    };
    // Workers exit on their own once the stop begins, so the driver waits only for the last
    // of them (one wake-up), keeping the run's time meanwhile.
    keep_time(&shared, grace, std::pin::pin!(tracker.wait())).await;
    guard.disarm();
    shared.scope().cancel();
    let outcome = shared.finish();
    shared.publish(|| match &outcome {
        Ok(r) => EventKind::GraphFinished {
            stop_reason: Some(r.metadata.stop_reason),
            error: None,
        },
        Err(e) => EventKind::GraphFinished {
            stop_reason: None,
            error: Some(e.to_string()),
        },
    });
    outcome
}
