//! The coordinator: creates the run's streams, publishes the task input, decides quiescence,
//! budgets and the stop, collects every worker's report and assembles the result.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use futures_util::StreamExt;
use spark_adk_core::{
    BudgetKind, EventKind, NodeCounts, NodeError, NodeMessage, RunCounts, RunError, RunMetadata,
    RunResult, SinkOutput, SinkOutputs, StopReason, Task, TaskType,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{broker, DistributedError, NatsError, SendError};
use crate::graph::{DistributedGraph, Serve};
use crate::state::{delete_buckets, Store};
use crate::wire::{
    capacity_groups, encode, publish_bounded, retry, Final, Hello, LeaseReply, LeaseRequest, Names,
    PublishFailure, Record, RecordError, Stop, HEADER_ROOM,
};
use crate::worker::Process;

/// Sink outputs a subscriber may fall behind by before it loses the oldest.
const SUBSCRIBER_BUFFER: usize = 4096;

enum Command {
    Shutdown,
    HandleDropped,
}

/// What the coordinator and its handle share.
struct Shared {
    stopping: AtomicBool,
    sends_in_flight: AtomicUsize,
    handle_accepted: AtomicU64,
    handle_seq: AtomicU64,
}

/// The coordinator's handle on a distributed run (like the in-memory `RunHandle`): send
/// messages into a node, subscribe to sink outputs, request a shutdown, wait for the result.
///
/// Dropping it without [`wait`](Self::wait) begins a graceful stop
/// ([`StopReason::HandleDropped`]).
#[derive(Debug)]
pub struct DistributedRunHandle {
    graph: DistributedGraph,
    js: jetstream::Context,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    sinks: broadcast::Sender<SinkOutput>,
    join: Option<JoinHandle<Result<RunResult, DistributedError>>>,
    local_workers: Option<JoinHandle<Result<crate::WorkerSummary, NatsError>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stopping", &self.stopping)
            .finish()
    }
}

impl DistributedGraph {
    /// Runs the graph to its end (quiescence by default, or a budget, a shutdown requested by a
    /// node, a node error), this process serving `serve` and coordinating.
    ///
    /// # Errors
    /// [`DistributedError::Run`] for what ends an in-memory run with an error (with its
    /// counts); [`DistributedError::Nats`] when the broker fails.
    pub async fn run(&self, task: Task, serve: Serve) -> Result<RunResult, DistributedError> {
        let handle = self.start_with(task, serve, true).await?;
        handle.wait().await
    }

    /// Starts the run as its coordinator and returns its handle; this process also serves
    /// `serve`. A started run does not end at quiescence unless
    /// [`Options::stop_on_quiescence`](crate::Options::stop_on_quiescence) says so: it ends
    /// on shutdown, budget, error, or when the handle is dropped.
    ///
    /// # Errors
    /// [`NatsError`] when the streams cannot be created (for example the run id is in use) or
    /// the task input cannot be published.
    pub async fn start(&self, task: Task, serve: Serve) -> Result<DistributedRunHandle, NatsError> {
        self.start_with(task, serve, false).await
    }

