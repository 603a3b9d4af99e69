//! Durable runs (issue 13, "Figures"): what a step costs with the embedded store, how long a
//! resume takes against the log's length, and messages through a durable long-running graph.
//! The `durable_*` rows of `benches/targets.toml`; commit latency per store and bytes per step
//! are measured by the `durable_figures` binary (a child process), and the log's append path
//! alone by `durable_append` in `spark-adk-durable` (the information row `durable_append`).
//!
//! - `durable_step/<mode>_loop_1000`: a standard run of 1,000 steps (one node, [`Inc`],
//!   looping to itself while the count is below 1,000) as a durable run into the embedded SQLite
//!   store (`synchronous = FULL`, a file in a temporary directory), `async` and `exit`, against
//!   `plain_loop_1000`, the same run without a store, in the same bench run. The row divides by
//!   1,000: time per step. A durable run also pays a fixed cost per run (the run created
//!   holding its lease, the final flush with the stop record, the lease given back: three
//!   SQLite commits, each an fsync), spread over the 1,000 steps here.
//! - `durable_step/memory_async_loop_1000`: the same Async run into a fresh in-memory store
//!   (dropped with the run inside the timing): the executor's and the log's own cost of a
//!   durable step, without SQLite.
//! - `durable_step/sync_loop_100` against `plain_loop_100`: `Durability::Sync`, one commit
//!   (one fsync) per step, over 100 steps (1,000 would take seconds per iteration). 10
//!   samples, flat sampling. Beside it `async_loop_100`: the Async run over 100 steps (where
//!   the fixed cost per run weighs ten times more).
//! - `durable_recovery/sqlite/<n>`: `StoreExt::resume_image` (load, decode, check the
//!   fingerprint, replay) of a log of `n` activation records (each routes one message and sets
//!   one new state key: the state grows to `n` keys), `n` = 100, 1,000, 10,000; and
//!   `durable_recovery/sqlite/10000_snapshot`, the same 10,000-record run after a snapshot at
//!   its head compacted it.
//!
//! - `durable_lr/sqlite/async`: 10,000 messages sent through the handle into the gated 3-node
//!   pipeline (`gated_chain(3)`) spawned as a durable long-running run (`Durability::Async`,
//!   group commit) on SQLite, a fresh file per pass opened untimed; from the spawn to the run's
//!   end. 4 records per message (accepted, three activations): the row divides by 40,000.
//!   Beside it `durable_lr/sqlite/store_batched_insert`: the records of a first pass straight
//!   into `Store::append` of a fresh SQLite file, 512 a call. 10 samples, flat sampling.
//!
//! Every iteration of a `durable_step` bench starts a run with a fresh id (the runs stay in the
//! file). `--smoke` (criterion's `--test`) runs each once; the setup (three logs written, the
//! longest 10,000 records) takes about a second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_main, Criterion, SamplingMode, Throughput};
use serde_json::json;
use spark_adk::durable::conformance::{sample_activation, sample_fingerprint, sample_header};
use spark_adk::durable::{RunLog, StoreExt};
use spark_adk::prelude::*;
use spark_adk::{Durability, DurableOptions, MemoryStore, RunId, SqliteStore, Store};
use spark_adk_benches::{
    count_of, current_thread_runtime, gated_chain, input, multi_thread_runtime, GateRelease, Inc,
    EPOCH,
};
use tokio::runtime::Runtime;

/// Steps of a run of the Async and Exit benches.
const STEPS: usize = 1_000;

/// Steps of a run of the Sync bench (one fsync per step).
const SYNC_STEPS: usize = 100;

/// Log lengths of the recovery benches.
const LOG_LENGTHS: [u64; 3] = [100, 1_000, 10_000];

static RUNS: AtomicU64 = AtomicU64::new(0);

fn fresh_run() -> RunId {
    RunId::new(format!("bench-{}", RUNS.fetch_add(1, Ordering::Relaxed)))
}

/// One node, [`Inc`], looping to itself while the count is below `n`: a run of `n` steps
/// whatever `n`, on a graph of one node (so that a per-step figure is not inflated by per-run
/// work that grows with the graph: the fingerprint and the header hold every node and edge).
fn self_loop(n: usize) -> Graph {
    let mut g = Graph::builder();
    let step = g.add("step", Inc);
    let n = n as u64;
    g.connect(step.when_fn(move |m| count_of(&m.content) < n) >> step);
    g.step_limit(n + 1);
    g.start(step).build().expect("the loop builds")
}

