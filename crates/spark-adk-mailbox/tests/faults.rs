//! Faults on a node's behalf outside its future (a panicking acknowledgement hook, a panic
//! payload whose drop panics) and misuse of the entry points (no runtime, no timers): every
//! one is a typed error, never a silent worker death, a hang or a crash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use serde_json::json;
use spark_adk_core::{node_fn, AckHook, Budget, ChannelMessage, Context, NodeError, RunError};
use spark_adk_mailbox::LongRunningExecutor;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_ack_hook_is_reported_as_the_nodes_panic() {
    let b_count = Counter::default();
    let topology = topology(|g| {
        let a = g.add("a", pass());
        let b = g.add("b", counting(&b_count));
        g.connect(a >> b);
        g.start(a);
    });
    let handle = LongRunningExecutor::new()
        .spawn(Arc::clone(&topology), task())
        .unwrap();
    for n in 0..20 {
        let mut message = ChannelMessage::new(json!({ "n": n }));
        if n == 10 {
            message = message.with_ack(AckHook::new(|| panic!("ack hook exploded")));
        }
        if handle.send_channel("a", message).await.is_err() {
            break;
        }
    }
    let error = handle.wait().guarded().await.unwrap_err();

    match &error {
        RunError::NodePanicked { node, message, .. } => {
            assert_eq!(node, "a");
            assert!(message.contains("ack hook exploded"), "{message}");
        }
        other => panic!("expected NodePanicked naming `a`, got {other:?}"),
    }
    let counts = counts_of(&error);
    assert_counts_balanced(&counts);
    assert!(counts.processed >= 11, "{counts:?}");
}

/// A panic payload whose own `Drop` panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the panic payload exploded when dropped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_payload_whose_drop_panics_is_reported_as_the_nodes_panic() {
    let topology = topology(|g| {
        let src = g.add("src", pass());
        let bad = g.add(
            "bad",
            node_fn(|ctx: Context| async move {
                if ctx.is_shutdown() {
                    return Ok::<_, NodeError>(json!({}));
                }
                std::panic::panic_any(Bomb)
            }),
        );
        let other = g.add("other", pass());
        g.connect(src >> bad);
        g.connect(src >> other);
        g.start(src);
    });
    let error = run(&topology, task()).await.unwrap_err();

    match &error {
        RunError::NodePanicked { node, .. } => assert_eq!(node, "bad"),
        other => panic!("expected NodePanicked naming `bad`, got {other:?}"),
    }
    assert_counts_balanced(&counts_of(&error));
}

#[tokio::test]
async fn a_panic_in_a_shutdown_delivery_is_reported_as_the_nodes_panic() {
    let topology = topology(|g| {
        let a = g.add(
            "a",
            node_fn(|ctx: Context| async move {
                if ctx.is_shutdown() {
                    panic!("cleanup failed");
                }
                Ok::<_, NodeError>(json!({ "done": true }))
            }),
        );
        g.start(a);
    });
    let error = run(&topology, task()).await.unwrap_err();
    match &error {
        RunError::NodePanicked { node, message, .. } => {
            assert_eq!(node, "a");
            assert!(message.contains("cleanup failed"), "{message}");
        }
        other => panic!("expected NodePanicked naming `a`, got {other:?}"),
    }
    let counts = counts_of(&error);
    assert_eq!(counts.processed, 1);
    assert_counts_balanced(&counts);
}

/// Polls `future` once without a runtime.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = TaskContext::from_waker(Waker::noop());
    pin!(future).poll(&mut cx)
}

#[test]
fn a_run_outside_a_tokio_runtime_is_an_invalid_task() {
    let topology = topology(|g| {
        let a = g.add("a", pass());
        g.start(a);
    });
    let outcome = poll_once(LongRunningExecutor::new().run(topology, task()));
    match outcome {
        Poll::Ready(Err(RunError::InvalidTask(message))) => {
            assert!(message.contains("tokio runtime"), "{message}");
        }
        other => panic!("expected InvalidTask, got {other:?}"),
    }
}

fn runtime_without_timers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn a_run_with_a_time_budget_on_a_runtime_without_timers_is_an_invalid_task() {
    let topology = topology(|g| {
        let a = g.add("a", pass());
        g.start(a);
    });
    let task = task().with_budget(Budget::seconds(5.0).unwrap());
    let outcome = runtime_without_timers().block_on(LongRunningExecutor::new().run(topology, task));
    match outcome {
        Err(RunError::InvalidTask(message)) => assert!(message.contains("timers"), "{message}"),
        other => panic!("expected InvalidTask, got {other:?}"),
    }
}

#[test]
fn a_spawn_with_a_time_budget_on_a_runtime_without_timers_is_an_invalid_task() {
    let topology = topology(|g| {
        let a = g.add("a", pass());
        g.start(a);
    });
    let task = task().with_budget(Budget::seconds(5.0).unwrap());
    let runtime = runtime_without_timers();
    let outcome = runtime.block_on(async { LongRunningExecutor::new().spawn(topology, task) });
    match outcome {
        Err(RunError::InvalidTask(message)) => assert!(message.contains("timers"), "{message}"),
        other => panic!("expected InvalidTask, got {other:?}"),
    }
}

#[test]
fn a_run_without_a_time_budget_works_on_a_runtime_without_timers() {
    let topology = topology(|g| {
        let a = g.add("a", pass());
        let b = g.add("b", pass());
        g.connect(a >> b);
        g.start(a);
    });
    let result = runtime_without_timers()
        .block_on(
            LongRunningExecutor::new().run(topology, task().with_grace(Duration::from_secs(1))),
        )
        .unwrap();
    assert_eq!(result.metadata.processed, 2);
    assert_balanced(&result.metadata);
}
