//! The in-memory store: for tests and for runs that only need to survive a stop, not a crash.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::checks::{
    check_fence, check_head, check_snapshot_within_head, check_ttl, later_snapshot_stored,
    lease_held, lease_lost, not_found, run_exists,
};
use crate::error::DurableError;
use crate::record::{now_ms, RunId};
use crate::store::{BoxFuture, Lease, RunSummary, Store, StoredLog, StoredRecord};

#[derive(Default)]
struct RunEntry {
    header: Vec<u8>,
    snapshot: Option<StoredRecord>,
    records: Vec<StoredRecord>,
    head: u64,
    lease: Option<Lease>,
    epoch: u64,
}

/// A [`Store`] in the process's memory. Cheap, exact, gone with the process.
///
/// ```
/// use spark_adk_durable::{MemoryStore, RunId, Store};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// store.create_run(&RunId::new("r"), b"{}".to_vec()).await?;
/// assert_eq!(store.append(&RunId::new("r"), 0, vec![b"{}".to_vec()]).await?, 1);
/// // The head moved: a second writer that expected 0 gets a conflict.
/// assert!(store.append(&RunId::new("r"), 0, vec![b"{}".to_vec()]).await.unwrap_err().is_conflict());
/// # Ok::<(), spark_adk_durable::DurableError>(()) }).unwrap();
/// ```
#[derive(Default)]
pub struct MemoryStore {
    runs: Mutex<BTreeMap<RunId, RunEntry>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn runs(&self) -> MutexGuard<'_, BTreeMap<RunId, RunEntry>> {
        // A panic while holding the lock cannot leave an entry half-written: every change below
        // is computed first and stored with one assignment.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the bytes of a stored record (or the snapshot, or the header with `seq` 0):
    /// what the conformance suite uses to simulate corruption on disk. `false` if no such record.
    pub fn overwrite_record(&self, run: &RunId, seq: u64, bytes: Vec<u8>) -> bool {
        let mut runs = self.runs();
        let Some(entry) = runs.get_mut(run) else {
            return false;
        };
        if seq == 0 {
            entry.header = bytes;
            return true;
        }
        if let Some(r) = entry.records.iter_mut().find(|r| r.seq == seq) {
            r.bytes = bytes;
            return true;
        }
        if let Some(s) = entry.snapshot.as_mut().filter(|s| s.seq == seq) {
            s.bytes = bytes;
            return true;
        }
        false
    }
}

impl MemoryStore {
    fn append_fenced(
        &self,
        run: &RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
        lease: Option<&Lease>,
    ) -> Result<u64, DurableError> {
        let mut runs = self.runs();
        let entry = runs.get_mut(run).ok_or_else(|| not_found(run))?;
        if let Some(lease) = lease {
            let holder = entry.lease.as_ref().map(|l| l.owner.as_str());
            check_fence(run, expected_head, holder, entry.epoch, lease)?;
        }
        check_head(run, expected_head, entry.head)?;
        for (seq, bytes) in (expected_head + 1..).zip(records) {
            entry.records.push(StoredRecord { seq, bytes });
            entry.head = seq;
        }
        Ok(entry.head)
    }
}

impl Store for MemoryStore {
    fn create_run<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            let mut runs = self.runs();
            if runs.contains_key(run) {
                return Err(run_exists(run));
            }
            runs.insert(
                run.clone(),
                RunEntry {
                    header,
                    ..RunEntry::default()
                },
            );
            Ok(())
        })
    }

    fn append<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move { self.append_fenced(run, expected_head, records, None) })
    }

    fn append_leased<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move { self.append_fenced(run, expected_head, records, Some(lease)) })
    }

    fn load<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<StoredLog, DurableError>> {
        Box::pin(async move {
            let runs = self.runs();
            let entry = runs.get(run).ok_or_else(|| not_found(run))?;
            Ok(StoredLog {
                header: entry.header.clone(),
                snapshot: entry.snapshot.clone(),
                records: entry.records.clone(),
                head: entry.head,
            })
        })
    }

    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunSummary>, DurableError>> {
        Box::pin(async move {
            Ok(self
                .runs()
                .iter()
                .map(|(id, e)| RunSummary {
                    run_id: id.clone(),
                    head: e.head,
                })
                .collect())
        })
    }

    fn delete_run<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<bool, DurableError>> {
        Box::pin(async move { Ok(self.runs().remove(run).is_some()) })
    }

    fn write_snapshot<'a>(
        &'a self,
        run: &'a RunId,
        at: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            let mut runs = self.runs();
            let entry = runs.get_mut(run).ok_or_else(|| not_found(run))?;
            check_snapshot_within_head(run, at, entry.head)?;
            if entry.snapshot.as_ref().is_some_and(|s| s.seq > at) {
                return Err(later_snapshot_stored(run, at));
            }
            entry.records.retain(|r| r.seq > at);
            entry.snapshot = Some(StoredRecord { seq: at, bytes });
            Ok(())
        })
    }

    fn acquire_lease<'a>(
        &'a self,
        run: &'a RunId,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        Box::pin(async move {
            let ttl = check_ttl(run, ttl)?;
            let mut runs = self.runs();
            let entry = runs.get_mut(run).ok_or_else(|| not_found(run))?;
            let now = now_ms();
            if let Some(l) = &entry.lease {
                if l.owner != owner && l.expires_at_ms > now {
                    return Err(lease_held(
                        run,
                        entry.head + 1,
                        &l.owner,
                        l.expires_at_ms - now,
                    ));
                }
            }
            entry.epoch += 1;
            let lease = Lease {
                run_id: run.clone(),
                owner: owner.to_owned(),
                epoch: entry.epoch,
                expires_at_ms: now.saturating_add(ttl),
            };
            entry.lease = Some(lease.clone());
            Ok(lease)
        })
    }

    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        Box::pin(async move {
            let run = &lease.run_id;
            let ttl = check_ttl(run, ttl)?;
            let mut runs = self.runs();
            let entry = runs.get_mut(run).ok_or_else(|| not_found(run))?;
            let now = now_ms();
            match &mut entry.lease {
                Some(l)
                    if l.epoch == lease.epoch
                        && l.owner == lease.owner
                        && l.expires_at_ms > now =>
                {
                    l.expires_at_ms = now.saturating_add(ttl);
                    Ok(l.clone())
                }
                _ => Err(lease_lost(run, entry.head + 1, &lease.owner)),
            }
        })
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            let mut runs = self.runs();
            if let Some(entry) = runs.get_mut(&lease.run_id) {
                if entry.lease.as_ref().is_some_and(|l| l.epoch == lease.epoch) {
                    entry.lease = None;
                }
            }
            Ok(())
        })
    }

    fn stored_bytes<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move {
            let runs = self.runs();
            let entry = runs.get(run).ok_or_else(|| not_found(run))?;
            let n = entry.header.len()
                + entry.snapshot.as_ref().map_or(0, |s| s.bytes.len())
                + entry.records.iter().map(|r| r.bytes.len()).sum::<usize>();
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
    }
}
