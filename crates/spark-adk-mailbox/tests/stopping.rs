//! How a long-running run stops: a shutdown requested by a node, the stop signal
//! (`Context::is_stopping` / `Context::stopping`) and the grace period after which running
//! activations are dropped and counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use spark_adk_core::{node_fn, Budget, BudgetKind, Context, NodeError, StopReason};
use spark_adk_mailbox::LongRunningExecutor;
use support::*;

fn sleeper(ms: u64) -> impl spark_adk_core::Node {
    node_fn(move |ctx: Context| async move {
        if !ctx.is_shutdown() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Ok::<_, NodeError>(ctx.inputs().clone())
    })
}

#[tokio::test(start_paused = true)]
async fn shutdown_begins_when_the_requesting_nodes_activation_finishes() {
    let after = Counter::default();
    let topology = topology(|g| {
        let src = g.add("src", pass());
        let stopper = g.add(
            "stopper",
            node_fn(|ctx: Context| async move {
                if !ctx.is_shutdown() {
                    ctx.request_shutdown();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok::<_, NodeError>(json!({ "stopped": true }))
            }),
        );
        let fast = g.add("fast", sleeper(500));
        let last = g.add("after", counting(&after));
        g.connect(src >> stopper);
        g.connect(src >> fast);
        g.connect(fast >> last);
        g.start(src);
    });
    let started = tokio::time::Instant::now();
    let result = run(&topology, task()).await.unwrap();

    assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    assert_eq!(
        after.get(),
        1,
        "`after` ran before the requesting activation finished"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_balanced(&result.metadata);
}

/// A node that waits an hour unless the run's cancellation token fires; counts the drops of
/// its activations in `dropped`.
fn stubborn(dropped: &Arc<AtomicUsize>) -> impl spark_adk_core::Node {
    let dropped = Arc::clone(dropped);
    node_fn(move |ctx: Context| {
        let flag = DropFlag(Arc::clone(&dropped));
        async move {
            let _flag = flag;
            if !ctx.is_shutdown() {
                tokio::select! {
                    () = ctx.cancellation().cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                }
            }
            Ok::<_, NodeError>(json!({ "late": true }))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_time_budget_returns_by_the_deadline_plus_the_grace_period() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let topology = topology(|g| {
        let a = g.add("a", stubborn(&dropped));
        g.start(a);
    });
    let started = tokio::time::Instant::now();
    let task = task()
        .with_budget(Budget::seconds(0.2).unwrap())
        .with_grace(Duration::from_secs(1));
    let result = run(&topology, task).await.unwrap();

    assert_eq!(started.elapsed(), Duration::from_millis(1200));
    assert_eq!(
        result.metadata.stop_reason,
        StopReason::Budget(BudgetKind::Time)
    );
    assert_eq!(result.metadata.activations_dropped, 1);
    assert_eq!(result.metadata.processed, 0);
    assert_eq!(result.metadata.unprocessed, 1);
    assert_balanced(&result.metadata);
    assert!(
        dropped.load(Ordering::SeqCst) >= 1,
        "the activation was not dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn the_end_of_the_grace_period_fires_the_cancellation_token_and_skips_the_shutdown_delivery()
{
    let fired_at: Arc<Mutex<Option<Duration>>> = Arc::default();
    let shutdowns = Counter::default();
    let started = tokio::time::Instant::now();
    let topology = {
        let fired_at = Arc::clone(&fired_at);
        let shutdowns = shutdowns.clone();
        topology(move |g| {
            let a = g.add(
                "a",
                node_fn(move |ctx: Context| {
                    let fired_at = Arc::clone(&fired_at);
                    let shutdowns = shutdowns.clone();
                    async move {
                        if ctx.is_shutdown() {
                            shutdowns.add();
                            return Ok::<_, NodeError>(json!({}));
                        }
                        // Background work the node started watches the run's token.
                        let token = ctx.cancellation().clone();
                        tokio::spawn(async move {
                            token.cancelled().await;
                            *fired_at.lock().unwrap() = Some(started.elapsed());
                        });
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(json!({}))
                    }
                }),
            );
            g.start(a);
        })
    };
    let task = task()
        .with_budget(Budget::seconds(0.2).unwrap())
        .with_grace(Duration::from_secs(1));
    let result = run(&topology, task).await.unwrap();
    tokio::task::yield_now().await;

    assert_eq!(result.metadata.activations_dropped, 1);
    assert_eq!(*fired_at.lock().unwrap(), Some(Duration::from_millis(1200)));
    assert_eq!(
        shutdowns.get(),
        0,
        "the worker whose activation was dropped got a delivery"
    );
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn a_zero_grace_period_drops_running_activations_when_the_stop_begins() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let topology = topology(|g| {
        let a = g.add("a", stubborn(&dropped));
        g.start(a);
    });
    let started = tokio::time::Instant::now();
    let task = task()
        .with_budget(Budget::seconds(0.5).unwrap())
        .with_grace(Duration::ZERO);
    let result = run(&topology, task).await.unwrap();

    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(result.metadata.activations_dropped, 1);
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn a_node_watching_the_stop_signal_winds_down_when_the_stop_begins() {
    let topology = topology(|g| {
        let a = g.add(
            "a",
            node_fn(|ctx: Context| async move {
                if ctx.is_shutdown() {
                    return Ok::<_, NodeError>(json!({}));
                }
                assert!(!ctx.is_stopping());
                tokio::select! {
                    () = ctx.stopping() => {}
                    () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                }
                assert!(ctx.is_stopping());
                Ok(json!({ "partial": true }))
            }),
        );
        g.start(a);
    });
    let started = tokio::time::Instant::now();
    let task = task().with_budget(Budget::seconds(0.2).unwrap());
    let result = run(&topology, task).await.unwrap();

    assert_eq!(started.elapsed(), Duration::from_millis(200));
    assert_eq!(result.content()["partial"], true);
    assert_eq!(result.metadata.activations_dropped, 0);
    assert_eq!(result.metadata.processed, 1);
    assert_balanced(&result.metadata);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_delivery_that_never_returns_is_dropped_at_the_end_of_the_grace_period() {
    let topology = topology(|g| {
        let a = g.add(
            "a",
            node_fn(|ctx: Context| async move {
                if ctx.is_shutdown() {
                    std::future::pending::<()>().await;
                }
                Ok::<_, NodeError>(json!({ "done": true }))
            }),
        );
        g.start(a);
    });
    let started = tokio::time::Instant::now();
    let result = run(&topology, task().with_grace(Duration::from_secs(2)))
        .await
        .unwrap();

    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    assert_eq!(result.content()["done"], true);
    assert_eq!(result.metadata.activations_dropped, 1);
    assert_balanced(&result.metadata);
}

/// A node whose drop is observable: the run's last reference to the graph is gone once no
/// worker task of the run is left.
struct Watched {
    _flag: DropFlag,
}

impl spark_adk_core::Node for Watched {
    async fn process(&self, ctx: &Context) -> spark_adk_core::NodeResult {
        if !ctx.is_shutdown() {
            std::future::pending::<()>().await;
        }
        Ok(ctx.inputs().clone())
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_leaves_no_worker_task_behind() {
    let node_dropped = Arc::new(AtomicUsize::new(0));
    let topology = topology(|g| {
        let a = g.add(
            "a",
            Watched {
                _flag: DropFlag(Arc::clone(&node_dropped)),
            },
        );
        g.start(a);
    });
    let task = task().with_grace(Duration::from_secs(1));
    let executor = LongRunningExecutor::new();
    let run = executor.run(topology, task);
    // The node's activation starts, then the run future is dropped.
    let outcome = tokio::time::timeout(Duration::from_millis(100), run).await;
    assert!(
        outcome.is_err(),
        "the run ended though its node never returns"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        node_dropped.load(Ordering::SeqCst),
        1,
        "a worker task still holds the graph after the grace period"
    );
}
