//! Shutdown in long-running mode: shutdown deliveries, shutdown requested by nodes and through
//! handles.
//!
//! Time-dependent tests use a paused, auto-advancing clock (`start_paused = true`), so they
//! never sleep in real time. Every test that gets a result checks the accounting identity
//! `accepted == processed + unprocessed` (counted by the runtime, not computed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

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
