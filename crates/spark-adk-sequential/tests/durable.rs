//! Durable standard-mode runs (docs/runtime-semantics.md, "Durable runs"): crash at every
//! record and resume, interrupts, fencing, fingerprints, storage growth.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex, OnceLock};

use proptest::prelude::*;
use serde_json::json;
use spark_adk_core::{node_fn, Context, NodeError, RunResult, StopReason, Task};
use spark_adk_durable::testing::FailingStore;
use spark_adk_durable::{Durability, DurableError, MemoryStore, Store, StoreExt};
use spark_adk_edges::{GraphBuilder, Topology};
use spark_adk_sequential::{DurableOptions, DurableRunError, SequentialExecutor};
use tokio::runtime::Runtime;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// split -> left, right -> join (twice) -> sink; every node writes state and records tokens;
/// `left` removes a key of the initial state.
fn fan_graph() -> Topology {
    let mut g = GraphBuilder::new();
    let split = g.add(
        "split",
        node_fn(|ctx: Context| async move {
            let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
            ctx.state().set("split", json!(n));
            ctx.record_tokens(5);
            Ok::<_, NodeError>(json!({ "n": n + 1 }))
        }),
    );
    let side = |name: &'static str, by: i64| {
        node_fn(move |ctx: Context| async move {
            let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
            ctx.state().set(name, json!(n * by));
            if name == "left" {
                ctx.state().remove("temp");
            }
            ctx.record_tokens(2);
            Ok::<_, NodeError>(json!({ "n": n * by }))
        })
    };
    let left = g.add("left", side("left", 2));
    let right = g.add("right", side("right", 3));
    let join = g.add(
        "join",
        node_fn(|ctx: Context| async move {
            let n = ctx.inputs().content["n"].as_i64().unwrap_or(0);
            let joins = ctx.state().update_with("joins", |v| {
                *v = json!(v.as_i64().unwrap_or(0) + 1);
                v.clone()
            });
            ctx.record_tokens(3);
            Ok::<_, NodeError>(json!({ "n": n, "joins": joins }))
        }),
    );
    g.connect(split >> left);
    g.connect(split >> right);
    g.connect(left >> join);
    g.connect(right >> join);
    g.initial_state(serde_json::Map::from_iter([(
        "temp".to_owned(),
        json!("scratch"),
    )]));
    g.start(split).build().unwrap()
}

/// What two runs must agree on: sinks, state, counts.
fn summary(r: &RunResult) -> serde_json::Value {
    let sinks: Vec<_> = r
        .sink_outputs()
        .iter()
        .map(|s| json!([s.node.to_string(), s.message.content]))
        .collect();
    let m = &r.metadata;
    json!({
        "sinks": sinks,
        "state": r.state,
        "steps": m.steps,
        "accepted": m.accepted,
        "processed": m.processed,
        "unprocessed": m.unprocessed,
        "tokens": m.tokens_used,
        "per_node": m.per_node.iter().map(|c| json!([c.node, c.processed])).collect::<Vec<_>>(),
        "stop": format!("{:?}", m.stop_reason),
    })
}

fn options(store: Arc<dyn Store>, run: &str) -> DurableOptions {
    DurableOptions::new(store, run).with_durability(Durability::Sync)
}

/// Crashes the run at record `k` (the store fails that append, as a full disk would) and
/// resumes it from what the store kept; returns the final result.
async fn crash_at_and_resume(topology: &Topology, task: Task, k: u64) -> RunResult {
    let kept = Arc::new(MemoryStore::new());
    let store: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&kept), k));
    let exec = SequentialExecutor::new();
    let first = exec
        .run_durable(topology, task, options(Arc::clone(&store), "run"))
        .await;
    match first {
        Ok(done) => done,
        Err(e) => {
            assert!(
                matches!(e.store_error(), Some(DurableError::WriteFailed { .. })),
                "the injected failure stops the run: {e}"
            );
            exec.resume(topology, options(kept, "run"), None)
                .await
                .expect("the resumed run ends")
        }
    }
}

