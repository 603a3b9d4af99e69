//! The policies around a node called directly (detached contexts, paused clock). Runs through
//! both executors are tested in `crates/spark-adk/tests/policies.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use spark_adk_core::{
    node_fn, Budget, Context, EventBus, EventKind, Node, NodeError, NodeMessage, RunScope,
};
use spark_adk_policy::{
    find_cause, GiveUp, Limiter, NodeExt, Policies, PolicyError, RetryError, RetryPolicy,
    TimeoutError,
};
use tokio::time::Instant;

fn ctx_in(scope: RunScope) -> Context {
    let names: Arc<[Arc<str>]> = Arc::from(vec![Arc::from("tool")]);
    Context::new(
        NodeMessage::new(json!({})),
        0,
        Arc::new(scope.with_node_names(names)),
    )
}

/// A node failing its first `failures` calls; records the attempt number each call saw and
/// the instant it started.
#[derive(Clone, Default)]
struct Flaky {
    failures: usize,
    calls: Arc<Mutex<Vec<(u32, Instant)>>>,
}

impl Flaky {
    fn failing(failures: usize) -> Self {
        Self {
            failures,
            ..Self::default()
        }
    }
    fn attempts_seen(&self) -> Vec<u32> {
        self.calls.lock().unwrap().iter().map(|c| c.0).collect()
    }
    fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls.lock().unwrap();
        calls.windows(2).map(|w| w[1].1 - w[0].1).collect()
    }
}

impl Node for Flaky {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((ctx.attempt(), Instant::now()));
            calls.len()
        };
        if n <= self.failures {
            Err(NodeError::new(format!("transient failure {n}")))
        } else {
            Ok(json!({ "call": n }).into())
        }
    }
}

fn no_jitter(initial_ms: u64) -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(initial_ms)).jitter(false)
}

fn retry_error(err: &NodeError) -> &RetryError {
    find_cause::<RetryError>(err).expect("a RetryError")
}

