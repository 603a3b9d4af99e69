//! `peers_icount <row id> <iterations>`: runs graph-flow's scenario of a standard-mode row
//! `iterations` times on a current-thread runtime, for `cargo xtask bench --instructions`, which
//! runs it twice under callgrind with different `iterations` and takes the difference per
//! iteration (so building the graph and the runtime is not counted). Same protocol as our
//! `icount` binary (benches/src/bin/icount.rs).

use std::hint::black_box;
use std::process::ExitCode;

use spark_adk_peers::{current_thread_runtime, gf};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(id), Some(Ok(iterations))) = (args.first(), args.get(1).map(|n| n.parse::<u64>()))
    else {
        eprintln!("usage: peers_icount <row id> <iterations>");
        return ExitCode::from(2);
    };
    let graph = match id.as_str() {
        "std_startup" => gf::chain(1),
        "std_flow_3" => gf::chain(3),
        "std_pipeline_10" => gf::chain(10),
        "std_branching" => gf::branching(),
        "std_per_node" => gf::chain(1_000),
        other => {
            eprintln!("peers_icount: no scenario `{other}`");
            return ExitCode::from(2);
        }
    };
    let (graph, rt) = match (graph, current_thread_runtime()) {
        (Ok(g), Ok(rt)) => (g, rt),
        _ => {
            eprintln!("peers_icount: setup failed");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        for _ in 0..iterations {
            black_box(gf::run(&graph).await?);
        }
        Ok::<(), graph_flow::GraphError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers_icount: {e}");
            ExitCode::FAILURE
        }
    }
}
