//! Exact deadlock detection for bounded mailboxes: the registry of senders blocked on a full
//! mailbox.
//!
//! A worker that finds a target mailbox full registers "blocked on target" under the registry's
//! lock, retries, and then checks whether the blocked-on relation has a cycle through it in
//! which every mailbox is full ([`find_cycle`]). A worker registered as blocked cannot start a
//! message, so its own mailbox cannot free a slot: the workers of such a cycle can never make
//! progress, and the run ends with `RunError::Deadlock`, naming every worker registered as
//! blocked at that moment or woken from a blocked send by the stop that followed (also those
//! blocked on a cycle member without being on the cycle). No timeout or polling is involved.
//!
//! A node with several lanes (see `lanes.rs`) is stuck only when every one of its lanes is
//! blocked: the run then checks for the largest set of nodes whose lanes are all blocked on full
//! mailboxes of nodes in the set ([`stuck`]); none of them can ever start a message again.
//!
//! A worker gives every output it holds to its mailboxes before it blocks (see `worker.rs`), so
//! a full mailbox of a blocked cycle holds queued messages only.

use std::collections::BTreeSet;

use crate::lanes::Lanes;
use crate::mailbox::Mailbox;

/// Who is blocked on which mailbox.
#[derive(Debug)]
pub(crate) struct Registry {
    /// `blocked_on[worker] = Some(target)` while the worker waits for room in `target`. Sized
    /// when a worker first blocks (a run that never blocks pays nothing per node).
    blocked_on: Vec<Option<usize>>,
    workers: usize,
    /// Once a deadlock was found: every worker blocked then, or woken from a blocked send by
    /// the stop.
    deadlocked: Option<BTreeSet<usize>>,
}

