//! `server_10k`: the load a web service serving graph runs puts on the runtime.
//!
//! Run as a child process by `cargo xtask bench` (release build), on tokio's multi-thread
//! runtime with one worker per core (what `#[tokio::main]` gives a service).
//!
//! **Standard form**: a 5-node chain whose nodes each await a 10 ms timer (`tokio::time::sleep`)
//! and then do the benches' trivial work. First one run alone, five times (`single_wall_ns`: the
//! median; the ideal is 50 ms, `ideal_ns`). Then 10,000 runs at once: each is a spawned task (a request)
//! running `graph.run(Task::new(input))`; `wall_ns` is from the first spawn to the last run's
//! end, each run's latency from its own spawn to its end (`p50_ns`, `p99_ns`), `runs_per_s` is
//! 10,000 / wall, `spawn_ns` how long spawning the 10,000 tasks took, `run_future_bytes` the
//! size of one `graph.run` future, `cpu_ns` the process's CPU time (user + system, all threads, 10 ms
//! resolution) during the burst, and `rss_per_run_bytes` is (peak RSS during the burst - RSS before it) /
//! 10,000: the memory of one run in flight.
//!
//! **Long-running form**: 1,000 spawned long-running runs of a 3-node chain of the same nodes
//! (ideal 30 ms), each started with `graph.spawn` and fed one message through its handle, all
//! at once; a run's latency is from its send to its output coming out of the last node. The
//! start node of each run is a [`Gate`] with no edges that takes the task input, so the
//! message that crosses the chain is the one sent through the handle. Figures under `lr_`.
//!
//! Prints one JSON line with every figure (and `bytes`, the standard form's RSS per run, for
//! the xtask's result file).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use spark_adk::prelude::*;
use spark_adk_benches::{count_of, input, mem, multi_thread_runtime, Gate, COUNT};
use tokio::sync::broadcast::error::RecvError;

/// Concurrent standard runs.
const RUNS: usize = 10_000;

/// Concurrent long-running runs.
const LR_RUNS: usize = 1_000;

/// What each node awaits.
const SLEEP: Duration = Duration::from_millis(10);

/// A run that takes longer is a failure rather than a hang.
const LIMIT: Duration = Duration::from_secs(120);

/// Awaits [`SLEEP`], then returns `{"count": count + 1}`.
struct Sleepy;

impl Node for Sleepy {
    async fn process(&self, ctx: &Context) -> Result<NodeMessage, NodeError> {
        if !ctx.is_shutdown() {
            tokio::time::sleep(SLEEP).await;
        }
        Ok(json!({ COUNT: count_of(&ctx.inputs().content) + 1 }).into())
    }
}

/// `n0 >> ... >> n{n-1}` of [`Sleepy`] nodes; with `gate`, a [`Gate`] called `gate` with no
/// edges is the start node instead of `n0`.
fn sleepy_chain(n: usize, gate: bool) -> Result<Graph, String> {
    let mut g = Graph::builder();
    let nodes: Vec<NodeRef> = (0..n).map(|i| g.add(format!("n{i}"), Sleepy)).collect();
    for pair in nodes.windows(2) {
        if let [from, to] = *pair {
            g.connect(from >> to);
        }
    }
    let start = if gate {
        g.add("gate", Gate::new().0)
    } else {
        *nodes.first().ok_or("an empty chain")?
    };
    g.start(start).build().map_err(|e| e.to_string())
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

async fn standard() -> Result<serde_json::Value, String> {
    let graph = sleepy_chain(5, false)?;
    let message = NodeMessage::from(input());
    let mut singles = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = graph
            .run(Task::new(message.clone()))
            .await
            .map_err(|e| e.to_string())?;
        if count_of(r.content()) != 5 {
            return Err(format!("a single run ended with {}", r.content()));
        }
        singles.push(nanos(t.elapsed()));
    }
    let single = median(singles);

    // The size of one run's future (what a spawned task holds besides tokio's header; the
    // nodes' futures are boxed apart from it).
    let run_future_bytes = std::mem::size_of_val(&graph.run(Task::new(message.clone())));
    let before = mem::rss_bytes().ok_or("no VmRSS")?;
    let cpu_before = mem::cpu_time_ns().ok_or("no /proc/self/stat")?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let graph = graph.clone();
        let message = message.clone();
        let spawned = Instant::now();
        tasks.push(tokio::spawn(async move {
            let r = graph.run(Task::new(message)).await;
            (r.map(|r| count_of(r.content())), spawned.elapsed())
        }));
    }
    let spawned_all = started.elapsed();
    let mut latencies = Vec::with_capacity(RUNS);
    for task in tasks {
        let (count, latency) = tokio::time::timeout(LIMIT, task)
            .await
            .map_err(|_| "a run did not end in time".to_owned())?
            .map_err(|e| e.to_string())?;
        if count.map_err(|e| e.to_string())? != 5 {
            return Err("a run ended with a wrong count".to_owned());
        }
        latencies.push(nanos(latency));
    }
    let wall = started.elapsed();
    let cpu = mem::cpu_time_ns()
        .ok_or("no /proc/self/stat")?
        .saturating_sub(cpu_before);
    let peak = mem::peak_rss_bytes().ok_or("no VmHWM")?;
    latencies.sort_unstable();
    let per_run = peak.saturating_sub(before) / RUNS as u64;
    Ok(json!({
        "runs": RUNS,
        "single_wall_ns": single,
        "wall_ns": nanos(wall),
        "wall_over_single": nanos(wall) as f64 / single.max(1) as f64,
        "ideal_ns": nanos(SLEEP * 5),
        "wall_over_ideal": wall.as_secs_f64() / (SLEEP * 5).as_secs_f64(),
        "runs_per_s": RUNS as f64 / wall.as_secs_f64(),
        "spawn_ns": nanos(spawned_all),
        "run_future_bytes": run_future_bytes,
        "cpu_ns": cpu,
        "cpu_per_run_ns": cpu / RUNS as u64,
        "p50_ns": percentile(&latencies, 0.5),
        "p99_ns": percentile(&latencies, 0.99),
        "rss_before_bytes": before,
        "peak_rss_bytes": peak,
        "rss_per_run_bytes": per_run,
    }))
}

