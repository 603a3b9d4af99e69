//! Durable long-running runs (docs/runtime-semantics.md, "Durable runs"): the log of a
//! long-running run, resume after a failed commit at every record, fencing, fingerprints,
//! interrupts, handle sends logged before `send` returns, and the state rule.
//!
//! The random graphs are the mode-equivalence ones (tests/mode_equivalence.rs): acyclic, random
//! conditions, fan-out and merges, mailbox capacities down to 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use spark_adk::durable::testing::FailingStore;
use spark_adk::durable::{Record, RunImage, RunMode};
use spark_adk::prelude::*;
use spark_adk::{
    Durability, DurableError, DurableOptions, MemoryStore, RunId, RunMetadata, Store, StoreExt,
};

mod support;
use support::random_graphs::{multiset, runtime, spec, Cond, Spec};

fn node(i: usize) -> impl Node {
    node_fn(move |ctx: Context| async move {
        if ctx.is_shutdown() {
            return Ok(json!({}));
        }
        let h = ctx.inputs().content["h"].as_i64().unwrap_or(0);
        let next = (h * 31 + 7 * (i as i64 + 1)) % 1009;
        ctx.state().set(format!("n{i}-{h}"), next);
        ctx.record_tokens(1);
        Ok::<_, NodeError>(json!({ "h": next, "k": next % 3, "by": i }))
    })
}

fn build(spec: &Spec) -> Graph {
    support::random_graphs::build(spec, node)
}

fn balanced(m: &RunMetadata) -> bool {
    m.accepted == m.processed + m.unprocessed
}

fn options(store: Arc<dyn Store>, run: &str) -> DurableOptions {
    DurableOptions::new(store, run).with_durability(Durability::Sync)
}

async fn image(store: &dyn Store, run: &str) -> RunImage {
    store
        .load_run(&RunId::new(run))
        .await
        .unwrap()
        .replay()
        .unwrap()
}

async fn records(store: &dyn Store, run: &str) -> Vec<Record> {
    let loaded = store.load_run(&RunId::new(run)).await.unwrap();
    loaded.records.into_iter().map(|(_, r)| r).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_long_running_run_logs_one_activation_record_per_processed_message() {
    let spec = Spec {
        nodes: 4,
        edges: vec![
            (0, 1, Cond::Always),
            (0, 2, Cond::Always),
            (1, 3, Cond::Always),
            (2, 3, Cond::Always),
        ],
        capacity: 1,
        input: 5,
    };
    let graph = build(&spec);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let result = graph
        .run_durable(
            Task::long_running(json!({ "h": spec.input })),
            options(Arc::clone(&store), "lr"),
        )
        .await
        .unwrap();
    assert_eq!(result.metadata.stop_reason, StopReason::Completed);
    // n0, n1, n2, and n3 twice (once per incoming edge).
    assert_eq!(result.metadata.processed, 5);
    let loaded = store.load_run(&RunId::new("lr")).await.unwrap();
    assert_eq!(loaded.header.mode, RunMode::LongRunning);
    let records = records(store.as_ref(), "lr").await;
    let activations: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Activation(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(activations.len() as u64, result.metadata.processed);
    let mut consumed: Vec<u64> = activations.iter().map(|a| a.activation.0).collect();
    consumed.sort_unstable();
    consumed.dedup();
    assert_eq!(
        consumed.len(),
        activations.len(),
        "each message consumed once"
    );
    let image = image(store.as_ref(), "lr").await;
    assert_eq!(image.pending_count(), 0);
    assert_eq!(image.steps(), result.metadata.processed);
    assert_eq!(image.accepted(), result.metadata.accepted);
    assert_eq!(image.state(), &result.state);
    assert_eq!(image.tokens(), result.metadata.tokens_used);
    assert_eq!(image.sinks().len(), result.sink_outputs().len());
}

#[tokio::test]
async fn a_run_without_a_store_is_not_changed_by_durable_runs_existing() {
    // The plain path: same outputs and counts as before, no activation ids.
    let mut g = Graph::builder();
    let a = g.add(
        "a",
        node_fn(
            |ctx| async move { Ok::<_, NodeError>(json!({ "id": ctx.activation_id().is_some() })) },
        ),
    );
    let graph = g.start(a).build().unwrap();
    let result = graph.run(Task::long_running(json!({}))).await.unwrap();
    assert_eq!(result.content()["id"], false);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let durable = graph
        .run_durable(Task::long_running(json!({})), options(store, "ids"))
        .await
        .unwrap();
    assert_eq!(durable.content()["id"], true);
}

#[tokio::test]
async fn a_durable_long_running_run_refuses_a_node_with_a_concurrency_above_one_naming_it() {
    let mut g = Graph::builder();
    let a = g.add(
        "fan",
        node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) }),
    );
    g.node_concurrency(a, 2);
    let graph = g.start(a).build().unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let refused = graph
        .run_durable(
            Task::long_running(json!({})),
            options(store.clone(), "lanes"),
        )
        .await
        .expect_err("two lanes cannot be logged in start order");
    let text = refused.to_string();
    assert!(
        text.contains("`fan`") && text.contains("concurrency of 2"),
        "{text}"
    );
    // Nothing was written for the refused run.
    assert!(store.load(&RunId::new("lanes")).await.is_err());
}

