//! The log's record format: the run header, one record per committed activation, and the other
//! record kinds (accepted messages, interrupts, resumes, stops), plus their byte encoding.
//!
//! Every stored payload is one JSON object carrying the format version under `"v"`. Decoding
//! tells apart a payload that is not JSON ([`DurableError::InvalidJson`]), one of another format
//! version ([`DurableError::UnknownFormatVersion`]) and one of the wrong shape
//! ([`DurableError::Corrupt`]); none is ever replaced by a default.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use spark_adk_core::NodeMessage;

use crate::error::DurableError;
use crate::fingerprint::Fingerprint;
use crate::image::RunImage;

/// The log format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A run's id (LangGraph's thread id): chosen by the caller, unique within a store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// A run id from any string.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RunId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for RunId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// A message's id, unique within its run. The task input is [`MessageId::INPUT`]; the executor
/// allocates the others (a resumed run continues from [`RunImage::next_message_id`]). A transport
/// spread over several processes can partition the space (e.g. high bits = process).
///
/// An activation is named by the message it consumes: that id is the activation id, stable across
/// retries (a re-run consumes the same message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub u64);

impl MessageId {
    /// The id of the task input (the first message of every run).
    pub const INPUT: MessageId = MessageId(0);
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// The execution mode a run was started in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Standard mode: one activation at a time, a FIFO queue.
    Standard,
    /// Long-running mode: a worker and a mailbox per node.
    LongRunning,
}

/// The budgets and limits of the task, as given (so a resume keeps them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Budgets {
    /// The time budget in seconds.
    #[serde(deserialize_with = "Option::deserialize")]
    pub max_seconds: Option<f64>,
    /// The token budget.
    #[serde(deserialize_with = "Option::deserialize")]
    pub max_tokens: Option<u64>,
    /// The step limit (standard mode).
    #[serde(deserialize_with = "Option::deserialize")]
    pub max_steps: Option<u64>,
    /// The grace period of a graceful stop, in seconds.
    #[serde(deserialize_with = "Option::deserialize")]
    pub grace_seconds: Option<f64>,
}

/// The first entry of every run's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// The log format version ([`FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// The run.
    pub run_id: RunId,
    /// The topology of the graph that started the run.
    pub fingerprint: Fingerprint,
    /// The execution mode.
    pub mode: RunMode,
    /// The task input: message [`MessageId::INPUT`], delivered to the start node.
    pub inputs: NodeMessage,
    /// The graph state the run started with.
    pub initial_state: Map<String, Value>,
    /// The task's budgets.
    pub budgets: Budgets,
    /// When the run was created, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

impl RunHeader {
    /// A header of the current format version, created now, with no initial state and no budgets.
    pub fn new(
        run_id: impl Into<RunId>,
        fingerprint: Fingerprint,
        mode: RunMode,
        inputs: NodeMessage,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            run_id: run_id.into(),
            fingerprint,
            mode,
            inputs,
            initial_state: Map::new(),
            budgets: Budgets::default(),
            created_at_ms: now_ms(),
        }
    }
}

/// A message accepted into the run: its id, the node it is for, and its content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutedMessage {
    /// The message's id (fresh, unique within the run).
    pub id: MessageId,
    /// The node it is delivered to.
    pub target: String,
    /// The message.
    pub message: NodeMessage,
}

/// One change to the graph state: a key set to a value, or removed. Records hold changed keys
/// only, never the whole map, so storage grows with the work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StateChange {
    /// `key` now holds `value`.
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: Value,
    },
    /// `key` was removed.
    Removed {
        /// The key.
        key: String,
    },
}

