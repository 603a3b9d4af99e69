//! `icount <row id> <iterations>`: runs the scenario of a standard-mode row `iterations` times
//! on a current-thread runtime, for `cargo xtask bench --instructions`. The xtask runs it twice
//! under valgrind's callgrind with different `iterations` and divides the difference of the two
//! instruction totals by the difference of the iterations, so building the graph, the runtime
//! and the process is not counted: the figure is the instructions of one
//! `graph.run(Task::new(input))`, as the criterion bench of the row times it. The peers' crate
//! has the same binary for graph-flow (`peers_icount`). `icount std_per_node_floor N` runs the
//! boxed-future floor of the 1,000-node chain instead (not a row: for comparison by hand).

use std::hint::black_box;
use std::process::ExitCode;

use spark_adk::prelude::*;
use spark_adk_benches::floor::{boxed_future_chain, boxed_nodes};
use spark_adk_benches::{current_thread_runtime, input, Shape, PER_NODE_CHAIN};

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
