//! `spark-adk-metrics` over real runs of both modes: the counters match what the nodes counted
//! themselves. Recorded with metrics-util's `DebuggingRecorder` (thread-local, around
//! `MetricsExporter::drain`); paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use spark_adk::prelude::*;
use spark_adk::BudgetKind;
use spark_adk_metrics::MetricsExporter;

/// A recorded value (the debugging recorder's, owned).
#[derive(Clone, Debug, PartialEq)]
enum Recorded {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// One recorded metric: name, labels, value.
type Entry = (String, Vec<(String, String)>, Recorded);

/// Every metric recorded.
struct Metrics(Vec<Entry>);

impl Metrics {
    /// Drains `exporter` into a fresh recorder and returns what it recorded.
    fn drain(exporter: &mut MetricsExporter) -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || exporter.drain());
        Self::snapshot(&snapshotter)
    }

    /// What `snapshotter`'s recorder recorded.
    fn snapshot(snapshotter: &Snapshotter) -> Self {
        let entries = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                let value = match value {
                    DebugValue::Counter(n) => Recorded::Counter(n),
                    DebugValue::Gauge(g) => Recorded::Gauge(g.into_inner()),
                    DebugValue::Histogram(h) => {
                        Recorded::Histogram(h.into_iter().map(|x| x.into_inner()).collect())
                    }
                };
                (key.name().to_owned(), labels, value)
            })
            .collect();
        Self(entries)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Recorded> {
        self.0
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
    }

    /// A counter's value; 0 when it was never incremented.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            Some(Recorded::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(name, labels) {
            Some(Recorded::Gauge(g)) => *g,
            other => panic!("{name} {labels:?} is not a recorded gauge: {other:?}"),
        }
    }

    fn histogram_len(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.get(name, labels) {
            Some(Recorded::Histogram(v)) => v.len(),
            None => 0,
            Some(other) => panic!("{name} is not a histogram: {other:?}"),
        }
    }
}

/// A node that counts its activations (not shutdown deliveries) and adds 1 to `n`.
fn counting(calls: &Arc<AtomicU64>) -> impl Node {
    let calls = Arc::clone(calls);
    node_fn(move |ctx: Context| {
        if !ctx.is_shutdown() {
            calls.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            let n = ctx.inputs().content["n"].as_u64().unwrap_or(0);
            Ok(json!({ "n": n + 1 }))
        }
    })
}

fn mode(task_type: TaskType) -> &'static str {
    match task_type {
        TaskType::Standard => "standard",
        TaskType::LongRunning => "long_running",
    }
}

