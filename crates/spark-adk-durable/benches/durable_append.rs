//! Appends per second through [`RunLog`] for each durability mode and store, the store's own
//! batched-insert rate beside them, and bytes stored per step (printed once).
//!
//! `cargo bench -p spark-adk-durable --bench durable_append`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_main, Criterion, Throughput};
use serde_json::json;
use spark_adk_durable::conformance::{sample_activation, sample_header};
use spark_adk_durable::{encode, Durability, MemoryStore, RunId, RunLog, Store, StoreExt};
use spark_adk_postgres::{PostgresOptions, PostgresStore};
use spark_adk_sqlite::SqliteStore;

static RUNS: AtomicU64 = AtomicU64::new(0);

fn fresh_run() -> RunId {
    RunId::new(format!("bench-{}", RUNS.fetch_add(1, Ordering::Relaxed)))
}

/// `iters` appends of one activation record each (one routed message, one new state key), then
/// the flush that commits what is left.
async fn appends(store: Arc<dyn Store>, mode: Durability, iters: u64) -> Duration {
    let run = fresh_run();
    store.create(&sample_header(&run)).await.unwrap();
    let log = RunLog::open(Arc::clone(&store), run, 0, mode).unwrap();
    let value = json!("a state value of some 32 bytes.");
    let start = Instant::now();
    for i in 1..=iters {
        log.append(sample_activation(i, value.clone()))
            .await
            .unwrap();
    }
    log.close().await.unwrap();
    start.elapsed()
}

/// The store's own rate: `iters` records in batches of 512 straight into `Store::append`.
async fn raw_batches(store: Arc<dyn Store>, iters: u64) -> Duration {
    let run = fresh_run();
    store.create(&sample_header(&run)).await.unwrap();
    let value = json!("a state value of some 32 bytes.");
    let records: Vec<Vec<u8>> = (1..=iters)
        .map(|i| encode(&run, i, &sample_activation(i, value.clone())).unwrap())
        .collect();
    let start = Instant::now();
    let mut head = 0;
    for chunk in records.chunks(512) {
        head = store.append(&run, head, chunk.to_vec()).await.unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // PostgreSQL when it answers (`SPARK_PG_URL`, else the machine's own), in a schema of its own.
    let conninfo = std::env::var("SPARK_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned());
    let schema = format!("spark_bench_{}", std::process::id());
    let postgres = rt.block_on(PostgresStore::connect(
        &conninfo,
        PostgresOptions {
            schema: schema.clone(),
            pool_size: 4,
        },
    ));
    let postgres: Option<Arc<PostgresStore>> = match postgres {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            eprintln!("durable_append: PostgreSQL rows skipped: {e}");
            None
        }
    };
    let mut stores = vec![
        ("memory", Arc::clone(&memory)),
        ("sqlite", Arc::clone(&sqlite)),
    ];
    if let Some(p) = &postgres {
        stores.push(("postgres", Arc::clone(p) as Arc<dyn Store>));
    }

    // Bytes per step, once: a 1,000-step run whose state grows by a key per step.
    rt.block_on(async {
        for (name, store) in &stores {
            let run = fresh_run();
            store.create(&sample_header(&run)).await.unwrap();
            let header = store.stored_bytes(&run).await.unwrap();
            let log = RunLog::open(Arc::clone(store), run.clone(), 0, Durability::Async).unwrap();
            for i in 1..=1000 {
                log.append(sample_activation(
                    i,
                    json!("a state value of some 32 bytes."),
                ))
                .await
                .unwrap();
            }
            log.close().await.unwrap();
            let bytes = store.stored_bytes(&run).await.unwrap() - header;
            eprintln!(
                "durable_append: {name}: {} bytes per step (payload, 1,000 steps)",
                bytes / 1000
            );
        }
    });

    let mut group = c.benchmark_group("durable_append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(500));
    for (name, store) in &stores {
        for (mode_name, mode) in [
            ("sync", Durability::Sync),
            ("async", Durability::Async),
            ("exit", Durability::Exit),
        ] {
            group.bench_function(format!("{name}/{mode_name}"), |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| appends(Arc::clone(store), mode, iters));
            });
        }
        group.bench_function(format!("{name}/store_batched_insert"), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| raw_batches(Arc::clone(store), iters));
        });
    }
    group.bench_function("encode_one_record", |b| {
        let run = RunId::new("encode");
        let record = sample_activation(7, json!("a state value of some 32 bytes."));
        b.iter(|| encode(&run, 7, &record).unwrap());
    });
    for (name, store) in &stores {
        group.bench_function(format!("{name}/async_call"), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| async_calls(Arc::clone(store), iters));
        });
    }
    group.finish();
    if let Some(p) = postgres {
        rt.block_on(async {
            if let Ok(client) = p.pool().get().await {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await;
            }
        });
    }
}

/// What an executor's step pays in Async mode while the writer keeps up: the `append` calls
/// alone, in rounds of 1,000 (well under the writer's queue), each round flushed untimed.
async fn async_calls(store: Arc<dyn Store>, iters: u64) -> Duration {
    let run = fresh_run();
    store.create(&sample_header(&run)).await.unwrap();
    let log = RunLog::open(Arc::clone(&store), run, 0, Durability::Async).unwrap();
    let value = json!("a state value of some 32 bytes.");
    let mut timed = Duration::ZERO;
    let mut i = 0;
    while i < iters {
        let round = (iters - i).min(1000);
        let start = Instant::now();
        for k in 1..=round {
            log.append(sample_activation(i + k, value.clone()))
                .await
                .unwrap();
        }
        timed += start.elapsed();
        i += round;
        log.flush().await.unwrap();
    }
    log.close().await.unwrap();
    timed
}

mod group {
    // `criterion_group!` defines an undocumented `pub fn`.
    #![allow(missing_docs)]
    use criterion::criterion_group;

    criterion_group!(benches, super::bench);
}

criterion_main!(group::benches);
