//! Integration tests of long-running mode through the facade (SEMANTICS sections 5, 6, 7 and 9
//! "Long-running details"): quiescence, routing, per-pair FIFO order, backpressure, time and
//! token budgets, shutdown (deliveries, node requests, handles), errors and panics, deadlock
//! detection, run handles and concurrent runs.
//!
//! Time-dependent tests use a paused, auto-advancing clock (`start_paused = true`), so they
//! never sleep in real time. Every test that gets a result checks the accounting identity
//! `accepted == processed + unprocessed`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spark_adk::prelude::*;
use spark_adk::{
    BudgetKind, HandleSendError, LongRunningExecutor, RunMetadata, SinkOutput, SinkRetention,
};
use tokio::sync::{Barrier, Notify};
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A guard against hangs in tests whose failure mode would be "never returns" (virtual time in
/// paused-clock tests, where waiting for it costs nothing; longer than any run they make).
const GUARD: Duration = Duration::from_secs(30);

/// Awaiting with a guard: a run, a wait or a receive that never finishes fails the test
/// instead of hanging it.
trait Guarded: std::future::Future + Sized {
    async fn guarded(self) -> Self::Output {
        tokio::time::timeout(GUARD, self)
            .await
            .unwrap_or_else(|_| panic!("did not finish within {GUARD:?}: the run hung"))
    }
}

impl<F: std::future::Future> Guarded for F {}

/// Checks the accounting identity of section 9.
#[track_caller]
fn assert_balanced(m: &RunMetadata) {
    assert_eq!(
        m.accepted,
        m.processed + m.unprocessed,
        "accepted != processed + unprocessed: {m:?}"
    );
}

/// One call of `process` seen by a [`Probe`].
#[derive(Clone, Debug, PartialEq)]
struct Call {
    node: &'static str,
    shutdown: bool,
    content: Value,
}

/// Every `process` call of the probes of one graph, in call order.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    /// The contents of the data (non-shutdown) calls of `node`, in order.
    fn data(&self, node: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|c| c.node == node && !c.shutdown)
            .map(|c| c.content)
            .collect()
    }

    /// How many shutdown deliveries `node` received.
    fn shutdowns(&self, node: &str) -> usize {
        self.all()
            .iter()
            .filter(|c| c.node == node && c.shutdown)
            .count()
    }
}

/// A node that records every call in `calls`. A shutdown delivery returns
/// `{"from_shutdown": name}` (so a test can see whether it was wrongly routed or kept as a sink
/// output); a data call returns `f(input content)`.
fn probe<F>(calls: &Calls, name: &'static str, f: F) -> impl Node
where
    F: Fn(&Value) -> Value + Send + Sync + 'static,
{
    let calls = calls.clone();
    let f = Arc::new(f);
    node_fn(move |ctx: Context| {
        let calls = calls.clone();
        let f = Arc::clone(&f);
        async move {
            let content = Value::clone(&ctx.inputs().content);
            let shutdown = ctx.is_shutdown();
            calls.0.lock().unwrap().push(Call {
                node: name,
                shutdown,
                content: content.clone(),
            });
            if shutdown {
                return Ok::<_, NodeError>(json!({ "from_shutdown": name }));
            }
            Ok(f(&content))
        }
    })
}

/// A probe that returns its input unchanged.
fn echo(calls: &Calls, name: &'static str) -> impl Node {
    probe(calls, name, Value::clone)
}

/// A node that returns its input unchanged and records nothing.
fn pass() -> impl Node {
    node_fn(|ctx: Context| async move { Ok::<_, NodeError>(ctx.inputs().clone()) })
}

/// The `(node, content)` pairs of sink outputs.
fn sinks(outputs: &[SinkOutput]) -> Vec<(String, Value)> {
    outputs
        .iter()
        .map(|s| (s.node.to_string(), Value::clone(&s.message.content)))
        .collect()
}

/// A counter shared between a test and its nodes.
fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// Quiescence and routing (section 5)
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn quiescence_ends_run_without_waiting() {
    let calls = Calls::default();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&calls, "a"));
    let b = g.add("b", echo(&calls, "b"));
    let c = g.add("c", echo(&calls, "c"));
    g.connect(a >> b >> c);
    let graph = g.start(a).build().unwrap();

    let before = Instant::now();
    let result = graph
        .run(Task::long_running(json!({ "n": 1 })))
        .guarded()
        .await
        .unwrap();

    // The clock is paused and auto-advances only when every task waits on a timer: a run that
    // slept or polled before noticing quiescence would move it.
    assert_eq!(Instant::now(), before, "virtual time advanced");
    assert_eq!(result.metadata.elapsed, Duration::ZERO);
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_eq!(result.content(), &json!({ "n": 1 }));
    assert_eq!(result.metadata.accepted, 3);
    assert_eq!(result.metadata.unprocessed, 0);
    assert_balanced(&result.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiescence_is_detected_exactly_on_a_multi_thread_runtime() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let b = g.add("b", pass());
    let c = g.add("c", pass());
    let d = g.add("d", pass());
    g.connect(a >> b >> c);
    g.connect(a >> d);
    let graph = g.start(a).build().unwrap();

    for round in 0..200 {
        let result = graph
            .run(Task::long_running(json!({ "round": round })))
            .guarded()
            .await
            .unwrap();
        // Never early (everything processed), never a lost wake-up (the run returned).
        assert_eq!(result.metadata.stop_reason, StopReason::Completed);
        assert_eq!(result.metadata.processed, 4, "round {round}");
        assert_eq!(result.sink_outputs().len(), 2, "round {round}");
        assert_eq!(result.metadata.unprocessed, 0);
        assert_balanced(&result.metadata);
    }
}

