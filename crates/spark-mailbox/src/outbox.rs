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
//! or waits for room in a full mailbox (so a blocked cycle holds nothing, see `blocked.rs`).

use crate::envelope::Envelope;
use crate::mailbox::Mailbox;

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
    /// Holds `envelope` for mailbox `to` (whose slot the caller reserved), or queues it with
    /// everything held for `to` when `may_hold` is false or the module's rules say so.
    pub(crate) fn hold(
        &mut self,
        mailboxes: &[Mailbox],
        to: usize,
        envelope: Envelope,
        may_hold: bool,
    ) {
        let Some(mailbox) = mailboxes.get(to) else {
            return;
        };
        let position = match self.held.iter().position(|(t, _)| *t == to) {
            Some(p) => p,
            None => {
                self.held.push((to, Vec::new()));
                self.held.len() - 1
            }
        };
        let Some((_, messages)) = self.held.get_mut(position) else {
            return;
        };
        if messages.is_empty() && !may_hold {
            // Nothing held for `to`: queue directly, without touching the buffer.
            let _ = mailbox.push(envelope);
            return;
        }
        messages.push(envelope);
        self.count += 1;
        if !may_hold || messages.len() >= MAX_HELD || mailbox.is_parked() {
            self.count -= messages.len();
            // A closed mailbox's worker exited: the messages stay counted as unprocessed.
            let _ = mailbox.push_all(messages);
        }
    }

    /// Queues everything held, per target in order.
    pub(crate) fn flush_all(&mut self, mailboxes: &[Mailbox]) {
        if self.count == 0 {
            return;
        }
        for (to, messages) in &mut self.held {
            if let Some(mailbox) = mailboxes.get(*to) {
                let _ = mailbox.push_all(messages);
            } else {
                messages.clear();
            }
        }
        self.count = 0;
    }
}
