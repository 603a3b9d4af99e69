//! The worker side: a process serves some nodes of a run, one worker (tokio task) per node.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use futures_util::StreamExt;
use serde_json::Map;
use spark_adk_core::panic::CatchUnwind;
use spark_adk_core::{
    Context, EventBus, EventKind, GraphState, NodeMessage, RunError, RunScope, StateBackend,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::{broker, NatsError};
use crate::graph::{DistributedGraph, Serve};
use crate::state::{NatsStateBackend, StateThread};
use crate::wire::{
    capacity_groups, encode, publish_bounded, retry, Final, Hello, LeaseReply, LeaseRequest,
    PublishFailure, Record, RecordError, Stop, HEADER_ROOM,
};

/// What a worker process did, returned by [`DistributedGraph::serve`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerSummary {
    /// Activations this process settled (published their record and acked their input).
    pub processed: u64,
    /// Shutdown deliveries this process made (one per worker on a graceful end).
    pub shutdown_deliveries: u64,
    /// Activations dropped at the end of the grace period.
    pub dropped: u64,
}

/// One process's shared view of the run.
pub(crate) struct Process {
    graph: DistributedGraph,
    js: jetstream::Context,
    id: String,
    /// The stop began (coordinator's broadcast, or the run's streams are gone).
    stop: CancellationToken,
    /// The grace period ended: drop in-flight activations.
    grace_over: CancellationToken,
    /// Tokens this process may use in total (leased from the coordinator).
    granted: Mutex<Option<u64>>,
    used: AtomicU64,
    /// The run's graph state on the broker (`ctx.state()` of every worker of this process).
    state: Arc<StateThread>,
    /// Per node: its worker waits for room in a full mailbox.
    blocked: Vec<std::sync::atomic::AtomicBool>,
    max_payload: usize,
    processed: AtomicU64,
    shutdown_deliveries: AtomicU64,
    dropped: AtomicU64,
    /// Where this process publishes the events of the nodes it hosts (the graph's bus).
    events: Events,
}

fn process_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:x}-{:016x}", std::process::id(), h.finish())
}

impl DistributedGraph {
    /// Serves `nodes` of this run in this process until the run stops: waits (up to
    /// `join_timeout`) for the coordinator to create the run's streams, then runs one worker per
    /// node; on the stop, each worker finishes its in-flight message, gets its shutdown delivery
    /// and reports to the coordinator.
    ///
    /// # Errors
    /// [`NatsError`] when a node name is unknown or the run's streams never appear.
    pub async fn serve(&self, nodes: Serve) -> Result<WorkerSummary, NatsError> {
        let indices = nodes.indices(&self.topology)?;
        let process = Arc::new(Process::new(self.clone()).await);
        process.serve(indices).await
    }
}

impl Process {
    pub(crate) async fn new(graph: DistributedGraph) -> Self {
        let js = jetstream::new(graph.client.clone());
        let state = Arc::new(
            StateThread::new(&graph.client, graph.names.clone(), graph.options.clone()).await,
        );
        let max_payload = graph.client.server_info().max_payload;
        Self {
            js,
            id: process_id(),
            stop: CancellationToken::new(),
            grace_over: CancellationToken::new(),
            granted: Mutex::new(None),
            used: AtomicU64::new(0),
            state,
            blocked: (0..graph.topology.len())
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            max_payload: if max_payload == 0 {
                1 << 20
            } else {
                max_payload
            },
            processed: AtomicU64::new(0),
            shutdown_deliveries: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            events: Events::new(&graph),
            graph,
        }
    }

