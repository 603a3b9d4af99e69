//! The peers' rows of the benchmark table, each under the id `benches/targets.toml` names as the
//! row's `peer_id`: `graph_flow/<row id>` (current-thread runtime, as our `std_*` rows) and
//! `dagrs/<row id>` (multi-thread runtime, one worker per core, as our `lr_*` rows; the
//! one-message rows also as `dagrs/<row id>_ct` on the current-thread runtime, reported
//! beside the table like our `_ct` benches).
//! `cargo xtask bench` runs them one row at a time, right after our bench of the same row.
//! The scenarios are in the library (`spark_adk_peers::{gf, dg}`); docs/benchmarks.md shows
//! them beside ours.

// A dagrs run needs `&mut Graph`; criterion runs one iteration at a time, so a `RefCell`
// borrowed across the run's awaits is never borrowed twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::await_holding_refcell_ref,
    missing_docs
)]

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use spark_adk_peers::{current_thread_runtime, dg, gf, multi_thread_runtime};

/// Messages per pass of `lr_per_message` (the row's `divide_by`).
const MESSAGES: u64 = 100_000;

fn graph_flow(c: &mut Criterion) {
    let rt = current_thread_runtime().expect("a runtime");
    let shapes: [(&str, graph_flow::Graph, u64); 5] = [
        ("std_startup", gf::chain(1).expect("builds"), 1),
        ("std_flow_3", gf::chain(3).expect("builds"), 3),
        ("std_pipeline_10", gf::chain(10).expect("builds"), 10),
        ("std_branching", gf::branching().expect("builds"), 6),
        ("std_per_node", gf::chain(1_000).expect("builds"), 1_000),
    ];
    for (id, graph, expected) in &shapes {
        assert_eq!(
            rt.block_on(gf::run(graph)).expect("runs"),
            *expected,
            "{id}"
        );
        let mut group = c.benchmark_group("graph_flow");
        group.bench_function(*id, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(gf::run(graph).await.expect("runs")) });
        });
        group.finish();
    }
}

fn dagrs(c: &mut Criterion) {
    let rt = multi_thread_runtime().expect("a runtime");

    // lr_startup: from `reset` (which creates the channels) to the first node's action.
    let flow = RefCell::new(dg::chain(10).expect("builds"));
    assert_eq!(rt.block_on(flow.borrow_mut().run()).expect("runs"), 10);
    let mut group = c.benchmark_group("dagrs");
    group.bench_function("lr_startup", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let flow = &flow;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut flow = flow.borrow_mut();
                    let _ = flow.take_stamp();
                    let started = Instant::now();
                    black_box(flow.run().await.expect("runs"));
                    let stamp = flow.take_stamp().expect("the first node ran");
                    total += stamp.saturating_duration_since(started);
                }
                total
            }
        });
    });
    group.finish();

    // The one-message rows, on the table's runtime and (`_ct`, beside the table) on the
    // current-thread one, as ours.
    let ct = current_thread_runtime().expect("a runtime");
    for (suffix, rt) in [("", &rt), ("_ct", &ct)] {
        for (id, flow, n) in [
            ("lr_flow_3", dg::chain(3), 3),
            ("lr_pipeline_10", dg::chain(10), 10),
            ("lr_branching", dg::branching(), 6),
        ] {
            let flow = RefCell::new(flow.expect("builds"));
            assert_eq!(rt.block_on(flow.borrow_mut().run()).expect("runs"), n);
            let mut group = c.benchmark_group("dagrs");
            group.bench_function(format!("{id}{suffix}"), |b| {
                b.to_async(rt)
                    .iter(|| async { black_box(flow.borrow_mut().run().await.expect("runs")) });
            });
            group.finish();
        }
    }

    let pipeline = RefCell::new(dg::pipeline(MESSAGES, 3).expect("builds"));
    let mut group = c.benchmark_group("dagrs_per_message");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("pipeline_3", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(pipeline.borrow_mut().run().await.expect("runs")) });
    });
    group.finish();
}

criterion_group!(benches, graph_flow, dagrs);
criterion_main!(benches);
