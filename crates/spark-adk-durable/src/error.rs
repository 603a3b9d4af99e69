//! The one error type of durable runs: every variant names the run and, where there is one, the
//! record's sequence number (0 is the run's header).

use std::error::Error as StdError;
use std::sync::Arc;

use crate::record::RunId;

/// A boxed error from a store's backend (I/O, SQLite, PostgreSQL), shared so that
/// [`DurableError`] is `Clone` (the log writer hands one failure to every waiter).
pub type BackendError = Arc<dyn StdError + Send + Sync + 'static>;

/// What went wrong while writing, reading or replaying a run's log.
///
/// Every variant names the run; every variant about a record names its sequence number (`seq`,
/// counted from 1; 0 is the header). Nothing in this crate panics on bad input or defaults a
/// missing value silently: it returns one of these.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    /// A record was read but does not make sense: wrong shape, a consumed message that is not
    /// pending, a sequence number out of order.
    #[error("run `{run}`, record {seq}: the log is corrupt: {reason}")]
    Corrupt {
        /// The run.
        run: RunId,
        /// The record's sequence number (0: the header).
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Records are missing: the log ends (or jumps) before the sequence number it must reach.
    #[error("run `{run}`, record {seq}: the log is truncated: {reason}")]
    Truncated {
        /// The run.
        run: RunId,
        /// The first missing sequence number.
        seq: u64,
        /// What was found instead.
        reason: String,
    },
    /// A record or header was written by a log format this build does not read.
    #[error(
        "run `{run}`, record {seq}: unknown log format version {found} (this build reads version {supported})"
    )]
    UnknownFormatVersion {
        /// The run.
        run: RunId,
        /// The record's sequence number (0: the header).
        seq: u64,
        /// The version found in the record.
        found: u64,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A stored payload is not valid JSON.
    #[error("run `{run}`, record {seq}: the stored payload is not valid JSON: {source}")]
    InvalidJson {
        /// The run.
        run: RunId,
        /// The record's sequence number (0: the header).
        seq: u64,
        /// The parser's error.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// The store failed to write (disk full, connection lost, ...). Records committed before this
    /// one are kept; this one and every later one of the same writer are not written.
    #[error("run `{run}`, record {seq}: the store failed to write: {source}")]
    WriteFailed {
        /// The run.
        run: RunId,
        /// The first sequence number of the batch that failed.
        seq: u64,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// The store failed to read.
    #[error("run `{run}`: the store failed to read: {source}")]
    ReadFailed {
        /// The run (empty when listing runs).
        run: RunId,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// The run was started by a graph whose topology differs from the one resuming it.
    #[error("run `{run}`: the graph differs from the one that started the run: {}", differences.join("; "))]
    FingerprintMismatch {
        /// The run.
        run: RunId,
        /// Each difference, in words (e.g. "node `b` is missing").
        differences: Vec<String>,
    },
    /// Someone else moved first: the log head moved (compare-and-append), the lease is held, the
    /// run already exists, or the interrupt was already resumed.
    #[error("run `{run}`, record {seq}: conflict: {reason}")]
    Conflict {
        /// The run.
        run: RunId,
        /// The sequence number the caller expected to write (or the record that conflicts).
        seq: u64,
        /// What conflicts.
        reason: String,
    },
    /// No run with this id is stored.
    #[error("run `{run}` not found")]
    NotFound {
        /// The run.
        run: RunId,
    },
    /// The caller passed something unusable (a zero lease duration, no tokio runtime, ...).
    #[error("run `{run}`: {reason}")]
    InvalidArgument {
        /// The run.
        run: RunId,
        /// What is wrong.
        reason: String,
    },
    /// The log writer is gone (its task ended); nothing more can be appended through it.
    #[error("run `{run}`, record {seq}: the log writer is closed")]
    Closed {
        /// The run.
        run: RunId,
        /// The sequence number the append would have had.
        seq: u64,
    },
}

impl DurableError {
    /// A [`DurableError::WriteFailed`] wrapping a backend error.
    pub fn write_failed(
        run: &RunId,
        seq: u64,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::WriteFailed {
            run: run.clone(),
            seq,
            source: Arc::new(source),
        }
    }

    /// A [`DurableError::ReadFailed`] wrapping a backend error.
    pub fn read_failed(run: &RunId, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::ReadFailed {
            run: run.clone(),
            source: Arc::new(source),
        }
    }

    /// A [`DurableError::Conflict`].
    pub fn conflict(run: &RunId, seq: u64, reason: impl Into<String>) -> Self {
        Self::Conflict {
            run: run.clone(),
            seq,
            reason: reason.into(),
        }
    }

    /// A [`DurableError::Corrupt`].
    pub fn corrupt(run: &RunId, seq: u64, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            run: run.clone(),
            seq,
            reason: reason.into(),
        }
    }

    /// `true` for [`DurableError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// The run this error is about.
    pub fn run(&self) -> &RunId {
        match self {
            Self::Corrupt { run, .. }
            | Self::Truncated { run, .. }
            | Self::UnknownFormatVersion { run, .. }
            | Self::InvalidJson { run, .. }
            | Self::WriteFailed { run, .. }
            | Self::ReadFailed { run, .. }
            | Self::FingerprintMismatch { run, .. }
            | Self::Conflict { run, .. }
            | Self::NotFound { run }
            | Self::InvalidArgument { run, .. }
            | Self::Closed { run, .. } => run,
        }
    }

    /// The record's sequence number this error is about, where there is one (0: the header).
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Corrupt { seq, .. }
            | Self::Truncated { seq, .. }
            | Self::UnknownFormatVersion { seq, .. }
            | Self::InvalidJson { seq, .. }
            | Self::WriteFailed { seq, .. }
            | Self::Conflict { seq, .. }
            | Self::Closed { seq, .. } => Some(*seq),
            Self::FingerprintMismatch { .. } => Some(0),
            Self::ReadFailed { .. } | Self::NotFound { .. } | Self::InvalidArgument { .. } => None,
        }
    }
}

/// A plain-text backend error, for stores (and the fault-injecting wrapper) that have no error
/// type of their own to wrap.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreFailure(pub String);