#[tokio::test(start_paused = true)]
async fn result_is_the_last_sink_output_and_lists_all_sinks() {
    let delay = |ms: u64, tag: &'static str| {
        node_fn(move |_ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, NodeError>(json!({ "done": tag }))
        })
    };
    let mut g = Graph::builder();
    let root = g.add("root", pass());
    let late = g.add("late", delay(300, "late"));
    let early = g.add("early", delay(100, "early"));
    let middle = g.add("middle", delay(200, "middle"));
    g.connect(root >> late);
    g.connect(root >> early);
    g.connect(root >> middle);
    let graph = g.start(root).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    assert_eq!(result.output_node(), Some("late"));
    assert_eq!(result.content(), &json!({ "done": "late" }));
    assert_eq!(
        sinks(result.sink_outputs()),
        vec![
            ("early".to_owned(), json!({ "done": "early" })),
            ("middle".to_owned(), json!({ "done": "middle" })),
            ("late".to_owned(), json!({ "done": "late" })),
        ]
    );
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_balanced(&result.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_reaches_every_matching_target() {
    let calls = Calls::default();
    let mut g = Graph::builder();
    let src = g.add("src", probe(&calls, "src", |_| json!({ "x": 1 })));
    let b = g.add("b", echo(&calls, "b"));
    let c = g.add("c", echo(&calls, "c"));
    let d = g.add("d", echo(&calls, "d"));
    let e = g.add("e", echo(&calls, "e"));
    g.connect(src >> b);
    g.connect(src >> c);
    g.connect(src.on("x", 1) >> d);
    g.connect(src.on("x", 2) >> e);
    let graph = g.start(src).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    let mut sink_nodes: Vec<String> = sinks(result.sink_outputs())
        .into_iter()
        .map(|(node, content)| {
            assert_eq!(content, json!({ "x": 1 }), "{node} got another payload");
            node
        })
        .collect();
    sink_nodes.sort();
    assert_eq!(sink_nodes, ["b", "c", "d"]);
    for node in ["b", "c", "d"] {
        assert_eq!(result.metadata.processed_by(node), Some(1), "{node}");
    }
    assert_eq!(result.metadata.processed_by("e"), Some(0));
    assert!(calls.data("e").is_empty());
    assert_eq!(result.metadata.accepted, 4);
    assert_balanced(&result.metadata);
}

/// The seed's autonomous agent: sensor -> analyzer, `analyzer.on("anomaly", true) >> actuator`,
/// `actuator >> sensor`, plus `analyzer.on("anomaly", false) >> sensor` to keep reading. The
/// sensor reads a fixed series and reports `done` at its end (a sink output).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_edges_route_in_long_running_mode() {
    let readings = [3, 9, 1, 7, 2];
    let next = counter();
    let calls = Calls::default();
    let sensor = {
        let next = Arc::clone(&next);
        probe(&calls, "sensor", move |_| {
            match readings.get(next.fetch_add(1, Ordering::SeqCst)) {
                Some(r) => json!({ "sensor_data": r, "done": false }),
                None => json!({ "done": true }),
            }
        })
    };
    let analyzer = probe(&calls, "analyzer", |input| {
        let data = input["sensor_data"].as_i64().unwrap_or(0);
        json!({ "anomaly": data > 5, "data": data })
    });
    let actuator = probe(
        &calls,
        "actuator",
        |input| json!({ "alerted": input["data"].clone() }),
    );

    let mut g = Graph::builder();
    let sensor = g.add("sensor", sensor);
    let analyzer = g.add("analyzer", analyzer);
    let actuator = g.add("actuator", actuator);
    g.connect(sensor.on("done", false) >> analyzer);
    g.connect(analyzer.on("anomaly", true) >> actuator);
    g.connect(analyzer.on("anomaly", false) >> sensor);
    g.connect(actuator >> sensor);
    let graph = g.start(sensor).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    let alerted: Vec<Value> = calls
        .data("actuator")
        .iter()
        .map(|c| c["data"].clone())
        .collect();
    assert_eq!(alerted, [json!(9), json!(7)]);
    assert_eq!(calls.data("analyzer").len(), readings.len());
    assert_eq!(result.content(), &json!({ "done": true }));
    assert_eq!(result.output_node(), Some("sensor"));
    assert_eq!(result.sink_outputs().len(), 1);
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_balanced(&result.metadata);
}