    async fn start_with(
        &self,
        task: Task,
        serve: Serve,
        quiescence_default: bool,
    ) -> Result<DistributedRunHandle, NatsError> {
        let served = serve.indices(&self.topology)?;
        let js = jetstream::new(self.client.clone());
        // JetStream "creates" an existing stream with the same settings without a word: a run
        // id still in use (or left by a coordinator that crashed) must not be mixed in.
        if js.get_stream(self.names.record_stream()).await.is_ok() {
            return Err(NatsError::Invalid(format!(
                "run id `{}` is in use: its streams (`SPARK_{}_*`) exist on the broker; \
                 use another run id, or delete them if that run is over",
                self.names.run, self.names.run
            )));
        }
        let created = create_streams(self, &js).await;
        if let Err(e) = created {
            delete_streams(&js, &self.names, &self.topology).await;
            return Err(e);
        }
        let subscriptions = async {
            let sub = |what: &str| self.client.subscribe(self.names.control(what));
            Ok::<_, async_nats::SubscribeError>((
                sub("hello").await?,
                sub("lease").await?,
                sub("final").await?,
            ))
        }
        .await
        .map_err(|e| broker("subscribe to the control subjects", e));
        let (hello, lease, finals) = match subscriptions {
            Ok(s) => s,
            Err(e) => {
                delete_streams(&js, &self.names, &self.topology).await;
                return Err(e);
            }
        };
        // The initial graph state, before any worker can start (a run whose state starts empty
        // creates its bucket on first use).
        let initial = task
            .state
            .clone()
            .unwrap_or_else(|| self.topology.initial_state().clone());
        if !initial.is_empty() {
            let seeded = async {
                Store::open(self.client.clone(), &self.names, &self.options)
                    .await?
                    .update(initial.into_iter().collect())
                    .await
            }
            .await;
            if let Err(e) = seeded {
                delete_streams(&js, &self.names, &self.topology).await;
                return Err(e);
            }
        }
        // The task input, before any worker can start.
        let start = self.topology.start();
        let input = encode(&task.inputs)?;
        let start_name = self
            .topology
            .names()
            .get(start)
            .map_or("?", |n| &**n)
            .to_owned();
        let max = max_payload(&self.client);
        if input.len() + HEADER_ROOM > max {
            delete_streams(&js, &self.names, &self.topology).await;
            return Err(NatsError::PayloadTooLarge {
                node: start_name,
                size: input.len(),
                max,
            });
        }
        let never = CancellationToken::new();
        let publish = tokio::time::timeout(
            self.options.join_timeout,
            publish_bounded(
                &js,
                &self.names.mailbox(start),
                &format!("{}.input", self.names.run),
                input,
                &never,
                None,
            ),
        )
        .await;
        if !matches!(publish, Ok(Ok(_))) {
            delete_streams(&js, &self.names, &self.topology).await;
            return Err(NatsError::Timeout {
                operation: format!("publishing the task input to `{start_name}`"),
                seconds: self.options.join_timeout.as_secs_f64(),
                reason: format!("{publish:?}"),
            });
        }
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            sends_in_flight: AtomicUsize::new(0),
            handle_accepted: AtomicU64::new(0),
            handle_seq: AtomicU64::new(0),
        });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (sinks, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        let local_workers = (!served.is_empty()).then(|| {
            let graph = self.clone();
            tokio::spawn(async move { Arc::new(Process::new(graph).await).serve(served).await })
        });
        let coordinator = Coordinator {
            graph: self.clone(),
            js: js.clone(),
            shared: Arc::clone(&shared),
            sinks: sinks.clone(),
            quiescence: self
                .options
                .stop_on_quiescence
                .unwrap_or(quiescence_default),
            task,
            started: Instant::now(),
        };
        let events = crate::worker::Events::new(self);
        events.publish(|| EventKind::GraphStarted {
            task_type: TaskType::LongRunning,
        });
        let join = tokio::spawn(async move {
            let outcome = coordinator
                .run(command_rx, hello, lease, finals, &events)
                .await;
            events.publish(|| match &outcome {
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
        });
        Ok(DistributedRunHandle {
            graph: self.clone(),
            js,
            shared,
            commands,
            sinks,
            join: Some(join),
            local_workers,
        })
    }
}

fn max_payload(client: &async_nats::Client) -> usize {
    match client.server_info().max_payload {
        0 => 1 << 20,
        n => n,
    }
}

async fn create_streams(g: &DistributedGraph, js: &jetstream::Context) -> Result<(), NatsError> {
    let names = &g.names;
    for (capacity, nodes) in capacity_groups(&g.topology) {
        let name = names.mailbox_stream(capacity);
        let stream = js
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: nodes.iter().map(|&i| names.mailbox(i)).collect(),
                retention: stream::RetentionPolicy::WorkQueue,
                // The broker counts the message a node is processing (it stays in the stream
                // until acked, and a node processes one at a time): one more than the capacity
                // lets `capacity` messages wait behind it, as in memory.
                max_messages_per_subject: i64::try_from(capacity.saturating_add(1))
                    .unwrap_or(i64::MAX),
                discard: stream::DiscardPolicy::New,
                discard_new_per_subject: true,
                duplicate_window: g.options.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                broker(
                    format!(
                        "creating stream `{name}` (is run id `{}` in use?)",
                        names.run
                    ),
                    e,
                )
            })?;
        for &i in &nodes {
            stream
                .create_consumer(pull::Config {
                    durable_name: Some(Names::consumer(i)),
                    filter_subject: names.mailbox(i),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: g.options.ack_wait,
                    // One message at a time per node, across every process serving it: FIFO
                    // per node, so per sender->receiver order holds.
                    max_ack_pending: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    broker(format!("creating the consumer of node #{i} on `{name}`"), e)
                })?;
        }
    }
    let rec = names.record_stream();
    let stream = js
        .create_stream(stream::Config {
            name: rec.clone(),
            subjects: vec![names.records()],
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: g.options.duplicate_window,
            ..Default::default()
        })
        .await
        .map_err(|e| broker(format!("creating stream `{rec}`"), e))?;
    stream
        .create_consumer(pull::Config {
            durable_name: Some("coordinator".to_owned()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .map_err(|e| broker(format!("creating the coordinator's consumer on `{rec}`"), e))?;
    Ok(())
}

async fn delete_streams(
    js: &jetstream::Context,
    names: &Names,
    topology: &spark_adk_edges::Topology,
) {
    for (capacity, _) in capacity_groups(topology) {
        let _ = js.delete_stream(names.mailbox_stream(capacity)).await;
    }
    let _ = js.delete_stream(names.record_stream()).await;
    delete_buckets(js, names).await;
}

struct Coordinator {
    graph: DistributedGraph,
    js: jetstream::Context,
    shared: Arc<Shared>,
    sinks: broadcast::Sender<SinkOutput>,
    quiescence: bool,
    task: Task,
    started: Instant,
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    processed: u64,
    undelivered: u64,
    per_node: Vec<u64>,
    tokens: u64,
    error: Option<RunError>,
    reason: Option<StopReason>,
    /// Per process: tokens granted and tokens it said it used.
    leases: HashMap<String, (u64, u64)>,
    last_record_seq: u64,
    /// The messages whose activation was counted (their logical ids).
    settled: HashSet<String>,
    /// When the last activation record was counted.
    last_progress: Option<Instant>,
}

impl Coordinator {
    async fn run(
        self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut hello: async_nats::Subscriber,
        mut lease: async_nats::Subscriber,
        mut finals: async_nats::Subscriber,
        events: &crate::worker::Events,
    ) -> Result<RunResult, DistributedError> {
        let g = &self.graph;
        let names = g.topology.names();
        let mut tally = Tally {
            accepted: 1,
            per_node: vec![0; names.len()],
            ..Tally::default()
        };
        let mut sinks = SinkOutputs::new();
        let mut workers: HashMap<(String, usize), Instant> = HashMap::new();
        let mut reported: HashSet<(String, usize)> = HashSet::new();
        let records = self.record_messages().await?;
        tokio::pin!(records);
        let budget = self.task.budget.unwrap_or_default();
        let deadline = budget.max_time().map(|d| self.started + d);
        let time_out = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(time_out);
        let mut tick = tokio::time::interval(g.options.poll);
        let mut quiet: Option<Vec<u64>> = None;
        let mut last_seqs: Option<Vec<u64>> = None;
        let mut blocked: HashMap<(String, usize), Instant> = HashMap::new();
        // Running.
        while tally.reason.is_none() {
            tokio::select! {
                Some(msg) = records.next() => self.on_record(msg, &mut tally, &mut sinks).await,
                Some(msg) = lease.next() => self.on_lease(msg, &mut tally).await,
                Some(msg) = hello.next() => on_hello(&msg, &mut workers, &mut blocked),
                Some(msg) = finals.next() => self.on_final(msg, &mut tally, &mut reported).await,
                command = commands.recv() => {
                    let reason = match command {
                        Some(Command::Shutdown) => StopReason::Shutdown,
                        Some(Command::HandleDropped) | None => StopReason::HandleDropped,
                    };
                    tally.reason.get_or_insert(reason);
                }
                () = &mut time_out => { tally.reason.get_or_insert(StopReason::Budget(BudgetKind::Time)); }
                _ = tick.tick() => {
                    if self.quiescence {
                        self.check_quiescence(&mut tally, &mut quiet, &mut last_seqs).await;
                    }
                    self.check_deadlock(&mut tally, &workers, &blocked).await;
                }
            }
        }
        if let Some(StopReason::Budget(kind)) = tally.reason {
            events.publish(|| EventKind::BudgetExhausted { kind });
        }
        // Stopping: tell every worker (again and again: core NATS may lose a message), take
        // their final reports.
        self.shared.stopping.store(true, Ordering::SeqCst);
        let stop_began = Instant::now();
        let stop = encode(&Stop {
            grace_ms: u64::try_from(g.options.grace.as_millis()).unwrap_or(u64::MAX),
        })?;
        let alive = g.options.heartbeat * 4;
        let give_up =
            stop_began + g.options.grace + g.options.heartbeat * 4 + Duration::from_secs(2);
        let mut again = tokio::time::interval(Duration::from_millis(100));
        loop {
            let expected: Vec<_> = workers
                .iter()
                .filter(|(_, seen)| stop_began.saturating_duration_since(**seen) <= alive)
                .map(|(w, _)| w.clone())
                .collect();
            // Wait at least one heartbeat so that workers that just started are known.
            if stop_began.elapsed() > g.options.heartbeat * 2
                && expected.iter().all(|w| reported.contains(w))
            {
                break;
            }
            if Instant::now() >= give_up {
                let missing: Vec<_> = expected.iter().filter(|w| !reported.contains(*w)).collect();
                tracing::warn!(
                    ?missing,
                    "workers did not report before the end of the grace period"
                );
                break;
            }
            tokio::select! {
                Some(msg) = records.next() => self.on_record(msg, &mut tally, &mut sinks).await,
                Some(msg) = lease.next() => self.on_lease(msg, &mut tally).await,
                Some(msg) = hello.next() => on_hello(&msg, &mut workers, &mut blocked),
                Some(msg) = finals.next() => self.on_final(msg, &mut tally, &mut reported).await,
                _ = again.tick() => {
                    let _ = g.client.publish(g.names.control("stop"), stop.clone()).await;
                }
            }
        }
        // Every record published before its input was acked: read them all.
        let last = retry(
            "reading the record stream",
            g.options.join_timeout,
            || async {
                let mut s = self
                    .js
                    .get_stream(g.names.record_stream())
                    .await
                    .map_err(|e| e.to_string())?;
                s.info()
                    .await
                    .map(|i| i.state.last_sequence)
                    .map_err(|e| e.to_string())
            },
        )
        .await?;
        let drain_until = Instant::now() + g.options.join_timeout;
        while tally.last_record_seq < last {
            let next = tokio::time::timeout_at(drain_until, records.next()).await;
            match next {
                Ok(Some(msg)) => self.on_record(msg, &mut tally, &mut sinks).await,
                _ => {
                    return Err(NatsError::Timeout {
                        operation: "reading the last activation records".to_owned(),
                        seconds: g.options.join_timeout.as_secs_f64(),
                        reason: format!("read up to sequence {} of {last}", tally.last_record_seq),
                    }
                    .into())
                }
            }
        }
        // Sends of the handle that passed the stop check before the stop are stored by now.
        let sends_until = Instant::now() + g.options.join_timeout;
        while self.shared.sends_in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < sends_until
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let left = retry("counting the messages left", g.options.join_timeout, || {
            self.consumers_left()
        })
        .await?;
        // The final graph state (every worker reported: nobody writes any more).
        let state = self.final_state().await?;
        if !g.options.keep_streams {
            delete_streams(&self.js, &g.names, &g.topology).await;
        }
        let accepted = tally.accepted + self.shared.handle_accepted.load(Ordering::SeqCst);
        let unprocessed = left + tally.undelivered;
        let mut metadata = RunMetadata::new(TaskType::LongRunning);
        metadata.stop_reason = tally.reason.unwrap_or(StopReason::Completed);
        metadata.steps = tally.processed;
        metadata.tokens_used = tally.tokens;
        metadata.elapsed = self.started.elapsed();
        metadata.accepted = accepted;
        metadata.processed = tally.processed;
        metadata.unprocessed = unprocessed;
        metadata.per_node =
            NodeCounts::from_counts(std::sync::Arc::clone(names), tally.per_node.iter().copied());
        if accepted != tally.processed + unprocessed {
            tracing::error!(
                accepted,
                processed = tally.processed,
                unprocessed,
                "distributed run counts disagree"
            );
        }
        if let Some(error) = tally.error {
            return Err(DistributedError::Run(error.with_counts(RunCounts {
                accepted,
                processed: tally.processed,
                unprocessed,
                tokens_used: tally.tokens,
            })));
        }
        Ok(RunResult::from_sinks(sinks, metadata).with_state(state))
    }

    /// The run's graph state at its end: the bucket's contents, or the initial state when no
    /// node used it (then it has no bucket).
    async fn final_state(&self) -> Result<serde_json::Map<String, serde_json::Value>, NatsError> {
        let g = &self.graph;
        let store = Store::open_existing(g.client.clone(), &g.names, &g.options).await?;
        match store {
            Some(store) => store.snapshot().await,
            None => Ok(self
                .task
                .state
                .clone()
                .unwrap_or_else(|| g.topology.initial_state().clone())),
        }
    }

    async fn record_messages(
        &self,
    ) -> Result<impl futures_util::Stream<Item = jetstream::Message>, NatsError> {
        let g = &self.graph;
        let stream = self
            .js
            .get_stream(g.names.record_stream())
            .await
            .map_err(|e| broker("opening the record stream", e))?;
        let consumer: pull::Stream = stream
            .get_consumer::<pull::Config>("coordinator")
            .await
            .map_err(|e| broker("opening the coordinator's consumer", e))?
            .messages()
            .await
            .map_err(|e| broker("reading the record stream", e))?;
        Ok(consumer.filter_map(|m| async move {
            match m {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "reading an activation record failed");
                    None
                }
            }
        }))
    }

    async fn check_quiescence(
        &self,
        tally: &mut Tally,
        quiet: &mut Option<Vec<u64>>,
        last_seqs: &mut Option<Vec<u64>>,
    ) {
        if self.shared.sends_in_flight.load(Ordering::SeqCst) > 0 {
            *quiet = None;
            return;
        }
        match self.idle(last_seqs).await {
            Ok(Some(seqs)) => {
                if quiet.as_ref() == Some(&seqs) {
                    tally.reason.get_or_insert(StopReason::Completed);
                } else {
                    *quiet = Some(seqs);
                }
            }
            Ok(None) => *quiet = None,
            Err(e) => {
                tracing::warn!(error = %e, "reading the mailbox streams failed");
                *quiet = None;
            }
        }
    }

    /// Deadlock, by timeout (across processes a deadlock may be detected by timeout): for `deadlock_timeout` no activation settled
    /// anywhere, some live workers have been waiting for room all that time, and every node
    /// with work (a message pending or in flight) is one of them. Then nothing can free a
    /// mailbox: the run ends with `RunError::Deadlock` naming the waiting nodes.
    async fn check_deadlock(
        &self,
        tally: &mut Tally,
        workers: &HashMap<(String, usize), Instant>,
        blocked: &HashMap<(String, usize), Instant>,
    ) {
        let Some(timeout) = self.graph.options.deadlock_timeout else {
            return;
        };
        if tally.error.is_some() || tally.reason.is_some() {
            return;
        }
        let since = tally.last_progress.unwrap_or(self.started);
        if since.elapsed() < timeout {
            return;
        }
        let alive = self.graph.options.heartbeat * 4;
        let waiting: HashSet<usize> = blocked
            .iter()
            .filter(|(w, at)| {
                at.elapsed() >= timeout
                    && workers.get(*w).is_some_and(|seen| seen.elapsed() <= alive)
            })
            .map(|((_, node), _)| *node)
            .collect();
        if waiting.is_empty() {
            return;
        }
        let Ok(busy) = self.busy_nodes().await else {
            return;
        };
        if busy.iter().all(|n| waiting.contains(n)) {
            let names = self.graph.topology.names();
            let mut nodes: Vec<String> = waiting
                .iter()
                .filter_map(|&i| names.get(i).map(|n| n.to_string()))
                .collect();
            nodes.sort();
            tally.error = Some(RunError::Deadlock {
                blocked: nodes,
                counts: RunCounts::default(),
            });
            self.begin_stop(tally, StopReason::Shutdown);
        }
    }

    /// The nodes with a message pending or in flight.
    async fn busy_nodes(&self) -> Result<Vec<usize>, NatsError> {
        Ok(self
            .consumer_backlogs()
            .await?
            .into_iter()
            .filter(|&(_, left)| left > 0)
            .map(|(i, _)| i)
            .collect())
    }

    /// Each node's messages its consumer will still deliver or waits an ack for (JetStream
    /// `num_pending + num_ack_pending`), as `(node index, count)`.
    async fn consumer_backlogs(&self) -> Result<Vec<(usize, u64)>, NatsError> {
        let g = &self.graph;
        let mut backlogs = Vec::new();
        for (capacity, nodes) in capacity_groups(&g.topology) {
            let name = g.names.mailbox_stream(capacity);
            let stream = self
                .js
                .get_stream(&name)
                .await
                .map_err(|e| broker(format!("reading `{name}`"), e))?;
            for i in nodes {
                let mut consumer: jetstream::consumer::PullConsumer = stream
                    .get_consumer(&Names::consumer(i))
                    .await
                    .map_err(|e| broker(format!("reading the consumer of node #{i}"), e))?;
                let info = consumer
                    .info()
                    .await
                    .map_err(|e| broker(format!("reading the consumer of node #{i}"), e))?;
                backlogs.push((i, info.num_pending + info.num_ack_pending as u64));
            }
        }
        Ok(backlogs)
    }

    /// `Some(last sequences)` when no message waits in any mailbox and no activation is in
    /// flight. The streams' message count answers in one request per stream; when it is not
    /// zero but nothing was published since the last look, the consumers are asked (a
    /// nats-server 2.9 restart can leave acked messages in a work-queue stream that no consumer
    /// will ever deliver again: they are not work).
    async fn idle(&self, last_seqs: &mut Option<Vec<u64>>) -> Result<Option<Vec<u64>>, NatsError> {
        let (messages, seqs) = self.mailbox_state().await?;
        let unchanged = last_seqs.as_ref() == Some(&seqs);
        *last_seqs = Some(seqs.clone());
        if messages == 0 || (unchanged && self.consumers_left().await? == 0) {
            Ok(Some(seqs))
        } else {
            Ok(None)
        }
    }

    /// Messages the node consumers will still deliver or wait an ack for: what is left of the
    /// mailboxes (JetStream `num_pending + num_ack_pending`, summed over the nodes).
    async fn consumers_left(&self) -> Result<u64, NatsError> {
        Ok(self
            .consumer_backlogs()
            .await?
            .iter()
            .map(|&(_, left)| left)
            .sum())
    }

    /// Messages in the mailbox streams, and each stream's last sequence.
    async fn mailbox_state(&self) -> Result<(u64, Vec<u64>), NatsError> {
        let g = &self.graph;
        let mut left = 0;
        let mut seqs = Vec::new();
        for (capacity, _) in capacity_groups(&g.topology) {
            let name = g.names.mailbox_stream(capacity);
            let mut stream = self
                .js
                .get_stream(&name)
                .await
                .map_err(|e| broker(format!("reading `{name}`"), e))?;
            let info = stream
                .info()
                .await
                .map_err(|e| broker(format!("reading `{name}`"), e))?;
            left += info.state.messages;
            seqs.push(info.state.last_sequence);
        }
        Ok((left, seqs))
    }

    fn begin_stop(&self, tally: &mut Tally, reason: StopReason) {
        tally.reason.get_or_insert(reason);
        self.shared.stopping.store(true, Ordering::SeqCst);
    }

    async fn on_record(&self, msg: jetstream::Message, tally: &mut Tally, sinks: &mut SinkOutputs) {
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let _ = msg.ack().await;
        tally.last_record_seq = tally.last_record_seq.max(seq);
        let record: Record = match serde_json::from_slice(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "an undecodable activation record");
                return;
            }
        };
        // A second record for the same message: an activation that ran again (its first
        // settlement's ack was lost) whose record the broker did not drop (it forgets the ids
        // of deleted messages when it restarts). Its effects were counted once already.
        if !tally.settled.insert(record.input.clone()) {
            tracing::debug!(input = %record.input, "a duplicate activation record ignored");
            return;
        }
        let names = self.graph.topology.names();
        let name = names
            .get(record.node)
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        tally.processed += 1;
        if let Some(n) = tally.per_node.get_mut(record.node) {
            *n += 1;
        }
        tally.accepted += record.routed + record.undelivered;
        tally.undelivered += record.undelivered;
        tally.tokens = tally.tokens.saturating_add(record.tokens);
        if let Some(sink) = record.sink {
            let node: Arc<str> = names
                .get(record.node)
                .map_or_else(|| Arc::from("?"), Arc::clone);
            let _ = self.sinks.send(SinkOutput {
                node: Arc::clone(&node),
                message: sink.clone(),
            });
            sinks.push(node, sink);
        }
        if let Some(error) = record.error {
            if tally.error.is_none() {
                tally.error = Some(match error {
                    RecordError::Failed(text) => RunError::NodeFailed {
                        node: name,
                        source: NodeError::new(text),
                        counts: RunCounts::default(),
                    },
                    RecordError::Panicked(message) => RunError::NodePanicked {
                        node: name,
                        message,
                        counts: RunCounts::default(),
                    },
                    RecordError::Condition { to, message } => RunError::ConditionPanicked {
                        from: name,
                        to,
                        message,
                        counts: RunCounts::default(),
                    },
                });
            }
            self.begin_stop(tally, StopReason::Shutdown);
        }
        if record.shutdown_requested {
            self.begin_stop(tally, StopReason::Shutdown);
        }
        if let Some(max) = self.task.budget.and_then(|b| b.max_tokens()) {
            if tally.tokens >= max {
                self.begin_stop(tally, StopReason::Budget(BudgetKind::Tokens));
            }
        }
    }

    async fn on_lease(&self, msg: async_nats::Message, tally: &mut Tally) {
        let Some(reply) = msg.reply.clone() else {
            return;
        };
        let Ok(request) = serde_json::from_slice::<LeaseRequest>(&msg.payload) else {
            return;
        };
        let granted = match self.task.budget.and_then(|b| b.max_tokens()) {
            None => u64::MAX,
            Some(max) => {
                let chunk = self
                    .graph
                    .options
                    .token_chunk
                    .unwrap_or((max / 16).max(1))
                    .max(1);
                let entry = tally
                    .leases
                    .entry(request.process.clone())
                    .or_insert((0, 0));
                entry.1 = entry.1.max(request.used);
                let committed: u64 = tally.leases.values().map(|(g, u)| (*g).max(*u)).sum();
                let available = max.saturating_sub(committed);
                let entry = tally.leases.entry(request.process).or_insert((0, 0));
                let extra = if tally.reason.is_some() {
                    0
                } else {
                    chunk.min(available)
                };
                entry.0 = entry.0.max(entry.1) + extra;
                let granted = entry.0;
                if extra == 0 {
                    self.begin_stop(tally, StopReason::Budget(BudgetKind::Tokens));
                }
                granted
            }
        };
        if let Ok(payload) = encode(&LeaseReply { granted }) {
            let _ = self.graph.client.publish(reply, payload).await;
        }
    }

    async fn on_final(
        &self,
        msg: async_nats::Message,
        tally: &mut Tally,
        reported: &mut HashSet<(String, usize)>,
    ) {
        if let Ok(report) = serde_json::from_slice::<Final>(&msg.payload) {
            if reported.insert((report.process.clone(), report.node)) {
                tally.tokens = tally.tokens.saturating_add(report.extra_tokens);
            }
        }
        if let Some(reply) = msg.reply {
            let _ = self
                .graph
                .client
                .publish(reply, bytes::Bytes::from_static(b"ok"))
                .await;
        }
    }
}

