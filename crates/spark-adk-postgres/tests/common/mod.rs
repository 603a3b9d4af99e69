//! A PostgreSQL store in a schema of its own, dropped when the harness is dropped (also when the
//! test fails: the guard runs during unwinding).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::Arc;

use spark_adk_durable::conformance::Harness;
use spark_adk_durable::{BoxFuture, RunId, Store};
use spark_adk_postgres::{PostgresOptions, PostgresStore};
use tokio_postgres::NoTls;

/// The server the tests use: `SPARK_PG_URL`, or the machine's own (127.0.0.1:5432, database
/// `test`, user `postgres`, trust authentication).
pub fn conninfo() -> String {
    std::env::var("SPARK_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// Drops its schema (and everything in it) when dropped.
pub struct SchemaGuard {
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Drop may run inside the test's runtime: do the work on a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&conninfo(), NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.schema);
        }
    }
}

pub struct Pg {
    pub store: Arc<PostgresStore>,
    pub guard: SchemaGuard,
}

/// A fresh store in a new schema `spark_test_<random>`.
pub async fn harness() -> Pg {
    let schema = format!("spark_test_{:016x}", fastrand::u64(..));
    let guard = SchemaGuard {
        schema: schema.clone(),
    };
    let store = PostgresStore::connect(
        &conninfo(),
        PostgresOptions {
            schema,
            pool_size: 4,
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {} must answer (see README, \"Durable runs\"): {e}",
            conninfo()
        )
    });
    Pg {
        store: Arc::new(store),
        guard,
    }
}

impl Harness for Pg {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    fn overwrite_record<'a>(
        &'a self,
        run: &'a RunId,
        seq: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let client = self.store.pool().get().await.expect("connection");
            let n = client
                .execute(
                    &format!(
                        "UPDATE {}.records SET body = $3 WHERE run_id = $1 AND seq = $2",
                        self.store.schema()
                    ),
                    &[&run.as_str(), &i64::try_from(seq).expect("seq"), &bytes],
                )
                .await
                .expect("update");
            assert_eq!(n, 1, "no record {seq}");
        })
    }
}