/// A source emitting sequence numbers 0..n through a self-loop, each also sent to `receiver`.
fn sequence_source(n: u64) -> impl Node {
    node_fn(move |ctx: Context| async move {
        let seq = ctx.inputs().content["next"].as_u64().unwrap_or(0);
        let more = seq + 1 < n;
        Ok::<_, NodeError>(json!({ "seq": seq, "next": seq + 1, "more": more }))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sender_receiver_order_is_fifo() {
    const N: u64 = 500;
    let calls = Calls::default();
    let mut g = Graph::builder();
    let src = g.add("src", sequence_source(N));
    let receiver = g.add("receiver", echo(&calls, "receiver"));
    g.connect(src >> receiver);
    g.connect(src.on("more", true) >> src);
    g.mailbox_capacity(4);
    let graph = g.start(src).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    let order: Vec<u64> = calls
        .data("receiver")
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>());
    assert_eq!(result.metadata.processed, 2 * N);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn handle_sends_arrive_in_send_order() {
    const N: u64 = 200;
    let calls = Calls::default();
    let mut g = Graph::builder();
    let start = g.add("start", pass());
    let _receiver = g.add("receiver", echo(&calls, "receiver"));
    g.mailbox_capacity(2);
    let graph = g.start(start).build().unwrap();

    let handle = graph.spawn(Task::long_running(json!({}))).unwrap();
    let mut outputs = handle.subscribe();
    for seq in 0..N {
        handle
            .send("receiver", json!({ "seq": seq }))
            .await
            .unwrap();
    }
    let mut seen = 0;
    while seen < N {
        if outputs.recv().guarded().await.unwrap().node.as_ref() == "receiver" {
            seen += 1;
        }
    }
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();

    let order: Vec<u64> = calls
        .data("receiver")
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>());
    assert_balanced(&result.metadata);
}

/// A node that waits until `open` is notified (holds a run off quiescence), then passes.
fn gate(open: &Arc<Notify>) -> impl Node {
    let open = Arc::clone(open);
    node_fn(move |ctx: Context| {
        let open = Arc::clone(&open);
        async move {
            if !ctx.is_shutdown() {
                open.notified().await;
            }
            Ok::<_, NodeError>(json!({ "gate": "open" }))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_nodes_keep_send_order_through_a_batched_pipeline() {
    // Nodes that never wait get their messages in batches and hold their outputs for a moment
    // (see spark-adk-mailbox's outbox): order per sender-receiver pair must survive that.
    const N: u64 = 3_000;
    let open = Arc::new(Notify::new());
    let mut g = Graph::builder();
    let held = g.add("gate", gate(&open));
    let a = g.add("a", pass());
    let b = g.add("b", pass());
    let c = g.add("c", pass());
    g.connect(a >> b);
    g.connect(b >> c);
    g.mailbox_capacity(8);
    let graph = g.start(held).build().unwrap();

    let handle = LongRunningExecutor::new()
        .stop_on_quiescence(true)
        .spawn(Arc::clone(graph.topology()), Task::long_running(json!({})))
        .unwrap();
    for seq in 0..N {
        handle
            .send("a", json!({ "seq": seq }))
            .guarded()
            .await
            .unwrap();
    }
    open.notify_one();
    let result = handle.wait().guarded().await.unwrap();

    let order: Vec<u64> = result
        .sink_outputs()
        .iter()
        .filter(|s| s.node.as_ref() == "c")
        .map(|s| s.message.content["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>());
    assert_eq!(result.metadata.processed_by("c"), Some(N));
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn held_outputs_are_handed_on_when_the_node_starts_to_wait() {
    // `a` answers its first message at once, so its output for the busy `b` may be held; its
    // second activation then waits. The held output must reach `b` while `a` waits, not after.
    let b_may_go = Arc::new(Notify::new());
    let b_saw_first = Arc::new(Notify::new());
    let a_is_waiting = Arc::new(Notify::new());
    let a_may_go = Arc::new(Notify::new());
    let a = {
        let (a_is_waiting, a_may_go) = (Arc::clone(&a_is_waiting), Arc::clone(&a_may_go));
        node_fn(move |ctx: Context| {
            let (a_is_waiting, a_may_go) = (Arc::clone(&a_is_waiting), Arc::clone(&a_may_go));
            async move {
                if ctx.inputs().content["seq"] == 1 {
                    a_is_waiting.notify_one();
                    a_may_go.notified().await;
                }
                Ok::<_, NodeError>(Value::clone(&ctx.inputs().content))
            }
        })
    };
    let b = {
        let (b_may_go, b_saw_first) = (Arc::clone(&b_may_go), Arc::clone(&b_saw_first));
        node_fn(move |ctx: Context| {
            let (b_may_go, b_saw_first) = (Arc::clone(&b_may_go), Arc::clone(&b_saw_first));
            async move {
                let content = Value::clone(&ctx.inputs().content);
                if content["busy"] == true {
                    b_may_go.notified().await; // busy, not parked, while `a` starts
                } else if content["seq"] == 0 {
                    b_saw_first.notify_one();
                }
                Ok::<_, NodeError>(content)
            }
        })
    };
    let mut g = Graph::builder();
    let a = g.add("a", a);
    let b = g.add("b", b);
    g.connect(a >> b);
    let graph = g.start(b).build().unwrap();

    let handle = graph
        .spawn(Task::long_running(json!({ "busy": true })))
        .unwrap();
    tokio::task::yield_now().await; // `b` starts on its task input and waits
    handle.send("a", json!({ "seq": 0 })).await.unwrap();
    handle.send("a", json!({ "seq": 1 })).await.unwrap();
    a_is_waiting.notified().guarded().await;
    b_may_go.notify_one();
    b_saw_first.notified().guarded().await;
    a_may_go.notify_one();
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.processed_by("a"), Some(2));
    assert_balanced(&result.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_delivery_never_lets_a_producer_run_past_the_mailbox_capacity() {
    // A consumer that takes its whole mailbox at once still counts the messages it has not
    // started against its capacity: a quick producer stays within capacity + 2 messages ahead
    // (capacity slots, one output waiting for a slot, one message started but not yet seen).
    const N: u64 = 3_000;
    const CAPACITY: u64 = 4;
    let events: Arc<Mutex<Vec<bool>>> = Arc::default(); // true = produced, false = consuming
    let source = {
        let events = Arc::clone(&events);
        node_fn(move |ctx: Context| {
            let events = Arc::clone(&events);
            async move {
                let seq = ctx.inputs().content["next"].as_u64().unwrap_or(0);
                if !ctx.is_shutdown() {
                    events.lock().unwrap().push(true);
                }
                Ok::<_, NodeError>(json!({ "seq": seq, "next": seq + 1, "more": seq + 1 < N }))
            }
        })
    };
    let consumer = {
        let events = Arc::clone(&events);
        node_fn(move |ctx: Context| {
            let events = Arc::clone(&events);
            async move {
                if !ctx.is_shutdown() {
                    events.lock().unwrap().push(false);
                    // A little work, so the producer is the quicker one.
                    let mut x = 0u64;
                    for i in 0..2_000u64 {
                        x = std::hint::black_box(x.wrapping_add(i));
                    }
                }
                Ok::<_, NodeError>(json!({ "seq": ctx.inputs().content["seq"] }))
            }
        })
    };
    let mut g = Graph::builder();
    let src = g.add("src", source);
    let sink = g.add("consumer", consumer);
    g.connect(src >> sink);
    g.connect(src.on("more", true) >> src);
    g.node_mailbox_capacity(sink, CAPACITY as usize);
    let graph = g.start(src).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    let (mut lead, mut max_lead) = (0i64, 0i64);
    for &produced in events.lock().unwrap().iter() {
        lead += if produced { 1 } else { -1 };
        max_lead = max_lead.max(lead);
    }
    assert!(
        max_lead <= CAPACITY as i64 + 2,
        "the producer ran {max_lead} messages ahead of a capacity-{CAPACITY} consumer"
    );
    assert_eq!(result.metadata.processed_by("consumer"), Some(N));
    assert_eq!(result.metadata.unprocessed, 0);
    assert_balanced(&result.metadata);
}

// ---------------------------------------------------------------------------------------------
// Backpressure (section 5)
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn full_mailbox_applies_backpressure_without_dropping() {
    const N: u64 = 30;
    // Events in order: ("produced", seq) when the source emits, ("consuming", seq) when the
    // slow consumer starts on a message.
    let events: Arc<Mutex<Vec<(&'static str, u64)>>> = Arc::default();
    let source = {
        let events = Arc::clone(&events);
        node_fn(move |ctx: Context| {
            let events = Arc::clone(&events);
            async move {
                let seq = ctx.inputs().content["next"].as_u64().unwrap_or(0);
                events.lock().unwrap().push(("produced", seq));
                Ok::<_, NodeError>(json!({ "seq": seq, "next": seq + 1, "more": seq + 1 < N }))
            }
        })
    };
    let consumer = {
        let events = Arc::clone(&events);
        node_fn(move |ctx: Context| {
            let events = Arc::clone(&events);
            async move {
                if ctx.is_shutdown() {
                    return Ok::<_, NodeError>(json!({}));
                }
                let seq = ctx.inputs().content["seq"].as_u64().unwrap_or(u64::MAX);
                events.lock().unwrap().push(("consuming", seq));
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(json!({ "consumed": seq }))
            }
        })
    };
    let mut g = Graph::builder();
    let src = g.add("src", source);
    let slow = g.add("slow", consumer);
    g.connect(src >> slow);
    g.connect(src.on("more", true) >> src);
    g.node_mailbox_capacity(slow, 1);
    let graph = g.start(src).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    // Nothing dropped, order kept.
    let consumed: Vec<u64> = result
        .sink_outputs()
        .iter()
        .map(|s| s.message.content["consumed"].as_u64().unwrap())
        .collect();
    assert_eq!(consumed, (0..N).collect::<Vec<_>>());
    // The producer never ran far ahead of the consumer: at most one message in the consumer's
    // hands, one in its capacity-1 mailbox and one in the producer's blocked send.
    let mut produced = 0u64;
    let mut started = 0u64;
    let mut max_lead = 0u64;
    for (what, _) in events.lock().unwrap().iter() {
        match *what {
            "produced" => produced += 1,
            _ => started += 1,
        }
        max_lead = max_lead.max(produced.saturating_sub(started));
    }
    assert!(max_lead <= 3, "the producer ran {max_lead} messages ahead");
    assert_eq!(result.metadata.processed, 2 * N);
    assert_eq!(result.metadata.unprocessed, 0);
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_balanced(&result.metadata);
}

// ---------------------------------------------------------------------------------------------
// Budgets (section 5, section 9)
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn time_budget_stops_gracefully_and_counts_queued() {
    let run_started = Instant::now();
    let started = counter();
    let finished = counter();
    let src_shutdown_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let src = {
        let at = Arc::clone(&src_shutdown_at);
        node_fn(move |ctx: Context| {
            let at = Arc::clone(&at);
            async move {
                if ctx.is_shutdown() {
                    *at.lock().unwrap() = Some(Instant::now());
                } else {
                    // `slow` is already waiting when the jobs arrive, so it is woken with
                    // several queued: none of those may start after the stop.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok::<_, NodeError>(json!({ "job": true }))
            }
        })
    };
    let slow = {
        let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
        node_fn(move |ctx: Context| {
            let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
            async move {
                if ctx.is_shutdown() {
                    return Ok::<_, NodeError>(json!({}));
                }
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(json!({ "slow": "done" }))
            }
        })
    };
    let mut g = Graph::builder();
    let src = g.add("src", src);
    let slow = g.add("slow", slow);
    // The same edge three times fires three times: three jobs for `slow`.
    g.connect(src >> slow);
    g.connect(src >> slow);
    g.connect(src >> slow);
    let graph = g.start(src).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})).with_budget(Budget::seconds(1.0).unwrap()))
        .guarded()
        .await
        .unwrap();

    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    // The stop began at the deadline...
    assert_eq!(
        *src_shutdown_at.lock().unwrap(),
        Some(run_started + Duration::from_secs(1))
    );
    // ...and the job that started before it still completed its process call.
    assert_eq!((count(&started), count(&finished)), (1, 1));
    assert!(result.metadata.elapsed >= Duration::from_secs(5));
    assert_eq!(result.content(), &json!({ "slow": "done" }));
    // The two queued jobs are reported, not silently dropped.
    assert_eq!(result.metadata.accepted, 4);
    assert_eq!(result.metadata.processed, 2);
    assert_eq!(result.metadata.unprocessed, 2);
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn time_budget_stops_an_endless_cycle() {
    let mut g = Graph::builder();
    let a = g.add(
        "a",
        node_fn(|ctx: Context| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, NodeError>(ctx.inputs().clone())
        }),
    );
    let b = g.add("b", pass());
    g.connect(a >> b >> a);
    let graph = g.start(a).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})).with_budget(Budget::seconds(1.0).unwrap()))
        .guarded()
        .await
        .unwrap();

    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    // 10 ms per round of `a`: about 100 rounds in the second, and no sink output.
    assert!(result.metadata.processed >= 100, "{:?}", result.metadata);
    assert!(result.output().is_none());
    assert_eq!(result.content(), &Value::Null);
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn stop_while_blocked_on_a_full_mailbox_counts_the_undelivered_messages() {
    let slow_calls = counter();
    let slow = {
        let slow_calls = Arc::clone(&slow_calls);
        node_fn(move |ctx: Context| {
            let slow_calls = Arc::clone(&slow_calls);
            async move {
                if !ctx.is_shutdown() {
                    slow_calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                Ok::<_, NodeError>(json!({ "slow": "done" }))
            }
        })
    };
    let mut g = Graph::builder();
    let src = g.add("src", pass());
    let slow = g.add("slow", slow);
    for _ in 0..5 {
        g.connect(src >> slow);
    }
    g.node_mailbox_capacity(slow, 1);
    let graph = g.start(src).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})).with_budget(Budget::seconds(1.0).unwrap()))
        .guarded()
        .await
        .unwrap();

    // `slow` holds message 1 until t = 10 s, message 2 waits in its mailbox, `src` is blocked
    // sending message 3 when the budget runs out at t = 1 s; 3 to 5 are never delivered.
    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    assert_eq!(count(&slow_calls), 1);
    assert_eq!(result.metadata.accepted, 6);
    assert_eq!(result.metadata.processed, 2);
    assert_eq!(result.metadata.unprocessed, 4);
    assert_eq!(result.metadata.elapsed, Duration::from_secs(10));
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn token_budget_stops_run_and_reports_tokens_used() {
    let activations = counter();
    let spend = |activations: &Arc<AtomicUsize>| {
        let activations = Arc::clone(activations);
        node_fn(move |ctx: Context| {
            let activations = Arc::clone(&activations);
            async move {
                if !ctx.is_shutdown() {
                    activations.fetch_add(1, Ordering::SeqCst);
                    ctx.record_tokens(10);
                }
                Ok::<_, NodeError>(ctx.inputs().clone())
            }
        })
    };
    let mut g = Graph::builder();
    let a = g.add("a", spend(&activations));
    let b = g.add("b", spend(&activations));
    g.connect(a >> b >> a);
    let graph = g.start(a).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})).with_budget(Budget::tokens(35).unwrap()))
        .guarded()
        .await
        .unwrap();

    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Tokens)
    );
    // a(10) b(20) a(30) b(40); the check before the fifth activation fails (40 >= 35).
    assert_eq!(count(&activations), 4);
    assert_eq!(result.metadata.tokens_used, 40);
    assert!(result.metadata.tokens_used >= 35);
    assert_eq!(result.metadata.processed, 4);
    assert_eq!(result.metadata.unprocessed, 1);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn run_whose_work_ends_before_a_token_check_completes_normally() {
    let mut g = Graph::builder();
    let a = g.add(
        "a",
        node_fn(|ctx: Context| async move {
            if !ctx.is_shutdown() {
                ctx.record_tokens(50);
            }
            Ok::<_, NodeError>(json!({ "ok": true }))
        }),
    );
    let graph = g.start(a).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})).with_budget(Budget::tokens(10).unwrap()))
        .guarded()
        .await
        .unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_eq!(result.metadata.tokens_used, 50);
    assert_eq!(result.content(), &json!({ "ok": true }));
    assert_balanced(&result.metadata);
}

