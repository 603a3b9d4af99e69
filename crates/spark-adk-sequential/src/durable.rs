//! Durable standard-mode runs (docs/runtime-semantics.md, "Durable runs"): every committed activation is logged to a
//! [`Store`] through `spark-adk-durable`'s records, and a run can be resumed from its log after a
//! crash, a failed commit or an interrupt.
//!
//! What is logged, the resume rules and the durability default are in
//! `docs/runtime-semantics.md`, "Durable runs". In short: a header (format version, topology
//! fingerprint, task input, initial state, budgets), then per committed activation one
//! [`ActivationRecord`] (the consumed message id, the routed messages with their ids and
//! targets, the sink output, the changed state keys, the tokens), an [`InterruptRecord`] when a
//! node interrupts, a resume record per resume and a stop record when the run stops. Resume
//! replays the log: the queue, step count, tokens, state and sink outputs come back; the
//! activation that was running when the run stopped runs again, with the same activation id.
//!
//! A plain run (without [`DurableOptions`]) never reaches this module: it writes nothing and
//! pays nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use spark_adk_core::panic::CatchUnwind;
use spark_adk_core::{
    Budget, BudgetKind, Context, EventKind, GraphState, InterruptInfo, Map, NodeCounts,
    NodeMessage, RunCounts, RunError, RunMetadata, RunResult, RunScope, SinkOutputs, StopReason,
    Task, TaskType, Value,
};
use spark_adk_durable::{
    ActivationRecord, Budgets, DurableError, EdgeShape, Fingerprint, InterruptRecord, MessageId,
    Record, ResumeRecord, RoutedMessage, RunHeader, RunImage, RunLog, RunMode, StateChange,
    StopRecord, Store, StoreExt, TopologyShape,
};
use spark_adk_edges::Topology;

use crate::{cancelled_or_never, deadline_or_never, SequentialExecutor, Waited};

/// The durable crate's picture of `topology`: node names, every edge with its condition as text
/// (and its priority), the start node. Two graphs with the same shape may resume each other's
/// runs; anything else is refused with the differences named.
pub fn topology_shape(topology: &Topology) -> TopologyShape {
    let names = topology.names();
    let name = |i: usize| {
        names
            .get(i)
            .map_or_else(|| format!("#{i}"), |n| n.to_string())
    };
    TopologyShape {
        nodes: names.iter().map(|n| n.to_string()).collect(),
        edges: topology
            .edges()
            .map(|e| {
                let mut shape = EdgeShape::new(
                    name(e.from),
                    name(e.to),
                    e.condition.label().unwrap_or_else(|| "always".to_owned()),
                );
                shape.priority = i64::from(e.priority);
                shape
            })
            .collect(),
        start: name(topology.start()),
    }
}

/// The fingerprint of `topology` ([`topology_shape`]), written into every durable run's header.
pub fn fingerprint(topology: &Topology) -> Fingerprint {
    Fingerprint::of(topology_shape(topology))
}

pub use spark_adk_durable::{DurableOptions, DurableRunError};

