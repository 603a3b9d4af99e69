//! A run's graph state on the broker: a JetStream key-value bucket shared by every process of
//! the run, behind `ctx.state()` ([`NatsStateBackend`], a core `StateBackend`) and
//! [`DistributedState`] (the async API).
//!
//! **Atomicity**: every write (`set`, `remove`, `update`, `update_with`, `transaction`) holds
//! the run's **state lock**, a key in a second bucket whose stream has a `max_age` (the lock
//! expires when its holder died without releasing it: [`Options::state_lock_ttl`]). Under the
//! lock a writer reads, applies its closure once (core hands a `FnOnce`, which compare-and-set
//! with retries could not re-run) and writes with compare-and-set on the revision it read, so
//! a lock that expired under a slow holder makes its write fail with an error (never a lost
//! update), then releases the lock. One lock per run serialises writers (a transaction
//! touches any key); within a process writers queue on a local mutex first, so only one per
//! process polls the broker's lock. Reads (`get`) take no lock; `snapshot` takes it, for a
//! consistent copy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use spark_adk_core::{StateBackend, StateWrite};
use tokio::sync::{mpsc, oneshot};

use crate::error::{broker, NatsError};
use crate::graph::Options;
use crate::wire::{check_run_id, encode, Names};

/// The key of the run's single state lock in the lock bucket.
const LOCK_KEY: &str = "all";

/// A user's key as a key-value key: kept as is when it is made of `A-Za-z0-9_-` (and not
/// empty), else `=` and the hex of its bytes (`=` never occurs in a kept key, so the mapping is
/// one-to-one).
fn encode_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        let mut out = String::with_capacity(1 + 2 * key.len());
        out.push('=');
        for b in key.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

fn decode_key(raw: &str) -> Option<String> {
    let Some(hex) = raw.strip_prefix('=') else {
        return Some(raw.to_owned());
    };
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Creates (if missing) and opens a key-value bucket. async-nats 0.50's `create_key_value`
/// cannot read nats-server 2.9's answer, so the bucket's stream is created here with the
/// layout of a key-value bucket (one value per key, rollups allowed, direct get).
async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
    deny_delete: bool,
) -> Result<kv::Store, NatsError> {
    if js.get_key_value(bucket).await.is_err() {
        let created = js
            .create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age,
                allow_rollup: true,
                deny_delete,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await;
        if let Err(e) = created {
            // Another process may have created it at the same moment.
            tracing::debug!(error = %e, bucket, "creating a key-value bucket's stream");
        }
    }
    js.get_key_value(bucket)
        .await
        .map_err(|e| broker(format!("opening key-value bucket `{bucket}`"), e))
}

/// Deletes the run's state and lock buckets (the run is over); missing buckets are fine.
pub(crate) async fn delete_buckets(js: &jetstream::Context, names: &Names) {
    let _ = js.delete_key_value(names.state_bucket()).await;
    let _ = js.delete_key_value(names.lock_bucket()).await;
}

/// A value read with the revision of its key's last entry (a deletion too).
struct Read {
    value: Option<Value>,
    revision: Option<u64>,
}

/// The run's state lock, held (release it with [`Store::unlock`]).
struct Lock {
    revision: u64,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

/// The async state store of one run on one connection: values, the lock, the key encoding.
#[derive(Clone)]
pub(crate) struct Store {
    values: kv::Store,
    locks: kv::Store,
    lock_stream: stream::Stream,
    bucket: String,
    local: Arc<tokio::sync::Mutex<()>>,
    timeout: Duration,
    holder: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("bucket", &self.bucket)
            .finish()
    }
}

impl Store {
    pub(crate) async fn open(
        client: async_nats::Client,
        names: &Names,
        options: &Options,
    ) -> Result<Self, NatsError> {
        static HOLDER: AtomicU64 = AtomicU64::new(0);
        let js = jetstream::new(client);
        let bucket = names.state_bucket();
        let values = open_bucket(&js, &bucket, Duration::ZERO, true).await?;
        // The lock is released by deleting its message (the subject is then empty, so the
        // next `create` succeeds in one round trip, where a delete marker would cost three).
        let locks = open_bucket(
            &js,
            &names.lock_bucket(),
            options.state_lock_ttl.max(Duration::from_millis(100)),
            false,
        )
        .await?;
        let lock_stream = js
            .get_stream(format!("KV_{}", names.lock_bucket()))
            .await
            .map_err(|e| broker(format!("opening bucket `{}`", names.lock_bucket()), e))?;
        Ok(Self {
            values,
            locks,
            lock_stream,
            bucket,
            local: Arc::default(),
            timeout: options.join_timeout,
            holder: format!(
                "{}-{}",
                std::process::id(),
                HOLDER.fetch_add(1, Ordering::Relaxed)
            ),
        })
    }

