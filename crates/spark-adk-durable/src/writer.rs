//! [`RunLog`]: the one writer task of a run's log, with group commit and the durability modes `Sync`,
//! `Async` and `Exit` ([`Durability`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::checks::check_ttl;
use crate::error::DurableError;
use crate::record::{encode, Record, RunId};
use crate::store::{Lease, Store};

/// When an appended record is committed, and when `append` returns.
///
/// The default is [`Durability::Async`]: an append costs a channel send, records are committed in
/// batches by the writer task, and a crash loses at most the records not yet committed, never
/// the log's consistency. `Sync` costs one commit per append when appends come one at a time (a
/// standard-mode run): with SQLite's `synchronous = FULL` that is an fsync, 0.2-4.6 ms on the
/// shared development VM, and about 3.7 ms with PostgreSQL, against 1.7-2.5 µs for an `Async`
/// append call (2026-11-30, `cargo bench -p spark-adk-durable --bench durable_append`; the figures
/// and how they were taken are in docs/benchmarks.md). Concurrent `Sync` appends (long-running
/// workers) share commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `append` returns after the record is committed (group commit: concurrent appends share a
    /// commit). A record is durable before anything it caused is seen outside the run.
    Sync,
    /// `append` returns at once; the writer commits batches in order. The stored log is always a
    /// prefix of what was appended.
    #[default]
    Async,
    /// Records are kept in memory and written by [`RunLog::flush`] or [`RunLog::close`] (the run
    /// stopping or being interrupted).
    Exit,
}

/// Records one commit takes at most.
const MAX_BATCH: usize = 4096;
/// Appends queued at most before `append` waits (Async mode's backpressure).
const QUEUE: usize = 8192;

enum Command {
    Append(Record, Option<oneshot::Sender<Result<u64, DurableError>>>),
    Flush(oneshot::Sender<Result<u64, DurableError>>),
}

struct Shared {
    /// The first failure; once set, nothing more is written (the log stays a consistent prefix).
    failed: Mutex<Option<DurableError>>,
    /// Set once `failed` is: every append checks it, without taking the lock.
    has_failed: AtomicBool,
}

impl Shared {
    fn failed(&self) -> Option<DurableError> {
        if !self.has_failed.load(Ordering::Acquire) {
            return None;
        }
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fail(&self, e: DurableError) {
        let mut slot = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.has_failed.store(true, Ordering::Release);
    }
}

/// The writer of one run's log: one tokio task that commits appended records in batches with
/// compare-and-append on the log head.
///
/// After a failed commit (a [`DurableError::WriteFailed`], or a `Conflict` because another
/// writer moved the head) the log refuses every later append with that error: nothing committed
/// is lost, and nothing is written after a gap.
///
/// ```
/// use spark_adk_durable::*;
/// use serde_json::json;
/// use std::sync::Arc;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Arc::new(MemoryStore::new());
/// let shape = TopologyShape { nodes: vec!["a".into()], edges: vec![], start: "a".into() };
/// let header = RunHeader::new("run-1", Fingerprint::of(shape), RunMode::Standard, json!({}).into());
/// let log = RunLog::create(store.clone(), &header, Durability::Sync).await?;
/// log.append(Record::Stop(StopRecord::Completed)).await?;
/// assert_eq!(log.close().await?, 1);
/// # Ok::<(), DurableError>(()) }).unwrap();
/// ```
pub struct RunLog {
    run: RunId,
    mode: Durability,
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl RunLog {
    /// Creates the run in `store` (writing its header) and starts its writer.
    pub async fn create(
        store: Arc<dyn Store>,
        header: &crate::RunHeader,
        mode: Durability,
    ) -> Result<Self, DurableError> {
        let bytes = encode(&header.run_id, 0, header)?;
        store.create_run(&header.run_id, bytes).await?;
        Self::open(store, header.run_id.clone(), 0, mode)
    }

    /// Starts a writer that continues `run` after record `head` (e.g. [`crate::RunImage::last_seq`]
    /// after a resume). Must be called inside a tokio runtime.
    pub fn open(
        store: Arc<dyn Store>,
        run: RunId,
        head: u64,
        mode: Durability,
    ) -> Result<Self, DurableError> {
        Self::start(store, run, head, mode, None)
    }

    /// Like [`RunLog::open`], for the holder of the run's `lease`: every commit is fenced by
    /// it ([`Store::append_leased`]), and the writer renews it every third of `ttl`
    /// ([`Store::renew_lease`]) for as long as the log is open, so a run longer than `ttl`
    /// keeps it. When a renewal finds the lease lost (it expired and another owner acquired it)
    /// or a fenced commit is refused, the log fails with that [`DurableError::Conflict`]: the
    /// next `append` returns it and nothing more is written. A renewal that fails otherwise (a
    /// lost connection) is tried again at the next third; the fence keeps the log safe
    /// meanwhile. The renewal needs the tokio runtime's timers (`enable_time`, as
    /// `#[tokio::main]` gives).
    pub fn open_leased(
        store: Arc<dyn Store>,
        head: u64,
        mode: Durability,
        lease: Lease,
        ttl: Duration,
    ) -> Result<Self, DurableError> {
        let run = lease.run_id.clone();
        check_ttl(&run, ttl)?;
        Self::start(store, run, head, mode, Some((lease, ttl)))
    }

    fn start(
        store: Arc<dyn Store>,
        run: RunId,
        head: u64,
        mode: Durability,
        lease: Option<(Lease, Duration)>,
    ) -> Result<Self, DurableError> {
        let rt =
            tokio::runtime::Handle::try_current().map_err(|_| DurableError::InvalidArgument {
                run: run.clone(),
                reason: "the log writer needs a tokio runtime (called outside one)".to_owned(),
            })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
        });
        let lease = lease.map(|(lease, ttl)| Renewal::new(lease, ttl));
        let task = rt.spawn(writer(
            store,
            run.clone(),
            head,
            mode,
            rx,
            Arc::clone(&shared),
            lease,
        ));
        Ok(Self {
            run,
            mode,
            tx,
            shared,
            task,
        })
    }