fn crash_and_resume(spec: &Spec) -> Result<(), TestCaseError> {
    let graph = build(spec);
    let task = || Task::long_running(json!({ "h": spec.input }));
    runtime().block_on(async {
        let clean: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let plain = graph
            .run_durable(task(), options(Arc::clone(&clean), "p"))
            .await
            .unwrap();
        prop_assert!(balanced(&plain.metadata));
        let total = store_head(clean.as_ref(), "p").await;
        for k in 1..=total {
            let inner = Arc::new(MemoryStore::new());
            let failing: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&inner), k));
            let crashed = graph.run_durable(task(), options(failing, "r")).await;
            let store: Arc<dyn Store> = inner;
            // Every record is committed before the run goes on (Sync): the failed one stops
            // the run with the store's error (at k == total, the stop record).
            let err = crashed.expect_err("the injected failure stops the run");
            prop_assert!(err.store_error().is_some(), "k={}: {}", k, err);
            let resumed = graph
                .resume(options(Arc::clone(&store), "r"))
                .await
                .unwrap();
            prop_assert_eq!(resumed.metadata.stop_reason, StopReason::Completed);
            prop_assert_eq!(multiset(&resumed), multiset(&plain), "k={}", k);
            prop_assert_eq!(&resumed.state, &plain.state, "k={}", k);
            prop_assert_eq!(resumed.metadata.processed, plain.metadata.processed);
            prop_assert_eq!(resumed.metadata.accepted, plain.metadata.accepted);
            prop_assert_eq!(&resumed.metadata.per_node, &plain.metadata.per_node);
            prop_assert!(balanced(&resumed.metadata));
            // Tokens of an activation whose record failed may also ride on another's record
            // (see "Durable runs" in docs/runtime-semantics.md): never fewer.
            prop_assert!(resumed.metadata.tokens_used >= plain.metadata.tokens_used);
            let image = image(store.as_ref(), "r").await;
            prop_assert!(image.counts_balance());
            prop_assert_eq!(image.pending_count(), 0);
            prop_assert_eq!(image.steps(), plain.metadata.processed);
        }
        Ok(())
    })
}

async fn store_head(store: &dyn Store, run: &str) -> u64 {
    store.load(&RunId::new(run)).await.unwrap().head
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn a_long_running_run_whose_kth_record_fails_resumes_to_the_same_outputs_state_and_counts(
        spec in spec(6, 6)
    ) {
        crash_and_resume(&spec)?;
    }
}