    /// Opens the run's bucket only if it exists (the coordinator reading the final state).
    pub(crate) async fn open_existing(
        client: async_nats::Client,
        names: &Names,
        options: &Options,
    ) -> Result<Option<Self>, NatsError> {
        let js = jetstream::new(client.clone());
        match js.get_stream(format!("KV_{}", names.state_bucket())).await {
            Ok(_) => Self::open(client, names, options).await.map(Some),
            Err(e) if e.to_string().contains("not found") => Ok(None),
            Err(e) => Err(broker(
                format!("looking for key-value bucket `{}`", names.state_bucket()),
                e,
            )),
        }
    }

    async fn bounded<T, E: std::fmt::Display>(
        &self,
        operation: impl FnOnce() -> String,
        f: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, NatsError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(broker(operation(), e)),
            Err(_) => Err(NatsError::Timeout {
                operation: operation(),
                seconds: self.timeout.as_secs_f64(),
                reason: "no answer from the broker".to_owned(),
            }),
        }
    }

    async fn read(&self, key: &str) -> Result<Read, NatsError> {
        let raw = encode_key(key);
        let entry = self
            .bounded(
                || format!("reading key `{key}` of `{}`", self.bucket),
                self.values.entry(raw),
            )
            .await?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => Read {
                value: Some(serde_json::from_slice(&e.value).map_err(|err| {
                    broker(format!("decoding key `{key}` of `{}`", self.bucket), err)
                })?),
                revision: Some(e.revision),
            },
            // A deleted or purged key reads as missing.
            Some(e) => Read {
                value: None,
                revision: Some(e.revision),
            },
            None => Read {
                value: None,
                revision: None,
            },
        })
    }

    /// The value at `key` (no lock).
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Value>, NatsError> {
        Ok(self.read(key).await?.value)
    }

    /// Writes `value` (`None`: deletes) at `key` if its last entry is still `revision`.
    async fn write(
        &self,
        key: &str,
        value: Option<&Value>,
        revision: Option<u64>,
    ) -> Result<(), NatsError> {
        let raw = encode_key(key);
        let what = || format!("writing key `{key}` of `{}`", self.bucket);
        match (value, revision) {
            (Some(value), Some(rev)) => {
                self.bounded(what, self.values.update(raw, encode(value)?, rev))
                    .await?;
            }
            (Some(value), None) => {
                self.bounded(what, self.values.create(raw, encode(value)?))
                    .await?;
            }
            (None, Some(rev)) => {
                self.bounded(what, self.values.delete_expect_revision(raw, Some(rev)))
                    .await?;
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Takes the run's state lock: this process's writers queue on a local mutex, then the
    /// broker's lock key is created (it fails while another process holds it), retried with
    /// backoff for at most the join timeout.
    async fn lock(&self) -> Result<Lock, NatsError> {
        let local = Arc::clone(&self.local).lock_owned().await;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut backoff =
            crate::wire::Backoff::new(Duration::from_micros(200), Duration::from_millis(10));
        let payload = bytes::Bytes::from(self.holder.clone());
        loop {
            let attempt =
                tokio::time::timeout_at(deadline, self.locks.create(LOCK_KEY, payload.clone()))
                    .await;
            let reason = match attempt {
                Ok(Ok(revision)) => {
                    return Ok(Lock {
                        revision,
                        _local: local,
                    })
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(NatsError::Timeout {
                    operation: format!("taking the state lock of `{}`", self.bucket),
                    seconds: self.timeout.as_secs_f64(),
                    reason: format!(
                        "{reason} (a holder that died releases it when its lock expires)"
                    ),
                });
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Releases the lock by deleting its message (by sequence: an expired lock taken since by
    /// another holder is another message, left alone).
    async fn unlock(&self, lock: Lock) {
        let released =
            tokio::time::timeout(self.timeout, self.lock_stream.delete_message(lock.revision))
                .await;
        if !matches!(released, Ok(Ok(_))) {
            tracing::warn!(bucket = %self.bucket, "releasing the state lock failed (it expires)");
        }
    }

    /// Runs `f` under the lock and releases it whatever `f` returns.
    async fn locked<T>(
        &self,
        f: impl AsyncFnOnce() -> Result<T, NatsError>,
    ) -> Result<T, NatsError> {
        let lock = self.lock().await?;
        let out = f().await;
        self.unlock(lock).await;
        out
    }

    /// Sets (`Some`) or removes (`None`) `key`; returns the previous value.
    pub(crate) async fn set(
        &self,
        key: &str,
        value: Option<Value>,
    ) -> Result<Option<Value>, NatsError> {
        self.locked(async || {
            let read = self.read(key).await?;
            self.write(key, value.as_ref(), read.revision).await?;
            Ok(read.value)
        })
        .await
    }

    /// Sets several keys under one hold of the lock.
    pub(crate) async fn update(&self, entries: Vec<(String, Value)>) -> Result<(), NatsError> {
        self.locked(async || {
            for (key, value) in &entries {
                let read = self.read(key).await?;
                self.write(key, Some(value), read.revision).await?;
            }
            Ok(())
        })
        .await
    }

    /// Every key with its value and revision, as a map and the revisions (call under the lock
    /// for a consistent copy).
    async fn entries(&self) -> Result<(Map<String, Value>, HashMap<String, u64>), NatsError> {
        let what = || format!("listing the keys of `{}`", self.bucket);
        let keys = self.bounded(what, self.values.keys()).await?;
        let raw: Vec<String> = self
            .bounded(what, async {
                keys.collect::<Vec<_>>().await.into_iter().collect()
            })
            .await?;
        let mut map = Map::new();
        let mut revisions = HashMap::new();
        for raw in raw {
            let Some(key) = decode_key(&raw) else {
                continue;
            };
            let read = self.read(&key).await?;
            if let Some(rev) = read.revision {
                revisions.insert(key.clone(), rev);
            }
            if let Some(value) = read.value {
                map.insert(key, value);
            }
        }
        Ok((map, revisions))
    }

    /// A consistent copy of the whole store (taken under the lock).
    pub(crate) async fn snapshot(&self) -> Result<Map<String, Value>, NatsError> {
        self.locked(async || Ok(self.entries().await?.0)).await
    }

    /// Atomic read-modify-write of one key (`Some(key)`) or the whole store (`None`): reads
    /// under the lock, hands the value to `apply` (which runs the caller's closure once and
    /// answers with the new value, or nothing when the closure panicked), writes what changed
    /// with compare-and-set, releases the lock.
    pub(crate) async fn modify(
        &self,
        key: Option<&str>,
        apply: impl AsyncFnOnce(Draft) -> Option<Draft>,
    ) -> Result<(), NatsError> {
        self.locked(async || match key {
            Some(key) => {
                let read = self.read(key).await?;
                let Some(Draft::One(value)) =
                    apply(Draft::One(read.value.unwrap_or(Value::Null))).await
                else {
                    return Ok(());
                };
                self.write(key, Some(&value), read.revision).await
            }
            None => {
                let (before, revisions) = self.entries().await?;
                let Some(Draft::All(after)) = apply(Draft::All(before.clone())).await else {
                    return Ok(());
                };
                for (key, value) in &after {
                    if before.get(key) != Some(value) {
                        self.write(key, Some(value), revisions.get(key).copied())
                            .await?;
                    }
                }
                for key in before.keys().filter(|k| !after.contains_key(*k)) {
                    self.write(key, None, revisions.get(key).copied()).await?;
                }
                Ok(())
            }
        })
        .await
    }
}

/// A value under modification: one key's, or the whole store's.
pub(crate) enum Draft {
    One(Value),
    All(Map<String, Value>),
}

/// A key/value store of JSON values shared by every process of a distributed run (a JetStream
/// key-value bucket named after the run): the async face of what nodes reach synchronously as
/// `ctx.state()` (the same bucket, the same lock), for code outside the nodes (for example
/// reading the state while the run goes on, or seeding it before).
///
/// [`update_with`](Self::update_with) is an atomic read-modify-write across processes: it holds
/// the run's state lock from its read to its write (see the crate docs, "Context"), so its
/// closure runs exactly once.
#[derive(Clone, Debug)]
pub struct DistributedState {
    store: Store,
    js: jetstream::Context,
    names: Names,
}

impl DistributedState {
    /// Opens (creating if needed) the state bucket of run `run_id`, with the default
    /// [`Options`] (lock expiry, broker timeouts).
    ///
    /// # Errors
    /// [`NatsError`] when the run id is invalid or the bucket cannot be created.
    pub async fn open(client: async_nats::Client, run_id: &str) -> Result<Self, NatsError> {
        Self::open_with(client, run_id, &Options::default()).await
    }

    /// Opens (creating if needed) the state bucket of run `run_id` with these options (use the
    /// run's).
    ///
    /// # Errors
    /// [`NatsError`] when the run id is invalid or the bucket cannot be created.
    pub async fn open_with(
        client: async_nats::Client,
        run_id: &str,
        options: &Options,
    ) -> Result<Self, NatsError> {
        check_run_id(run_id)?;
        let names = Names::new(run_id);
        let js = jetstream::new(client.clone());
        let store = Store::open(client, &names, options).await?;
        Ok(Self { store, js, names })
    }

    /// The value at `key`.
    ///
    /// # Errors
    /// [`NatsError`] when the bucket cannot be read, or the value is not JSON.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads.
    pub async fn get(&self, key: &str) -> Result<Option<Value>, NatsError> {
        self.store.get(key).await
    }

    /// Sets `key` to `value`; returns the previous value.
    ///
    /// # Errors
    /// [`NatsError`] when the lock cannot be taken or the write fails.
    ///
    /// # Cancel safety
    /// Not cancel safe: cancelled while holding the lock, it leaves the lock to expire
    /// ([`Options::state_lock_ttl`]), and the write may or may not have happened.
    pub async fn set(&self, key: &str, value: Value) -> Result<Option<Value>, NatsError> {
        self.store.set(key, Some(value)).await
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    /// [`NatsError`] when the lock cannot be taken or the write fails.
    ///
    /// # Cancel safety
    /// As [`set`](Self::set).
    pub async fn remove(&self, key: &str) -> Result<Option<Value>, NatsError> {
        self.store.set(key, None).await
    }

    /// Atomic read-modify-write of `key` (a missing key starts as `null`) across processes;
    /// returns what `f` returns. `f` runs once, under the run's state lock.
    ///
    /// # Errors
    /// [`NatsError`] when the lock cannot be taken, or the bucket fails (then `f` may not have
    /// run, and nothing was written).
    ///
    /// # Cancel safety
    /// As [`set`](Self::set).
    pub async fn update_with<R>(
        &self,
        key: &str,
        f: impl FnOnce(&mut Value) -> R,
    ) -> Result<R, NatsError> {
        let mut out = None;
        self.store
            .modify(Some(key), async |draft| match draft {
                Draft::One(mut value) => {
                    out = Some(f(&mut value));
                    Some(Draft::One(value))
                }
                Draft::All(_) => None,
            })
            .await?;
        out.ok_or_else(|| broker(format!("update_with on key `{key}`"), "nothing was read"))
    }

    /// A consistent copy of the whole store (read under the lock).
    ///
    /// # Errors
    /// [`NatsError`] when the lock cannot be taken or the bucket cannot be read.
    ///
    /// # Cancel safety
    /// As [`set`](Self::set) (it holds the lock, writes nothing).
    pub async fn snapshot(&self) -> Result<Map<String, Value>, NatsError> {
        self.store.snapshot().await
    }

    /// Deletes the bucket and its lock bucket (the run is over).
    ///
    /// # Errors
    /// [`NatsError::Broker`] when the bucket cannot be deleted.
    ///
    /// # Cancel safety
    /// Cancel safe: deleting again is harmless.
    pub async fn delete(self) -> Result<(), NatsError> {
        let bucket = self.names.state_bucket();
        self.js
            .delete_key_value(&bucket)
            .await
            .map_err(|e| broker(format!("deleting key-value bucket `{bucket}`"), e))?;
        let _ = self.js.delete_key_value(self.names.lock_bucket()).await;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The synchronous backend behind `ctx.state()`.

/// What a caller's thread asks the state thread.
enum Request {
    Get {
        key: String,
        reply: std::sync::mpsc::SyncSender<Result<Option<Value>, NatsError>>,
    },
    Set {
        key: String,
        value: Option<Value>,
        reply: std::sync::mpsc::SyncSender<Result<Option<Value>, NatsError>>,
    },
    Update {
        entries: Vec<(String, Value)>,
        reply: std::sync::mpsc::SyncSender<Result<(), NatsError>>,
    },
    Snapshot {
        reply: std::sync::mpsc::SyncSender<Result<Map<String, Value>, NatsError>>,
    },
    /// Read under the lock, send the value, wait for the caller's new value (or its drop),
    /// write, release, answer `done`.
    Modify {
        key: Option<String>,
        read: std::sync::mpsc::SyncSender<Result<Draft, NatsError>>,
        commit: oneshot::Receiver<Draft>,
        done: std::sync::mpsc::SyncSender<Result<(), NatsError>>,
    },
}

/// The state thread of one process: its own current-thread tokio runtime and its own
/// connection (so a node blocked in a state call on any runtime flavour never waits on its own
/// runtime), started on first use.
pub(crate) struct StateThread {
    names: Names,
    options: Options,
    servers: Vec<async_nats::ServerAddr>,
    requests: OnceLock<mpsc::UnboundedSender<Request>>,
}

impl StateThread {
    /// A state thread (not started) for run `names` on the servers `client` was given.
    pub(crate) async fn new(client: &async_nats::Client, names: Names, options: Options) -> Self {
        let servers = match client.server_pool().await {
            Ok(pool) => {
                let given: Vec<_> = pool
                    .iter()
                    .filter(|s| !s.is_discovered)
                    .map(|s| s.addr.clone())
                    .collect();
                if given.is_empty() {
                    pool.into_iter().map(|s| s.addr).collect()
                } else {
                    given
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the client's server addresses");
                Vec::new()
            }
        };
        Self {
            names,
            options,
            servers,
            requests: OnceLock::new(),
        }
    }

    fn sender(&self) -> &mpsc::UnboundedSender<Request> {
        self.requests.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let servers = self.servers.clone();
            let names = self.names.clone();
            let options = self.options.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("spark-state-{}", names.run))
                .spawn(move || state_thread(servers, names, options, rx));
            if let Err(e) = spawned {
                // The receiver is gone with the closure: every request fails and says so.
                tracing::error!(error = %e, "starting the graph state thread");
            }
            tx
        })
    }
}

fn state_thread(
    servers: Vec<async_nats::ServerAddr>,
    names: Names,
    options: Options,
    mut rx: mpsc::UnboundedReceiver<Request>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "building the graph state thread's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let opened = async {
            let client = tokio::time::timeout(options.join_timeout, async_nats::connect(servers))
                .await
                .map_err(|_| NatsError::Timeout {
                    operation: "connecting the graph state's client".to_owned(),
                    seconds: options.join_timeout.as_secs_f64(),
                    reason: "no connection".to_owned(),
                })?
                .map_err(|e| broker("connecting the graph state's client", e))?;
            Store::open(client, &names, &options).await
        }
        .await;
        let store = match opened {
            Ok(store) => Arc::new(store),
            Err(e) => {
                let text = e.to_string();
                while let Some(request) = rx.recv().await {
                    fail(request, &text);
                }
                return;
            }
        };
        while let Some(request) = rx.recv().await {
            let store = Arc::clone(&store);
            tokio::spawn(async move { serve(&store, request).await });
        }
    });
}

fn fail(request: Request, text: &str) {
    let e = || broker("opening the graph state", text);
    match request {
        Request::Get { reply, .. } | Request::Set { reply, .. } => {
            let _ = reply.send(Err(e()));
        }
        Request::Update { reply, .. } => {
            let _ = reply.send(Err(e()));
        }
        Request::Snapshot { reply } => {
            let _ = reply.send(Err(e()));
        }
        Request::Modify { read, .. } => {
            let _ = read.send(Err(e()));
        }
    }
}

async fn serve(store: &Store, request: Request) {
    match request {
        Request::Get { key, reply } => {
            let _ = reply.send(store.get(&key).await);
        }
        Request::Set { key, value, reply } => {
            let _ = reply.send(store.set(&key, value).await);
        }
        Request::Update { entries, reply } => {
            let _ = reply.send(store.update(entries).await);
        }
        Request::Snapshot { reply } => {
            let _ = reply.send(store.snapshot().await);
        }
        Request::Modify {
            key,
            read,
            commit,
            done,
        } => {
            let mut read = Some(read);
            let result = store
                .modify(key.as_deref(), async |draft| {
                    read.take()?.send(Ok(draft)).ok()?;
                    commit.await.ok()
                })
                .await;
            match (result, read) {
                // Failed before the read was sent: the caller waits on `read`.
                (Err(e), Some(read)) => {
                    let _ = read.send(Err(e));
                }
                (other, _) => {
                    let _ = done.send(other);
                }
            }
        }
    }
}

/// `ctx.state()` in a distributed run: a core [`StateBackend`] on the run's bucket, through
/// the process's state thread. One per worker (node in a process), so a failure is reported as
/// the error of that worker's activation.
///
/// What a method returns when the broker fails (the failure is recorded, and the worker fails
/// the activation with it, naming the node): `get`, `set`, `remove` return `None`; `snapshot`
/// an empty map; `update_with` runs its closure on `null` (a `transaction`'s on an empty map)
/// and writes nothing. The first failure of an activation is the one reported.
#[derive(Debug)]
pub(crate) struct NatsStateBackend {
    thread: Arc<StateThread>,
    error: Mutex<Option<NatsError>>,
}

impl std::fmt::Debug for StateThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateThread")
            .field("bucket", &self.names.state_bucket())
            .finish()
    }
}

impl NatsStateBackend {
    pub(crate) fn new(thread: Arc<StateThread>) -> Self {
        Self {
            thread,
            error: Mutex::new(None),
        }
    }

    /// The first failure since the last call.
    pub(crate) fn take_error(&self) -> Option<NatsError> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn record(&self, e: NatsError) {
        tracing::warn!(error = %e, "graph state operation failed");
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(e);
    }

    /// Sends a request and blocks this thread on its answer.
    fn call<T>(
        &self,
        request: impl FnOnce(std::sync::mpsc::SyncSender<Result<T, NatsError>>) -> Request,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.thread.sender().send(request(tx)).is_err() {
            self.record(broker(
                "reaching the graph state thread",
                "it is not running",
            ));
            return None;
        }
        match rx.recv() {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.record(e);
                None
            }
            Err(_) => {
                self.record(broker("reaching the graph state thread", "it stopped"));
                None
            }
        }
    }

    fn begin(&self, key: Option<String>) -> Pending<'_> {
        let (read_tx, read_rx) = std::sync::mpsc::sync_channel(1);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let (commit_tx, commit_rx) = oneshot::channel();
        let whole = key.is_none();
        let empty = || {
            if whole {
                Draft::All(Map::new())
            } else {
                Draft::One(Value::Null)
            }
        };
        let sent = self.thread.sender().send(Request::Modify {
            key,
            read: read_tx,
            commit: commit_rx,
            done: done_tx,
        });
        if sent.is_err() {
            self.record(broker(
                "reaching the graph state thread",
                "it is not running",
            ));
            return Pending::failed(self, empty());
        }
        match read_rx.recv() {
            Ok(Ok(draft)) => Pending {
                owner: self,
                draft,
                commit: Some(commit_tx),
                done: Some(done_rx),
            },
            Ok(Err(e)) => {
                self.record(e);
                Pending::failed(self, empty())
            }
            Err(_) => {
                self.record(broker("reaching the graph state thread", "it stopped"));
                Pending::failed(self, empty())
            }
        }
    }
}

/// A read-modify-write holding the run's state lock (on the state thread) until it is
/// committed or dropped.
struct Pending<'a> {
    owner: &'a NatsStateBackend,
    draft: Draft,
    commit: Option<oneshot::Sender<Draft>>,
    done: Option<std::sync::mpsc::Receiver<Result<(), NatsError>>>,
}

