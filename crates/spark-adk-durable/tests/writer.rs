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

/// A run interrupted by `a` on the task input, stored at head 1.
async fn interrupted_run(store: &Arc<dyn Store>, run: &RunId) {
    store.create(&sample_header(run)).await.unwrap();
    let interrupt = Record::Interrupt(InterruptRecord {
        activation: MessageId::INPUT,
        node: "a".into(),
        payload: json!({"approve?": true}),
        tokens: 0,
    });
    store.append_records(run, 0, &[interrupt]).await.unwrap();
}

#[tokio::test]
async fn resuming_an_answered_interrupt_again_is_a_conflict() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let run = RunId::new("answered");
    interrupted_run(&store, &run).await;
    let image = store.load_run(&run).await.unwrap().replay().unwrap();
    let answer = image.answer_interrupt(None, json!("yes"), None).unwrap();
    store
        .append_records(&run, image.last_seq(), &[answer])
        .await
        .unwrap();
    let image = store.load_run(&run).await.unwrap().replay().unwrap();
    assert_eq!(image.resume_value(MessageId::INPUT), Some(&json!("yes")));
    let err = image
        .answer_interrupt(None, json!("again"), None)
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(err.to_string().contains("no pending interrupt"), "{err}");
}

#[tokio::test]
async fn two_resumers_answering_one_interrupt_exactly_one_wins() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let run = RunId::new("race");
    interrupted_run(&store, &run).await;
    // Both loaded the same image before either wrote.
    let image = store.load_run(&run).await.unwrap().replay().unwrap();
    let yes = [image
        .answer_interrupt(Some(MessageId::INPUT), json!("yes"), Some("one".into()))
        .unwrap()];
    let no = [image
        .answer_interrupt(Some(MessageId::INPUT), json!("no"), Some("two".into()))
        .unwrap()];
    let (a, b) = tokio::join!(
        store.append_records(&run, image.last_seq(), &yes),
        store.append_records(&run, image.last_seq(), &no),
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
    assert!(a.err().or(b.err()).unwrap().is_conflict());
    let answered = store.load_run(&run).await.unwrap().replay().unwrap();
    assert_eq!(answered.interrupts().len(), 0);
}

#[tokio::test]
async fn a_failure_at_every_record_k_keeps_exactly_the_records_before_it() {
    use spark_adk_durable::testing::FailingStore;
    const N: u64 = 12;
    for k in 1..=N {
        for mode in [Durability::Sync, Durability::Async, Durability::Exit] {
            let inner = Arc::new(MemoryStore::new());
            let store: Arc<dyn Store> = Arc::new(FailingStore::new(Arc::clone(&inner), k));
            let run = RunId::new(format!("crash-{k}-{mode:?}"));
            let log = RunLog::create(Arc::clone(&store), &sample_header(&run), mode)
                .await
                .unwrap();
            let mut refused_at = None;
            for i in 1..=N {
                if log.append(sample_activation(i, json!(i))).await.is_err() && refused_at.is_none()
                {
                    refused_at = Some(i);
                }
            }
            let flushed = log.flush().await;
            assert!(
                matches!(flushed, Err(DurableError::WriteFailed { .. })),
                "k={k} {mode:?}: {flushed:?}"
            );
            let loaded = inner.load_run(&run).await.unwrap();
            let image = loaded.replay().unwrap();
            if mode == Durability::Sync {
                // One commit per record: exactly the records before k, and k itself is refused.
                assert_eq!(loaded.head, k - 1, "k={k}");
                assert_eq!(refused_at, Some(k), "k={k}");
            } else {
                // Batches: a prefix that ends before k (the batch holding k is not written).
                assert!(loaded.head < k, "k={k} {mode:?}: head {}", loaded.head);
            }
            assert_eq!(image.steps(), loaded.head);
            assert!(image.counts_balance());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_log_renews_its_lease_while_it_is_open_longer_than_the_ttl() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let run = RunId::new("renewed");
    store.create(&sample_header(&run)).await.unwrap();
    let ttl = std::time::Duration::from_millis(600);
    let lease = store.acquire_lease(&run, "holder", ttl).await.unwrap();
    let log = RunLog::open_leased(Arc::clone(&store), 0, Durability::Sync, lease, ttl).unwrap();
    // Three ttls long: without renewal the lease would have expired twice over.
    for i in 1..=9 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        log.append(sample_activation(i, json!(i))).await.unwrap();
        let other = store
            .acquire_lease(&run, "other", std::time::Duration::from_secs(60))
            .await;
        assert!(
            other.as_ref().is_err_and(DurableError::is_conflict),
            "after {} ms: {other:?}",
            i * 200
        );
    }
    assert_eq!(log.close().await.unwrap(), 9);
}

#[tokio::test]
async fn a_leased_log_whose_lease_was_taken_over_gets_a_conflict_on_its_next_append() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let run = RunId::new("taken-over");
    store.create(&sample_header(&run)).await.unwrap();
    let ttl = std::time::Duration::from_secs(60);
    let lease = store.acquire_lease(&run, "first", ttl).await.unwrap();
    let log =
        RunLog::open_leased(Arc::clone(&store), 0, Durability::Async, lease.clone(), ttl).unwrap();
    log.append(sample_activation(1, json!(1))).await.unwrap();
    assert_eq!(log.flush().await.unwrap(), 1);
    // Another owner takes the run over (the lease given back here; on a server, expired), and
    // writes nothing yet: the log head alone would not stop the first writer.
    store.release_lease(&lease).await.unwrap();
    store.acquire_lease(&run, "second", ttl).await.unwrap();
    log.append(sample_activation(2, json!(2))).await.unwrap();
    let err = log.flush().await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(err.to_string().contains("`first` lost the lease"), "{err}");
    assert!(log
        .append(sample_activation(3, json!(3)))
        .await
        .unwrap_err()
        .is_conflict());
    assert_eq!(store.load(&run).await.unwrap().head, 1);
}
