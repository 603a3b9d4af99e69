//! Standard-mode latency benches: the `std_*` rows of the table in `benches/targets.toml`.
//!
//! Each bench builds its graph and its tokio runtime once, outside the timed loop, checks one run
//! for the expected result, then times `graph.run(Task::new(input))`. The ids are the table's:
//! `std_startup`, `std_flow_3`, `std_pipeline_10`, `std_branching`, and `std_per_node` (a
//! criterion group with `Throughput::Elements(1000)`, so its estimates live under
//! `std_per_node/chain_1000`; `cargo xtask bench` divides its median by 1,000).
//!
//! The rows of the table run on a **current-thread** runtime: standard mode executes one node at
//! a time on the caller's task and spawns nothing, so a multi-thread runtime only adds its
//! scheduler's overhead. The same benches run on the multi-thread runtime under `<id>_mt` for
//! comparison; they have no target.
//!
//! `std_per_node_floor/chain_1000` is the floor beside `std_per_node`: the same node work
//! through 1,000 boxed futures and nothing else (`spark_adk_benches::floor`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_main, Bencher, Criterion, Throughput};
use spark_adk::prelude::*;
use spark_adk_benches::floor::{boxed_future_chain, boxed_nodes};
use spark_adk_benches::{
    count_of, current_thread_runtime, input, multi_thread_runtime, Shape, PER_NODE_CHAIN,
};
use tokio::runtime::Runtime;

/// One bench: `id` times a standard run of `shape` on `rt`.
fn bench_shape(c: &mut Criterion, rt: &Runtime, id: &str, shape: Shape) {
    let graph = shape.build().expect("the bench graph builds");
    // Built once: cloning a message shares its payload, so the loop times the runtime only.
    let message = NodeMessage::from(input());
    let first = rt
        .block_on(graph.run(Task::new(message.clone())))
        .expect("the bench graph runs");
    assert_eq!(
        count_of(first.content()),
        shape.expected_count(),
        "{shape:?}"
    );

    let routine = |b: &mut Bencher<'_>| {
        b.to_async(rt).iter(|| async {
            let result = graph.run(Task::new(message.clone())).await;
            black_box(result.expect("the bench graph runs"))
        });
    };
    if shape == Shape::Chain(PER_NODE_CHAIN) {
        // Time per node: criterion reports elements/s, and the xtask divides the median by the
        // chain length. Throughput needs a group, hence the `<id>/chain_1000` estimates path.
        let mut group = c.benchmark_group(id);
        group.throughput(Throughput::Elements(PER_NODE_CHAIN as u64));
        group.bench_function(format!("chain_{PER_NODE_CHAIN}"), routine);
        group.finish();
    } else {
        // The estimates land in `target/criterion/<id>/new/estimates.json`.
        c.bench_function(id, routine);
    }
}

fn shapes() -> [(&'static str, Shape); 5] {
    [
        ("std_startup", Shape::Single),
        ("std_flow_3", Shape::Chain(3)),
        ("std_pipeline_10", Shape::Chain(10)),
        ("std_branching", Shape::Branching),
        ("std_per_node", Shape::Chain(PER_NODE_CHAIN)),
    ]
}

/// `std_per_node_floor`: the node work of the 1,000-node chain through boxed futures and
/// nothing else ([`spark_adk_benches::floor::boxed_future_chain`]), beside `std_per_node`.
fn per_node_floor(c: &mut Criterion, rt: &Runtime) {
    let nodes = boxed_nodes(PER_NODE_CHAIN);
    let message = NodeMessage::from(input());
    let out = rt.block_on(boxed_future_chain(&nodes, &message));
    assert_eq!(count_of(&out.content), PER_NODE_CHAIN as u64);
    let mut group = c.benchmark_group("std_per_node_floor");
    group.throughput(Throughput::Elements(PER_NODE_CHAIN as u64));
    group.bench_function(format!("chain_{PER_NODE_CHAIN}"), |b| {
        b.to_async(rt)
            .iter(|| async { black_box(boxed_future_chain(&nodes, &message).await) });
    });
    group.finish();
}

fn standard(c: &mut Criterion) {
    let rt = current_thread_runtime().expect("a current-thread runtime");
    for (id, shape) in shapes() {
        bench_shape(c, &rt, id, shape);
    }
    per_node_floor(c, &rt);
}

fn standard_multi_thread(c: &mut Criterion) {
    let rt = multi_thread_runtime().expect("a multi-thread runtime");
    for (id, shape) in shapes() {
        bench_shape(c, &rt, &format!("{id}_mt"), shape);
    }
}

mod group {
    // `criterion_group!` defines an undocumented `pub fn`.
    #![allow(missing_docs)]
    use criterion::criterion_group;

    criterion_group!(benches, super::standard, super::standard_multi_thread);
}

criterion_main!(group::benches);