impl<'a> Pending<'a> {
    fn failed(owner: &'a NatsStateBackend, draft: Draft) -> Self {
        Self {
            owner,
            draft,
            commit: None,
            done: None,
        }
    }

    fn finish(mut self) {
        let (Some(commit), Some(done)) = (self.commit.take(), self.done.take()) else {
            return;
        };
        let draft = std::mem::replace(&mut self.draft, Draft::One(Value::Null));
        if commit.send(draft).is_err() {
            self.owner.record(broker(
                "writing the graph state",
                "the state thread stopped",
            ));
            return;
        }
        match done.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.owner.record(e),
            Err(_) => self.owner.record(broker(
                "writing the graph state",
                "the state thread stopped",
            )),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        // Not committed (the closure panicked): dropping `commit` makes the state thread
        // release the lock without writing; wait for it, so the next call finds it free.
        self.commit.take();
        if let Some(done) = self.done.take() {
            let _ = done.recv();
        }
    }
}

/// `Pending` seen as a write of one value.
struct One<'a>(Pending<'a>, Value);
/// `Pending` seen as a write of the whole store.
struct All<'a>(Pending<'a>, Map<String, Value>);

impl StateWrite<Value> for One<'_> {
    fn value(&mut self) -> &mut Value {
        &mut self.1
    }
    fn commit(self: Box<Self>) {
        let One(mut pending, value) = *self;
        pending.draft = Draft::One(value);
        pending.finish();
    }
}