/// `a` -> `b`; `b` fails on its first attempt (the run stops, its message stays pending), and
/// takes 100 ms on the next.
fn fails_once(attempts: Arc<AtomicU32>) -> Graph {
    let mut g = Graph::builder();
    let a = g.add(
        "a",
        node_fn(|ctx| async move {
            Ok::<_, NodeError>(json!({ "n": ctx.inputs().content["n"].clone() }))
        }),
    );
    let b = g.add(
        "b",
        node_fn(move |ctx| {
            let attempts = Arc::clone(&attempts);
            async move {
                if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(NodeError::new("first attempt fails"));
                }
                // The resumed run holds its lease a while: a second resumer meets it.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(json!({ "done": ctx.inputs().content["n"].clone() }))
            }
        }),
    );
    g.connect(a >> b);
    g.start(a).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resumers_of_one_long_running_run_exactly_one_gets_a_conflict() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let graph = fails_once(Arc::new(AtomicU32::new(0)));
    let err = graph
        .run_durable(
            Task::long_running(json!({ "n": 1 })),
            options(Arc::clone(&store), "two"),
        )
        .await
        .unwrap_err();
    assert!(err.run_error().is_some(), "{err}");
    let (first, second) = tokio::join!(
        graph.resume(options(Arc::clone(&store), "two").with_owner("one")),
        graph.resume(options(Arc::clone(&store), "two").with_owner("two")),
    );
    let conflicts = [&first, &second]
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| e.is_conflict()))
        .count();
    assert_eq!(conflicts, 1, "{first:?} / {second:?}");
    let done = first.or(second).unwrap();
    assert_eq!(done.content()["done"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_run_resumed_by_another_graph_is_refused_naming_the_difference() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let graph = fails_once(Arc::new(AtomicU32::new(0)));
    let _ = graph
        .run_durable(
            Task::long_running(json!({ "n": 1 })),
            options(Arc::clone(&store), "fp"),
        )
        .await
        .unwrap_err();
    let mut g = Graph::builder();
    let a = g.add(
        "a",
        node_fn(|_ctx| async move { Ok::<_, NodeError>(json!({})) }),
    );
    let other = g.start(a).build().unwrap();
    let err = other.resume(options(store, "fp")).await.unwrap_err();
    assert!(
        matches!(
            err.store_error(),
            Some(DurableError::FingerprintMismatch { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("`b`"), "{err}");
}

/// `ask` interrupts until it has an answer, then routes it to `done`.
fn asks() -> Graph {
    let mut g = Graph::builder();
    let ask = g.add(
        "ask",
        node_fn(|ctx| async move {
            match ctx.resume_value() {
                Some(answer) => Ok(json!({ "answer": answer.clone() })),
                None => Err(ctx.interrupt(json!({ "question": "approve?" }))),
            }
        }),
    );
    let done = g.add(
        "done",
        node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().content.clone()) }),
    );
    g.connect(ask >> done);
    g.start(ask).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_interrupt_stops_the_run_and_a_resume_with_a_value_reruns_the_node() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let graph = asks();
    let stopped = graph
        .run_durable(
            Task::long_running(json!({})),
            options(Arc::clone(&store), "ask"),
        )
        .await
        .unwrap();
    assert_eq!(stopped.metadata.stop_reason, StopReason::Interrupted);
    let interrupt = stopped.metadata.interrupt.clone().unwrap();
    assert_eq!(&*interrupt.node, "ask");
    assert_eq!(interrupt.payload["question"], "approve?");
    assert!(balanced(&stopped.metadata));
    assert_eq!(image(store.as_ref(), "ask").await.interrupts().len(), 1);

    let done = graph
        .resume_with(options(Arc::clone(&store), "ask"), json!("yes"))
        .await
        .unwrap();
    assert_eq!(done.metadata.stop_reason, StopReason::Completed);
    assert_eq!(done.content()["answer"], "yes");
    assert!(balanced(&done.metadata));

    let again = graph
        .resume_with(options(store, "ask"), json!("again"))
        .await
        .unwrap_err();
    assert!(again.is_conflict(), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_run_waiting_for_an_answer_is_not_resumed_without_one() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let graph = asks();
    let _ = graph
        .run_durable(
            Task::long_running(json!({})),
            options(Arc::clone(&store), "wait"),
        )
        .await
        .unwrap();
    let err = graph.resume(options(store, "wait")).await.unwrap_err();
    assert!(
        matches!(
            err.store_error(),
            Some(DurableError::InvalidArgument { .. })
        ),
        "{err}"
    );
}

/// `slow` sleeps a little per message and sinks it.
fn slow_sink() -> Graph {
    let mut g = Graph::builder();
    let slow = g.add(
        "slow",
        node_fn(|ctx| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, NodeError>(ctx.inputs().content.clone())
        }),
    );
    g.start(slow).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_a_durable_handle_is_in_the_log_when_send_returns() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let graph = slow_sink();
    let handle = graph
        .spawn_durable(
            Task::long_running(json!({ "n": 0 })),
            options(Arc::clone(&store), "sent"),
        )
        .await
        .unwrap();
    handle.send("slow", json!({ "n": 1 })).await.unwrap();
    let accepted: Vec<_> = records(store.as_ref(), "sent")
        .await
        .into_iter()
        .filter_map(|r| match r {
            Record::Accepted(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].message.target, "slow");
    assert_eq!(accepted[0].message.message.content["n"], 1);
    handle.shutdown();
    let result = handle.wait().await.unwrap();
    assert!(balanced(&result.metadata));
}

/// Spawns `graph` as durable run `run` (input `n: 0`, no grace period), sends `n: 1..=sends` to
/// `slow`, stops it, and returns its (balanced) result.
async fn spawn_send_and_stop(
    graph: &Graph,
    store: &Arc<dyn Store>,
    run: &str,
    capacity: usize,
    sends: i64,
) -> RunResult {
    let handle = graph
        .spawn_durable(
            Task::long_running(json!({ "n": 0 }))
                .with_mailbox_capacity(capacity)
                .with_grace(Duration::ZERO),
            options(Arc::clone(store), run),
        )
        .await
        .unwrap();
    for n in 1..=sends {
        handle.send("slow", json!({ "n": n })).await.unwrap();
    }
    handle.shutdown();
    let stopped = handle.wait().await.unwrap();
    assert!(balanced(&stopped.metadata));
    stopped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_accepted_and_not_processed_before_a_stop_are_processed_after_resume() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let graph = slow_sink();
    let first = spawn_send_and_stop(&graph, &store, "refill", 64, 20).await;
    assert_eq!(first.metadata.accepted, 21);
    assert!(first.metadata.unprocessed > 0, "{:?}", first.metadata);
    let before = image(store.as_ref(), "refill").await;
    assert_eq!(before.pending_count(), first.metadata.unprocessed);

    let resumed = graph
        .resume(options(Arc::clone(&store), "refill"))
        .await
        .unwrap();
    assert_eq!(resumed.metadata.stop_reason, StopReason::Completed);
    assert_eq!(resumed.metadata.accepted, 21);
    assert_eq!(resumed.metadata.processed, 21);
    assert!(balanced(&resumed.metadata));
    let mut seen: Vec<i64> = resumed
        .sink_outputs()
        .iter()
        .map(|s| s.message.content["n"].as_i64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..=20).collect::<Vec<_>>());
    // Refilled in log order: the pending ones come out in the order they were sent.
    let tail: Vec<i64> = resumed.sink_outputs()[first.sink_outputs().len()..]
        .iter()
        .map(|s| s.message.content["n"].as_i64().unwrap())
        .collect();
    assert!(tail.windows(2).all(|w| w[0] < w[1]), "{tail:?}");
}

/// `a` -> `b`, `a` -> `c` -> `e`. `b` writes `b_wrote`, waits until `e` runs (so `c`'s record,
/// queued before `c`'s output reached `e`, is in the log), writes `late`, then fails (or, when
/// `b_ok`, just returns). `c` waits for `b_wrote`, writes `c_done`. `e` says it runs (outside
/// the state) and never finishes: it is dropped when the grace period ends, uncommitted.
fn writers(b_ok: bool) -> Graph {
    let e_runs = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&e_runs);
    let mut g = Graph::builder();
    let a = g.add(
        "a",
        node_fn(|_ctx| async move { Ok::<_, NodeError>(json!({})) }),
    );
    let b = g.add(
        "b",
        node_fn(move |ctx| {
            let seen = Arc::clone(&seen);
            async move {
                if b_ok || ctx.is_shutdown() {
                    return Ok::<_, NodeError>(json!({ "b": "done" }));
                }
                ctx.state().set("b_wrote", true);
                while seen.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                ctx.state().set("late", true);
                Err(NodeError::new("b crashes before its record"))
            }
        }),
    );
    let c = g.add(
        "c",
        node_fn(|ctx| async move {
            if ctx.is_shutdown() {
                return Ok::<_, NodeError>(json!({}));
            }
            while ctx.state().get("b_wrote").is_none() && ctx.state().get("c_done").is_none() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            ctx.state().set("c_done", true);
            Ok(json!({ "c": "done" }))
        }),
    );
    let e = g.add(
        "e",
        node_fn(move |ctx| {
            let e_runs = Arc::clone(&e_runs);
            async move {
                if ctx.is_shutdown() || b_ok {
                    return Ok::<_, NodeError>(json!({ "e": "done" }));
                }
                e_runs.store(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Ok(json!({}))
            }
        }),
    );
    g.connect(a >> b);
    g.connect(a >> c >> e);
    g.start(a).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_written_by_an_activation_that_never_commits_is_logged_only_if_a_later_record_carries_it(
) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let err = writers(false)
        .run_durable(
            // e never finishes: it is dropped 50 ms into the stop.
            Task::long_running(json!({})).with_grace(Duration::from_millis(50)),
            options(Arc::clone(&store), "st"),
        )
        .await
        .unwrap_err();
    assert!(err.run_error().is_some(), "{err}");
    let image = image(store.as_ref(), "st").await;
    // Visible at once, logged with the next record (c's): kept although b never committed.
    assert_eq!(image.state().get("b_wrote"), Some(&json!(true)));
    assert_eq!(image.state().get("c_done"), Some(&json!(true)));
    // Written after the last record: lost with the crash.
    assert_eq!(image.state().get("late"), None);
    // b's and e's messages are still pending: both run again on resume.
    let mut pending: Vec<_> = image.pending().map(|m| m.to.clone()).collect();
    pending.sort();
    assert_eq!(pending, ["b", "e"]);
    let resumed = writers(true).resume(options(store, "st")).await.unwrap();
    assert_eq!(resumed.metadata.per_node.get("b"), Some(1));
    assert_eq!(resumed.state.get("b_wrote"), Some(&json!(true)));
    assert!(balanced(&resumed.metadata));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_try_sent_into_a_durable_run_is_logged_as_accepted() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let graph = slow_sink();
    let handle = graph
        .spawn_durable(
            Task::long_running(json!({ "n": 0 })).with_mailbox_capacity(8),
            options(Arc::clone(&store), "try"),
        )
        .await
        .unwrap();
    handle.try_send("slow", json!({ "n": 7 })).unwrap();
    handle.shutdown();
    let result = handle.wait().await.unwrap();
    assert!(balanced(&result.metadata));
    let sent: Vec<_> = records(store.as_ref(), "try")
        .await
        .into_iter()
        .filter_map(|r| match r {
            Record::Accepted(a) => Some(a.message.message.content["n"].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [json!(7)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_run_in_the_default_async_mode_resumes_after_a_failed_commit() {
    let spec = Spec {
        nodes: 5,
        edges: vec![
            (0, 1, Cond::Always),
            (0, 2, Cond::Always),
            (1, 3, Cond::Always),
            (2, 3, Cond::Always),
            (3, 4, Cond::Always),
        ],
        capacity: 2,
        input: 9,
    };
    let graph = build(&spec);
    let task = || Task::long_running(json!({ "h": spec.input }));
    let plain = graph.run(task()).await.unwrap();
    let inner = Arc::new(MemoryStore::new());
    let failing: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&inner), 3));
    let err = graph
        .run_durable(task(), DurableOptions::new(failing, "async"))
        .await
        .unwrap_err();
    assert!(err.store_error().is_some(), "{err}");
    let store: Arc<dyn Store> = inner;
    let resumed = graph
        .resume(DurableOptions::new(Arc::clone(&store), "async"))
        .await
        .unwrap();
    assert_eq!(multiset(&resumed), multiset(&plain));
    assert_eq!(resumed.state, plain.state);
    assert_eq!(resumed.metadata.processed, plain.metadata.processed);
    assert!(balanced(&resumed.metadata));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_spawned_run_resumes_with_a_new_handle_that_keeps_logging_its_sends() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let graph = slow_sink();
    spawn_send_and_stop(&graph, &store, "again", 16, 5).await;

    let second = graph
        .resume_spawned(options(Arc::clone(&store), "again"), None)
        .await
        .unwrap();
    second.send("slow", json!({ "n": 6 })).await.unwrap();
    let mut outputs = second.subscribe();
    // The first subscriber sees the restored outputs too: wait for the last message's.
    loop {
        let out = outputs.recv().await.unwrap();
        if out.message.content["n"] == 6 {
            break;
        }
    }
    second.shutdown();
    let result = second.wait().await.unwrap();
    assert!(balanced(&result.metadata));
    assert_eq!(result.metadata.accepted, 7);
    let mut seen: Vec<i64> = image(store.as_ref(), "again")
        .await
        .sinks()
        .iter()
        .map(|s| s.output.content["n"].as_i64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..=6).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_long_running_run_publishes_node_and_message_events() {
    let mut g = Graph::builder();
    let a = g.add(
        "a",
        node_fn(|_ctx| async move { Ok::<_, NodeError>(json!({})) }),
    );
    let b = g.add(
        "b",
        node_fn(|_ctx| async move { Ok::<_, NodeError>(json!({})) }),
    );
    g.connect(a >> b);
    g.event_bus(spark_adk::EventBus::new());
    let graph = g.start(a).build().unwrap();
    let mut rx = graph.subscribe_events();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    graph
        .run_durable(Task::long_running(json!({})), options(store, "events"))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while let Ok(e) = rx.try_recv() {
        kinds.push(
            format!("{:?}", e.kind)
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("NodeStarted"), 2, "{kinds:?}");
    assert_eq!(count("NodeFinished"), 2, "{kinds:?}");
    assert_eq!(count("MessageSent"), 1, "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("GraphFinished"));
}

#[test]
fn both_executors_fingerprint_a_graph_alike() {
    let spec = Spec {
        nodes: 4,
        edges: vec![
            (0, 1, Cond::Equals(1)),
            (0, 2, Cond::Fallback),
            (1, 3, Cond::Expr(5, 2)),
            (2, 3, Cond::Always),
        ],
        capacity: 1,
        input: 0,
    };
    let graph = build(&spec);
    assert_eq!(
        spark_adk::crates::mailbox::fingerprint(graph.topology()),
        spark_adk::crates::sequential::fingerprint(graph.topology())
    );
}

/// `step` loops to itself `limit` times, each time adding one key to the state (which grows).
fn growing(limit: i64) -> Graph {
    let mut g = Graph::builder();
    let step = g.add(
        "step",
        node_fn(move |ctx| async move {
            if ctx.is_shutdown() {
                return Ok(json!({}));
            }
            let n = ctx.inputs().content["n"].as_i64().unwrap_or(0) + 1;
            ctx.state()
                .set(format!("key{n}"), json!({ "n": n, "pad": "x".repeat(32) }));
            Ok::<_, NodeError>(json!({ "n": n, "more": n < limit }))
        }),
    );
    g.connect(step.on("more", true) >> step);
    g.start(step).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_log_grows_linearly_with_the_work_not_with_the_state() {
    let mut bytes = Vec::new();
    for (limit, run) in [(500, "half"), (1000, "full")] {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let result = growing(limit)
            .run_durable(
                Task::long_running(json!({ "n": 0 })),
                DurableOptions::new(Arc::clone(&store), run),
            )
            .await
            .unwrap();
        assert_eq!(result.state.len() as i64, limit);
        bytes.push(store.stored_bytes(&RunId::new(run)).await.unwrap());
    }
    // Twice the steps with a state twice as large: about twice the bytes (whole-state
    // checkpoints would give four times).
    let ratio = bytes[1] as f64 / bytes[0] as f64;
    assert!(ratio < 2.2, "{bytes:?}: ratio {ratio}");
}
