//! [`Mailbox`]: a worker's bounded inbox. Many senders, one receiver (the worker), a capacity
//! that is exact in messages, and operations that move many messages per lock.
//!
//! Capacity counts *slots*: a slot is taken when a sender reserves it
//! ([`try_reserve`](Mailbox::try_reserve) returns a [`Permit`], which gives the slot back when
//! dropped unused, like tokio's `mpsc::Permit`) and freed once the worker has *started* the message
//! in it ([`StartedSlots`]), not when the worker takes it out of the queue. So the worker may
//! take every queued message in one operation ([`take_all`](Mailbox::take_all)) while the
//! mailbox still counts the ones it has not started: reserved + queued + taken-but-not-started
//! never exceeds the capacity. Started slots are given back in batches, at the latest before
//! the worker waits for anything, so the count may briefly be higher than one-message-at-a-time
//! would give, never lower.
//!
//! Senders that find no free slot wait on [`room`](Mailbox::room) (the one wait-for-room loop
//! is `Mailboxes::reserve`), which is signalled when slots are freed while someone waits (a `SeqCst` pair of the slot count and the waiter count,
//! so no wake-up is lost). The worker parks with its waker stored under the queue's lock; a
//! push takes the waker and wakes it after the lock is released.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

use crate::envelope::{drop_all, Envelope};

/// Locks `m`, also after a panic poisoned it (the runtime's data stays consistent: no lock is
/// held across user code).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A worker's mailbox (see the module docs). Aligned so two mailboxes never share a cache line.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Mailbox {
    capacity: usize,
    /// Slots taken: reserved by senders, queued, or taken by the worker and not yet started.
    occupied: AtomicUsize,
    /// Senders waiting in [`room`](Self::room) for a free slot.
    waiting: AtomicUsize,
    /// Signalled when a slot is freed while senders wait.
    room: Notify,
    /// The worker is parked, waiting for a message (a hint for senders: flush now).
    parked: AtomicBool,
    /// The worker exited: pushes are refused.
    closed: AtomicBool,
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Envelope>,
    /// Who is parked waiting for a message. (Whether the mailbox is closed is `closed`,
    /// written under this lock: a mailbox fits one 128-byte line.)
    receiver: Receiver,
}

/// The parked receiver(s) of a mailbox.
#[derive(Debug, Default)]
enum Receiver {
    /// Nobody is parked.
    #[default]
    None,
    /// The worker of a node with one lane.
    One(Waker),
    /// The parked lanes of a node with several (see `lanes.rs`).
    Lanes(Vec<Waker>),
}

impl Receiver {
    /// Parks `waker` (one lane among several: `lanes`).
    fn park(&mut self, waker: &Waker, lanes: bool) {
        match self {
            Self::One(parked) if !lanes && parked.will_wake(waker) => {}
            Self::Lanes(parked) if lanes => {
                if !parked.iter().any(|w| w.will_wake(waker)) {
                    parked.push(waker.clone());
                }
            }
            slot if lanes => *slot = Self::Lanes(vec![waker.clone()]),
            slot => *slot = Self::One(waker.clone()),
        }
    }

    /// Wakes what was parked (all lanes of a node with several: each takes one message, those
    /// that find none park again).
    #[inline]
    fn wake(self) {
        match self {
            Self::None => {}
            Self::One(waker) => waker.wake(),
            Self::Lanes(lanes) => Self::wake_lanes(lanes),
        }
    }

    #[cold]
    fn wake_lanes(lanes: Vec<Waker>) {
        for waker in lanes {
            waker.wake();
        }
    }
}

/// The mailbox is closed (its worker exited); what could not be pushed is handed back.
#[derive(Debug)]
pub(crate) struct Closed<T>(pub(crate) T);

