//! The embedded store of Spark for Rust's durable runs: one SQLite file, no server.
//!
//! [`SqliteStore`] implements [`spark_adk_durable::Store`] on SQLite (bundled: nothing to install)
//! in WAL mode with `busy_timeout` set. One writer thread owns the connection: every call is a
//! job on its queue, and the thread runs all jobs waiting at that moment in **one transaction**
//! (group commit), each job inside its own savepoint so that one job's conflict or error does not
//! undo the others. Replies are sent after the commit, so an `Ok` means committed (with
//! `synchronous = FULL`, the default, on disk).
//!
//! **Layering**: depends on `spark-adk-durable` (the trait and the records), rusqlite and tokio's
//! `sync` (for the replies); never on an executor.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use spark_adk_durable::*;
//! use spark_adk_sqlite::SqliteStore;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("runs.db"))?);
//! let shape = TopologyShape { nodes: vec!["a".into()], edges: vec![], start: "a".into() };
//! let header = RunHeader::new("run-1", Fingerprint::of(shape), RunMode::Standard, json!({}).into());
//! let log = RunLog::create(store.clone(), &header, Durability::Sync).await?;
//! log.append(Record::Stop(StopRecord::Completed)).await?;
//! log.close().await?;
//! assert_eq!(store.list_runs().await?[0].head, 1);
//! # Ok::<(), DurableError>(()) }).unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use spark_adk_durable::checks::{
    check_fence, check_head, check_snapshot_within_head, check_ttl, later_snapshot_stored,
    lease_held, lease_lost, not_found, run_exists,
};
use spark_adk_durable::{
    now_ms, BoxFuture, DurableError, Lease, RunId, RunSummary, Store, StoreFailure, StoredLog,
    StoredRecord,
};
use tokio::sync::oneshot;

/// How an SQLite store is opened.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// `PRAGMA synchronous`: `true` for `FULL` (every commit is fsynced: a committed record
    /// survives a power cut), `false` for `NORMAL` (WAL: survives a process crash, may lose the
    /// last commits on power loss). Default `true`.
    pub synchronous_full: bool,
    /// How long a writer waits for another process's lock before failing. Default 5 s.
    pub busy_timeout: Duration,
    /// Jobs one transaction takes at most. Default 1,024.
    pub max_batch: usize,
    /// `PRAGMA max_page_count`: caps the database's size (in pages); a write beyond it fails as a
    /// full disk would. Default `None` (SQLite's own limit).
    pub max_pages: Option<u64>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous_full: true,
            busy_timeout: Duration::from_secs(5),
            max_batch: 1024,
            max_pages: None,
        }
    }
}

/// A [`Store`] in one SQLite file, written by one thread with group commit.
pub struct SqliteStore {
    path: PathBuf,
    jobs: Mutex<std_mpsc::Sender<Job>>,
}

enum Op {
    Create(RunId, Vec<u8>),
    CreateLeased(RunId, Vec<u8>, String, u64),
    Append(RunId, u64, Vec<Vec<u8>>, Option<Lease>),
    Load(RunId),
    List,
    Delete(RunId),
    Snapshot(RunId, u64, Vec<u8>),
    Acquire(RunId, String, u64),
    Renew(Lease, u64),
    Release(Lease),
    Bytes(RunId),
}

