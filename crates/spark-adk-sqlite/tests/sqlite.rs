//! What only a file-backed store can show: persistence across reopening, two handles on one file,
//! and rows removed behind the store's back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use spark_adk_durable::conformance::{sample_header, sample_records};
use spark_adk_durable::{DurableError, RunId, StoreExt};
use std::sync::Arc;

use spark_adk_durable::conformance::sample_activation;
use spark_adk_durable::{Durability, RunLog, Store};
use spark_adk_sqlite::{SqliteOptions, SqliteStore};

#[tokio::test]
async fn committed_records_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let run = RunId::new("persist");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create(&sample_header(&run)).await.unwrap();
        store
            .append_records(&run, 0, &sample_records(1, 7))
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let image = store.load_run(&run).await.unwrap().replay().unwrap();
    assert_eq!(image.steps(), 7);
    assert_eq!(image.last_seq(), 7);
}

#[tokio::test]
async fn two_handles_on_one_file_fence_each_other_by_the_log_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    let run = RunId::new("shared");
    a.create(&sample_header(&run)).await.unwrap();
    let one = sample_records(1, 1);
    let (ra, rb) = tokio::join!(
        a.append_records(&run, 0, &one),
        b.append_records(&run, 0, &one),
    );
    assert_eq!(
        u8::from(ra.is_ok()) + u8::from(rb.is_ok()),
        1,
        "{ra:?} {rb:?}"
    );
    let loser = ra.err().or(rb.err()).unwrap();
    assert!(loser.is_conflict(), "{loser:?}");
}

#[tokio::test]
async fn a_record_row_deleted_behind_the_store_is_a_truncated_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("runs.db")).unwrap();
    let run = RunId::new("holes");
    store.create(&sample_header(&run)).await.unwrap();
    store
        .append_records(&run, 0, &sample_records(1, 5))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.execute("DELETE FROM spark_records WHERE seq = 3", [])
        .unwrap();
    let err = store.load_run(&run).await.unwrap_err();
    assert!(
        matches!(err, DurableError::Truncated { seq: 3, .. }),
        "{err:?}"
    );
    conn.execute("DELETE FROM spark_records WHERE seq >= 4", [])
        .unwrap();
    let err = store.load_run(&run).await.unwrap_err();
    assert!(
        matches!(err, DurableError::Truncated { seq: 3, .. }),
        "log head 5, records end at 2: {err:?}"
    );
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path().join("no-such-dir").join("runs.db"))
        .err()
        .expect("fails");
    assert!(matches!(err, DurableError::WriteFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

#[tokio::test]
async fn a_full_disk_fails_the_sync_commit_and_keeps_every_committed_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.db");
    let small = SqliteOptions {
        max_pages: Some(24),
        ..SqliteOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_with(&path, small).unwrap());
    let run = RunId::new("full");
    let log = RunLog::create(Arc::clone(&store), &sample_header(&run), Durability::Sync)
        .await
        .unwrap();
    let big = serde_json::json!("y".repeat(2000));
    let mut committed = 0;
    let err = loop {
        match log
            .append(sample_activation(committed + 1, big.clone()))
            .await
        {
            Ok(()) => committed += 1,
            Err(e) => break e,
        }
        assert!(committed < 10_000, "the size cap never bit");
    };
    assert!(matches!(err, DurableError::WriteFailed { .. }), "{err:?}");
    assert_eq!(err.seq(), Some(committed + 1), "{err}");
    assert!(err.to_string().contains("full"), "{err}");
    assert!(committed > 0);
    drop(log);
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    let image = reopened.load_run(&run).await.unwrap().replay().unwrap();
    assert_eq!(image.steps(), committed);
}
