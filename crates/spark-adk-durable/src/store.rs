//! The store trait: an append-only byte log per run with compare-and-append, snapshots and
//! leases; plus [`StoreExt`], the typed layer (headers, records, replay) every store gets.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::error::DurableError;
use crate::fingerprint::Fingerprint;
use crate::image::{replay, RunImage};
use crate::record::{decode, encode, Record, RunHeader, RunId, Snapshot};

/// A boxed, `Send` future: what the store trait's methods return, so `dyn Store` works.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One stored record: its sequence number and its bytes (see [`crate::encode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The sequence number, from 1.
    pub seq: u64,
    /// The encoded record.
    pub bytes: Vec<u8>,
}

/// A run's log as stored: the header, the latest snapshot, and the records after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLog {
    /// The encoded header.
    pub header: Vec<u8>,
    /// The latest snapshot (`seq` is the last record it covers).
    pub snapshot: Option<StoredRecord>,
    /// The records after the snapshot (or all), in sequence order.
    pub records: Vec<StoredRecord>,
    /// The sequence number of the last record appended (0: none).
    pub head: u64,
}

/// A line of [`Store::list_runs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// The run.
    pub run_id: RunId,
    /// Its log head.
    pub head: u64,
}

/// A lease on a run: while it has not expired, only its owner may resume the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The run.
    pub run_id: RunId,
    /// Who holds it.
    pub owner: String,
    /// Grows by one at every acquisition of the run's lease (a fencing token).
    pub epoch: u64,
    /// When it expires, in milliseconds since the Unix epoch (by the store's clock).
    pub expires_at_ms: u64,
}

/// Where runs' logs are kept: an append-only byte log per run.
///
/// Implementations are the in-memory [`crate::MemoryStore`], `spark-adk-sqlite` and
/// `spark-adk-postgres`; each passes [`crate::conformance`]. The methods return boxed futures so
/// the trait is usable as `dyn Store`. Executors use [`StoreExt`] and [`crate::RunLog`] on top.
///
/// Rules every store keeps:
/// - [`Store::append`] is a compare-and-append: it writes only when the run's head equals
///   `expected_head`, else [`DurableError::Conflict`]; the records get `expected_head + 1 ..`.
///   All of one call's records are committed, or none. [`Store::append_leased`] also needs the
///   run's lease to be the caller's (owner and epoch), in the same atomic step.
/// - A failed write loses nothing committed before it.
/// - [`Store::write_snapshot`] keeps the latest snapshot and may drop the records it covers;
///   [`Store::load`] returns the records after it.
/// - A lease is held by one owner until it expires or is released.
pub trait Store: Send + Sync + 'static {
    /// Creates a run with its encoded header. A run with this id already stored is a conflict.
    fn create_run<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>>;

    /// Creates a run with its encoded header and gives `owner` its lease for `ttl`, in one
    /// step: a store that commits to disk does it in one commit where [`Store::create_run`]
    /// and [`Store::acquire_lease`] take two. A run with this id already stored is a conflict
    /// (and its lease is left alone). The default makes the two calls.
    fn create_run_leased<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        Box::pin(async move {
            crate::checks::check_ttl(run, ttl)?;
            self.create_run(run, header).await?;
            self.acquire_lease(run, owner, ttl).await
        })
    }

    /// Appends records if the run's head is `expected_head`; returns the new head.
    fn append<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<u64, DurableError>>;

    /// [`Store::append`] fenced by a lease: refused with [`DurableError::Conflict`] (writing
    /// nothing) unless the run's lease is still `lease` (same owner, same epoch), checked in the
    /// same atomic step as the head. A writer whose lease was taken over (another owner acquired
    /// it, which bumps the epoch) or given back can write nothing more. Expiry alone does not
    /// refuse: until another owner acquires the lease, nobody else can hold it to write.
    fn append_leased<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<u64, DurableError>>;

    /// The run's header, latest snapshot and the records after it.
    fn load<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<StoredLog, DurableError>>;

    /// Every stored run, ordered by run id.
    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunSummary>, DurableError>>;

    /// Deletes a run (header, records, snapshot, lease); `false` when there was none.
    fn delete_run<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<bool, DurableError>>;

    /// Stores an encoded snapshot covering records `..= at` (which must not exceed the head) and
    /// compacts: records up to `at` may be dropped.
    fn write_snapshot<'a>(
        &'a self,
        run: &'a RunId,
        at: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>>;

    /// Takes the run's lease for `ttl` if it is free, expired, or already `owner`'s; otherwise
    /// [`DurableError::Conflict`] naming the holder.
    fn acquire_lease<'a>(
        &'a self,
        run: &'a RunId,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>>;

    /// Extends a lease still held by its owner (same epoch); a conflict if it was lost.
    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>>;

    /// Gives a lease up (nothing happens if it was already lost).
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), DurableError>>;

    /// Bytes of payload stored for the run (header, records, snapshot): what the storage-growth
    /// tests measure.
    fn stored_bytes<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<u64, DurableError>>;
}

