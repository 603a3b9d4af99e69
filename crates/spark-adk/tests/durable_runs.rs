//! Durable runs through the facade with the embedded SQLite store (the default feature).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use spark_adk::durable::testing::FailingStore;
use spark_adk::prelude::*;
use spark_adk::{Durability, DurableOptions, SqliteStore, Store};

fn counter(limit: i64) -> Graph {
    let mut g = Graph::builder();
    let step = g.add(
        "step",
        node_fn(move |ctx| async move {
            let n = ctx.inputs().content["n"].as_i64().unwrap_or(0) + 1;
            ctx.state().set(format!("seen{n}"), n);
            ctx.record_tokens(1);
            Ok(json!({ "n": n, "more": n < limit }))
        }),
    );
    g.connect(step.on("more", true) >> step);
    g.start(step).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_sqlite_commit_fails_resumes_from_the_file_to_the_same_end() {
    let dir = std::env::temp_dir().join(format!("spark-durable-runs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("runs.sqlite");
    let graph = counter(10);
    let plain = graph.run(Task::new(json!({ "n": 0 }))).await.unwrap();

    let sqlite = Arc::new(SqliteStore::open(&path).unwrap());
    let failing: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&sqlite), 6));
    let options = |store: Arc<dyn Store>| {
        DurableOptions::new(store, "count").with_durability(Durability::Sync)
    };
    let err = graph
        .run_durable(Task::new(json!({ "n": 0 })), options(failing))
        .await
        .unwrap_err();
    assert!(err.store_error().is_some(), "{err}");
    drop(sqlite);

    // As after a restart: open the file again and resume.
    let reopened: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let resumed = graph.resume(options(reopened)).await.unwrap();
    assert_eq!(resumed.content(), plain.content());
    assert_eq!(resumed.state, plain.state);
    assert_eq!(resumed.metadata.steps, plain.metadata.steps);
    assert_eq!(resumed.metadata.tokens_used, plain.metadata.tokens_used);
    assert_eq!(resumed.metadata.accepted, plain.metadata.accepted);
    std::fs::remove_dir_all(&dir).unwrap();
}
