//! The store conformance suite: one async function per behaviour every [`Store`] must have, and
//! [`conformance_tests!`](crate::conformance_tests) to turn them into `#[tokio::test]`s in a store
//! crate.
//!
//! A store crate implements [`Harness`] (a fresh, empty store per test, plus a way to overwrite a
//! stored record's bytes to simulate corruption) and writes, in a test file:
//!
//! ```text
//! struct MyHarness { store: Arc<MyStore> }
//! impl spark_adk_durable::conformance::Harness for MyHarness { /* ... */ }
//! async fn harness() -> MyHarness { /* a fresh store */ }
//! spark_adk_durable::conformance_tests!(harness().await);
//! ```
//!
//! The test file needs `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use spark_adk_core::NodeMessage;

use crate::store::{BoxFuture, Store, StoreExt};
use crate::testing::FailingStore;
use crate::{
    ActivationRecord, Durability, DurableError, EdgeShape, Fingerprint, MessageId, Record,
    RoutedMessage, RunHeader, RunId, RunLog, RunMode, StateChange, StopRecord, TopologyShape,
};

/// What the suite needs from a store crate: a fresh store, and raw access to corrupt one record.
pub trait Harness: Send + Sync {
    /// The store under test (empty when the harness was made).
    fn store(&self) -> Arc<dyn Store>;

    /// Overwrites the stored bytes of record `seq` of `run` directly in the backend (the database
    /// file, the table), bypassing the store's API.
    fn overwrite_record<'a>(
        &'a self,
        run: &'a RunId,
        seq: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, ()>;
}

/// The topology of the sample runs: one node `a` with an edge to itself.
pub fn sample_fingerprint() -> Fingerprint {
    Fingerprint::of(TopologyShape {
        nodes: vec!["a".into()],
        edges: vec![EdgeShape::new("a", "a", "always")],
        start: "a".into(),
    })
}

/// A sample header for `run`.
pub fn sample_header(run: &RunId) -> RunHeader {
    RunHeader {
        created_at_ms: 1_700_000_000_000,
        ..RunHeader::new(
            run.clone(),
            sample_fingerprint(),
            RunMode::Standard,
            NodeMessage::from(json!({"n": 0})),
        )
    }
}

/// Activation `i` (from 1) of the sample run: `a` consumes message `i - 1`, routes message `i` to
/// itself, records `tokens = i` and sets state key `k{i}` to `value`.
pub fn sample_activation(i: u64, value: Value) -> Record {
    Record::Activation(ActivationRecord {
        activation: MessageId(i - 1),
        node: "a".into(),
        attempt: 1,
        routed: vec![RoutedMessage {
            id: MessageId(i),
            target: "a".into(),
            message: NodeMessage::from(json!({ "n": i })),
        }],
        sink: None,
        state: vec![StateChange::Set {
            key: format!("k{i}"),
            value,
        }],
        tokens: i,
    })
}

/// Records `from..=to` of the sample run.
pub fn sample_records(from: u64, to: u64) -> Vec<Record> {
    (from..=to)
        .map(|i| sample_activation(i, json!(i)))
        .collect()
}

async fn created(h: &dyn Harness, run: &str) -> (Arc<dyn Store>, RunId) {
    let store = h.store();
    let run = RunId::new(run);
    store
        .create(&sample_header(&run))
        .await
        .expect("create run");
    (store, run)
}

/// Appended records load back byte for byte, with the header, in order.
pub async fn append_then_load_round_trips(h: &dyn Harness) {
    let (store, run) = created(h, "round-trip").await;
    let first = sample_records(1, 3);
    assert_eq!(
        store.append_records(&run, 0, &first).await.expect("append"),
        3
    );
    let second = sample_records(4, 5);
    assert_eq!(
        store
            .append_records(&run, 3, &second)
            .await
            .expect("append"),
        5
    );
    let loaded = store.load_run(&run).await.expect("load");
    assert_eq!(loaded.header, sample_header(&run));
    assert_eq!(loaded.head, 5);
    let records: Vec<Record> = loaded.records.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(records, sample_records(1, 5));
    let image = loaded.replay().expect("replay");
    assert_eq!(image.steps(), 5);
    assert_eq!(image.tokens(), 15);
    assert_eq!(image.state().len(), 5);
    assert_eq!(
        image.pending().map(|m| m.id).collect::<Vec<_>>(),
        vec![MessageId(5)]
    );
}

