//! The PostgreSQL store of Spark for Rust's durable runs, for runs shared by several hosts.
//!
//! [`PostgresStore`] implements [`spark_adk_durable::Store`] over a pool of connections
//! (deadpool-postgres over tokio-postgres). There is no lock around the pool: each call takes a
//! connection and the database orders what must be ordered. Compare-and-append is one
//! conditional `UPDATE` of the run's head inside the transaction that inserts the records (row
//! lock on that run only); leases use the **database server's clock**, so hosts with skewed
//! clocks still agree on expiry, and every acquisition bumps a fencing epoch.
//!
//! Tables live in one schema (default `spark`), created on connect if missing.
//!
//! **Layering**: depends on `spark-adk-durable` (the trait and the records), tokio-postgres and
//! deadpool-postgres; never on an executor.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use spark_adk_durable::*;
//! use spark_adk_postgres::{PostgresOptions, PostgresStore};
//!
//! # async fn demo() -> Result<(), DurableError> {
//! let store = PostgresStore::connect(
//!     "host=127.0.0.1 port=5432 user=postgres dbname=test",
//!     PostgresOptions::default(),
//! )
//! .await?;
//! let store: Arc<dyn Store> = Arc::new(store);
//! for run in store.list_runs().await? {
//!     println!("{} at record {}", run.run_id, run.head);
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use spark_adk_durable::checks::{
    check_fence, check_snapshot_within_head, check_ttl, head_moved, later_snapshot_stored,
    lease_held, lease_lost, not_found, run_exists,
};
use spark_adk_durable::{
    BoxFuture, DurableError, Lease, RunId, RunSummary, Store, StoreFailure, StoredLog, StoredRecord,
};
use tokio_postgres::NoTls;

/// How a PostgreSQL store connects.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The schema holding the tables (`[a-z_][a-z0-9_]*`, at most 63 characters). Default `spark`.
    pub schema: String,
    /// Connections the pool keeps at most. Default 16.
    pub pool_size: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: "spark".to_owned(),
            pool_size: 16,
        }
    }
}

/// A [`Store`] in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    schema: String,
    sql: Sql,
}

/// The statements, with the schema filled in.
struct Sql {
    create: String,
    create_leased: String,
    advance: String,
    advance_leased: String,
    fence_state: String,
    insert: String,
    load_run: String,
    load_snapshot: String,
    load_records: String,
    list: String,
    delete: String,
    lock_head: String,
    snapshot_at: String,
    upsert_snapshot: String,
    compact: String,
    acquire: String,
    lease_state: String,
    renew: String,
    release: String,
    bytes: String,
}

