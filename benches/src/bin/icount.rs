//! `icount <row id> <iterations>`: runs the scenario of a standard-mode row `iterations` times
//! on a current-thread runtime, for `cargo xtask bench --instructions`. The xtask runs it twice
//! under valgrind's callgrind with different `iterations` and divides the difference of the two
//! instruction totals by the difference of the iterations, so building the graph, the runtime
//! and the process is not counted: the figure is the instructions of one
//! `graph.run(Task::new(input))`, as the criterion bench of the row times it. The peers' crate
//! has the same binary for graph-flow (`peers_icount`). `icount std_per_node_floor N` runs the
//! boxed-future floor of the 1,000-node chain instead (not a row: for comparison by hand).
//! `icount lr_per_message N` runs one pass of the `lr_per_message` scenario with `N` messages
//! (the 3-node long-running pipeline fed through its handle, on a current-thread runtime), also
//! for comparison by hand: run it under callgrind with two `N` and divide the difference of the
//! totals by the difference of the `N` (docs/benchmarks.md); `icount lr_per_message N all`
//! keeps every sink output (`SinkRetention::All`) instead of the spawned run's default.

use std::hint::black_box;
use std::process::ExitCode;

use spark_adk::prelude::*;
use spark_adk::LongRunningExecutor;
use spark_adk_benches::floor::{boxed_future_chain, boxed_nodes};
use spark_adk_benches::{current_thread_runtime, gated_chain, input, Shape, EPOCH, PER_NODE_CHAIN};

fn shape(id: &str) -> Option<Shape> {
    Some(match id {
        "std_startup" => Shape::Single,
        "std_flow_3" => Shape::Chain(3),
        "std_pipeline_10" => Shape::Chain(10),
        "std_branching" => Shape::Branching,
        "std_per_node" => Shape::Chain(PER_NODE_CHAIN),
        _ => return None,
    })
}

fn floor(iterations: u64) -> ExitCode {
    let Ok(rt) = current_thread_runtime() else {
        eprintln!("icount: no runtime");
        return ExitCode::FAILURE;
    };
    let nodes = boxed_nodes(PER_NODE_CHAIN);
    let message = NodeMessage::from(input());
    rt.block_on(async {
        for _ in 0..iterations {
            black_box(boxed_future_chain(&nodes, &message).await);
        }
    });
    ExitCode::SUCCESS
}

/// One pass of `lr_per_message` with `messages` messages (as the criterion bench's pass).
fn lr_per_message(messages: u64, keep_all: bool) -> ExitCode {
    let (Ok((graph, release)), Ok(rt)) = (gated_chain(3), current_thread_runtime()) else {
        eprintln!("icount: setup failed");
        return ExitCode::FAILURE;
    };
    let message = NodeMessage::from(input());
    let result = rt.block_on(async {
        let mut executor = LongRunningExecutor::new().stop_on_quiescence(true);
        if keep_all {
            executor = executor.sink_retention(spark_adk::SinkRetention::All);
        }
        let handle = executor.spawn(
            std::sync::Arc::clone(graph.topology()),
            Task::long_running(serde_json::json!({ EPOCH: 1 })),
        )?;
        for _ in 0..messages {
            if handle.send("n0", message.clone()).await.is_err() {
                return Err(RunError::Internal("a send failed".to_owned()));
            }
        }
        release.release(1);
        handle.wait().await
    });
    match result {
        Ok(r) if r.metadata.processed_by("n2") == Some(messages) => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("icount: {:?}", r.metadata.counts());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("icount: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(id), Some(Ok(iterations))) = (args.first(), args.get(1).map(|n| n.parse::<u64>()))
    else {
        eprintln!("usage: icount <row id> <iterations>");
        return ExitCode::from(2);
    };
    if id == "std_per_node_floor" {
        // The boxed-future floor beside std_per_node (benches/src/floor.rs), for comparing the
        // runtime's count per node with the node work's alone.
        return floor(iterations);
    }
    if id == "lr_per_message" {
        return lr_per_message(iterations, args.get(2).is_some_and(|a| a == "all"));
    }
    let Some(shape) = shape(id) else {
        eprintln!("icount: no scenario `{id}`");
        return ExitCode::from(2);
    };
    let (graph, rt) = match (shape.build(), current_thread_runtime()) {
        (Ok(g), Ok(rt)) => (g, rt),
        _ => {
            eprintln!("icount: setup failed");
            return ExitCode::FAILURE;
        }
    };
    let message = NodeMessage::from(input());
    let result = rt.block_on(async {
        for _ in 0..iterations {
            black_box(graph.run(Task::new(message.clone())).await?);
        }
        Ok::<(), RunError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("icount: {e}");
            ExitCode::FAILURE
        }
    }
}