#[test]
fn a_run_crashed_at_any_record_and_resumed_ends_as_the_uninterrupted_one() {
    let topology = fan_graph();
    let task = || Task::new(json!({ "n": 1 }));
    runtime().block_on(async {
        let plain = SequentialExecutor::new()
            .run(&topology, task())
            .await
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let durable = SequentialExecutor::new()
            .run_durable(&topology, task(), options(Arc::clone(&store), "whole"))
            .await
            .unwrap();
        assert_eq!(summary(&durable), summary(&plain));
        let records = store.load(&"whole".into()).await.unwrap().head;
        assert_eq!(records, 6, "five activations and a stop");
        let mut failed_somewhere = 0;
        for k in 1..=records + 1 {
            let resumed = crash_at_and_resume(&topology, task(), k).await;
            assert_eq!(summary(&resumed), summary(&plain), "crash at record {k}");
            failed_somewhere += u64::from(k <= records);
        }
        assert_eq!(failed_somewhere, records);
    });
}

#[test]
fn a_run_crashed_at_any_record_compacted_and_resumed_ends_as_the_uninterrupted_one() {
    let topology = fan_graph();
    let task = || Task::new(json!({ "n": 2 }));
    runtime().block_on(async {
        let plain = SequentialExecutor::new()
            .run(&topology, task())
            .await
            .unwrap();
        for k in 1..=6 {
            let kept = Arc::new(MemoryStore::new());
            let store: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&kept), k));
            let exec = SequentialExecutor::new();
            exec.run_durable(&topology, task(), options(store, "run"))
                .await
                .expect_err("the injected failure stops the run");
            let at = kept.compact(&"run".into()).await.unwrap();
            assert_eq!(at, k - 1, "the snapshot covers every committed record");
            let log = kept.load(&"run".into()).await.unwrap();
            assert!(log.records.is_empty() && log.head == k - 1);
            if k > 1 {
                assert_eq!(log.snapshot.map(|s| s.seq), Some(k - 1));
            }
            let resumed = exec
                .resume(&topology, options(kept, "run"), None)
                .await
                .expect("the compacted run resumes");
            assert_eq!(summary(&resumed), summary(&plain), "crash at record {k}");
        }
    });
}

#[test]
fn an_interrupted_run_compacted_then_answered_finishes_as_without_compaction() {
    let topology = review_graph(Arc::default(), None);
    runtime().block_on(async {
        let store = Arc::new(MemoryStore::new());
        let exec = SequentialExecutor::new();
        exec.run_durable(
            &topology,
            Task::new(json!({})),
            options(Arc::clone(&store) as Arc<dyn Store>, "r"),
        )
        .await
        .unwrap();
        assert_eq!(store.compact(&"r".into()).await.unwrap(), 3);
        let done = exec
            .resume(
                &topology,
                options(Arc::clone(&store) as Arc<dyn Store>, "r"),
                Some(json!("ok")),
            )
            .await
            .unwrap();
        assert_eq!(done.content()["published"], "ok");
        assert_eq!(done.metadata.steps, 3);
        // The answered interrupt stays answered in the compacted log.
        let again = exec
            .resume(&topology, options(store, "r"), Some(json!("twice")))
            .await
            .unwrap_err();
        assert!(again.is_conflict(), "{again}");
    });
}

#[test]
fn an_async_run_that_loses_a_commit_resumes_to_the_same_end() {
    let topology = fan_graph();
    runtime().block_on(async {
        let plain = SequentialExecutor::new()
            .run(&topology, Task::new(json!({ "n": 4 })))
            .await
            .unwrap();
        for k in 1..=6 {
            let kept = Arc::new(MemoryStore::new());
            let store: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&kept), k));
            let exec = SequentialExecutor::new();
            let opts = DurableOptions::new(Arc::clone(&store), "a");
            let first = exec
                .run_durable(&topology, Task::new(json!({ "n": 4 })), opts)
                .await;
            let end = match first {
                Ok(r) => r,
                Err(_) => exec
                    .resume(&topology, DurableOptions::new(kept, "a"), None)
                    .await
                    .unwrap(),
            };
            assert_eq!(summary(&end), summary(&plain), "lost commit {k}");
        }
    });
}

/// A review graph: `draft` -> `review` (interrupts for approval) -> `publish`. `seen` gets the
/// activation id and resume value of every attempt of `review`.
type Seen = Arc<Mutex<Vec<(Option<u64>, Option<serde_json::Value>)>>>;

