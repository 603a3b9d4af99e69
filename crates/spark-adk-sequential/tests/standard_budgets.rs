//! Integration tests of standard-mode budgets and cancellation (docs/runtime-semantics.md, "Standard mode" and "Budgets"):
//! time and token budgets, the order of the pre-activation checks, invalid budgets, and how
//! budgets and cancellation reach a subgraph. Time is tokio's paused clock: no real sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use spark_adk_core::{BudgetError, CancellationToken, RunScope};
use support::prelude::*;
use tokio::time::Instant;

/// The names of the nodes that started, in order.
type Log = Arc<Mutex<Vec<String>>>;
/// Where a node leaves its run's cancellation token for the test to inspect.
type TokenSlot = Arc<Mutex<Option<CancellationToken>>>;

fn new_log() -> Log {
    Arc::default()
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A node that logs its start, records `tokens`, then moves the paused clock forward by
/// `advance` (without sleeping: the budget's timer cannot interrupt it).
fn worker(log: &Log, name: &str, tokens: u64, advance: Duration) -> impl Node {
    let log = Arc::clone(log);
    let name = name.to_owned();
    node_fn(move |ctx: Context| {
        let log = Arc::clone(&log);
        let name = name.clone();
        async move {
            log.lock().unwrap().push(name);
            if tokens > 0 {
                ctx.record_tokens(tokens);
            }
            if !advance.is_zero() {
                tokio::time::advance(advance).await;
            }
            Ok::<_, NodeError>(json!({}))
        }
    })
}

/// A chain `n0 >> n1 >> ... ` of `len` workers.
fn chain(log: &Log, len: usize, tokens: u64, advance: Duration) -> GraphBuilder {
    let mut g = Graph::builder();
    let refs: Vec<NodeRef> = (0..len)
        .map(|i| {
            let name = format!("n{i}");
            g.add(name.clone(), worker(log, &name, tokens, advance))
        })
        .collect();
    for pair in refs.windows(2) {
        g.edge(pair[0], pair[1]);
    }
    g.start(refs[0]);
    g
}

/// A node that logs its start, keeps its run's cancellation token, sleeps `sleep`, then sets
/// `finished`.
fn sleeper(
    log: &Log,
    name: &'static str,
    sleep: Duration,
    slot: &TokenSlot,
    finished: &Arc<AtomicBool>,
) -> impl Node {
    let (log, slot, finished) = (Arc::clone(log), Arc::clone(slot), Arc::clone(finished));
    node_fn(move |ctx: Context| {
        let (log, slot, finished) = (Arc::clone(&log), Arc::clone(&slot), Arc::clone(&finished));
        async move {
            log.lock().unwrap().push(name.to_owned());
            *slot.lock().unwrap() = Some(ctx.cancellation().clone());
            tokio::time::sleep(sleep).await;
            finished.store(true, Ordering::SeqCst);
            Ok::<_, NodeError>(json!({}))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Time budget
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn time_budget_returns_timeout_error() {
    let budget = Duration::from_secs(2);
    let nap = Duration::from_secs(10);
    let log = new_log();
    let slot = TokenSlot::default();
    let finished = Arc::new(AtomicBool::new(false));
    let mut g = Graph::builder();
    let fast = g.add("fast", worker(&log, "fast", 0, Duration::ZERO));
    let slow = g.add("slow", sleeper(&log, "slow", nap, &slot, &finished));
    let after = g.add("after", worker(&log, "after", 0, Duration::ZERO));
    g.connect(fast >> slow >> after);
    let graph = g.start(fast).build().unwrap();

    let started = Instant::now();
    let err = graph
        .run(Task::new(json!({})).with_budget(Budget::duration(budget).unwrap()))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();

    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.node(), Some("slow"));
    assert!(
        matches!(err, RunError::Timeout { budget: b, .. } if b == budget),
        "{err:?}"
    );
    // Stopped at the deadline, not when the slow node would have finished.
    assert!(elapsed >= budget && elapsed < nap, "{elapsed:?}");
    assert!(!finished.load(Ordering::SeqCst));
    assert_eq!(entries(&log), names(&["fast", "slow"]));
}

#[tokio::test(start_paused = true)]
async fn time_budget_in_seconds_is_the_same_limit() {
    let log = new_log();
    let slot = TokenSlot::default();
    let finished = Arc::new(AtomicBool::new(false));
    let mut g = Graph::builder();
    let slow = g.add(
        "slow",
        sleeper(&log, "slow", Duration::from_secs(5), &slot, &finished),
    );
    let graph = g.start(slow).build().unwrap();

    let started = Instant::now();
    let err = graph
        .run(Task::new(json!({})).with_budget(Budget::seconds(1.5).unwrap()))
        .await
        .unwrap_err();

    assert!(
        matches!(err, RunError::Timeout { budget, .. } if budget == Duration::from_millis(1500)),
        "{err:?}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn time_budget_is_checked_before_each_activation() {
    // Every node moves the clock forward by one second without yielding to the budget's timer,
    // so only the check before each activation can stop the chain.
    let step = Duration::from_secs(1);
    let budget = Duration::from_millis(2500);
    let log = new_log();
    let graph = chain(&log, 6, 0, step).build().unwrap();

    let err = graph
        .run(Task::new(json!({})).with_budget(Budget::duration(budget).unwrap()))
        .await
        .unwrap_err();

    // Node i starts at i seconds; those starting before the deadline run.
    let started_in_time = (budget.as_secs_f64() / step.as_secs_f64()).ceil() as usize;
    let expected: Vec<String> = (0..started_in_time).map(|i| format!("n{i}")).collect();
    assert_eq!(entries(&log), expected);
    assert!(err.is_timeout(), "{err:?}");
    // The refused activation is named.
    assert_eq!(err.node(), Some(format!("n{started_in_time}").as_str()));
}

#[tokio::test(start_paused = true)]
async fn time_budget_cancels_the_runs_cancellation_signal() {
    let log = new_log();
    let slot = TokenSlot::default();
    let finished = Arc::new(AtomicBool::new(false));
    let mut g = Graph::builder();
    let slow = g.add(
        "slow",
        sleeper(&log, "slow", Duration::from_secs(60), &slot, &finished),
    );
    let graph = g.start(slow).build().unwrap();

    let err = graph
        .run(Task::new(json!({})).with_budget(Budget::seconds(1.0).unwrap()))
        .await
        .unwrap_err();

    assert!(err.is_timeout());
    let token = slot.lock().unwrap().clone().expect("the node ran");
    assert!(token.is_cancelled());
}

// ---------------------------------------------------------------------------------------------
// Token budget
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_budget_returns_budget_error_with_tokens_used() {
    const PER_NODE: u64 = 10;
    // 25: stops after overshooting; 30: stops when the count reaches the budget exactly.
    for max in [25_u64, 30] {
        let log = new_log();
        let graph = chain(&log, 6, PER_NODE, Duration::ZERO).build().unwrap();

        let err = graph
            .run(Task::new(json!({})).with_budget(Budget::tokens(max).unwrap()))
            .await
            .unwrap_err();

        // Activations start while fewer than `max` tokens are recorded.
        let ran = max.div_ceil(PER_NODE) as usize;
        let expected: Vec<String> = (0..ran).map(|i| format!("n{i}")).collect();
        assert_eq!(entries(&log), expected, "max {max}");
        let refused = format!("n{ran}");
        match &err {
            RunError::TokenBudgetExhausted {
                used, max: m, node, ..
            } => {
                assert_eq!(*used, ran as u64 * PER_NODE);
                assert!(*used >= max);
                assert_eq!(*m, max);
                assert_eq!(node, &refused);
            }
            other => panic!("expected TokenBudgetExhausted, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains(&(ran as u64 * PER_NODE).to_string()),
            "{err}"
        );
    }
}

#[tokio::test]
async fn run_that_ends_before_the_token_check_completes_normally_reporting_tokens() {
    const PER_NODE: u64 = 10;
    let max = 25;
    // Three nodes: the checks before them see 0, 10 and 20 tokens, all below 25.
    let log = new_log();
    let graph = chain(&log, 3, PER_NODE, Duration::ZERO).build().unwrap();

    let result = graph
        .run(Task::new(json!({})).with_budget(Budget::tokens(max).unwrap()))
        .await
        .unwrap();

    assert_eq!(entries(&log).len(), 3);
    assert_eq!(result.metadata.tokens_used, 3 * PER_NODE);
    assert!(result.metadata.tokens_used > max);
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);

    // Without a budget the tokens are reported as well.
    let unlimited = graph.run_default().await.unwrap();
    assert_eq!(unlimited.metadata.tokens_used, 3 * PER_NODE);
}

// ---------------------------------------------------------------------------------------------
// The order of the checks
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn time_is_checked_before_tokens_before_step_limit() {
    const MAX_TOKENS: u64 = 10;
    // `first` may push time past the deadline and tokens to the budget; the step limit of 1
    // always refuses `second`. Which error wins shows the order of the checks.
    async fn run(tokens: u64, advance: Duration) -> RunError {
        let log = new_log();
        let mut g = Graph::builder();
        let first = g.add("first", worker(&log, "first", tokens, advance));
        let second = g.add("second", worker(&log, "second", 0, Duration::ZERO));
        g.connect(first >> second);
        g.step_limit(1);
        let graph = g.start(first).build().unwrap();
        let budget = Budget::new(Some(1.0), Some(MAX_TOKENS)).unwrap();
        let err = graph
            .run(Task::new(json!({})).with_budget(budget))
            .await
            .unwrap_err();
        assert_eq!(entries(&log), names(&["first"]));
        err
    }

    let all_three = run(MAX_TOKENS, Duration::from_secs(2)).await;
    assert!(
        matches!(&all_three, RunError::Timeout { node: Some(n), .. } if n == "second"),
        "time must be checked first: {all_three:?}"
    );

    let tokens_and_steps = run(MAX_TOKENS, Duration::ZERO).await;
    assert!(
        matches!(&tokens_and_steps, RunError::TokenBudgetExhausted { used: MAX_TOKENS, node, .. } if node == "second"),
        "tokens must be checked before the step limit: {tokens_and_steps:?}"
    );

    let steps_only = run(MAX_TOKENS - 1, Duration::ZERO).await;
    assert!(
        matches!(&steps_only, RunError::StepLimitExceeded { limit: 1, node, .. } if node == "second"),
        "{steps_only:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Invalid budgets
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_negative_nan_and_infinite_budgets_are_rejected() {
    for bad in [
        0.0,
        -0.0,
        -1.0,
        -f64::MIN_POSITIVE,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        let err = Budget::seconds(bad).expect_err("accepted a bad max_seconds");
        assert!(
            matches!(err, BudgetError::InvalidSeconds(_)),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("max_seconds"), "{err}");
        assert!(Budget::new(Some(bad), Some(5)).is_err(), "{bad}");
        assert!(
            Budget::tokens(5).unwrap().with_max_seconds(bad).is_err(),
            "{bad}"
        );
    }

    let err = Budget::tokens(0).unwrap_err();
    assert_eq!(err, BudgetError::ZeroTokens);
    assert!(err.to_string().contains("max_tokens"), "{err}");
    assert!(Budget::new(Some(1.0), Some(0)).is_err());
    assert!(Budget::duration(Duration::ZERO).is_err());

    // Small positive limits are fine.
    let ok = Budget::new(Some(0.001), Some(1)).unwrap();
    assert_eq!(ok.max_tokens(), Some(1));
    assert_eq!(ok.max_time(), Some(Duration::from_millis(1)));
}

// ---------------------------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------------------------

/// Waits (yielding) until a node has put its token into `slot`, then cancels `token`.
async fn cancel_once_started(slot: &TokenSlot, token: &CancellationToken) {
    while slot.lock().unwrap().is_none() {
        tokio::task::yield_now().await;
    }
    token.cancel();
}

#[tokio::test]
async fn cancelling_the_scope_stops_the_run_with_cancelled() {
    let log = new_log();
    let slot = TokenSlot::default();
    let finished = Arc::new(AtomicBool::new(false));
    let mut g = Graph::builder();
    let wait = g.add(
        "wait",
        sleeper(&log, "wait", Duration::from_secs(3600), &slot, &finished),
    );
    let after = g.add("after", worker(&log, "after", 0, Duration::ZERO));
    g.connect(wait >> after);
    let graph = g.start(wait).build().unwrap();
    let token = CancellationToken::new();
    let scope = RunScope::with_cancellation(None, token.clone());

    let executor = SequentialExecutor::new();
    let (outcome, ()) = tokio::join!(
        executor.run_scoped(graph.topology(), NodeMessage::empty(), None, scope),
        cancel_once_started(&slot, &token),
    );

    assert!(
        matches!(outcome, Err(RunError::Cancelled { .. })),
        "{outcome:?}"
    );
    assert!(!finished.load(Ordering::SeqCst));
    assert_eq!(entries(&log), names(&["wait"]));
}

#[tokio::test]
async fn no_activation_starts_after_the_run_is_cancelled() {
    // A cooperative node: it returns as soon as its run is cancelled. The next node must not
    // start, and the run reports the cancellation.
    let log = new_log();
    let slot = TokenSlot::default();
    let mut g = Graph::builder();
    let polite = g.add("polite", {
        let (log, slot) = (Arc::clone(&log), Arc::clone(&slot));
        node_fn(move |ctx: Context| {
            let (log, slot) = (Arc::clone(&log), Arc::clone(&slot));
            async move {
                log.lock().unwrap().push("polite".to_owned());
                *slot.lock().unwrap() = Some(ctx.cancellation().clone());
                ctx.cancellation().cancelled().await;
                Ok::<_, NodeError>(json!({ "stopped": true }))
            }
        })
    });
    let after = g.add("after", worker(&log, "after", 0, Duration::ZERO));
    g.connect(polite >> after);
    let graph = g.start(polite).build().unwrap();
    let token = CancellationToken::new();
    let scope = RunScope::with_cancellation(None, token.clone());

    let executor = SequentialExecutor::new();
    let (outcome, ()) = tokio::join!(
        executor.run_scoped(graph.topology(), NodeMessage::empty(), None, scope),
        cancel_once_started(&slot, &token),
    );

    assert_eq!(
        entries(&log),
        names(&["polite"]),
        "an activation started after the cancel"
    );
    assert!(
        matches!(outcome, Err(RunError::Cancelled { .. })),
        "{outcome:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Budgets and cancellation reach subgraphs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn subgraph_tokens_count_toward_the_outer_budget() {
    const INNER_PER_NODE: u64 = 60;
    let max = 100;
    let log = new_log();
    // Inner: two nodes of 60 tokens. The inner checks see 0 and 60 (< 100): both run.
    let inner = chain(&log, 2, INNER_PER_NODE, Duration::ZERO)
        .build()
        .unwrap();
    let mut outer = Graph::builder();
    let sub = outer.add("sub", SubgraphNode::new(inner));
    let after = outer.add("after", worker(&log, "after", 0, Duration::ZERO));
    outer.connect(sub >> after);
    let outer = outer.start(sub).build().unwrap();

    let err = outer
        .run(Task::new(json!({})).with_budget(Budget::tokens(max).unwrap()))
        .await
        .unwrap_err();

    assert_eq!(entries(&log), names(&["n0", "n1"]));
    assert!(
        matches!(&err, RunError::TokenBudgetExhausted { used, max: m, node, .. }
            if *used == 2 * INNER_PER_NODE && *m == max && node == "after"),
        "{err:?}"
    );
}

#[tokio::test]
async fn subgraph_gets_only_what_is_left_of_the_outer_token_budget() {
    const INNER_PER_NODE: u64 = 20;
    let (max, spent_before) = (100, 70);
    let left = max - spent_before;
    let log = new_log();
    let inner = chain(&log, 3, INNER_PER_NODE, Duration::ZERO)
        .build()
        .unwrap();
    let mut outer = Graph::builder();
    let pre = outer.add("pre", worker(&log, "pre", spent_before, Duration::ZERO));
    let sub = outer.add("sub", SubgraphNode::new(inner));
    outer.connect(pre >> sub);
    let outer = outer.start(pre).build().unwrap();

    let err = outer
        .run(Task::new(json!({})).with_budget(Budget::tokens(max).unwrap()))
        .await
        .unwrap_err();

    // Inner checks see 0 and 20 (< 30), then 40: the third inner node is refused.
    let inner_ran = left.div_ceil(INNER_PER_NODE) as usize;
    let mut expected = names(&["pre"]);
    expected.extend((0..inner_ran).map(|i| format!("n{i}")));
    assert_eq!(entries(&log), expected);
    assert!(
        matches!(&err, RunError::NodeFailed { node, .. } if node == "sub"),
        "{err:?}"
    );
    let inner_err = std::error::Error::source(&err)
        .and_then(std::error::Error::source)
        .and_then(|e| e.downcast_ref::<RunError>())
        .expect("the inner run's error is the source of the node error");
    assert!(
        matches!(inner_err, RunError::TokenBudgetExhausted { max: m, node, .. }
            if *m == left && *node == format!("n{inner_ran}")),
        "{inner_err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn outer_time_budget_stops_a_slow_subgraph() {
    let budget = Duration::from_secs(1);
    let nap = Duration::from_secs(60);
    let log = new_log();
    let slot = TokenSlot::default();
    let finished = Arc::new(AtomicBool::new(false));
    let mut inner = Graph::builder();
    let slow = inner.add("slow", sleeper(&log, "slow", nap, &slot, &finished));
    let inner = inner.start(slow).build().unwrap();
    let mut outer = Graph::builder();
    let sub = outer.add("sub", SubgraphNode::new(inner));
    let after = outer.add("after", worker(&log, "after", 0, Duration::ZERO));
    outer.connect(sub >> after);
    let outer = outer.start(sub).build().unwrap();

    let started = Instant::now();
    let err = outer
        .run(Task::new(json!({})).with_budget(Budget::duration(budget).unwrap()))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();

    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.node(), Some("sub"));
    assert!(elapsed >= budget && elapsed < nap, "{elapsed:?}");
    assert!(!finished.load(Ordering::SeqCst));
    let inner_token = slot.lock().unwrap().clone().expect("the inner node ran");
    assert!(inner_token.is_cancelled());
    assert_eq!(entries(&log), names(&["slow"]));
}

#[tokio::test]
async fn cancelling_the_outer_scope_cancels_the_inner_run() {
    let log = new_log();
    let slot = TokenSlot::default();
    let finished = Arc::new(AtomicBool::new(false));
    let mut inner = Graph::builder();
    let wait = inner.add(
        "wait",
        sleeper(&log, "wait", Duration::from_secs(3600), &slot, &finished),
    );
    let inner = inner.start(wait).build().unwrap();
    let mut outer = Graph::builder();
    let sub = outer.add("sub", SubgraphNode::new(inner));
    let after = outer.add("after", worker(&log, "after", 0, Duration::ZERO));
    outer.connect(sub >> after);
    let outer = outer.start(sub).build().unwrap();
    let outer_token = CancellationToken::new();
    let scope = RunScope::with_cancellation(None, outer_token.clone());

    let executor = SequentialExecutor::new();
    let (outcome, ()) = tokio::join!(
        executor.run_scoped(outer.topology(), NodeMessage::empty(), None, scope),
        cancel_once_started(&slot, &outer_token),
    );

    // The inner run's own signal (a child of the outer one) was cancelled too.
    let inner_token = slot.lock().unwrap().clone().expect("the inner node ran");
    assert!(inner_token.is_cancelled());
    assert!(!finished.load(Ordering::SeqCst));
    assert_eq!(entries(&log), names(&["wait"]));
    // The outer run was cancelled from outside: it reports that, not a failure of `sub`.
    assert!(
        matches!(outcome, Err(RunError::Cancelled { .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn zero_step_limit_on_a_task_is_rejected() {
    let mut g = Graph::builder();
    let a = g.add("a", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let graph = g.start(a).build().unwrap();
    let err = graph
        .run(Task::default().with_max_steps(0))
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::InvalidTask(_)), "{err:?}");
}
