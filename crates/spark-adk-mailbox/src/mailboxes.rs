//! [`Mailboxes`]: the mailboxes of one run, and the one wait-for-room loop
//! ([`reserve`](Mailboxes::reserve)) of every sender: workers routing outputs, and handle sends
//! (from outside, or from inside a node of the same run, which then wait as that node's worker).

use std::ops::Deref;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::blocked::Registry;
use crate::lanes::Lanes;
use crate::mailbox::{lock, Mailbox, Permit};

/// Who waits for room.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sender {
    /// Not a worker of this run (a handle used from outside): cannot be part of a deadlock.
    Outside,
    /// The worker (lane, see `lanes.rs`) with this index: registered as blocked while it waits
    /// (deadlock detection).
    Worker(usize),
}

/// Why a wait for room did not give a slot.
#[derive(Debug)]
pub(crate) enum Undelivered {
    /// The run is stopping.
    Stopped,
    /// The target mailbox is closed (its worker exited).
    Closed,
    /// Waiting would never end: the sender is on a cycle of full mailboxes.
    Deadlock,
}

/// The mailboxes of one run, by node index, with the workers that take from them (the
/// [`Lanes`]) and the registry of blocked senders.
#[derive(Debug)]
pub(crate) struct Mailboxes {
    boxes: Box<[Mailbox]>,
    lanes: Lanes,
    blocked: Mutex<Registry>,
}

impl Deref for Mailboxes {
    type Target = [Mailbox];

    fn deref(&self) -> &[Mailbox] {
        &self.boxes
    }
}

impl Mailboxes {
    /// One mailbox per capacity, taken from by `lanes`.
    pub(crate) fn new(capacities: impl IntoIterator<Item = usize>, lanes: Lanes) -> Self {
        let boxes: Box<[Mailbox]> = capacities.into_iter().map(Mailbox::new).collect();
        Self {
            boxes,
            blocked: Mutex::new(Registry::new(lanes.len())),
            lanes,
        }
    }

    /// The workers of the run (see `lanes.rs`).
    pub(crate) fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// Takes a slot in mailbox `to`, waiting while it is full (backpressure). The fast path
    /// (room available) takes no lock. A worker sender is registered as blocked while it waits,
    /// and gets [`Undelivered::Deadlock`] when its wait could never end.
    ///
    /// Cancel safe: nothing is reserved until it returns a permit, and a dropped wait
    /// unregisters its sender.
    pub(crate) async fn reserve(
        &self,
        to: usize,
        sender: Sender,
        stop: &CancellationToken,
    ) -> Result<Permit<'_>, Undelivered> {
        let Some(mailbox) = self.boxes.get(to) else {
            return Err(Undelivered::Closed);
        };
        loop {
            if let Some(permit) = mailbox.try_reserve() {
                return Ok(permit);
            }
            if mailbox.is_closed() {
                return Err(Undelivered::Closed);
            }
            mailbox.begin_wait();
            let waiting = Waiting {
                mailboxes: self,
                mailbox,
                sender,
            };
            // Created before the retry: a slot freed after this point wakes it.
            let room_freed = mailbox.room().notified();
            tokio::pin!(room_freed);
            if let Some(outcome) = self.retry(mailbox, to, sender) {
                return outcome;
            }
            let stopped = tokio::select! {
                biased;
                () = stop.cancelled() => true,
                () = &mut room_freed => false,
            };
            if stopped {
                if let Sender::Worker(from) = sender {
                    lock(&self.blocked).woken_by_stop(from);
                }
                return Err(Undelivered::Stopped);
            }
            drop(waiting);
        }
    }

    /// The retry before waiting; for a worker, registered as blocked and checked for a
    /// deadlock under the registry's lock. `None`: wait.
    fn retry<'a>(
        &self,
        mailbox: &'a Mailbox,
        to: usize,
        sender: Sender,
    ) -> Option<Result<Permit<'a>, Undelivered>> {
        let Sender::Worker(from) = sender else {
            return mailbox.try_reserve().map(Ok);
        };
        let mut registry = lock(&self.blocked);
        registry.set(from, Some(to));
        let outcome = if let Some(permit) = mailbox.try_reserve() {
            Some(Ok(permit))
        } else if mailbox.is_closed() {
            Some(Err(Undelivered::Closed))
        } else if registry.detect(&self.boxes, &self.lanes, from) {
            Some(Err(Undelivered::Deadlock))
        } else {
            None
        };
        outcome
    }

    /// The nodes a deadlock named (graph order, each once), empty if there was none.
    pub(crate) fn deadlocked(&self) -> Vec<usize> {
        let mut nodes: Vec<usize> = lock(&self.blocked)
            .deadlocked()
            .into_iter()
            .map(|lane| self.lanes.node(lane))
            .collect();
        nodes.dedup();
        nodes
    }
}