impl SequentialExecutor {
    /// Runs `task` on `topology` as a durable run: the header and one record per committed
    /// activation go to `options.store` under `options.run_id`.
    ///
    /// # Errors
    /// As [`SequentialExecutor::run`] (as [`DurableRunError::Run`]); a
    /// [`DurableRunError::Store`] when the run id is taken (a conflict), the lease is held, or a
    /// commit fails (the run stops; everything committed before is kept and the run can be
    /// resumed).
    pub async fn run_durable(
        &self,
        topology: &Topology,
        task: Task,
        options: DurableOptions,
    ) -> Result<RunResult, DurableRunError> {
        if task.task_type != TaskType::Standard {
            return Err(RunError::InvalidTask(format!(
                "durable standard runs take standard tasks, got {:?}",
                task.task_type
            ))
            .into());
        }
        let mut header = RunHeader::new(
            options.run_id.clone(),
            fingerprint(topology),
            RunMode::Standard,
            task.inputs,
        );
        header.initial_state = task
            .state
            .unwrap_or_else(|| topology.initial_state().clone());
        header.budgets = Budgets {
            max_seconds: task.budget.and_then(|b| b.max_seconds()),
            max_tokens: task.budget.and_then(|b| b.max_tokens()),
            max_steps: task.max_steps,
            grace_seconds: None,
        };
        let image = RunImage::new(&header);
        // One step (one commit for a disk store): the run exists only with its lease held.
        let lease = options
            .store
            .create_leased(&header, &options.owner, options.lease_ttl)
            .await?;
        let log = match RunLog::open_leased(
            Arc::clone(&options.store),
            0,
            options.durability,
            lease.clone(),
            options.lease_ttl,
        ) {
            Ok(log) => log,
            Err(e) => {
                let _ = options.store.release_lease(&lease).await;
                return Err(e.into());
            }
        };
        let outcome = continue_run(topology, &header, image, &log).await;
        finish(outcome, log, options.store.as_ref(), &lease).await
    }

    /// Resumes the durable run `options.run_id` from its log: the queue, step count, tokens,
    /// state and sink outputs come back, and the run goes on. With `resume_value`, it answers
    /// the run's pending interrupt: the interrupted node runs again on the same message with
    /// the value in `Context::resume_value`.
    ///
    /// # Errors
    /// [`DurableRunError::Store`] with
    /// - [`DurableError::NotFound`] for an unknown run;
    /// - [`DurableError::FingerprintMismatch`] when `topology` differs from the run's graph,
    ///   naming what differs;
    /// - [`DurableError::Conflict`] when another resumer holds the run's lease or appended
    ///   first, or when `resume_value` answers an interrupt that was already answered (or none);
    /// - [`DurableError::InvalidArgument`] when the run waits for an interrupt's answer and
    ///   none is given, or the run is not a standard-mode run;
    /// - a corrupt or unreadable log's error;
    ///
    /// and otherwise as [`SequentialExecutor::run_durable`].
    pub async fn resume(
        &self,
        topology: &Topology,
        options: DurableOptions,
        resume_value: Option<Value>,
    ) -> Result<RunResult, DurableRunError> {
        let run = &options.run_id;
        let store = options.store.as_ref();
        let (loaded, mut image) = store.resume_image(run, &fingerprint(topology)).await?;
        if loaded.header.mode != RunMode::Standard {
            return Err(DurableError::InvalidArgument {
                run: run.clone(),
                reason: "the run was started in long-running mode".to_owned(),
            }
            .into());
        }
        let record = match resume_value {
            Some(value) => image.answer_interrupt(None, value, Some(options.owner.clone()))?,
            None => {
                if let Some(waiting) = image.interrupts().first() {
                    return Err(DurableError::InvalidArgument {
                        run: run.clone(),
                        reason: format!(
                            "node `{}` interrupted activation {} and waits for an answer: resume with a value",
                            waiting.node, waiting.activation
                        ),
                    }
                    .into());
                }
                Record::Resume(ResumeRecord {
                    activation: None,
                    value: None,
                    owner: Some(options.owner.clone()),
                })
            }
        };
        let lease = store
            .acquire_lease(run, &options.owner, options.lease_ttl)
            .await?;
        // Compare-and-append on the head the image was replayed from: a second resumer that
        // loaded the same log gets a conflict here.
        let opened = async {
            let head = store
                .append_records_leased(run, image.last_seq(), std::slice::from_ref(&record), &lease)
                .await?;
            image.apply(head, &record)?;
            RunLog::open_leased(
                Arc::clone(&options.store),
                head,
                options.durability,
                lease.clone(),
                options.lease_ttl,
            )
        };
        let log = match opened.await {
            Ok(log) => log,
            Err(e) => {
                let _ = store.release_lease(&lease).await;
                return Err(e.into());
            }
        };
        let outcome = continue_run(topology, &loaded.header, image, &log).await;
        finish(outcome, log, store, &lease).await
    }
}