/// One durable run of `graph` into `store`; returns the final count.
async fn durable_run(graph: &Graph, store: &Arc<dyn Store>, mode: Durability) -> u64 {
    let options = DurableOptions::new(Arc::clone(store), fresh_run()).with_durability(mode);
    let result = graph
        .run_durable(Task::new(input()), options)
        .await
        .expect("the durable run succeeds");
    count_of(result.content())
}

/// `durable_step/<mode>_loop_<n>` for each mode, beside `plain_loop_<n>`.
fn step_benches(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    store: &Arc<dyn Store>,
    n: usize,
    modes: &[(&str, Durability)],
) {
    let graph = self_loop(n);
    let expected = n as u64;
    assert_eq!(
        rt.block_on(graph.run(Task::new(input())))
            .map(|r| count_of(r.content()))
            .expect("the plain run succeeds"),
        expected
    );
    for &(name, mode) in modes {
        assert_eq!(rt.block_on(durable_run(&graph, store, mode)), expected);
        group.bench_function(format!("{name}_loop_{n}"), |b| {
            b.to_async(rt)
                .iter(|| async { black_box(durable_run(&graph, store, mode).await) });
        });
    }
    group.bench_function(format!("plain_loop_{n}"), |b| {
        b.to_async(rt).iter(|| async {
            black_box(
                graph
                    .run(Task::new(input()))
                    .await
                    .expect("the plain run succeeds"),
            )
        });
    });
}

/// Writes a log of `n` sample activation records; returns its run id.
async fn log_of(store: &Arc<dyn Store>, n: u64) -> RunId {
    let run = fresh_run();
    let log = RunLog::create(Arc::clone(store), &sample_header(&run), Durability::Async)
        .await
        .expect("the run is created");
    let value = json!("a state value of some 32 bytes.");
    for i in 1..=n {
        log.append(sample_activation(i, value.clone()))
            .await
            .expect("append");
    }
    assert_eq!(log.close().await.expect("the log commits"), n);
    run
}

/// Messages sent through the handle in one pass of `durable_lr`.
const LR_MESSAGES: u64 = 10_000;

/// Records a pass of `durable_lr` commits per message: the handle send's accepted record and one
/// activation record per node of the 3-node chain. The row divides by
/// `LR_MESSAGES * LR_RECORDS_PER_MESSAGE`.
const LR_RECORDS_PER_MESSAGE: u64 = 4;

/// Records per `Store::append` call of `durable_lr/sqlite/store_batched_insert`.
const LR_BATCH: usize = 512;

/// One durable long-running pass into a fresh SQLite file in `dir`: spawn the gated 3-node
/// chain as a durable run (Async), send [`LR_MESSAGES`] messages into `n0`, release the gate,
/// wait for the run to end (every record committed). Returns the time from the spawn to the
/// end, the store and the run id (opening the store is not timed).
async fn lr_pass(
    graph: &Graph,
    release: &GateRelease,
    epoch: u64,
    dir: &std::path::Path,
) -> (Duration, Arc<dyn Store>, RunId) {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.join(format!("lr-{epoch}.db"))).expect("the SQLite store opens"),
    );
    let run = fresh_run();
    let task = Task::long_running(json!({ EPOCH: epoch })).with_quiescence(true);
    let options =
        DurableOptions::new(Arc::clone(&store), run.clone()).with_durability(Durability::Async);
    let message = NodeMessage::from(input());
    let start = Instant::now();
    let handle = graph
        .spawn_durable(task, options)
        .await
        .expect("the durable run spawns");
    for _ in 0..LR_MESSAGES {
        handle
            .send("n0", message.clone())
            .await
            .expect("the run accepts every message");
    }
    release.release(epoch);
    let result = handle.wait().await.expect("the run completes");
    let elapsed = start.elapsed();
    assert_eq!(result.metadata.processed, 3 * LR_MESSAGES + 1);
    (elapsed, store, run)
}