impl Mailbox {
    /// An empty mailbox with room for `capacity` messages (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            occupied: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            room: Notify::new(),
            parked: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
        }
    }

    /// Takes one slot if one is free. The [`Permit`] gives it back when dropped unused.
    pub(crate) fn try_reserve(&self) -> Option<Permit<'_>> {
        // `SeqCst`: pairs with `release_many` for senders that wait (see `room`).
        let mut current = self.occupied.load(Ordering::SeqCst);
        loop {
            if current >= self.capacity {
                return None;
            }
            match self.occupied.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(Permit { mailbox: self }),
                Err(actual) => current = actual,
            }
        }
    }

    /// Frees `n` slots and wakes the senders waiting for room.
    fn release_many(&self, n: usize) {
        self.occupied.fetch_sub(n, Ordering::SeqCst);
        self.wake_senders();
    }

    /// Wakes the senders waiting for room, if any.
    pub(crate) fn wake_senders(&self) {
        // Pairs with `begin_wait` + the slot check of a waiting sender: either it sees the
        // freed slot, or this load sees it waiting (both `SeqCst`).
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// How many slots are taken: messages queued, reserved by a sender, or taken by the worker
    /// and not started (a sample; it may change at once).
    pub(crate) fn depth(&self) -> usize {
        self.occupied.load(Ordering::Relaxed)
    }

    /// `true` when every slot is taken.
    pub(crate) fn is_full(&self) -> bool {
        self.occupied.load(Ordering::SeqCst) >= self.capacity
    }

    /// `true` once the worker exited.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// `true` while the worker is parked waiting for a message.
    pub(crate) fn is_parked(&self) -> bool {
        self.parked.load(Ordering::Relaxed)
    }

    /// The signal of a freed slot, for senders that wait: call [`begin_wait`](Self::begin_wait),
    /// create the `Notified` future, retry [`try_reserve`](Self::try_reserve), then await it,
    /// and [`end_wait`](Self::end_wait) afterwards.
    pub(crate) fn room(&self) -> &Notify {
        &self.room
    }

    /// Counts a sender as waiting for room (see [`room`](Self::room)).
    pub(crate) fn begin_wait(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
    }

    /// A sender stopped waiting for room.
    pub(crate) fn end_wait(&self) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Queues `value`, made into an envelope under the queue's lock by `into_envelope` (keep it
    /// short), and wakes the worker if it is parked. The caller holds a slot for it.
    #[inline]
    fn push_with<T>(
        &self,
        value: T,
        into_envelope: impl FnOnce(T) -> Envelope,
    ) -> Result<(), Closed<T>> {
        let waker = {
            let mut queue = lock(&self.queue);
            if self.closed.load(Ordering::Relaxed) {
                return Err(Closed(value));
            }
            queue.items.push_back(into_envelope(value));
            self.take_receivers(&mut queue)
        };
        waker.wake();
        Ok(())
    }

    /// Queues every message of `held` (each in a slot reserved before, see
    /// [`Permit::hold`]), in order, under one lock, and wakes the worker if it is parked.
    /// `held` is left empty.
    ///
    /// # Errors
    /// [`Closed`] with the number of messages dropped if the worker exited (they were accepted
    /// and are counted as unprocessed by the run).
    pub(crate) fn push_all(&self, held: &mut Vec<Envelope>) -> Result<(), Closed<usize>> {
        if held.is_empty() {
            return Ok(());
        }
        let waker = {
            let mut queue = lock(&self.queue);
            if self.closed.load(Ordering::Relaxed) {
                drop(queue);
                return Err(Closed(drop_all(held.drain(..))));
            }
            queue.items.extend(held.drain(..));
            self.take_receivers(&mut queue)
        };
        waker.wake();
        Ok(())
    }

    /// Takes the parked receivers, to wake them once the lock is released.
    #[inline]
    fn take_receivers(&self, queue: &mut Queue) -> Receiver {
        let receiver = std::mem::take(&mut queue.receiver);
        if !matches!(receiver, Receiver::None) {
            self.parked.store(false, Ordering::Relaxed);
        }
        receiver
    }

    /// Moves every queued message (or, for one lane of a node with several, `one`, the first)
    /// to the back of `inbox` (the worker's), in order, without waiting. Returns `false` if
    /// there was none. The slots stay taken until the worker has started the messages (see
    /// [`StartedSlots`]).
    pub(crate) fn take_all(&self, inbox: &mut VecDeque<Envelope>, one: bool) -> bool {
        let mut queue = lock(&self.queue);
        Self::move_items(&mut queue, inbox, one)
    }

    fn move_items(queue: &mut Queue, inbox: &mut VecDeque<Envelope>, one: bool) -> bool {
        if one {
            return match queue.items.pop_front() {
                Some(envelope) => {
                    inbox.push_back(envelope);
                    true
                }
                None => false,
            };
        }
        if queue.items.is_empty() {
            return false;
        }
        if inbox.is_empty() {
            // O(1): the two buffers trade places, so neither side allocates in steady state.
            std::mem::swap(&mut queue.items, inbox);
        } else {
            inbox.extend(queue.items.drain(..));
        }
        true
    }

    /// Like [`take_all`](Self::take_all), but parks the worker until a message arrives.
    /// `Ready(false)` once the mailbox is closed and empty.
    ///
    /// Cancel safe: messages move only when it returns `Ready(true)`.
    pub(crate) fn poll_take_all(
        &self,
        cx: &mut Context<'_>,
        inbox: &mut VecDeque<Envelope>,
        one: bool,
    ) -> Poll<bool> {
        let mut queue = lock(&self.queue);
        if Self::move_items(&mut queue, inbox, one) {
            self.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(true);
        }
        if self.closed.load(Ordering::Relaxed) {
            return Poll::Ready(false);
        }
        if queue.items.capacity() > 0 {
            // The worker parks: a parked worker's mailbox holds no buffer (memory per idle
            // node); the next push makes one.
            queue.items = VecDeque::new();
        }
        queue.receiver.park(cx.waker(), one);
        self.parked.store(true, Ordering::Relaxed);
        Poll::Pending
    }

    /// Closes the mailbox (its worker exits): later pushes are refused. Returns how many
    /// queued messages were dropped (the caller counts them unprocessed).
    pub(crate) fn close(&self) -> usize {
        let (items, waker) = {
            let mut queue = lock(&self.queue);
            // Under the lock: a push that holds it either queued before or sees the flag.
            self.closed.store(true, Ordering::Release);
            (
                std::mem::take(&mut queue.items),
                self.take_receivers(&mut queue),
            )
        };
        // Dropped outside the lock: a message's drop may run user code (an ack hook's
        // captured values).
        let dropped = drop_all(items);
        drop(waker);
        // Senders waiting for room see the closed mailbox on their next try.
        self.room.notify_waiters();
        dropped
    }
}

