//! Reliability: faults, budgets, mailboxes, bad input and cycles, in both modes, with nothing
//! lost. Every long-running test asserts `accepted == processed + unprocessed`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spark_adk::prelude::*;
use spark_adk::{BudgetKind, RunCounts};

fn assert_balanced(c: &RunCounts) {
    assert_eq!(
        c.accepted,
        c.processed + c.unprocessed,
        "accounting broken: {c:?}"
    );
}

/// Waits (by yielding, no timer) until the runtime's alive tasks drop to `baseline`.
async fn alive_tasks_after_settling(baseline: usize) -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    for _ in 0..100_000 {
        if metrics.num_alive_tasks() <= baseline {
            break;
        }
        tokio::task::yield_now().await;
    }
    metrics.num_alive_tasks()
}

fn pass() -> impl Node {
    node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) })
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Error,
    PanicBeforeAwait,
    PanicAfterAwait,
}

fn faulty(fault: Fault) -> impl Node {
    node_fn(move |ctx| async move {
        if ctx.is_shutdown() {
            return Ok(json!({}));
        }
        match fault {
            Fault::Error => Err(NodeError::new("injected failure")),
            Fault::PanicBeforeAwait => panic!("injected panic before await"),
            Fault::PanicAfterAwait => {
                tokio::task::yield_now().await;
                panic!("injected panic after await")
            }
        }
    })
}

/// entry -> {ok_1..ok_4, bad}; the ok workers count their shutdown deliveries.
fn fan_out_with_fault(fault: Fault, shutdowns: &Arc<AtomicUsize>) -> Graph {
    let mut g = Graph::builder();
    let entry = g.add("entry", pass());
    for i in 0..4 {
        let s = Arc::clone(shutdowns);
        let ok = g.add(
            format!("ok_{i}"),
            node_fn(move |ctx| {
                let s = Arc::clone(&s);
                async move {
                    if ctx.is_shutdown() {
                        s.fetch_add(1, Ordering::SeqCst);
                    } else {
                        tokio::task::yield_now().await;
                    }
                    Ok::<_, NodeError>(json!({}))
                }
            }),
        );
        g.connect(entry >> ok);
    }
    let bad = g.add("bad", faulty(fault));
    g.connect(entry >> bad);
    g.start(entry).build().unwrap()
}

fn check_fault_error(err: &RunError, fault: Fault) {
    match (fault, err) {
        (Fault::Error, RunError::NodeFailed { node, source, .. }) => {
            assert_eq!(node, "bad");
            assert_eq!(source.to_string(), "injected failure");
        }
        (Fault::PanicBeforeAwait, RunError::NodePanicked { node, message, .. }) => {
            assert_eq!(node, "bad");
            assert_eq!(message, "injected panic before await");
        }
        (Fault::PanicAfterAwait, RunError::NodePanicked { node, message, .. }) => {
            assert_eq!(node, "bad");
            assert_eq!(message, "injected panic after await");
        }
        (fault, other) => panic!("{fault:?} gave {other:?}"),
    }
}

async fn standard_fault(fault: Fault) {
    let graph = fan_out_with_fault(fault, &Arc::new(AtomicUsize::new(0)));
    let err = graph.run_default().await.unwrap_err();
    check_fault_error(&err, fault);
    let counts = err.counts().copied().unwrap();
    // entry, the four ok nodes (FIFO before `bad`), then `bad`.
    assert_eq!(counts.processed, 6);
    assert_eq!(counts.accepted, 6);
    assert_balanced(&counts);
}

async fn long_running_fault(fault: Fault) {
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let graph = fan_out_with_fault(fault, &shutdowns);
    let run = graph.run(Task::long_running(json!({})));
    let err = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("a failing node must not hang the run")
        .unwrap_err();
    check_fault_error(&err, fault);
    let counts = err.counts().copied().unwrap();
    assert_eq!(counts.accepted, 6);
    assert_balanced(&counts);
    // The other workers were stopped gracefully: each got its shutdown delivery.
    assert_eq!(shutdowns.load(Ordering::SeqCst), 4);
    assert_eq!(
        alive_tasks_after_settling(baseline).await,
        baseline,
        "leaked tokio tasks"
    );
}

#[tokio::test]
async fn node_error_in_standard_mode_names_the_node_and_balances() {
    standard_fault(Fault::Error).await;
}

#[tokio::test]
async fn node_panic_before_its_first_await_in_standard_mode_is_reported() {
    standard_fault(Fault::PanicBeforeAwait).await;
}