fn review_graph(seen: Seen, gate: Option<Arc<tokio::sync::Semaphore>>) -> Topology {
    let mut g = GraphBuilder::new();
    let draft = g.add(
        "draft",
        node_fn(|_ctx: Context| async move { Ok::<_, NodeError>(json!({ "text": "hello" })) }),
    );
    let review = g.add(
        "review",
        node_fn(move |ctx: Context| {
            let seen = Arc::clone(&seen);
            let gate = gate.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((ctx.activation_id(), ctx.resume_value().cloned()));
                let Some(answer) = ctx.resume_value().cloned() else {
                    return Err(ctx.interrupt(json!({ "approve": ctx.inputs().content })));
                };
                if let Some(gate) = gate {
                    let _permit = gate.acquire().await.unwrap();
                }
                ctx.state().set("answer", answer.clone());
                Ok(json!({ "approved": answer }))
            }
        }),
    );
    let publish = g.add(
        "publish",
        node_fn(|ctx: Context| async move {
            Ok::<_, NodeError>(json!({ "published": ctx.inputs().content["approved"] }))
        }),
    );
    g.connect(draft >> review >> publish);
    g.start(draft).build().unwrap()
}

#[test]
fn an_interrupted_run_resumed_with_a_value_reruns_the_node_with_that_value() {
    let seen: Seen = Arc::default();
    let topology = review_graph(Arc::clone(&seen), None);
    runtime().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let exec = SequentialExecutor::new();
        let stopped = exec
            .run_durable(
                &topology,
                Task::new(json!({})),
                options(Arc::clone(&store), "r"),
            )
            .await
            .unwrap();
        assert_eq!(stopped.metadata.stop_reason, StopReason::Interrupted);
        let interrupt = stopped.metadata.interrupt.clone().unwrap();
        assert_eq!(&*interrupt.node, "review");
        assert_eq!(interrupt.payload, json!({ "approve": { "text": "hello" } }));
        assert_eq!(stopped.metadata.unprocessed, 1);

        let done = exec
            .resume(&topology, options(store, "r"), Some(json!("yes")))
            .await
            .unwrap();
        assert_eq!(done.metadata.stop_reason, StopReason::Completed);
        assert_eq!(done.content()["published"], "yes");
        assert_eq!(done.state["answer"], "yes");
        assert_eq!(done.metadata.steps, 3);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].0.is_some());
        assert_eq!(
            seen[0].0, seen[1].0,
            "the activation id is stable across the resume"
        );
        assert_eq!(seen[0].1, None);
        assert_eq!(seen[1].1, Some(json!("yes")));
    });
}

#[test]
fn an_interrupt_resumed_twice_is_refused_with_a_conflict() {
    let topology = review_graph(Arc::default(), None);
    runtime().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let exec = SequentialExecutor::new();
        exec.run_durable(
            &topology,
            Task::new(json!({})),
            options(Arc::clone(&store), "r"),
        )
        .await
        .unwrap();
        exec.resume(&topology, options(Arc::clone(&store), "r"), Some(json!(1)))
            .await
            .unwrap();
        let again = exec
            .resume(&topology, options(store, "r"), Some(json!(2)))
            .await
            .unwrap_err();
        assert!(again.is_conflict(), "{again}");
    });
}

#[test]
fn a_waiting_interrupt_resumed_without_a_value_is_refused() {
    let topology = review_graph(Arc::default(), None);
    runtime().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let exec = SequentialExecutor::new();
        exec.run_durable(
            &topology,
            Task::new(json!({})),
            options(Arc::clone(&store), "r"),
        )
        .await
        .unwrap();
        let err = exec
            .resume(&topology, options(store, "r"), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("waits for an answer"), "{err}");
    });
}