/// An append that expects a head that has moved is a conflict and writes nothing.
pub async fn append_with_a_stale_head_is_a_conflict(h: &dyn Harness) {
    let (store, run) = created(h, "stale-head").await;
    store
        .append_records(&run, 0, &sample_records(1, 2))
        .await
        .expect("append");
    let err = store
        .append_records(&run, 1, &sample_records(2, 2))
        .await
        .expect_err("head is 2, not 1");
    assert!(err.is_conflict(), "{err:?}");
    assert_eq!(err.run(), &run);
    assert_eq!(store.load(&run).await.expect("load").head, 2);
}

/// Two writers appending on the same head at the same time: exactly one succeeds.
pub async fn concurrent_appends_on_one_head_let_exactly_one_win(h: &dyn Harness) {
    let (store, run) = created(h, "race").await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, run) = (Arc::clone(&store), run.clone());
        tasks.push(tokio::spawn(async move {
            store.append_records(&run, 0, &sample_records(1, 1)).await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(head) => {
                assert_eq!(head, 1);
                wins += 1;
            }
            Err(e) => assert!(e.is_conflict(), "{e:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.load(&run).await.expect("load").records.len(), 1);
}

/// Creating a run twice is a conflict; loading or appending to an unknown run is `NotFound`.
pub async fn a_run_exists_once_and_unknown_runs_are_not_found(h: &dyn Harness) {
    let (store, run) = created(h, "once").await;
    let err = store
        .create(&sample_header(&run))
        .await
        .expect_err("exists");
    assert!(err.is_conflict(), "{err:?}");
    let ghost = RunId::new("ghost");
    assert!(matches!(
        store.load(&ghost).await,
        Err(DurableError::NotFound { .. })
    ));
    assert!(matches!(
        store.append(&ghost, 0, vec![b"{}".to_vec()]).await,
        Err(DurableError::NotFound { .. })
    ));
}

/// Two owners take the lease at the same time: exactly one gets it.
pub async fn two_concurrent_lease_takers_exactly_one_wins(h: &dyn Harness) {
    let (store, run) = created(h, "lease-race").await;
    let mut tasks = Vec::new();
    for owner in ["one", "two", "three"] {
        let (store, run) = (Arc::clone(&store), run.clone());
        tasks.push(tokio::spawn(async move {
            store
                .acquire_lease(&run, owner, Duration::from_secs(60))
                .await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(lease) => winners.push(lease.owner),
            Err(e) => assert!(e.is_conflict(), "{e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
}

/// A lease blocks other owners until it expires; then another owner takes over and the first
/// cannot renew.
pub async fn an_expired_lease_lets_another_owner_take_over(h: &dyn Harness) {
    let (store, run) = created(h, "lease-expiry").await;
    let first = store
        .acquire_lease(&run, "first", Duration::from_millis(1500))
        .await
        .expect("free lease");
    let err = store
        .acquire_lease(&run, "second", Duration::from_secs(60))
        .await
        .expect_err("held");
    assert!(
        err.to_string().contains("first"),
        "the conflict names the holder: {err}"
    );
    // The store's clock decides expiry (the database's, for a server), so this waits real time.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let second = store
        .acquire_lease(&run, "second", Duration::from_secs(60))
        .await
        .expect("expired lease is free");
    assert!(second.epoch > first.epoch);
    assert!(store
        .renew_lease(&first, Duration::from_secs(60))
        .await
        .expect_err("lost")
        .is_conflict());
    store
        .renew_lease(&second, Duration::from_secs(60))
        .await
        .expect("holder renews");
}

/// A leased append needs the run's current lease: the holder appends; once its lease is given
/// back and another owner acquired it, the first holder's append is a conflict that writes
/// nothing, and the new holder appends; a lease of another run is refused.
pub async fn a_leased_append_needs_the_lease_it_names(h: &dyn Harness) {
    let (store, run) = created(h, "fenced").await;
    let first = store
        .acquire_lease(&run, "first", Duration::from_secs(60))
        .await
        .expect("free lease");
    assert_eq!(
        store
            .append_records_leased(&run, 0, &sample_records(1, 2), &first)
            .await
            .expect("the holder appends"),
        2
    );
    store.release_lease(&first).await.expect("release");
    let err = store
        .append_records_leased(&run, 2, &sample_records(3, 3), &first)
        .await
        .expect_err("a released lease fences nothing in");
    assert!(err.is_conflict(), "{err:?}");
    let second = store
        .acquire_lease(&run, "second", Duration::from_secs(60))
        .await
        .expect("released lease");
    let err = store
        .append_records_leased(&run, 2, &sample_records(3, 3), &first)
        .await
        .expect_err("taken over");
    assert!(err.is_conflict(), "{err:?}");
    assert!(err.to_string().contains("`first` lost the lease"), "{err}");
    assert_eq!(store.load(&run).await.expect("load").head, 2);
    assert_eq!(
        store
            .append_records_leased(&run, 2, &sample_records(3, 3), &second)
            .await
            .expect("the new holder appends"),
        3
    );
    // The fence and the head are checked together: the holder with a stale head is refused.
    let stale = store
        .append_records_leased(&run, 2, &sample_records(3, 3), &second)
        .await
        .expect_err("stale head");
    assert!(stale.is_conflict(), "{stale:?}");
    let (_, other) = created(h, "fenced-other").await;
    let foreign = store
        .append_records_leased(&other, 0, &sample_records(1, 1), &second)
        .await
        .expect_err("a lease of another run");
    assert!(
        matches!(foreign, DurableError::InvalidArgument { .. }),
        "{foreign:?}"
    );
}

/// A run created holding its lease (`create_run_leased`): its header loads back, its lease is
/// held from the start (another owner is refused, the holder's leased appends go through), and
/// creating it again is a conflict that leaves the lease alone.
pub async fn a_run_created_with_its_lease_is_held_from_the_start(h: &dyn Harness) {
    let store = h.store();
    let run = RunId::new("created-leased");
    let lease = store
        .create_leased(&sample_header(&run), "creator", Duration::from_secs(60))
        .await
        .expect("created with its lease");
    assert_eq!(lease.owner, "creator");
    assert_eq!(lease.run_id, run);
    let loaded = store.load_run(&run).await.expect("load");
    assert_eq!(loaded.header, sample_header(&run));
    assert_eq!(loaded.head, 0);
    let err = store
        .acquire_lease(&run, "other", Duration::from_secs(60))
        .await
        .expect_err("held from the start");
    assert!(err.to_string().contains("creator"), "{err}");
    let again = store
        .create_leased(&sample_header(&run), "other", Duration::from_secs(60))
        .await
        .expect_err("exists");
    assert!(again.is_conflict(), "{again:?}");
    assert_eq!(
        store
            .append_records_leased(&run, 0, &sample_records(1, 2), &lease)
            .await
            .expect("the creator appends"),
        2
    );
    let renewed = store
        .renew_lease(&lease, Duration::from_secs(60))
        .await
        .expect("the creator renews");
    assert_eq!(renewed.epoch, lease.epoch);
    assert!(matches!(
        store
            .create_leased(&sample_header(&RunId::new("zero")), "z", Duration::ZERO)
            .await,
        Err(DurableError::InvalidArgument { .. })
    ));
}

/// A released lease is free at once; a zero duration is refused.
pub async fn a_released_lease_is_free_and_a_zero_lease_is_refused(h: &dyn Harness) {
    let (store, run) = created(h, "lease-release").await;
    let lease = store
        .acquire_lease(&run, "first", Duration::from_secs(60))
        .await
        .expect("free");
    store.release_lease(&lease).await.expect("release");
    store
        .acquire_lease(&run, "second", Duration::from_secs(60))
        .await
        .expect("released");
    assert!(matches!(
        store.acquire_lease(&run, "third", Duration::ZERO).await,
        Err(DurableError::InvalidArgument { .. })
    ));
}

/// Runs are listed by id with their heads, and a deleted run is gone.
pub async fn runs_are_listed_and_deleted(h: &dyn Harness) {
    let store = h.store();
    for id in ["b-run", "a-run", "c-run"] {
        store
            .create(&sample_header(&RunId::new(id)))
            .await
            .expect("create");
    }
    store
        .append_records(&RunId::new("b-run"), 0, &sample_records(1, 2))
        .await
        .expect("append");
    let list = store.list_runs().await.expect("list");
    let ids: Vec<(&str, u64)> = list.iter().map(|s| (s.run_id.as_str(), s.head)).collect();
    assert_eq!(ids, vec![("a-run", 0), ("b-run", 2), ("c-run", 0)]);
    assert!(store
        .delete_run(&RunId::new("b-run"))
        .await
        .expect("delete"));
    assert!(!store
        .delete_run(&RunId::new("b-run"))
        .await
        .expect("delete again"));
    assert!(matches!(
        store.load(&RunId::new("b-run")).await,
        Err(DurableError::NotFound { .. })
    ));
    assert_eq!(store.list_runs().await.expect("list").len(), 2);
    // The id is free again, with an empty log.
    store
        .create(&sample_header(&RunId::new("b-run")))
        .await
        .expect("re-create");
    assert_eq!(
        store.load(&RunId::new("b-run")).await.expect("load").head,
        0
    );
}

/// A snapshot compacts the log: load returns it plus the later records only, replay from it
/// equals replay of the whole log, and appends continue after the head.
pub async fn a_snapshot_compacts_the_log(h: &dyn Harness) {
    let (store, run) = created(h, "snapshot").await;
    store
        .append_records(&run, 0, &sample_records(1, 10))
        .await
        .expect("append");
    let full = store
        .load_run(&run)
        .await
        .expect("load")
        .replay()
        .expect("replay");
    let mut at6 = store.load_run(&run).await.expect("load");
    at6.records.truncate(6);
    let image6 = at6.replay().expect("replay to 6");
    store.snapshot_image(&image6).await.expect("snapshot");
    let loaded = store.load_run(&run).await.expect("load");
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.at), Some(6));
    assert_eq!(
        loaded.records.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![7, 8, 9, 10]
    );
    assert_eq!(loaded.replay().expect("replay"), full);
    assert!(store.stored_bytes(&run).await.expect("bytes") > 0);
    assert_eq!(
        store
            .append_records(&run, 10, &sample_records(11, 11))
            .await
            .expect("append"),
        11
    );
    let err = store
        .write_snapshot(&run, 99, b"{}".to_vec())
        .await
        .expect_err("beyond head");
    assert!(err.is_conflict(), "{err:?}");
}

/// Compacting a run (`StoreExt::compact`) keeps its image exactly, drops the records the
/// snapshot covers (fewer bytes stored), and the log goes on after it; compacting again later
/// covers the new records, and a run with nothing new is left as it is.
pub async fn compacting_a_run_keeps_its_image_and_drops_its_records(h: &dyn Harness) {
    let (store, run) = created(h, "compact").await;
    let value = json!("y".repeat(64));
    let records: Vec<Record> = (1..=100)
        .map(|i| sample_activation(i, value.clone()))
        .collect();
    store
        .append_records(&run, 0, &records)
        .await
        .expect("append");
    let before = store
        .load_run(&run)
        .await
        .expect("load")
        .replay()
        .expect("replay");
    let bytes_before = store.stored_bytes(&run).await.expect("bytes");
    assert_eq!(store.compact(&run).await.expect("compact"), 100);
    let loaded = store.load_run(&run).await.expect("load");
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.at), Some(100));
    assert!(loaded.records.is_empty(), "{:?}", loaded.records.len());
    assert_eq!(loaded.head, 100);
    assert_eq!(loaded.replay().expect("replay"), before);
    let bytes_after = store.stored_bytes(&run).await.expect("bytes");
    assert!(
        bytes_after < bytes_before,
        "{bytes_after} B after compaction, {bytes_before} B before"
    );
    // The log goes on after the snapshot, and the next compaction covers the new records.
    assert_eq!(
        store
            .append_records(&run, 100, &sample_records(101, 110))
            .await
            .expect("append after the snapshot"),
        110
    );
    assert_eq!(store.compact(&run).await.expect("compact again"), 110);
    assert_eq!(store.compact(&run).await.expect("nothing new"), 110);
    let image = store
        .load_run(&run)
        .await
        .expect("load")
        .replay()
        .expect("replay");
    assert_eq!(image.steps(), 110);
    assert_eq!(image.state().len(), 110);
    assert_eq!(image.last_seq(), 110);
    assert!(matches!(
        store.compact(&RunId::new("ghost")).await,
        Err(DurableError::NotFound { .. })
    ));
}

/// A record whose stored bytes are not JSON is reported naming the run and the record.
pub async fn a_corrupt_record_is_reported_with_run_and_sequence(h: &dyn Harness) {
    let (store, run) = created(h, "corrupt").await;
    store
        .append_records(&run, 0, &sample_records(1, 3))
        .await
        .expect("append");
    h.overwrite_record(&run, 2, b"{\"v\":1,\"kind\":\"activ\x00\xff".to_vec())
        .await;
    let err = store.load_run(&run).await.expect_err("corrupt");
    assert_eq!(err.run(), &run);
    assert_eq!(err.seq(), Some(2), "{err:?}");
    assert!(err.to_string().contains("run `corrupt`, record 2"), "{err}");
}

/// A record of another format version is refused, naming the version.
pub async fn a_record_of_an_unknown_format_version_is_refused(h: &dyn Harness) {
    let (store, run) = created(h, "version").await;
    store
        .append_records(&run, 0, &sample_records(1, 2))
        .await
        .expect("append");
    h.overwrite_record(
        &run,
        1,
        br#"{"v":7,"kind":"stop","reason":"completed"}"#.to_vec(),
    )
    .await;
    let err = store.load_run(&run).await.expect_err("v7");
    assert!(
        matches!(
            err,
            DurableError::UnknownFormatVersion {
                found: 7,
                seq: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Sync mode: a failed commit returns the error, later appends are refused, and every record
/// committed before it is still there and replays.
pub async fn a_failed_sync_commit_loses_nothing_committed(h: &dyn Harness) {
    let inner = h.store();
    let run = RunId::new("fail-sync");
    let store: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&inner), 3));
    let log = RunLog::create(Arc::clone(&store), &sample_header(&run), Durability::Sync)
        .await
        .expect("create");
    for r in sample_records(1, 2) {
        log.append(r).await.expect("commits");
    }
    let err = log
        .append(sample_activation(3, json!(3)))
        .await
        .expect_err("injected");
    assert!(
        matches!(err, DurableError::WriteFailed { seq: 3, .. }),
        "{err:?}"
    );
    let later = log
        .append(sample_activation(4, json!(4)))
        .await
        .expect_err("refused");
    assert!(
        matches!(later, DurableError::WriteFailed { seq: 3, .. }),
        "{later:?}"
    );
    let loaded = inner.load_run(&run).await.expect("load");
    assert_eq!(loaded.head, 2);
    assert_eq!(loaded.replay().expect("replay").steps(), 2);
}

/// Async mode: after a failed batch the stored log is a prefix of what was appended, and it
/// replays.
pub async fn an_async_log_is_always_a_consistent_prefix(h: &dyn Harness) {
    let inner = h.store();
    let run = RunId::new("fail-async");
    let store: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&inner), 5).and_after());
    let log = RunLog::create(Arc::clone(&store), &sample_header(&run), Durability::Async)
        .await
        .expect("create");
    for r in sample_records(1, 50) {
        // Appends after the failure is known are refused; earlier ones return at once.
        let _ = log.append(r).await;
    }
    assert!(matches!(
        log.flush().await,
        Err(DurableError::WriteFailed { .. })
    ));
    let loaded = inner.load_run(&run).await.expect("load");
    assert!(loaded.head < 5, "head {}", loaded.head);
    let kept: Vec<Record> = loaded.records.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(kept, sample_records(1, loaded.head));
    loaded.replay().expect("a prefix replays");
}

/// Exit mode writes nothing until flush; Sync mode's record is loadable when `append` returns;
/// concurrent Sync appends share commits and all land.
pub async fn durability_modes_commit_when_they_promise(h: &dyn Harness) {
    let store = h.store();
    let exit = RunId::new("mode-exit");
    let log = RunLog::create(Arc::clone(&store), &sample_header(&exit), Durability::Exit)
        .await
        .expect("create");
    for r in sample_records(1, 5) {
        log.append(r).await.expect("buffered");
    }
    tokio::task::yield_now().await;
    assert_eq!(store.load(&exit).await.expect("load").head, 0);
    assert_eq!(log.close().await.expect("close"), 5);
    assert_eq!(store.load(&exit).await.expect("load").head, 5);

    let sync = RunId::new("mode-sync");
    let log = Arc::new(
        RunLog::create(Arc::clone(&store), &sample_header(&sync), Durability::Sync)
            .await
            .expect("create"),
    );
    log.append(sample_activation(1, json!(1)))
        .await
        .expect("commit");
    assert_eq!(store.load(&sync).await.expect("load").head, 1);
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            log.append(Record::Stop(if i % 2 == 0 {
                StopRecord::Completed
            } else {
                StopRecord::Shutdown
            }))
            .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("commit");
    }
    assert_eq!(store.load(&sync).await.expect("load").head, 21);
}

/// Storage grows linearly: 1,000 activations each adding a state key write O(steps) bytes (the
/// second 500 cost about what the first 500 did), never the whole state per step.
pub async fn storage_grows_linearly_with_the_run(h: &dyn Harness) {
    let store = h.store();
    let run = RunId::new("linear");
    let log = RunLog::create(Arc::clone(&store), &sample_header(&run), Durability::Async)
        .await
        .expect("create");
    let header = store.stored_bytes(&run).await.expect("bytes");
    let value = json!("x".repeat(64));
    for i in 1..=500 {
        log.append(sample_activation(i, value.clone()))
            .await
            .expect("append");
    }
    log.flush().await.expect("flush");
    let half = store.stored_bytes(&run).await.expect("bytes") - header;
    for i in 501..=1000 {
        log.append(sample_activation(i, value.clone()))
            .await
            .expect("append");
    }
    log.close().await.expect("close");
    let full = store.stored_bytes(&run).await.expect("bytes") - header;
    let second = full - half;
    // Whole-state records would make the second half about 3x the first.
    assert!(
        second * 10 <= half * 12,
        "first 500: {half} B, second 500: {second} B"
    );
    assert!(full <= 1000 * 400, "{full} B for 1,000 steps");
    let image = store
        .load_run(&run)
        .await
        .expect("load")
        .replay()
        .expect("replay");
    assert_eq!(image.state().len(), 1000);
}

/// Expands to one `#[tokio::test]` per case of [`crate::conformance`], each calling it with the
/// harness `$harness` evaluates to (the expression may `.await`). Needs `tokio` with `macros` and
/// `rt-multi-thread` in the calling crate's dev-dependencies.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            append_then_load_round_trips,
            append_with_a_stale_head_is_a_conflict,
            concurrent_appends_on_one_head_let_exactly_one_win,
            a_run_exists_once_and_unknown_runs_are_not_found,
            two_concurrent_lease_takers_exactly_one_wins,
            an_expired_lease_lets_another_owner_take_over,
            a_released_lease_is_free_and_a_zero_lease_is_refused,
            a_leased_append_needs_the_lease_it_names,
            a_run_created_with_its_lease_is_held_from_the_start,
            runs_are_listed_and_deleted,
            a_snapshot_compacts_the_log,
            compacting_a_run_keeps_its_image_and_drops_its_records,
            a_corrupt_record_is_reported_with_run_and_sequence,
            a_record_of_an_unknown_format_version_is_refused,
            a_failed_sync_commit_loses_nothing_committed,
            an_async_log_is_always_a_consistent_prefix,
            durability_modes_commit_when_they_promise,
            storage_grows_linearly_with_the_run,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::conformance::$case(&harness).await;
            }
        )*
    };
}
