//! [`DurableOptions`] (where and how an executor logs a durable run) and [`DurableRunError`] (how
//! a durable run fails): shared by both executors, so each depends only on this crate.

use std::sync::Arc;
use std::time::Duration;

use spark_adk_core::RunError;

use crate::error::DurableError;
use crate::record::RunId;
use crate::store::Store;
use crate::writer::Durability;

/// Where and how a durable run is logged: the store, the run id, the durability mode and the
/// lease owner.
#[derive(Clone)]
pub struct DurableOptions {
    /// The store the log goes to.
    pub store: Arc<dyn Store>,
    /// The run (unique within the store).
    pub run_id: RunId,
    /// When a record is committed ([`Durability::Async`] unless set).
    pub durability: Durability,
    /// Who runs it (the lease owner; a fresh name per options value unless set).
    pub owner: String,
    /// How long the run's lease lasts; a second resumer is refused while it holds.
    pub lease_ttl: Duration,
}

impl std::fmt::Debug for DurableOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableOptions")
            .field("run_id", &self.run_id)
            .field("durability", &self.durability)
            .field("owner", &self.owner)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

impl DurableOptions {
    /// The lease duration unless set: long enough for a run, short enough that a crashed
    /// process's run can be taken over soon.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

    /// A run `run_id` logged to `store` with the default durability ([`Durability::Async`]).
    pub fn new(store: Arc<dyn Store>, run_id: impl Into<RunId>) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            store,
            run_id: run_id.into(),
            durability: Durability::default(),
            owner: format!("pid{}-{n}", std::process::id()),
            lease_ttl: Self::DEFAULT_LEASE,
        }
    }

    /// The durability mode.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The lease owner's name.
    #[must_use]
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The lease duration.
    #[must_use]
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }
}

/// How a durable run failed: the run itself ([`RunError`]) or its log ([`DurableError`]: a
/// failed commit, a conflict with another resumer, a refused fingerprint, a corrupt log).
#[derive(Debug, thiserror::Error)]
pub enum DurableRunError {
    /// The run failed as a plain run would.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The log could not be written, read or continued.
    #[error(transparent)]
    Store(#[from] DurableError),
}

impl DurableRunError {
    /// `true` when another writer or resumer came first ([`DurableError::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_conflict())
    }

    /// The store error, if that is what this is.
    pub fn store_error(&self) -> Option<&DurableError> {
        match self {
            Self::Store(e) => Some(e),
            Self::Run(_) => None,
        }
    }

    /// The run error, if that is what this is.
    pub fn run_error(&self) -> Option<&RunError> {
        match self {
            Self::Run(e) => Some(e),
            Self::Store(_) => None,
        }
    }
}
