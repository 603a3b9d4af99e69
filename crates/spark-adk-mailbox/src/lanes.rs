//! [`Lanes`]: the workers of one run. A node processes up to its concurrency
//! (`NodeEntry::concurrency`, default 1) messages at once, with one worker per unit of
//! concurrency: its *lanes*. Every lane of a node takes from the node's one mailbox.
//!
//! - A node with one lane takes every queued message at once into its inbox and starts them in
//!   order (the seed's behaviour: one message at a time, FIFO).
//! - A node with `n > 1` lanes: each lane takes the *first* queued message when it is free, so
//!   messages start in mailbox order (per sender, in send order), at most `n` at once, and may
//!   finish in any order.
//!
//! Lanes are numbered across the run, node by node; when every node has one lane (the
//! default) lane `i` is node `i` and this costs nothing. Workers, counters and the
//! blocked-sender registry are per lane; a node's mailbox is closed, and its shutdown
//! delivery made, by the last of its lanes to exit ([`Lanes::leave`]).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The lanes of a run (see the module docs).
#[derive(Debug)]
pub(crate) struct Lanes {
    nodes: usize,
    /// `None` when every node has one lane (lane `i` is node `i`).
    multi: Option<Box<Multi>>,
}

#[derive(Debug)]
struct Multi {
    /// The node of each lane.
    node_of: Box<[usize]>,
    /// Per node, its first lane; one more entry: the number of lanes.
    first: Box<[usize]>,
    /// Per node, its lanes still running.
    live: Box<[AtomicUsize]>,
    /// Per node, whether one of its lanes ended with the node's failure.
    failed: Box<[AtomicBool]>,
}

/// What a lane leaving its node learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Left {
    /// It was the node's last lane to exit: it closes the mailbox.
    pub(crate) last: bool,
    /// One of the node's lanes (this one included) ended with the node's failure.
    pub(crate) failed: bool,
}

impl Lanes {
    /// The lanes of nodes with these concurrencies (a concurrency of 0 counts as 1).
    pub(crate) fn new(concurrency: impl ExactSizeIterator<Item = usize>) -> Self {
        let nodes = concurrency.len();
        let counts: Vec<usize> = concurrency.map(|c| c.max(1)).collect();
        if counts.iter().all(|&c| c == 1) {
            return Self { nodes, multi: None };
        }
        let mut first = Vec::with_capacity(nodes + 1);
        let mut node_of = Vec::new();
        for (node, &count) in counts.iter().enumerate() {
            first.push(node_of.len());
            node_of.extend(std::iter::repeat_n(node, count));
        }
        first.push(node_of.len());
        Self {
            nodes,
            multi: Some(Box::new(Multi {
                node_of: node_of.into(),
                first: first.into(),
                live: counts.iter().map(|&c| AtomicUsize::new(c)).collect(),
                failed: counts.iter().map(|_| AtomicBool::new(false)).collect(),
            })),
        }
    }

    /// How many lanes (workers) the run has.
    pub(crate) fn len(&self) -> usize {
        self.multi.as_ref().map_or(self.nodes, |m| m.node_of.len())
    }

    /// How many nodes the run has.
    pub(crate) fn nodes(&self) -> usize {
        self.nodes
    }

    /// `true` when every node has one lane.
    pub(crate) fn is_single(&self) -> bool {
        self.multi.is_none()
    }

    /// The node whose lane `lane` is.
    #[inline]
    pub(crate) fn node(&self, lane: usize) -> usize {
        match &self.multi {
            None => lane,
            Some(m) => m.node_of.get(lane).copied().unwrap_or(lane),
        }
    }

    /// The lanes of node `node`.
    pub(crate) fn of(&self, node: usize) -> Range<usize> {
        match &self.multi {
            None => node..node + 1,
            Some(m) => match (m.first.get(node), m.first.get(node + 1)) {
                (Some(&start), Some(&end)) => start..end,
                _ => 0..0,
            },
        }
    }

    /// How many lanes node `node` has.
    pub(crate) fn count(&self, node: usize) -> usize {
        self.of(node).len()
    }

    /// Lane `lane` exits, having ended with its node's failure or not. Call once per lane.
    pub(crate) fn leave(&self, lane: usize, failed: bool) -> Left {
        let Some(m) = &self.multi else {
            return Left { last: true, failed };
        };
        let node = self.node(lane);
        let (Some(live), Some(flag)) = (m.live.get(node), m.failed.get(node)) else {
            return Left { last: true, failed };
        };
        if failed {
            flag.store(true, Ordering::Release);
        }
        // `AcqRel`: the last lane sees every other lane's failure flag.
        let last = live.fetch_sub(1, Ordering::AcqRel) == 1;
        Left {
            last,
            failed: flag.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_numbered_node_by_node() {
        let lanes = Lanes::new([1, 3, 2].into_iter());
        assert_eq!(lanes.len(), 6);
        assert_eq!(
            (0..6).map(|l| lanes.node(l)).collect::<Vec<_>>(),
            [0, 1, 1, 1, 2, 2]
        );
        assert_eq!(lanes.of(1), 1..4);
        assert_eq!(lanes.count(2), 2);
    }

    #[test]
    fn one_lane_per_node_is_the_identity() {
        let lanes = Lanes::new([1, 1].into_iter());
        assert!(lanes.is_single());
        assert_eq!(lanes.node(1), 1);
        assert_eq!(lanes.of(1), 1..2);
        assert_eq!(
            lanes.leave(0, false),
            Left {
                last: true,
                failed: false
            }
        );
    }

    #[test]
    fn the_last_lane_to_leave_learns_that_another_lane_failed() {
        let lanes = Lanes::new([3].into_iter());
        assert_eq!(
            lanes.leave(1, true),
            Left {
                last: false,
                failed: true
            }
        );
        assert!(!lanes.leave(0, false).last);
        assert_eq!(
            lanes.leave(2, false),
            Left {
                last: true,
                failed: true
            }
        );
    }
}