impl Sql {
    fn new(s: &str) -> Self {
        Self {
            create: format!("INSERT INTO {s}.runs (run_id, header, head) VALUES ($1, $2, 0) ON CONFLICT (run_id) DO NOTHING"),
            create_leased: format!(
                "INSERT INTO {s}.runs (run_id, header, head, lease_owner, lease_epoch, lease_expires)
                 VALUES ($1, $2, 0, $3, 1, clock_timestamp() + $4::float8 * interval '1 millisecond')
                 ON CONFLICT (run_id) DO NOTHING
                 RETURNING lease_epoch, (extract(epoch FROM lease_expires) * 1000)::bigint"
            ),
            advance: format!("UPDATE {s}.runs SET head = $3 WHERE run_id = $1 AND head = $2"),
            advance_leased: format!(
                "UPDATE {s}.runs SET head = $3
                 WHERE run_id = $1 AND head = $2 AND lease_owner = $4 AND lease_epoch = $5"
            ),
            fence_state: format!("SELECT head, lease_owner, lease_epoch FROM {s}.runs WHERE run_id = $1"),
            insert: format!(
                "INSERT INTO {s}.records (run_id, seq, body)
                 SELECT $1, x.seq, x.body FROM UNNEST($2::bigint[], $3::bytea[]) AS x(seq, body)"
            ),
            load_run: format!("SELECT header, head FROM {s}.runs WHERE run_id = $1"),
            load_snapshot: format!("SELECT at_seq, body FROM {s}.snapshots WHERE run_id = $1"),
            load_records: format!("SELECT seq, body FROM {s}.records WHERE run_id = $1 AND seq > $2 ORDER BY seq"),
            list: format!("SELECT run_id, head FROM {s}.runs ORDER BY run_id COLLATE \"C\""),
            delete: format!("DELETE FROM {s}.runs WHERE run_id = $1"),
            lock_head: format!("SELECT head FROM {s}.runs WHERE run_id = $1 FOR UPDATE"),
            snapshot_at: format!("SELECT at_seq FROM {s}.snapshots WHERE run_id = $1"),
            upsert_snapshot: format!(
                "INSERT INTO {s}.snapshots (run_id, at_seq, body) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id) DO UPDATE SET at_seq = excluded.at_seq, body = excluded.body"
            ),
            compact: format!("DELETE FROM {s}.records WHERE run_id = $1 AND seq <= $2"),
            acquire: format!(
                "UPDATE {s}.runs SET lease_owner = $2, lease_epoch = lease_epoch + 1,
                     lease_expires = clock_timestamp() + $3::float8 * interval '1 millisecond'
                 WHERE run_id = $1
                   AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires <= clock_timestamp())
                 RETURNING lease_epoch, (extract(epoch FROM lease_expires) * 1000)::bigint"
            ),
            lease_state: format!(
                "SELECT lease_owner, greatest(0, (extract(epoch FROM lease_expires - clock_timestamp()) * 1000))::bigint, head
                 FROM {s}.runs WHERE run_id = $1"
            ),
            renew: format!(
                "UPDATE {s}.runs SET lease_expires = clock_timestamp() + $4::float8 * interval '1 millisecond'
                 WHERE run_id = $1 AND lease_owner = $2 AND lease_epoch = $3 AND lease_expires > clock_timestamp()
                 RETURNING (extract(epoch FROM lease_expires) * 1000)::bigint"
            ),
            release: format!(
                "UPDATE {s}.runs SET lease_owner = NULL, lease_expires = NULL WHERE run_id = $1 AND lease_epoch = $2"
            ),
            bytes: format!(
                "SELECT (octet_length(header)
                    + coalesce((SELECT sum(octet_length(body)) FROM {s}.records WHERE run_id = $1), 0)
                    + coalesce((SELECT octet_length(body) FROM {s}.snapshots WHERE run_id = $1), 0))::bigint
                 FROM {s}.runs WHERE run_id = $1"
            ),
        }
    }
}

fn schema_ddl(s: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.runs (
             run_id TEXT PRIMARY KEY,
             header BYTEA NOT NULL,
             head BIGINT NOT NULL,
             lease_owner TEXT,
             lease_epoch BIGINT NOT NULL DEFAULT 0,
             lease_expires TIMESTAMPTZ
         );
         CREATE TABLE IF NOT EXISTS {s}.records (
             run_id TEXT NOT NULL REFERENCES {s}.runs (run_id) ON DELETE CASCADE,
             seq BIGINT NOT NULL,
             body BYTEA NOT NULL,
             PRIMARY KEY (run_id, seq)
         );
         CREATE TABLE IF NOT EXISTS {s}.snapshots (
             run_id TEXT PRIMARY KEY REFERENCES {s}.runs (run_id) ON DELETE CASCADE,
             at_seq BIGINT NOT NULL,
             body BYTEA NOT NULL
         );"
    )
}

fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// Reads a column, turning a type mismatch (a table changed behind the store) into an error.
fn col<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r tokio_postgres::Row,
    idx: usize,
    run: &RunId,
) -> Result<T, DurableError> {
    row.try_get(idx)
        .map_err(|e| DurableError::corrupt(run, 0, format!("unexpected column {idx}: {e}")))
}

fn no_run() -> RunId {
    RunId::new("")
}

fn i64_of(run: &RunId, v: u64) -> Result<i64, DurableError> {
    i64::try_from(v).map_err(|_| DurableError::InvalidArgument {
        run: run.clone(),
        reason: format!("{v} does not fit PostgreSQL's bigint"),
    })
}

