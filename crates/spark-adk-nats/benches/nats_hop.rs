//! `nats_hop`: one message through a 3-node pipeline (a -> b -> c) across 2 processes (b on a
//! second connection), against a bare async-nats JetStream publish + consume + ack on the same
//! server in the same run; and messages/s through the pipeline with 1, 2 and 4 processes
//! (processes are tokio tasks with their own connections). Needs the NATS server on
//! 127.0.0.1:4222.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use serde_json::json;
use spark_adk_core::{node_fn, NodeError, SinkOutput, Task};
use spark_adk_edges::GraphBuilder;
use spark_adk_nats::async_nats::jetstream::{self, consumer::pull, stream};
use spark_adk_nats::{connect, DistributedGraph, DistributedRunHandle, Options, Serve};
use tokio::runtime::Runtime;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

const URL: &str = "127.0.0.1:4222";
const BATCH: u64 = 50;

type Workers = Vec<JoinHandle<Result<spark_adk_nats::WorkerSummary, spark_adk_nats::NatsError>>>;

/// The pipeline a -> b -> c on `processes` processes: 1 (the coordinator serves all), 2 (b on
/// the second), 4 (a coordinator serving nothing, one process per node).
fn start(rt: &Runtime, processes: usize) -> (DistributedRunHandle, Workers) {
    rt.block_on(async {
        let run = format!("bench-{}-{processes}", std::process::id());
        let mut g = GraphBuilder::new();
        let pass = || node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) });
        let a = g.add("a", pass());
        let b = g.add("b", pass());
        let c = g.add("c", pass());
        g.connect(a >> b >> c);
        let topology = Arc::new(g.start(a).build().unwrap());
        let options = Options {
            fetch_wait: Duration::from_secs(5),
            ..Options::default()
        };
        let graph = |client| {
            DistributedGraph::new(client, Arc::clone(&topology), &run)
                .unwrap()
                .with_options(options.clone())
        };
        let (mine, others): (Serve, Vec<Serve>) = match processes {
            1 => (Serve::All, vec![]),
            2 => (Serve::nodes(["a", "c"]), vec![Serve::nodes(["b"])]),
            _ => (
                Serve::Nothing,
                vec![
                    Serve::nodes(["a"]),
                    Serve::nodes(["b"]),
                    Serve::nodes(["c"]),
                ],
            ),
        };
        let mut workers = Vec::new();
        for serve in others {
            let g = graph(connect(URL, Duration::from_secs(5)).await.unwrap());
            workers.push(tokio::spawn(async move { g.serve(serve).await }));
        }
        let coordinator = graph(connect(URL, Duration::from_secs(5)).await.unwrap());
        let handle = coordinator
            .start(Task::long_running(json!({ "warm": true })), mine)
            .await
            .unwrap();
        (handle, workers)
    })
}

fn stop(rt: &Runtime, handle: DistributedRunHandle, workers: Workers) {
    rt.block_on(async {
        handle.shutdown();
        let _ = handle.wait().await;
        for w in workers {
            let _ = w.await;
        }
    });
}

async fn until_outputs(outputs: &mut broadcast::Receiver<SinkOutput>, n: u64) {
    let mut seen = 0;
    while seen < n {
        let out = outputs.recv().await.unwrap();
        if out.message.content.get("x").is_some() {
            seen += 1;
        }
    }
}

fn hop(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("nats_hop");

    let (handle, workers) = start(&rt, 2);
    let mut outputs = handle.subscribe();
    group.bench_function("pipeline_3_nodes_2_processes", |bch| {
        bch.iter(|| {
            rt.block_on(async {
                handle.send("a", json!({ "x": 1 })).await.unwrap();
                until_outputs(&mut outputs, 1).await;
            });
        });
    });
    stop(&rt, handle, workers);

    let (js, consumer) = rt.block_on(async {
        let js = jetstream::new(connect(URL, Duration::from_secs(5)).await.unwrap());
        let name = format!("BENCH_BARE_{}", std::process::id());
        let s = js
            .create_stream(stream::Config {
                name,
                subjects: vec![format!("bench.bare.{}", std::process::id())],
                retention: stream::RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await
            .unwrap();
        let consumer: jetstream::consumer::PullConsumer = s
            .create_consumer(pull::Config {
                durable_name: Some("bare".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .unwrap();
        (js, consumer)
    });
    let subject = format!("bench.bare.{}", std::process::id());
    group.bench_function("bare_jetstream_publish_consume_ack", |bch| {
        bch.iter(|| {
            rt.block_on(async {
                js.publish(subject.clone(), "{\"x\":1}".into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                loop {
                    let mut batch = consumer
                        .fetch()
                        .max_messages(1)
                        .expires(Duration::from_secs(5))
                        .messages()
                        .await
                        .unwrap();
                    if let Some(msg) = batch.next().await {
                        msg.unwrap().double_ack().await.unwrap();
                        break;
                    }
                }
            });
        });
    });
    rt.block_on(async {
        let _ = js
            .delete_stream(format!("BENCH_BARE_{}", std::process::id()))
            .await;
    });

    // Messages/s: BATCH messages sent back to back, until all came out of c.
    group.throughput(Throughput::Elements(BATCH));
    for processes in [1, 2, 4] {
        let (handle, workers) = start(&rt, processes);
        let mut outputs = handle.subscribe();
        group.bench_function(format!("throughput_{processes}_processes"), |bch| {
            bch.iter(|| {
                rt.block_on(async {
                    for _ in 0..BATCH {
                        handle.send("a", json!({ "x": 1 })).await.unwrap();
                    }
                    until_outputs(&mut outputs, BATCH).await;
                });
            });
        });
        stop(&rt, handle, workers);
    }
    group.finish();

    // A whole run of a one-node graph: streams created, input published, one activation,
    // quiescence detected (two polls of 20 ms), stop, reports, streams deleted.
    let mut whole = c.benchmark_group("nats_run");
    let client = rt.block_on(async { connect(URL, Duration::from_secs(5)).await.unwrap() });
    let mut g = GraphBuilder::new();
    let one = g.add("one", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
    let topology = Arc::new(g.start(one).build().unwrap());
    let mut n = 0_u64;
    whole.bench_function("one_node_run_to_quiescence", |bch| {
        bch.iter(|| {
            n += 1;
            let run = format!("bench-q-{}-{n}", std::process::id());
            rt.block_on(async {
                let graph =
                    DistributedGraph::new(client.clone(), Arc::clone(&topology), &run).unwrap();
                graph
                    .run(Task::long_running(json!({})), Serve::All)
                    .await
                    .unwrap();
            });
        });
    });
    whole.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = hop
}
criterion_main!(benches);
