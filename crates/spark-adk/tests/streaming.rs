//! `Graph::stream`: a run's events with payloads, in both modes (docs/runtime-semantics.md,
//! "Streaming").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use spark_adk::prelude::*;
use spark_adk::{EventKind, NodeError, RunStream, StreamOptions};

/// Runs `$body` (an async fn taking the task type) once per mode, as two tests.
macro_rules! both_modes {
    ($body:ident: $standard:ident, $long_running:ident) => {
        #[tokio::test(start_paused = true)]
        async fn $standard() {
            $body(TaskType::Standard).await;
        }
        #[tokio::test(start_paused = true)]
        async fn $long_running() {
            $body(TaskType::LongRunning).await;
        }
    };
}

fn task(task_type: TaskType, input: Value) -> Task {
    Task::new(input).with_type(task_type)
}

/// `pass >> llm`: `llm` emits `tokens` tokens ("t0", "t1", ...), counting them in `emitted`,
/// and returns their concatenation.
fn chat_graph(tokens: u64, emitted: Arc<AtomicU64>) -> Graph {
    let mut g = Graph::builder();
    let pass = g.add(
        "pass",
        node_fn(|ctx| async move { Ok(ctx.inputs().content.as_ref().clone()) }),
    );
    let llm = g.add(
        "llm",
        node_fn(move |ctx| {
            let emitted = Arc::clone(&emitted);
            async move {
                if ctx.is_shutdown() {
                    ctx.emit("bye").await;
                    return Ok(json!({}));
                }
                let mut text = String::new();
                for i in 0..tokens {
                    let token = format!("t{i}");
                    text.push_str(&token);
                    ctx.emit(token).await;
                    emitted.fetch_add(1, Ordering::SeqCst);
                }
                Ok(json!({ "text": text }))
            }
        }),
    );
    g.connect(pass >> llm);
    g.start(pass).build().unwrap_or_else(|e| panic!("{e}"))
}

async fn collect(stream: RunStream) -> Vec<StreamEvent> {
    stream.collect().await
}

/// The events without the long-running shutdown deliveries (a `NodeStarted` whose input is a
/// shutdown, up to the node's `NodeFinished`), and the names of the nodes that had one.
fn without_shutdown_deliveries(events: Vec<StreamEvent>) -> (Vec<StreamEvent>, Vec<String>) {
    let (mut kept, mut delivering, mut delivered) = (Vec::new(), Vec::new(), Vec::new());
    for event in events {
        let node = match &event {
            StreamEvent::NodeStarted { node, input } if input.is_shutdown() => {
                delivering.push(Arc::clone(node));
                delivered.push(node.to_string());
                continue;
            }
            StreamEvent::NodeStarted { node, .. }
            | StreamEvent::Emitted { node, .. }
            | StreamEvent::NodeFinished { node, .. } => Some(Arc::clone(node)),
            _ => None,
        };
        match node {
            Some(node) if delivering.contains(&node) => {
                if matches!(event, StreamEvent::NodeFinished { .. }) {
                    delivering.retain(|n| *n != node);
                }
            }
            _ => kept.push(event),
        }
    }
    assert!(delivering.is_empty(), "a shutdown delivery did not finish");
    delivered.sort();
    (kept, delivered)
}

/// One line per event: what happened, to which node, with which payload.
fn describe(event: &StreamEvent) -> String {
    match event {
        StreamEvent::NodeStarted { node, input } => format!("started {node} {}", input.content),
        StreamEvent::Emitted { node, value } => format!("emitted {node} {value}"),
        StreamEvent::NodeFinished { node, output } => {
            format!("finished {node} {}", output.content)
        }
        StreamEvent::SinkOutput { node, output } => format!("sink {node} {}", output.content),
        StreamEvent::Lagged(n) => format!("lagged {n}"),
        StreamEvent::Finished(Ok(result)) => format!("ok {}", result.content()),
        StreamEvent::Finished(Err(error)) => format!("error {error}"),
        other => format!("{other:?}"),
    }
}

