//! Quiescence, routing, per-pair FIFO order, batching of quick outputs and backpressure in
//! long-running mode.
//!
//! Time-dependent tests use a paused, auto-advancing clock (`start_paused = true`), so they
//! never sleep in real time. Every test that gets a result checks the accounting identity
//! `accepted == processed + unprocessed` (counted by the runtime, not computed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

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

    // A spawned run keeps its last 1,024 sink outputs by default; this one checks them all.
    let handle = LongRunningExecutor::new()
        .stop_on_quiescence(true)
        .sink_retention(SinkRetention::All)
        .spawn(Arc::new(graph.clone()), Task::long_running(json!({})))
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