/// A run's log, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedRun {
    /// The header.
    pub header: RunHeader,
    /// The latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// The records after it, with their sequence numbers.
    pub records: Vec<(u64, Record)>,
    /// The log head.
    pub head: u64,
}

impl LoadedRun {
    /// Replays the log into the image a resumed run continues from.
    pub fn replay(&self) -> Result<RunImage, DurableError> {
        replay(&self.header, self.snapshot.as_ref(), &self.records)
    }
}

/// Decodes a stored log, checking the header names `run` and every sequence number follows.
pub fn decode_log(run: &RunId, log: &StoredLog) -> Result<LoadedRun, DurableError> {
    let header: RunHeader = decode(run, 0, &log.header)?;
    if &header.run_id != run {
        return Err(DurableError::corrupt(
            run,
            0,
            format!("the header is of run `{}`", header.run_id),
        ));
    }
    if header.format_version != crate::FORMAT_VERSION {
        return Err(DurableError::UnknownFormatVersion {
            run: run.clone(),
            seq: 0,
            found: u64::from(header.format_version),
            supported: crate::FORMAT_VERSION,
        });
    }
    let snapshot: Option<Snapshot> = match &log.snapshot {
        Some(s) => {
            let snap: Snapshot = decode(run, s.seq, &s.bytes)?;
            if snap.at != s.seq {
                return Err(DurableError::corrupt(
                    run,
                    s.seq,
                    format!(
                        "the snapshot stored at {} says it covers {}",
                        s.seq, snap.at
                    ),
                ));
            }
            Some(snap)
        }
        None => None,
    };
    let mut expected = snapshot.as_ref().map_or(0, |s| s.at) + 1;
    let mut records = Vec::with_capacity(log.records.len());
    for r in &log.records {
        if r.seq != expected {
            return Err(DurableError::Truncated {
                run: run.clone(),
                seq: expected,
                reason: format!("found record {} instead", r.seq),
            });
        }
        records.push((r.seq, decode(run, r.seq, &r.bytes)?));
        expected += 1;
    }
    if expected - 1 != log.head {
        return Err(DurableError::Truncated {
            run: run.clone(),
            seq: expected,
            reason: format!(
                "the log head is {} but the records end at {}",
                log.head,
                expected - 1
            ),
        });
    }
    Ok(LoadedRun {
        header,
        snapshot,
        records,
        head: log.head,
    })
}

