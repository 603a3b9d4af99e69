//! [`StopSignal`]: how a long-running run stops. One way to begin a stop
//! ([`begin`](StopSignal::begin)), whatever the cause (quiescence, budget, shutdown, handle
//! dropped, a node's failure): the first reason and the first error win, the moment is recorded
//! (the grace period counts from it), and everyone who waits is woken. When the grace period
//! ends, [`abandon`](StopSignal::abandon) makes the workers drop what is still running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use spark_adk_core::{RunError, RunScope, StopReason};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::mailbox::lock;

/// Why a stop begins.
pub(crate) enum Cause {
    /// A graceful end (quiescence, budget, shutdown, handle dropped).
    Reason(StopReason),
    /// A failure: the run returns this error once the other workers stopped.
    Error(RunError),
}

#[derive(Debug, Default)]
struct Outcome {
    reason: Option<StopReason>,
    error: Option<RunError>,
    began: Option<Instant>,
}

/// The flags every worker reads per message, on a cache line of their own (written once each):
/// nothing written on the hot path evicts them from the readers' caches.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Flags {
    /// Set when the stop begins, before `token` fires (a plain load for the hot path:
    /// `CancellationToken::is_cancelled` takes a lock).
    stopping: AtomicBool,
    /// Set when the grace period ended, before `abandon` fires.
    abandoned: AtomicBool,
    /// Set once the grace period must be kept (see [`StopSignal::grace_needed`]).
    grace_needed: AtomicBool,
}

/// The stop of one run (see the module docs).
#[derive(Debug)]
pub(crate) struct StopSignal {
    flags: Flags,
    scope: Arc<RunScope>,
    /// Fired when the stop begins: wakes parked workers and waiting senders.
    token: CancellationToken,
    /// Fired when the grace period must be kept: wakes the run's timekeeping.
    grace: CancellationToken,
    /// Fired when the grace period ended: running activations are dropped. Made when a worker
    /// first needs it (see [`abandon_token`](Self::abandon_token)).
    abandon: OnceLock<CancellationToken>,
    outcome: Mutex<Outcome>,
}

impl StopSignal {
    pub(crate) fn new(scope: Arc<RunScope>) -> Self {
        Self {
            flags: Flags::default(),
            scope,
            token: CancellationToken::new(),
            grace: CancellationToken::new(),
            abandon: OnceLock::new(),
            outcome: Mutex::new(Outcome::default()),
        }
    }

    /// Begins the stop (or, if it began already, adds `cause` where it is the first of its
    /// kind: an error after a graceful reason still makes the run fail).
    pub(crate) fn begin(&self, cause: Cause) {
        let quiescent = matches!(cause, Cause::Reason(StopReason::Completed));
        {
            let mut outcome = lock(&self.outcome);
            match cause {
                Cause::Reason(reason) => {
                    outcome.reason.get_or_insert(reason);
                }
                Cause::Error(error) => {
                    outcome.error.get_or_insert(error);
                }
            }
            outcome.began.get_or_insert_with(Instant::now);
        }
        self.flags.stopping.store(true, Ordering::Release);
        self.scope.begin_stop();
        self.token.cancel();
        if !quiescent {
            self.need_grace();
        }
    }

    /// The grace period must be kept: activations may still run. Every stop but quiescence
    /// needs it at once; at quiescence no activation runs (the in-flight count is zero), so the
    /// run's timekeeping is woken only if a shutdown delivery waits (see `activation.rs`).
    /// Cheap after the first call.
    pub(crate) fn need_grace(&self) {
        if !self.flags.grace_needed.load(Ordering::Acquire) {
            self.flags.grace_needed.store(true, Ordering::Release);
            self.grace.cancel();
        }
    }

    /// Fired once the grace period must be kept (see [`need_grace`](Self::need_grace)).
    pub(crate) fn grace_needed(&self) -> &CancellationToken {
        &self.grace
    }

    /// Begins the stop with `reason` (see [`begin`](Self::begin)).
    pub(crate) fn request(&self, reason: StopReason) {
        self.begin(Cause::Reason(reason));
    }

    /// Records `error` and begins the stop of the other workers.
    pub(crate) fn fail(&self, error: RunError) {
        self.begin(Cause::Error(error));
    }

    /// `true` once the stop began.
    pub(crate) fn is_stopping(&self) -> bool {
        self.flags.stopping.load(Ordering::Acquire)
    }

    /// Fired when the stop begins.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// When the stop began, if it did.
    pub(crate) fn began(&self) -> Option<Instant> {
        lock(&self.outcome).began
    }

    /// The grace period is over: running activations are dropped, and the run's cancellation
    /// token fires.
    pub(crate) fn abandon(&self) {
        // `SeqCst` pairs with `abandon_token`: a token made after the `get` below sees the flag.
        self.flags.abandoned.store(true, Ordering::SeqCst);
        if let Some(abandon) = self.abandon.get() {
            abandon.cancel();
        }
        self.scope.cancel();
    }

    /// `true` once the grace period is over.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.flags.abandoned.load(Ordering::Acquire)
    }

    /// A token of one worker's own that fires when the grace period ends.
    pub(crate) fn abandon_token(&self) -> CancellationToken {
        let token = self
            .abandon
            .get_or_init(CancellationToken::new)
            .child_token();
        if self.flags.abandoned.load(Ordering::SeqCst) {
            token.cancel();
        }
        token
    }

    /// Takes the outcome: the first error, or the first reason (`Completed` if none).
    pub(crate) fn take_outcome(&self) -> Result<StopReason, RunError> {
        let outcome = std::mem::take(&mut *lock(&self.outcome));
        match outcome.error {
            Some(error) => Err(error),
            None => Ok(outcome.reason.unwrap_or(StopReason::Completed)),
        }
    }
}
