//! Node policies (retry, timeout) inside real runs of both modes: what the executors see is
//! only a node, so the promises must hold in both. Paused clock, no real sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spark_adk::policy::GiveUp;
use spark_adk::prelude::*;
use spark_adk::{find_cause, EventBus, RetryError, TimeoutError};

/// A node failing its first `failures` calls, then answering with the attempt it saw.
/// Shutdown deliveries (long-running mode) are answered at once and not counted.
fn flaky(failures: usize, calls: &Arc<AtomicUsize>) -> impl Node {
    let calls = Arc::clone(calls);
    node_fn(move |ctx: Context| {
        let shutdown = ctx.is_shutdown();
        let n = if shutdown {
            0
        } else {
            calls.fetch_add(1, Ordering::SeqCst) + 1
        };
        async move {
            if !shutdown && n <= failures {
                return Err(NodeError::new(format!("transient failure {n}")));
            }
            Ok(json!({ "attempt": ctx.attempt() }))
        }
    })
}

fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(10))
        .jitter(false)
        .max_attempts(attempts)
}

/// A one-node graph around `node`, publishing to a bus with a replay buffer.
fn single(node: impl Node) -> Graph {
    let mut g = Graph::builder();
    g.event_bus(EventBus::with_replay(64));
    let tool = g.add("tool", node);
    g.start(tool).build().unwrap()
}

fn retry_events(graph: &Graph) -> Vec<(String, u32)> {
    graph
        .events()
        .replay()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::NodeRetrying { node, attempt, .. } => Some((node.to_string(), attempt)),
            _ => None,
        })
        .collect()
}

async fn recovers_and_publishes_each_retry(task_type: TaskType) {
    let calls = Arc::new(AtomicUsize::new(0));
    let graph = single(flaky(2, &calls).with_retry(quick_retry(3)));
    let result = graph
        .run(Task::new(json!({})).with_type(task_type))
        .await
        .unwrap();
    assert_eq!(result.content()["attempt"], 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        retry_events(&graph),
        vec![("tool".to_owned(), 1), ("tool".to_owned(), 2)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_node_recovers_in_a_standard_run_and_each_retry_is_an_event() {
    recovers_and_publishes_each_retry(TaskType::Standard).await;
}

#[tokio::test(start_paused = true)]
async fn a_retried_node_recovers_in_a_long_running_run_and_each_retry_is_an_event() {
    recovers_and_publishes_each_retry(TaskType::LongRunning).await;
}

async fn panics_are_reported_not_retried(task_type: TaskType) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let node = node_fn(move |ctx: Context| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 && !ctx.is_shutdown() {
                panic!("tool exploded");
            }
            Ok::<_, NodeError>(json!({}))
        }
    })
    .with_retry(quick_retry(5));
    let err = single(node)
        .run(Task::new(json!({})).with_type(task_type))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::NodePanicked { node, message, .. } if node == "tool" && message == "tool exploded"),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a panic is never retried");
}

#[tokio::test(start_paused = true)]
async fn retries_never_hide_a_panic_in_a_standard_run() {
    panics_are_reported_not_retried(TaskType::Standard).await;
}

#[tokio::test(start_paused = true)]
async fn retries_never_hide_a_panic_in_a_long_running_run() {
    panics_are_reported_not_retried(TaskType::LongRunning).await;
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_after_a_long_running_time_budget_began_the_stop() {
    // Every attempt fails; the backoff is 10 s; the run's time budget ends at 5 s, during the
    // first backoff. The retry sees the stop when the delay ends and gives up.
    let calls = Arc::new(AtomicUsize::new(0));
    let node = flaky(usize::MAX, &calls)
        .with_retry(RetryPolicy::fixed(Duration::from_secs(10)).max_attempts(100));
    let task = Task::long_running(json!({})).with_budget(Budget::seconds(5.0).unwrap());
    let err = single(node).run(task).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let RunError::NodeFailed { node, source, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(node, "tool");
    let retry = find_cause::<RetryError>(source).unwrap();
    assert_eq!((retry.attempts, retry.reason), (1, GiveUp::RunStopping));
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_node_fails_the_run_with_an_error_naming_the_node_and_the_limit() {
    let node = node_fn(|_ctx| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, NodeError>(json!({}))
    })
    .with_timeout(Duration::from_secs(3));
    let err = single(node).run_with(json!({})).await.unwrap_err();
    let RunError::NodeFailed { node, source, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(node, "tool");
    let timeout = find_cause::<TimeoutError>(source).unwrap();
    assert_eq!(timeout.limit, Duration::from_secs(3));
    assert_eq!(
        err.to_string(),
        "node `tool` failed: node `tool` timed out after 3s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_zero_timeout_fails_the_run_with_a_clear_error_in_both_modes() {
    for task_type in [TaskType::Standard, TaskType::LongRunning] {
        let calls = Arc::new(AtomicUsize::new(0));
        let graph = single(flaky(0, &calls).with_timeout(Duration::ZERO));
        let err = graph
            .run(Task::new(json!({})).with_type(task_type))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("a node timeout must be longer than zero"),
            "{err}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_retry_predicate_is_reported_as_the_nodes_panic() {
    let calls = Arc::new(AtomicUsize::new(0));
    let node = flaky(usize::MAX, &calls).with_retry(quick_retry(5).retry_if(|e| {
        panic!("predicate exploded on {e}");
    }));
    let err = single(node).run_with(json!({})).await.unwrap_err();
    assert!(
        matches!(&err, RunError::NodePanicked { node, message, .. }
            if node == "tool" && message == "predicate exploded on transient failure 1"),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