// ---------------------------------------------------------------------------------------------
// Shutdown (section 6, section 9)
// ---------------------------------------------------------------------------------------------

/// A probe that takes `ms` milliseconds over each data call and returns its input.
fn slow_echo(calls: &Calls, name: &'static str, ms: u64) -> impl Node {
    let inner = Arc::new(echo(calls, name));
    node_fn(move |ctx: Context| {
        let inner = Arc::clone(&inner);
        async move {
            if !ctx.is_shutdown() {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            inner.process(&ctx).await
        }
    })
}

#[tokio::test(start_paused = true)]
async fn shutdown_delivery_reaches_process_once() {
    let calls = Calls::default();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&calls, "a"));
    let b = g.add("b", slow_echo(&calls, "b", 10));
    let _idle = g.add("idle", echo(&calls, "idle"));
    g.connect(a >> b >> a);
    // `idle` is never activated with data: if its shutdown output were data, it would be a sink
    // output; `a`'s and `b`'s shutdown outputs would be routed along the cycle.
    let graph = g.start(a).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({ "tick": 0 })).with_budget(Budget::seconds(1.0).unwrap()))
        .guarded()
        .await
        .unwrap();

    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    for node in ["a", "b", "idle"] {
        assert_eq!(calls.shutdowns(node), 1, "shutdown deliveries of {node}");
        // The shutdown delivery is the last call of each worker.
        let last = calls.all().into_iter().rfind(|c| c.node == node).unwrap();
        assert!(
            last.shutdown,
            "{node} was called after its shutdown delivery"
        );
    }
    let (a_done, b_done) = (
        result.metadata.processed_by("a").unwrap(),
        result.metadata.processed_by("b").unwrap(),
    );
    assert!(b_done >= 90, "about 100 rounds of 10 ms fit in the budget");
    assert_eq!(calls.data("a").len() as u64, a_done);
    // Not a sink output...
    assert!(
        result.sink_outputs().is_empty(),
        "{:?}",
        result.sink_outputs()
    );
    // ...and not routed: exactly the task input plus one routed message per data activation
    // were accepted.
    assert_eq!(result.metadata.accepted, 1 + a_done + b_done);
    assert_eq!(result.metadata.processed, a_done + b_done);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn shutdown_delivery_happens_on_quiescence_too() {
    let calls = Calls::default();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&calls, "a"));
    let b = g.add("b", echo(&calls, "b"));
    let _idle = g.add("idle", echo(&calls, "idle"));
    g.connect(a >> b);
    let graph = g.start(a).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({ "v": 7 })))
        .guarded()
        .await
        .unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    for node in ["a", "b", "idle"] {
        assert_eq!(calls.shutdowns(node), 1, "shutdown deliveries of {node}");
    }
    // Data first, then the shutdown delivery, per worker.
    let a_calls: Vec<bool> = calls
        .all()
        .iter()
        .filter(|c| c.node == "a")
        .map(|c| c.shutdown)
        .collect();
    assert_eq!(a_calls, [false, true]);
    assert_eq!(calls.data("b"), [json!({ "v": 7 })]);
    assert_eq!(
        sinks(result.sink_outputs()),
        [("b".to_owned(), json!({ "v": 7 }))]
    );
    assert_eq!(result.metadata.accepted, 2);
    assert_balanced(&result.metadata);
}

/// A node that asks for a shutdown on its first data call and returns `{"stop": true}`.
fn stopper(calls: &Calls, name: &'static str) -> impl Node {
    let calls = calls.clone();
    node_fn(move |ctx: Context| {
        let calls = calls.clone();
        async move {
            calls.0.lock().unwrap().push(Call {
                node: name,
                shutdown: ctx.is_shutdown(),
                content: Value::clone(&ctx.inputs().content),
            });
            if !ctx.is_shutdown() {
                ctx.request_shutdown();
            }
            Ok::<_, NodeError>(json!({ "stop": true }))
        }
    })
}