async fn events_arrive_in_order_with_their_payloads(task_type: TaskType) {
    let graph = chat_graph(2, Arc::default());
    let events = collect(graph.stream(task(task_type, json!({ "q": "hi" })))).await;
    let (events, delivered) = without_shutdown_deliveries(events);
    if task_type == TaskType::LongRunning {
        assert_eq!(
            delivered,
            ["llm", "pass"],
            "shutdown deliveries are streamed too"
        );
    }
    let lines: Vec<String> = events.iter().map(describe).collect();
    assert_eq!(
        lines,
        [
            r#"started pass {"q":"hi"}"#,
            r#"finished pass {"q":"hi"}"#,
            r#"started llm {"q":"hi"}"#,
            r#"emitted llm "t0""#,
            r#"emitted llm "t1""#,
            r#"finished llm {"text":"t0t1"}"#,
            r#"sink llm {"text":"t0t1"}"#,
            r#"ok {"text":"t0t1"}"#,
        ]
    );
}
both_modes!(events_arrive_in_order_with_their_payloads:
    events_arrive_in_order_with_their_payloads_in_standard_mode,
    events_arrive_in_order_with_their_payloads_in_long_running_mode);

/// `a >> b` and `a >> c`, each emitting its own name twice with a wait between.
async fn emits_arrive_between_the_started_and_finished_of_their_node(task_type: TaskType) {
    let emitter = || {
        node_fn(|ctx| async move {
            if ctx.is_shutdown() {
                return Ok(json!({}));
            }
            for _ in 0..2 {
                ctx.emit(ctx.node_name().to_owned()).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(json!({}))
        })
    };
    let mut g = Graph::builder();
    let (a, b, c) = (
        g.add("a", emitter()),
        g.add("b", emitter()),
        g.add("c", emitter()),
    );
    g.connect(a >> b);
    g.connect(a >> c);
    let graph = g.start(a).build().unwrap_or_else(|e| panic!("{e}"));

    let events = collect(graph.stream(task(task_type, json!({})))).await;
    let (events, _) = without_shutdown_deliveries(events);
    let mut open: Vec<Arc<str>> = Vec::new();
    let mut emitted = 0;
    for event in &events {
        match event {
            StreamEvent::NodeStarted { node, .. } => open.push(Arc::clone(node)),
            StreamEvent::NodeFinished { node, .. } => open.retain(|n| n != node),
            StreamEvent::Emitted { node, value } => {
                assert!(open.contains(node), "{node} emitted outside its activation");
                assert_eq!(value.as_str(), Some(&**node));
                emitted += 1;
            }
            _ => {}
        }
    }
    assert_eq!(emitted, 6, "two emits from each of three nodes");
    assert!(open.is_empty(), "every started node finished");
}
both_modes!(emits_arrive_between_the_started_and_finished_of_their_node:
    emits_arrive_between_started_and_finished_in_standard_mode,
    emits_arrive_between_started_and_finished_in_long_running_mode);

async fn the_last_item_is_the_result_and_the_stream_ends_after_it(task_type: TaskType) {
    let graph = chat_graph(3, Arc::default());
    let mut stream = graph.stream(task(task_type, json!({})));
    let mut last = None;
    while let Some(event) = stream.next().await {
        assert!(last.is_none(), "an item came after the result");
        if let StreamEvent::Finished(outcome) = event {
            last = Some(outcome);
        }
    }
    let result = last.unwrap_or_else(|| panic!("no result item"));
    let result = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result.content()["text"], "t0t1t2");
    assert!(stream.next().await.is_none(), "the stream stays ended");
}
both_modes!(the_last_item_is_the_result_and_the_stream_ends_after_it:
    the_last_item_is_the_result_in_standard_mode,
    the_last_item_is_the_result_in_long_running_mode);