/// One long-running run: spawn, subscribe, send one message through the handle, wait for it
/// to come out of `n2`, stop. Returns send-to-output latency.
async fn lr_one(graph: Graph, message: NodeMessage) -> Result<Duration, String> {
    let handle = graph
        .spawn(Task::long_running(json!({})))
        .map_err(|e| e.to_string())?;
    let mut outputs = handle.subscribe();
    let sent = Instant::now();
    handle
        .send("n0", message)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match outputs.recv().await {
            Ok(out) if count_of(out.message.content()) == 3 => break,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return Err("the outputs closed".to_owned()),
        }
    }
    let latency = sent.elapsed();
    handle.shutdown();
    handle.wait().await.map_err(|e| e.to_string())?;
    Ok(latency)
}

async fn long_running() -> Result<serde_json::Value, String> {
    let graph = sleepy_chain(3, true)?;
    let message = NodeMessage::from(input());
    let mut singles = Vec::new();
    for _ in 0..5 {
        singles.push(nanos(lr_one(graph.clone(), message.clone()).await?));
    }
    let single = median(singles);
    let before = mem::rss_bytes().ok_or("no VmRSS")?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..LR_RUNS)
        .map(|_| tokio::spawn(lr_one(graph.clone(), message.clone())))
        .collect();
    let mut latencies = Vec::with_capacity(LR_RUNS);
    for task in tasks {
        let latency = tokio::time::timeout(LIMIT, task)
            .await
            .map_err(|_| "a long-running run did not end in time".to_owned())?
            .map_err(|e| e.to_string())??;
        latencies.push(nanos(latency));
    }
    let wall = started.elapsed();
    let peak = mem::peak_rss_bytes().ok_or("no VmHWM")?;
    latencies.sort_unstable();
    Ok(json!({
        "lr_runs": LR_RUNS,
        "lr_single_ns": single,
        "lr_wall_ns": nanos(wall),
        "lr_wall_over_single": nanos(wall) as f64 / single.max(1) as f64,
        "lr_ideal_ns": nanos(SLEEP * 3),
        "lr_p50_ns": percentile(&latencies, 0.5),
        "lr_p99_ns": percentile(&latencies, 0.99),
        "lr_rss_per_run_bytes": peak.saturating_sub(before) / LR_RUNS as u64,
    }))
}

fn main() -> ExitCode {
    let rt = match multi_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("server_10k: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let mut std = standard().await?;
        let lr = long_running().await?;
        if let (Some(s), Some(l)) = (std.as_object_mut(), lr.as_object()) {
            s.extend(l.clone());
            let per_run = s.get("rss_per_run_bytes").cloned().unwrap_or_default();
            s.insert("bytes".to_owned(), per_run);
        }
        Ok::<_, String>(std)
    });
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("server_10k: {e}");
            ExitCode::FAILURE
        }
    }
}
