//! [`FailingStore`]: a fault-injecting wrapper for crash tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{DurableError, StoreFailure};
use crate::record::RunId;
use crate::store::{BoxFuture, Lease, RunSummary, Store, StoredLog};

/// Wraps a store and fails the append that would write the `k`-th record (records counted from
/// 1 over the wrapper's life, all runs together), as a full disk or a lost connection would:
/// that call writes nothing and returns [`DurableError::WriteFailed`]. With
/// [`FailingStore::and_after`], every later append fails too (the disk stays full).
///
/// Crash-at-every-record tests run a graph once per `k`, then resume from the inner store.
///
/// ```
/// use spark_adk_durable::{testing::FailingStore, DurableError, MemoryStore, RunId, Store};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = FailingStore::new(MemoryStore::new(), 2);
/// let run = RunId::new("r");
/// store.create_run(&run, b"{}".to_vec()).await?;
/// assert_eq!(store.append(&run, 0, vec![b"1".to_vec()]).await?, 1);
/// let err = store.append(&run, 1, vec![b"2".to_vec()]).await.unwrap_err();
/// assert!(matches!(err, DurableError::WriteFailed { seq: 2, .. }));
/// assert_eq!(store.inner().load(&run).await?.head, 1); // nothing of the failed call was written
/// # Ok::<(), DurableError>(()) }).unwrap();
/// ```
pub struct FailingStore<S> {
    inner: S,
    fail_at: u64,
    and_after: bool,
    written: AtomicU64,
    failures: AtomicU64,
}

impl<S: Store> FailingStore<S> {
    /// Fails the append that would write record number `k` (from 1).
    pub fn new(inner: S, k: u64) -> Self {
        Self {
            inner,
            fail_at: k,
            and_after: false,
            written: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Also fails every append after the first failure.
    #[must_use]
    pub fn and_after(mut self) -> Self {
        self.and_after = true;
        self
    }

    /// The wrapped store (to resume from after the injected failure).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many appends were failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }
}

impl<S: Store> FailingStore<S> {
    /// The injected failure of an append of `len` records, if this one fails; else how many
    /// records it writes.
    fn inject(&self, run: &RunId, expected_head: u64, len: usize) -> Result<u64, DurableError> {
        let n = u64::try_from(len).unwrap_or(u64::MAX);
        let failed_before = self.failures.load(Ordering::SeqCst) > 0;
        let before = self.written.load(Ordering::SeqCst);
        let hits = before < self.fail_at && before.saturating_add(n) >= self.fail_at;
        if hits || (self.and_after && failed_before) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(DurableError::write_failed(
                run,
                expected_head + 1,
                StoreFailure(format!("injected failure at record {}", self.fail_at)),
            ));
        }
        Ok(n)
    }
}

impl<S: Store> Store for FailingStore<S> {
    fn create_run<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        self.inner.create_run(run, header)
    }

    fn create_run_leased<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        self.inner.create_run_leased(run, header, owner, ttl)
    }

    fn append<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move {
            let n = self.inject(run, expected_head, records.len())?;
            let head = self.inner.append(run, expected_head, records).await?;
            self.written.fetch_add(n, Ordering::SeqCst);
            Ok(head)
        })
    }

    fn append_leased<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move {
            let n = self.inject(run, expected_head, records.len())?;
            let head = self
                .inner
                .append_leased(run, expected_head, records, lease)
                .await?;
            self.written.fetch_add(n, Ordering::SeqCst);
            Ok(head)
        })
    }

    fn load<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<StoredLog, DurableError>> {
        self.inner.load(run)
    }

    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunSummary>, DurableError>> {
        self.inner.list_runs()
    }

    fn delete_run<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<bool, DurableError>> {
        self.inner.delete_run(run)
    }

    fn write_snapshot<'a>(
        &'a self,
        run: &'a RunId,
        at: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        self.inner.write_snapshot(run, at, bytes)
    }

    fn acquire_lease<'a>(
        &'a self,
        run: &'a RunId,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        self.inner.acquire_lease(run, owner, ttl)
    }

    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        self.inner.renew_lease(lease, ttl)
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), DurableError>> {
        self.inner.release_lease(lease)
    }

    fn stored_bytes<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<u64, DurableError>> {
        self.inner.stored_bytes(run)
    }
}
