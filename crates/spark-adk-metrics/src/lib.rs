//! Metrics for Spark for Rust: a graph's run events turned into counters, gauges and histograms
//! through the [`metrics`] facade crate, so that any `metrics` exporter (Prometheus, StatsD,
//! OpenTelemetry, ...) sees activations, failures, retries and durations per node, and runs by
//! mode and stop reason.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use metrics_util::debugging::DebuggingRecorder;
//! use spark_adk_core::{EventBus, EventKind, StopReason, TaskType};
//! use spark_adk_metrics::MetricsExporter;
//!
//! // In an application the bus is the graph's: `graph.events()`. Attach before running.
//! let bus = EventBus::new();
//! let mut exporter = MetricsExporter::attach(&bus, "etl");
//!
//! // A run publishes its events (here by hand: a run of one node that finished in 2 ms).
//! let node: std::sync::Arc<str> = "extract".into();
//! bus.publish(7, Duration::ZERO, EventKind::GraphStarted { task_type: TaskType::Standard });
//! bus.publish(7, Duration::ZERO, EventKind::NodeStarted { node: node.clone() });
//! bus.publish(7, Duration::from_millis(2), EventKind::NodeFinished { node, duration: Duration::from_millis(2) });
//! bus.publish(7, Duration::from_millis(3), EventKind::GraphFinished { stop_reason: Some(StopReason::Completed), error: None });
//!
//! // Export what was published so far into a recorder (an application installs its exporter's
//! // recorder globally and runs `tokio::spawn(exporter.run())` instead).
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let recorded = metrics::with_local_recorder(&recorder, || exporter.drain());
//! assert_eq!(recorded, 4);
//!
//! let finished = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     key.key().name() == "spark_node_activations_finished_total"
//! });
//! assert!(finished.is_some());
//! ```
//!
//! # How it works
//!
//! A [`MetricsExporter`] subscribes to a graph's [`EventBus`] (`graph.events()` in the facade)
//! and records each [`Event`] with the `metrics` macros, into whatever recorder is installed
//! ([`metrics::set_global_recorder`], or [`metrics::with_local_recorder`] around
//! [`drain`](MetricsExporter::drain)). Run it in the background with
//! `tokio::spawn(exporter.run())`: it ends by itself when the graph (every clone of its bus) is
//! dropped. [`EventMetrics`] is the translation alone, for events you receive yourself.
//!
//! A [subgraph](https://docs.rs/spark-adk/latest/spark_adk/struct.SubgraphNode.html) or map
//! node runs its inner graph on the inner graph's own bus: attach an exporter to the inner graph
//! too, with its own `graph` label. (A map node also sends the retries of its inner nodes to the
//! outer run's bus, where they count under the inner nodes' names.)
//!
//! No executor knows this crate: everything comes from the events every run publishes anyway.
//! The cost is the bus's: once anyone subscribes, every run of the graph builds its events
//! (without a subscriber it builds none).
//!
//! # The metrics
//!
//! Every metric has the label `graph` (the name given to [`MetricsExporter::attach`]). Names
//! follow the Prometheus conventions (`_total` for counters, units in the name); durations are
//! in seconds. The names are also the constants of [`names`].
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `spark_node_activations_started_total` | counter | `node` | activations that started (an activation retried by a retry wrapper counts once) |
//! | `spark_node_activations_finished_total` | counter | `node` | activations that returned an output |
//! | `spark_node_activations_failed_total` | counter | `node` | activations that failed (error, panic, per-node timeout) |
//! | `spark_node_retries_total` | counter | `node` | failed attempts a retry wrapper runs again (`NodeRetrying`) |
//! | `spark_node_duration_seconds` | histogram | `node` | how long each finished activation's `process` took |
//! | `spark_node_activations_in_flight` | gauge | `node` | activations started and not yet ended |
//! | `spark_messages_sent_total` | counter | `from`, `to` | long-running mode: messages routed from one node to another |
//! | `spark_mailbox_depth` | gauge | `node` | long-running mode: messages waiting for the node (queued, reserved by a sender, or taken and not started), summed over the graph's runs; sampled when the node's worker takes messages and when it parks (`MailboxDepth` events) |
//! | `spark_runs_started_total` | counter | `mode` | runs started (`standard`, `long_running`) |
//! | `spark_runs_finished_total` | counter | `mode`, `stop_reason` | runs ended: `completed`, `shutdown`, `handle_dropped`, `budget_time`, `budget_tokens`, or `error` |
//! | `spark_run_duration_seconds` | histogram | `mode`, `stop_reason` | from a run's start to its end |
//! | `spark_runs_active` | gauge | `mode` | runs started and not yet ended |
//! | `spark_budgets_exhausted_total` | counter | `mode`, `budget` | a budget ran out (`time`, `tokens`) |
//! | `spark_events_lagged_total` | counter | | events this exporter lost because it fell behind the bus |
//!
//! The `mode` of a run whose start the exporter did not see (attached mid-run, or lost to lag)
//! is `unknown`. A run that ends removes what is left of its in-flight activations from the
//! in-flight gauge, so the gauges come back to zero when the graph is idle even if an
//! activation's end event was lost.
//!
//! # Lag: nothing is lost silently
//!
//! The bus is a `tokio::sync::broadcast` channel of 4,096 events: it never blocks a run, and a
//! subscriber that falls further behind loses the oldest events. The exporter counts every lost
//! event in `spark_events_lagged_total` (and in [`MetricsExporter::lagged`]); the counters
//! above then undercount by at most that many events. A background exporter keeps up with
//! ordinary graphs; one drained by hand must be drained at least every 4,096 events.
//!
//! # Mailbox depth
//!
//! The depth gauge is a sample, not a count of events: a long-running worker publishes its
//! mailbox's depth ([`EventKind::MailboxDepth`]) whenever it takes messages from the mailbox and
//! when it parks with nothing left, and only while the bus has a subscriber (without one it reads
//! nothing). So the gauge is exact whenever a worker is idle, and between samples a busy node's
//! gauge shows the depth it had when its worker last took messages. A run that ends removes its
//! nodes' depths from the gauge (its mailboxes are gone).
//!
//! **Layering**: depends on `spark-adk-core` only among the workspace crates, and on `metrics`
//! and tokio's `sync` feature (no runtime). The facade `spark-adk` re-exports it as
//! `spark_adk::metrics` with its `metrics` cargo feature.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use metrics::{counter, gauge, histogram, SharedString};
use spark_adk_core::{BudgetKind, Event, EventBus, EventKind, StopReason, TaskType};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