fn u64_of(run: &RunId, seq: u64, v: i64) -> Result<u64, DurableError> {
    u64::try_from(v)
        .map_err(|_| DurableError::corrupt(run, seq, format!("negative number {v} stored")))
}

impl PostgresStore {
    /// Connects with a libpq-style connection string (e.g.
    /// `host=127.0.0.1 port=5432 user=postgres dbname=test`) and creates the schema's tables if
    /// missing.
    pub async fn connect(conninfo: &str, options: PostgresOptions) -> Result<Self, DurableError> {
        let none = no_run();
        if !valid_schema(&options.schema) {
            return Err(DurableError::InvalidArgument {
                run: none,
                reason: format!(
                    "schema `{}` is not a plain lower-case SQL name ([a-z_][a-z0-9_]*)",
                    options.schema
                ),
            });
        }
        let config: tokio_postgres::Config =
            conninfo
                .parse()
                .map_err(|e| DurableError::InvalidArgument {
                    run: none.clone(),
                    reason: format!("cannot read the connection string: {e}"),
                })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|e| {
                DurableError::write_failed(
                    &none,
                    0,
                    StoreFailure(format!("cannot build the pool: {e}")),
                )
            })?;
        let store = Self {
            pool,
            sql: Sql::new(&options.schema),
            schema: options.schema,
        };
        let client = store.client(&none, None).await?;
        client
            .batch_execute(&schema_ddl(&store.schema))
            .await
            .map_err(|e| DurableError::write_failed(&none, 0, e))?;
        Ok(store)
    }

    /// The connection pool (shared by every call; no lock around it).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A pooled connection; `seq` is `Some` for writes (a lost connection is a failed write).
    async fn client(
        &self,
        run: &RunId,
        seq: Option<u64>,
    ) -> Result<deadpool_postgres::Client, DurableError> {
        self.pool.get().await.map_err(|e| {
            let e = StoreFailure(format!("no PostgreSQL connection: {e}"));
            match seq {
                Some(seq) => DurableError::write_failed(run, seq, e),
                None => DurableError::read_failed(run, e),
            }
        })
    }

    /// Compare-and-append, fenced by `lease` when given: one conditional `UPDATE` of the head
    /// (and, fenced, of the lease's owner and epoch) in the transaction that inserts the records.
    async fn append_fenced(
        &self,
        run: &RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
        lease: Option<&Lease>,
    ) -> Result<u64, DurableError> {
        let first = expected_head + 1;
        let fail = |e: tokio_postgres::Error| DurableError::write_failed(run, first, e);
        let n = u64::try_from(records.len()).unwrap_or(u64::MAX);
        let new_head = expected_head.saturating_add(n);
        let seqs: Vec<i64> = (first..=new_head)
            .map(|s| i64_of(run, s))
            .collect::<Result<_, _>>()?;
        let (expected_i, new_i) = (i64_of(run, expected_head)?, i64_of(run, new_head)?);
        let mut client = self.client(run, Some(first)).await?;
        let tx = client.transaction().await.map_err(fail)?;
        let moved = match lease {
            None => tx
                .execute(&self.sql.advance, &[&run.as_str(), &expected_i, &new_i])
                .await
                .map_err(fail)?,
            Some(lease) => {
                let epoch = i64_of(run, lease.epoch)?;
                tx.execute(
                    &self.sql.advance_leased,
                    &[&run.as_str(), &expected_i, &new_i, &lease.owner, &epoch],
                )
                .await
                .map_err(fail)?
            }
        };
        if moved == 0 {
            let row = tx
                .query_opt(&self.sql.fence_state, &[&run.as_str()])
                .await
                .map_err(fail)?
                .ok_or_else(|| not_found(run))?;
            let head: i64 = col(&row, 0, run)?;
            if let Some(lease) = lease {
                let holder: Option<String> = col(&row, 1, run)?;
                let epoch = u64_of(run, 0, col(&row, 2, run)?)?;
                check_fence(run, expected_head, holder.as_deref(), epoch, lease)?;
            }
            return Err(head_moved(run, expected_head, head));
        }
        tx.execute(&self.sql.insert, &[&run.as_str(), &seqs, &records])
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(new_head)
    }

    async fn lease_conflict(&self, run: &RunId, client: &tokio_postgres::Client) -> DurableError {
        match client
            .query_opt(&self.sql.lease_state, &[&run.as_str()])
            .await
        {
            Ok(None) => not_found(run),
            Ok(Some(row)) => {
                let read = || -> Result<(Option<String>, Option<i64>, i64), DurableError> {
                    Ok((col(&row, 0, run)?, col(&row, 1, run)?, col(&row, 2, run)?))
                };
                let (holder, left, head) = match read() {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                lease_held(
                    run,
                    u64::try_from(head).unwrap_or(0) + 1,
                    &holder.unwrap_or_default(),
                    left.unwrap_or(0),
                )
            }
            Err(e) => DurableError::read_failed(run, e),
        }
    }
}