    /// The run.
    pub fn run_id(&self) -> &RunId {
        &self.run
    }

    /// The durability mode.
    pub fn durability(&self) -> Durability {
        self.mode
    }

    /// The first failure of this log, if any.
    pub fn failure(&self) -> Option<DurableError> {
        self.shared.failed()
    }

    /// Appends a record. `Sync`: returns once it is committed. `Async`: returns at once (an
    /// earlier commit's failure is returned here). `Exit`: buffers it.
    pub async fn append(&self, record: Record) -> Result<(), DurableError> {
        if let Some(e) = self.shared.failed() {
            return Err(e);
        }
        if self.mode == Durability::Sync {
            let (reply, rx) = oneshot::channel();
            self.send(Command::Append(record, Some(reply))).await?;
            rx.await.map_err(|_| self.closed())?.map(|_| ())
        } else {
            self.send(Command::Append(record, None)).await
        }
    }

    /// Waits for room in the writer's queue and returns a [`LogSlot`] to append one record
    /// without waiting: what an executor uses when a record must be queued in the same breath
    /// as something else (a message delivered right after its acceptance is logged, so the
    /// log's order is the order in which things happened).
    ///
    /// # Errors
    /// The log's first failure, or [`DurableError::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is queued until [`LogSlot::append`].
    pub async fn reserve(&self) -> Result<LogSlot<'_>, DurableError> {
        if let Some(e) = self.shared.failed() {
            return Err(e);
        }
        let permit = self.tx.reserve().await.map_err(|_| self.closed())?;
        Ok(LogSlot { log: self, permit })
    }

    /// [`RunLog::reserve`] without waiting: `None` when the writer's queue is full.
    ///
    /// # Errors
    /// The log's first failure, or [`DurableError::Closed`].
    pub fn try_reserve(&self) -> Result<Option<LogSlot<'_>>, DurableError> {
        if let Some(e) = self.shared.failed() {
            return Err(e);
        }
        match self.tx.try_reserve() {
            Ok(permit) => Ok(Some(LogSlot { log: self, permit })),
            Err(mpsc::error::TrySendError::Full(())) => Ok(None),
            Err(mpsc::error::TrySendError::Closed(())) => Err(self.closed()),
        }
    }

    /// Commits everything appended so far; returns the log head.
    pub async fn flush(&self) -> Result<u64, DurableError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Flush(reply)).await?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Flushes and stops the writer; returns the log head.
    pub async fn close(self) -> Result<u64, DurableError> {
        let head = self.flush().await;
        drop(self.tx);
        // The writer ends once the channel is drained; a panic inside it cannot happen (it has
        // no panicking code), and if it did, `head` above already reported the failure.
        let _ = self.task.await;
        head
    }

    async fn send(&self, cmd: Command) -> Result<(), DurableError> {
        self.tx.send(cmd).await.map_err(|_| self.closed())
    }

    fn closed(&self) -> DurableError {
        self.shared
            .failed()
            .unwrap_or_else(|| DurableError::Closed {
                run: self.run.clone(),
                seq: 0,
            })
    }
}

/// Room for one record in a [`RunLog`]'s queue (from [`RunLog::reserve`]).
pub struct LogSlot<'a> {
    log: &'a RunLog,
    permit: mpsc::Permit<'a, Command>,
}