/// The metric names, as documented in the [crate docs](crate#the-metrics).
pub mod names {
    /// Counter: activations that started, label `node`.
    pub const NODE_STARTED: &str = "spark_node_activations_started_total";
    /// Counter: activations that returned an output, label `node`.
    pub const NODE_FINISHED: &str = "spark_node_activations_finished_total";
    /// Counter: activations that failed, label `node`.
    pub const NODE_FAILED: &str = "spark_node_activations_failed_total";
    /// Counter: failed attempts a retry wrapper runs again, label `node`.
    pub const NODE_RETRIES: &str = "spark_node_retries_total";
    /// Histogram (seconds): duration of each finished activation, label `node`.
    pub const NODE_DURATION: &str = "spark_node_duration_seconds";
    /// Gauge: activations started and not yet ended, label `node`.
    pub const NODE_IN_FLIGHT: &str = "spark_node_activations_in_flight";
    /// Counter: long-running messages routed between nodes, labels `from`, `to`.
    pub const MESSAGES_SENT: &str = "spark_messages_sent_total";
    /// Gauge: long-running messages waiting for a node, label `node` (sampled, see the
    /// [crate docs](crate#mailbox-depth)).
    pub const MAILBOX_DEPTH: &str = "spark_mailbox_depth";
    /// Counter: runs started, label `mode`.
    pub const RUNS_STARTED: &str = "spark_runs_started_total";
    /// Counter: runs ended, labels `mode`, `stop_reason`.
    pub const RUNS_FINISHED: &str = "spark_runs_finished_total";
    /// Histogram (seconds): run durations, labels `mode`, `stop_reason`.
    pub const RUN_DURATION: &str = "spark_run_duration_seconds";
    /// Gauge: runs started and not yet ended, label `mode`.
    pub const RUNS_ACTIVE: &str = "spark_runs_active";
    /// Counter: budgets that ran out, labels `mode`, `budget`.
    pub const BUDGETS_EXHAUSTED: &str = "spark_budgets_exhausted_total";
    /// Counter: events the exporter lost because it lagged behind the bus.
    pub const EVENTS_LAGGED: &str = "spark_events_lagged_total";
}