/// One committed activation: the node consumed `activation` and did all of this.
///
/// Count deltas are implied and checked on replay: one activation processed (the step count and
/// the node's processed count grow by one), `routed.len()` messages accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationRecord {
    /// The consumed message's id, which is also the activation id.
    pub activation: MessageId,
    /// The node that ran.
    pub node: String,
    /// Which attempt this was (1 for the first run of the activation).
    pub attempt: u32,
    /// The messages it routed, in routing order (logged, never recomputed on resume).
    pub routed: Vec<RoutedMessage>,
    /// Its output, when it matched no outgoing edge.
    #[serde(deserialize_with = "Option::deserialize")]
    pub sink: Option<NodeMessage>,
    /// The state changes it made, in order.
    pub state: Vec<StateChange>,
    /// Tokens it recorded.
    pub tokens: u64,
}

/// A message accepted from outside the run (a run handle's send), recorded before the send is
/// acknowledged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AcceptedRecord {
    /// Who sent it, free text (e.g. `"handle"`); `None` for an anonymous sender.
    #[serde(deserialize_with = "Option::deserialize")]
    pub sender: Option<String>,
    /// The message.
    pub message: RoutedMessage,
}

/// A node interrupted its activation (`ctx.interrupt(payload)`): the activation's message stays
/// pending until a resume answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterruptRecord {
    /// The interrupted activation (the message it consumed).
    pub activation: MessageId,
    /// The node.
    pub node: String,
    /// What the node asked.
    pub payload: Value,
    /// Tokens the interrupted attempt recorded.
    pub tokens: u64,
}

/// A resume of the run. With `activation`, it answers that activation's pending interrupt with
/// `value` (a second answer to the same interrupt is a [`DurableError::Conflict`]); without, it
/// marks a plain resume (after a crash or a stop), which also fences out a second resumer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// The interrupted activation this resume answers.
    #[serde(deserialize_with = "Option::deserialize")]
    pub activation: Option<MessageId>,
    /// The answer given to the interrupted node.
    #[serde(deserialize_with = "Option::deserialize")]
    pub value: Option<Value>,
    /// Who resumed (the lease owner, free text).
    #[serde(deserialize_with = "Option::deserialize")]
    pub owner: Option<String>,
}

/// Why a run stopped, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopRecord {
    /// No work left (standard mode) or quiescence (long-running).
    Completed,
    /// The time budget ran out.
    TimeBudget,
    /// The token budget ran out.
    TokenBudget,
    /// The step limit was reached.
    StepLimit,
    /// A shutdown was requested.
    Shutdown,
    /// A node interrupted the run.
    Interrupted {
        /// The node.
        node: String,
    },
    /// The run handle was dropped.
    HandleDropped,
    /// The run was cancelled.
    Cancelled,
    /// A node failed; its activation is not committed and runs again on resume.
    Failed {
        /// The node, when known.
        #[serde(deserialize_with = "Option::deserialize")]
        node: Option<String>,
        /// The error, in words.
        message: String,
    },
}

/// One entry of a run's log after the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A committed activation.
    Activation(ActivationRecord),
    /// A message accepted from outside.
    Accepted(AcceptedRecord),
    /// An interrupt.
    Interrupt(InterruptRecord),
    /// A resume.
    Resume(ResumeRecord),
    /// The run stopped.
    Stop(StopRecord),
}

/// A compacted run: the image replay produced up to record `at` included. Replay from a snapshot
/// plus the records after `at` equals replay of the whole log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last record the image includes.
    pub at: u64,
    /// The run's image after record `at`.
    pub image: RunImage,
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Encodes a header, record or snapshot as stored bytes: one JSON object with `"v"` set to
/// [`FORMAT_VERSION`].
pub fn encode<T: Serialize>(run: &RunId, seq: u64, value: &T) -> Result<Vec<u8>, DurableError> {
    serde_json::to_vec(&EnvelopeOut {
        v: FORMAT_VERSION,
        body: value,
    })
    .map_err(|e| DurableError::corrupt(run, seq, format!("cannot encode: {e}")))
}

