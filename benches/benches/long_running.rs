//! Long-running latency and throughput benches: the `lr_*` rows of the table in
//! `benches/targets.toml`.
//!
//! The rows run on tokio's **multi-thread** runtime with one worker per core (what
//! `#[tokio::main]` gives users); each bench also runs on the **current-thread** runtime under
//! `<id>_ct`, reported beside the row without a target. Both runtimes are built once, outside
//! the timed loops, and each graph is checked once for the expected result before timing.
//!
//! - `lr_startup`: a 10-node chain whose first node is a [`FirstCall`], which records the
//!   instant its first `process` call of the run began. Each iteration takes `Instant::now()`
//!   just before `graph.run(Task::long_running(..))`, awaits the run (to quiescence), then takes
//!   the node's stamp; only `stamp - start` is counted (criterion's `iter_custom`). So the
//!   figure is "run start to the first `process` call": creating the mailboxes, spawning the
//!   10 workers and the first worker picking up the task input; the rest of the run is not
//!   timed. Stamping inside the node, rather than waking the bench task through a channel,
//!   keeps a thread wake-up of the measuring task out of the figure.
//! - `lr_flow_3`, `lr_pipeline_10`, `lr_branching`: `graph.run(Task::long_running(input))` to
//!   quiescence, one message, the same shapes as the `std_*` benches.
//! - `lr_per_message`: 100,000 messages through the 3-node pipeline `n0 >> n1 >> n2`. Each
//!   iteration spawns the run with `LongRunningExecutor::new().stop_on_quiescence(true)`,
//!   sends the messages into `n0` through the handle (`send` waits while the mailbox is full),
//!   then awaits `wait()`: the run ends when the last message left `n2`. The task input goes to
//!   a fourth node, a [`spark_adk_benches::Gate`] with no edges, which holds it until the last send:
//!   otherwise the run could reach quiescence between two sends and stop early. A criterion
//!   group with `Throughput::Elements(100_000)`, 10 samples of one iteration each (flat
//!   sampling): its estimates live under `lr_per_message/pipeline_3`, and `cargo xtask bench`
//!   divides the median by 100,000.
//! - `lr_per_message_floor`: the floor beside it (no target): the same 100,000 messages and
//!   node work through three tasks joined by bare tokio channels of the default mailbox
//!   capacity ([`spark_adk_benches::floor`]), the outputs kept as a result keeps its sink outputs.
//! - `lr_per_message_work`: the other end (no target): the same node work and kept outputs in a
//!   plain loop on one thread, no task or channel. Runs first, on a fresh heap.
//! - `lr_per_message_last1`: `lr_per_message` with `SinkRetention::Last(1)` (no target): what
//!   keeping the 100,000 sink outputs for the result costs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_main, Criterion, SamplingMode, Throughput};
use spark_adk::prelude::*;
use spark_adk::LongRunningExecutor;
use spark_adk::{SinkRetention, DEFAULT_MAILBOX_CAPACITY};
use spark_adk_benches::floor::{bare_pipeline, work_only};
use spark_adk_benches::{
    chain_with_first, count_of, current_thread_runtime, gated_chain, input, multi_thread_runtime,
    FirstCall, GateRelease, Shape, EPOCH,
};
use tokio::runtime::Runtime;

/// Messages per iteration of `lr_per_message` (the row's `divide_by`).
const MESSAGES: u64 = 100_000;

/// Nodes of the `lr_per_message` pipeline.
const PIPELINE: usize = 3;

/// The runtimes: the table's (multi-thread) and the one reported beside it (`_ct`).
fn runtimes() -> [(&'static str, Runtime); 2] {
    [
        ("", multi_thread_runtime().expect("a multi-thread runtime")),
        (
            "_ct",
            current_thread_runtime().expect("a current-thread runtime"),
        ),
    ]
}

fn lr_startup(c: &mut Criterion, rt: &Runtime, id: &str) {
    let first = FirstCall::new();
    let graph = chain_with_first(first.clone(), 10).expect("the bench graph builds");
    let message = NodeMessage::from(input());
    let result = rt
        .block_on(graph.run(Task::long_running(message.clone())))
        .expect("the bench graph runs");
    assert_eq!(count_of(result.content()), 10);
    assert!(first.take().is_some(), "the first node stamps its call");

    c.bench_function(id, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (graph, first, message) = (&graph, &first, &message);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let result = graph.run(Task::long_running(message.clone())).await;
                    let stamp = first.take().expect("the first node ran");
                    total += stamp.saturating_duration_since(started);
                    black_box(result.expect("the bench graph runs"));
                }
                total
            }
        });
    });
}

fn lr_one_message(c: &mut Criterion, rt: &Runtime, id: &str, shape: Shape) {
    let graph = shape.build().expect("the bench graph builds");
    let message = NodeMessage::from(input());
    let first = rt
        .block_on(graph.run(Task::long_running(message.clone())))
        .expect("the bench graph runs");
    assert_eq!(
        count_of(first.content()),
        shape.expected_count(),
        "{shape:?}"
    );
    assert_eq!(first.metadata.unprocessed, 0);
    c.bench_function(id, |b| {
        b.to_async(rt).iter(|| async {
            let result = graph.run(Task::long_running(message.clone())).await;
            black_box(result.expect("the bench graph runs"))
        });
    });
}

