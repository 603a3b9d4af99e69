//! [`Outbox`]: routed outputs a worker holds for a moment, to queue them in batches.
//!
//! Every held message already has its slot reserved in the target mailbox, so holding never
//! exceeds a mailbox's capacity and never hides backpressure. A worker holds an output only
//! when all of these are true, and queues it at once otherwise:
//! - the activation that produced it finished without ever waiting (`Pending`), so holding
//!   delays nothing that waits on I/O or timers;
//! - more messages are already waiting in the worker's inbox (an idle worker holds nothing);
//! - the target's worker is not parked (a parked worker gets its messages at once, so the two
//!   run in parallel);
//! - fewer than [`MAX_HELD`] messages are held for that target.
//!
//! Everything held is queued before the worker takes more messages from its mailbox, parks,
//! waits for room in a full mailbox (so a blocked cycle holds nothing, see `blocked.rs`), or
//! exits. A message that a closed mailbox refuses is counted by the caller: every method
//! returns how many were refused.

use crate::envelope::Envelope;
use crate::mailbox::{Mailbox, Permit};

/// The most messages held for one target before they are queued.
pub(crate) const MAX_HELD: usize = 32;

/// Held outputs, per target mailbox (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// `(target, messages)`, a few entries: one per target this worker has sent to.
    held: Vec<(usize, Vec<Envelope>)>,
    /// Messages held in all entries.
    count: usize,
}

impl Outbox {
    /// Holds `envelope` for mailbox `to` (in the slot of `permit`), or queues it with
    /// everything held for `to` when `may_hold` is false or the module's rules say so. Returns
    /// how many messages a closed mailbox refused.
    #[inline]
    pub(crate) fn hold(
        &mut self,
        mailboxes: &[Mailbox],
        to: usize,
        permit: Permit<'_>,
        envelope: Envelope,
        may_hold: bool,
    ) -> u64 {
        let Some(mailbox) = mailboxes.get(to) else {
            return 1;
        };
        let position = match self.held.iter().position(|(t, _)| *t == to) {
            Some(p) => p,
            None if !may_hold => {
                // Nothing held for `to`: queue directly (a worker that never holds never
                // allocates the outbox).
                return match permit.push(envelope) {
                    Ok(()) => 0,
                    Err(closed) => crate::envelope::drop_all([closed.0]) as u64,
                };
            }
            None => {
                self.held.push((to, Vec::new()));
                self.held.len() - 1
            }
        };
        let Some((_, messages)) = self.held.get_mut(position) else {
            return 1;
        };
        if messages.is_empty() && !may_hold {
            // Nothing held for `to`: queue directly, without touching the buffer.
            return match permit.push(envelope) {
                Ok(()) => 0,
                Err(closed) => crate::envelope::drop_all([closed.0]) as u64,
            };
        }
        permit.hold();
        messages.push(envelope);
        self.count += 1;
        if !may_hold || messages.len() >= MAX_HELD || mailbox.is_parked() {
            self.count -= messages.len();
            return refused(mailbox.push_all(messages));
        }
        0
    }

    /// Queues everything held, per target in order. Returns how many messages closed mailboxes
    /// refused.
    pub(crate) fn flush_all(&mut self, mailboxes: &[Mailbox]) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let mut lost = 0;
        for (to, messages) in &mut self.held {
            lost += match mailboxes.get(*to) {
                Some(mailbox) => refused(mailbox.push_all(messages)),
                None => crate::envelope::drop_all(messages.drain(..)) as u64,
            };
        }
        self.count = 0;
        lost
    }
}

fn refused(pushed: Result<(), crate::mailbox::Closed<usize>>) -> u64 {
    match pushed {
        Ok(()) => 0,
        Err(closed) => closed.0 as u64,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::VecDeque;

    use spark_adk_core::NodeMessage;

    use super::*;

    fn hold(outbox: &mut Outbox, mailboxes: &[Mailbox], to: usize, n: u64, may_hold: bool) {
        let permit = mailboxes[to].try_reserve().unwrap();
        let e = Envelope::routed(NodeMessage::new(serde_json::json!({ "n": n })));
        assert_eq!(outbox.hold(mailboxes, to, permit, e, may_hold), 0);
    }

    fn queued(mailbox: &Mailbox) -> Vec<u64> {
        let mut inbox = VecDeque::new();
        mailbox.take_all(&mut inbox, false);
        inbox
            .iter()
            .map(|e| e.payload.content["n"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn an_output_that_may_not_be_held_is_queued_at_once() {
        let mailboxes = [Mailbox::new(100)];
        let mut outbox = Outbox::default();
        hold(&mut outbox, &mailboxes, 0, 1, false);
        assert_eq!(queued(&mailboxes[0]), [1]);
    }

    #[test]
    fn held_outputs_go_out_in_order_when_flushed() {
        let mailboxes = [Mailbox::new(100), Mailbox::new(100)];
        let mut outbox = Outbox::default();
        for n in 0..3 {
            hold(&mut outbox, &mailboxes, 0, n, true);
            hold(&mut outbox, &mailboxes, 1, 10 + n, true);
        }
        assert!(queued(&mailboxes[0]).is_empty(), "held, not queued");
        // A message that may not be held pushes what is held for its target first.
        hold(&mut outbox, &mailboxes, 0, 3, false);
        assert_eq!(queued(&mailboxes[0]), [0, 1, 2, 3]);
        assert_eq!(outbox.flush_all(&mailboxes), 0);
        assert_eq!(queued(&mailboxes[1]), [10, 11, 12]);
    }

    #[test]
    fn at_most_max_held_outputs_are_held_per_target() {
        let mailboxes = [Mailbox::new(1_000)];
        let mut outbox = Outbox::default();
        for n in 0..MAX_HELD as u64 {
            hold(&mut outbox, &mailboxes, 0, n, true);
        }
        assert_eq!(queued(&mailboxes[0]).len(), MAX_HELD);
    }

    #[test]
    fn held_outputs_a_closed_mailbox_refuses_are_reported() {
        let mailboxes = [Mailbox::new(100)];
        let mut outbox = Outbox::default();
        for n in 0..3 {
            hold(&mut outbox, &mailboxes, 0, n, true);
        }
        assert_eq!(mailboxes[0].close(), 0);
        assert_eq!(outbox.flush_all(&mailboxes), 3);
    }

    #[test]
    fn outputs_for_a_parked_worker_are_queued_at_once() {
        let mailboxes = [Mailbox::new(100)];
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut inbox = VecDeque::new();
        assert!(mailboxes[0]
            .poll_take_all(&mut cx, &mut inbox, false)
            .is_pending());
        let mut outbox = Outbox::default();
        hold(&mut outbox, &mailboxes, 0, 5, true);
        assert_eq!(queued(&mailboxes[0]), [5]);
    }
}