/// A sender waiting for room: counted as waiting in its mailbox and, for a worker, registered
/// as blocked, until dropped.
struct Waiting<'a> {
    mailboxes: &'a Mailboxes,
    mailbox: &'a Mailbox,
    sender: Sender,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Sender::Worker(from) = self.sender {
            lock(&self.mailboxes.blocked).set(from, None);
        }
        self.mailbox.end_wait();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::VecDeque;
    use std::sync::Arc;

    use spark_adk_core::NodeMessage;

    use super::*;
    use crate::envelope::Envelope;
    use crate::mailbox::StartedSlots;

    fn envelope(n: u64) -> Envelope {
        Envelope::routed(NodeMessage::new(serde_json::json!({ "n": n })))
    }

    #[tokio::test]
    async fn a_waiting_reservation_gives_up_when_stopped_or_closed() {
        let mailboxes = Mailboxes::new([1], Lanes::new([1].into_iter()));
        mailboxes[0].try_reserve().unwrap().hold();
        let stop = CancellationToken::new();
        stop.cancel();
        let stopped = mailboxes.reserve(0, Sender::Outside, &stop).await;
        assert!(matches!(stopped, Err(Undelivered::Stopped)));
        mailboxes[0].close();
        let closed = mailboxes
            .reserve(0, Sender::Outside, &CancellationToken::new())
            .await;
        assert!(matches!(closed, Err(Undelivered::Closed)));
    }

    #[tokio::test]
    async fn a_sender_waiting_for_room_is_woken_when_slots_are_given_back() {
        let mailboxes = Arc::new(Mailboxes::new([1], Lanes::new([1].into_iter())));
        mailboxes[0]
            .try_reserve()
            .unwrap()
            .push(envelope(0))
            .unwrap();
        let waiter = {
            let mailboxes = Arc::clone(&mailboxes);
            tokio::spawn(async move {
                let permit = mailboxes
                    .reserve(0, Sender::Outside, &CancellationToken::new())
                    .await;
                permit.is_ok_and(|p| p.push(envelope(1)).is_ok())
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let mut inbox = VecDeque::new();
        assert!(mailboxes[0].take_all(&mut inbox, false));
        StartedSlots::new(&mailboxes[0]).started(true);
        assert!(waiter.await.unwrap());
        assert!(mailboxes[0].take_all(&mut inbox, false));
        assert_eq!(inbox.len(), 2);
    }

    #[tokio::test]
    async fn a_worker_waiting_on_its_own_full_mailbox_is_a_deadlock() {
        let mailboxes = Mailboxes::new([1], Lanes::new([1].into_iter()));
        mailboxes[0].try_reserve().unwrap().hold();
        let outcome = mailboxes
            .reserve(0, Sender::Worker(0), &CancellationToken::new())
            .await;
        assert!(matches!(outcome, Err(Undelivered::Deadlock)));
        assert_eq!(mailboxes.deadlocked(), [0]);
    }
}