/// Logs how the run stopped, closes the log and gives the lease up.
async fn finish(
    outcome: Result<RunResult, DurableRunError>,
    log: RunLog,
    store: &dyn Store,
    lease: &spark_adk_durable::Lease,
) -> Result<RunResult, DurableRunError> {
    let stop = match &outcome {
        Ok(r) => match &r.metadata.interrupt {
            Some(i) => StopRecord::Interrupted {
                node: i.node.to_string(),
            },
            None => StopRecord::Completed,
        },
        Err(DurableRunError::Store(_)) => {
            // The log refuses further appends; what is committed stays.
            let _ = log.close().await;
            let _ = store.release_lease(lease).await;
            return outcome;
        }
        Err(DurableRunError::Run(e)) => stop_record(e),
    };
    let logged = match log.append(Record::Stop(stop)).await {
        Ok(()) => log.close().await.map(|_| ()),
        Err(e) => {
            let _ = log.close().await;
            Err(e)
        }
    };
    let _ = store.release_lease(lease).await;
    match (outcome, logged) {
        (Ok(result), Ok(())) => Ok(result),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e),
    }
}

fn stop_record(e: &RunError) -> StopRecord {
    match e {
        RunError::Timeout { .. } => StopRecord::TimeBudget,
        RunError::TokenBudgetExhausted { .. } => StopRecord::TokenBudget,
        RunError::StepLimitExceeded { .. } => StopRecord::StepLimit,
        RunError::Cancelled { .. } => StopRecord::Cancelled,
        RunError::NodeFailed { node, .. } | RunError::NodePanicked { node, .. } => {
            StopRecord::Failed {
                node: Some(node.clone()),
                message: e.to_string(),
            }
        }
        other => StopRecord::Failed {
            node: None,
            message: other.to_string(),
        },
    }
}

/// One queued activation of a durable run.
struct Queued {
    id: MessageId,
    index: usize,
    message: NodeMessage,
}