#[tokio::test(start_paused = true)]
async fn a_failing_node_is_retried_until_it_succeeds_and_sees_each_attempt_number() {
    let flaky = Flaky::failing(2);
    let node = flaky.clone().with_retry(no_jitter(10).max_attempts(3));
    let out = node.process(&ctx_in(RunScope::new(None))).await.unwrap();
    assert_eq!(out.content["call"], 3);
    assert_eq!(flaky.attempts_seen(), vec![1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_exponentially_growing_delays_between_attempts() {
    let flaky = Flaky::failing(3);
    let node = flaky
        .clone()
        .with_retry(no_jitter(100).factor(3.0).max_attempts(4));
    node.process(&ctx_in(RunScope::new(None))).await.unwrap();
    assert_eq!(
        flaky.gaps(),
        [100, 300, 900].map(Duration::from_millis).to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_waits_between_half_and_all_of_each_delay() {
    let flaky = Flaky::failing(2);
    let node = flaky
        .clone()
        .with_retry(RetryPolicy::exponential(Duration::from_millis(100)));
    node.process(&ctx_in(RunScope::new(None))).await.unwrap();
    let gaps = flaky.gaps();
    assert!(
        gaps[0] >= Duration::from_millis(50) && gaps[0] <= Duration::from_millis(100),
        "{gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(100) && gaps[1] <= Duration::from_millis(200),
        "{gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_final_error_names_the_node_the_attempts_made_and_the_last_error() {
    let node = Flaky::failing(10).with_retry(no_jitter(1).max_attempts(3));
    let err = node
        .process(&ctx_in(RunScope::new(None)))
        .await
        .unwrap_err();
    let retry = retry_error(&err);
    assert_eq!((retry.node.as_str(), retry.attempts), ("tool", 3));
    assert_eq!(retry.reason, GiveUp::AttemptsExhausted);
    assert_eq!(retry.last.message(), "transient failure 3");
    assert_eq!(
        err.to_string(),
        "node `tool` gave up after 3 attempts (no attempts left): transient failure 3"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_the_predicate_rejects_are_not_retried() {
    let flaky = Flaky::failing(10);
    let node = flaky
        .clone()
        .with_retry(no_jitter(1).retry_if(|e| !e.message().contains("transient")));
    let err = node
        .process(&ctx_in(RunScope::new(None)))
        .await
        .unwrap_err();
    assert_eq!(flaky.attempts_seen(), vec![1]);
    assert_eq!(retry_error(&err).reason, GiveUp::NotRetryable);
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_after_the_run_began_to_stop() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let node = node_fn(move |ctx: Context| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            ctx.scope().begin_stop(); // e.g. another node failed meanwhile
            Err::<NodeMessage, _>(NodeError::new("down"))
        }
    })
    .with_retry(no_jitter(1).max_attempts(5));
    let err = node
        .process(&ctx_in(RunScope::new(None)))
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(retry_error(&err).reason, GiveUp::RunStopping);
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_once_the_token_budget_is_used_up() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let node = node_fn(move |ctx: Context| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            ctx.record_tokens(100);
            Err::<NodeMessage, _>(NodeError::new("rate limited"))
        }
    })
    .with_retry(no_jitter(1).max_attempts(5));
    let scope = RunScope::new(Some(Budget::tokens(100).unwrap()));
    let err = node.process(&ctx_in(scope)).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(retry_error(&err).reason, GiveUp::RunStopping);
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_during_the_backoff_ends_the_retry_at_once() {
    let flaky = Flaky::failing(10);
    let node = flaky.clone().with_retry(no_jitter(3_600_000)); // one hour
    let ctx = ctx_in(RunScope::new(None));
    let token = ctx.cancellation().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        token.cancel();
    });
    let started = Instant::now();
    let err = node.process(&ctx).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(flaky.attempts_seen(), vec![1]);
    assert_eq!(retry_error(&err).reason, GiveUp::RunStopping);
}

#[tokio::test(start_paused = true)]
async fn each_retry_is_published_as_an_event_with_the_attempt_and_the_error() {
    let bus = EventBus::with_replay(16);
    let node = Flaky::failing(2).with_retry(no_jitter(50).max_attempts(3));
    node.process(&ctx_in(RunScope::new(None).with_events(bus.clone())))
        .await
        .unwrap();
    let retries: Vec<_> = bus
        .replay()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::NodeRetrying {
                node,
                attempt,
                error,
                delay,
            } => Some((node.to_string(), attempt, error, delay)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        vec![
            (
                "tool".into(),
                1,
                "transient failure 1".into(),
                Duration::from_millis(50)
            ),
            (
                "tool".into(),
                2,
                "transient failure 2".into(),
                Duration::from_millis(100)
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn zero_attempts_is_an_error_at_the_node_and_the_node_never_runs() {
    let flaky = Flaky::failing(0);
    let node = flaky.clone().with_retry(no_jitter(1).max_attempts(0));
    let err = node
        .process(&ctx_in(RunScope::new(None)))
        .await
        .unwrap_err();
    assert_eq!(
        find_cause::<PolicyError>(&err),
        Some(&PolicyError::ZeroAttempts)
    );
    assert!(
        err.to_string()
            .starts_with("node `tool` has an invalid policy"),
        "{err}"
    );
    assert!(flaky.attempts_seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_slow_node_times_out_with_an_error_naming_the_node_and_the_limit() {
    let node = node_fn(|_ctx| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, NodeError>(json!({}))
    })
    .with_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let err = node
        .process(&ctx_in(RunScope::new(None)))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let timeout = find_cause::<TimeoutError>(&err).unwrap();
    assert_eq!(
        (timeout.node.as_str(), timeout.limit),
        ("tool", Duration::from_secs(2))
    );
    assert_eq!(err.to_string(), "node `tool` timed out after 2s");
}

#[tokio::test(start_paused = true)]
async fn a_node_within_its_timeout_returns_its_output() {
    let node = Flaky::failing(0).with_timeout(Duration::from_secs(1));
    let out = node.process(&ctx_in(RunScope::new(None))).await.unwrap();
    assert_eq!(out.content["call"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_zero_timeout_is_an_error_at_the_node_and_the_node_never_runs() {
    let flaky = Flaky::failing(0);
    let err = flaky
        .clone()
        .with_timeout(Duration::ZERO)
        .process(&ctx_in(RunScope::new(None)))
        .await
        .unwrap_err();
    assert_eq!(
        find_cause::<PolicyError>(&err),
        Some(&PolicyError::ZeroTimeout)
    );
    assert!(flaky.attempts_seen().is_empty());
}

/// Sleeps 10 s on its first call, answers at once afterwards.
fn slow_first_call() -> (impl Node, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let node = node_fn(move |ctx: Context| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok::<_, NodeError>(json!({ "attempt": ctx.attempt() }))
        }
    });
    (node, calls)
}

#[tokio::test(start_paused = true)]
async fn a_timeout_inside_a_retry_limits_each_attempt_and_timed_out_attempts_are_retried() {
    let (node, calls) = slow_first_call();
    let node = node
        .with_timeout(Duration::from_secs(1))
        .with_retry(no_jitter(100).retry_if(|e| find_cause::<TimeoutError>(e).is_some()));
    let started = Instant::now();
    let out = node.process(&ctx_in(RunScope::new(None))).await.unwrap();
    assert_eq!(out.content["attempt"], 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(started.elapsed(), Duration::from_millis(1100));
}

#[tokio::test(start_paused = true)]
async fn policies_added_first_are_outermost() {
    // timeout outside retry: the one limit covers every attempt and its backoff.
    let outside = Policies::new()
        .timeout(Duration::from_millis(150))
        .retry(no_jitter(100).max_attempts(5));
    let err = outside
        .wrap(Flaky::failing(10))
        .process(&ctx_in(RunScope::new(None)))
        .await
        .unwrap_err();
    assert!(find_cause::<TimeoutError>(&err).is_some(), "{err}");

    // retry outside timeout: each attempt has its own limit, the retry gives up.
    let inside = Policies::new()
        .retry(no_jitter(100).max_attempts(5))
        .timeout(Duration::from_millis(150));
    let err = inside
        .wrap(Flaky::failing(10))
        .process(&ctx_in(RunScope::new(None)))
        .await
        .unwrap_err();
    assert_eq!(retry_error(&err).attempts, 5);
}

/// A node that counts how many of its activations (and those of its siblings) run at once.
fn gauge(running: Arc<AtomicUsize>, peak: Arc<AtomicUsize>) -> impl Node {
    node_fn(move |_ctx| {
        let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, NodeError>(json!({}))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_limiter_caps_the_activations_of_every_node_sharing_it() {
    let llm = Limiter::new("llm", 2).unwrap();
    let (running, peak) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
    let planner = gauge(Arc::clone(&running), Arc::clone(&peak)).with_limiter(&llm);
    let writer = gauge(Arc::clone(&running), Arc::clone(&peak)).with_limiter(&llm);
    let ctx = ctx_in(RunScope::new(None));
    let mut calls = Vec::new();
    for i in 0..6 {
        let node: &dyn spark_adk_core::DynNode = if i % 2 == 0 { &planner } else { &writer };
        calls.push(node.process_dyn(&ctx));
    }
    let started = Instant::now();
    for result in futures_join(calls).await {
        result.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(30),
        "6 calls, 2 at a time"
    );
    assert_eq!(llm.available(), 2, "every slot is given back");
}

#[tokio::test(start_paused = true)]
async fn a_limiter_slot_is_given_back_when_the_activation_is_dropped() {
    let llm = Limiter::new("llm", 1).unwrap();
    let (running, peak) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
    let node = gauge(running, peak).with_limiter(&llm);
    let ctx = ctx_in(RunScope::new(None));
    let dropped = tokio::time::timeout(Duration::from_millis(5), node.process(&ctx)).await;
    assert!(dropped.is_err(), "cut off while holding the slot");
    assert_eq!(llm.available(), 1);
    node.process(&ctx).await.unwrap();
}

#[test]
fn a_limiter_of_capacity_zero_is_refused_with_its_name() {
    let err = Limiter::new("llm", 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "limiter `llm` needs a capacity of at least 1, got 0"
    );
    assert!(matches!(
        Limiter::new("x", usize::MAX),
        Err(PolicyError::CapacityTooLarge { .. })
    ));
}

/// Awaits every future concurrently on this task (no spawn, no extra dependency).
async fn futures_join<T>(futures: Vec<spark_adk_core::BoxFuture<'_, T>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in out.iter_mut().zip(futures.iter_mut()) {
            if let Some(f) = fut {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *slot = Some(v);
                        *fut = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}
