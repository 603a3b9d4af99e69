//! Time and token budgets in long-running mode: graceful stops that count what they leave.
//!
//! Time-dependent tests use a paused, auto-advancing clock (`start_paused = true`), so they
//! never sleep in real time. Every test that gets a result checks the accounting identity
//! `accepted == processed + unprocessed` (counted by the runtime, not computed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

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
