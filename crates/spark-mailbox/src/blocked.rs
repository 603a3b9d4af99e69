//! Exact deadlock detection for bounded mailboxes.
//!
//! A worker that finds a target mailbox full registers "blocked on target" under one lock,
//! retries, and then checks whether the blocked-on relation has a cycle through it in which
//! every mailbox is full. A worker that is registered as blocked cannot receive, so its own
//! mailbox cannot drain: such a cycle can never resolve, and the run ends with
//! `RunError::Deadlock`. No timeout or polling is involved.
//!
//! Wake-ups: a worker that receives a message checks (after a `SeqCst` fence that pairs with
//! the fence of the blocked sender) whether anyone is blocked on its mailbox, and if so notifies
//! them under the same lock, so no wake-up is lost.

use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::shared::lock;

pub(crate) struct BlockedSenders {
    /// `blocked_on[worker] = Some(target)` while the worker waits for room in `target`.
    blocked_on: Mutex<Vec<Option<usize>>>,
    /// How many workers wait for room in each mailbox.
    waiting: Box<[AtomicUsize]>,
    /// Signalled when a mailbox with waiters frees a slot.
    room: Box<[Notify]>,
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
            waiting: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            room: (0..n).map(|_| Notify::new()).collect(),
        }
    }

    /// Called by worker `me` after it took a message out of its mailbox.
    pub(crate) fn after_receive(&self, me: usize) {
        fence(Ordering::SeqCst);
        if let Some(w) = self.waiting.get(me) {
            if w.load(Ordering::SeqCst) > 0 {
                let _guard = lock(&self.blocked_on);
                if let Some(room) = self.room.get(me) {
                    room.notify_waiters();
                }
            }
        }
    }

    /// Sends `message` from worker `from` to mailbox `to`, waiting for room. The fast path
    /// (room available) takes no lock.
    pub(crate) async fn send(
        &self,
        mailboxes: &[mpsc::Sender<Envelope>],
        from: usize,
        to: usize,
        message: Envelope,
        stop: &CancellationToken,
    ) -> Result<(), Undelivered> {
        let Some(tx) = mailboxes.get(to) else {
            return Err(Undelivered::Closed);
        };
        match tx.try_reserve() {
            Ok(permit) => {
                permit.send(message);
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Err(Undelivered::Closed),
            Err(mpsc::error::TrySendError::Full(())) => {}
        }
        let (Some(waiting), Some(room)) = (self.waiting.get(to), self.room.get(to)) else {
            return Err(Undelivered::Closed);
        };
        loop {
            let room_freed = room.notified();
            tokio::pin!(room_freed);
            {
                let mut blocked_on = lock(&self.blocked_on);
                if let Some(slot) = blocked_on.get_mut(from) {
                    *slot = Some(to);
                }
                waiting.fetch_add(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                let attempt = tx.try_reserve();
                let unregister = |blocked_on: &mut Vec<Option<usize>>| {
                    if let Some(slot) = blocked_on.get_mut(from) {
                        *slot = None;
                    }
                    waiting.fetch_sub(1, Ordering::SeqCst);
                };
                match attempt {
                    Ok(permit) => {
                        unregister(&mut blocked_on);
                        drop(blocked_on);
                        permit.send(message);
                        return Ok(());
                    }
                    Err(mpsc::error::TrySendError::Closed(())) => {
                        unregister(&mut blocked_on);
                        return Err(Undelivered::Closed);
                    }
                    Err(mpsc::error::TrySendError::Full(())) => {}
                }
                if let Some(cycle) = find_cycle(&blocked_on, mailboxes, from) {
                    unregister(&mut blocked_on);
                    return Err(Undelivered::Deadlock(cycle));
                }
                room_freed.as_mut().enable();
            }
            let stopped = tokio::select! {
                biased;
                () = stop.cancelled() => true,
                () = &mut room_freed => false,
            };
            {
                let mut blocked_on = lock(&self.blocked_on);
                if let Some(slot) = blocked_on.get_mut(from) {
                    *slot = None;
                }
                waiting.fetch_sub(1, Ordering::SeqCst);
            }
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
    mailboxes: &[mpsc::Sender<Envelope>],
    start: usize,
) -> Option<Vec<usize>> {
    let mut cycle = vec![start];
    let mut current = start;
    for _ in 0..=blocked_on.len() {
        let next = (*blocked_on.get(current)?)?;
        if mailboxes.get(next)?.capacity() != 0 {
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
