//! Names on the broker, what travels on it, and the publish helpers shared by workers and the
//! coordinator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use spark_adk_core::NodeMessage;
use tokio_util::sync::CancellationToken;

use crate::error::{broker, NatsError};

/// Room kept for the headers (the `Nats-Msg-Id`) below the broker's `max_payload`.
pub(crate) const HEADER_ROOM: usize = 256;

/// The broker-side names of one run.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    pub(crate) run: String,
}

impl Names {
    pub(crate) fn new(run: &str) -> Self {
        Self {
            run: run.to_owned(),
        }
    }
    /// The work-queue stream holding the mailboxes of the nodes with capacity `capacity`
    /// (one stream per run in the common case where every node has the graph's capacity:
    /// JetStream bounds messages per subject stream-wide).
    pub(crate) fn mailbox_stream(&self, capacity: usize) -> String {
        format!("SPARK_{}_MB_{capacity}", self.run)
    }
    /// The stream of activation records (counts, sink outputs, errors) the coordinator reads.
    pub(crate) fn record_stream(&self) -> String {
        format!("SPARK_{}_REC", self.run)
    }
    /// The key-value bucket of the run's distributed state.
    pub(crate) fn state_bucket(&self) -> String {
        format!("SPARK_{}_STATE", self.run)
    }
    /// The key-value bucket of the run's state lock (its stream has a `max_age`: a lock whose
    /// holder died expires).
    pub(crate) fn lock_bucket(&self) -> String {
        format!("SPARK_{}_LOCK", self.run)
    }
    /// The mailbox subject of node `index`.
    pub(crate) fn mailbox(&self, index: usize) -> String {
        format!("spark.{}.mb.{index}", self.run)
    }
    pub(crate) fn records(&self) -> String {
        format!("spark.{}.rec", self.run)
    }
    /// The durable consumer of node `index`.
    pub(crate) fn consumer(index: usize) -> String {
        format!("node{index}")
    }
    /// Control subjects (core NATS): `hello`, `lease`, `final`, `stop`.
    pub(crate) fn control(&self, what: &str) -> String {
        format!("spark.{}.ctl.{what}", self.run)
    }
}

/// A run id must be usable in stream names and subjects.
pub(crate) fn check_run_id(run: &str) -> Result<(), NatsError> {
    if run.is_empty()
        || run.len() > 64
        || !run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(NatsError::Invalid(format!(
            "run id `{run}` must be 1 to 64 characters of A-Z, a-z, 0-9, `_` or `-`"
        )));
    }
    Ok(())
}

/// What an activation settled, published to the record stream before its input is acked
/// (de-duplicated by `Nats-Msg-Id` = the input's id + `.rec`, and by the coordinator on
/// `input`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The logical id of the message the activation consumed.
    pub(crate) input: String,
    /// The node that ran.
    pub(crate) node: usize,
    /// Messages routed to a mailbox and stored by the broker.
    pub(crate) routed: u64,
    /// Messages routed after the stop began that could not be stored (counted unprocessed).
    pub(crate) undelivered: u64,
    /// The output, when it matched no edge.
    pub(crate) sink: Option<NodeMessage>,
    /// Why the activation failed, if it did.
    pub(crate) error: Option<RecordError>,
    /// The node asked for a shutdown during this activation.
    pub(crate) shutdown_requested: bool,
    /// Tokens this activation recorded.
    pub(crate) tokens: u64,
}

/// A failed activation, as the coordinator turns it into a `RunError`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum RecordError {
    Failed(String),
    Panicked(String),
    Condition { to: String, message: String },
}

/// A worker process announcing itself (every heartbeat).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) process: String,
    pub(crate) nodes: Vec<usize>,
    /// The served nodes whose worker waits for room in a full mailbox right now.
    #[serde(default)]
    pub(crate) blocked: Vec<usize>,
}

/// A token lease request: the process has used `used` tokens in total.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LeaseRequest {
    pub(crate) process: String,
    pub(crate) used: u64,
}

/// The total the process may use (`u64::MAX` without a token budget).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LeaseReply {
    pub(crate) granted: u64,
}

/// Sent by the coordinator when the stop begins (repeated until every worker reported).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Stop {
    pub(crate) grace_ms: u64,
}

/// A worker's last word, after its shutdown delivery.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Final {
    pub(crate) process: String,
    pub(crate) node: usize,
    /// Its shutdown delivery ran (false for a failed node or a dropped activation).
    pub(crate) shutdown_delivered: bool,
    /// Its in-flight activation was dropped at the end of the grace period.
    pub(crate) dropped: bool,
    /// Tokens recorded outside activation records (the shutdown delivery).
    pub(crate) extra_tokens: u64,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes, NatsError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| NatsError::Invalid(format!("a message could not be encoded as JSON: {e}")))
}

