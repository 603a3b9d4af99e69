//! `ctx.state()` in a distributed run: one graph state for every process, on the broker.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{bounded, process, unique_run, Cleanup};
use serde_json::{json, Map};
use spark_adk_core::{node_fn, NodeError, RunError, Task};
use spark_adk_edges::GraphBuilder;
use spark_adk_nats::{DistributedError, Serve};

const N: i64 = 25;

/// `start` fans out to `a` and `b`; each increments `count` `N` times with `increment`.
fn fan_out_incrementing(increment: fn(&spark_adk_core::Context)) -> Arc<spark_adk_edges::Topology> {
    let mut g = GraphBuilder::new();
    let start = g.add(
        "start",
        node_fn(|_| async { Ok::<_, NodeError>(json!({})) }),
    );
    let mut adders = Vec::new();
    for name in ["a", "b"] {
        adders.push(g.add(
            name,
            node_fn(move |ctx| async move {
                if !ctx.is_shutdown() {
                    for _ in 0..N {
                        increment(&ctx);
                    }
                }
                Ok::<_, NodeError>(json!({}))
            }),
        ));
    }
    for adder in adders {
        g.connect(start >> adder);
    }
    Arc::new(g.start(start).build().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_with_on_ctx_state_from_two_processes_never_loses_an_increment() {
    let run = unique_run("ctxstate");
    let _cleanup = Cleanup(run.clone());
    let topology = fan_out_incrementing(|ctx| {
        ctx.state()
            .update_with("count", |v| *v = json!(v.as_i64().unwrap_or(0) + 1));
    });
    bounded(120, async {
        let worker = process(&topology, &run).await;
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["b"])).await });
        let coordinator = process(&topology, &run).await;
        let result = coordinator
            .run(Task::long_running(json!({})), Serve::nodes(["start", "a"]))
            .await
            .unwrap();
        let summary = worker.await.unwrap().unwrap();
        assert_eq!(summary.processed, 1, "b ran on the other process");
        assert_eq!(result.state.get("count"), Some(&json!(2 * N)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_update_with_from_two_processes_exclude_each_other() {
    let run = unique_run("ctxtx");
    let _cleanup = Cleanup(run.clone());
    // Each step moves one unit from `left` to `right` in a transaction, and counts it with
    // update_with: `left + right` stays 2N and `moves` ends at 2N.
    let topology = fan_out_incrementing(|ctx| {
        ctx.state().transaction(|m| {
            let left = m.get("left").and_then(|v| v.as_i64()).unwrap_or(0);
            let right = m.get("right").and_then(|v| v.as_i64()).unwrap_or(0);
            m.insert("left".into(), json!(left - 1));
            m.insert("right".into(), json!(right + 1));
        });
        ctx.state()
            .update_with("moves", |v| *v = json!(v.as_i64().unwrap_or(0) + 1));
    });
    bounded(120, async {
        let worker = process(&topology, &run).await;
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["b"])).await });
        let coordinator = process(&topology, &run).await;
        let mut initial = Map::new();
        initial.insert("left".into(), json!(2 * N));
        let result = coordinator
            .run(
                Task::long_running(json!({})).with_state(initial),
                Serve::nodes(["start", "a"]),
            )
            .await
            .unwrap();
        worker.await.unwrap().unwrap();
        assert_eq!(result.state.get("left"), Some(&json!(0)));
        assert_eq!(result.state.get("right"), Some(&json!(2 * N)));
        assert_eq!(result.state.get("moves"), Some(&json!(2 * N)));
    })
    .await;
}

#[tokio::test]
async fn ctx_state_works_on_a_current_thread_runtime_and_the_result_carries_it() {
    let run = unique_run("ctxcur");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let first = g.add(
        "first",
        node_fn(|ctx| async move {
            if !ctx.is_shutdown() {
                let seed = ctx.state().get("seed").unwrap_or_default();
                ctx.state().set("seen seed", seed);
                ctx.state().set("gone", json!(1));
            }
            Ok::<_, NodeError>(json!({}))
        }),
    );
    let second = g.add(
        "second",
        node_fn(|ctx| async move {
            if !ctx.is_shutdown() {
                let removed = ctx.state().remove("gone");
                ctx.state().set("removed", removed.unwrap_or_default());
                let keys = ctx.state().snapshot().len();
                ctx.state().set("keys before", json!(keys));
            }
            Ok::<_, NodeError>(json!({}))
        }),
    );
    g.connect(first >> second);
    let mut initial = Map::new();
    initial.insert("seed".into(), json!("planted"));
    g.initial_state(initial);
    let topology = Arc::new(g.start(first).build().unwrap());
    bounded(60, async {
        let result = process(&topology, &run)
            .await
            .run(Task::long_running(json!({})), Serve::All)
            .await
            .unwrap();
        let expected = json!({
            "seed": "planted",
            "seen seed": "planted",
            "removed": 1,
            "keys before": 3,
        });
        assert_eq!(json!(result.state), expected);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_failure_in_ctx_state_fails_the_activation_naming_the_node() {
    let run = unique_run("ctxerr");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let writer = g.add(
        "writer",
        node_fn(|ctx| async move {
            // Above the broker's max_payload (1 MiB): the write is refused.
            let big = "x".repeat(2 << 20);
            let previous = ctx.state().set("big", json!(big));
            Ok::<_, NodeError>(json!({ "previous": previous }))
        }),
    );
    let after = g.add(
        "after",
        node_fn(|_| async { Ok::<_, NodeError>(json!({})) }),
    );
    g.connect(writer >> after);
    let topology = Arc::new(g.start(writer).build().unwrap());
    bounded(60, async {
        let err = process(&topology, &run)
            .await
            .run(Task::long_running(json!({})), Serve::All)
            .await
            .unwrap_err();
        let DistributedError::Run(RunError::NodeFailed {
            node,
            source,
            counts,
        }) = err
        else {
            panic!("expected a node error, got {err}");
        };
        assert_eq!(node, "writer");
        assert!(source.message().contains("graph state"), "{source}");
        assert!(source.message().contains("`big`"), "{source}");
        assert_eq!(counts.processed, 1, "the failed activation routed nothing");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_lock_left_by_a_dead_holder_expires_and_writers_go_on() {
    use spark_adk_nats::{async_nats, DistributedState, Options};
    let run = unique_run("ctxlock");
    let _cleanup = Cleanup(run.clone());
    let options = Options {
        state_lock_ttl: std::time::Duration::from_secs(1),
        ..Options::default()
    };
    bounded(60, async {
        let state = DistributedState::open_with(common::client().await, &run, &options)
            .await
            .unwrap();
        // A holder takes the lock and dies without releasing it.
        let js = async_nats::jetstream::new(common::client().await);
        let locks = js.get_key_value(format!("SPARK_{run}_LOCK")).await.unwrap();
        locks.create("all", "dead".into()).await.unwrap();
        let held = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            state.update_with("n", |v| *v = json!(1)),
        )
        .await;
        assert!(held.is_err(), "the lock is held: the write waits");
        let started = std::time::Instant::now();
        state.update_with("n", |v| *v = json!(2)).await.unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the lock expired with its max_age"
        );
        assert_eq!(state.get("n").await.unwrap(), Some(json!(2)));
    })
    .await;
}