/// One reserved slot of a mailbox: given back when dropped unused (so a slot is never lost on
/// an early return), or filled by [`push`](Self::push) / [`push_with`](Self::push_with), or
/// handed to a held message by [`hold`](Self::hold).
#[derive(Debug)]
#[must_use = "a permit gives its slot back when dropped"]
pub(crate) struct Permit<'a> {
    mailbox: &'a Mailbox,
}

impl Permit<'_> {
    /// Queues `envelope` into the slot.
    ///
    /// # Errors
    /// [`Closed`] with the envelope if the worker exited.
    pub(crate) fn push(self, envelope: Envelope) -> Result<(), Closed<Envelope>> {
        self.push_with(envelope, |e| e)
    }

    /// Queues `value`, made into an envelope under the queue's lock only once the mailbox is
    /// known to be open; a refused value is handed back exactly as it was given.
    ///
    /// # Errors
    /// [`Closed`] with the value if the worker exited.
    #[inline]
    pub(crate) fn push_with<T>(
        self,
        value: T,
        into_envelope: impl FnOnce(T) -> Envelope,
    ) -> Result<(), Closed<T>> {
        let pushed = self.mailbox.push_with(value, into_envelope);
        if pushed.is_ok() {
            // The queued message owns the slot now.
            std::mem::forget(self);
        }
        pushed
    }

    /// Keeps the slot for a message the caller holds and queues later with
    /// [`Mailbox::push_all`] (see `Outbox`), which then owns the slot.
    pub(crate) fn hold(self) {
        std::mem::forget(self);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.mailbox.release_many(1);
    }
}

/// The worker's side of freeing slots: the slot of each message the worker starts, given back
/// in batches. A worker busy with quick messages frees its started slots once per half mailbox
/// (one atomic update on a line the senders use, instead of one per message); the batch is
/// given back at once when the worker is about to wait for anything (its inbox ran empty, its
/// node returned `Pending`, or it blocks on a full mailbox). So a slot is never free for longer
/// than it takes to run half a mailbox of activations that never wait, and a sender never waits
/// on room that exists while the worker waits too (which keeps deadlock detection exact).
#[derive(Debug)]
pub(crate) struct StartedSlots<'a> {
    mailbox: &'a Mailbox,
    /// Started messages whose slots are not given back yet.
    unreleased: usize,
    /// Give the slots back once this many are pending.
    every: usize,
}

impl<'a> StartedSlots<'a> {
    /// The started slots of `mailbox` (the worker's own).
    pub(crate) fn new(mailbox: &'a Mailbox) -> Self {
        Self {
            mailbox,
            unreleased: 0,
            every: (mailbox.capacity / 2).max(1),
        }
    }

    /// The worker starts a message: its slot is free. Given back at once when `now`, otherwise
    /// with the batch.
    pub(crate) fn started(&mut self, now: bool) {
        self.unreleased += 1;
        if now || self.unreleased >= self.every {
            self.flush();
        }
    }

