//! Helpers of the tests that need the NATS server on 127.0.0.1:4222.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use spark_adk_core::{node_fn, Node, NodeError};
use spark_adk_edges::Topology;
use spark_adk_nats::{async_nats, connect, DistributedGraph, Options};

pub const URL: &str = "127.0.0.1:4222";

/// A run id no other test (or test run) uses.
pub fn unique_run(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes every stream of the run (mailboxes, records, the state and lock buckets) when dropped, also
/// when the test failed.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let run = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(client) = connect(URL, Duration::from_secs(5)).await else {
                    return;
                };
                let js = async_nats::jetstream::new(client);
                let mut names = js.stream_names();
                let mut doomed = Vec::new();
                while let Some(Ok(name)) = names.next().await {
                    if name.starts_with(&format!("SPARK_{run}_"))
                        || name.starts_with(&format!("KV_SPARK_{run}_"))
                    {
                        doomed.push(name);
                    }
                }
                for name in doomed {
                    let _ = js.delete_stream(name).await;
                }
            });
        })
        .join();
    }
}

pub async fn client() -> async_nats::Client {
    connect(URL, Duration::from_secs(10))
        .await
        .expect("the NATS server on 127.0.0.1:4222 (see .ci/run)")
}

/// Options for tests: short ack wait, heartbeat and grace.
pub fn test_options() -> Options {
    Options {
        ack_wait: Duration::from_secs(2),
        grace: Duration::from_secs(5),
        heartbeat: Duration::from_millis(100),
        fetch_wait: Duration::from_millis(500),
        ..Options::default()
    }
}

/// A graph for `run` on its own connection (a "process").
pub async fn process(topology: &Arc<Topology>, run: &str) -> DistributedGraph {
    DistributedGraph::new(client().await, Arc::clone(topology), run)
        .unwrap()
        .with_options(test_options())
}

/// Fails the test instead of hanging.
pub async fn bounded<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("the test did not finish in time")
}

/// A node that answers `{"n": n}` with `{"n": n + 1}` (`n` is 0 when missing): the generator of
/// the loop tests (`gen.when("$.outputs.n < N") >> gen`).
pub fn count_up() -> impl Node {
    node_fn(|ctx| async move {
        let n = ctx.inputs().content["n"].as_u64().unwrap_or(0);
        Ok::<_, NodeError>(json!({ "n": n + 1 }))
    })
}