#[tokio::test]
async fn node_requested_shutdown_stops_the_run() {
    let calls = Calls::default();
    let mut g = Graph::builder();
    let a = g.add("a", stopper(&calls, "a"));
    let b = g.add("b", echo(&calls, "b"));
    let ticker = g.add("ticker", pass());
    let tock = g.add("tock", pass());
    g.connect(a >> b);
    g.connect(a >> ticker);
    // An endless cycle: only the shutdown request can end this run (no budget).
    g.connect(ticker >> tock >> ticker);
    let graph = g.start(a).build().unwrap();

    let result = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
        .await
        .expect("the shutdown request did not stop the run")
        .unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    // The requesting activation's output was routed (accepted for `b` and `ticker`) but the
    // stop began when it finished: not processed.
    assert!(calls.data("b").is_empty());
    assert_eq!(result.metadata.processed, 1);
    assert_eq!(result.metadata.accepted, 3);
    assert_eq!(result.metadata.unprocessed, 2);
    assert_eq!(calls.shutdowns("a"), 1);
    assert_eq!(calls.shutdowns("b"), 1);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn node_requested_shutdown_is_the_stop_reason_when_its_output_is_a_sink() {
    let calls = Calls::default();
    let mut g = Graph::builder();
    let a = g.add("a", stopper(&calls, "a"));
    let graph = g.start(a).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    // The activation that asked for the shutdown is also the last in-flight message: the run
    // is quiescent at the same moment, but the node asked to stop, so the reason is Shutdown.
    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_eq!(result.content(), &json!({ "stop": true }));
    assert_balanced(&result.metadata);
}

/// On a multi-thread runtime the stop must begin before the requesting activation's output is
/// delivered, or a target worker on another thread can pick it up and process it. The output
/// also fans out to a second node 2,000 times, which keeps the requesting worker busy delivering
/// after `b` has been woken (the window a late stop leaves open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_requested_shutdown_output_is_never_processed_under_parallelism() {
    const WIDE: usize = 2_000;
    for round in 0..50 {
        let calls = Calls::default();
        let mut g = Graph::builder();
        let a = g.add("a", stopper(&calls, "a"));
        let b = g.add("b", echo(&calls, "b"));
        let wide = g.add("wide", pass());
        g.connect(a >> b);
        for _ in 0..WIDE {
            g.connect(a >> wide);
        }
        g.node_mailbox_capacity(wide, WIDE);
        let graph = g.start(a).build().unwrap();

        let result = graph
            .run(Task::long_running(json!({})))
            .guarded()
            .await
            .unwrap();

        assert_eq!(
            calls.data("b"),
            Vec::<Value>::new(),
            "round {round}: `b` processed the output of the activation that requested the stop"
        );
        assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
        assert_eq!(result.metadata.processed, 1, "round {round}");
        assert_eq!(
            result.metadata.unprocessed,
            WIDE as u64 + 1,
            "round {round}"
        );
        assert_balanced(&result.metadata);
    }
}