async fn a_slow_consumer_slows_the_run_and_loses_nothing(task_type: TaskType) {
    const TOKENS: u64 = 50;
    const CAPACITY: usize = 4;
    let emitted = Arc::new(AtomicU64::new(0));
    let graph = chat_graph(TOKENS, Arc::clone(&emitted));
    let mut stream = graph.stream_with(
        task(task_type, json!({})),
        StreamOptions::lossless(CAPACITY),
    );
    let first = stream.next().await.map(|e| describe(&e));
    assert_eq!(first.as_deref(), Some("started pass {}"));
    // The consumer dawdles: the run may only get as far as the channel's room.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let early = emitted.load(Ordering::SeqCst);
    assert!(
        early <= CAPACITY as u64,
        "the run went on while the consumer was behind: {early} tokens emitted"
    );
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        tokio::time::sleep(Duration::from_millis(10)).await;
        events.push(event);
    }
    let (events, _) = without_shutdown_deliveries(events);
    let mut tokens = Vec::new();
    let mut last = None;
    for event in events {
        match event {
            StreamEvent::Emitted { value, .. } => tokens.push(value),
            StreamEvent::Lagged(n) => panic!("lossless mode dropped {n} events"),
            StreamEvent::Finished(outcome) => last = Some(outcome.map(|r| r.content().clone())),
            _ => {}
        }
    }
    let expected: Vec<Value> = (0..TOKENS).map(|i| json!(format!("t{i}"))).collect();
    assert_eq!(tokens, expected, "every token, in order");
    assert!(matches!(last, Some(Ok(_))));
}
both_modes!(a_slow_consumer_slows_the_run_and_loses_nothing:
    a_slow_consumer_slows_a_standard_run_and_loses_nothing,
    a_slow_consumer_slows_a_long_running_run_and_loses_nothing);

async fn lagging_mode_drops_for_a_slow_consumer_and_reports_how_many(task_type: TaskType) {
    const TOKENS: u64 = 50;
    let emitted = Arc::new(AtomicU64::new(0));
    let graph = chat_graph(TOKENS, Arc::clone(&emitted));
    // What a lossless run of the same task sends, before its result.
    let lossless = collect(graph.stream(task(task_type, json!({}))))
        .await
        .len() as u64
        - 1;
    emitted.store(0, Ordering::SeqCst);

    let mut stream = graph.stream_with(task(task_type, json!({})), StreamOptions::lagging(4));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        emitted.load(Ordering::SeqCst),
        TOKENS,
        "lagging mode never waits for the consumer"
    );
    let (mut received, mut dropped, mut last) = (0, 0, None);
    while let Some(event) = stream.next().await {
        match event {
            StreamEvent::Lagged(n) => dropped += n,
            StreamEvent::Finished(outcome) => last = Some(outcome.is_ok()),
            _ => received += 1,
        }
    }
    assert!(dropped > 0, "a full channel dropped events");
    assert_eq!(
        received + dropped,
        lossless,
        "every event received or counted"
    );
    assert_eq!(last, Some(true), "the result is never dropped");
}
both_modes!(lagging_mode_drops_for_a_slow_consumer_and_reports_how_many:
    lagging_mode_drops_and_reports_the_count_in_standard_mode,
    lagging_mode_drops_and_reports_the_count_in_long_running_mode);

