//! The transport conformance suite: the long-running scenarios, written once, run against the
//! in-memory runtime (`LongRunningExecutor`) and against NATS with 1, 2 and 3 processes (tokio
//! tasks with their own connections; the real multi-process test is in `pipeline.rs`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{bounded, count_up, process, unique_run, Cleanup};
use serde_json::json;
use spark_adk_core::{node_fn, Budget, BudgetKind, NodeError, RunResult, StopReason, Task};
use spark_adk_edges::{GraphBuilder, Topology};
use spark_adk_mailbox::LongRunningExecutor;
use spark_adk_nats::Serve;

/// Where a scenario runs.
#[derive(Clone, Copy, Debug)]
enum Runtime {
    InMemory,
    /// NATS with this many processes; node i is served by process i % n (the coordinator is
    /// process 0).
    Nats(usize),
}

const RUNTIMES: [Runtime; 4] = [
    Runtime::InMemory,
    Runtime::Nats(1),
    Runtime::Nats(2),
    Runtime::Nats(3),
];

impl Runtime {
    /// Runs `task` to its end; also returns how many workers the run had.
    async fn run(self, topology: &Arc<Topology>, task: Task) -> (RunResult, u64) {
        match self {
            Runtime::InMemory => {
                let result = LongRunningExecutor::new()
                    .run(Arc::clone(topology), task)
                    .await
                    .unwrap();
                (result, topology.len() as u64)
            }
            Runtime::Nats(n) => {
                let run = unique_run("conf");
                let _cleanup = Cleanup(run.clone());
                let names: Vec<String> = topology.names().iter().map(|s| s.to_string()).collect();
                let serve_of = |p: usize| {
                    Serve::nodes(
                        names
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| i % n == p)
                            .map(|(_, s)| s.clone()),
                    )
                };
                let mut workers = Vec::new();
                for p in 1..n {
                    let g = process(topology, &run).await;
                    let serve = serve_of(p);
                    workers.push(tokio::spawn(async move { g.serve(serve).await }));
                }
                let coordinator = process(topology, &run).await;
                let result = coordinator.run(task, serve_of(0)).await.unwrap();
                for w in workers {
                    w.await.unwrap().unwrap();
                }
                (result, topology.len() as u64)
            }
        }
    }
}

/// A deterministic pseudo-random source (no clock, no global state).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// A random acyclic graph of deterministic, stateless nodes: edges only go from a lower to a
/// higher index, some conditional on the output's parity.
fn random_dag(seed: u64) -> Arc<Topology> {
    let mut rng = Lcg(seed);
    let n = 2 + rng.next(5) as usize;
    let mut g = GraphBuilder::new();
    let nodes: Vec<_> = (0..n)
        .map(|i| {
            g.add(
                format!("n{i}"),
                node_fn(move |ctx| async move {
                    let v = ctx.inputs().content["v"].as_u64().unwrap_or(1);
                    Ok::<_, NodeError>(json!({ "v": (v * 31 + i as u64 * 7) % 1000, "by": i }))
                }),
            )
        })
        .collect();
    for i in 0..n {
        for j in i + 1..n {
            match rng.next(4) {
                0 => {
                    g.connect(nodes[i] >> nodes[j]);
                }
                1 => {
                    g.connect(nodes[i].when("$.outputs.v > 500") >> nodes[j]);
                }
                _ => {}
            }
        }
    }
    Arc::new(g.start(nodes[0]).build().unwrap())
}

