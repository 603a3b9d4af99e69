//! What streaming, a retry policy and the parallel map cost: the `cost_*` information rows of
//! `benches/targets.toml` (issue 14, "Tests and figures"). Each row is a criterion group whose
//! first bench is the feature and whose second is the same work without it, measured in the
//! same run; `cargo xtask bench` reports their ratio without judging it.
//!
//! - `cost_stream_std_flow_3`: `graph.stream(Task::new(input))` consumed to its last item
//!   (`streamed`) against `graph.run(Task::new(input))` (`plain`), the 3-node chain of
//!   `std_flow_3`, on a current-thread runtime (the stream's run works in a task of its own).
//! - `cost_stream_lr_flow_3`: the same with `Task::long_running(input)` to quiescence, on the
//!   multi-thread runtime of the `lr_*` rows.
//! - `cost_retry_std_flow_3`: the 3-node chain whose every node is
//!   `Inc.with_retry(RetryPolicy::exponential(100 ms))`, a policy that never retries since `Inc`
//!   never fails (`retry`), against the bare chain (`bare`); current-thread runtime.
//! - `cost_retry_per_node`: the same over the 1,000-node chain of `std_per_node`, per node
//!   (`Throughput::Elements(1000)`; the row divides by 1,000).
//! - `cost_map_20x10ms`: a [`MapNode`] over 20 items, each a node sleeping 10 ms on tokio's
//!   real timer, at most 4 at once (`map_c4`), against one node looping over the same 20 items
//!   one after the other (`loop`). 10 samples, flat sampling: a few seconds per bench, and
//!   `--smoke` (criterion's `--test`) runs each once (about 50 ms and 200 ms).
//! - `cost_durable_lr_per_message`: 10,000 messages sent through the handle into the gated
//!   3-node pipeline of `lr_per_message`, as a durable run (`graph.spawn_durable`, `Async`
//!   durability: one accepted record per send, one activation record per activation) on the
//!   in-memory store (`memory`) and on SQLite in a temporary file (`sqlite`), against the same
//!   run without a store (`plain`). Time / message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, Criterion, SamplingMode, Throughput};
use futures_util::StreamExt;
use spark_adk::prelude::*;
use spark_adk::{Durability, DurableOptions, MemoryStore, SqliteStore, Store};
use spark_adk_benches::{
    chain, chain_of, count_of, current_thread_runtime, gated_chain, input, multi_thread_runtime,
    GateRelease, Inc, EPOCH, PER_NODE_CHAIN,
};
use tokio::runtime::Runtime;

/// Items of the map rows.
const ITEMS: usize = 20;

/// How long each item's node works.
const ITEM_WORK: Duration = Duration::from_millis(10);

/// Items of a map run at once.
const MAP_CONCURRENCY: usize = 4;

/// Consumes a streamed run to its last item and returns the run's final `count`.
async fn stream_to_end(graph: &Graph, task: Task) -> u64 {
    let mut events = graph.stream(task);
    let mut count = None;
    while let Some(event) = events.next().await {
        if let StreamEvent::Finished(result) = event {
            count = Some(count_of(
                result.expect("the streamed run succeeds").content(),
            ));
        }
    }
    count.expect("a streamed run ends with its result")
}

/// `cost_stream_<id>`: streamed against plain, `task` made fresh for each run.
fn stream_row(c: &mut Criterion, rt: &Runtime, id: &str, task: fn() -> Task) {
    let graph = chain(3).expect("the 3-node chain builds");
    assert_eq!(rt.block_on(stream_to_end(&graph, task())), 3);
    let plain = rt
        .block_on(graph.run(task()))
        .expect("the plain run succeeds");
    assert_eq!(count_of(plain.content()), 3);

    let mut group = c.benchmark_group(id);
    group.bench_function("streamed", |b| {
        b.to_async(rt)
            .iter(|| async { black_box(stream_to_end(&graph, task()).await) });
    });
    group.bench_function("plain", |b| {
        b.to_async(rt)
            .iter(|| async { black_box(graph.run(task()).await.expect("the plain run succeeds")) });
    });
    group.finish();
}

/// `cost_retry_<id>`: a chain of `n` retry-wrapped [`Inc`] nodes against the bare chain.
fn retry_row(c: &mut Criterion, rt: &Runtime, id: &str, n: usize) {
    let policy = RetryPolicy::exponential(Duration::from_millis(100));
    policy.validate().expect("the retry policy is valid");
    let graphs = [
        (
            "retry",
            chain_of(n, |_| Inc.with_retry(policy.clone())).expect("the retried chain builds"),
        ),
        ("bare", chain(n).expect("the bare chain builds")),
    ];
    let message = NodeMessage::from(input());
    let mut group = c.benchmark_group(id);
    if n > 3 {
        group.throughput(Throughput::Elements(n as u64));
    }
    for (name, graph) in &graphs {
        let first = rt
            .block_on(graph.run(Task::new(message.clone())))
            .expect("the chain runs");
        assert_eq!(count_of(first.content()), n as u64, "{name}");
        group.bench_function(*name, |b| {
            b.to_async(rt).iter(|| async {
                black_box(
                    graph
                        .run(Task::new(message.clone()))
                        .await
                        .expect("the chain runs"),
                )
            });
        });
    }
    group.finish();
}