/// `durable_lr/sqlite/async`: messages through a durable long-running graph on SQLite, and
/// `durable_lr/sqlite/store_batched_insert`: the same records straight into `Store::append` of a
/// fresh SQLite file in batches of [`LR_BATCH`], in the same bench run.
fn lr_benches(c: &mut Criterion, dir: &std::path::Path) {
    let rt = multi_thread_runtime().expect("a multi-thread runtime");
    let (graph, release) = gated_chain(3).expect("the bench graph builds");
    let epochs = AtomicU64::new(1);
    // The records a pass commits, taken from a first pass, for the batched insert.
    let records: Vec<Vec<u8>> = rt.block_on(async {
        let (_, store, run) = lr_pass(&graph, &release, 1, dir).await;
        let log = store.load(&run).await.expect("the log loads");
        log.records.into_iter().map(|r| r.bytes).collect()
    });
    let per_pass = LR_MESSAGES * LR_RECORDS_PER_MESSAGE;
    assert!(
        records.len() as u64 >= per_pass,
        "a pass commits {} records, fewer than {per_pass}",
        records.len()
    );
    let mut group = c.benchmark_group("durable_lr");
    group.throughput(Throughput::Elements(per_pass));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("sqlite/async", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (graph, release, epochs) = (&graph, &release, &epochs);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let epoch = epochs.fetch_add(1, Ordering::Relaxed) + 1;
                    let (elapsed, store, _) = lr_pass(graph, release, epoch, dir).await;
                    total += elapsed;
                    drop(store);
                    std::fs::remove_file(dir.join(format!("lr-{epoch}.db"))).ok();
                }
                total
            }
        });
    });
    group.bench_function("sqlite/store_batched_insert", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (records, epochs) = (&records, &epochs);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let epoch = epochs.fetch_add(1, Ordering::Relaxed) + 1;
                    let path = dir.join(format!("batched-{epoch}.db"));
                    let store: Arc<dyn Store> =
                        Arc::new(SqliteStore::open(&path).expect("the SQLite store opens"));
                    let run = fresh_run();
                    store
                        .create(&sample_header(&run))
                        .await
                        .expect("the run is created");
                    let batches: Vec<Vec<Vec<u8>>> =
                        records.chunks(LR_BATCH).map(<[_]>::to_vec).collect();
                    let start = Instant::now();
                    let mut head = 0;
                    for batch in batches {
                        head = store.append(&run, head, batch).await.expect("append");
                    }
                    total += start.elapsed();
                    drop(store);
                    std::fs::remove_file(&path).ok();
                }
                total
            }
        });
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let rt = current_thread_runtime().expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("durable.db")).expect("the SQLite store opens"));

    let mut group = c.benchmark_group("durable_step");
    group.sample_size(20);
    group.throughput(Throughput::Elements(STEPS as u64));
    step_benches(
        &mut group,
        &rt,
        &store,
        STEPS,
        &[("async", Durability::Async), ("exit", Durability::Exit)],
    );
    // The executor's own cost of a durable step, without a disk: the in-memory store, a fresh
    // one per run (dropped with the run's log inside the timing), so that the process does not
    // grow by every iteration's log.
    let graph = self_loop(STEPS);
    let memory_run = || async {
        let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
        durable_run(&graph, &memory, Durability::Async).await
    };
    assert_eq!(rt.block_on(memory_run()), STEPS as u64);
    group.bench_function(format!("memory_async_loop_{STEPS}"), |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(memory_run().await) });
    });
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(SYNC_STEPS as u64));
    step_benches(
        &mut group,
        &rt,
        &store,
        SYNC_STEPS,
        &[("sync", Durability::Sync), ("async", Durability::Async)],
    );
    group.finish();

    let fingerprint = sample_fingerprint();
    let logs: Vec<(u64, RunId)> = rt.block_on(async {
        let mut logs = Vec::new();
        for n in LOG_LENGTHS {
            logs.push((n, log_of(&store, n).await));
        }
        logs
    });
    let longest = LOG_LENGTHS[LOG_LENGTHS.len() - 1];
    let compacted = rt.block_on(async {
        let run = log_of(&store, longest).await;
        let (_, image) = store
            .resume_image(&run, &fingerprint)
            .await
            .expect("the log replays");
        store.snapshot_image(&image).await.expect("the snapshot");
        run
    });
    let mut group = c.benchmark_group("durable_recovery");
    group.sample_size(10);
    let cases = logs
        .iter()
        .map(|(n, run)| (n.to_string(), *n, run))
        .chain(std::iter::once((
            format!("{longest}_snapshot"),
            longest,
            &compacted,
        )));
    for (name, n, run) in cases {
        group.bench_function(format!("sqlite/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let (_, image) = store
                    .resume_image(run, &fingerprint)
                    .await
                    .expect("the log replays");
                assert_eq!(image.steps(), n);
                black_box(image)
            });
        });
    }
    group.finish();
    lr_benches(c, dir.path());
}

mod group {
    // `criterion_group!` defines an undocumented `pub fn`.
    #![allow(missing_docs)]
    use criterion::criterion_group;

    criterion_group!(benches, super::bench);
}

criterion_main!(group::benches);
