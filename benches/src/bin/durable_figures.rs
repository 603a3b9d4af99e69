//! `durable_figures`: the durable-run figures that are not medians (issue 13, "Figures"), as one
//! JSON object on the last line of standard output, which `cargo xtask bench` writes to
//! `target/bench-proc/durable_figures.json` (the `durable_commit_*` and `durable_bytes_per_step`
//! rows of `benches/targets.toml`).
//!
//! - **Commit latency** per store: `RunLog::append` in `Durability::Sync` (returns once the
//!   record is committed), one record at a time as a standard run appends them, each timed:
//!   `<store>_commit_p50_ns`, `<store>_commit_p99_ns` (and `<store>_commits`, how many were
//!   timed). Stores: the in-memory one, SQLite (`synchronous = FULL`, a file in a temporary
//!   directory) and PostgreSQL (`SPARK_PG_URL`, else 127.0.0.1:5432 database `test`, in a schema
//!   of its own, dropped at the end). When PostgreSQL does not answer, its fields are left out
//!   and `postgres_skipped` says why (the report then shows its rows as not measured; `cargo
//!   xtask bench` skips them before, when nothing listens on the port).
//! - **Bytes per step**: a standard durable run of 1,000 steps whose state grows by one key per
//!   step (the storage test's graph), into SQLite: payload bytes stored (header, records) / steps
//!   as `bytes_per_step`, and the same for 500 steps as `bytes_per_step_500` (equal when storage
//!   is linear).
//!
//! `cargo run --release -p spark-adk-benches --bin durable_figures`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use spark_adk::durable::conformance::{sample_activation, sample_header};
use spark_adk::durable::RunLog;
use spark_adk::prelude::*;
use spark_adk::{
    Durability, DurableOptions, MemoryStore, PostgresStore, RunId, SqliteStore, Store,
};

/// Sync appends timed per store, after `WARM_UP` untimed ones.
const COMMITS: [(&str, usize); 3] = [("memory", 5_000), ("sqlite", 400), ("postgres", 400)];
const WARM_UP: usize = 20;

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
fn percentile(sorted: &[u128], p: usize) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// `n` Sync appends into a fresh run of `store`, each timed.
async fn commit_latencies(store: Arc<dyn Store>, run: &str, n: usize) -> Vec<u128> {
    let run = RunId::new(run);
    let log = RunLog::create(Arc::clone(&store), &sample_header(&run), Durability::Sync)
        .await
        .expect("the run is created");
    let value = json!("a state value of some 32 bytes.");
    let mut samples = Vec::with_capacity(n);
    for i in 1..=(WARM_UP + n) as u64 {
        let record = sample_activation(i, value.clone());
        let start = Instant::now();
        log.append(record).await.expect("the commit succeeds");
        if i > WARM_UP as u64 {
            samples.push(start.elapsed().as_nanos());
        }
    }
    log.close().await.expect("close");
    samples.sort_unstable();
    samples
}

/// A self-loop that runs `steps` times, each step setting a new state key.
fn growing(steps: u64) -> Graph {
    let mut g = Graph::builder();
    let step = g.add(
        "step",
        node_fn(|ctx: Context| async move {
            let n = ctx.inputs().content["n"].as_u64().unwrap_or(0);
            let steps = ctx
                .state()
                .get("steps")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            ctx.state()
                .set(format!("key{n}"), json!(format!("value number {n}")));
            Ok::<_, NodeError>(json!({ "n": n + 1, "more": n + 1 < steps }))
        }),
    );
    g.connect(step.on("more", true) >> step);
    g.initial_state(Map::from_iter([("steps".to_owned(), json!(steps))]));
    g.step_limit(steps + 1);
    g.start(step).build().expect("the graph builds")
}

/// Payload bytes per step of a `steps`-step durable run into `store`.
async fn bytes_per_step(store: Arc<dyn Store>, steps: u64) -> f64 {
    let run = format!("bytes-{steps}");
    let result = growing(steps)
        .run_durable(
            Task::new(json!({ "n": 0 })),
            DurableOptions::new(Arc::clone(&store), run.as_str()),
        )
        .await
        .expect("the durable run succeeds");
    assert_eq!(result.metadata.steps, steps);
    let bytes = store
        .stored_bytes(&RunId::new(run))
        .await
        .expect("stored bytes");
    bytes as f64 / steps as f64
}

async fn postgres(schema: &str) -> Result<PostgresStore, String> {
    let conninfo = std::env::var("SPARK_PG_URL").unwrap_or_else(|_| {
        "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=2".to_owned()
    });
    let connect = PostgresStore::connect(
        &conninfo,
        spark_adk::crates::postgres::PostgresOptions {
            schema: schema.to_owned(),
            pool_size: 2,
        },
    );
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(e)) => Err(format!("PostgreSQL at `{conninfo}` does not answer: {e}")),
        Err(_) => Err(format!(
            "PostgreSQL at `{conninfo}` did not answer within 5 s"
        )),
    }
}

async fn drop_schema(store: &PostgresStore) {
    if let Ok(client) = store.pool().get().await {
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", store.schema()))
            .await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut out = Map::new();
    rt.block_on(async {
        let sqlite: Arc<dyn Store> = Arc::new(
            SqliteStore::open(dir.path().join("figures.db")).expect("the SQLite store opens"),
        );
        let schema = format!("spark_figures_{}", std::process::id());
        let pg = postgres(&schema).await.map(Arc::new);
        for (name, n) in COMMITS {
            let store: Arc<dyn Store> = match name {
                "memory" => Arc::new(MemoryStore::new()),
                "sqlite" => Arc::clone(&sqlite),
                _ => match &pg {
                    Ok(p) => Arc::clone(p) as Arc<dyn Store>,
                    Err(why) => {
                        eprintln!("durable_figures: PostgreSQL skipped: {why}");
                        out.insert("postgres_skipped".into(), Value::from(why.clone()));
                        continue;
                    }
                },
            };
            let samples = commit_latencies(store, &format!("commit-{name}"), n).await;
            let (p50, p99) = (percentile(&samples, 50), percentile(&samples, 99));
            eprintln!(
                "durable_figures: {name}: commit p50 {:.1} us, p99 {:.1} us ({n} commits)",
                p50 as f64 / 1e3,
                p99 as f64 / 1e3
            );
            out.insert(format!("{name}_commit_p50_ns"), Value::from(p50 as u64));
            out.insert(format!("{name}_commit_p99_ns"), Value::from(p99 as u64));
            out.insert(format!("{name}_commits"), Value::from(n));
        }
        let per_step = bytes_per_step(Arc::clone(&sqlite), 1_000).await;
        let per_step_500 = bytes_per_step(Arc::clone(&sqlite), 500).await;
        eprintln!(
            "durable_figures: {per_step:.1} bytes per step (1,000 steps), {per_step_500:.1} (500)"
        );
        out.insert("bytes_per_step".into(), json!(per_step));
        out.insert("bytes_per_step_500".into(), json!(per_step_500));
        if let Ok(p) = &pg {
            drop_schema(p).await;
        }
    });
    println!("{}", Value::Object(out));
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<u128> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50), 50);
        assert_eq!(percentile(&samples, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
    }
}
