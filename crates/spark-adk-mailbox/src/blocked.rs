//! Exact deadlock detection for bounded mailboxes.
//!
//! A worker that finds a target mailbox full registers "blocked on target" under one lock,
//! retries, and then checks whether the blocked-on relation has a cycle through it in which
//! every mailbox is full. A worker that is registered as blocked cannot start a message, so its
//! own mailbox cannot free a slot: such a cycle can never resolve, and the run ends with
//! `RunError::Deadlock`. No timeout or polling is involved.
//!
//! A worker gives every output it holds to its mailboxes before it blocks (see `worker.rs`), so
//! a full mailbox of a blocked cycle holds queued messages only.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::mailbox::Mailbox;
use crate::shared::lock;

pub(crate) struct BlockedSenders {
    /// `blocked_on[worker] = Some(target)` while the worker waits for room in `target`.
    blocked_on: Mutex<Vec<Option<usize>>>,
}

/// Why a blocking send did not deliver.
pub(crate) enum Undelivered {
    /// The run is stopping; the message was not delivered.
    Stopped,
    /// The target mailbox is closed.
    Closed,
    /// Sending would deadlock: these workers (indices) form a cycle of full mailboxes.
    Deadlock(Vec<usize>),
}

impl BlockedSenders {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            blocked_on: Mutex::new(vec![None; n]),
        }
    }

    /// Sends `message` from worker `from` to mailbox `to`, waiting for room. The fast path
    /// (room available) takes no lock of this registry.
    pub(crate) async fn send(
        &self,
        mailboxes: &[Mailbox],
        from: usize,
        to: usize,
        message: Envelope,
        stop: &CancellationToken,
    ) -> Result<(), Undelivered> {
        let Some(mailbox) = mailboxes.get(to) else {
            return Err(Undelivered::Closed);
        };
        loop {
            if mailbox.try_reserve() {
                return mailbox.push(message).map_err(|_| Undelivered::Closed);
            }
            if mailbox.is_closed() {
                return Err(Undelivered::Closed);
            }
            mailbox.begin_wait();
            // Created before the retry: a slot freed after this point wakes it.
            let room_freed = mailbox.room().notified();
            tokio::pin!(room_freed);
            {
                let mut blocked_on = lock(&self.blocked_on);
                set(&mut blocked_on, from, Some(to));
                let outcome = if mailbox.try_reserve() {
                    Some(Ok(()))
                } else if mailbox.is_closed() {
                    Some(Err(Undelivered::Closed))
                } else {
                    find_cycle(&blocked_on, mailboxes, from).map(|c| Err(Undelivered::Deadlock(c)))
                };
                if let Some(outcome) = outcome {
                    set(&mut blocked_on, from, None);
                    drop(blocked_on);
                    mailbox.end_wait();
                    return outcome
                        .and_then(|()| mailbox.push(message).map_err(|_| Undelivered::Closed));
                }
            }
            let stopped = tokio::select! {
                biased;
                () = stop.cancelled() => true,
                () = &mut room_freed => false,
            };
            set(&mut lock(&self.blocked_on), from, None);
            mailbox.end_wait();
            if stopped {
                return Err(Undelivered::Stopped);
            }
        }
    }
}

/// Follows the blocked-on relation from `start`; returns the cycle if it comes back to `start`
/// through full mailboxes only.
fn find_cycle(
    blocked_on: &[Option<usize>],
    mailboxes: &[Mailbox],
    start: usize,
) -> Option<Vec<usize>> {
    let mut cycle = vec![start];
    let mut current = start;
    for _ in 0..=blocked_on.len() {
        let next = (*blocked_on.get(current)?)?;
        if !mailboxes.get(next)?.is_full() {
            return None;
        }
        if next == start {
            return Some(cycle);
        }
        if cycle.contains(&next) {
            return None; // a cycle not through `start`: found when its own last member blocked
        }
        cycle.push(next);
        current = next;
    }
    None
}

/// Records that worker `from` waits for room in `to` (`None`: no longer waits).
fn set(blocked_on: &mut [Option<usize>], from: usize, to: Option<usize>) {
    if let Some(slot) = blocked_on.get_mut(from) {
        *slot = to;
    }
}