/// `gen` loops to itself until n reaches 7 and feeds every output to `sink`; run `runs` times.
async fn node_counters_match_the_nodes_own_counts(task_type: TaskType, runs: u64) {
    let (gen_calls, sink_calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut g = Graph::builder();
    let gen = g.add("gen", counting(&gen_calls));
    let sink = g.add("sink", counting(&sink_calls));
    g.connect(gen.when("$.outputs.n < 7") >> gen);
    g.connect(gen >> sink);
    let graph = g.start(gen).build().unwrap();
    let mut exporter = MetricsExporter::attach(graph.events(), "loop");

    for _ in 0..runs {
        let task = Task::new(json!({ "n": 0 }))
            .with_type(task_type)
            .with_budget(Budget::seconds(60.0).unwrap());
        graph.run(task).await.unwrap();
    }
    let m = Metrics::drain(&mut exporter);

    let (gens, sinks) = (
        gen_calls.load(Ordering::SeqCst),
        sink_calls.load(Ordering::SeqCst),
    );
    assert_eq!(
        (gens, sinks),
        (7 * runs, 7 * runs),
        "the graph itself changed"
    );
    for (node, calls) in [("gen", gens), ("sink", sinks)] {
        let labels = [("graph", "loop"), ("node", node)];
        assert_eq!(
            m.counter("spark_node_activations_started_total", &labels),
            calls
        );
        assert_eq!(
            m.counter("spark_node_activations_finished_total", &labels),
            calls
        );
        assert_eq!(m.counter("spark_node_activations_failed_total", &labels), 0);
        assert_eq!(
            m.histogram_len("spark_node_duration_seconds", &labels),
            calls as usize
        );
        assert_eq!(m.gauge("spark_node_activations_in_flight", &labels), 0.0);
    }
    let run_labels = [("graph", "loop"), ("mode", mode(task_type))];
    let finished = [run_labels[0], run_labels[1], ("stop_reason", "completed")];
    assert_eq!(m.counter("spark_runs_started_total", &run_labels), runs);
    assert_eq!(m.counter("spark_runs_finished_total", &finished), runs);
    assert_eq!(
        m.histogram_len("spark_run_duration_seconds", &finished),
        runs as usize
    );
    assert_eq!(m.gauge("spark_runs_active", &run_labels), 0.0);
    assert_eq!(m.counter("spark_events_lagged_total", &[]), 0);

    if task_type == TaskType::LongRunning {
        // Every message but the task's input was routed from `gen`.
        let sent = |to| m.counter("spark_messages_sent_total", &[("from", "gen"), ("to", to)]);
        assert_eq!(sent("gen"), gens - runs);
        assert_eq!(sent("sink"), sinks);
    }
}

#[tokio::test(start_paused = true)]
async fn node_and_run_counters_match_what_the_nodes_counted_in_standard_runs() {
    node_counters_match_the_nodes_own_counts(TaskType::Standard, 3).await;
}

#[tokio::test(start_paused = true)]
async fn node_run_and_message_counters_match_what_the_workers_counted_in_long_running_runs() {
    node_counters_match_the_nodes_own_counts(TaskType::LongRunning, 3).await;
}

/// A `tool` failing its first two attempts behind a retry of 3, then a `broken` node that
/// always fails: retries and failures per node, and the failed run's stop reason.
async fn failures_and_retries_are_counted_per_node(task_type: TaskType) {
    let attempts = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&attempts);
    let mut g = Graph::builder();
    let tool = g.add(
        "tool",
        node_fn(move |ctx: Context| {
            let n = if ctx.is_shutdown() {
                u64::MAX
            } else {
                seen.fetch_add(1, Ordering::SeqCst) + 1
            };
            async move {
                if n <= 2 {
                    return Err(NodeError::new(format!("transient {n}")));
                }
                Ok(json!({}))
            }
        })
        .with_retry(
            RetryPolicy::exponential(Duration::from_millis(10))
                .jitter(false)
                .max_attempts(3),
        ),
    );
    let broken = g.add(
        "broken",
        node_fn(|ctx: Context| async move {
            if ctx.is_shutdown() {
                return Ok(json!({}));
            }
            Err(NodeError::new("always broken"))
        }),
    );
    g.connect(tool >> broken);
    let graph = g.start(tool).build().unwrap();
    let mut exporter = MetricsExporter::attach(graph.events(), "tools");

    let err = graph
        .run(Task::new(json!({})).with_type(task_type))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("broken"), "{err}");
    let m = Metrics::drain(&mut exporter);

    let tool = [("node", "tool")];
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(m.counter("spark_node_retries_total", &tool), 3 - 1);
    assert_eq!(m.counter("spark_node_activations_started_total", &tool), 1);
    assert_eq!(m.counter("spark_node_activations_finished_total", &tool), 1);
    assert_eq!(m.counter("spark_node_activations_failed_total", &tool), 0);
    let broken = [("node", "broken")];
    assert_eq!(
        m.counter("spark_node_activations_started_total", &broken),
        1
    );
    assert_eq!(m.counter("spark_node_activations_failed_total", &broken), 1);
    assert_eq!(m.counter("spark_node_retries_total", &broken), 0);
    let failed_run = [("mode", mode(task_type)), ("stop_reason", "error")];
    assert_eq!(m.counter("spark_runs_finished_total", &failed_run), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_and_failures_are_counted_per_node_in_a_standard_run() {
    failures_and_retries_are_counted_per_node(TaskType::Standard).await;
}

#[tokio::test(start_paused = true)]
async fn retries_and_failures_are_counted_per_node_in_a_long_running_run() {
    failures_and_retries_are_counted_per_node(TaskType::LongRunning).await;
}

#[tokio::test(start_paused = true)]
async fn a_time_budget_that_runs_out_is_counted_with_the_runs_stop_reason_in_both_modes() {
    let mut g = Graph::builder();
    let slow = g.add(
        "slow",
        node_fn(|ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok(ctx.inputs().clone())
        }),
    );
    g.connect(slow >> slow); // forever, until the budget
    let graph = g.start(slow).build().unwrap();
    let mut exporter = MetricsExporter::attach(graph.events(), "slow");

    let budget = Budget::seconds(1.0).unwrap();
    let standard = graph.run(Task::new(json!({})).with_budget(budget)).await;
    assert!(standard.is_err(), "a standard run past its deadline fails");
    let long = graph
        .run(Task::long_running(json!({})).with_budget(budget))
        .await
        .unwrap();
    assert_eq!(
        long.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    let m = Metrics::drain(&mut exporter);

    for (mode, stop_reason) in [("standard", "error"), ("long_running", "budget_time")] {
        let exhausted = [("mode", mode), ("budget", "time")];
        assert_eq!(
            m.counter("spark_budgets_exhausted_total", &exhausted),
            1,
            "{mode}"
        );
        let finished = [("mode", mode), ("stop_reason", stop_reason)];
        assert_eq!(
            m.counter("spark_runs_finished_total", &finished),
            1,
            "{mode}"
        );
    }
}

/// The only test of this file that uses the global recorder (`run` records into it, as in an
/// application); the others record into thread-local ones.
#[tokio::test(start_paused = true)]
async fn a_spawned_exporter_records_every_event_and_ends_when_the_graph_is_dropped() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let calls = Arc::new(AtomicU64::new(0));
    let mut g = Graph::builder();
    let only = g.add("only", counting(&calls));
    let graph = g.start(only).build().unwrap();
    let exporter = tokio::spawn(MetricsExporter::attach(graph.events(), "spawned").run());
    for _ in 0..4 {
        graph.run_with(json!({})).await.unwrap();
    }
    drop(graph);
    tokio::time::timeout(Duration::from_secs(60), exporter)
        .await
        .expect("the exporter ends when the graph is dropped")
        .unwrap();

    let m = Metrics::snapshot(&snapshotter);
    let labels = [("graph", "spawned"), ("node", "only")];
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        m.counter("spark_node_activations_started_total", &labels),
        4
    );
    assert_eq!(
        m.counter("spark_node_activations_finished_total", &labels),
        4
    );
}
