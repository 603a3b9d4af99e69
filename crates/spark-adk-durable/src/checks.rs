//! The checks every [`Store`](crate::Store) makes, and the errors it returns when one fails, in
//! one place: the in-memory store and the SQLite and PostgreSQL stores call these, so the three
//! refuse the same things with the same words (the conformance suite,
//! [`crate::conformance`], checks that they do).

use std::fmt::Display;
use std::time::Duration;

use crate::error::DurableError;
use crate::record::RunId;
use crate::store::Lease;

/// Validates a lease duration: zero is refused. Returns it in milliseconds.
pub fn check_ttl(run: &RunId, ttl: Duration) -> Result<u64, DurableError> {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Err(DurableError::InvalidArgument {
            run: run.clone(),
            reason: "a lease must last at least one millisecond".to_owned(),
        });
    }
    Ok(ms)
}

/// The error for a run the store does not hold.
pub fn not_found(run: &RunId) -> DurableError {
    DurableError::NotFound { run: run.clone() }
}

/// The error for creating a run whose id is taken.
pub fn run_exists(run: &RunId) -> DurableError {
    DurableError::conflict(run, 0, "a run with this id already exists")
}

/// The error for an append that expected the head at `expected` and found it at `found`.
pub fn head_moved(run: &RunId, expected: u64, found: impl Display) -> DurableError {
    DurableError::conflict(
        run,
        expected + 1,
        format!("the log head moved: expected {expected}, found {found}"),
    )
}

/// Checks that the log's head is where an append expected it.
pub fn check_head(run: &RunId, expected: u64, head: u64) -> Result<(), DurableError> {
    if head == expected {
        Ok(())
    } else {
        Err(head_moved(run, expected, head))
    }
}

/// Checks that a snapshot at `at` does not lie beyond the log's `head`.
pub fn check_snapshot_within_head(run: &RunId, at: u64, head: u64) -> Result<(), DurableError> {
    if at > head {
        return Err(DurableError::conflict(
            run,
            at,
            format!("a snapshot at {at} is beyond the log head {head}"),
        ));
    }
    Ok(())
}

/// The error for a snapshot at `at` when a later one is stored already.
pub fn later_snapshot_stored(run: &RunId, at: u64) -> DurableError {
    DurableError::conflict(run, at, "a later snapshot is already stored")
}

/// The error for acquiring a lease that `holder` holds for `left_ms` more milliseconds; `seq`
/// is the record the caller would have written next.
pub fn lease_held(run: &RunId, seq: u64, holder: &str, left_ms: impl Display) -> DurableError {
    DurableError::conflict(
        run,
        seq,
        format!("the lease is held by `{holder}` for {left_ms} ms more"),
    )
}

/// The error for renewing a lease that `owner` no longer holds; `seq` is the record the caller
/// would have written next.
pub fn lease_lost(run: &RunId, seq: u64, owner: &str) -> DurableError {
    DurableError::conflict(run, seq, format!("`{owner}` lost the lease"))
}

/// Checks that a leased append's `lease` is the run's current lease: `holder` and `epoch` are
/// what the store holds (`holder` is `None` when no one holds it). The error is a conflict
/// naming the lease's owner ([`lease_lost`]); a lease of another run is an invalid argument.
pub fn check_fence(
    run: &RunId,
    expected_head: u64,
    holder: Option<&str>,
    epoch: u64,
    lease: &Lease,
) -> Result<(), DurableError> {
    if &lease.run_id != run {
        return Err(DurableError::InvalidArgument {
            run: run.clone(),
            reason: format!("the lease is for run `{}`", lease.run_id),
        });
    }
    if holder == Some(lease.owner.as_str()) && epoch == lease.epoch {
        Ok(())
    } else {
        Err(lease_lost(run, expected_head + 1, &lease.owner))
    }
}
