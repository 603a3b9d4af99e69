//! [`StopSignal`]: how a long-running run stops. One way to begin a stop
//! ([`begin`](StopSignal::begin)), whatever the cause (quiescence, budget, shutdown, handle
//! dropped, a node's failure): the first reason and the first error win, the moment is recorded
//! (the grace period counts from it), and everyone who waits is woken. When the grace period
//! ends, [`abandon`](StopSignal::abandon) makes the workers drop what is still running.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

/// The stop of one run (see the module docs).
#[derive(Debug)]
pub(crate) struct StopSignal {
    scope: Arc<RunScope>,
    /// Set when the stop begins, before `token` fires (a plain load for the hot path:
    /// `CancellationToken::is_cancelled` takes a lock).
    stopping: AtomicBool,
    /// Fired when the stop begins: wakes parked workers and waiting senders.
    token: CancellationToken,
    /// Set when the grace period ended, before `abandon` fires.
    abandoned: AtomicBool,
    /// Fired when the grace period ended: running activations are dropped.
    abandon: CancellationToken,
    outcome: Mutex<Outcome>,
    /// Workers still running; `exited` fires when the last one exits.
    live_workers: AtomicUsize,
    exited: CancellationToken,
}

impl StopSignal {
    pub(crate) fn new(scope: Arc<RunScope>, workers: usize) -> Self {
        Self {
            scope,
            stopping: AtomicBool::new(false),
            token: CancellationToken::new(),
            abandoned: AtomicBool::new(false),
            abandon: CancellationToken::new(),
            outcome: Mutex::new(Outcome::default()),
            live_workers: AtomicUsize::new(workers),
            exited: CancellationToken::new(),
        }
    }

    /// Begins the stop (or, if it began already, adds `cause` where it is the first of its
    /// kind: an error after a graceful reason still makes the run fail).
    pub(crate) fn begin(&self, cause: Cause) {
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
        self.stopping.store(true, Ordering::Release);
        self.scope.begin_stop();
        self.token.cancel();
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
        self.stopping.load(Ordering::Acquire)
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
        self.abandoned.store(true, Ordering::Release);
        self.abandon.cancel();
        self.scope.cancel();
    }

    /// `true` once the grace period is over.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// A token of one worker's own that fires when the grace period ends.
    pub(crate) fn abandon_token(&self) -> CancellationToken {
        self.abandon.child_token()
    }

    /// One worker exited; the last one fires [`exited`](Self::exited).
    pub(crate) fn worker_exited(&self) {
        if self.live_workers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.exited.cancel();
        }
    }

    /// Fired once every worker exited.
    pub(crate) fn exited(&self) -> &CancellationToken {
        &self.exited
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