fn sink_multiset(result: &RunResult) -> Vec<String> {
    let mut sinks: Vec<String> = result
        .sink_outputs()
        .iter()
        .map(|s| format!("{}:{}", s.node, s.message.content))
        .collect();
    sinks.sort();
    sinks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_acyclic_graphs_give_the_same_sink_multiset_and_counts_on_every_runtime() {
    bounded(240, async {
        for seed in [1_u64, 7, 42, 1234] {
            let topology = random_dag(seed);
            let task = || Task::long_running(json!({ "v": seed }));
            let (reference, _) = Runtime::InMemory.run(&topology, task()).await;
            for runtime in RUNTIMES {
                let (result, _) = runtime.run(&topology, task()).await;
                let m = &result.metadata;
                assert_eq!(
                    sink_multiset(&result),
                    sink_multiset(&reference),
                    "seed {seed} on {runtime:?}"
                );
                assert_eq!(m.stop_reason, StopReason::Completed, "{runtime:?}");
                assert_eq!(
                    m.accepted, reference.metadata.accepted,
                    "seed {seed} on {runtime:?}"
                );
                assert_eq!(
                    m.per_node, reference.metadata.per_node,
                    "seed {seed} on {runtime:?}"
                );
                assert_eq!(m.unprocessed, 0, "{runtime:?}");
                assert_eq!(m.accepted, m.processed + m.unprocessed, "{runtime:?}");
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sender_to_one_receiver_keeps_send_order_on_every_runtime() {
    bounded(120, async {
        for runtime in RUNTIMES {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let mut g = GraphBuilder::new();
            let gen = g.add("gen", count_up());
            let s = Arc::clone(&seen);
            let sink = g.add(
                "sink",
                node_fn(move |ctx| {
                    let s = Arc::clone(&s);
                    async move {
                        if !ctx.is_shutdown() {
                            s.lock()
                                .unwrap()
                                .push(ctx.inputs().content["n"].as_u64().unwrap_or(0));
                        }
                        Ok::<_, NodeError>(json!({}))
                    }
                }),
            );
            g.connect(gen.when("$.outputs.n < 25") >> gen);
            g.connect(gen >> sink);
            let topology = Arc::new(g.start(gen).build().unwrap());
            let (result, _) = runtime
                .run(&topology, Task::long_running(json!({ "n": 0 })))
                .await;
            assert_eq!(
                *seen.lock().unwrap(),
                (1..=25).collect::<Vec<_>>(),
                "{runtime:?}"
            );
            assert_eq!(
                result.metadata.processed_by("sink"),
                Some(25),
                "{runtime:?}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capacity_one_pipeline_loses_nothing_under_backpressure_on_every_runtime() {
    bounded(120, async {
        for runtime in RUNTIMES {
            let mut g = GraphBuilder::new();
            let gen = g.add("gen", count_up());
            let slow = g.add(
                "slow",
                node_fn(|ctx| async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    Ok::<_, NodeError>(json!({ "got": ctx.inputs().content["n"].clone() }))
                }),
            );
            g.connect(gen.when("$.outputs.n < 20") >> gen);
            g.connect(gen >> slow);
            g.mailbox_capacity(1);
            let topology = Arc::new(g.start(gen).build().unwrap());
            let (result, _) = runtime
                .run(&topology, Task::long_running(json!({ "n": 0 })))
                .await;
            let m = &result.metadata;
            assert_eq!(m.processed_by("slow"), Some(20), "{runtime:?}");
            assert_eq!((m.unprocessed, m.accepted), (0, m.processed), "{runtime:?}");
            assert_eq!(m.stop_reason, StopReason::Completed, "{runtime:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_budget_ends_a_cycle_gracefully_with_one_shutdown_delivery_per_worker_on_every_runtime(
) {
    bounded(120, async {
        for runtime in RUNTIMES {
            let shutdowns = Arc::new(AtomicU64::new(0));
            let mut g = GraphBuilder::new();
            let make = |s: Arc<AtomicU64>| {
                node_fn(move |ctx| {
                    let s = Arc::clone(&s);
                    async move {
                        if ctx.is_shutdown() {
                            s.fetch_add(1, Ordering::SeqCst);
                        } else {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        Ok::<_, NodeError>(json!({}))
                    }
                })
            };
            let a = g.add("a", make(Arc::clone(&shutdowns)));
            let b = g.add("b", make(Arc::clone(&shutdowns)));
            let c = g.add("c", make(Arc::clone(&shutdowns)));
            g.connect(a >> b >> c >> a);
            let topology = Arc::new(g.start(a).build().unwrap());
            let task = Task::long_running(json!({})).with_budget(Budget::seconds(0.5).unwrap());
            let (result, workers) = runtime.run(&topology, task).await;
            let m = &result.metadata;
            assert_eq!(
                m.stop_reason,
                StopReason::Budget(BudgetKind::Time),
                "{runtime:?}"
            );
            assert!(m.processed > 3, "{runtime:?}");
            assert_eq!(m.accepted, m.processed + m.unprocessed, "{runtime:?}");
            assert_eq!(shutdowns.load(Ordering::SeqCst), workers, "{runtime:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_budget_ends_a_cycle_within_one_activation_per_worker_on_every_runtime() {
    bounded(120, async {
        for runtime in RUNTIMES {
            let mut g = GraphBuilder::new();
            let spend = || {
                node_fn(|ctx| async move {
                    if !ctx.is_shutdown() {
                        ctx.record_tokens(10);
                    }
                    Ok::<_, NodeError>(json!({}))
                })
            };
            let a = g.add("a", spend());
            let b = g.add("b", spend());
            let c = g.add("c", spend());
            g.connect(a >> b >> c >> a);
            let topology = Arc::new(g.start(a).build().unwrap());
            let task = Task::long_running(json!({})).with_budget(Budget::tokens(150).unwrap());
            let (result, workers) = runtime.run(&topology, task).await;
            let m = &result.metadata;
            assert_eq!(
                m.stop_reason,
                StopReason::Budget(BudgetKind::Tokens),
                "{runtime:?}"
            );
            assert!(
                m.tokens_used >= 150 - 10 * workers,
                "{runtime:?}: {}",
                m.tokens_used
            );
            assert!(
                m.tokens_used <= 150 + 10 * workers,
                "{runtime:?}: {}",
                m.tokens_used
            );
            assert_eq!(m.tokens_used, 10 * m.processed, "{runtime:?}");
            assert_eq!(m.accepted, m.processed + m.unprocessed, "{runtime:?}");
        }
    })
    .await;
}
