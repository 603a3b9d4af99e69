#![allow(clippy::panic)]
//! The translation of events into metrics, with events published by hand (the runs themselves
//! are in the facade's `tests/metrics.rs`): lag, gauges, unknown runs.

use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use spark_adk_core::{EventBus, EventKind, StopReason, TaskType};
use spark_adk_metrics::{EventMetrics, MetricsExporter};

/// A recorded value (the debugging recorder's, owned).
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

type Entries = Vec<(String, Vec<(String, String)>, Value)>;

/// The value of the metric `name` whose labels include every pair of `labels`.
fn value(entries: &Entries, name: &str, labels: &[(&str, &str)]) -> Option<Value> {
    entries
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v.clone())
}

fn snapshot(snapshotter: &Snapshotter) -> Entries {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, v)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let v = match v {
                DebugValue::Counter(n) => Value::Counter(n),
                DebugValue::Gauge(g) => Value::Gauge(g.into_inner()),
                DebugValue::Histogram(h) => {
                    Value::Histogram(h.into_iter().map(|x| x.into_inner()).collect())
                }
            };
            (key.name().to_owned(), labels, v)
        })
        .collect()
}

fn counter(v: Option<Value>) -> u64 {
    match v {
        Some(Value::Counter(n)) => n,
        other => panic!("not a counter: {other:?}"),
    }
}

fn gauge(v: Option<Value>) -> f64 {
    match v {
        Some(Value::Gauge(g)) => g,
        other => panic!("not a gauge: {other:?}"),
    }
}

fn started(node: &str) -> EventKind {
    EventKind::NodeStarted {
        node: Arc::from(node),
    }
}

fn finished_run() -> EventKind {
    EventKind::GraphFinished {
        stop_reason: Some(StopReason::Completed),
        error: None,
    }
}

#[test]
fn events_lost_to_lag_are_counted_so_that_recorded_plus_lagged_is_everything_published() {
    let bus = EventBus::new();
    let mut exporter = MetricsExporter::attach(&bus, "g");
    let published = 5_000; // more than the bus keeps for a subscriber (4,096)
    for _ in 0..published {
        bus.publish(1, Duration::ZERO, started("n"));
    }
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let recorded = metrics::with_local_recorder(&recorder, || exporter.drain());

    assert!(exporter.lagged() > 0, "nothing lagged");
    assert_eq!(recorded as u64 + exporter.lagged(), published);
    let entries = snapshot(&snapshotter);
    assert_eq!(
        counter(value(
            &entries,
            "spark_events_lagged_total",
            &[("graph", "g")]
        )),
        exporter.lagged()
    );
    assert_eq!(
        counter(value(
            &entries,
            "spark_node_activations_started_total",
            &[("node", "n")]
        )),
        recorded as u64
    );
}

#[test]
fn a_run_that_ends_takes_its_unfinished_activations_out_of_the_in_flight_gauge_and_no_other_runs() {
    let bus = EventBus::new();
    let mut exporter = MetricsExporter::attach(&bus, "g");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let standard = EventKind::GraphStarted {
        task_type: TaskType::Standard,
    };
    bus.publish(1, Duration::ZERO, standard.clone());
    bus.publish(1, Duration::ZERO, started("n"));
    bus.publish(1, Duration::ZERO, started("n"));
    bus.publish(2, Duration::ZERO, standard);
    bus.publish(2, Duration::ZERO, started("n"));
    metrics::with_local_recorder(&recorder, || exporter.drain());
    let entries = snapshot(&snapshotter);
    assert_eq!(
        gauge(value(
            &entries,
            "spark_node_activations_in_flight",
            &[("node", "n")]
        )),
        3.0
    );
    assert_eq!(
        gauge(value(
            &entries,
            "spark_runs_active",
            &[("mode", "standard")]
        )),
        2.0
    );

    // Run 1 ends without the end events of its two activations (lost, or cut off).
    bus.publish(1, Duration::from_millis(5), finished_run());
    metrics::with_local_recorder(&recorder, || exporter.drain());
    let entries = snapshot(&snapshotter);
    assert_eq!(
        gauge(value(
            &entries,
            "spark_node_activations_in_flight",
            &[("node", "n")]
        )),
        1.0
    );
    assert_eq!(
        gauge(value(
            &entries,
            "spark_runs_active",
            &[("mode", "standard")]
        )),
        1.0
    );
}

#[test]
fn a_run_whose_start_was_not_seen_is_labelled_with_the_unknown_mode() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut translation = EventMetrics::new("g");
    let bus = EventBus::with_replay(8);
    bus.publish(9, Duration::ZERO, started("n"));
    bus.publish(9, Duration::from_millis(1), finished_run());
    metrics::with_local_recorder(&recorder, || {
        for event in bus.replay() {
            translation.record(&event);
        }
    });
    let entries = snapshot(&snapshotter);
    assert_eq!(
        counter(value(
            &entries,
            "spark_runs_finished_total",
            &[("mode", "unknown"), ("stop_reason", "completed")]
        )),
        1
    );
    assert!(value(&entries, "spark_runs_started_total", &[]).is_none());
}

#[test]
fn run_durations_are_recorded_in_seconds_from_the_runs_end_event() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let bus = EventBus::new();
    let mut exporter = MetricsExporter::attach(&bus, "g");
    bus.publish(
        3,
        Duration::ZERO,
        EventKind::GraphStarted {
            task_type: TaskType::LongRunning,
        },
    );
    bus.publish(
        3,
        Duration::from_millis(1500),
        EventKind::GraphFinished {
            stop_reason: Some(StopReason::Shutdown),
            error: None,
        },
    );
    metrics::with_local_recorder(&recorder, || exporter.drain());
    let entries = snapshot(&snapshotter);
    let durations = value(
        &entries,
        "spark_run_duration_seconds",
        &[
            ("mode", "long_running"),
            ("stop_reason", "shutdown"),
            ("graph", "g"),
        ],
    );
    assert_eq!(durations, Some(Value::Histogram(vec![1.5])));
}

fn depth(node: &str, depth: u64) -> EventKind {
    EventKind::MailboxDepth {
        node: Arc::from(node),
        depth,
    }
}

#[test]
fn the_mailbox_depth_gauge_is_the_sum_of_each_runs_last_sample_and_an_ended_run_leaves_it() {
    let bus = EventBus::new();
    let mut exporter = MetricsExporter::attach(&bus, "g");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let long_running = EventKind::GraphStarted {
        task_type: TaskType::LongRunning,
    };
    let depth_of = |exporter: &mut MetricsExporter| {
        metrics::with_local_recorder(&recorder, || exporter.drain());
        gauge(value(
            &snapshot(&snapshotter),
            "spark_mailbox_depth",
            &[("graph", "g"), ("node", "a")],
        ))
    };
    bus.publish(1, Duration::ZERO, long_running.clone());
    bus.publish(2, Duration::ZERO, long_running);
    bus.publish(1, Duration::ZERO, depth("a", 7));
    bus.publish(1, Duration::ZERO, depth("a", 3)); // replaces run 1's 7
    bus.publish(2, Duration::ZERO, depth("a", 2));
    assert_eq!(depth_of(&mut exporter), 5.0);

    bus.publish(1, Duration::ZERO, finished_run());
    assert_eq!(depth_of(&mut exporter), 2.0, "run 1 ended: its 3 are gone");
    bus.publish(2, Duration::ZERO, depth("a", 0));
    assert_eq!(depth_of(&mut exporter), 0.0);
}