/// Counts one send in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn on_hello(
    msg: &async_nats::Message,
    workers: &mut HashMap<(String, usize), Instant>,
    blocked: &mut HashMap<(String, usize), Instant>,
) {
    if let Ok(hello) = serde_json::from_slice::<Hello>(&msg.payload) {
        let now = Instant::now();
        for node in hello.nodes {
            let worker = (hello.process.clone(), node);
            if hello.blocked.contains(&node) {
                blocked.entry(worker.clone()).or_insert(now);
            } else {
                blocked.remove(&worker);
            }
            workers.insert(worker, now);
        }
    }
}

impl DistributedRunHandle {
    /// Sends `message` into the mailbox of the node called `node`, waiting (with backoff) while
    /// that mailbox is full.
    ///
    /// # Errors
    /// [`SendError`] with the message handed back: unknown node, the run is stopping, or the
    /// broker refused it (too large).
    pub async fn send(&self, node: &str, message: impl Into<NodeMessage>) -> Result<(), SendError> {
        let message = message.into();
        let Some(index) = self.graph.topology.index_of(node) else {
            return Err(SendError::UnknownNode(node.to_owned(), message));
        };
        // Counted until the send ends, also when its future is dropped half-way.
        let _in_flight = InFlight::new(&self.shared.sends_in_flight);
        self.send_inner(index, node, message).await
    }