    pub(crate) async fn serve(
        self: Arc<Self>,
        indices: Vec<usize>,
    ) -> Result<WorkerSummary, NatsError> {
        let g = &self.graph;
        let mut stop_sub = g
            .client
            .subscribe(g.names.control("stop"))
            .await
            .map_err(|e| broker("subscribe to the stop subject", e))?;
        // Find every served node's consumer (the coordinator may still be creating them).
        let groups = capacity_groups(&g.topology);
        let mut consumers = Vec::new();
        for &i in &indices {
            let capacity = groups
                .iter()
                .find(|(_, nodes)| nodes.contains(&i))
                .map_or(0, |(c, _)| *c);
            let stream_name = g.names.mailbox_stream(capacity);
            let js = self.js.clone();
            let consumer: PullConsumer = retry(
                &format!("joining run `{}` (stream `{stream_name}`)", g.names.run),
                g.options.join_timeout,
                || {
                    let js = js.clone();
                    let stream_name = stream_name.clone();
                    async move {
                        let stream = js
                            .get_stream(&stream_name)
                            .await
                            .map_err(|e| e.to_string())?;
                        stream
                            .get_consumer(&crate::wire::Names::consumer(i))
                            .await
                            .map_err(|e| e.to_string())
                    }
                },
            )
            .await?;
            consumers.push((i, consumer, stream_name));
        }
        // The stop broadcast.
        let watcher = {
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                while let Some(msg) = stop_sub.next().await {
                    if let Ok(stop) = serde_json::from_slice::<Stop>(&msg.payload) {
                        me.begin_stop(Duration::from_millis(stop.grace_ms));
                    }
                }
            })
        };
        // Heartbeats: the coordinator learns which workers to wait for at the stop. The first
        // one is out before any worker takes a message.
        let _ = g
            .client
            .publish(g.names.control("hello"), self.hello(&indices)?)
            .await;
        let _ = g.client.flush().await;
        let heartbeat = {
            let me = Arc::clone(&self);
            let indices = indices.clone();
            tokio::spawn(async move {
                let subject = me.graph.names.control("hello");
                loop {
                    if let Ok(hello) = me.hello(&indices) {
                        let _ = me.graph.client.publish(subject.clone(), hello).await;
                    }
                    tokio::time::sleep(me.graph.options.heartbeat).await;
                }
            })
        };
        let workers: Vec<_> = consumers
            .into_iter()
            .map(|(i, consumer, stream_name)| {
                let me = Arc::clone(&self);
                tokio::spawn(async move { me.run_worker(i, consumer, stream_name).await })
            })
            .collect();
        for w in workers {
            if let Err(e) = w.await {
                tracing::error!(error = %e, "a worker task of the distributed run failed");
            }
        }
        heartbeat.abort();
        watcher.abort();
        Ok(WorkerSummary {
            processed: self.processed.load(Ordering::Relaxed),
            shutdown_deliveries: self.shutdown_deliveries.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        })
    }

    /// This process's heartbeat: its workers, and which of them wait for room.
    fn hello(&self, indices: &[usize]) -> Result<bytes::Bytes, NatsError> {
        encode(&Hello {
            process: self.id.clone(),
            nodes: indices.to_vec(),
            blocked: indices
                .iter()
                .copied()
                .filter(|&i| {
                    self.blocked
                        .get(i)
                        .is_some_and(|b| b.load(Ordering::Acquire))
                })
                .collect(),
        })
    }

    fn begin_stop(&self, grace: Duration) {
        if self.stop.is_cancelled() {
            return;
        }
        self.stop.cancel();
        let over = self.grace_over.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            over.cancel();
        });
    }

    /// Whether this process may start an activation under the token budget (leases more
    /// tokens from the coordinator when its lease is used up).
    async fn may_start(&self) -> bool {
        let used = self.used.load(Ordering::Acquire);
        let mut granted = self.granted.lock().await;
        if granted.is_some_and(|g| used < g) {
            return true;
        }
        let g = &self.graph;
        let Ok(request) = encode(&LeaseRequest {
            process: self.id.clone(),
            used,
        }) else {
            return false;
        };
        let subject = g.names.control("lease");
        let mut backoff =
            crate::wire::Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
        loop {
            if self.stop.is_cancelled() {
                return false;
            }
            let reply = tokio::time::timeout(
                Duration::from_secs(2),
                g.client.request(subject.clone(), request.clone()),
            )
            .await;
            if let Ok(Ok(msg)) = reply {
                if let Ok(reply) = serde_json::from_slice::<LeaseReply>(&msg.payload) {
                    *granted = Some(reply.granted);
                    return used < reply.granted;
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// `true` when the run's mailbox stream no longer exists (the run is over).
    async fn run_is_gone(&self, stream_name: &str) -> bool {
        match self.js.get_stream(stream_name).await {
            Ok(_) => false,
            Err(e) => e.to_string().contains("not found"),
        }
    }

    async fn run_worker(
        self: Arc<Self>,
        index: usize,
        consumer: PullConsumer,
        stream_name: String,
    ) {
        let g = &self.graph;
        let Some(entry) = g.topology.node(index) else {
            return;
        };
        let node = Arc::clone(&entry.node);
        // This worker's own handle on the run's state: a broker failure in one of its
        // activations is that activation's error.
        let state = Arc::new(NatsStateBackend::new(Arc::clone(&self.state)));
        let scope = Arc::new(
            RunScope::for_run(None, Map::new(), Arc::clone(g.topology.names()))
                .with_state(GraphState::with_backend(
                    Arc::clone(&state) as Arc<dyn StateBackend>
                ))
                .with_events(g.topology.events().clone()),
        );
        let mut ctx = Context::new(NodeMessage::empty(), index, Arc::clone(&scope));
        let mut failed = false;
        let mut dropped = false;
        let mut shutdown_reported = false;
        let mut errors = 0u32;
        let mut puller = Puller {
            consumer,
            wait: g.options.fetch_wait,
            stream: None,
        };
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            let fetched = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                r = puller.next() => r,
            };
            let msg = match fetched {
                Ok(Some(msg)) => {
                    errors = 0;
                    msg
                }
                Ok(None) => continue,
                Err(e) => {
                    errors += 1;
                    if errors >= 3 && self.run_is_gone(&stream_name).await {
                        // The coordinator ended the run and deleted its streams.
                        self.begin_stop(Duration::ZERO);
                        break;
                    }
                    tracing::warn!(node = %entry.name, error = %e, "fetching from the mailbox failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(errors.min(20)))).await;
                    continue;
                }
            };
            if self.stop.is_cancelled() {
                // Left in the stream: counted unprocessed by the coordinator.
                break;
            }
            if !self.may_start().await {
                // Token budget used up: the message stays (unprocessed); wait for the stop.
                self.stop.cancelled().await;
                break;
            }
            match self
                .activate(
                    index,
                    &entry.name,
                    &node,
                    &mut ctx,
                    &scope,
                    &state,
                    msg,
                    &mut shutdown_reported,
                )
                .await
            {
                Activation::Settled => {}
                Activation::Failed => {
                    failed = true;
                    break;
                }
                Activation::Dropped => {
                    dropped = true;
                    break;
                }
            }
        }
        // The shutdown delivery: once per worker on a graceful end; none after a failure or
        // a dropped activation.
        let before = scope.tokens_used();
        let mut delivered = false;
        if !failed && !dropped {
            drop(ctx.reset(NodeMessage::empty().with_metadata("shutdown", true), index));
            let call = CatchUnwind::new(node.process_dyn(&ctx));
            tokio::select! {
                r = call => {
                    delivered = true;
                    if let Err(panic) = r {
                        tracing::warn!(node = %entry.name, panic, "the shutdown delivery panicked");
                    }
                }
                () = self.grace_over.cancelled() => dropped = true,
            }
            if let Some(e) = state.take_error() {
                // Nothing is recorded for a shutdown delivery: say it here.
                tracing::error!(node = %entry.name, error = %e, "the graph state failed in the shutdown delivery");
            }
        }
        if delivered {
            self.shutdown_deliveries.fetch_add(1, Ordering::Relaxed);
        }
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let report = Final {
            process: self.id.clone(),
            node: index,
            shutdown_delivered: delivered,
            dropped,
            extra_tokens: scope.tokens_used().saturating_sub(before),
        };
        self.report_final(&report).await;
    }

    async fn report_final(&self, report: &Final) {
        let g = &self.graph;
        let Ok(payload) = encode(report) else { return };
        let subject = g.names.control("final");
        let give_up = tokio::time::Instant::now() + g.options.grace + Duration::from_secs(5);
        let mut backoff =
            crate::wire::Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
        while tokio::time::Instant::now() < give_up {
            let reply = tokio::time::timeout(
                Duration::from_secs(1),
                g.client.request(subject.clone(), payload.clone()),
            )
            .await;
            let nobody_listens = matches!(
                &reply,
                Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders
            );
            if matches!(reply, Ok(Ok(_))) {
                return;
            }
            // Nobody listens: if the run's streams are gone, the coordinator is done.
            if nobody_listens && self.run_is_gone(&g.names.record_stream()).await {
                return;
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        tracing::warn!(
            node = report.node,
            "the coordinator did not take this worker's final report"
        );
    }

    /// Runs one activation and settles it: outputs published (de-duplicated), record published,
    /// input acked.
    #[allow(clippy::too_many_arguments)]
    async fn activate(
        &self,
        index: usize,
        name: &str,
        node: &Arc<dyn spark_adk_core::DynNode>,
        ctx: &mut Context,
        scope: &Arc<RunScope>,
        state: &NatsStateBackend,
        msg: jetstream::Message,
        shutdown_reported: &mut bool,
    ) -> Activation {
        let g = &self.graph;
        // The message's logical id (its `Nats-Msg-Id`): the same for every delivery of it and
        // for every copy a re-run activation publishes again, so outputs and records derived
        // from it are recognised as duplicates by the broker and by the coordinator.
        let input_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str().to_owned());
        let Some(input_id) = input_id else {
            tracing::error!(node = name, "a mailbox message without a Nats-Msg-Id");
            return Activation::Dropped;
        };
        let decoded = serde_json::from_slice::<NodeMessage>(&msg.payload);
        let before = scope.tokens_used();
        let started = self.events.is_active().then(tokio::time::Instant::now);
        // A failure left from a previous activation was reported with it.
        let _ = state.take_error();
        let outcome = match decoded {
            Err(e) => Some(Err(RecordError::Failed(format!(
                "undecodable message in the mailbox of `{name}`: {e}"
            )))),
            Ok(input) => {
                drop(ctx.reset(input, index));
                self.events.publish(|| EventKind::NodeStarted {
                    node: node_name(g, index),
                });
                let activation = pin!(CatchUnwind::new(node.process_dyn(ctx)));
                let mut activation = activation;
                let period = (g.options.ack_wait / 3).max(Duration::from_millis(10));
                let mut progress =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut activation => break Some(match r {
                            Ok(Ok(out)) => Ok(out),
                            Ok(Err(e)) => Err(RecordError::Failed(e.message().to_owned())),
                            Err(panic) => Err(RecordError::Panicked(panic)),
                        }),
                        () = self.grace_over.cancelled() => break None,
                        _ = progress.tick() => {
                            if let Err(e) = msg.ack_with(AckKind::Progress).await {
                                tracing::warn!(node = name, error = %e, "progress ack failed");
                            }
                        }
                    }
                }
            }
        };
        let tokens = scope.tokens_used().saturating_sub(before);
        self.used.fetch_add(tokens, Ordering::AcqRel);
        let Some(mut outcome) = outcome else {
            // Dropped at the end of the grace period: the message stays in the stream.
            return Activation::Dropped;
        };
        if let Some(e) = state.take_error() {
            // `ctx.state()` cannot return an error: a broker failure during the activation
            // fails it (its outputs are not routed), naming the node.
            outcome = Err(RecordError::Failed(format!(
                "the graph state failed during an activation of `{name}`: {e}"
            )));
        }
        let mut record = Record {
            input: input_id.clone(),
            node: index,
            routed: 0,
            undelivered: 0,
            sink: None,
            error: None,
            shutdown_requested: false,
            tokens,
        };
        match &outcome {
            Ok(_) => self.events.publish(|| EventKind::NodeFinished {
                node: node_name(g, index),
                duration: started.map(|t| t.elapsed()).unwrap_or_default(),
            }),
            Err(e) => self.events.publish(|| EventKind::NodeFailed {
                node: node_name(g, index),
                error: match e {
                    RecordError::Failed(text) => text.clone(),
                    RecordError::Panicked(message) => format!("panicked: {message}"),
                    RecordError::Condition { to, message } => {
                        format!("condition to `{to}` panicked: {message}")
                    }
                },
            }),
        }
        if scope.shutdown_requested() && !*shutdown_reported {
            *shutdown_reported = true;
            record.shutdown_requested = true;
        }
        match outcome {
            Err(e) => record.error = Some(e),
            Ok(output) => {
                self.route(index, name, &input_id, output, &mut record)
                    .await
            }
        }
        let failed = record.error.is_some();
        // The record: what the coordinator counts (de-duplicated like the outputs).
        let mut payload = encode(&record);
        if payload
            .as_ref()
            .is_ok_and(|p| p.len() + HEADER_ROOM > self.max_payload)
        {
            let size = payload.as_ref().map_or(0, bytes::Bytes::len);
            record.sink = None;
            record.error = Some(RecordError::Failed(
                NatsError::PayloadTooLarge {
                    node: name.to_owned(),
                    size,
                    max: self.max_payload,
                }
                .to_string(),
            ));
            payload = encode(&record);
        }
        let failed = failed || record.error.is_some();
        let Ok(payload) = payload else {
            return Activation::Dropped;
        };
        let id = format!("{input_id}.rec");
        if let Err(e) = publish_bounded(
            &self.js,
            &g.names.records(),
            &id,
            payload,
            &self.grace_over,
            None,
        )
        .await
        {
            tracing::error!(node = name, error = ?e, "the activation record could not be published");
            return Activation::Dropped;
        }
        // The input is settled only now: a crash before this ack delivers it again, and the
        // re-run's publishes are dropped as duplicates.
        // A plain ack (no confirmation round trip): if it is lost, the message comes again
        // after `ack_wait` and the re-run is de-duplicated.
        if let Err(e) = msg.ack().await {
            tracing::warn!(node = name, error = %e, "acking a settled activation failed (it will be re-run and de-duplicated)");
        }
        self.processed.fetch_add(1, Ordering::Relaxed);
        if record.shutdown_requested {
            // The stop begins here and now for this process (the coordinator tells the others
            // once it read the record).
            self.begin_stop(g.options.grace);
        }
        if failed {
            Activation::Failed
        } else {
            Activation::Settled
        }
    }

    async fn route(
        &self,
        index: usize,
        name: &str,
        input_id: &str,
        output: NodeMessage,
        record: &mut Record,
    ) {
        let g = &self.graph;
        let mut targets = Vec::new();
        if let Err(e) = g.topology.route(index, &output, |t| targets.push(t)) {
            record.error = Some(match e {
                RunError::ConditionPanicked { to, message, .. } => {
                    RecordError::Condition { to, message }
                }
                other => RecordError::Failed(other.to_string()),
            });
            return;
        }
        if targets.is_empty() {
            record.sink = Some(output);
            return;
        }
        let payload = match encode(&output) {
            Ok(p) => p,
            Err(e) => {
                record.error = Some(RecordError::Failed(e.to_string()));
                return;
            }
        };
        if payload.len() + HEADER_ROOM > self.max_payload {
            record.error = Some(RecordError::Failed(
                NatsError::PayloadTooLarge {
                    node: name.to_owned(),
                    size: payload.len(),
                    max: self.max_payload,
                }
                .to_string(),
            ));
            return;
        }
        let mut stopped = false;
        for (k, &target) in targets.iter().enumerate() {
            if stopped {
                record.undelivered += 1;
                continue;
            }
            let id = crate::wire::output_id(&g.names.run, input_id, k);
            match publish_bounded(
                &self.js,
                &g.names.mailbox(target),
                &id,
                payload.clone(),
                &self.stop,
                self.blocked.get(index),
            )
            .await
            {
                Ok(_) => {
                    record.routed += 1;
                    self.events.publish(|| EventKind::MessageSent {
                        from: node_name(g, index),
                        to: node_name(g, target),
                    });
                }
                Err(PublishFailure::Stopped) => {
                    stopped = true;
                    record.undelivered += 1;
                }
                Err(PublishFailure::Refused(e)) => {
                    record.undelivered += (targets.len() - k) as u64;
                    record.error = Some(RecordError::Failed(format!(
                        "output of `{name}` refused: {e}"
                    )));
                    return;
                }
            }
        }
    }
}

fn node_name(g: &DistributedGraph, index: usize) -> Arc<str> {
    g.topology
        .names()
        .get(index)
        .map_or_else(|| Arc::from("?"), Arc::clone)
}

/// The run's events as one process publishes them on the graph's [`EventBus`]: free without
/// a subscriber (nothing is built), with the run's event id ([`Events::run_key`]) and the time
/// since this process joined the run.
#[derive(Clone, Debug)]
pub(crate) struct Events {
    bus: EventBus,
    run_key: u64,
    started: tokio::time::Instant,
}

impl Events {
    pub(crate) fn new(graph: &DistributedGraph) -> Self {
        Self {
            bus: graph.topology.events().clone(),
            run_key: Self::run_key(&graph.names.run),
            started: tokio::time::Instant::now(),
        }
    }

    /// The `Event::run_id` of a distributed run in every process: a 64-bit FNV-1a hash of
    /// its run id (the same in every process).
    pub(crate) fn run_key(run: &str) -> u64 {
        run.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.bus.is_active()
    }

    #[inline]
    pub(crate) fn publish(&self, kind: impl FnOnce() -> EventKind) {
        if self.bus.is_active() {
            self.bus
                .publish(self.run_key, self.started.elapsed(), kind());
        }
    }
}

enum Activation {
    Settled,
    Failed,
    Dropped,
}

/// The node's messages, pulled one at a time (`max_messages_per_batch(1)`: with
/// `max_ack_pending = 1` the broker hands over the next message as soon as the previous one is
/// acked, without a pull request round trip per message). Re-opened after an error.
struct Puller {
    consumer: PullConsumer,
    wait: Duration,
    stream: Option<async_nats::jetstream::consumer::pull::Stream>,
}

impl Puller {
    async fn next(&mut self) -> Result<Option<jetstream::Message>, NatsError> {
        if self.stream.is_none() {
            let stream = self
                .consumer
                .stream()
                .max_messages_per_batch(1)
                .expires(self.wait.max(Duration::from_secs(1)))
                .messages()
                .await
                .map_err(|e| broker("pulling from a mailbox", e))?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        match stream.next().await {
            Some(Ok(msg)) => Ok(Some(msg)),
            Some(Err(e)) => {
                self.stream = None;
                Err(broker("pulling from a mailbox", e))
            }
            None => {
                self.stream = None;
                Ok(None)
            }
        }
    }
}
