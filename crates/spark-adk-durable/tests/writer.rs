//! The log writer: fencing between two writers of one run, and no panic outside a runtime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::json;
use spark_adk_durable::conformance::{sample_activation, sample_header};
use spark_adk_durable::*;

#[tokio::test]
async fn of_two_resumers_writing_one_run_exactly_one_proceeds() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let run = RunId::new("two-resumers");
    store.create(&sample_header(&run)).await.unwrap();
    // Both loaded the run at head 0 and resume from there.
    let first = RunLog::open(Arc::clone(&store), run.clone(), 0, Durability::Sync).unwrap();
    let second = RunLog::open(Arc::clone(&store), run.clone(), 0, Durability::Sync).unwrap();
    let resume = || {
        Record::Resume(ResumeRecord {
            activation: None,
            value: None,
            owner: None,
        })
    };
    let (a, b) = tokio::join!(first.append(resume()), second.append(resume()));
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
    let (winner, loser) = if a.is_ok() {
        (first, second)
    } else {
        (second, first)
    };
    let err = loser.failure().expect("the loser's failure is latched");
    assert!(err.is_conflict(), "{err:?}");
    // The loser stays fenced out; the winner goes on.
    assert!(loser
        .append(sample_activation(1, json!(1)))
        .await
        .unwrap_err()
        .is_conflict());
    winner.append(sample_activation(1, json!(1))).await.unwrap();
    assert_eq!(winner.close().await.unwrap(), 2);
}

#[test]
fn opening_a_log_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let err = RunLog::open(store, RunId::new("r"), 0, Durability::Async)
        .err()
        .expect("no runtime");
    assert!(
        matches!(err, DurableError::InvalidArgument { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[tokio::test]
async fn async_appends_are_all_committed_by_flush() {
    let store = Arc::new(MemoryStore::new());
    let run = RunId::new("async");
    let log = RunLog::create(store.clone(), &sample_header(&run), Durability::Async)
        .await
        .unwrap();
    for i in 1..=100 {
        log.append(sample_activation(i, json!(i))).await.unwrap();
    }
    assert_eq!(log.flush().await.unwrap(), 100);
    assert_eq!(store.load(&run).await.unwrap().head, 100);
    assert_eq!(log.durability(), Durability::Async);
}