impl Registry {
    /// A registry for `n` workers, none blocked.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            blocked_on: Vec::new(),
            workers: n,
            deadlocked: None,
        }
    }

    /// Records that worker `from` waits for room in `to` (`None`: no longer waits).
    pub(crate) fn set(&mut self, from: usize, to: Option<usize>) {
        if to.is_some() && self.blocked_on.is_empty() {
            self.blocked_on = vec![None; self.workers];
        }
        if let Some(slot) = self.blocked_on.get_mut(from) {
            *slot = to;
        }
    }

    /// Checks whether the registered worker `from` is on a cycle of full mailboxes (with
    /// several lanes per node: whether its node is stuck, see [`stuck`]); if so, records every
    /// blocked worker as deadlocked and returns `true`.
    pub(crate) fn detect(&mut self, mailboxes: &[Mailbox], lanes: &Lanes, from: usize) -> bool {
        let full = |i: usize| mailboxes.get(i).is_some_and(Mailbox::is_full);
        let found = if lanes.is_single() {
            find_cycle(&self.blocked_on, full, from).is_some()
        } else {
            stuck(&self.blocked_on, lanes, full, from)
        };
        if !found {
            return false;
        }
        let blocked = self
            .blocked_on
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|_| i));
        self.deadlocked
            .get_or_insert_with(BTreeSet::new)
            .extend(blocked);
        true
    }

    /// Worker `from` stopped waiting because the run stopped: if a deadlock was found, it was
    /// blocked on a send then, and is named too.
    pub(crate) fn woken_by_stop(&mut self, from: usize) {
        if let Some(deadlocked) = &mut self.deadlocked {
            deadlocked.insert(from);
        }
    }

    /// The workers named by a deadlock, in graph order (empty if none was found).
    pub(crate) fn deadlocked(&self) -> Vec<usize> {
        self.deadlocked
            .as_ref()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Follows the blocked-on relation from `start`; returns the cycle if it comes back to `start`
/// through full mailboxes only.
pub(crate) fn find_cycle(
    blocked_on: &[Option<usize>],
    full: impl Fn(usize) -> bool,
    start: usize,
) -> Option<Vec<usize>> {
    let mut cycle = vec![start];
    let mut current = start;
    for _ in 0..=blocked_on.len() {
        let next = (*blocked_on.get(current)?)?;
        if !full(next) {
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

/// With several lanes per node: whether the node of lane `from` is in the largest set of nodes
/// whose lanes are all blocked on full mailboxes of nodes of the set (computed by removing, until
/// nothing changes, every node with a lane that is not blocked or blocked on a mailbox with room
/// or on a node outside the set).
pub(crate) fn stuck(
    blocked_on: &[Option<usize>],
    lanes: &Lanes,
    full: impl Fn(usize) -> bool,
    from: usize,
) -> bool {
    let nodes = lanes.nodes();
    let mut stuck: Vec<bool> = (0..nodes)
        .map(|node| {
            lanes
                .of(node)
                .all(|lane| blocked_on.get(lane).copied().flatten().is_some_and(&full))
        })
        .collect();
    loop {
        let mut changed = false;
        for node in 0..nodes {
            if !stuck.get(node).copied().unwrap_or(false) {
                continue;
            }
            let escapes = lanes.of(node).any(|lane| {
                blocked_on
                    .get(lane)
                    .copied()
                    .flatten()
                    .is_none_or(|to| !stuck.get(to).copied().unwrap_or(false))
            });
            if escapes {
                if let Some(s) = stuck.get_mut(node) {
                    *s = false;
                }
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    stuck.get(lanes.node(from)).copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_with_a_free_lane_is_not_stuck_and_one_with_all_lanes_blocked_is() {
        // Node 0 has lanes 0 and 1, node 1 has lane 2; 0 <-> 1 blocked on each other.
        let lanes = Lanes::new([2, 1].into_iter());
        let one_lane_free = [Some(1), None, Some(0)];
        assert!(!stuck(&one_lane_free, &lanes, |_| true, 2));
        let all_blocked = [Some(1), Some(1), Some(0)];
        assert!(stuck(&all_blocked, &lanes, |_| true, 2));
        assert!(stuck(&all_blocked, &lanes, |_| true, 0));
        assert!(!stuck(&all_blocked, &lanes, |n| n != 0, 2), "room in 0");
    }

    #[test]
    fn a_cycle_of_full_mailboxes_through_the_sender_is_found() {
        // 0 -> 1 -> 2 -> 0, 3 -> 0 (blocked, not on the cycle).
        let blocked_on = [Some(1), Some(2), Some(0), Some(0)];
        assert_eq!(find_cycle(&blocked_on, |_| true, 0), Some(vec![0, 1, 2]));
        assert_eq!(find_cycle(&blocked_on, |_| true, 2), Some(vec![2, 0, 1]));
    }

    #[test]
    fn a_mailbox_with_room_on_the_way_breaks_the_cycle() {
        let blocked_on = [Some(1), Some(2), Some(0)];
        assert_eq!(find_cycle(&blocked_on, |i| i != 2, 0), None);
    }

    #[test]
    fn a_sender_blocked_on_a_cycle_it_is_not_part_of_finds_none() {
        let blocked_on = [Some(1), Some(0), None, Some(0)];
        assert_eq!(find_cycle(&blocked_on, |_| true, 3), None);
        assert_eq!(find_cycle(&blocked_on, |_| true, 2), None, "not blocked");
    }

    #[test]
    fn a_sender_blocked_on_its_own_mailbox_is_a_cycle_of_one() {
        let blocked_on = [Some(0)];
        assert_eq!(find_cycle(&blocked_on, |_| true, 0), Some(vec![0]));
    }

    #[test]
    fn a_detected_deadlock_names_every_blocked_worker() {
        let mailboxes = [
            Mailbox::new(1),
            Mailbox::new(1),
            Mailbox::new(1),
            Mailbox::new(1),
        ];
        let permits: Vec<_> = mailboxes.iter().map(|m| m.try_reserve()).collect();
        assert!(permits.iter().all(Option::is_some), "every mailbox is full");
        let lanes = Lanes::new([1, 1, 1, 1].into_iter());
        let mut registry = Registry::new(4);
        registry.set(2, Some(0)); // blocked on the cycle, not part of it
        registry.set(0, Some(1));
        assert!(!registry.detect(&mailboxes, &lanes, 0));
        registry.set(1, Some(0));
        assert!(registry.detect(&mailboxes, &lanes, 1));
        registry.woken_by_stop(3);
        assert_eq!(registry.deadlocked(), [0, 1, 2, 3]);
    }
}
