//! A broker that goes away and comes back in the middle of a run: a private nats-server (the
//! same binary as the machine's, on its own port and store directory), killed and restarted.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use spark_adk_core::{node_fn, Budget, NodeError, StopReason, Task};
use spark_adk_edges::GraphBuilder;
use spark_adk_nats::{connect, DistributedGraph, Options, Serve};

fn nats_server() -> std::path::PathBuf {
    for candidate in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("nats-server not found: this test starts its own (Debian: apt-get install nats-server)");
}

fn start_server(port: u16, store: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(nats_server())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting a private nats-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_run_is_survived_and_every_message_is_counted_once() {
    let port = 20000 + (std::process::id() % 20000) as u16;
    let store = std::env::temp_dir().join(format!("spark-nats-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store);
    let url = format!("127.0.0.1:{port}");
    let mut server = start_server(port, &store);
    let outcome = tokio::time::timeout(Duration::from_secs(90), async {
        let processed = Arc::new(AtomicU64::new(0));
        let mut g = GraphBuilder::new();
        let p = Arc::clone(&processed);
        let a = g.add(
            "a",
            node_fn(move |ctx| {
                let p = Arc::clone(&p);
                async move {
                    if !ctx.is_shutdown() {
                        p.fetch_add(1, Ordering::SeqCst);
                    }
                    let n = ctx.inputs().content["n"].as_u64().unwrap_or(0);
                    Ok::<_, NodeError>(json!({ "n": n + 1 }))
                }
            }),
        );
        let b = g.add(
            "b",
            node_fn(|ctx| async move { Ok::<_, NodeError>(ctx.inputs().clone()) }),
        );
        g.connect(a >> b);
        g.connect(b.when("$.outputs.n < 2000") >> a);
        let topology = Arc::new(g.start(a).build().unwrap());
        let options = Options {
            ack_wait: Duration::from_secs(2),
            grace: Duration::from_secs(5),
            fetch_wait: Duration::from_millis(300),
            ..Options::default()
        };
        let worker = DistributedGraph::new(
            connect(&url, Duration::from_secs(10)).await.unwrap(),
            Arc::clone(&topology),
            "restart",
        )
        .unwrap()
        .with_options(options.clone());
        let worker = tokio::spawn(async move { worker.serve(Serve::nodes(["b"])).await });
        let coordinator = DistributedGraph::new(
            connect(&url, Duration::from_secs(10)).await.unwrap(),
            topology,
            "restart",
        )
        .unwrap()
        .with_options(options);
        let task =
            Task::long_running(json!({ "n": 0 })).with_budget(Budget::seconds(60.0).unwrap());
        let run = tokio::spawn(async move { coordinator.run(task, Serve::nodes(["a"])).await });
        // Let it run, take the broker away for a second, bring it back (same store).
        tokio::time::sleep(Duration::from_millis(700)).await;
        let before = processed.load(Ordering::SeqCst);
        assert!(
            before > 0 && before < 2000,
            "the run was going when the broker went away: {before}"
        );
        server.kill().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        server = start_server(port, &store);
        let result = run.await.unwrap().unwrap();
        worker.await.unwrap().unwrap();
        let m = &result.metadata;
        assert_eq!(m.stop_reason, StopReason::Completed);
        assert_eq!(result.content()["n"], 2000);
        // Each message's effect counted once, though a node may have run again (the broker
        // forgets the ids of deleted messages when it restarts; the coordinator does not).
        assert_eq!(m.processed_by("a"), Some(2000));
        assert_eq!(m.processed_by("b"), Some(2000));
        assert!(processed.load(Ordering::SeqCst) >= 2000);
        assert_eq!((m.accepted, m.unprocessed), (m.processed, 0));
    })
    .await;
    let _ = server.kill().await;
    let _ = std::fs::remove_dir_all(&store);
    outcome.expect("the run ended in time");
}