impl Store for PostgresStore {
    fn create_run<'a>(
        &'a self,
        run: &'a RunId,
        header: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            let client = self.client(run, Some(0)).await?;
            let n = client
                .execute(&self.sql.create, &[&run.as_str(), &header])
                .await
                .map_err(|e| DurableError::write_failed(run, 0, e))?;
            if n == 0 {
                return Err(run_exists(run));
            }
            Ok(())
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
            let ttl = i64_of(run, check_ttl(run, ttl)?)?;
            let client = self.client(run, Some(0)).await?;
            let row = client
                .query_opt(
                    &self.sql.create_leased,
                    &[&run.as_str(), &header, &owner, &(ttl as f64)],
                )
                .await
                .map_err(|e| DurableError::write_failed(run, 0, e))?
                .ok_or_else(|| run_exists(run))?;
            Ok(Lease {
                run_id: run.clone(),
                owner: owner.to_owned(),
                epoch: u64_of(run, 0, col(&row, 0, run)?)?,
                expires_at_ms: u64_of(run, 0, col(&row, 1, run)?)?,
            })
        })
    }

    fn append<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(self.append_fenced(run, expected_head, records, None))
    }

    fn append_leased<'a>(
        &'a self,
        run: &'a RunId,
        expected_head: u64,
        records: Vec<Vec<u8>>,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(self.append_fenced(run, expected_head, records, Some(lease)))
    }

    fn load<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<StoredLog, DurableError>> {
        Box::pin(async move {
            let fail = |e: tokio_postgres::Error| DurableError::read_failed(run, e);
            let mut client = self.client(run, None).await?;
            // One snapshot of the database for the three reads.
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(fail)?;
            let row = tx
                .query_opt(&self.sql.load_run, &[&run.as_str()])
                .await
                .map_err(fail)?
                .ok_or_else(|| not_found(run))?;
            let header: Vec<u8> = col(&row, 0, run)?;
            let head = u64_of(run, 0, col(&row, 1, run)?)?;
            let snapshot = match tx
                .query_opt(&self.sql.load_snapshot, &[&run.as_str()])
                .await
                .map_err(fail)?
            {
                Some(row) => Some(StoredRecord {
                    seq: u64_of(run, 0, col(&row, 0, run)?)?,
                    bytes: col(&row, 1, run)?,
                }),
                None => None,
            };
            let after = i64_of(run, snapshot.as_ref().map_or(0, |s| s.seq))?;
            let rows = tx
                .query(&self.sql.load_records, &[&run.as_str(), &after])
                .await
                .map_err(fail)?;
            let mut records = Vec::with_capacity(rows.len());
            for row in rows {
                records.push(StoredRecord {
                    seq: u64_of(run, 0, col(&row, 0, run)?)?,
                    bytes: col(&row, 1, run)?,
                });
            }
            tx.commit().await.map_err(fail)?;
            Ok(StoredLog {
                header,
                snapshot,
                records,
                head,
            })
        })
    }

    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunSummary>, DurableError>> {
        Box::pin(async move {
            let none = no_run();
            let client = self.client(&none, None).await?;
            let rows = client
                .query(&self.sql.list, &[])
                .await
                .map_err(|e| DurableError::read_failed(&none, e))?;
            rows.into_iter()
                .map(|row| {
                    let run_id = RunId::new(col::<String>(&row, 0, &none)?);
                    let head = u64_of(&run_id, 0, col(&row, 1, &run_id)?)?;
                    Ok(RunSummary { run_id, head })
                })
                .collect()
        })
    }

    fn delete_run<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<bool, DurableError>> {
        Box::pin(async move {
            let client = self.client(run, Some(0)).await?;
            let n = client
                .execute(&self.sql.delete, &[&run.as_str()])
                .await
                .map_err(|e| DurableError::write_failed(run, 0, e))?;
            Ok(n > 0)
        })
    }

    fn write_snapshot<'a>(
        &'a self,
        run: &'a RunId,
        at: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            let fail = |e: tokio_postgres::Error| DurableError::write_failed(run, at, e);
            let at_i = i64_of(run, at)?;
            let mut client = self.client(run, Some(at)).await?;
            let tx = client.transaction().await.map_err(fail)?;
            let head = tx
                .query_opt(&self.sql.lock_head, &[&run.as_str()])
                .await
                .map_err(fail)?
                .ok_or_else(|| not_found(run))?;
            let head = u64_of(run, at, col(&head, 0, run)?)?;
            check_snapshot_within_head(run, at, head)?;
            if let Some(row) = tx
                .query_opt(&self.sql.snapshot_at, &[&run.as_str()])
                .await
                .map_err(fail)?
            {
                if col::<i64>(&row, 0, run)? > at_i {
                    return Err(later_snapshot_stored(run, at));
                }
            }
            tx.execute(&self.sql.upsert_snapshot, &[&run.as_str(), &at_i, &bytes])
                .await
                .map_err(fail)?;
            tx.execute(&self.sql.compact, &[&run.as_str(), &at_i])
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
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
            let ttl = i64_of(run, check_ttl(run, ttl)?)?;
            let client = self.client(run, Some(0)).await?;
            let row = client
                .query_opt(&self.sql.acquire, &[&run.as_str(), &owner, &(ttl as f64)])
                .await
                .map_err(|e| DurableError::write_failed(run, 0, e))?;
            match row {
                Some(row) => Ok(Lease {
                    run_id: run.clone(),
                    owner: owner.to_owned(),
                    epoch: u64_of(run, 0, col(&row, 0, run)?)?,
                    expires_at_ms: u64_of(run, 0, col(&row, 1, run)?)?,
                }),
                None => Err(self.lease_conflict(run, &client).await),
            }
        })
    }

    fn renew_lease<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease, DurableError>> {
        Box::pin(async move {
            let run = &lease.run_id;
            let ttl = i64_of(run, check_ttl(run, ttl)?)?;
            let client = self.client(run, Some(0)).await?;
            let row = client
                .query_opt(
                    &self.sql.renew,
                    &[
                        &run.as_str(),
                        &lease.owner,
                        &i64_of(run, lease.epoch)?,
                        &(ttl as f64),
                    ],
                )
                .await
                .map_err(|e| DurableError::write_failed(run, 0, e))?;
            match row {
                Some(row) => Ok(Lease {
                    expires_at_ms: u64_of(run, 0, col(&row, 0, run)?)?,
                    ..lease.clone()
                }),
                None => Err(lease_lost(run, 0, &lease.owner)),
            }
        })
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), DurableError>> {
        Box::pin(async move {
            let run = &lease.run_id;
            let client = self.client(run, Some(0)).await?;
            client
                .execute(
                    &self.sql.release,
                    &[&run.as_str(), &i64_of(run, lease.epoch)?],
                )
                .await
                .map_err(|e| DurableError::write_failed(run, 0, e))?;
            Ok(())
        })
    }

    fn stored_bytes<'a>(&'a self, run: &'a RunId) -> BoxFuture<'a, Result<u64, DurableError>> {
        Box::pin(async move {
            let client = self.client(run, None).await?;
            let row = client
                .query_opt(&self.sql.bytes, &[&run.as_str()])
                .await
                .map_err(|e| DurableError::read_failed(run, e))?
                .ok_or_else(|| not_found(run))?;
            u64_of(run, 0, col(&row, 0, run)?)
        })
    }
}
