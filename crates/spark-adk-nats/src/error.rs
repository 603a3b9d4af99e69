//! Typed errors of the distributed runtime.

use spark_adk_core::{NodeMessage, RunError};

/// What went wrong talking to the broker or setting up a distributed run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The broker could not be reached within the connect timeout (it was retried with backoff).
    #[error("NATS server at `{url}` unreachable after {attempts} attempts: {reason}")]
    Connect {
        /// The address tried.
        url: String,
        /// How many connection attempts were made.
        attempts: u32,
        /// The last attempt's error.
        reason: String,
    },
    /// A JetStream operation failed (stream, consumer, publish, ack, key-value).
    #[error("JetStream {operation} failed: {reason}")]
    Broker {
        /// What the runtime was doing (names the stream, subject or node).
        operation: String,
        /// The broker's or client's error text.
        reason: String,
    },
    /// A JetStream operation did not succeed before its deadline (retried with backoff until then).
    #[error("JetStream {operation} did not succeed within {seconds:.1} s: {reason}")]
    Timeout {
        /// What the runtime was waiting for.
        operation: String,
        /// How long it waited.
        seconds: f64,
        /// The last error seen.
        reason: String,
    },
    /// A message is larger than the broker's `max_payload` (1 MiB by default): it is refused, not
    /// split.
    #[error(
        "message for node `{node}` is {size} bytes, above the broker's max_payload of {max} bytes"
    )]
    PayloadTooLarge {
        /// The node the message was meant for (or that produced it).
        node: String,
        /// Encoded size in bytes.
        size: usize,
        /// The broker's limit.
        max: usize,
    },
    /// A setting is not usable (a run id with characters NATS subjects cannot hold, an unknown
    /// node name, ...).
    #[error("invalid distributed run setting: {0}")]
    Invalid(String),
}

/// A distributed run ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistributedError {
    /// The run itself failed the way an in-memory run can (a node error or panic, ...); carries
    /// the run's counts.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The broker failed underneath the run.
    #[error(transparent)]
    Nats(#[from] NatsError),
}

/// Why a message could not be sent into a distributed run; the message is handed back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The run's stop already began: the message was not sent.
    #[error("the distributed run is stopping; message not sent")]
    Stopped(NodeMessage),
    /// No node of the graph has this name.
    #[error("no node named `{0}` in the graph")]
    UnknownNode(String, NodeMessage),
    /// The broker refused the message or could not be reached.
    #[error("{1}")]
    Nats(NodeMessage, #[source] NatsError),
}

impl SendError {
    /// The message that was not sent.
    pub fn into_message(self) -> NodeMessage {
        match self {
            SendError::Stopped(m) | SendError::UnknownNode(_, m) | SendError::Nats(m, _) => m,
        }
    }
}

pub(crate) fn broker(operation: impl Into<String>, e: impl std::fmt::Display) -> NatsError {
    NatsError::Broker {
        operation: operation.into(),
        reason: e.to_string(),
    }
}
