//! [`DistributedState`]: a run's graph state shared by every process, in a JetStream
//! key-value bucket.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use serde_json::Value;

use crate::error::{broker, NatsError};
use crate::wire::{check_run_id, encode, Names};

/// A key/value store of JSON values shared by every process of a distributed run (a JetStream
/// key-value bucket named after the run).
///
/// Core's [`GraphState`](spark_adk_core::GraphState) is an in-process map that core gives every
/// context; it cannot be backed by the broker without changing core (its methods are
/// synchronous). So in a distributed run `ctx.state()` is shared only by the nodes of one
/// process, and nodes that share state across processes use this type (each process opens it
/// with the same run id and captures it in its nodes).
///
/// [`update_with`](Self::update_with) is an atomic read-modify-write: it reads the key's
/// revision, applies the closure and writes with compare-and-set on that revision, retrying
/// from a fresh read when another process wrote in between. The closure may therefore run more
/// than once; it must not have side effects.
#[derive(Clone, Debug)]
pub struct DistributedState {
    store: kv::Store,
    js: jetstream::Context,
    bucket: String,
}

impl DistributedState {
    /// Opens (creating if needed) the state bucket of run `run_id`.
    ///
    /// # Errors
    /// [`NatsError`] when the run id is invalid or the bucket cannot be created.
    pub async fn open(client: async_nats::Client, run_id: &str) -> Result<Self, NatsError> {
        check_run_id(run_id)?;
        let js = jetstream::new(client);
        let bucket = Names::new(run_id).state_bucket();
        // async-nats 0.50's `create_key_value` cannot read nats-server 2.9's answer, so the
        // bucket's stream is created here with the layout of a key-value bucket (one value
        // per key, rollups allowed, direct get), then opened as a bucket.
        if js.get_key_value(&bucket).await.is_err() {
            let created = js
                .create_stream(stream::Config {
                    name: format!("KV_{bucket}"),
                    subjects: vec![format!("$KV.{bucket}.>")],
                    max_messages_per_subject: 1,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: stream::DiscardPolicy::New,
                    ..Default::default()
                })
                .await;
            if let Err(e) = created {
                // Another process may have created it at the same moment.
                tracing::debug!(error = %e, bucket, "creating the state bucket's stream");
            }
        }
        let store = js
            .get_key_value(&bucket)
            .await
            .map_err(|e| broker(format!("opening key-value bucket `{bucket}`"), e))?;
        Ok(Self { store, js, bucket })
    }

    /// The value at `key`.
    ///
    /// # Errors
    /// [`NatsError::Broker`] when the bucket cannot be read, or the value is not JSON.
    pub async fn get(&self, key: &str) -> Result<Option<Value>, NatsError> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|e| broker(format!("reading key `{key}` of `{}`", self.bucket), e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let value = serde_json::from_slice(&e.value)
                    .map_err(|err| broker(format!("decoding key `{key}`"), err))?;
                Ok(Some(value))
            }
            // A deleted or purged key reads as missing.
            Some(_) | None => Ok(None),
        }
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// [`NatsError::Broker`] when the write fails.
    pub async fn set(&self, key: &str, value: Value) -> Result<(), NatsError> {
        self.store
            .put(key, encode(&value)?)
            .await
            .map_err(|e| broker(format!("writing key `{key}` of `{}`", self.bucket), e))?;
        Ok(())
    }

    /// Atomic read-modify-write of `key` (a missing key starts as `null`) across processes;
    /// returns what `f` returns for the write that won.
    ///
    /// # Errors
    /// [`NatsError`] when the bucket fails, or when 1,000 attempts in a row lost the race.
    pub async fn update_with<R>(
        &self,
        key: &str,
        mut f: impl FnMut(&mut Value) -> R,
    ) -> Result<R, NatsError> {
        let mut backoff =
            crate::wire::Backoff::new(Duration::from_micros(100), Duration::from_millis(20));
        for _ in 0..1000 {
            let raw = self
                .store
                .entry(key)
                .await
                .map_err(|e| broker(format!("reading key `{key}` of `{}`", self.bucket), e))?;
            let (mut value, revision) = match &raw {
                Some(e) if e.operation == kv::Operation::Put => (
                    serde_json::from_slice(&e.value)
                        .map_err(|err| broker(format!("decoding key `{key}`"), err))?,
                    Some(e.revision),
                ),
                Some(e) => (Value::Null, Some(e.revision)),
                None => (Value::Null, None),
            };
            let out = f(&mut value);
            let payload = encode(&value)?;
            let written = match revision {
                Some(rev) => self.store.update(key, payload, rev).await.is_ok(),
                None => self.store.create(key, payload).await.is_ok(),
            };
            if written {
                return Ok(out);
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        Err(NatsError::Timeout {
            operation: format!("update_with on key `{key}` of `{}`", self.bucket),
            seconds: 0.0,
            reason: "1,000 compare-and-set attempts lost the race".to_owned(),
        })
    }

    /// Deletes the bucket (the run is over).
    ///
    /// # Errors
    /// [`NatsError::Broker`] when the bucket cannot be deleted.
    pub async fn delete(self) -> Result<(), NatsError> {
        self.js
            .delete_key_value(&self.bucket)
            .await
            .map_err(|e| broker(format!("deleting key-value bucket `{}`", self.bucket), e))?;
        Ok(())
    }
}