/// The typed layer over any [`Store`]: headers, records, replay, snapshots.
pub trait StoreExt: Store {
    /// Creates a run from its header.
    fn create(&self, header: &RunHeader) -> BoxFuture<'_, Result<(), DurableError>> {
        let bytes = encode(&header.run_id, 0, header);
        let run = header.run_id.clone();
        Box::pin(async move { self.create_run(&run, bytes?).await })
    }

    /// Creates a run from its header holding its lease ([`Store::create_run_leased`]).
    fn create_leased<'a>(
        &'a self,
        header: &'a RunHeader,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        Box::pin(async move {
            let bytes = encode(&header.run_id, 0, header)?;
            self.create_run_leased(&header.run_id, bytes, owner, ttl)
                .await
        })
    }

    /// Appends typed records with compare-and-append; returns the new head.
    fn append_records<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: &'a [Record],
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move {
            let mut bytes = Vec::with_capacity(records.len());
            for (seq, r) in (expected_head + 1..).zip(records) {
                bytes.push(encode(run, seq, r)?);
            }
            self.append(run, expected_head, bytes).await
        })
    }

    /// Appends typed records with compare-and-append, fenced by `lease`
    /// ([`Store::append_leased`]); returns the new head.
    fn append_records_leased<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: &'a [Record],
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move {
            let mut bytes = Vec::with_capacity(records.len());
            for (seq, r) in (expected_head + 1..).zip(records) {
                bytes.push(encode(run, seq, r)?);
            }
            self.append_leased(run, expected_head, bytes, lease).await
        })
    }

    /// Loads and decodes a run's log.
    fn load_run<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<LoadedRun, DurableError>> {
        Box::pin(async move { decode_log(run, &self.load(run).await?) })
    }

    /// Loads a run for resuming: checks the topology against `fingerprint` (refusing, with the
    /// differences, if it differs) and replays the log.
    fn resume_image<'a>(
        &'a self,
        run: &'a RunId,
        fingerprint: &'a Fingerprint,
    ) -> BoxFuture<'a, Result<(LoadedRun, RunImage), DurableError>> {
        Box::pin(async move {
            let loaded = self.load_run(run).await?;
            loaded.header.fingerprint.check(run, fingerprint)?;
            let image = loaded.replay()?;
            Ok((loaded, image))
        })
    }

    /// Stores a snapshot of `image` (covering `image.last_seq()`), compacting the log.
    fn snapshot_image<'a>(
        &'a self,
        image: &'a RunImage,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            let snap = image.snapshot();
            let bytes = encode(image.run_id(), snap.at, &snap)?;
            self.write_snapshot(image.run_id(), snap.at, bytes).await
        })
    }

    /// Compacts a run's log: replays it and stores the image as a snapshot at the log head, so
    /// the store drops the records it covers ([`Store::write_snapshot`]); a later load returns
    /// the snapshot and the records after it, and a resume continues exactly as it would from
    /// the whole log. Returns the sequence number the snapshot covers (the head when compacted;
    /// a run with no record after its latest snapshot is left as it is).
    ///
    /// Safe while a writer continues the run: the snapshot covers the records loaded here, and
    /// records appended meanwhile stay. Two compactions racing: the one with the older head gets
    /// a [`DurableError::Conflict`] (a later snapshot is stored already), and nothing is lost.
    ///
    /// # Errors
    /// The run's load or replay errors ([`DurableError::NotFound`], a corrupt log), or the
    /// snapshot's write failure.
    fn compact<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move {
            let loaded = self.load_run(run).await?;
            if loaded.records.is_empty() {
                return Ok(loaded.snapshot.as_ref().map_or(0, |s| s.at));
            }
            let image = loaded.replay()?;
            self.snapshot_image(&image).await?;
            Ok(image.last_seq())
        })
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn create_run<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        (**self).create_run(run, header)
    }
    fn create_run_leased<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        (**self).create_run_leased(run, header, owner, ttl)
    }
    fn append<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        (**self).append(run, expected_head, records)
    }
    fn append_leased<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        (**self).append_leased(run, expected_head, records, lease)
    }
    fn load<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<StoredLog, DurableError>> {
        (**self).load(run)
    }
    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunSummary>, DurableError>> {
        (**self).list_runs()
    }
    fn delete_run<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<bool, DurableError>> {
        (**self).delete_run(run)
    }
    fn write_snapshot<'a>(
        &'a self,
        run: &'a RunId,
        at: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        (**self).write_snapshot(run, at, bytes)
    }
    fn acquire_lease<'a>(
        &'a self,
        run: &'a RunId,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        (**self).acquire_lease(run, owner, ttl)
    }
    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        (**self).renew_lease(lease, ttl)
    }
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), DurableError>> {
        (**self).release_lease(lease)
    }
    fn stored_bytes<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<u64, DurableError>> {
        (**self).stored_bytes(run)
    }
}
