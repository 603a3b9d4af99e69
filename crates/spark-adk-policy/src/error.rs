//! The errors of the policies: an invalid policy, a retry that gave up, a timeout.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use spark_adk_core::NodeError;

/// A policy that cannot work as configured. Limiters report it when made
/// ([`Limiter::new`](crate::Limiter::new)); retry and timeout wrappers report it at the node,
/// as the error of every activation (before the wrapped node runs), and
/// [`RetryPolicy::validate`](crate::RetryPolicy::validate) reports it at once for who wants to
/// check when building.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A retry policy allowing zero attempts would never run the node.
    #[error("a retry policy needs at least 1 attempt, got 0")]
    ZeroAttempts,
    /// The backoff factor is below 1, NaN or infinite.
    #[error("the backoff factor must be a finite number of at least 1, got {0}")]
    InvalidFactor(f64),
    /// A timeout of zero would fail every activation before it started.
    #[error("a node timeout must be longer than zero")]
    ZeroTimeout,
    /// A limiter with no room would make every node using it wait forever.
    #[error("limiter `{name}` needs a capacity of at least 1, got 0")]
    ZeroCapacity {
        /// The limiter's name.
        name: String,
    },
    /// A limiter larger than the semaphore behind it can count.
    #[error("limiter `{name}` capacity {capacity} is above the maximum of {max}")]
    CapacityTooLarge {
        /// The limiter's name.
        name: String,
        /// The capacity asked for.
        capacity: usize,
        /// The largest capacity possible.
        max: usize,
    },
}

impl PolicyError {
    /// This error as the error of node `node`'s activation: names the node, keeps `self` as
    /// the source.
    pub(crate) fn at_node(self, node: &str) -> NodeError {
        NodeError::with_source(format!("node `{node}` has an invalid policy: {self}"), self)
    }
}

/// Why a retry wrapper stopped trying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUp {
    /// Every attempt the policy allows was made.
    AttemptsExhausted,
    /// The policy's predicate said this error is not retried.
    NotRetryable,
    /// The run began to stop (a budget ran out, a shutdown, another node's failure) or was
    /// cancelled: budgets win, no further attempt starts.
    RunStopping,
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GiveUp::AttemptsExhausted => "no attempts left",
            GiveUp::NotRetryable => "the error is not retried",
            GiveUp::RunStopping => "the run is stopping",
        })
    }
}

/// The final error of a node wrapped in a retry policy: names the node, the attempts made and
/// why no further attempt was made; the last attempt's error is the [`source`](StdError::source).
///
/// A retry wrapper returns it inside a [`NodeError`]; find it with
/// [`find_cause`](crate::find_cause).
#[derive(Debug, thiserror::Error)]
#[error("node `{node}` gave up after {attempts} attempt{} ({reason}): {last}", if *attempts == 1 { "" } else { "s" })]
pub struct RetryError {
    /// The node's name.
    pub node: String,
    /// How many attempts ran.
    pub attempts: u32,
    /// Why no further attempt was made.
    pub reason: GiveUp,
    /// The last attempt's error.
    #[source]
    pub last: NodeError,
}

/// The error of a node wrapped in a timeout whose activation took longer than the limit: names
/// the node and the limit. The wrapped node's future was dropped at the limit.
///
/// A timeout wrapper returns it inside a [`NodeError`]; find it with
/// [`find_cause`](crate::find_cause).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node `{node}` timed out after {limit:?}{}", if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() })]
pub struct TimeoutError {
    /// The node's name.
    pub node: String,
    /// The limit.
    pub limit: Duration,
    /// The attempt that timed out ([`Context::attempt`](spark_adk_core::Context::attempt)).
    pub attempt: u32,
}

/// The first error of type `E` in `error`'s chain of sources (the error itself excluded, since
/// a [`NodeError`] is never an `E`), e.g. whether a node's error was a [`TimeoutError`].
///
/// # Example
///
/// ```
/// use spark_adk_core::NodeError;
/// use spark_adk_policy::{find_cause, TimeoutError};
/// use std::time::Duration;
///
/// let timeout = TimeoutError { node: "fetch".into(), limit: Duration::from_secs(2), attempt: 1 };
/// let err = NodeError::from_error(timeout);
/// assert_eq!(find_cause::<TimeoutError>(&err).map(|t| t.limit), Some(Duration::from_secs(2)));
/// assert!(find_cause::<TimeoutError>(&NodeError::new("other")).is_none());
/// ```
pub fn find_cause<E: StdError + 'static>(error: &NodeError) -> Option<&E> {
    let mut next = error.source();
    while let Some(cause) = next {
        if let Some(found) = cause.downcast_ref::<E>() {
            return Some(found);
        }
        next = cause.source();
    }
    None
}