impl<'a> LogSlot<'a> {
    /// Queues `record` now (records are committed in the order they are queued) and returns
    /// what waits for its commit.
    pub fn append(self, record: Record) -> Commit<'a> {
        let rx = if self.log.mode == Durability::Sync {
            let (reply, rx) = oneshot::channel();
            self.permit.send(Command::Append(record, Some(reply)));
            Some(rx)
        } else {
            self.permit.send(Command::Append(record, None));
            None
        };
        Commit { log: self.log, rx }
    }
}

/// The commit of a record queued through a [`LogSlot`].
pub struct Commit<'a> {
    log: &'a RunLog,
    rx: Option<oneshot::Receiver<Result<u64, DurableError>>>,
}

impl Commit<'_> {
    /// `Sync`: waits until the record is committed. `Async` and `Exit`: returns at once (with
    /// an earlier commit's failure, if any).
    ///
    /// # Errors
    /// The failure of the commit (or an earlier one).
    ///
    /// # Cancel safety
    /// Cancel safe: the record stays queued; only the wait is given up.
    pub async fn wait(self) -> Result<(), DurableError> {
        match self.rx {
            Some(rx) => match rx.await {
                Ok(result) => result.map(|_| ()),
                Err(_) => Err(self.log.closed()),
            },
            None => match self.log.shared.failed() {
                Some(e) => Err(e),
                None => Ok(()),
            },
        }
    }
}

/// The lease a writer holds and renews.
struct Renewal {
    lease: Lease,
    ttl: Duration,
    every: Duration,
    next: Instant,
}

impl Renewal {
    fn new(lease: Lease, ttl: Duration) -> Self {
        let every = (ttl / 3).max(Duration::from_millis(1));
        Self {
            lease,
            ttl,
            every,
            next: Instant::now() + every,
        }
    }

    /// Renews the lease; a lost lease fails the log (a conflict), other failures wait for the
    /// next try.
    async fn renew(&mut self, store: &dyn Store, shared: &Shared) {
        match store.renew_lease(&self.lease, self.ttl).await {
            Ok(lease) => self.lease = lease,
            Err(e) if e.is_conflict() => shared.fail(e),
            Err(_) => {}
        }
        self.next = Instant::now() + self.every;
    }
}

async fn writer(
    store: Arc<dyn Store>,
    run: RunId,
    mut head: u64,
    mode: Durability,
    mut rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    mut lease: Option<Renewal>,
) {
    let mut cmds = Vec::with_capacity(MAX_BATCH);
    let mut batch: Vec<Record> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<Result<u64, DurableError>>> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<Result<u64, DurableError>>> = Vec::new();
    loop {
        let open = match lease.as_mut() {
            None => rx.recv_many(&mut cmds, MAX_BATCH).await > 0,
            Some(renewal) => {
                // `recv_many` is cancel safe: a renewal never loses a command.
                tokio::select! {
                    n = rx.recv_many(&mut cmds, MAX_BATCH) => n > 0,
                    () = tokio::time::sleep_until(renewal.next) => {
                        if shared.failed().is_none() {
                            renewal.renew(&*store, &shared).await;
                        } else {
                            renewal.next = Instant::now() + renewal.every;
                        }
                        continue;
                    }
                }
            }
        };
        let mut flush_now = !open;
        for cmd in cmds.drain(..) {
            match cmd {
                Command::Append(r, reply) => {
                    batch.push(r);
                    waiters.extend(reply);
                }
                Command::Flush(reply) => {
                    flushes.push(reply);
                    flush_now = true;
                }
            }
        }
        if mode != Durability::Exit || flush_now {
            let fence = lease.as_ref().map(|r| &r.lease);
            let result = commit(&*store, &run, &mut head, &mut batch, &shared, fence).await;
            for w in waiters.drain(..).chain(flushes.drain(..)) {
                let _ = w.send(result.clone());
            }
        }
        if !open {
            return;
        }
    }
}

/// Commits `batch` in chunks of [`MAX_BATCH`]; on failure latches the error.
async fn commit(
    store: &dyn Store,
    run: &RunId,
    head: &mut u64,
    batch: &mut Vec<Record>,
    shared: &Shared,
    lease: Option<&Lease>,
) -> Result<u64, DurableError> {
    if let Some(e) = shared.failed() {
        batch.clear();
        return Err(e);
    }
    let records = std::mem::take(batch);
    for chunk in records.chunks(MAX_BATCH) {
        let mut bytes = Vec::with_capacity(chunk.len());
        for (seq, r) in (*head + 1..).zip(chunk) {
            match encode(run, seq, r) {
                Ok(b) => bytes.push(b),
                Err(e) => {
                    shared.fail(e.clone());
                    return Err(e);
                }
            }
        }
        let appended = match lease {
            Some(lease) => store.append_leased(run, *head, bytes, lease).await,
            None => store.append(run, *head, bytes).await,
        };
        match appended {
            Ok(new_head) => *head = new_head,
            Err(e) => {
                shared.fail(e.clone());
                return Err(e);
            }
        }
    }
    Ok(*head)
}