/// Runs from `image` to the end, logging through `log`.
async fn continue_run(
    topology: &Topology,
    header: &RunHeader,
    image: RunImage,
    log: &RunLog,
) -> Result<RunResult, DurableRunError> {
    let run = &header.run_id;
    let names = Arc::clone(topology.names());
    let index_of = |node: &str| {
        topology.index_of(node).ok_or_else(|| {
            DurableError::corrupt(run, 0, format!("node `{node}` is not in the graph"))
        })
    };
    let budget = match (header.budgets.max_seconds, header.budgets.max_tokens) {
        (None, None) => None,
        (secs, tokens) => Some(Budget::new(secs, tokens).map_err(|e| {
            DurableError::corrupt(run, 0, format!("the logged budget is invalid: {e}"))
        })?),
    };
    let limit = header
        .budgets
        .max_steps
        .unwrap_or_else(|| topology.step_limit());
    if limit == 0 {
        return Err(RunError::InvalidTask("the step limit must be at least 1".to_owned()).into());
    }
    let state = GraphState::with_write_log(image.state().clone());
    let scope = Arc::new(
        RunScope::for_run(budget, Map::new(), Arc::clone(&names))
            .with_state(state.clone())
            .with_events(topology.events().clone()),
    );
    if let Some(deadline) = scope.deadline() {
        crate::check_timers(deadline)?;
    }
    scope.record_tokens(image.tokens());
    // The run's events, as a plain run publishes them, while someone listens.
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

    let mut queue = VecDeque::new();
    let mut resume_values = HashMap::new();
    for m in image.pending() {
        queue.push_back(Queued {
            id: m.id,
            index: index_of(&m.to)?,
            message: m.message.clone(),
        });
        if let Some(v) = image.resume_value(m.id) {
            resume_values.insert(m.id, v.clone());
        }
    }
    let mut sinks = SinkOutputs::new();
    for s in image.sinks() {
        let index = index_of(&s.node)?;
        let name = names.get(index).map_or_else(|| Arc::from(""), Arc::clone);
        sinks.push(name, s.output.clone());
    }
    let mut per_node = NodeCounts::new(Arc::clone(&names));
    for (node, n) in image.processed() {
        let index = index_of(node)?;
        for _ in 0..*n {
            per_node.increment(index);
        }
    }
    let mut next_id = image.next_message_id().0;
    let mut accepted = image.accepted();
    let mut processed = image.steps();
    let guarded = scope.deadline().is_some();
    let mut interrupt = None;

    let outcome: Result<(), DurableRunError> = async {
        while let Some(front) = queue.front() {
            let (id, index) = (front.id, front.index);
            let Some(entry) = topology.node(index) else {
                return Err(RunError::InvalidTask(format!(
                    "node index {index} is outside the graph"
                ))
                .into());
            };
            if scope.deadline_passed() {
                return Err(timeout(&scope, &entry.name).into());
            }
            if let Some(max) = scope.budget().max_tokens() {
                let used = scope.tokens_used();
                if used >= max {
                    return Err(RunError::TokenBudgetExhausted {
                        used,
                        max,
                        node: entry.name.to_string(),
                        counts: RunCounts::default(),
                    }
                    .into());
                }
            }
            if processed >= limit {
                return Err(RunError::StepLimitExceeded {
                    node: entry.name.to_string(),
                    limit,
                    counts: RunCounts::default(),
                }
                .into());
            }
            let message = front.message.clone();
            let ctx = Context::new(message, index, Arc::clone(&scope))
                .with_activation(id.0, resume_values.get(&id).cloned());
            let tokens_before = scope.tokens_used();
            let _ = state.take_writes();
            if events {
                bus.publish(
                    scope.run_id(),
                    scope.elapsed(),
                    EventKind::NodeStarted {
                        node: Arc::clone(&entry.name),
                    },
                );
            }
            let started = events.then(tokio::time::Instant::now);
            let activation = CatchUnwind::new(entry.node.process_dyn(&ctx));
            let outcome = if guarded {
                let waited = tokio::select! {
                    biased;
                    outcome = activation => Waited::Done(outcome),
                    () = cancelled_or_never(scope.external_cancellation()) => Waited::Cancelled,
                    () = deadline_or_never(scope.deadline()) => Waited::TimedOut,
                };
                match waited {
                    Waited::Done(outcome) => outcome,
                    Waited::Cancelled => {
                        return Err(RunError::Cancelled {
                            counts: RunCounts::default(),
                        }
                        .into())
                    }
                    Waited::TimedOut => return Err(timeout(&scope, &entry.name).into()),
                }
            } else {
                activation.await
            };
            if let Some(started) = started {
                let node = Arc::clone(&entry.name);
                let kind = match &outcome {
                    Ok(Ok(_)) => EventKind::NodeFinished {
                        node,
                        duration: started.elapsed(),
                    },
                    Ok(Err(e)) => EventKind::NodeFailed {
                        node,
                        error: e.to_string(),
                    },
                    Err(panic) => EventKind::NodeFailed {
                        node,
                        error: format!("panicked: {panic}"),
                    },
                };
                bus.publish(scope.run_id(), scope.elapsed(), kind);
            }
            let tokens = scope.tokens_used().saturating_sub(tokens_before);
            let output = match outcome {
                Ok(Ok(output)) => output,
                Ok(Err(e)) if e.interrupt_payload().is_some() => {
                    let payload = e.interrupt_payload().cloned().unwrap_or(Value::Null);
                    // The interrupted attempt's state writes are not logged: it runs again.
                    let _ = state.take_writes();
                    log.append(Record::Interrupt(InterruptRecord {
                        activation: id,
                        node: entry.name.to_string(),
                        payload: payload.clone(),
                        tokens,
                    }))
                    .await?;
                    interrupt = Some(InterruptInfo {
                        node: Arc::clone(&entry.name),
                        payload,
                    });
                    return Ok(());
                }
                Ok(Err(source)) => {
                    return Err(RunError::NodeFailed {
                        node: entry.name.to_string(),
                        source,
                        counts: RunCounts::default(),
                    }
                    .into())
                }
                Err(message) => {
                    return Err(RunError::NodePanicked {
                        node: entry.name.to_string(),
                        message,
                        counts: RunCounts::default(),
                    }
                    .into())
                }
            };
            let mut targets = Vec::new();
            topology.route(index, &output, |to| targets.push(to))?;
            let routed: Vec<RoutedMessage> = targets
                .iter()
                .map(|&to| {
                    let id = MessageId(next_id);
                    next_id += 1;
                    RoutedMessage {
                        id,
                        target: names.get(to).map_or_else(String::new, |n| n.to_string()),
                        message: output.clone(),
                    }
                })
                .collect();
            let keys = state.take_writes();
            let changes = keys
                .iter()
                .zip(state.values_of(&keys))
                .map(|(key, value)| match value {
                    Some(value) => StateChange::Set {
                        key: key.clone(),
                        value,
                    },
                    None => StateChange::Removed { key: key.clone() },
                })
                .collect();
            let sink = targets.is_empty().then(|| output.clone());
            log.append(Record::Activation(ActivationRecord {
                activation: id,
                node: entry.name.to_string(),
                attempt: ctx.attempt(),
                routed: routed.clone(),
                sink: sink.clone(),
                state: changes,
                tokens,
            }))
            .await?;
            // Committed (or queued for commit): the activation is done.
            queue.pop_front();
            resume_values.remove(&id);
            processed += 1;
            per_node.increment(index);
            accepted += routed.len() as u64;
            if let Some(out) = sink {
                sinks.push(Arc::clone(&entry.name), out);
            }
            for (m, &to) in routed.into_iter().zip(&targets) {
                queue.push_back(Queued {
                    id: m.id,
                    index: to,
                    message: m.message,
                });
            }
        }
        Ok(())
    }
    .await;

    let counts = RunCounts {
        accepted,
        processed,
        unprocessed: queue.len() as u64,
        tokens_used: scope.tokens_used(),
    };
    scope.cancel();
    let result = match outcome {
        Ok(()) => {
            let mut metadata = RunMetadata::new(TaskType::Standard);
            metadata.stop_reason = if interrupt.is_some() {
                StopReason::Interrupted
            } else {
                StopReason::Completed
            };
            metadata.interrupt = interrupt;
            metadata.steps = counts.processed;
            metadata.tokens_used = counts.tokens_used;
            metadata.elapsed = scope.elapsed();
            metadata.accepted = counts.accepted;
            metadata.processed = counts.processed;
            metadata.unprocessed = counts.unprocessed;
            metadata.per_node = per_node;
            Ok(RunResult::from_sinks(sinks, metadata).with_state(scope.state_snapshot()))
        }
        Err(DurableRunError::Run(e)) => Err(DurableRunError::Run(e.with_counts(counts))),
        Err(e) => Err(e),
    };
    if events {
        publish_end(topology, &scope, &result);
    }
    result
}

/// The events a plain run publishes at its end: a budget that ran out, then `GraphFinished`.
fn publish_end(
    topology: &Topology,
    scope: &RunScope,
    outcome: &Result<RunResult, DurableRunError>,
) {
    let bus = topology.events();
    let (run_id, elapsed) = (scope.run_id(), scope.elapsed());
    let exhausted = match outcome {
        Err(DurableRunError::Run(RunError::Timeout { .. })) => Some(BudgetKind::Time),
        Err(DurableRunError::Run(RunError::TokenBudgetExhausted { .. })) => {
            Some(BudgetKind::Tokens)
        }
        _ => None,
    };
    if let Some(kind) = exhausted {
        bus.publish(run_id, elapsed, EventKind::BudgetExhausted { kind });
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

fn timeout(scope: &RunScope, node: &str) -> RunError {
    RunError::Timeout {
        budget: scope.budget().max_time().unwrap_or_default(),
        node: Some(node.to_owned()),
        counts: RunCounts::default(),
    }
}