    async fn send_inner(
        &self,
        index: usize,
        node: &str,
        message: NodeMessage,
    ) -> Result<(), SendError> {
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Err(SendError::Stopped(message));
        }
        let payload = match encode(&message) {
            Ok(p) => p,
            Err(e) => return Err(SendError::Nats(message, e)),
        };
        let max = max_payload(&self.graph.client);
        if payload.len() + HEADER_ROOM > max {
            let size = payload.len();
            return Err(SendError::Nats(
                message,
                NatsError::PayloadTooLarge {
                    node: node.to_owned(),
                    size,
                    max,
                },
            ));
        }
        let n = self.shared.handle_seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}.h.{n}", self.graph.names.run);
        let stopping = CancellationToken::new();
        // Waiting for room ends when the run stops.
        let watch = {
            let shared = Arc::clone(&self.shared);
            let stopping = stopping.clone();
            tokio::spawn(async move {
                while !shared.stopping.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                stopping.cancel();
            })
        };
        let result = publish_bounded(
            &self.js,
            &self.graph.names.mailbox(index),
            &id,
            payload,
            &stopping,
            None,
        )
        .await;
        watch.abort();
        match result {
            Ok(_) => {
                self.shared.handle_accepted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(PublishFailure::Stopped) => Err(SendError::Stopped(message)),
            Err(PublishFailure::Refused(e)) => Err(SendError::Nats(message, e)),
        }
    }

    /// Sink outputs as the coordinator reads them (a subscriber more than 4,096 behind loses the
    /// oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<SinkOutput> {
        self.sinks.subscribe()
    }

    /// Begins a graceful stop ([`StopReason::Shutdown`]).
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    /// `true` once the run's stop began.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Waits for the run's end and its result.
    ///
    /// # Errors
    /// See [`DistributedGraph::run`].
    pub async fn wait(mut self) -> Result<RunResult, DistributedError> {
        let Some(join) = self.join.take() else {
            return Err(RunError::Internal("the run was already awaited".to_owned()).into());
        };
        let result = match join.await {
            Ok(r) => r,
            Err(e) => Err(RunError::Internal(format!("the coordinator task failed: {e}")).into()),
        };
        if let Some(local) = self.local_workers.take() {
            match tokio::time::timeout(self.graph.options.grace + Duration::from_secs(5), local)
                .await
            {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "this process's workers failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "this process's workers panicked"),
                Err(_) => tracing::warn!("this process's workers did not end"),
            }
        }
        result
    }
}

impl Drop for DistributedRunHandle {
    fn drop(&mut self) {
        if self.join.is_some() {
            let _ = self.commands.send(Command::HandleDropped);
        }
    }
}