#[test]
fn of_two_resumers_of_one_run_exactly_one_proceeds() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let seen: Seen = Arc::default();
    let topology = Arc::new(review_graph(Arc::clone(&seen), Some(Arc::clone(&gate))));
    runtime().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let exec = SequentialExecutor::new();
        exec.run_durable(
            &topology,
            Task::new(json!({})),
            options(Arc::clone(&store), "r"),
        )
        .await
        .unwrap();
        let first = {
            let (topology, store) = (Arc::clone(&topology), Arc::clone(&store));
            tokio::spawn(async move {
                SequentialExecutor::new()
                    .resume(&topology, options(store, "r"), Some(json!("a")))
                    .await
            })
        };
        // Wait until the first resumer runs the node (it holds the run now).
        while seen.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        let second = exec
            .resume(
                &topology,
                options(Arc::clone(&store), "r"),
                Some(json!("b")),
            )
            .await;
        gate.add_permits(1);
        let first = first.await.unwrap();
        let outcomes = [first, second];
        let conflicts = outcomes
            .iter()
            .filter(|o| o.as_ref().is_err_and(DurableRunError::is_conflict))
            .count();
        let proceeded = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!((conflicts, proceeded), (1, 1), "{outcomes:?}");
        assert_eq!(outcomes[0].as_ref().unwrap().content()["published"], "a");
    });
}

#[test]
fn a_resume_with_a_different_graph_is_refused_naming_the_difference() {
    let topology = review_graph(Arc::default(), None);
    let mut g = GraphBuilder::new();
    let noop = || node_fn(|_ctx: Context| async move { Ok::<_, NodeError>(json!({})) });
    let (draft, review) = (g.add("draft", noop()), g.add("review", noop()));
    g.connect(draft >> review);
    let other = g.start(draft).build().unwrap();
    runtime().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let exec = SequentialExecutor::new();
        exec.run_durable(
            &topology,
            Task::new(json!({})),
            options(Arc::clone(&store), "r"),
        )
        .await
        .unwrap();
        let err = exec
            .resume(&other, options(store, "r"), Some(json!(1)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.store_error(),
                Some(DurableError::FingerprintMismatch { .. })
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("node `publish` is missing"),
            "{err}"
        );
    });
}

/// A self-loop that runs `steps` times, each step adding a new state key.
fn growing(steps: u64) -> Topology {
    let mut g = GraphBuilder::new();
    let step = g.add(
        "step",
        node_fn(|ctx: Context| async move {
            let n = ctx.inputs().content["n"].as_u64().unwrap_or(0);
            ctx.state().set(format!("key{n}"), json!(format!("value number {n}")));
            Ok::<_, NodeError>(json!({ "n": n + 1, "more": n + 1 < ctx.state().get("steps").and_then(|v| v.as_u64()).unwrap_or(0) }))
        }),
    );
    g.connect(step.on("more", true) >> step);
    g.initial_state(serde_json::Map::from_iter([(
        "steps".to_owned(),
        json!(steps),
    )]));
    g.step_limit(steps + 1);
    g.start(step).build().unwrap()
}

#[test]
fn storage_grows_linearly_for_a_1000_step_run_whose_state_grows() {
    runtime().block_on(async {
        let mut bytes = Vec::new();
        for steps in [500, 1000] {
            let topology = growing(steps);
            let store = Arc::new(MemoryStore::new());
            let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
            let r = SequentialExecutor::new()
                .run_durable(
                    &topology,
                    Task::new(json!({ "n": 0 })),
                    DurableOptions::new(dyn_store, "g"),
                )
                .await
                .unwrap();
            assert_eq!(r.metadata.steps, steps);
            assert_eq!(r.state.len() as u64, steps + 1);
            bytes.push(store.stored_bytes(&"g".into()).await.unwrap());
        }
        // Twice the steps, about twice the bytes (whole-state checkpoints would give four
        // times).
        let ratio = bytes[1] as f64 / bytes[0] as f64;
        assert!((1.8..2.3).contains(&ratio), "{bytes:?}: ratio {ratio}");
    });
}

// ---- random graphs: the generators of crates/spark-adk/tests/mode_equivalence.rs ----

#[derive(Clone, Debug)]
enum Cond {
    Always,
    Equals(i64),
    Fallback,
    Expr(i64, i64),
}

#[derive(Clone, Debug)]
struct Spec {
    nodes: usize,
    edges: Vec<(usize, usize, Cond)>,
    input: i64,
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        3 => Just(Cond::Always),
        3 => (0..3i64).prop_map(Cond::Equals),
        1 => Just(Cond::Fallback),
        2 => (0..1000i64, 0..3i64).prop_map(|(t, v)| Cond::Expr(t, v)),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (3..=7usize)
        .prop_flat_map(|nodes| {
            let spine: Vec<_> = (1..nodes).map(|to| (0..to, Just(to), cond())).collect();
            let extra = (0..nodes, 0..nodes, cond())
                .prop_filter_map("no self edge", |(a, b, c)| {
                    (a != b).then(|| (a.min(b), a.max(b), c))
                });
            (
                Just(nodes),
                spine,
                prop::collection::vec(extra, 0..=6),
                0..1000i64,
            )
        })
        .prop_map(|(nodes, spine, extra, input)| Spec {
            nodes,
            edges: spine.into_iter().chain(extra).collect(),
            input,
        })
}

