//! The store conformance suite against SQLite, one temporary database file per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use spark_adk_durable::conformance::Harness;
use spark_adk_durable::{BoxFuture, RunId, Store};
use spark_adk_sqlite::SqliteStore;

struct Sqlite {
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

fn harness() -> Sqlite {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path().join("runs.db")).expect("open"));
    Sqlite { store, _dir: dir }
}

impl Harness for Sqlite {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Writes the bytes straight into the database file through a second connection.
    fn overwrite_record<'a>(
        &'a self,
        run: &'a RunId,
        seq: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let conn = rusqlite::Connection::open(self.store.path()).expect("open");
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .expect("busy timeout");
            let n = conn
                .execute(
                    "UPDATE spark_records SET body = ?3 WHERE run_id = ?1 AND seq = ?2",
                    rusqlite::params![run.as_str(), i64::try_from(seq).expect("seq"), bytes],
                )
                .expect("update");
            assert_eq!(n, 1, "no record {seq}");
        })
    }
}

spark_adk_durable::conformance_tests!(harness());
