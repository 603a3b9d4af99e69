//! Typed errors: what a node returns when it fails, and what a run returns when it fails.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::BudgetError;

/// The error a node returns from `process`.
///
/// It carries a message and, optionally, the underlying cause (reachable through
/// [`std::error::Error::source`]). Most error types convert into it with `?`.
///
/// # Example
///
/// ```
/// use spark_adk_core::NodeError;
///
/// fn parse(s: &str) -> Result<i64, NodeError> {
///     s.parse::<i64>().map_err(|e| NodeError::with_source("not a number", e))
/// }
/// let err = parse("x").unwrap_err();
/// assert_eq!(err.to_string(), "not a number");
/// assert!(std::error::Error::source(&err).is_some());
/// ```
pub struct NodeError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl NodeError {
    /// An error with a message and no underlying cause.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message and an underlying cause.
    pub fn with_source(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Wraps any error; the message is the error's own text.
    pub fn from_error(source: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The payload when this error is an interrupt made by
    /// [`Context::interrupt`](crate::Context::interrupt): the node asks for outside input and
    /// the run stops (durable runs) until it is resumed with a value.
    pub fn interrupt_payload(&self) -> Option<&serde_json::Value> {
        self.source
            .as_deref()
            .and_then(|s| s.downcast_ref::<Interrupt>())
            .map(|i| &i.payload)
    }
}

/// The cause of the [`NodeError`] that [`Context::interrupt`](crate::Context::interrupt)
/// returns: what the node asks (see [`NodeError::interrupt_payload`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Interrupt {
    /// What the node asks, given back to whoever resumes the run.
    pub payload: serde_json::Value,
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted, asking {}", self.payload)
    }
}

impl StdError for Interrupt {}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("NodeError");
        d.field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for NodeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

impl From<&str> for NodeError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<String> for NodeError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<Box<dyn StdError + Send + Sync + 'static>> for NodeError {
    fn from(source: Box<dyn StdError + Send + Sync + 'static>) -> Self {
        Self {
            message: source.to_string(),
            source: Some(source),
        }
    }
}

impl From<serde_json::Error> for NodeError {
    fn from(e: serde_json::Error) -> Self {
        Self::from_error(e)
    }
}

impl From<std::io::Error> for NodeError {
    fn from(e: std::io::Error) -> Self {
        Self::from_error(e)
    }
}

impl From<BudgetError> for NodeError {
    fn from(e: BudgetError) -> Self {
        Self::from_error(e)
    }
}

impl From<RunError> for NodeError {
    fn from(e: RunError) -> Self {
        Self::from_error(e)
    }
}

impl From<std::convert::Infallible> for NodeError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// Why a run failed. Every variant names where it happened (node, edge) when that is known.
///
/// # Example
///
/// ```
/// use spark_adk_core::RunError;
/// use std::time::Duration;
///
/// let err = RunError::Timeout {
///     budget: Duration::from_secs(30),
///     node: Some("load".into()),
///     counts: Default::default(),
/// };
/// assert!(err.is_timeout());
/// assert_eq!(err.node(), Some("load"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A node's `process` returned an error.
    #[error("node `{node}` failed: {source}")]
    NodeFailed {
        /// The node's name.
        node: String,
        /// What the node returned.
        #[source]
        source: NodeError,
        /// What the run had counted when it failed (messages accepted, processed, unprocessed).
        counts: RunCounts,
    },
    /// A node panicked; the panic was caught.
    #[error("node `{node}` panicked: {message}")]
    NodePanicked {
        /// The node's name.
        node: String,
        /// The panic's message (its payload when it was a string).
        message: String,
        /// What the run had counted when it failed (messages accepted, processed, unprocessed).
        counts: RunCounts,
    },
    /// A predicate condition on an edge panicked while it was evaluated.
    #[error("condition on edge `{from}` -> `{to}` panicked: {message}")]
    ConditionPanicked {
        /// The edge's source node.
        from: String,
        /// The edge's target node.
        to: String,
        /// The panic's message.
        message: String,
        /// What the run had counted when it failed (messages accepted, processed, unprocessed).
        counts: RunCounts,
    },
    /// The time budget ran out (the seed's `TimeoutError`; standard mode).
    #[error("time budget of {budget:?} exceeded{}", node.as_ref().map(|n| format!(" at node `{n}`")).unwrap_or_default())]
    Timeout {
        /// The budget's time limit.
        budget: Duration,
        /// The node that was running or about to run, if any.
        node: Option<String>,
        /// What the run had counted when it failed (messages accepted, processed, unprocessed).
        counts: RunCounts,
    },
    /// The token budget was used up before an activation could start (standard mode).
    #[error("token budget exhausted: {used} of {max} tokens used, node `{node}` not started")]
    TokenBudgetExhausted {
        /// Tokens recorded so far.
        used: u64,
        /// The budget's token limit.
        max: u64,
        /// The node whose activation was refused.
        node: String,
        /// What the run had counted when it failed (messages accepted, processed, unprocessed).
        counts: RunCounts,
    },
    /// A standard-mode run reached its step limit (usually a runaway cycle).
    #[error("step limit of {limit} activations reached: node `{node}` would have been activation {}", limit.saturating_add(1))]
    StepLimitExceeded {
        /// The node that would have run next.
        node: String,
        /// The limit.
        limit: u64,
        /// What the run had counted when it failed (messages accepted, processed, unprocessed).
        counts: RunCounts,
    },
    /// Long-running mode: workers blocked sending to full mailboxes form a cycle, so none of
    /// them can ever make progress.
    #[error("deadlock: nodes {} are blocked sending to full mailboxes on a cycle that can never drain", blocked.join(", "))]
    Deadlock {
        /// Every node blocked on a send when the cycle was found (also those blocked on a
        /// cycle member without being on the cycle), in graph order.
        blocked: Vec<String>,
        /// What the run had counted when it failed (messages accepted, processed, unprocessed).
        counts: RunCounts,
    },
    /// The run was cancelled from outside (for example, the parent of a subgraph stopped).
    #[error("run cancelled")]
    Cancelled {
        /// What the run had counted when it was cancelled (messages accepted, processed,
        /// unprocessed, tokens).
        counts: RunCounts,
    },
    /// The task cannot be run by this executor or graph. Refused before the run starts, so it
    /// carries no counts.
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// A task of the runtime itself failed (a bug in Spark, please report it).
    #[error("internal runtime failure: {0}")]
    Internal(String),
}