enum Out {
    Unit,
    Head(u64),
    Log(StoredLog),
    List(Vec<RunSummary>),
    Bool(bool),
    Lease(Lease),
    Bytes(u64),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Out, DurableError>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spark_runs (
    run_id TEXT PRIMARY KEY,
    header BLOB NOT NULL,
    head INTEGER NOT NULL,
    lease_owner TEXT,
    lease_epoch INTEGER NOT NULL DEFAULT 0,
    lease_expires_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS spark_records (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spark_snapshots (
    run_id TEXT PRIMARY KEY,
    at_seq INTEGER NOT NULL,
    body BLOB NOT NULL
);
";

impl SqliteStore {
    /// Opens (or creates) the store in the file at `path`, with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DurableError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (or creates) the store in the file at `path`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, DurableError> {
        let path = path.as_ref().to_path_buf();
        let none = RunId::new("");
        let fail = |e: rusqlite::Error| {
            DurableError::write_failed(
                &none,
                0,
                StoreFailure(format!("cannot open SQLite store {}: {e}", path.display())),
            )
        };
        let conn = Connection::open(&path).map_err(fail)?;
        conn.busy_timeout(options.busy_timeout).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(
            None,
            "synchronous",
            if options.synchronous_full {
                "FULL"
            } else {
                "NORMAL"
            },
        )
        .map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        if let Some(pages) = options.max_pages {
            let pages = i64::try_from(pages).unwrap_or(i64::MAX);
            conn.pragma_update(None, "max_page_count", pages)
                .map_err(fail)?;
        }
        let (tx, rx) = std_mpsc::channel();
        let max_batch = options.max_batch.max(1);
        std::thread::Builder::new()
            .name("spark-sqlite-writer".to_owned())
            .spawn(move || writer_thread(conn, rx, max_batch))
            .map_err(|e| DurableError::write_failed(&none, 0, e))?;
        Ok(Self {
            path,
            jobs: Mutex::new(tx),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call(&self, op: Op) -> Result<Out, DurableError> {
        let run = op.run();
        let (reply, rx) = oneshot::channel();
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Job { op, reply });
        let gone = || {
            DurableError::write_failed(
                &run,
                0,
                StoreFailure("the SQLite writer thread is gone".to_owned()),
            )
        };
        sent.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

impl Op {
    fn run(&self) -> RunId {
        match self {
            Op::Create(r, _)
            | Op::CreateLeased(r, _, _, _)
            | Op::Append(r, _, _, _)
            | Op::Load(r)
            | Op::Delete(r)
            | Op::Snapshot(r, _, _)
            | Op::Acquire(r, _, _)
            | Op::Bytes(r) => r.clone(),
            Op::Renew(l, _) | Op::Release(l) => l.run_id.clone(),
            Op::List => RunId::new(""),
        }
    }

    fn is_read(&self) -> bool {
        matches!(self, Op::Load(_) | Op::List | Op::Bytes(_))
    }

    /// The sequence number a write failure of this op is about.
    fn seq(&self) -> u64 {
        match self {
            Op::Append(_, head, _, _) => head + 1,
            Op::Snapshot(_, at, _) => *at,
            _ => 0,
        }
    }
}

fn writer_thread(mut conn: Connection, rx: std_mpsc::Receiver<Job>, max_batch: usize) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, jobs);
    }
}

/// Runs jobs in one transaction, each in a savepoint; replies after the commit.
fn run_batch(conn: &mut Connection, jobs: Vec<Job>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = StoreFailure(format!("cannot begin an SQLite transaction: {e}"));
            for job in jobs {
                let err = sql_error(&job.op, e.clone());
                let _ = job.reply.send(Err(err));
            }
            return;
        }
    };
    let mut tx = tx;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let result = match tx.savepoint() {
            Ok(mut sp) => match execute(&sp, &job.op) {
                Ok(out) => sp.commit().map(|()| out).map_err(|e| sql_error(&job.op, e)),
                Err(e) => {
                    let _ = sp.rollback();
                    Err(e)
                }
            },
            Err(e) => Err(sql_error(&job.op, e)),
        };
        results.push((job, result));
    }
    if let Err(e) = tx.commit() {
        let e = StoreFailure(format!("the SQLite commit failed: {e}"));
        for (job, result) in results {
            // Reads fail too: they may have seen this batch's writes, which are now undone.
            let result = match result {
                Ok(_) => Err(sql_error(&job.op, e.clone())),
                Err(err) => Err(err),
            };
            let _ = job.reply.send(result);
        }
        return;
    }
    for (job, result) in results {
        let _ = job.reply.send(result);
    }
}

fn sql_error(op: &Op, e: impl std::error::Error + Send + Sync + 'static) -> DurableError {
    let run = op.run();
    if op.is_read() {
        DurableError::read_failed(&run, e)
    } else {
        DurableError::write_failed(&run, op.seq(), e)
    }
}

fn to_i64(run: &RunId, seq: u64, v: u64) -> Result<i64, DurableError> {
    i64::try_from(v).map_err(|_| DurableError::InvalidArgument {
        run: run.clone(),
        reason: format!("{v} does not fit SQLite's integers (record {seq})"),
    })
}