/// Node `i`: deterministic; it also counts its activations in the state and records tokens.
fn node(i: usize) -> impl spark_adk_core::Node {
    node_fn(move |ctx: Context| async move {
        let h = ctx.inputs().content["h"].as_i64().unwrap_or(0);
        let next = (h * 31 + 7 * (i as i64 + 1)) % 1009;
        ctx.state().update_with(&format!("n{i}"), |v| {
            *v = json!(v.as_i64().unwrap_or(0) + 1);
        });
        ctx.record_tokens(i as u64 + 1);
        Ok::<_, NodeError>(json!({ "h": next, "k": next % 3, "by": i }))
    })
}

fn build(spec: &Spec) -> Topology {
    let mut g = GraphBuilder::new();
    let refs: Vec<_> = (0..spec.nodes)
        .map(|i| g.add(format!("n{i}"), node(i)))
        .collect();
    for (from, to, c) in &spec.edges {
        let (from, to) = (refs[*from], refs[*to]);
        match c {
            Cond::Always => g.connect(from >> to),
            Cond::Equals(v) => g.connect(from.on("k", *v) >> to),
            Cond::Fallback => g.connect(from.otherwise() >> to),
            Cond::Expr(t, v) => {
                g.connect(from.when(&format!("$.outputs.h >= {t} and $.outputs.k != {v}")) >> to)
            }
        };
    }
    g.start(refs[0]).build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_graphs_crashed_at_any_record_resume_to_the_uninterrupted_end(spec in spec()) {
        let topology = build(&spec);
        let task = || Task::new(json!({ "h": spec.input }));
        runtime().block_on(async {
            let plain = SequentialExecutor::new().run(&topology, task()).await.unwrap();
            // One record per activation, then the stop record.
            for k in 1..=plain.metadata.steps + 1 {
                let resumed = crash_at_and_resume(&topology, task(), k).await;
                assert_eq!(summary(&resumed), summary(&plain), "crash at record {k}");
            }
        });
    }
}

#[test]
fn a_resumer_whose_lease_expired_is_fenced_out_by_the_log_head() {
    // `gated` runs once per resumer and waits for the test's permit.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut g = GraphBuilder::new();
    let first = g.add(
        "first",
        node_fn(|_ctx: Context| async move { Ok::<_, NodeError>(json!({ "n": 1 })) }),
    );
    let gated = g.add("gated", {
        let (gate, entered) = (Arc::clone(&gate), Arc::clone(&entered));
        node_fn(move |_ctx: Context| {
            let (gate, entered) = (Arc::clone(&gate), Arc::clone(&entered));
            async move {
                entered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _permit = gate.acquire().await.unwrap();
                Ok::<_, NodeError>(json!({ "done": true }))
            }
        })
    });
    g.connect(first >> gated);
    let topology = Arc::new(g.start(first).build().unwrap());
    runtime().block_on(async {
        // The run stops at its first record: `gated` never ran.
        let kept = Arc::new(MemoryStore::new());
        let failing: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&kept), 1));
        SequentialExecutor::new()
            .run_durable(&topology, Task::new(json!({})), options(failing, "r"))
            .await
            .unwrap_err();
        let short = |owner: &str| {
            let mut o = options(Arc::clone(&kept) as Arc<dyn Store>, "r").with_owner(owner);
            o.lease_ttl = std::time::Duration::from_millis(1);
            o
        };
        let spawn = |o: DurableOptions| {
            let topology = Arc::clone(&topology);
            tokio::spawn(async move { SequentialExecutor::new().resume(&topology, o, None).await })
        };
        let a = spawn(short("a"));
        while entered.load(std::sync::atomic::Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        std::thread::sleep(std::time::Duration::from_millis(5)); // a's lease expires
                                                                 // b holds its lease as a run normally does (a 1 ms lease could lapse before its writer
                                                                 // renews it).
        let b = spawn(options(Arc::clone(&kept) as Arc<dyn Store>, "r").with_owner("b"));
        while entered.load(std::sync::atomic::Ordering::SeqCst) < 2 && !b.is_finished() {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert!(a.as_ref().is_err_and(DurableRunError::is_conflict), "{a:?}");
        let b = b.unwrap();
        assert_eq!(b.content()["done"], true);
        assert_eq!(b.metadata.steps, 2);
        assert_eq!(entered.load(std::sync::atomic::Ordering::SeqCst), 2);
    });
}

