//! `nats_hop`: one message through a 3-node pipeline (a -> b -> c) across 2 processes (b on a
//! second connection), against a bare async-nats JetStream publish + consume + ack on the same
//! server in the same run. Needs the NATS server on 127.0.0.1:4222.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::StreamExt;
use serde_json::json;
use spark_adk_core::{node_fn, NodeError, Task};
use spark_adk_edges::GraphBuilder;
use spark_adk_nats::async_nats::jetstream::{self, consumer::pull, stream};
use spark_adk_nats::{connect, DistributedGraph, Options, Serve};

const URL: &str = "127.0.0.1:4222";

fn hop(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = format!("bench-{}", std::process::id());
    let (handle, worker) = rt.block_on(async {
        let mut g = GraphBuilder::new();
        let pass = || node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) });
        let a = g.add("a", pass());
        let b = g.add("b", pass());
        let cc = g.add("c", pass());
        g.connect(a >> b >> cc);
        let topology = Arc::new(g.start(a).build().unwrap());
        let options = Options {
            fetch_wait: Duration::from_secs(5),
            ..Options::default()
        };
        let second = DistributedGraph::new(
            connect(URL, Duration::from_secs(5)).await.unwrap(),
            Arc::clone(&topology),
            &run,
        )
        .unwrap()
        .with_options(options.clone());
        let worker = tokio::spawn(async move { second.serve(Serve::nodes(["b"])).await });
        let first = DistributedGraph::new(
            connect(URL, Duration::from_secs(5)).await.unwrap(),
            topology,
            &run,
        )
        .unwrap()
        .with_options(options);
        let handle = first
            .start(
                Task::long_running(json!({ "warm": true })),
                Serve::nodes(["a", "c"]),
            )
            .await
            .unwrap();
        (handle, worker)
    });
    let mut outputs = handle.subscribe();
    let mut group = c.benchmark_group("nats_hop");
    group.bench_function("pipeline_3_nodes_2_processes", |bch| {
        bch.iter(|| {
            rt.block_on(async {
                handle.send("a", json!({ "x": 1 })).await.unwrap();
                loop {
                    let out = outputs.recv().await.unwrap();
                    if out.message.content.get("x").is_some() {
                        break;
                    }
                }
            });
        });
    });
    let (js, consumer) = rt.block_on(async {
        let js = jetstream::new(connect(URL, Duration::from_secs(5)).await.unwrap());
        let name = format!("BENCH_BARE_{}", std::process::id());
        let s = js
            .create_stream(stream::Config {
                name: name.clone(),
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
                let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
                let msg = batch.next().await.unwrap().unwrap();
                msg.double_ack().await.unwrap();
            });
        });
    });
    group.finish();
    rt.block_on(async {
        handle.shutdown();
        let _ = handle.wait().await;
        let _ = worker.await;
        let _ = js
            .delete_stream(format!("BENCH_BARE_{}", std::process::id()))
            .await;
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = hop
}
criterion_main!(benches);