impl StateWrite<Map<String, Value>> for All<'_> {
    fn value(&mut self) -> &mut Map<String, Value> {
        &mut self.1
    }
    fn commit(self: Box<Self>) {
        let All(mut pending, map) = *self;
        pending.draft = Draft::All(map);
        pending.finish();
    }
}

impl StateBackend for NatsStateBackend {
    fn get(&self, key: &str) -> Option<Value> {
        let key = key.to_owned();
        self.call(|reply| Request::Get { key, reply }).flatten()
    }

    fn set(&self, key: &str, value: Value) -> Option<Value> {
        let key = key.to_owned();
        self.call(|reply| Request::Set {
            key,
            value: Some(value),
            reply,
        })
        .flatten()
    }

    fn remove(&self, key: &str) -> Option<Value> {
        let key = key.to_owned();
        self.call(|reply| Request::Set {
            key,
            value: None,
            reply,
        })
        .flatten()
    }

    fn update(&self, entries: Vec<(String, Value)>) {
        let _ = self.call(|reply| Request::Update { entries, reply });
    }

    fn begin_update(&self, key: &str) -> Box<dyn StateWrite<Value> + '_> {
        let mut pending = self.begin(Some(key.to_owned()));
        let value = match std::mem::replace(&mut pending.draft, Draft::One(Value::Null)) {
            Draft::One(v) => v,
            Draft::All(_) => Value::Null,
        };
        Box::new(One(pending, value))
    }

    fn begin_transaction(&self) -> Box<dyn StateWrite<Map<String, Value>> + '_> {
        let mut pending = self.begin(None);
        let map = match std::mem::replace(&mut pending.draft, Draft::All(Map::new())) {
            Draft::All(m) => m,
            Draft::One(_) => Map::new(),
        };
        Box::new(All(pending, map))
    }

    fn snapshot(&self) -> Map<String, Value> {
        self.call(|reply| Request::Snapshot { reply })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_key_value_keys_one_to_one_and_back() {
        for key in [
            "count",
            "a-b_C9",
            "",
            "a.b",
            "=41",
            "with space",
            "ü",
            "a/b",
            "*",
        ] {
            let raw = encode_key(key);
            assert!(
                raw.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'='),
                "{raw}"
            );
            assert!(!raw.is_empty());
            assert_eq!(decode_key(&raw).as_deref(), Some(key));
        }
        assert_eq!(encode_key("count"), "count");
        assert_ne!(encode_key("=41"), encode_key("A"));
    }
}