async fn dropping_the_stream_stops_the_run_gracefully(task_type: TaskType) {
    // `tick >> tick`: a loop that would go on for a long time.
    let ticks = Arc::new(AtomicU64::new(0));
    let mut g = Graph::builder();
    let counter = Arc::clone(&ticks);
    let tick = g.add(
        "tick",
        node_fn(move |ctx| {
            let counter = Arc::clone(&counter);
            async move {
                let n = ctx.inputs().content["n"].as_u64().unwrap_or(0);
                counter.fetch_add(1, Ordering::SeqCst);
                ctx.emit(n).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(json!({ "n": n + 1 }))
            }
        }),
    );
    g.edge(tick, tick);
    let graph = g
        .start(tick)
        .step_limit(1_000_000)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut bus = graph.subscribe_events();

    let mut stream = graph.stream(task(task_type, json!({ "n": 0 })));
    for _ in 0..3 {
        assert!(stream.next().await.is_some());
    }
    drop(stream);
    let finished = tokio::time::timeout(Duration::from_secs(3600), async {
        loop {
            match bus.recv().await {
                Ok(event) => {
                    if let EventKind::GraphFinished { stop_reason, error } = event.kind {
                        return (stop_reason, error);
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the run did not stop after its stream was dropped"));
    match task_type {
        TaskType::Standard => {
            let error = finished.1.unwrap_or_default();
            assert!(
                error.contains("cancel"),
                "standard: cancelled, got {error:?}"
            );
        }
        _ => assert_eq!(finished.0, Some(StopReason::HandleDropped)),
    }
    assert!(ticks.load(Ordering::SeqCst) < 10, "the loop stopped soon");
}
both_modes!(dropping_the_stream_stops_the_run_gracefully:
    dropping_the_stream_stops_a_standard_run,
    dropping_the_stream_stops_a_long_running_run_gracefully);

async fn a_node_error_arrives_as_the_last_item(task_type: TaskType) {
    let mut g = Graph::builder();
    let boom = g.add(
        "boom",
        node_fn(|ctx| async move {
            ctx.emit("about to fail").await;
            Err::<Value, _>(NodeError::new("no luck"))
        }),
    );
    let graph = g.start(boom).build().unwrap_or_else(|e| panic!("{e}"));
    let events = collect(graph.stream(task(task_type, json!({})))).await;
    let lines: Vec<String> = events.iter().map(describe).collect();
    assert_eq!(
        lines.len(),
        3,
        "a failed node gets no shutdown delivery: {lines:?}"
    );
    assert_eq!(lines[0], "started boom {}");
    assert_eq!(lines[1], r#"emitted boom "about to fail""#);
    match events.last() {
        Some(StreamEvent::Finished(Err(RunError::NodeFailed { node, .. }))) => {
            assert_eq!(node, "boom");
        }
        other => panic!("expected the node's error last, got {other:?}"),
    }
}
both_modes!(a_node_error_arrives_as_the_last_item:
    a_node_error_arrives_as_the_last_item_in_standard_mode,
    a_node_error_arrives_as_the_last_item_in_long_running_mode);

#[tokio::test]
async fn a_stream_of_capacity_zero_yields_only_an_invalid_task_error() {
    let graph = chat_graph(1, Arc::default());
    let events = collect(graph.stream_with(Task::new(json!({})), StreamOptions::lossless(0))).await;
    assert!(
        matches!(events.as_slice(), [StreamEvent::Finished(Err(RunError::InvalidTask(m)))] if m.contains("capacity")),
        "{events:?}"
    );
}

#[test]
fn a_stream_outside_a_tokio_runtime_yields_only_an_invalid_task_error() {
    let graph = chat_graph(1, Arc::default());
    let events = futures_executor_block_on(collect(graph.stream(Task::new(json!({})))));
    assert!(
        matches!(events.as_slice(), [StreamEvent::Finished(Err(RunError::InvalidTask(m)))] if m.contains("tokio runtime")),
        "{events:?}"
    );
}

/// Polls `future` to its end on this thread without a tokio runtime.
fn futures_executor_block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[tokio::test]
async fn emit_outside_a_streamed_run_does_nothing_unless_the_bus_has_a_subscriber() {
    let graph = chat_graph(2, Arc::default());
    let quiet = graph.run(Task::new(json!({}))).await;
    assert_eq!(
        quiet.map(|r| r.content()["text"].clone()).ok(),
        Some(json!("t0t1"))
    );

    let mut bus = graph.subscribe_events();
    graph
        .run(Task::new(json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut emitted = Vec::new();
    while let Ok(event) = bus.try_recv() {
        if let EventKind::NodeEmitted { node, value } = event.kind {
            emitted.push((node.to_string(), value));
        }
    }
    assert_eq!(
        emitted,
        [
            ("llm".to_owned(), json!("t0")),
            ("llm".to_owned(), json!("t1"))
        ]
    );
}