    /// Gives back every started slot not given back yet.
    pub(crate) fn flush(&mut self) {
        if self.unreleased > 0 {
            self.mailbox.release_many(self.unreleased);
            self.unreleased = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;
    use std::task::Wake;

    use spark_adk_core::NodeMessage;

    use super::*;

    fn envelope(n: u64) -> Envelope {
        Envelope::routed(NodeMessage::new(serde_json::json!({ "n": n })))
    }

    fn n_of(e: &Envelope) -> u64 {
        e.payload.content["n"].as_u64().unwrap()
    }

    /// Reserves a slot and queues `n`.
    fn send(mailbox: &Mailbox, n: u64) -> bool {
        mailbox
            .try_reserve()
            .is_some_and(|permit| permit.push(envelope(n)).is_ok())
    }

    struct Flag(std::sync::atomic::AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_full_mailbox_refuses_reservations() {
        let mailbox = Mailbox::new(2);
        assert!(send(&mailbox, 0));
        assert!(send(&mailbox, 1));
        assert!(mailbox.is_full());
        assert!(mailbox.try_reserve().is_none());
    }

    #[test]
    fn capacity_zero_means_one() {
        let mailbox = Mailbox::new(0);
        assert!(send(&mailbox, 0));
        assert!(mailbox.try_reserve().is_none());
    }

    #[test]
    fn taken_messages_keep_their_slots_until_started() {
        let mailbox = Mailbox::new(2);
        assert!(send(&mailbox, 0));
        assert!(send(&mailbox, 1));
        let mut inbox = VecDeque::new();
        assert!(mailbox.take_all(&mut inbox, false));
        assert_eq!(inbox.iter().map(n_of).collect::<Vec<_>>(), [0, 1]);
        // The queue is empty, but the two messages are not started: still full.
        assert!(mailbox.is_full());
        assert!(mailbox.try_reserve().is_none());
        let mut slots = StartedSlots::new(&mailbox);
        slots.started(true);
        let _permit = mailbox
            .try_reserve()
            .expect("a started message frees its slot");
        assert!(mailbox.try_reserve().is_none());
    }

    #[test]
    fn started_slots_are_given_back_per_half_mailbox_or_when_flushed() {
        let mailbox = Mailbox::new(4);
        for n in 0..4 {
            assert!(send(&mailbox, n));
        }
        let mut inbox = VecDeque::new();
        assert!(mailbox.take_all(&mut inbox, false));
        let mut slots = StartedSlots::new(&mailbox);
        slots.started(false);
        assert!(mailbox.is_full(), "one started slot waits for its batch");
        slots.started(false);
        assert!(!mailbox.is_full(), "half a mailbox is given back at once");
        let first = mailbox.try_reserve().unwrap();
        let second = mailbox.try_reserve().unwrap();
        assert!(mailbox.try_reserve().is_none());
        slots.started(false);
        assert!(mailbox.is_full());
        slots.flush();
        assert!(
            mailbox.try_reserve().is_some(),
            "a flush gives back the rest"
        );
        drop((first, second));
    }

    #[test]
    fn messages_are_taken_in_push_order_across_batches() {
        let mailbox = Mailbox::new(8);
        let mut held: Vec<Envelope> = Vec::new();
        for n in 0..3 {
            mailbox.try_reserve().unwrap().hold();
            held.push(envelope(n));
        }
        mailbox.push_all(&mut held).unwrap();
        assert!(held.is_empty());
        assert!(send(&mailbox, 3));
        let mut inbox = VecDeque::from([envelope(99)]);
        assert!(mailbox.take_all(&mut inbox, false));
        assert_eq!(inbox.iter().map(n_of).collect::<Vec<_>>(), [99, 0, 1, 2, 3]);
        assert!(!mailbox.take_all(&mut inbox, false), "nothing left");
    }

    #[test]
    fn a_closed_mailbox_hands_pushed_messages_back_and_reports_what_it_dropped() {
        let mailbox = Mailbox::new(4);
        assert!(send(&mailbox, 0));
        assert!(send(&mailbox, 1));
        assert_eq!(mailbox.close(), 2);
        assert!(mailbox.is_closed());
        let Err(Closed(back)) = mailbox.try_reserve().unwrap().push(envelope(7)) else {
            panic!("a closed mailbox accepted a message");
        };
        assert_eq!(n_of(&back), 7);
        let mut held = vec![envelope(8), envelope(9)];
        assert!(matches!(mailbox.push_all(&mut held), Err(Closed(2))));
        let Err(Closed(value)) = mailbox.try_reserve().unwrap().push_with(5_u64, envelope) else {
            panic!("a closed mailbox accepted a message");
        };
        assert_eq!(value, 5, "push_with hands back the value it was given");
    }

    #[test]
    fn a_parked_worker_is_woken_by_a_push_and_parking_frees_a_grown_queue() {
        let mailbox = Mailbox::new(1_000);
        let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut cx = Context::from_waker(&waker);
        let mut inbox = VecDeque::new();

        // A burst grows the queue; the worker takes it, then parks.
        for n in 0..200 {
            assert!(send(&mailbox, n));
        }
        assert_eq!(
            mailbox.poll_take_all(&mut cx, &mut inbox, false),
            Poll::Ready(true)
        );
        assert_eq!(inbox.len(), 200);
        inbox.clear();
        assert!(mailbox
            .poll_take_all(&mut cx, &mut inbox, false)
            .is_pending());
        assert!(mailbox.is_parked());
        assert_eq!(lock(&mailbox.queue).items.capacity(), 0);

        assert!(send(&mailbox, 1));
        assert!(flag.0.load(Ordering::SeqCst), "the push woke the worker");
        assert!(!mailbox.is_parked());
        assert_eq!(
            mailbox.poll_take_all(&mut cx, &mut inbox, false),
            Poll::Ready(true)
        );
        mailbox.close();
        inbox.clear();
        assert_eq!(
            mailbox.poll_take_all(&mut cx, &mut inbox, false),
            Poll::Ready(false)
        );
    }

    #[test]
    fn lanes_take_one_message_each_and_a_push_wakes_every_parked_lane() {
        let mailbox = Mailbox::new(8);
        let flags: Vec<_> = (0..2)
            .map(|_| Arc::new(Flag(std::sync::atomic::AtomicBool::new(false))))
            .collect();
        let wakers: Vec<_> = flags.iter().map(|f| Waker::from(Arc::clone(f))).collect();
        let mut inboxes = [VecDeque::new(), VecDeque::new()];
        for (waker, inbox) in wakers.iter().zip(&mut inboxes) {
            let mut cx = Context::from_waker(waker);
            assert!(mailbox.poll_take_all(&mut cx, inbox, true).is_pending());
        }
        assert!(send(&mailbox, 0));
        assert!(
            flags.iter().all(|f| f.0.load(Ordering::SeqCst)),
            "both lanes woken"
        );
        assert!(send(&mailbox, 1));
        assert!(send(&mailbox, 2));
        let [first, second] = &mut inboxes;
        assert!(mailbox.take_all(first, true));
        assert!(mailbox.take_all(second, true));
        assert_eq!(first.iter().map(n_of).collect::<Vec<_>>(), [0]);
        assert_eq!(second.iter().map(n_of).collect::<Vec<_>>(), [1]);
        assert!(mailbox.take_all(first, true));
        assert_eq!(first.iter().map(n_of).collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn a_mailbox_fits_one_128_byte_line() {
        // Memory per idle node (`mem_lr_10k`): one line per mailbox, as its alignment wants.
        assert_eq!(std::mem::size_of::<Mailbox>(), 128);
    }

    #[test]
    fn a_parked_worker_leaves_no_buffer_in_its_mailbox() {
        let mailbox = Mailbox::new(8);
        let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let waker = Waker::from(flag);
        let mut cx = Context::from_waker(&waker);
        let mut inbox = VecDeque::new();
        assert!(send(&mailbox, 0));
        assert!(send(&mailbox, 1));
        inbox.push_back(envelope(9));
        assert!(
            mailbox.take_all(&mut inbox, false),
            "appended: the queue keeps its buffer"
        );
        assert!(lock(&mailbox.queue).items.capacity() > 0);
        inbox.clear();
        assert!(mailbox
            .poll_take_all(&mut cx, &mut inbox, false)
            .is_pending());
        assert_eq!(
            lock(&mailbox.queue).items.capacity(),
            0,
            "memory per idle node"
        );
    }

    #[test]
    fn a_permit_dropped_unused_gives_its_slot_back() {
        let mailbox = Mailbox::new(1);
        let permit = mailbox.try_reserve().unwrap();
        assert!(mailbox.is_full());
        drop(permit);
        assert!(!mailbox.is_full());
        assert!(send(&mailbox, 0));
        assert!(mailbox.is_full(), "a pushed message keeps its slot");
    }
}