/// Registers a description and a unit for every metric with the installed recorder. Optional;
/// exporters that print help texts (Prometheus) use them. Call it after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        names::NODE_STARTED,
        Unit::Count,
        "Node activations that started."
    );
    describe_counter!(
        names::NODE_FINISHED,
        Unit::Count,
        "Node activations that returned an output."
    );
    describe_counter!(
        names::NODE_FAILED,
        Unit::Count,
        "Node activations that failed (error, panic, timeout)."
    );
    describe_counter!(
        names::NODE_RETRIES,
        Unit::Count,
        "Failed attempts that a retry wrapper runs again."
    );
    describe_histogram!(
        names::NODE_DURATION,
        Unit::Seconds,
        "Duration of each finished node activation."
    );
    describe_gauge!(
        names::NODE_IN_FLIGHT,
        Unit::Count,
        "Node activations started and not yet ended."
    );
    describe_counter!(
        names::MESSAGES_SENT,
        Unit::Count,
        "Long-running mode: messages routed from one node to another."
    );
    describe_gauge!(
        names::MAILBOX_DEPTH,
        Unit::Count,
        "Long-running mode: messages waiting for a node (sampled)."
    );
    describe_counter!(names::RUNS_STARTED, Unit::Count, "Runs started.");
    describe_counter!(
        names::RUNS_FINISHED,
        Unit::Count,
        "Runs ended, by stop reason."
    );
    describe_histogram!(names::RUN_DURATION, Unit::Seconds, "Duration of each run.");
    describe_gauge!(
        names::RUNS_ACTIVE,
        Unit::Count,
        "Runs started and not yet ended."
    );
    describe_counter!(
        names::BUDGETS_EXHAUSTED,
        Unit::Count,
        "Budgets that ran out."
    );
    describe_counter!(
        names::EVENTS_LAGGED,
        Unit::Count,
        "Run events the metrics exporter lost because it fell behind."
    );
}

/// At most this many runs are remembered (mode, in-flight activations) at once; beyond it the
/// oldest is forgotten. Only runs whose end event was lost to lag stay longer than they run.
const MAX_TRACKED_RUNS: usize = 10_000;

/// What the translation remembers about a run between its events.
struct RunState {
    mode: &'static str,
    /// Activations of this run started and not yet ended, per node.
    in_flight: HashMap<Arc<str>, u64>,
    /// The last mailbox depth sampled in this run, per node.
    depth: HashMap<Arc<str>, u64>,
}

/// Turns run events into `metrics` counters, gauges and histograms (see the
/// [crate docs](crate#the-metrics) for the names), recorded into the recorder current when
/// [`record`](Self::record) is called.
///
/// Use it directly when you receive the events yourself; [`MetricsExporter`] pairs it with a
/// subscription to a graph's bus.
pub struct EventMetrics {
    graph: SharedString,
    /// Keyed by run id; run ids grow, so the first entry is the oldest run.
    runs: BTreeMap<u64, RunState>,
    /// Activations in flight per node, over every tracked run.
    in_flight: HashMap<Arc<str>, u64>,
    /// Mailbox depth per node, summed over every tracked run's last sample.
    depth: HashMap<Arc<str>, u64>,
    /// Tracked runs per mode.
    active: HashMap<&'static str, u64>,
    lagged: u64,
}

impl fmt::Debug for EventMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventMetrics")
            .field("graph", &&*self.graph)
            .field("runs", &self.runs.len())
            .field("lagged", &self.lagged)
            .finish()
    }
}

fn mode_label(task_type: TaskType) -> &'static str {
    match task_type {
        TaskType::Standard => "standard",
        TaskType::LongRunning => "long_running",
    }
}

fn budget_label(kind: BudgetKind) -> &'static str {
    match kind {
        BudgetKind::Time => "time",
        BudgetKind::Tokens => "tokens",
    }
}

fn stop_label(stop_reason: Option<StopReason>) -> &'static str {
    match stop_reason {
        Some(StopReason::Completed) => "completed",
        Some(StopReason::Shutdown) => "shutdown",
        Some(StopReason::HandleDropped) => "handle_dropped",
        Some(StopReason::Interrupted) => "interrupted",
        Some(StopReason::Budget(BudgetKind::Time)) => "budget_time",
        Some(StopReason::Budget(BudgetKind::Tokens)) => "budget_tokens",
        None => "error",
    }
}

const UNKNOWN_MODE: &str = "unknown";

impl EventMetrics {
    /// A translation whose metrics carry the label `graph = graph`.
    pub fn new(graph: impl Into<String>) -> Self {
        Self {
            graph: SharedString::from_shared(Arc::<str>::from(graph.into())),
            runs: BTreeMap::new(),
            in_flight: HashMap::new(),
            depth: HashMap::new(),
            active: HashMap::new(),
            lagged: 0,
        }
    }