#[tokio::test(start_paused = true)]
async fn handle_shutdown_stops_gracefully() {
    let calls = Calls::default();
    let started = Arc::new(Notify::new());
    let finished = counter();
    let slow = {
        let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
        let calls = calls.clone();
        node_fn(move |ctx: Context| {
            let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
            let calls = calls.clone();
            async move {
                calls.0.lock().unwrap().push(Call {
                    node: "slow",
                    shutdown: ctx.is_shutdown(),
                    content: Value::clone(&ctx.inputs().content),
                });
                if ctx.is_shutdown() {
                    return Ok::<_, NodeError>(json!({}));
                }
                started.notify_one();
                tokio::time::sleep(Duration::from_secs(5)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(json!({ "slow": "done" }))
            }
        })
    };
    let mut g = Graph::builder();
    let slow = g.add("slow", slow);
    let after = g.add("after", echo(&calls, "after"));
    g.connect(slow >> after);
    let graph = g.start(slow).build().unwrap();

    let handle = graph
        .spawn(Task::long_running(json!({ "job": 1 })))
        .unwrap();
    started.notified().await;
    handle.send("slow", json!({ "job": 2 })).await.unwrap();
    handle.shutdown();
    assert!(handle.is_stopping());
    let result = handle.wait().guarded().await.unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    // The in-flight job finished; the queued one and the finished job's output were not
    // processed, but are counted.
    assert_eq!(count(&finished), 1);
    assert!(calls.data("after").is_empty());
    assert_eq!(calls.data("slow"), [json!({ "job": 1 })]);
    assert_eq!(calls.shutdowns("slow"), 1);
    assert_eq!(calls.shutdowns("after"), 1);
    assert_eq!(result.metadata.accepted, 3);
    assert_eq!(result.metadata.processed, 1);
    assert_eq!(result.metadata.unprocessed, 2);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn shutdown_channel_message_through_handle_stops_the_run() {
    let calls = Calls::default();
    let mut g = Graph::builder();
    let a = g.add("a", echo(&calls, "a"));
    let graph = g.start(a).build().unwrap();

    let handle = graph
        .spawn(Task::long_running(json!({ "input": true })))
        .unwrap();
    handle
        .send_channel("a", ChannelMessage::shutdown())
        .await
        .unwrap();
    let result = tokio::time::timeout(GUARD, handle.wait())
        .await
        .expect("the shutdown message did not stop the run")
        .unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_eq!(calls.shutdowns("a"), 1);
    // The shutdown envelope is control, not data: `a` saw at most the task input.
    assert!(calls
        .data("a")
        .iter()
        .all(|c| c == &json!({ "input": true })));
    assert_eq!(result.metadata.accepted, 1);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn send_after_shutdown_returns_the_message() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let handle = graph.spawn(Task::long_running(json!({}))).unwrap();
    handle.shutdown();

    match handle.send("a", json!({ "n": 42 })).await {
        Err(HandleSendError::Stopped(m)) => {
            assert_eq!(m.payload.content(), &json!({ "n": 42 }));
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    match handle.try_send("a", json!({ "n": 43 })) {
        Err(HandleSendError::Stopped(m)) => {
            assert_eq!(m.payload.content(), &json!({ "n": 43 }));
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_eq!(
        result.metadata.accepted, 1,
        "a rejected message was counted"
    );
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn send_to_unknown_node_returns_the_message() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();
    let handle = graph.spawn(Task::long_running(json!({}))).unwrap();

    match handle.send("nope", json!({ "n": 1 })).await {
        Err(HandleSendError::UnknownNode { node, message }) => {
            assert_eq!(node, "nope");
            assert_eq!(message.payload.content(), &json!({ "n": 1 }));
        }
        other => panic!("expected UnknownNode, got {other:?}"),
    }
    let err = handle.try_send("nope", json!({ "n": 2 })).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(err.into_message().payload.content(), &json!({ "n": 2 }));

    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.accepted, 1);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn try_send_to_full_mailbox_returns_the_message() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let worker = {
        let (started, release) = (Arc::clone(&started), Arc::clone(&release));
        node_fn(move |ctx: Context| {
            let (started, release) = (Arc::clone(&started), Arc::clone(&release));
            async move {
                if ctx.inputs().content["n"] == 0 {
                    started.notify_one();
                    release.notified().await;
                }
                Ok::<_, NodeError>(ctx.inputs().clone())
            }
        })
    };
    let mut g = Graph::builder();
    let w = g.add("worker", worker);
    g.node_mailbox_capacity(w, 1);
    let graph = g.start(w).build().unwrap();

    let handle = graph.spawn(Task::long_running(json!({ "n": 0 }))).unwrap();
    // The worker holds message 0; its mailbox (capacity 1) is empty.
    started.notified().await;
    handle.try_send("worker", json!({ "n": 1 })).unwrap();
    match handle.try_send("worker", json!({ "n": 2 })) {
        Err(HandleSendError::Full { node, message }) => {
            assert_eq!(node, "worker");
            assert_eq!(message.payload.content(), &json!({ "n": 2 }));
        }
        other => panic!("expected Full, got {other:?}"),
    }
    release.notify_one();
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.accepted, 2);
    assert_balanced(&result.metadata);
}

// ---------------------------------------------------------------------------------------------
// Errors (section 5)
// ---------------------------------------------------------------------------------------------

/// A graph where `start` feeds `bad` and an endless `tick`/`tock` cycle: without a stop on
/// `bad`'s failure the run would never end (no budget, never quiescent).
fn graph_with_failing_node(bad: impl Node, calls: &Calls) -> Graph {
    let mut g = Graph::builder();
    let start = g.add("start", echo(calls, "start"));
    let bad = g.add("bad", bad);
    let tick = g.add("tick", echo(calls, "tick"));
    let tock = g.add("tock", pass());
    g.connect(start >> bad);
    g.connect(start >> tick);
    g.connect(tick >> tock >> tick);
    g.start(start).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_error_stops_the_run_and_names_the_node() {
    let calls = Calls::default();
    let bad = node_fn(|_ctx: Context| async move {
        Err::<Value, _>(NodeError::with_source(
            "disk on fire",
            std::io::Error::other("EIO"),
        ))
    });
    let graph = graph_with_failing_node(bad, &calls);

    let err = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
        .await
        .expect("the node error did not stop the run")
        .unwrap_err();

    match &err {
        RunError::NodeFailed { node, source, .. } => {
            assert_eq!(node, "bad");
            assert_eq!(source.message(), "disk on fire");
        }
        other => panic!("expected NodeFailed, got {other:?}"),
    }
    assert_eq!(err.node(), Some("bad"));
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("disk on fire"));
}

/// A node that panics on its data call, before or after an `.await`.
fn panicking(after_await: bool) -> impl Node {
    node_fn(move |ctx: Context| async move {
        if ctx.is_shutdown() {
            return Ok::<_, NodeError>(json!({}));
        }
        if after_await {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("node blew up (after await: {after_await})");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_panic_stops_the_run_and_names_the_node() {
    for after_await in [false, true] {
        let calls = Calls::default();
        let graph = graph_with_failing_node(panicking(after_await), &calls);

        let err = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
            .await
            .expect("the panic did not stop the run")
            .unwrap_err();

        match &err {
            RunError::NodePanicked { node, message, .. } => {
                assert_eq!(node, "bad");
                assert_eq!(
                    message,
                    &format!("node blew up (after await: {after_await})")
                );
            }
            other => panic!("expected NodePanicked, got {other:?}"),
        }
        // The other workers were stopped gracefully.
        assert_eq!(calls.shutdowns("start"), 1);
        assert_eq!(calls.shutdowns("tick"), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_worker_gets_no_shutdown_delivery_but_others_do() {
    let calls = Calls::default();
    let bad = probe(&calls, "bad", |_| json!({}));
    // `bad` records its calls, then fails on data: wrap it.
    let bad = {
        let bad = Arc::new(bad);
        node_fn(move |ctx: Context| {
            let bad = Arc::clone(&bad);
            async move {
                bad.process(&ctx).await?;
                if ctx.is_shutdown() {
                    Ok::<Value, NodeError>(json!({}))
                } else {
                    Err(NodeError::new("refused"))
                }
            }
        })
    };
    let graph = graph_with_failing_node(bad, &calls);

    let err = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
        .await
        .expect("the node error did not stop the run")
        .unwrap_err();

    assert_eq!(err.node(), Some("bad"));
    assert_eq!(calls.data("bad").len(), 1);
    assert_eq!(
        calls.shutdowns("bad"),
        0,
        "the failed worker got a shutdown delivery"
    );
    assert_eq!(calls.shutdowns("start"), 1);
    assert_eq!(calls.shutdowns("tick"), 1);
}

#[tokio::test]
async fn condition_predicate_panic_names_the_edge() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let b = g.add("b", pass());
    let c = g.add("c", pass());
    g.connect(a >> c);
    g.connect(a.when_fn(|_| panic!("predicate exploded")) >> b);
    let graph = g.start(a).build().unwrap();

    let err = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
        .await
        .expect("the predicate panic did not end the run")
        .unwrap_err();

    match err {
        RunError::ConditionPanicked {
            from, to, message, ..
        } => {
            assert_eq!((from.as_str(), to.as_str()), ("a", "b"));
            assert_eq!(message, "predicate exploded");
        }
        other => panic!("expected ConditionPanicked, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Deadlock (section 9)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_one_cycle_never_hangs() {
    for _ in 0..20 {
        let mut g = Graph::builder();
        let a = g.add("a", pass());
        let b = g.add("b", pass());
        let _bystander = g.add("bystander", pass());
        // `b` doubles every message: the cycle fills up.
        g.connect(a >> b);
        g.connect(b >> a);
        g.connect(b >> a);
        g.mailbox_capacity(1);
        let graph = g.start(a).build().unwrap();

        let outcome = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
            .await
            .expect("a full cycle of capacity-1 mailboxes hung the run");

        match outcome {
            Err(RunError::Deadlock { mut blocked, .. }) => {
                blocked.sort();
                assert_eq!(blocked, ["a", "b"]);
            }
            other => panic!("expected Deadlock, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn node_overfilling_its_own_mailbox_is_a_deadlock() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    g.connect(a >> a);
    g.connect(a >> a);
    g.mailbox_capacity(1);
    let graph = g.start(a).build().unwrap();

    let outcome = tokio::time::timeout(GUARD, graph.run(Task::long_running(json!({}))))
        .await
        .expect("a worker blocked on its own full mailbox hung the run");

    match outcome {
        Err(RunError::Deadlock { blocked, .. }) => assert_eq!(blocked, ["a"]),
        other => panic!("expected Deadlock, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Run handles (section 7, section 9)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn spawned_run_processes_messages_sent_through_the_handle() {
    let calls = Calls::default();
    let mut g = Graph::builder();
    let start = g.add("start", echo(&calls, "start"));
    let _worker = g.add(
        "worker",
        probe(
            &calls,
            "worker",
            |v| json!({ "doubled": v["n"].as_i64().unwrap_or(0) * 2 }),
        ),
    );
    let graph = g.start(start).build().unwrap();

    let handle = graph
        .spawn(Task::long_running(json!({ "hello": 1 })))
        .unwrap();
    let mut outputs = handle.subscribe();
    for n in 1..=3 {
        handle.send("worker", json!({ "n": n })).await.unwrap();
    }
    let mut doubled = Vec::new();
    while doubled.len() < 3 {
        let out = outputs.recv().guarded().await.unwrap();
        if out.node.as_ref() == "worker" {
            doubled.push(out.message.content["doubled"].as_i64().unwrap());
        }
    }
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();

    assert_eq!(doubled, [2, 4, 6]);
    assert_eq!(
        calls.data("worker"),
        [json!({ "n": 1 }), json!({ "n": 2 }), json!({ "n": 3 })]
    );
    assert_eq!(result.metadata.processed_by("worker"), Some(3));
    assert_eq!(result.metadata.processed_by("start"), Some(1));
    assert_eq!(result.metadata.accepted, 4);
    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_balanced(&result.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_can_keep_only_its_most_recent_sink_outputs() {
    const N: u64 = 100;
    let mut g = Graph::builder();
    let src = g.add("src", sequence_source(N));
    let out = g.add("out", pass());
    g.connect(src >> out);
    g.connect(src.on("more", true) >> src);
    let graph = g.start(src).build().unwrap();

    let result = LongRunningExecutor::new()
        .sink_retention(SinkRetention::Last(3))
        .run(Arc::clone(graph.topology()), Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    let kept: Vec<u64> = result
        .sink_outputs()
        .iter()
        .map(|s| s.message.content["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [N - 3, N - 2, N - 1]);
    assert_eq!(result.content()["seq"], N - 1);
    assert_eq!(result.metadata.sink_outputs_discarded, N - 3);
    assert_eq!(result.metadata.processed_by("out"), Some(N));
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn every_sink_output_is_kept_by_default() {
    const N: u64 = 50;
    let mut g = Graph::builder();
    let src = g.add("src", sequence_source(N));
    let out = g.add("out", pass());
    g.connect(src >> out);
    g.connect(src.on("more", true) >> src);
    let graph = g.start(src).build().unwrap();

    let result = graph
        .run(Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap();

    assert_eq!(result.sink_outputs().len() as u64, N);
    assert_eq!(result.metadata.sink_outputs_discarded, 0);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn subscribers_see_sink_outputs() {
    let mut g = Graph::builder();
    let shout = g.add(
        "shout",
        node_fn(|ctx: Context| async move {
            let text = ctx.inputs().content["text"]
                .as_str()
                .unwrap_or("")
                .to_uppercase();
            Ok::<_, NodeError>(json!({ "reply": text }))
        }),
    );
    let relay = g.add("relay", pass());
    g.connect(relay >> shout);
    let graph = g.start(shout).build().unwrap();

    let handle = graph
        .spawn(Task::long_running(json!({ "text": "hi" })))
        .unwrap();
    let mut first = handle.subscribe();
    let mut second = handle.subscribe();
    handle
        .send("relay", json!({ "text": "hello" }))
        .await
        .unwrap();
    handle
        .send("shout", json!({ "text": "bye" }))
        .await
        .unwrap();

    for rx in [&mut first, &mut second] {
        let mut got = Vec::new();
        for _ in 0..3 {
            let out = rx.recv().guarded().await.unwrap();
            got.push((out.node.to_string(), out.message.content["reply"].clone()));
        }
        got.sort_by_key(|(_, r)| r.to_string());
        assert_eq!(
            got,
            [
                ("shout".to_owned(), json!("BYE")),
                ("shout".to_owned(), json!("HELLO")),
                ("shout".to_owned(), json!("HI")),
            ]
        );
    }
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    // Routed outputs (relay -> shout) are not sink outputs.
    assert_eq!(result.sink_outputs().len(), 3);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_workers() {
    let shut = Arc::new(Notify::new());
    let shutdowns = counter();
    let node = |shut: &Arc<Notify>, shutdowns: &Arc<AtomicUsize>| {
        let (shut, shutdowns) = (Arc::clone(shut), Arc::clone(shutdowns));
        node_fn(move |ctx: Context| {
            let (shut, shutdowns) = (Arc::clone(&shut), Arc::clone(&shutdowns));
            async move {
                if ctx.is_shutdown() {
                    shutdowns.fetch_add(1, Ordering::SeqCst);
                    shut.notify_one();
                }
                Ok::<_, NodeError>(ctx.inputs().clone())
            }
        })
    };
    let mut g = Graph::builder();
    let a = g.add("a", node(&shut, &shutdowns));
    let graph = g.start(a).build().unwrap();

    let handle = graph.spawn(Task::long_running(json!({}))).unwrap();
    let mut outputs = handle.subscribe();
    outputs.recv().guarded().await.unwrap(); // the task input was processed
    assert!(!handle.is_stopping());
    assert_eq!(count(&shutdowns), 0);

    drop(handle);

    tokio::time::timeout(GUARD, shut.notified())
        .await
        .expect("dropping the handle did not stop the worker");
    assert_eq!(count(&shutdowns), 1);
    // The worker exited: the output channel closes once the run is over.
    let closed = tokio::time::timeout(GUARD, async {
        loop {
            if let Err(tokio::sync::broadcast::error::RecvError::Closed) =
                outputs.recv().guarded().await
            {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the run's output channel never closed");
}

#[tokio::test(start_paused = true)]
async fn spawned_run_does_not_end_at_quiescence_by_default() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let handle = graph.spawn(Task::long_running(json!({ "n": 0 }))).unwrap();
    let mut outputs = handle.subscribe();
    assert_eq!(
        outputs.recv().guarded().await.unwrap().message.content["n"],
        0
    );
    // Quiescent now; an hour of (virtual) time later it is still running.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!handle.is_stopping());
    handle.send("a", json!({ "n": 1 })).await.unwrap();
    assert_eq!(
        outputs.recv().guarded().await.unwrap().message.content["n"],
        1
    );

    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();
    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_eq!(result.metadata.processed, 2);
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn spawned_run_can_opt_into_quiescence() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let handle = LongRunningExecutor::new()
        .stop_on_quiescence(true)
        .spawn(
            Arc::clone(graph.topology()),
            Task::long_running(json!({ "n": 5 })),
        )
        .unwrap();
    let result = tokio::time::timeout(GUARD, handle.wait())
        .await
        .expect("the run did not end at quiescence")
        .unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_eq!(result.content(), &json!({ "n": 5 }));
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn run_without_budget_and_without_quiescence_is_rejected() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let err = LongRunningExecutor::new()
        .stop_on_quiescence(false)
        .run(Arc::clone(graph.topology()), Task::long_running(json!({})))
        .guarded()
        .await
        .unwrap_err();

    assert!(matches!(err, RunError::InvalidTask(_)), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn run_without_quiescence_but_with_budget_ends_at_the_budget() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let result = LongRunningExecutor::new()
        .stop_on_quiescence(false)
        .run(
            Arc::clone(graph.topology()),
            Task::long_running(json!({})).with_budget(Budget::seconds(2.0).unwrap()),
        )
        .guarded()
        .await
        .unwrap();

    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    assert_eq!(result.metadata.elapsed, Duration::from_secs(2));
    assert_balanced(&result.metadata);
}

#[tokio::test]
async fn ack_hook_fires_once_the_receiver_finished_processing() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let node = {
        let log = Arc::clone(&log);
        node_fn(move |ctx: Context| {
            let log = Arc::clone(&log);
            async move {
                if !ctx.is_shutdown() {
                    log.lock()
                        .unwrap()
                        .push(format!("process {}", ctx.inputs().content["n"]));
                    tokio::task::yield_now().await;
                    log.lock()
                        .unwrap()
                        .push(format!("finish {}", ctx.inputs().content["n"]));
                }
                Ok::<_, NodeError>(ctx.inputs().clone())
            }
        })
    };
    let mut g = Graph::builder();
    let a = g.add("a", node);
    let graph = g.start(a).build().unwrap();

    let handle = graph.spawn(Task::long_running(json!({ "n": 0 }))).unwrap();
    let mut outputs = handle.subscribe();
    let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let ack = {
        let log = Arc::clone(&log);
        spark_adk::AckHook::new(move || {
            log.lock().unwrap().push("ack 1".to_owned());
            let _ = acked_tx.send(());
        })
    };
    handle
        .send_channel("a", ChannelMessage::new(json!({ "n": 1 })).with_ack(ack))
        .await
        .unwrap();
    tokio::time::timeout(GUARD, acked.recv())
        .await
        .expect("the ack hook never fired")
        .unwrap();
    outputs.recv().guarded().await.unwrap();
    outputs.recv().guarded().await.unwrap();
    handle.shutdown();
    let result = handle.wait().guarded().await.unwrap();

    assert_eq!(
        *log.lock().unwrap(),
        ["process 0", "finish 0", "process 1", "finish 1", "ack 1"]
    );
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_stops_the_workers_gracefully() {
    let (shut_tx, mut shut) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let node = |name: &'static str| {
        let shut_tx = shut_tx.clone();
        node_fn(move |ctx: Context| {
            let shut_tx = shut_tx.clone();
            async move {
                if ctx.is_shutdown() {
                    let _ = shut_tx.send(name);
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, NodeError>(ctx.inputs().clone())
            }
        })
    };
    let mut g = Graph::builder();
    let a = g.add("a", node("a"));
    let b = g.add("b", node("b"));
    g.connect(a >> b >> a);
    let graph = g.start(a).build().unwrap();

    // An endless cycle without budget: only dropping the future ends it.
    let run = graph.run(Task::long_running(json!({})));
    assert!(tokio::time::timeout(Duration::from_secs(1), run)
        .await
        .is_err());

    let mut stopped = Vec::new();
    while stopped.len() < 2 {
        let name = tokio::time::timeout(GUARD, shut.recv())
            .await
            .expect("the workers were not stopped after the run future was dropped")
            .unwrap();
        stopped.push(name);
    }
    stopped.sort_unstable();
    assert_eq!(stopped, ["a", "b"]);
}

#[test]
fn spawn_outside_a_tokio_runtime_is_rejected() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let err = graph.spawn(Task::long_running(json!({}))).unwrap_err();

    assert!(matches!(err, RunError::InvalidTask(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Invalid tasks (section 7)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn standard_task_is_rejected_by_spawn() {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let graph = g.start(a).build().unwrap();

    let err = graph.spawn(Task::new(json!({}))).unwrap_err();

    assert!(matches!(err, RunError::InvalidTask(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Concurrent runs (section 7)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_do_not_share_mailboxes_or_budgets() {
    // run id -> the run tags its activations saw.
    let seen: Arc<Mutex<BTreeMap<u64, Vec<String>>>> = Arc::default();
    let both_started = Arc::new(Barrier::new(2));
    let looper = {
        let (seen, both_started) = (Arc::clone(&seen), Arc::clone(&both_started));
        node_fn(move |ctx: Context| {
            let (seen, both_started) = (Arc::clone(&seen), Arc::clone(&both_started));
            async move {
                if ctx.is_shutdown() {
                    return Ok::<_, NodeError>(json!({}));
                }
                let tag = ctx.inputs().content["run"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                let round = ctx.inputs().content["round"].as_u64().unwrap_or(0);
                if round == 0 {
                    // Both runs are in flight at the same time.
                    both_started.wait().await;
                }
                seen.lock()
                    .unwrap()
                    .entry(ctx.run_id())
                    .or_default()
                    .push(tag.clone());
                ctx.record_tokens(1);
                tokio::task::yield_now().await;
                Ok(json!({ "run": tag, "round": round + 1 }))
            }
        })
    };
    let mut g = Graph::builder();
    let l = g.add("loop", looper);
    g.connect(l >> l);
    let graph = g.start(l).build().unwrap();

    let task_a = Task::long_running(json!({ "run": "A" })).with_budget(Budget::tokens(5).unwrap());
    let task_b = Task::long_running(json!({ "run": "B" })).with_budget(Budget::tokens(40).unwrap());
    let (a, b) = async { tokio::join!(graph.run(task_a), graph.run(task_b)) }
        .guarded()
        .await;
    let (a, b) = (a.unwrap(), b.unwrap());

    for (result, tokens) in [(&a, 5), (&b, 40)] {
        assert_eq!(
            result.metadata.stop_reason,
            StopReason::Budget(BudgetKind::Tokens)
        );
        assert_eq!(result.metadata.tokens_used, tokens);
        assert_eq!(result.metadata.processed_by("loop"), Some(tokens));
        assert_balanced(&result.metadata);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "two runs, two run ids");
    let mut tags: Vec<(String, usize)> = seen
        .values()
        .map(|tags| {
            assert!(
                tags.iter().all(|t| t == &tags[0]),
                "a run saw the other's messages: {tags:?}"
            );
            (tags[0].clone(), tags.len())
        })
        .collect();
    tags.sort();
    assert_eq!(tags, [("A".to_owned(), 5), ("B".to_owned(), 40)]);
}

// ---------------------------------------------------------------------------------------------
// Hybrid mode (seed "Hybrid Mode")
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn subgraph_node_runs_an_inner_standard_graph_in_long_running_mode() {
    let mut inner = Graph::builder();
    let double = inner.add(
        "double",
        node_fn(|ctx: Context| async move {
            ctx.record_tokens(3);
            Ok::<_, NodeError>(json!({ "n": ctx.inputs().content["n"].as_i64().unwrap_or(0) * 2 }))
        }),
    );
    let inc = inner.add(
        "inc",
        node_fn(|ctx: Context| async move {
            Ok::<_, NodeError>(json!({ "n": ctx.inputs().content["n"].as_i64().unwrap_or(0) + 1 }))
        }),
    );
    inner.connect(double >> inc);
    let inner = inner.start(double).build().unwrap();

    let mut outer = Graph::builder();
    let sub = outer.add("sub", SubgraphNode::new(inner));
    let outer = outer.start(sub).build().unwrap();

    let result = outer
        .run(Task::long_running(json!({ "n": 20 })).with_budget(Budget::seconds(60.0).unwrap()))
        .guarded()
        .await
        .unwrap();

    assert_eq!(result.content(), &json!({ "n": 41 }));
    assert!(
        result.metadata.tokens_used >= 3,
        "inner tokens reach the outer run"
    );
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_balanced(&result.metadata);
}

/// The outer worker's shutdown delivery is control, not data: a `SubgraphNode` must not run
/// its inner graph for it (that would activate every inner node once more, with an empty
/// input, and record their tokens).
#[tokio::test]
async fn subgraph_node_does_not_run_its_inner_graph_on_the_shutdown_delivery() {
    let calls = Calls::default();
    let mut inner = Graph::builder();
    let first = inner.add("first", echo(&calls, "first"));
    let second = inner.add("second", echo(&calls, "second"));
    inner.connect(first >> second);
    let inner = inner.start(first).build().unwrap();

    let mut outer = Graph::builder();
    let sub = outer.add("sub", SubgraphNode::new(inner));
    let outer = outer.start(sub).build().unwrap();

    let result = outer
        .run(Task::long_running(json!({ "job": 1 })))
        .guarded()
        .await
        .unwrap();

    assert_eq!(result.content(), &json!({ "job": 1 }));
    assert_eq!(
        calls.all(),
        [
            Call {
                node: "first",
                shutdown: false,
                content: json!({ "job": 1 })
            },
            Call {
                node: "second",
                shutdown: false,
                content: json!({ "job": 1 })
            },
        ],
        "the inner graph ran again on the outer shutdown delivery"
    );
    assert_balanced(&result.metadata);
}
