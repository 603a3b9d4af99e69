//! `server_10k_graph_flow`: graph-flow serving the `server_10k` scenario (our
//! `benches/src/bin/server_10k.rs`): 10,000 concurrent runs of a 5-task chain whose tasks each
//! await a 10 ms timer, each run a spawned task, on the multi-thread runtime (one worker per
//! core). Prints one JSON line: `single_wall_ns` (one run alone, median of 5), `wall_ns`,
//! `runs_per_s`, `cpu_ns` (the process's CPU time during the burst), `p50_ns`, `p99_ns` (from a
//! run's spawn to its end). `cargo xtask bench` adds
//! these to `server_10k`'s result as `graph_flow_*`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spark_adk_peers::{gf, multi_thread_runtime};

const RUNS: usize = 10_000;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

async fn measure() -> Result<serde_json::Value, String> {
    let graph = Arc::new(
        gf::chain_with_sleep(5, Some(Duration::from_millis(10))).map_err(|e| e.to_string())?,
    );
    let mut singles = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let count = gf::run(&graph).await.map_err(|e| e.to_string())?;
        if count != 5 {
            return Err(format!("a run ended with count {count}"));
        }
        singles.push(nanos(t.elapsed()));
    }
    singles.sort_unstable();
    let cpu_before = spark_adk_peers::cpu_time_ns().unwrap_or(0);
    let started = Instant::now();
    let tasks: Vec<_> = (0..RUNS)
        .map(|_| {
            let graph = Arc::clone(&graph);
            let spawned = Instant::now();
            tokio::spawn(async move { (gf::run(&graph).await.ok(), spawned.elapsed()) })
        })
        .collect();
    let mut latencies = Vec::with_capacity(RUNS);
    for task in tasks {
        let (count, latency) = task.await.map_err(|e| e.to_string())?;
        if count != Some(5) {
            return Err("a run failed".to_owned());
        }
        latencies.push(nanos(latency));
    }
    let wall = started.elapsed();
    let cpu = spark_adk_peers::cpu_time_ns()
        .unwrap_or(0)
        .saturating_sub(cpu_before);
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Ok(serde_json::json!({
        "single_wall_ns": singles[singles.len() / 2],
        "wall_ns": nanos(wall),
        "runs_per_s": RUNS as f64 / wall.as_secs_f64(),
        "cpu_ns": cpu,
        "cpu_per_run_ns": cpu / RUNS as u64,
        "p50_ns": pct(0.5),
        "p99_ns": pct(0.99),
    }))
}

fn main() -> ExitCode {
    let rt = match multi_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("server_10k_graph_flow: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(measure()) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("server_10k_graph_flow: {e}");
            ExitCode::FAILURE
        }
    }
}