    /// The `graph` label.
    pub fn graph(&self) -> &str {
        &self.graph
    }

    /// How many events were reported lost through [`record_lagged`](Self::record_lagged).
    pub fn lagged(&self) -> u64 {
        self.lagged
    }

    /// Records one event.
    pub fn record(&mut self, event: &Event) {
        let graph = self.graph.clone();
        match &event.kind {
            EventKind::GraphStarted { task_type } => {
                let mode = mode_label(*task_type);
                counter!(names::RUNS_STARTED, "graph" => graph, "mode" => mode).increment(1);
                self.track(event.run_id, mode);
            }
            EventKind::NodeStarted { node } => {
                counter!(names::NODE_STARTED, "graph" => graph, "node" => node.clone())
                    .increment(1);
                let run = self.track(event.run_id, UNKNOWN_MODE);
                *run.in_flight.entry(node.clone()).or_insert(0) += 1;
                self.add_in_flight(node, 1);
            }
            EventKind::NodeFinished { node, duration } => {
                counter!(names::NODE_FINISHED, "graph" => graph.clone(), "node" => node.clone())
                    .increment(1);
                histogram!(names::NODE_DURATION, "graph" => graph, "node" => node.clone())
                    .record(*duration);
                self.end_activation(event.run_id, node);
            }
            EventKind::NodeFailed { node, .. } => {
                counter!(names::NODE_FAILED, "graph" => graph, "node" => node.clone()).increment(1);
                self.end_activation(event.run_id, node);
            }
            EventKind::NodeRetrying { node, .. } => {
                counter!(names::NODE_RETRIES, "graph" => graph, "node" => node.clone())
                    .increment(1);
            }
            EventKind::MessageSent { from, to } => {
                counter!(
                    names::MESSAGES_SENT,
                    "graph" => graph,
                    "from" => from.clone(),
                    "to" => to.clone()
                )
                .increment(1);
            }
            EventKind::MailboxDepth { node, depth } => {
                let run = self.track(event.run_id, UNKNOWN_MODE);
                let before = run.depth.insert(node.clone(), *depth).unwrap_or(0);
                self.add_depth(node, *depth, before);
            }
            EventKind::BudgetExhausted { kind } => {
                let mode = self.mode_of(event.run_id);
                counter!(
                    names::BUDGETS_EXHAUSTED,
                    "graph" => graph,
                    "mode" => mode,
                    "budget" => budget_label(*kind)
                )
                .increment(1);
            }
            EventKind::GraphFinished { stop_reason, .. } => {
                let mode = self.mode_of(event.run_id);
                let stop = stop_label(*stop_reason);
                counter!(
                    names::RUNS_FINISHED,
                    "graph" => graph.clone(),
                    "mode" => mode,
                    "stop_reason" => stop
                )
                .increment(1);
                histogram!(
                    names::RUN_DURATION,
                    "graph" => graph,
                    "mode" => mode,
                    "stop_reason" => stop
                )
                .record(event.elapsed);
                self.forget(event.run_id);
            }
            // Kinds added to core later are not exported until this crate knows them.
            _ => {}
        }
    }

    /// Records that `n` events were lost (a broadcast receiver's `Lagged(n)`).
    pub fn record_lagged(&mut self, n: u64) {
        self.lagged = self.lagged.saturating_add(n);
        counter!(names::EVENTS_LAGGED, "graph" => self.graph.clone()).increment(n);
    }

