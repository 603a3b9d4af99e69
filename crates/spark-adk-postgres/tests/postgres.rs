//! What only the PostgreSQL store can show: the test schema's cleanup on failure, and a clear
//! error when the server cannot be reached.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use spark_adk_durable::{DurableError, Store};
use spark_adk_postgres::{PostgresOptions, PostgresStore};

async fn schema_exists(schema: &str) -> bool {
    let (client, conn) = tokio_postgres::connect(&common::conninfo(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
            &[&schema],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_schema_is_dropped_even_when_the_test_fails() {
    let h = common::harness().await;
    let schema = h.guard.schema.clone();
    assert!(schema_exists(&schema).await);
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _h = h;
        panic!("a failing test");
    }));
    assert!(failed.is_err());
    assert!(!schema_exists(&schema).await, "schema {schema} left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_typed_error() {
    // Port 1 on loopback: nothing listens there.
    let err = PostgresStore::connect(
        "host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=2",
        PostgresOptions::default(),
    )
    .await
    .err()
    .expect("no server");
    assert!(
        matches!(
            err,
            DurableError::ReadFailed { .. } | DurableError::WriteFailed { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_name_that_is_not_a_plain_identifier_is_refused() {
    let err = PostgresStore::connect(
        &common::conninfo(),
        PostgresOptions {
            schema: "x; DROP TABLE y".into(),
            pool_size: 1,
        },
    )
    .await
    .err()
    .expect("refused");
    assert!(
        matches!(err, DurableError::InvalidArgument { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_schema_see_the_same_runs() {
    let h = common::harness().await;
    let other = PostgresStore::connect(
        &common::conninfo(),
        PostgresOptions {
            schema: h.guard.schema.clone(),
            pool_size: 2,
        },
    )
    .await
    .unwrap();
    let run = spark_adk_durable::RunId::new("shared");
    use spark_adk_durable::StoreExt;
    h.store
        .create(&spark_adk_durable::conformance::sample_header(&run))
        .await
        .unwrap();
    other
        .append_records(
            &run,
            0,
            &spark_adk_durable::conformance::sample_records(1, 2),
        )
        .await
        .unwrap();
    assert_eq!(h.store.load(&run).await.unwrap().head, 2);
    let err = h
        .store
        .append_records(
            &run,
            0,
            &spark_adk_durable::conformance::sample_records(1, 1),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_by_the_server_loses_nothing_committed() {
    use spark_adk_durable::conformance::{sample_header, sample_records};
    use spark_adk_durable::StoreExt;
    let h = common::harness().await;
    let run = spark_adk_durable::RunId::new("killed");
    h.store.create(&sample_header(&run)).await.unwrap();
    h.store
        .append_records(&run, 0, &sample_records(1, 3))
        .await
        .unwrap();
    // Kill every server process serving this test's pool.
    let (admin, conn) = tokio_postgres::connect(&common::conninfo(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let pids: Vec<i32> = {
        let client = h.store.pool().get().await.unwrap();
        let row = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap();
        vec![row.get(0)]
    };
    for pid in &pids {
        admin
            .execute("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .unwrap();
    }
    // The next write either fails as a write failure naming the run and record, or runs on a
    // fresh connection; it never panics, and what was committed stays.
    let mut head = 3;
    for attempt in 0..3 {
        match h
            .store
            .append_records(&run, head, &sample_records(head + 1, head + 1))
            .await
        {
            Ok(new_head) => {
                head = new_head;
                break;
            }
            Err(e) => {
                assert!(
                    matches!(e, DurableError::WriteFailed { seq: 4, .. }),
                    "attempt {attempt}: {e:?}"
                );
                assert_eq!(e.run(), &run);
                eprintln!("attempt {attempt} failed as expected: {e}");
            }
        }
    }
    assert_eq!(head, 4, "the pool replaced the killed connection");
    let image = h.store.load_run(&run).await.unwrap().replay().unwrap();
    assert_eq!(image.steps(), 4);
}

/// A writer holding a short lease on the real server, open three times its ttl: it renews the
/// lease (by the server's clock), so a second owner is refused all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_renews_its_lease_on_the_server_and_keeps_a_second_resumer_out() {
    use spark_adk_durable::conformance::{sample_activation, sample_header};
    use spark_adk_durable::{Durability, RunLog, StoreExt};
    use std::time::Duration;
    let h = common::harness().await;
    let store: std::sync::Arc<dyn Store> = h.store.clone();
    let run = spark_adk_durable::RunId::new("renewed");
    store.create(&sample_header(&run)).await.unwrap();
    let ttl = Duration::from_millis(900);
    let lease = store.acquire_lease(&run, "holder", ttl).await.unwrap();
    let log = RunLog::open_leased(store.clone(), 0, Durability::Sync, lease, ttl).unwrap();
    for i in 1..=9u64 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        log.append(sample_activation(i, serde_json::json!(i)))
            .await
            .unwrap();
        let other = store
            .acquire_lease(&run, "other", Duration::from_secs(60))
            .await;
        assert!(
            other.as_ref().is_err_and(DurableError::is_conflict),
            "after {} ms: {other:?}",
            i * 300
        );
    }
    assert_eq!(log.close().await.unwrap(), 9);
}

/// A writer whose lease expired on the server (a stalled process: no renewal in time) and was
/// acquired by another owner gets a conflict on its next append, although the new owner has
/// written nothing yet; the new owner goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_lease_was_taken_over_on_the_server_gets_a_conflict_on_its_next_append() {
    use spark_adk_durable::conformance::{sample_activation, sample_header, sample_records};
    use spark_adk_durable::{Durability, RunLog, StoreExt};
    use std::time::Duration;
    let h = common::harness().await;
    let store: std::sync::Arc<dyn Store> = h.store.clone();
    let run = spark_adk_durable::RunId::new("taken-over");
    store.create(&sample_header(&run)).await.unwrap();
    let ttl = Duration::from_secs(60);
    let first = store.acquire_lease(&run, "first", ttl).await.unwrap();
    let log = RunLog::open_leased(store.clone(), 0, Durability::Sync, first, ttl).unwrap();
    log.append(sample_activation(1, serde_json::json!(1)))
        .await
        .unwrap();
    // The first writer stalls past its lease: expire it on the server, as time would.
    let client = h.store.pool().get().await.unwrap();
    client
        .execute(
            &format!(
                "UPDATE {}.runs SET lease_expires = clock_timestamp() - interval '1 second' WHERE run_id = $1",
                h.store.schema()
            ),
            &[&run.as_str()],
        )
        .await
        .unwrap();
    let second = store.acquire_lease(&run, "second", ttl).await.unwrap();
    let err = log
        .append(sample_activation(2, serde_json::json!(2)))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(err.to_string().contains("`first` lost the lease"), "{err}");
    let _ = log.close().await;
    assert_eq!(store.load(&run).await.unwrap().head, 1);
    assert_eq!(
        store
            .append_records_leased(&run, 1, &sample_records(2, 2), &second)
            .await
            .unwrap(),
        2
    );
}