/// What a run had counted when it ended: the "nothing lost" accounting, also carried by errors.
///
/// `accepted == processed + unprocessed` always holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RunCounts {
    /// Messages created for a node (task input, routed outputs, messages sent through a handle).
    pub accepted: u64,
    /// Messages whose `process` call finished (Ok or error).
    pub processed: u64,
    /// Messages accepted but never processed.
    pub unprocessed: u64,
    /// Tokens recorded.
    pub tokens_used: u64,
}

impl RunError {
    /// The run's counts when it failed: every error a run ends with carries them; only
    /// [`RunError::InvalidTask`] (refused before the run started) and [`RunError::Internal`]
    /// have none.
    pub fn counts(&self) -> Option<&RunCounts> {
        match self {
            RunError::NodeFailed { counts, .. }
            | RunError::NodePanicked { counts, .. }
            | RunError::ConditionPanicked { counts, .. }
            | RunError::Timeout { counts, .. }
            | RunError::TokenBudgetExhausted { counts, .. }
            | RunError::StepLimitExceeded { counts, .. }
            | RunError::Deadlock { counts, .. }
            | RunError::Cancelled { counts } => Some(counts),
            RunError::InvalidTask(_) | RunError::Internal(_) => None,
        }
    }

    /// Sets the counts of a variant that carries them (executors call this when a run ends).
    #[must_use]
    pub fn with_counts(mut self, new: RunCounts) -> Self {
        match &mut self {
            RunError::NodeFailed { counts, .. }
            | RunError::NodePanicked { counts, .. }
            | RunError::ConditionPanicked { counts, .. }
            | RunError::Timeout { counts, .. }
            | RunError::TokenBudgetExhausted { counts, .. }
            | RunError::StepLimitExceeded { counts, .. }
            | RunError::Deadlock { counts, .. }
            | RunError::Cancelled { counts } => *counts = new,
            RunError::InvalidTask(_) | RunError::Internal(_) => {}
        }
        self
    }

    /// `true` for [`RunError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, RunError::Timeout { .. })
    }

    /// The node the error is about, if it names one.
    pub fn node(&self) -> Option<&str> {
        match self {
            RunError::NodeFailed { node, .. }
            | RunError::NodePanicked { node, .. }
            | RunError::TokenBudgetExhausted { node, .. }
            | RunError::StepLimitExceeded { node, .. } => Some(node),
            RunError::ConditionPanicked { from, .. } => Some(from),
            RunError::Timeout { node, .. } => node.as_deref(),
            RunError::Deadlock { .. }
            | RunError::Cancelled { .. }
            | RunError::InvalidTask(_)
            | RunError::Internal(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_failed_names_the_node_and_keeps_the_cause_as_source() {
        let err = RunError::NodeFailed {
            node: "load".into(),
            source: NodeError::with_source("db down", std::io::Error::other("refused")),
            counts: RunCounts::default(),
        };
        assert_eq!(err.to_string(), "node `load` failed: db down");
        let source = StdError::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("db down"));
        assert_eq!(err.node(), Some("load"));
    }

    #[test]
    fn step_limit_message_names_node_and_next_step() {
        let err = RunError::StepLimitExceeded {
            node: "loop".into(),
            limit: 10,
            counts: RunCounts::default(),
        };
        assert_eq!(
            err.to_string(),
            "step limit of 10 activations reached: node `loop` would have been activation 11"
        );
    }
}