    fn mode_of(&self, run_id: u64) -> &'static str {
        self.runs.get(&run_id).map_or(UNKNOWN_MODE, |r| r.mode)
    }

    /// The run's state, created (and counted as active under `mode`) if it is new.
    fn track(&mut self, run_id: u64, mode: &'static str) -> &mut RunState {
        if !self.runs.contains_key(&run_id) {
            if self.runs.len() >= MAX_TRACKED_RUNS {
                if let Some((&oldest, _)) = self.runs.first_key_value() {
                    self.forget(oldest);
                }
            }
            *self.active.entry(mode).or_insert(0) += 1;
            self.set_active(mode);
        }
        self.runs.entry(run_id).or_insert_with(|| RunState {
            mode,
            in_flight: HashMap::new(),
            depth: HashMap::new(),
        })
    }

    fn end_activation(&mut self, run_id: u64, node: &Arc<str>) {
        let Some(run) = self.runs.get_mut(&run_id) else {
            return; // its start was not seen: it was never counted in flight
        };
        match run.in_flight.get_mut(node) {
            Some(n) if *n > 0 => *n -= 1,
            _ => return,
        }
        self.add_in_flight(node, -1);
    }

    /// Forgets an ended (or evicted) run: its activations are no longer in flight.
    fn forget(&mut self, run_id: u64) {
        let Some(run) = self.runs.remove(&run_id) else {
            return;
        };
        if let Some(n) = self.active.get_mut(run.mode) {
            *n = n.saturating_sub(1);
        }
        self.set_active(run.mode);
        for (node, n) in run.in_flight {
            if n > 0 {
                self.add_in_flight(&node, -i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        for (node, depth) in run.depth {
            if depth > 0 {
                self.add_depth(&node, 0, depth);
            }
        }
    }

    /// A run's sample of `node`'s depth went from `before` to `now`: the gauge (the sum over
    /// runs) follows.
    fn add_depth(&mut self, node: &Arc<str>, now: u64, before: u64) {
        let total = self.depth.entry(node.clone()).or_insert(0);
        *total = total.saturating_sub(before).saturating_add(now);
        let total = *total;
        gauge!(names::MAILBOX_DEPTH, "graph" => self.graph.clone(), "node" => node.clone())
            .set(total as f64);
    }

    fn set_active(&self, mode: &'static str) {
        let n = self.active.get(mode).copied().unwrap_or(0);
        gauge!(names::RUNS_ACTIVE, "graph" => self.graph.clone(), "mode" => mode).set(n as f64);
    }

    fn add_in_flight(&mut self, node: &Arc<str>, delta: i64) {
        let n = self.in_flight.entry(node.clone()).or_insert(0);
        *n = n.saturating_add_signed(delta);
        let value = *n as f64;
        gauge!(names::NODE_IN_FLIGHT, "graph" => self.graph.clone(), "node" => node.clone())
            .set(value);
    }
}

/// A subscription to a graph's events that exports them as metrics (see the
/// [crate docs](crate#the-metrics)).
///
/// Attach it before running: it sees the events published from then on. Then either
/// `tokio::spawn(exporter.run())` to export continuously, or call [`drain`](Self::drain) now
/// and then (for example after each run).
pub struct MetricsExporter {
    rx: broadcast::Receiver<Event>,
    metrics: EventMetrics,
}

impl fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsExporter")
            .field("metrics", &self.metrics)
            .field("queued", &self.rx.len())
            .finish()
    }
}

impl MetricsExporter {
    /// Subscribes to `bus` (in the facade: `graph.events()`); the metrics carry the label
    /// `graph = graph`. Holds no clone of the bus: [`run`](Self::run) ends when the graph is
    /// dropped.
    pub fn attach(bus: &EventBus, graph: impl Into<String>) -> Self {
        Self {
            rx: bus.subscribe(),
            metrics: EventMetrics::new(graph),
        }
    }

    /// The translation, with what it counted so far.
    pub fn metrics(&self) -> &EventMetrics {
        &self.metrics
    }

    /// How many events this exporter lost because it lagged behind the bus (also counted in
    /// `spark_events_lagged_total`).
    pub fn lagged(&self) -> u64 {
        self.metrics.lagged()
    }

    /// Records every event published so far and not yet recorded, without waiting, into the
    /// current recorder; returns how many events it recorded (lost events are not included:
    /// see [`lagged`](Self::lagged)). Every event of a run is published before the run's
    /// future returns, so a drain after `graph.run(..).await` records the whole run.
    pub fn drain(&mut self) -> usize {
        let mut recorded = 0;
        loop {
            match self.rx.try_recv() {
                Ok(event) => {
                    self.metrics.record(&event);
                    recorded += 1;
                }
                Err(TryRecvError::Lagged(n)) => self.metrics.record_lagged(n),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return recorded,
            }
        }
    }

    /// Records events as they are published, until the bus is gone (every clone of the graph
    /// and of its bus dropped, and every run ended). Spawn it: `tokio::spawn(exporter.run())`;
    /// it records into the global recorder (a thread-local one does not follow a spawned task).
    pub async fn run(mut self) {
        loop {
            match self.rx.recv().await {
                Ok(event) => self.metrics.record(&event),
                Err(RecvError::Lagged(n)) => self.metrics.record_lagged(n),
                Err(RecvError::Closed) => return,
            }
        }
    }
}
