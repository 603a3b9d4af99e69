//! `mem_lr_10k`: the resident memory of an idle 10,000-node long-running graph.
//!
//! Run as a child process by `cargo xtask bench` (release build), so that nothing else of the
//! benches shares its address space. It
//! 1. builds a multi-thread tokio runtime (one worker per core, what `#[tokio::main]` gives) and
//!    reads `VmRSS` (the baseline, before the graph exists);
//! 2. builds a 10,000-node chain of trivial nodes and spawns it as a long-running run through a
//!    handle (`graph.spawn`, no quiescence stop: the run stays alive, idle, as a service would);
//! 3. subscribes to the sink outputs, sends one message into the first node and waits until
//!    its output comes out of the last node (the task input travels the chain first, so every
//!    worker has processed two messages and is back to waiting on its empty mailbox);
//! 4. reads `VmRSS` (idle) and `VmHWM` (peak) from `/proc/self/status` and prints one JSON line
//!    `{"bytes": <idle RSS>, "bytes_per_node": <(idle RSS - RSS before the graph) / 10,000>,
//!    "graph_bytes_per_node": <the built graph's share of it>, "run_bytes_per_node": <the
//!    spawned run's share (workers, mailboxes)>, "peak_bytes": <VmHWM>, "baseline_bytes": <RSS
//!    before the graph>, "nodes": 10000}`, then shuts the run down.
//!
//! `bytes` is the whole process's idle RSS (runtime, graph, workers and their mailboxes);
//! `bytes_per_node` is the figure compared with the `<= 2 KiB per idle node` target in
//! `benches/targets.toml`.

use std::process::ExitCode;
use std::time::Duration;

use spark_adk::prelude::*;
use spark_adk_benches::{chain, count_of, mem, multi_thread_runtime, COUNT};
use tokio::sync::broadcast::error::RecvError;

/// Nodes of the chain.
const NODES: usize = 10_000;

/// The counter of the probe message: its output from the last node has `MARK + NODES`.
const MARK: u64 = 1_000_000_000;

/// A run that takes longer is reported as a failure rather than left hanging.
const LIMIT: Duration = Duration::from_secs(120);

async fn measure(baseline: u64) -> Result<serde_json::Value, String> {
    let graph = chain(NODES).map_err(|e| format!("building the chain: {e}"))?;
    // The graph alone (topology, nodes, names), before any worker exists.
    let built = mem::rss_bytes().ok_or("no VmRSS in /proc/self/status")?;
    let handle = graph
        .spawn(Task::long_running(json!({ COUNT: 0 })))
        .map_err(|e| format!("spawning the run: {e}"))?;
    let mut outputs = handle.subscribe();
    handle
        .send("n0", json!({ COUNT: MARK }))
        .await
        .map_err(|e| format!("sending the probe: {e}"))?;
    let wait_for_probe = async {
        loop {
            match outputs.recv().await {
                Ok(out) if count_of(out.message.content()) >= MARK + NODES as u64 => {
                    return Ok(());
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err("the outputs closed".to_owned()),
            }
        }
    };
    tokio::time::timeout(LIMIT, wait_for_probe)
        .await
        .map_err(|_| format!("the probe did not come out within {LIMIT:?}"))??;
    // Idle now: every worker waits on an empty mailbox.
    let idle = mem::rss_bytes().ok_or("no VmRSS in /proc/self/status")?;
    let peak = mem::peak_rss_bytes().ok_or("no VmHWM in /proc/self/status")?;
    handle.shutdown();
    let result = tokio::time::timeout(LIMIT, handle.wait())
        .await
        .map_err(|_| format!("the run did not stop within {LIMIT:?}"))?
        .map_err(|e| format!("the run failed: {e}"))?;
    let counts = result.metadata.counts();
    if counts.processed != 2 * NODES as u64 || counts.unprocessed != 0 {
        return Err(format!("unexpected counts: {counts:?}"));
    }
    Ok(json!({
        "bytes": idle,
        "bytes_per_node": idle.saturating_sub(baseline) / NODES as u64,
        "graph_bytes_per_node": built.saturating_sub(baseline) / NODES as u64,
        "run_bytes_per_node": idle.saturating_sub(built) / NODES as u64,
        "peak_bytes": peak,
        "baseline_bytes": baseline,
        "nodes": NODES,
    }))
}

fn main() -> ExitCode {
    let rt = match multi_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mem_lr_10k: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(baseline) = mem::rss_bytes() else {
        eprintln!("mem_lr_10k: no VmRSS in /proc/self/status (Linux only)");
        return ExitCode::FAILURE;
    };
    match rt.block_on(measure(baseline)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mem_lr_10k: {e}");
            ExitCode::FAILURE
        }
    }
}