/// `true` when a publish failed because the subject holds its maximum of messages
/// (JetStream error 10077, "maximum messages per subject exceeded").
fn is_full(e: &async_nats::jetstream::context::PublishError) -> bool {
    e.kind() == PublishErrorKind::Other && e.to_string().contains("maximum messages per subject")
}

/// How a bounded publish ended without storing the message.
#[derive(Debug)]
pub(crate) enum PublishFailure {
    /// `stop` fired while waiting (for room or for the broker).
    Stopped,
    /// The broker refused the message for good.
    Refused(NatsError),
}

/// Publishes `payload` to `subject` with de-duplication id `id`, waiting (with backoff) while
/// the subject is full or the broker does not answer, until it is stored or `stop` fires (after
/// `stop` it still tries once: a message that finds room is stored).
/// Returns `true` when the broker reports it as a duplicate (already stored earlier).
pub(crate) async fn publish_bounded(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    payload: Bytes,
    stop: &CancellationToken,
    blocked: Option<&AtomicBool>,
) -> Result<bool, PublishFailure> {
    // `blocked` is true while this send waits for room (what deadlock detection reads).
    struct Unblock<'a>(Option<&'a AtomicBool>);
    impl Drop for Unblock<'_> {
        fn drop(&mut self) {
            if let Some(flag) = self.0 {
                flag.store(false, Ordering::Release);
            }
        }
    }
    let _unblock = Unblock(blocked);
    let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(100));
    loop {
        let msg = PublishMessage::build()
            .payload(payload.clone())
            .message_id(id);
        let result = match js.send_publish(subject.to_owned(), msg).await {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(ack) => return Ok(ack.duplicate),
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                return Err(PublishFailure::Refused(broker(
                    format!("publish to `{subject}`"),
                    e,
                )))
            }
            Err(e) => {
                if is_full(&e) {
                    if let Some(flag) = blocked {
                        flag.store(true, Ordering::Release);
                    }
                } else {
                    tracing::debug!(subject, error = %e, "publish failed, retrying");
                }
                tokio::select! {
                    () = stop.cancelled() => return Err(PublishFailure::Stopped),
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// Exponential backoff between `min` and `max`.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self { next: min, max }
    }
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// Retries `op` with backoff until it succeeds or `within` has passed.
pub(crate) async fn retry<T, E: std::fmt::Display, F, Fut>(
    operation: &str,
    within: Duration,
    mut op: F,
) -> Result<T, NatsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(NatsError::Timeout {
                        operation: operation.to_owned(),
                        seconds: within.as_secs_f64(),
                        reason: e.to_string(),
                    });
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// The mailbox capacities of a graph, each with its nodes (one mailbox stream each).
pub(crate) fn capacity_groups(topology: &spark_adk_edges::Topology) -> Vec<(usize, Vec<usize>)> {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, node) in topology.nodes().iter().enumerate() {
        match groups.iter_mut().find(|(c, _)| *c == node.mailbox_capacity) {
            Some((_, nodes)) => nodes.push(i),
            None => groups.push((node.mailbox_capacity, vec![i])),
        }
    }
    groups
}

/// The logical id of output `k` of the activation that consumed message `input`:
/// `<run>.<128-bit hash of (input, k)>`, the same whenever that activation runs again.
pub(crate) fn output_id(run: &str, input: &str, k: usize) -> String {
    // FNV-1a, twice with different offsets: stable across processes and builds (unlike std's
    // hasher), 128 bits so that ids of one run do not collide in practice.
    fn fnv(offset: u64, parts: &[&[u8]]) -> u64 {
        let mut h = offset;
        for part in parts {
            for b in *part {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h ^= 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
    let k = (k as u64).to_le_bytes();
    let parts: [&[u8]; 2] = [input.as_bytes(), &k];
    let a = fnv(0xcbf2_9ce4_8422_2325, &parts);
    let b = fnv(0x6c62_272e_07bb_0142, &parts);
    format!("{run}.{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_ids_differ_for_every_input_and_index() {
        let mut seen = std::collections::HashSet::new();
        for input in 0..1000 {
            for k in 0..10 {
                assert!(seen.insert(output_id("r", &format!("r.h.{input}"), k)));
            }
        }
    }

    #[test]
    fn output_ids_are_the_same_in_every_process_and_build() {
        // Processes of one run must derive the same id for the same output, whatever binary
        // they run: the algorithm is pinned (FNV-1a, computed independently of this code),
        // not std's hasher, which may change between Rust releases.
        assert_eq!(
            output_id("run", "run.input", 1),
            "run.e24a4cdffed27b29b7cdbd9dbd21b900"
        );
    }

    #[test]
    fn run_ids_that_cannot_name_a_stream_or_subject_are_refused() {
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65)] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
        for good in ["demo", "run-1_A", &"x".repeat(64)] {
            assert!(check_run_id(good).is_ok(), "{good:?}");
        }
    }
}