#[test]
fn a_durable_run_longer_than_its_lease_keeps_the_lease_and_a_second_resumer_out() {
    // `slow` sleeps three lease durations; meanwhile another owner tries to take the run.
    let mut g = GraphBuilder::new();
    let slow = g.add(
        "slow",
        node_fn(|_ctx: Context| async move {
            tokio::time::sleep(std::time::Duration::from_millis(1800)).await;
            Ok::<_, NodeError>(json!({ "done": true }))
        }),
    );
    let topology = Arc::new(g.start(slow).build().unwrap());
    runtime().block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mut opts = options(Arc::clone(&store), "long").with_owner("runner");
        opts.lease_ttl = std::time::Duration::from_millis(600);
        let run = {
            let topology = Arc::clone(&topology);
            tokio::spawn(async move {
                SequentialExecutor::new()
                    .run_durable(&topology, Task::new(json!({})), opts)
                    .await
            })
        };
        let mut refused = 0;
        for _ in 0..5 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if run.is_finished() {
                break;
            }
            let other = store
                .acquire_lease(
                    &"long".into(),
                    "intruder",
                    std::time::Duration::from_secs(60),
                )
                .await;
            assert!(
                other.as_ref().is_err_and(DurableError::is_conflict),
                "{other:?}"
            );
            refused += 1;
        }
        assert!(refused >= 3, "checked {refused} times");
        let done = run.await.unwrap().unwrap();
        assert_eq!(done.content()["done"], true);
    });
}

/// The events of one run, without times: kind and node (and stop reason or error).
fn event_trace(rx: &mut tokio::sync::broadcast::Receiver<spark_adk_core::Event>) -> Vec<String> {
    use spark_adk_core::EventKind;
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(match e.kind {
            EventKind::GraphStarted { task_type } => format!("started {task_type:?}"),
            EventKind::NodeStarted { node } => format!("node started {node}"),
            EventKind::NodeFinished { node, .. } => format!("node finished {node}"),
            EventKind::NodeFailed { node, error } => format!("node failed {node}: {error}"),
            EventKind::GraphFinished { stop_reason, error } => {
                format!("finished {stop_reason:?} {error:?}")
            }
            other => format!("{other:?}"),
        });
    }
    out
}

#[test]
fn a_durable_run_publishes_the_events_of_the_plain_run() {
    let topology = fan_graph();
    runtime().block_on(async {
        let mut rx = topology.events().subscribe();
        SequentialExecutor::new()
            .run(&topology, Task::new(json!({ "n": 1 })))
            .await
            .unwrap();
        let plain = event_trace(&mut rx);
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        SequentialExecutor::new()
            .run_durable(
                &topology,
                Task::new(json!({ "n": 1 })),
                options(store, "ev"),
            )
            .await
            .unwrap();
        let durable = event_trace(&mut rx);
        assert_eq!(plain.len(), 12, "{plain:?}");
        assert_eq!(durable, plain);
    });
}

#[test]
fn an_interrupted_durable_run_publishes_the_node_s_question_and_its_stop() {
    let topology = review_graph(Arc::default(), None);
    runtime().block_on(async {
        let mut rx = topology.events().subscribe();
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        SequentialExecutor::new()
            .run_durable(&topology, Task::new(json!({})), options(store, "q"))
            .await
            .unwrap();
        let trace = event_trace(&mut rx);
        assert_eq!(trace.len(), 6, "{trace:?}");
        assert_eq!(trace[3], "node started review");
        assert!(trace[4].starts_with("node failed review: "), "{trace:?}");
        assert_eq!(trace[5], "finished Some(Interrupted) None");
    });
}