/// One pass of `lr_per_message`: spawn with `executor`, send [`MESSAGES`] into `n0`, release
/// the gate, wait.
async fn per_message_pass(
    executor: LongRunningExecutor,
    graph: &Graph,
    release: &GateRelease,
    epoch: u64,
    message: &NodeMessage,
) -> RunResult {
    let handle = executor
        .stop_on_quiescence(true)
        .spawn(
            Arc::clone(graph.topology()),
            Task::long_running(json!({ EPOCH: epoch })),
        )
        .expect("the run spawns");
    for _ in 0..MESSAGES {
        handle
            .send("n0", message.clone())
            .await
            .expect("the run accepts every message");
    }
    release.release(epoch);
    handle.wait().await.expect("the run completes")
}

fn lr_per_message(c: &mut Criterion, rt: &Runtime, id: &str, executor: LongRunningExecutor) {
    let (graph, release) = gated_chain(PIPELINE).expect("the bench graph builds");
    let message = NodeMessage::from(input());
    let epochs = AtomicU64::new(1);
    let result = rt.block_on(per_message_pass(executor, &graph, &release, 1, &message));
    let counts = result.metadata.counts();
    assert_eq!(counts.processed, PIPELINE as u64 * MESSAGES + 1);
    assert_eq!(counts.unprocessed, 0);
    assert_eq!(result.metadata.processed_by("n2"), Some(MESSAGES));

    let mut group = c.benchmark_group(id);
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function(format!("pipeline_{PIPELINE}"), |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (graph, release, message, epochs) = (&graph, &release, &message, &epochs);
            async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let epoch = epochs.fetch_add(1, Ordering::Relaxed) + 1;
                    black_box(per_message_pass(executor, graph, release, epoch, message).await);
                }
                started.elapsed()
            }
        });
    });
    group.finish();
}

/// `lr_per_message_floor`: the same messages and node work through bare tokio channels
/// ([`spark_adk_benches::floor`]), reported beside `lr_per_message`.
fn lr_per_message_floor(c: &mut Criterion, rt: &Runtime, id: &str) {
    let message = NodeMessage::from(input());
    let kept = rt
        .block_on(bare_pipeline(
            MESSAGES,
            PIPELINE,
            DEFAULT_MAILBOX_CAPACITY,
            &message,
        ))
        .expect("the floor pipeline runs");
    assert_eq!(kept.len() as u64, MESSAGES);

    let mut group = c.benchmark_group(id);
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function(format!("pipeline_{PIPELINE}"), |b| {
        b.to_async(rt).iter(|| async {
            black_box(
                bare_pipeline(MESSAGES, PIPELINE, DEFAULT_MAILBOX_CAPACITY, &message)
                    .await
                    .expect("the floor pipeline runs"),
            )
        });
    });
    group.finish();
}

/// `lr_per_message_work`: the node work alone, one thread, no tasks
/// ([`spark_adk_benches::floor::work_only`]), reported beside `lr_per_message`.
fn lr_per_message_work(c: &mut Criterion) {
    let message = NodeMessage::from(input());
    let mut group = c.benchmark_group("lr_per_message_work");
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function(format!("pipeline_{PIPELINE}"), |b| {
        b.iter(|| black_box(work_only(MESSAGES, PIPELINE, &message)));
    });
    group.finish();
}

fn long_running(c: &mut Criterion) {
    // First, on a fresh heap: the plain loop's figure depends on the allocator's state more
    // than anything else here (measured from 0.37 to 1.19 us per message after other benches).
    lr_per_message_work(c);
    let runtimes = runtimes();
    for (suffix, rt) in &runtimes {
        lr_startup(c, rt, &format!("lr_startup{suffix}"));
    }
    for (id, shape) in [
        ("lr_flow_3", Shape::Chain(3)),
        ("lr_pipeline_10", Shape::Chain(10)),
        ("lr_branching", Shape::Branching),
    ] {
        for (suffix, rt) in &runtimes {
            lr_one_message(c, rt, &format!("{id}{suffix}"), shape);
        }
    }
    for (suffix, rt) in &runtimes {
        lr_per_message(
            c,
            rt,
            &format!("lr_per_message{suffix}"),
            LongRunningExecutor::new(),
        );
    }
    // The same on the table's runtime, keeping only the last sink output for the result.
    if let Some((_, rt)) = runtimes.first() {
        lr_per_message(
            c,
            rt,
            "lr_per_message_last1",
            LongRunningExecutor::new().sink_retention(SinkRetention::Last(1)),
        );
    }
    for (suffix, rt) in &runtimes {
        lr_per_message_floor(c, rt, &format!("lr_per_message_floor{suffix}"));
    }
}

mod group {
    // `criterion_group!` defines an undocumented `pub fn`.
    #![allow(missing_docs)]
    use criterion::criterion_group;

    criterion_group!(benches, super::long_running);
}

criterion_main!(group::benches);