#[tokio::test]
async fn node_panic_after_an_await_in_standard_mode_is_reported() {
    standard_fault(Fault::PanicAfterAwait).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_error_in_long_running_mode_stops_the_others_gracefully_without_leaking_tasks() {
    long_running_fault(Fault::Error).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_panic_before_its_first_await_in_long_running_mode_leaks_nothing() {
    long_running_fault(Fault::PanicBeforeAwait).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_panic_after_an_await_in_long_running_mode_leaks_nothing() {
    long_running_fault(Fault::PanicAfterAwait).await;
}

fn panicking_predicate_graph() -> Graph {
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let b = g.add("b", pass());
    g.connect(a.when_fn(|_| panic!("predicate exploded")) >> b);
    g.start(a).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_condition_predicate_names_the_edge_in_both_modes() {
    let graph = panicking_predicate_graph();
    for task in [Task::new(json!({})), Task::long_running(json!({}))] {
        let mode = task.task_type;
        let err = graph.run(task).await.unwrap_err();
        match &err {
            RunError::ConditionPanicked {
                from, to, message, ..
            } => {
                assert_eq!((from.as_str(), to.as_str()), ("a", "b"), "{mode:?}");
                assert_eq!(message, "predicate exploded");
            }
            other => panic!("{mode:?}: {other:?}"),
        }
        assert_balanced(err.counts().unwrap());
    }
}

fn slow(seconds: u64, finished: &Arc<AtomicUsize>) -> impl Node {
    let finished = Arc::clone(finished);
    node_fn(move |ctx| {
        let finished = Arc::clone(&finished);
        async move {
            if !ctx.is_shutdown() {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                finished.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, NodeError>(json!({}))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn slow_node_in_standard_mode_is_cut_off_at_the_deadline() {
    let finished = Arc::new(AtomicUsize::new(0));
    let mut g = Graph::builder();
    let s = g.add("slow", slow(60, &finished));
    let graph = g.start(s).build().unwrap();
    let start = tokio::time::Instant::now();
    let err = graph
        .run(Task::new(json!({})).with_budget(Budget::seconds(2.0).unwrap()))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(err.node(), Some("slow"));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "cut off exactly at the deadline"
    );
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the slow node was interrupted"
    );
    assert_balanced(err.counts().unwrap());
}

#[tokio::test(start_paused = true)]
async fn slow_node_in_long_running_mode_finishes_its_message_within_the_grace_period_then_the_run_stops(
) {
    let finished = Arc::new(AtomicUsize::new(0));
    let mut g = Graph::builder();
    let s = g.add("slow", slow(60, &finished));
    let after = g.add("after", pass());
    g.connect(s >> after);
    let graph = g.start(s).build().unwrap();
    let start = tokio::time::Instant::now();
    let result = graph
        .run(
            Task::long_running(json!({}))
                .with_budget(Budget::seconds(2.0).unwrap())
                .with_grace(Duration::from_secs(120)),
        )
        .await
        .unwrap();
    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the in-flight message finished"
    );
    assert_eq!(result.metadata.activations_dropped, 0);
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    // Its output was routed after the stop began: accepted, not processed.
    assert_eq!(result.metadata.processed, 1);
    assert_eq!(result.metadata.unprocessed, 1);
    assert_balanced(&result.metadata.counts());
}

fn blocking(millis: u64) -> impl Node {
    node_fn(move |ctx| async move {
        if !ctx.is_shutdown() {
            // Never yields: no timer can interrupt this.
            std::thread::sleep(Duration::from_millis(millis));
        }
        Ok::<_, NodeError>(json!({ "blocked": millis }))
    })
}

#[tokio::test]
async fn node_blocking_past_the_deadline_is_caught_by_the_next_activations_check() {
    let mut g = Graph::builder();
    let b = g.add("blocker", blocking(60));
    let next = g.add("next", pass());
    g.connect(b >> next);
    let graph = g.start(b).build().unwrap();
    let budget = || Budget::duration(Duration::from_millis(5)).unwrap();
    let err = graph
        .run(Task::new(json!({})).with_budget(budget()))
        .await
        .unwrap_err();
    // The blocking node could not be interrupted; the check before the next activation refuses
    // it (docs/runtime-semantics.md, "Standard mode"), naming the node that would have run.
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.node(), Some("next"));
    let counts = err.counts().unwrap();
    assert_eq!((counts.processed, counts.unprocessed), (1, 1));

    // Like the token budget: a run whose work ends before a check completes normally.
    let mut g = Graph::builder();
    let b = g.add("blocker", blocking(60));
    let alone = g.start(b).build().unwrap();
    let result = alone
        .run(Task::new(json!({})).with_budget(budget()))
        .await
        .unwrap();
    assert_eq!(result.content()["blocked"], 60);
    assert!(result.metadata.elapsed >= Duration::from_millis(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_blocking_past_the_deadline_delays_the_graceful_long_running_stop() {
    let mut g = Graph::builder();
    let b = g.add("blocker", blocking(60));
    let graph = g.start(b).build().unwrap();
    let start = std::time::Instant::now();
    let result = graph
        .run(
            Task::long_running(json!({}))
                .with_budget(Budget::duration(Duration::from_millis(5)).unwrap()),
        )
        .await
        .unwrap();
    // The budget cannot interrupt a node that never yields: the run ends once it returns.
    assert!(start.elapsed() >= Duration::from_millis(60));
    assert_eq!(result.metadata.processed, 1);
    assert_balanced(&result.metadata.counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_budget_crossed_by_concurrent_nodes_reports_usage_exactly() {
    const WORKERS: usize = 6;
    const PER_ACTIVATION: u64 = 7;
    const MAX: u64 = 100;
    let recorded = Arc::new(AtomicU64::new(0));
    let mut g = Graph::builder();
    let fan = g.add("fan", pass());
    for i in 0..WORKERS {
        let recorded = Arc::clone(&recorded);
        let w = g.add(
            format!("w{i}"),
            node_fn(move |ctx| {
                let recorded = Arc::clone(&recorded);
                async move {
                    if !ctx.is_shutdown() {
                        ctx.record_tokens(PER_ACTIVATION);
                        recorded.fetch_add(PER_ACTIVATION, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                    }
                    Ok::<_, NodeError>(ctx.inputs().clone())
                }
            }),
        );
        g.connect(fan >> w);
        g.connect(w >> w); // each worker loops on itself until the budget stops it
    }
    let graph = g.start(fan).build().unwrap();
    let result = graph
        .run(Task::long_running(json!({})).with_budget(Budget::tokens(MAX).unwrap()))
        .await
        .unwrap();
    let meta = &result.metadata;
    assert_eq!(meta.stop_reason, StopReason::Budget(BudgetKind::Tokens));
    assert_eq!(
        meta.tokens_used,
        recorded.load(Ordering::SeqCst),
        "reported exactly"
    );
    assert!(meta.tokens_used >= MAX);
    // Every activation checks first, so at most one activation per worker can overshoot.
    assert!(
        meta.tokens_used < MAX + WORKERS as u64 * PER_ACTIVATION,
        "{meta:?}"
    );
    assert_balanced(&meta.counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_messages_are_queued_counts_every_one_of_them() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let mut g = Graph::builder();
    let (g2, s2) = (Arc::clone(&gate), Arc::clone(&started));
    let sink = g.add(
        "sink",
        node_fn(move |ctx| {
            let (gate, started) = (Arc::clone(&g2), Arc::clone(&s2));
            async move {
                if !ctx.is_shutdown() {
                    started.notify_one();
                    gate.notified().await; // held until the test lets it go
                }
                Ok::<_, NodeError>(json!({}))
            }
        }),
    );
    g.mailbox_capacity(64);
    let graph = g.start(sink).build().unwrap();
    let handle = graph
        .spawn(Task::long_running(json!({ "first": true })))
        .unwrap();
    started.notified().await; // the first message is in flight
    let mut sent = 0;
    for i in 0..20 {
        handle.send("sink", json!({ "i": i })).await.unwrap();
        sent += 1;
    }
    handle.shutdown();
    gate.notify_one(); // the in-flight message may finish
    let result = handle.wait().await.unwrap();
    let meta = &result.metadata;
    assert_eq!(meta.stop_reason, StopReason::Shutdown);
    assert_eq!(meta.accepted, 1 + sent);
    assert_eq!(
        meta.processed, 1,
        "only the in-flight message was processed: {meta:?}"
    );
    assert_eq!(meta.unprocessed, sent);
    assert_balanced(&meta.counts());
}

#[tokio::test(start_paused = true)]
async fn runaway_cycle_in_long_running_mode_ends_with_the_budget_and_counts() {
    let mut g = Graph::builder();
    let ping = g.add(
        "ping",
        node_fn(|ctx| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok::<_, NodeError>(ctx.inputs().clone())
        }),
    );
    let pong = g.add("pong", pass());
    g.connect(ping >> pong >> ping);
    let graph = g.start(ping).build().unwrap();
    let result = graph
        .run(Task::long_running(json!({})).with_budget(Budget::seconds(1.0).unwrap()))
        .await
        .unwrap();
    let meta = &result.metadata;
    assert_eq!(meta.stop_reason, StopReason::Budget(BudgetKind::Time));
    // One ping per virtual millisecond, each followed by a pong: about 1,000 round trips.
    assert!(meta.processed_by("ping").unwrap() >= 999, "{meta:?}");
    assert!(
        result.output().is_none(),
        "a cycle stopped by its budget has no sink output"
    );
    assert_balanced(&meta.counts());
}

#[test]
fn deeply_nested_json_text_is_a_parse_error_not_a_stack_overflow() {
    let depth = 100_000;
    let text = format!(
        "{{\"content\": {}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let parsed = serde_json::from_str::<NodeMessage>(&text);
    assert!(parsed.is_err(), "serde_json's recursion limit rejects it");
}

#[tokio::test]
async fn nested_input_within_the_parser_limit_is_routed_by_conditions() {
    let mut value = json!("leaf");
    for _ in 0..100 {
        value = json!([value]);
    }
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let eq = g.add("eq", pass());
    let expr = g.add("expr", pass());
    g.connect(a.on("deep", value.clone()) >> eq);
    g.connect(a.when("$.outputs.deep != null and $.outputs.missing.x == null") >> expr);
    let graph = g.start(a).build().unwrap();
    let result = graph.run_with(json!({ "deep": value })).await.unwrap();
    let nodes: Vec<&str> = result.sink_outputs().iter().map(|s| &*s.node).collect();
    assert_eq!(nodes, ["eq", "expr"]);
}

#[test]
fn adversarial_expressions_are_build_errors_naming_the_edge() {
    let long = "$.outputs.a == 1 or ".repeat(50_000) + "$.outputs.a == 2";
    let nested = "(".repeat(100_000) + "true" + &")".repeat(100_000);
    let cases = [
        nested.as_str(),
        "$.outputs.a == 'unterminated",
        "$.outputs.ünïcödé == 1",
        "🦀 == 1",
        "$.outputs.a in $.outputs.b",
        "\0",
        "",
    ];
    for source in cases {
        let mut g = Graph::builder();
        let a = g.add("a", pass());
        let b = g.add("b", pass());
        g.connect(a.when(source) >> b);
        let errors = g.start(a).build().unwrap_err();
        match errors.errors() {
            [spark_adk::BuildError::InvalidExpression { from, to, .. }] => {
                assert_eq!((from.as_str(), to.as_str()), ("a", "b"));
            }
            other => panic!("{:?}: {other:?}", &source[..source.len().min(40)]),
        }
    }
    // A very long but valid expression is fine.
    let mut g = Graph::builder();
    let a = g.add("a", pass());
    let b = g.add("b", pass());
    g.connect(a.when(&long) >> b);
    assert!(g.start(a).build().is_ok());
}

#[tokio::test(start_paused = true)]
async fn long_node_sees_the_graceful_stop_and_returns_early() {
    let steps = Arc::new(AtomicUsize::new(0));
    let s2 = Arc::clone(&steps);
    let mut g = Graph::builder();
    let worker = g.add(
        "worker",
        node_fn(move |ctx| {
            let steps = Arc::clone(&s2);
            async move {
                // A long job in steps of one second that checks for the stop between steps.
                while !ctx.is_shutdown() && !ctx.is_stopping() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    steps.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, NodeError>(json!({ "steps": steps.load(Ordering::SeqCst) }))
            }
        }),
    );
    let graph = g.start(worker).build().unwrap();
    let start = tokio::time::Instant::now();
    let result = graph
        .run(Task::long_running(json!({})).with_budget(Budget::seconds(3.5).unwrap()))
        .await
        .unwrap();
    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    // The budget ran out at 3.5 s; the node noticed at its next step, at 4 s.
    assert_eq!(start.elapsed(), Duration::from_secs(4));
    assert_eq!(result.content()["steps"], 4);
    assert_balanced(&result.metadata.counts());
}

#[tokio::test]
async fn is_stopping_is_false_in_standard_mode() {
    let mut g = Graph::builder();
    let probe = g.add(
        "probe",
        node_fn(|ctx| async move { Ok::<_, NodeError>(json!({ "stopping": ctx.is_stopping() })) }),
    );
    let graph = g.start(probe).build().unwrap();
    let result = graph.run_default().await.unwrap();
    assert_eq!(result.content()["stopping"], false);
}