fn to_u64(run: &RunId, seq: u64, v: i64) -> Result<u64, DurableError> {
    u64::try_from(v)
        .map_err(|_| DurableError::corrupt(run, seq, format!("negative number {v} stored")))
}

fn execute(conn: &Connection, op: &Op) -> Result<Out, DurableError> {
    let err = |e: rusqlite::Error| sql_error(op, e);
    let head_of = |run: &RunId| -> Result<Option<u64>, DurableError> {
        let h: Option<i64> = conn
            .query_row(
                "SELECT head FROM spark_runs WHERE run_id = ?1",
                [run.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        h.map(|h| to_u64(run, 0, h)).transpose()
    };
    match op {
        Op::Create(run, header) => {
            if head_of(run)?.is_some() {
                return Err(run_exists(run));
            }
            conn.execute(
                "INSERT INTO spark_runs (run_id, header, head) VALUES (?1, ?2, 0)",
                params![run.as_str(), header],
            )
            .map_err(err)?;
            Ok(Out::Unit)
        }
        Op::CreateLeased(run, header, owner, ttl) => {
            if head_of(run)?.is_some() {
                return Err(run_exists(run));
            }
            let now = to_i64(run, 0, now_ms())?;
            let expires = now.saturating_add(to_i64(run, 0, *ttl)?);
            conn.execute(
                "INSERT INTO spark_runs (run_id, header, head, lease_owner, lease_epoch, lease_expires_ms)
                 VALUES (?1, ?2, 0, ?3, 1, ?4)",
                params![run.as_str(), header, owner, expires],
            )
            .map_err(err)?;
            Ok(Out::Lease(Lease {
                run_id: run.clone(),
                owner: owner.clone(),
                epoch: 1,
                expires_at_ms: to_u64(run, 0, expires)?,
            }))
        }
        Op::Append(run, expected, records, lease) => {
            let head = head_of(run)?.ok_or_else(|| not_found(run))?;
            if let Some(lease) = lease {
                let (holder, epoch): (Option<String>, i64) = conn
                    .query_row(
                        "SELECT lease_owner, lease_epoch FROM spark_runs WHERE run_id = ?1",
                        [run.as_str()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(err)?;
                let epoch = to_u64(run, 0, epoch)?;
                check_fence(run, *expected, holder.as_deref(), epoch, lease)?;
            }
            check_head(run, *expected, head)?;
            let mut stmt = conn
                .prepare_cached("INSERT INTO spark_records (run_id, seq, body) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            let mut seq = *expected;
            for body in records {
                seq += 1;
                stmt.execute(params![run.as_str(), to_i64(run, seq, seq)?, body])
                    .map_err(err)?;
            }
            conn.execute(
                "UPDATE spark_runs SET head = ?2 WHERE run_id = ?1",
                params![run.as_str(), to_i64(run, seq, seq)?],
            )
            .map_err(err)?;
            Ok(Out::Head(seq))
        }
        Op::Load(run) => {
            let row: Option<(Vec<u8>, i64)> = conn
                .query_row(
                    "SELECT header, head FROM spark_runs WHERE run_id = ?1",
                    [run.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(err)?;
            let (header, head) = row.ok_or_else(|| not_found(run))?;
            let snapshot: Option<(i64, Vec<u8>)> = conn
                .query_row(
                    "SELECT at_seq, body FROM spark_snapshots WHERE run_id = ?1",
                    [run.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(err)?;
            let after = snapshot.as_ref().map_or(0, |s| s.0);
            let mut stmt = conn
                .prepare_cached("SELECT seq, body FROM spark_records WHERE run_id = ?1 AND seq > ?2 ORDER BY seq")
                .map_err(err)?;
            let rows = stmt
                .query_map(params![run.as_str(), after], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(err)?;
            let mut records = Vec::new();
            for row in rows {
                let (seq, bytes) = row.map_err(err)?;
                records.push(StoredRecord {
                    seq: to_u64(run, 0, seq)?,
                    bytes,
                });
            }
            Ok(Out::Log(StoredLog {
                header,
                snapshot: snapshot
                    .map(|(at, bytes)| {
                        Ok::<_, DurableError>(StoredRecord {
                            seq: to_u64(run, 0, at)?,
                            bytes,
                        })
                    })
                    .transpose()?,
                records,
                head: to_u64(run, 0, head)?,
            }))
        }
        Op::List => {
            let mut stmt = conn
                .prepare("SELECT run_id, head FROM spark_runs ORDER BY run_id")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(err)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, head) = row.map_err(err)?;
                let run_id = RunId::new(id);
                let head = to_u64(&run_id, 0, head)?;
                out.push(RunSummary { run_id, head });
            }
            Ok(Out::List(out))
        }
        Op::Delete(run) => {
            conn.execute(
                "DELETE FROM spark_records WHERE run_id = ?1",
                [run.as_str()],
            )
            .map_err(err)?;
            conn.execute(
                "DELETE FROM spark_snapshots WHERE run_id = ?1",
                [run.as_str()],
            )
            .map_err(err)?;
            let n = conn
                .execute("DELETE FROM spark_runs WHERE run_id = ?1", [run.as_str()])
                .map_err(err)?;
            Ok(Out::Bool(n > 0))
        }
        Op::Snapshot(run, at, body) => {
            let head = head_of(run)?.ok_or_else(|| not_found(run))?;
            check_snapshot_within_head(run, *at, head)?;
            let at_i = to_i64(run, *at, *at)?;
            let later: Option<i64> = conn
                .query_row(
                    "SELECT at_seq FROM spark_snapshots WHERE run_id = ?1",
                    [run.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            if later.is_some_and(|l| l > at_i) {
                return Err(later_snapshot_stored(run, *at));
            }
            conn.execute(
                "INSERT INTO spark_snapshots (run_id, at_seq, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id) DO UPDATE SET at_seq = excluded.at_seq, body = excluded.body",
                params![run.as_str(), at_i, body],
            )
            .map_err(err)?;
            conn.execute(
                "DELETE FROM spark_records WHERE run_id = ?1 AND seq <= ?2",
                params![run.as_str(), at_i],
            )
            .map_err(err)?;
            Ok(Out::Unit)
        }
        Op::Acquire(run, owner, ttl) => {
            let row: Option<(Option<String>, i64, i64, i64)> = conn
                .query_row(
                    "SELECT lease_owner, lease_epoch, lease_expires_ms, head FROM spark_runs WHERE run_id = ?1",
                    [run.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(err)?;
            let (holder, epoch, expires, head) = row.ok_or_else(|| not_found(run))?;
            let now = to_i64(run, 0, now_ms())?;
            if let Some(holder) = holder.filter(|h| h != owner && expires > now) {
                return Err(lease_held(
                    run,
                    to_u64(run, 0, head)? + 1,
                    &holder,
                    expires - now,
                ));
            }
            let expires = now.saturating_add(to_i64(run, 0, *ttl)?);
            conn.execute(
                "UPDATE spark_runs SET lease_owner = ?2, lease_epoch = ?3, lease_expires_ms = ?4 WHERE run_id = ?1",
                params![run.as_str(), owner, epoch + 1, expires],
            )
            .map_err(err)?;
            Ok(Out::Lease(Lease {
                run_id: run.clone(),
                owner: owner.clone(),
                epoch: to_u64(run, 0, epoch + 1)?,
                expires_at_ms: to_u64(run, 0, expires)?,
            }))
        }
        Op::Renew(lease, ttl) => {
            let run = &lease.run_id;
            let now = to_i64(run, 0, now_ms())?;
            let expires = now.saturating_add(to_i64(run, 0, *ttl)?);
            let n = conn
                .execute(
                    "UPDATE spark_runs SET lease_expires_ms = ?4
                     WHERE run_id = ?1 AND lease_owner = ?2 AND lease_epoch = ?3 AND lease_expires_ms > ?5",
                    params![run.as_str(), lease.owner, to_i64(run, 0, lease.epoch)?, expires, now],
                )
                .map_err(err)?;
            if n == 0 {
                return Err(lease_lost(run, 0, &lease.owner));
            }
            Ok(Out::Lease(Lease {
                expires_at_ms: to_u64(run, 0, expires)?,
                ..lease.clone()
            }))
        }
        Op::Release(lease) => {
            let run = &lease.run_id;
            conn.execute(
                "UPDATE spark_runs SET lease_owner = NULL, lease_expires_ms = 0 WHERE run_id = ?1 AND lease_epoch = ?2",
                params![run.as_str(), to_i64(run, 0, lease.epoch)?],
            )
            .map_err(err)?;
            Ok(Out::Unit)
        }
        Op::Bytes(run) => {
            let n: Option<i64> = conn
                .query_row(
                    "SELECT length(header)
                        + (SELECT coalesce(sum(length(body)), 0) FROM spark_records WHERE run_id = ?1)
                        + (SELECT coalesce(sum(length(body)), 0) FROM spark_snapshots WHERE run_id = ?1)
                     FROM spark_runs WHERE run_id = ?1",
                    [run.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            Ok(Out::Bytes(to_u64(
                run,
                0,
                n.ok_or_else(|| not_found(run))?,
            )?))
        }
    }
}

fn unexpected(run: &RunId) -> DurableError {
    DurableError::corrupt(
        run,
        0,
        "the SQLite writer answered with the wrong kind of result",
    )
}

impl Store for SqliteStore {
    fn create_run<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            match self.call(Op::Create(run.clone(), header)).await? {
                Out::Unit => Ok(()),
                _ => Err(unexpected(run)),
            }
        })
    }

    fn create_run_leased<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        Box::pin(async move {
            let ttl = check_ttl(run, ttl)?;
            match self
                .call(Op::CreateLeased(run.clone(), header, owner.to_owned(), ttl))
                .await?
            {
                Out::Lease(l) => Ok(l),
                _ => Err(unexpected(run)),
            }
        })
    }

    fn append<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move {
            match self
                .call(Op::Append(run.clone(), expected_head, records, None))
                .await?
            {
                Out::Head(h) => Ok(h),
                _ => Err(unexpected(run)),
            }
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
            match self
                .call(Op::Append(
                    run.clone(),
                    expected_head,
                    records,
                    Some(lease.clone()),
                ))
                .await?
            {
                Out::Head(h) => Ok(h),
                _ => Err(unexpected(run)),
            }
        })
    }

    fn load<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<StoredLog, DurableError>> {
        Box::pin(async move {
            match self.call(Op::Load(run.clone())).await? {
                Out::Log(l) => Ok(l),
                _ => Err(unexpected(run)),
            }
        })
    }

    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunSummary>, DurableError>> {
        Box::pin(async move {
            match self.call(Op::List).await? {
                Out::List(l) => Ok(l),
                _ => Err(unexpected(&RunId::new(""))),
            }
        })
    }

    fn delete_run<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<bool, DurableError>> {
        Box::pin(async move {
            match self.call(Op::Delete(run.clone())).await? {
                Out::Bool(b) => Ok(b),
                _ => Err(unexpected(run)),
            }
        })
    }

    fn write_snapshot<'a>(
        &'a self,
        run: &'a RunId,
        at: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            match self.call(Op::Snapshot(run.clone(), at, bytes)).await? {
                Out::Unit => Ok(()),
                _ => Err(unexpected(run)),
            }
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
            match self
                .call(Op::Acquire(run.clone(), owner.to_owned(), ttl))
                .await?
            {
                Out::Lease(l) => Ok(l),
                _ => Err(unexpected(run)),
            }
        })
    }

    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        Box::pin(async move {
            let ttl = check_ttl(&lease.run_id, ttl)?;
            match self.call(Op::Renew(lease.clone(), ttl)).await? {
                Out::Lease(l) => Ok(l),
                _ => Err(unexpected(&lease.run_id)),
            }
        })
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            match self.call(Op::Release(lease.clone())).await? {
                Out::Unit => Ok(()),
                _ => Err(unexpected(&lease.run_id)),
            }
        })
    }

    fn stored_bytes<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move {
            match self.call(Op::Bytes(run.clone())).await? {
                Out::Bytes(n) => Ok(n),
                _ => Err(unexpected(run)),
            }
        })
    }
}
