//! Behaviours of a distributed run against the real server (127.0.0.1:4222).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, client, count_up, process, unique_run, Cleanup};
use serde_json::json;
use spark_adk_core::{
    node_fn, Budget, BudgetKind, NodeError, NodeMessage, RunError, StopReason, Task,
};
use spark_adk_edges::GraphBuilder;
use spark_adk_nats::{connect, DistributedError, DistributedState, NatsError, SendError, Serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_one_sender_arrive_in_send_order_across_processes() {
    let run = unique_run("order");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let fwd = g.add(
        "forward",
        node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) }),
    );
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let sink = g.add(
        "sink",
        node_fn(move |ctx| {
            let s = Arc::clone(&s);
            async move {
                if !ctx.is_shutdown() {
                    s.lock()
                        .unwrap()
                        .push(ctx.inputs().content["n"].as_i64().unwrap_or(-1));
                }
                Ok::<_, NodeError>(json!({}))
            }
        }),
    );
    g.connect(fwd >> sink);
    let topology = Arc::new(g.start(fwd).build().unwrap());
    bounded(60, async {
        let worker = process(&topology, &run).await;
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["sink"])).await });
        let coordinator = process(&topology, &run).await;
        let handle = coordinator
            .start(
                Task::long_running(json!({ "n": 0 })),
                Serve::nodes(["forward"]),
            )
            .await
            .unwrap();
        for n in 1..40 {
            handle.send("forward", json!({ "n": n })).await.unwrap();
        }
        while seen.lock().unwrap().len() < 40 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        handle.shutdown();
        let result = handle.wait().await.unwrap();
        worker.await.unwrap().unwrap();
        assert_eq!(*seen.lock().unwrap(), (0..40).collect::<Vec<_>>());
        assert_eq!(result.metadata.accepted, 80);
        assert_eq!(
            result.metadata.accepted,
            result.metadata.processed + result.metadata.unprocessed
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_makes_the_sender_wait_until_the_receiver_takes_a_message() {
    let run = unique_run("bound");
    let _cleanup = Cleanup(run.clone());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let processed = Arc::new(AtomicU64::new(0));
    let mut g = GraphBuilder::new();
    let (gt, p) = (Arc::clone(&gate), Arc::clone(&processed));
    let slow = g.add(
        "slow",
        node_fn(move |ctx| {
            let (gt, p) = (Arc::clone(&gt), Arc::clone(&p));
            async move {
                if !ctx.is_shutdown() {
                    gt.acquire().await.unwrap().forget();
                    p.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, NodeError>(json!({}))
            }
        }),
    );
    g.node_mailbox_capacity(slow, 2);
    let topology = Arc::new(g.start(slow).build().unwrap());
    bounded(60, async {
        let coordinator = process(&topology, &run).await;
        let handle = coordinator
            .start(Task::long_running(json!({})), Serve::All)
            .await
            .unwrap();
        // The input is being processed (held by the gate); two more wait in the mailbox.
        handle.send("slow", json!({ "n": 1 })).await.unwrap();
        handle.send("slow", json!({ "n": 2 })).await.unwrap();
        let blocked = tokio::time::timeout(
            Duration::from_millis(500),
            handle.send("slow", json!({ "n": 3 })),
        )
        .await;
        assert!(
            blocked.is_err(),
            "the fourth message waits: the mailbox holds 2"
        );
        gate.add_permits(1);
        bounded(10, handle.send("slow", json!({ "n": 3 })))
            .await
            .unwrap();
        gate.add_permits(3);
        while processed.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        handle.shutdown();
        // The send abandoned above (its future dropped while it waited for room) must not hold
        // up the end of the run (the coordinator waits for sends in flight up to join_timeout,
        // 30 s).
        let result = bounded(10, handle.wait()).await.unwrap();
        assert_eq!(result.metadata.processed, 4);
        assert_eq!(
            result.metadata.accepted, 4,
            "the send that gave up was never accepted"
        );
        assert_eq!(result.metadata.unprocessed, 0);
    })
    .await;
}

/// A cycle that never quiesces, recording `tokens` per activation.
fn ping_pong(tokens: u64, shutdowns: Arc<AtomicU64>) -> Arc<spark_adk_edges::Topology> {
    let mut g = GraphBuilder::new();
    let node = |shutdowns: Arc<AtomicU64>| {
        node_fn(move |ctx| {
            let shutdowns = Arc::clone(&shutdowns);
            async move {
                if ctx.is_shutdown() {
                    shutdowns.fetch_add(1, Ordering::SeqCst);
                } else {
                    ctx.record_tokens(tokens);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<_, NodeError>(
                    json!({ "n": ctx.inputs().content["n"].as_u64().unwrap_or(0) + 1 }),
                )
            }
        })
    };
    let ping = g.add("ping", node(Arc::clone(&shutdowns)));
    let pong = g.add("pong", node(shutdowns));
    g.connect(ping >> pong >> ping);
    Arc::new(g.start(ping).build().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_budget_stops_three_processes_gracefully_with_one_shutdown_delivery_per_worker() {
    let run = unique_run("time");
    let _cleanup = Cleanup(run.clone());
    let shutdowns = Arc::new(AtomicU64::new(0));
    let topology = ping_pong(0, Arc::clone(&shutdowns));
    bounded(60, async {
        let mut workers = Vec::new();
        for serve in [Serve::nodes(["ping"]), Serve::All] {
            let p = process(&topology, &run).await;
            workers.push(tokio::spawn(async move { p.serve(serve).await }));
        }
        let coordinator = process(&topology, &run).await;
        let task = Task::long_running(json!({})).with_budget(Budget::seconds(1.0).unwrap());
        let result = coordinator.run(task, Serve::nodes(["pong"])).await.unwrap();
        for w in workers {
            w.await.unwrap().unwrap();
        }
        let m = &result.metadata;
        assert_eq!(m.stop_reason, StopReason::Budget(BudgetKind::Time));
        assert!(m.processed > 10);
        assert_eq!(m.accepted, m.processed + m.unprocessed);
        // Workers: ping twice (two processes), pong twice (worker 2 and the coordinator).
        assert_eq!(shutdowns.load(Ordering::SeqCst), 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_budget_across_processes_stops_the_run_within_the_documented_overshoot() {
    let run = unique_run("tokens");
    let _cleanup = Cleanup(run.clone());
    let topology = ping_pong(10, Arc::new(AtomicU64::new(0)));
    bounded(60, async {
        let worker = process(&topology, &run).await;
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["pong"])).await });
        let coordinator = process(&topology, &run).await;
        let task = Task::long_running(json!({})).with_budget(Budget::tokens(200).unwrap());
        let result = coordinator.run(task, Serve::nodes(["ping"])).await.unwrap();
        worker.await.unwrap().unwrap();
        let m = &result.metadata;
        assert_eq!(m.stop_reason, StopReason::Budget(BudgetKind::Tokens));
        // Overshoot: at most one activation per worker in flight (2 workers x 10 tokens).
        assert!(
            m.tokens_used >= 200 - 2 * 13 && m.tokens_used <= 200 + 20,
            "{}",
            m.tokens_used
        );
        assert_eq!(m.tokens_used, 10 * m.processed);
        assert_eq!(m.accepted, m.processed + m.unprocessed);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_error_on_a_worker_process_ends_the_run_with_an_error_naming_the_node() {
    let run = unique_run("error");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let a = g.add("a", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let b = g.add(
        "b",
        node_fn(|ctx| async move {
            if ctx.is_shutdown() {
                return Ok(json!({}));
            }
            Err::<serde_json::Value, _>(NodeError::new("sensor offline"))
        }),
    );
    g.connect(a >> b);
    let topology = Arc::new(g.start(a).build().unwrap());
    bounded(60, async {
        let worker = process(&topology, &run).await;
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["b"])).await });
        let coordinator = process(&topology, &run).await;
        let err = coordinator
            .run(Task::long_running(json!({})), Serve::nodes(["a"]))
            .await
            .unwrap_err();
        let summary = worker.await.unwrap().unwrap();
        let DistributedError::Run(err) = err else {
            panic!("{err}")
        };
        assert!(matches!(err, RunError::NodeFailed { .. }), "{err}");
        assert_eq!(err.node(), Some("b"));
        assert!(err.to_string().contains("sensor offline"));
        let counts = err.counts().unwrap();
        assert_eq!(
            (counts.accepted, counts.processed, counts.unprocessed),
            (2, 2, 0)
        );
        assert_eq!(
            summary.shutdown_deliveries, 0,
            "the failed worker gets no shutdown delivery"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_above_the_broker_maximum_is_refused_with_an_error_naming_the_node() {
    let run = unique_run("huge");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let big = g.add(
        "big",
        node_fn(|_| async { Ok::<_, NodeError>(json!({ "blob": "x".repeat(2 << 20) })) }),
    );
    let next = g.add("next", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    g.connect(big >> next);
    let topology = Arc::new(g.start(big).build().unwrap());
    bounded(60, async {
        let coordinator = process(&topology, &run).await;
        let err = coordinator
            .run(Task::long_running(json!({})), Serve::All)
            .await
            .unwrap_err();
        let DistributedError::Run(err) = err else {
            panic!("{err}")
        };
        assert_eq!(err.node(), Some("big"));
        assert!(err.to_string().contains("max_payload"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_the_stop_hands_the_message_back() {
    let run = unique_run("stopped");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let a = g.add("a", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let topology = Arc::new(g.start(a).build().unwrap());
    bounded(60, async {
        let coordinator = process(&topology, &run).await;
        let handle = coordinator
            .start(Task::long_running(json!({})), Serve::All)
            .await
            .unwrap();
        handle.shutdown();
        while !handle.is_stopping() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let err = handle.send("a", json!({ "keep": 1 })).await.unwrap_err();
        assert!(matches!(err, SendError::Stopped(_)));
        assert_eq!(err.into_message(), NodeMessage::from(json!({ "keep": 1 })));
        let result = handle.wait().await.unwrap();
        assert_eq!(result.metadata.stop_reason, StopReason::Shutdown);
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_broker_is_a_clear_error_after_bounded_retries() {
    let err = connect("127.0.0.1:1", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(err, NatsError::Connect { attempts, .. } if attempts > 1),
        "{err}"
    );
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_a_run_that_never_starts_gives_up_after_the_join_timeout() {
    let run = unique_run("nojoin");
    let mut g = GraphBuilder::new();
    let a = g.add("a", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let topology = Arc::new(g.start(a).build().unwrap());
    let worker = process(&topology, &run).await;
    let mut options = worker.options().clone();
    options.join_timeout = Duration::from_millis(300);
    let err = bounded(10, worker.with_options(options).serve(Serve::All))
        .await
        .unwrap_err();
    assert!(matches!(err, NatsError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains(&run), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_update_with_from_three_processes_never_loses_an_increment() {
    let run = unique_run("state");
    let _cleanup = Cleanup(run.clone());
    bounded(60, async {
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let state = DistributedState::open(client().await, &run).await.unwrap();
            tasks.push(tokio::spawn(async move {
                for _ in 0..30 {
                    state
                        .update_with("count", |v| *v = json!(v.as_i64().unwrap_or(0) + 1))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let state = DistributedState::open(client().await, &run).await.unwrap();
        assert_eq!(state.get("count").await.unwrap(), Some(json!(90)));
        state.delete().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_longer_than_ack_wait_keeps_its_message_with_progress_acks() {
    let run = unique_run("progress");
    let _cleanup = Cleanup(run.clone());
    let calls = Arc::new(AtomicU64::new(0));
    let mut g = GraphBuilder::new();
    let c = Arc::clone(&calls);
    let slow = g.add(
        "slow",
        node_fn(move |ctx| {
            let c = Arc::clone(&c);
            async move {
                if !ctx.is_shutdown() {
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                }
                Ok::<_, NodeError>(json!({ "done": true }))
            }
        }),
    );
    let topology = Arc::new(g.start(slow).build().unwrap());
    bounded(60, async {
        // Two processes serve the node: without progress acks the broker would hand the
        // message to the other one after ack_wait (1 s).
        let other = process(&topology, &run).await;
        let mut options = other.options().clone();
        options.ack_wait = Duration::from_secs(1);
        let other = other.with_options(options.clone());
        let other = tokio::spawn(async move { other.serve(Serve::All).await });
        let coordinator = process(&topology, &run).await.with_options(options);
        let result = coordinator
            .run(Task::long_running(json!({})), Serve::All)
            .await
            .unwrap();
        other.await.unwrap().unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the message was never delivered again"
        );
        assert_eq!(result.content()["done"], true);
        assert_eq!(result.metadata.processed, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_requests_shutdown_stops_the_run_after_its_activation() {
    let run = unique_run("request");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let a = g.add(
        "a",
        node_fn(|ctx| async move {
            let n = ctx.inputs().content["n"].as_u64().unwrap_or(0);
            if n == 5 {
                ctx.request_shutdown();
            }
            Ok::<_, NodeError>(json!({ "n": n + 1 }))
        }),
    );
    let b = g.add(
        "b",
        node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) }),
    );
    g.connect(a >> b >> a);
    let topology = Arc::new(g.start(a).build().unwrap());
    bounded(60, async {
        let worker = process(&topology, &run).await;
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["b"])).await });
        let coordinator = process(&topology, &run).await;
        let result = coordinator
            .run(Task::long_running(json!({})), Serve::nodes(["a"]))
            .await
            .unwrap();
        worker.await.unwrap().unwrap();
        let m = &result.metadata;
        assert_eq!(m.stop_reason, StopReason::Shutdown);
        // The requesting process stops at once; the other learns of it from the coordinator
        // and may finish one more activation meanwhile.
        assert_eq!(m.processed_by("a"), Some(6), "{m:?}");
        assert!(m.processed_by("b").unwrap() <= 6, "{m:?}");
        assert_eq!(m.accepted, m.processed + m.unprocessed);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_panic_on_a_worker_process_is_reported_naming_the_node() {
    let run = unique_run("panic");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let a = g.add("a", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let b = g.add(
        "b",
        node_fn(|ctx| async move {
            if !ctx.is_shutdown() {
                panic!("wires crossed");
            }
            Ok::<_, NodeError>(json!({}))
        }),
    );
    g.connect(a >> b);
    let topology = Arc::new(g.start(a).build().unwrap());
    bounded(60, async {
        let worker = process(&topology, &run).await;
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["b"])).await });
        let coordinator = process(&topology, &run).await;
        let err = coordinator
            .run(Task::long_running(json!({})), Serve::nodes(["a"]))
            .await
            .unwrap_err();
        worker.await.unwrap().unwrap();
        let DistributedError::Run(err) = err else {
            panic!("{err}")
        };
        assert!(matches!(err, RunError::NodePanicked { .. }), "{err}");
        assert_eq!(err.node(), Some("b"));
        assert!(err.to_string().contains("wires crossed"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_run_whose_id_is_in_use_is_refused_and_leaves_the_running_one_alone() {
    let run = unique_run("inuse");
    let _cleanup = Cleanup(run.clone());
    // The node says when it runs, so that the stop below comes after the first run's work
    // began (a stop before it would leave its one message unprocessed, a different test).
    let ran = Arc::new(tokio::sync::Notify::new());
    let mut g = GraphBuilder::new();
    let a = g.add("a", {
        let ran = Arc::clone(&ran);
        node_fn(move |_| {
            let ran = Arc::clone(&ran);
            async move {
                ran.notify_one();
                Ok::<_, NodeError>(json!({ "ok": true }))
            }
        })
    });
    let topology = Arc::new(g.start(a).build().unwrap());
    bounded(60, async {
        let first = process(&topology, &run).await;
        let handle = first
            .start(Task::long_running(json!({})), Serve::All)
            .await
            .unwrap();
        let second = process(&topology, &run).await;
        let err = second
            .start(Task::long_running(json!({})), Serve::All)
            .await
            .unwrap_err();
        assert!(matches!(err, NatsError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
        ran.notified().await;
        handle.shutdown();
        let result = handle.wait().await.unwrap();
        assert_eq!(
            result.content()["ok"],
            true,
            "the first run was not disturbed"
        );
        assert_eq!(result.metadata.processed, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mailboxes_on_a_cycle_end_the_run_with_a_deadlock_error_by_timeout() {
    let run = unique_run("deadlock");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let pass = || node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) });
    let a = g.add("a", pass());
    let b = g.add("b", pass());
    // Every activation sends two messages around the cycle: the mailboxes fill up.
    g.connect(a >> b);
    g.connect(a >> b);
    g.connect(b >> a);
    g.connect(b >> a);
    g.mailbox_capacity(1);
    let topology = Arc::new(g.start(a).build().unwrap());
    bounded(60, async {
        let worker = process(&topology, &run).await;
        let mut options = worker.options().clone();
        options.deadlock_timeout = Some(Duration::from_secs(1));
        let worker = worker.with_options(options.clone());
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["b"])).await });
        let coordinator = process(&topology, &run).await.with_options(options);
        let err = coordinator
            .run(Task::long_running(json!({})), Serve::nodes(["a"]))
            .await
            .unwrap_err();
        worker.await.unwrap().unwrap();
        let DistributedError::Run(err) = err else {
            panic!("{err}")
        };
        let RunError::Deadlock { blocked, counts } = &err else {
            panic!("{err}")
        };
        assert_eq!(blocked, &["a".to_owned(), "b".to_owned()]);
        assert_eq!(counts.accepted, counts.processed + counts.unprocessed);
        assert!(counts.unprocessed > 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_waiting_on_a_slow_busy_node_is_not_taken_for_a_deadlock() {
    let run = unique_run("nodeadlock");
    let _cleanup = Cleanup(run.clone());
    let mut g = GraphBuilder::new();
    let gen = g.add("gen", count_up());
    let slow = g.add(
        "slow",
        node_fn(|ctx| async move {
            if !ctx.is_shutdown() {
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            Ok::<_, NodeError>(json!({ "done": ctx.inputs().content["n"].clone() }))
        }),
    );
    g.connect(gen.when("$.outputs.n < 5") >> gen);
    g.connect(gen >> slow);
    g.mailbox_capacity(1);
    let topology = Arc::new(g.start(gen).build().unwrap());
    bounded(60, async {
        let coordinator = process(&topology, &run).await;
        let mut options = coordinator.options().clone();
        // Shorter than one slow activation: gen waits for room longer than this, but the slow
        // node is busy, not waiting.
        options.deadlock_timeout = Some(Duration::from_millis(300));
        let result = coordinator
            .with_options(options)
            .run(Task::long_running(json!({ "n": 0 })), Serve::All)
            .await
            .unwrap();
        assert_eq!(result.metadata.processed_by("slow"), Some(5));
        assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    })
    .await;
}