/// The node each map item runs: sleeps [`ITEM_WORK`], returns its item.
fn item_node() -> impl Node {
    node_fn(|ctx| async move {
        tokio::time::sleep(ITEM_WORK).await;
        Ok::<_, NodeError>(ctx.inputs().content.clone())
    })
}

/// The sequential loop: one node sleeping [`ITEM_WORK`] per item, one item after the other.
fn loop_node() -> impl Node {
    node_fn(|ctx| async move {
        let items = ctx.inputs().content["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            tokio::time::sleep(ITEM_WORK).await;
            results.push(item);
        }
        Ok::<_, NodeError>(json!({ "results": results }))
    })
}

/// `cost_map_20x10ms`: the map at concurrency 4 against the sequential loop.
fn map_row(c: &mut Criterion, rt: &Runtime) {
    let mut g = Graph::builder();
    let node = g.add(
        "map",
        MapNode::over_node(item_node())
            .items_at("items")
            .concurrency(MAP_CONCURRENCY),
    );
    let map = g.start(node).build().expect("the map graph builds");
    let mut g = Graph::builder();
    let node = g.add("loop", loop_node());
    let sequential = g.start(node).build().expect("the loop graph builds");
    let items: Vec<u64> = (0..ITEMS as u64).collect();
    let message = NodeMessage::from(json!({ "items": items }));
    let mut group = c.benchmark_group("cost_map_20x10ms");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, graph) in [("map_c4", &map), ("loop", &sequential)] {
        let first = rt
            .block_on(graph.run(Task::new(message.clone())))
            .expect("the map graph runs");
        assert_eq!(first.content()["results"], json!(items), "{name}");
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| async {
                black_box(
                    graph
                        .run(Task::new(message.clone()))
                        .await
                        .expect("the map graph runs"),
                )
            });
        });
    }
    group.finish();
}

/// Messages per iteration of `cost_durable_lr_per_message`.
const DURABLE_MESSAGES: u64 = 10_000;

/// Where a `cost_durable_lr_per_message` pass logs.
#[derive(Clone, Copy)]
enum Log {
    Plain,
    Memory,
    Sqlite,
}

/// One pass: spawn (durable or not), send the messages into `n0`, release the gate, wait.
async fn durable_pass(
    graph: &Graph,
    release: &GateRelease,
    epoch: u64,
    log: Log,
    dir: &std::path::Path,
) -> RunResult {
    let task = Task::long_running(json!({ EPOCH: epoch })).with_quiescence(true);
    let store: Option<std::sync::Arc<dyn Store>> = match log {
        Log::Plain => None,
        Log::Memory => Some(std::sync::Arc::new(MemoryStore::new())),
        Log::Sqlite => Some(std::sync::Arc::new(
            SqliteStore::open(dir.join(format!("{epoch}.sqlite"))).expect("the store opens"),
        )),
    };
    let handle = match store {
        None => graph.spawn(task).expect("the run spawns"),
        Some(store) => graph
            .spawn_durable(
                task,
                DurableOptions::new(store, format!("run-{epoch}"))
                    .with_durability(Durability::Async),
            )
            .await
            .expect("the durable run spawns"),
    };
    let message = NodeMessage::from(input());
    for _ in 0..DURABLE_MESSAGES {
        handle
            .send("n0", message.clone())
            .await
            .expect("the run accepts every message");
    }
    release.release(epoch);
    handle.wait().await.expect("the run completes")
}

fn durable_row(c: &mut Criterion, rt: &Runtime) {
    let (graph, release) = gated_chain(3).expect("the bench graph builds");
    let dir = std::env::temp_dir().join(format!("spark-bench-durable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let epochs = std::sync::atomic::AtomicU64::new(1);
    let checked = rt.block_on(durable_pass(&graph, &release, 1, Log::Sqlite, &dir));
    assert_eq!(checked.metadata.processed, 3 * DURABLE_MESSAGES + 1);
    let mut group = c.benchmark_group("cost_durable_lr_per_message");
    group.throughput(Throughput::Elements(DURABLE_MESSAGES));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for (name, log) in [
        ("sqlite", Log::Sqlite),
        ("memory", Log::Memory),
        ("plain", Log::Plain),
    ] {
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| {
                let epoch = epochs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let (graph, release, dir) = (&graph, &release, &dir);
                async move { black_box(durable_pass(graph, release, epoch, log, dir).await) }
            });
        });
    }
    group.finish();
    std::fs::remove_dir_all(&dir).ok();
}

fn costs(c: &mut Criterion) {
    let ct = current_thread_runtime().expect("a current-thread runtime");
    let mt = multi_thread_runtime().expect("a multi-thread runtime");
    stream_row(c, &ct, "cost_stream_std_flow_3", || Task::new(input()));
    stream_row(c, &mt, "cost_stream_lr_flow_3", || {
        Task::long_running(input())
    });
    retry_row(c, &ct, "cost_retry_std_flow_3", 3);
    retry_row(c, &ct, "cost_retry_per_node", PER_NODE_CHAIN);
    map_row(c, &ct);
    durable_row(c, &mt);
}

mod group {
    // `criterion_group!` defines an undocumented `pub fn`.
    #![allow(missing_docs)]
    use criterion::criterion_group;

    criterion_group!(benches, super::costs);
}

criterion_main!(group::benches);