/// Decodes stored bytes written by [`encode`], telling apart invalid JSON, an unknown format
/// version and a payload of the wrong shape.
pub fn decode<T: DeserializeOwned>(run: &RunId, seq: u64, bytes: &[u8]) -> Result<T, DurableError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            DurableError::Truncated {
                run: run.clone(),
                seq,
                reason: format!("the stored payload ends early: {e}"),
            }
        } else {
            DurableError::InvalidJson {
                run: run.clone(),
                seq,
                source: std::sync::Arc::new(e),
            }
        }
    })?;
    let Value::Object(mut map) = value else {
        return Err(DurableError::corrupt(
            run,
            seq,
            "the payload is not a JSON object",
        ));
    };
    let version = match map.remove("v") {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            DurableError::corrupt(
                run,
                seq,
                format!("the format version `{n}` is not a whole number"),
            )
        })?,
        Some(other) => {
            return Err(DurableError::corrupt(
                run,
                seq,
                format!("the format version is not a number: {other}"),
            ))
        }
        None => {
            return Err(DurableError::corrupt(
                run,
                seq,
                "the format version `v` is missing",
            ))
        }
    };
    if version != u64::from(FORMAT_VERSION) {
        return Err(DurableError::UnknownFormatVersion {
            run: run.clone(),
            seq,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_value(Value::Object(map))
        .map_err(|e| DurableError::corrupt(run, seq, format!("unexpected shape: {e}")))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec() -> Record {
        Record::Activation(ActivationRecord {
            activation: MessageId(3),
            node: "a".into(),
            attempt: 1,
            routed: vec![RoutedMessage {
                id: MessageId(4),
                target: "b".into(),
                message: NodeMessage::from(json!({"n": 1})),
            }],
            sink: None,
            state: vec![StateChange::Set {
                key: "k".into(),
                value: json!(1),
            }],
            tokens: 5,
        })
    }

    #[test]
    fn a_record_round_trips_through_its_bytes() {
        let run = RunId::new("r");
        let bytes = encode(&run, 1, &rec()).expect("encodes");
        let back: Record = decode(&run, 1, &bytes).expect("decodes");
        assert_eq!(back, rec());
    }

    #[test]
    fn bytes_that_are_not_json_name_the_run_and_record() {
        let err = decode::<Record>(&RunId::new("r7"), 12, b"{not json").expect_err("bad");
        assert!(
            matches!(err, DurableError::InvalidJson { seq: 12, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("run `r7`, record 12"), "{err}");
    }

    #[test]
    fn a_cut_off_payload_is_reported_as_truncated() {
        let run = RunId::new("r");
        let bytes = encode(&run, 1, &rec()).expect("encodes");
        let err = decode::<Record>(&run, 4, &bytes[..bytes.len() / 2]).expect_err("cut");
        assert!(
            matches!(err, DurableError::Truncated { seq: 4, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn another_format_version_is_refused() {
        let err = decode::<Record>(
            &RunId::new("r"),
            2,
            br#"{"v":2,"kind":"stop","reason":"completed"}"#,
        )
        .expect_err("v2");
        assert!(
            matches!(
                err,
                DurableError::UnknownFormatVersion {
                    found: 2,
                    supported: 1,
                    seq: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_missing_field_is_corrupt_not_defaulted() {
        let err = decode::<Record>(
            &RunId::new("r"),
            3,
            br#"{"v":1,"kind":"accepted","message":{"id":1,"target":"a","message":{"content":{}}}}"#,
        )
        .expect_err("no sender");
        assert!(err.to_string().contains("sender"), "{err}");
        let err = decode::<Record>(&RunId::new("r"), 3, br#"{"v":1,"kind":"accepted"}"#)
            .expect_err("no message");
        assert!(
            matches!(err, DurableError::Corrupt { seq: 3, .. }),
            "{err:?}"
        );
        let err = decode::<Record>(
            &RunId::new("r"),
            3,
            br#"{"kind":"stop","reason":"completed"}"#,
        )
        .expect_err("no version");
        assert!(
            err.to_string().contains("format version `v` is missing"),
            "{err}"
        );
    }
}
