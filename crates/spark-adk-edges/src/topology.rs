//! [`Topology`]: a validated, compiled graph, and the routing of an output along its edges.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use spark_adk_core::panic::catch_panic;
use spark_adk_core::{DynNode, EventBus, NodeMessage, RunError};

use crate::EdgeCondition;

/// Graphs with at most this many nodes find a node by name with a scan (see
/// [`Topology::index_of`]).
const SCAN_NAMES_UP_TO: usize = 16;

/// A node of a built graph.
#[derive(Clone)]
pub struct NodeEntry {
    /// The node's unique name.
    pub name: Arc<str>,
    /// The node itself.
    pub node: Arc<dyn DynNode>,
    /// Its mailbox capacity in long-running mode.
    pub mailbox_capacity: usize,
    /// How many messages it may process at once in long-running mode (at least 1; see
    /// `GraphBuilder::node_concurrency`).
    pub concurrency: usize,
}

impl fmt::Debug for NodeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeEntry")
            .field("name", &self.name)
            .field("mailbox_capacity", &self.mailbox_capacity)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// An edge of a built graph.
#[derive(Clone, Debug)]
pub struct Edge {
    /// Source node index.
    pub from: usize,
    /// Target node index.
    pub to: usize,
    /// When it fires.
    pub condition: EdgeCondition,
    /// Higher fires first.
    pub priority: i32,
    /// The order the edge was added in (ties of priority keep this order).
    pub order: usize,
}

/// A validated graph: nodes by index, each node's outgoing edges in firing order, the start
/// node, and the run limits. Executors share it behind an `Arc`.
#[derive(Clone)]
pub struct Topology {
    nodes: Vec<NodeEntry>,
    names: Arc<[Arc<str>]>,
    /// Per node: regular edges (priority desc, then insertion), then fallback edges (same order).
    edges: Vec<Box<[Edge]>>,
    /// Per node: index in `edges[n]` of the first fallback edge.
    first_fallback: Vec<usize>,
    start: usize,
    limits: Limits,
    by_name: HashMap<Arc<str>, usize>,
}

/// Run settings of a graph, fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) step_limit: u64,
    pub(crate) mailbox_capacity: usize,
    pub(crate) initial_state: Map<String, Value>,
    pub(crate) events: EventBus,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("nodes", &self.names)
            .field("edges", &self.edges)
            .field("start", &self.start)
            .finish()
    }
}

fn names_to_index(names: &[Arc<str>]) -> HashMap<Arc<str>, usize> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (Arc::clone(n), i))
        .collect()
}

impl Topology {
    pub(crate) fn new(
        nodes: Vec<NodeEntry>,
        out: Vec<Vec<Edge>>,
        start: usize,
        limits: Limits,
    ) -> Self {
        let names: Arc<[Arc<str>]> = nodes.iter().map(|n| Arc::clone(&n.name)).collect();
        let names_for_index = Arc::clone(&names);
        let mut edges = Vec::with_capacity(out.len());
        let mut first_fallback = Vec::with_capacity(out.len());
        for mut list in out {
            // Stable sort: regular before fallback, higher priority first, then insertion order.
            list.sort_by_key(|e| {
                (
                    e.condition.is_fallback(),
                    std::cmp::Reverse(e.priority),
                    e.order,
                )
            });
            first_fallback.push(
                list.iter()
                    .position(|e| e.condition.is_fallback())
                    .unwrap_or(list.len()),
            );
            edges.push(list.into_boxed_slice());
        }
        Self {
            nodes,
            names,
            edges,
            first_fallback,
            start,
            limits,
            by_name: names_to_index(&names_for_index),
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// `true` for a graph without nodes (a built graph always has at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes, by index.
    pub fn nodes(&self) -> &[NodeEntry] {
        &self.nodes
    }

    /// The node at `index`, if any.
    pub fn node(&self, index: usize) -> Option<&NodeEntry> {
        self.nodes.get(index)
    }

    /// The node names, by index (shared: cloning is cheap).
    pub fn names(&self) -> &Arc<[Arc<str>]> {
        &self.names
    }

    /// The index of the node called `name`: a scan of the names for small graphs (faster than
    /// hashing a name), a hash lookup otherwise.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        if self.names.len() <= SCAN_NAMES_UP_TO {
            self.names.iter().position(|n| n.as_ref() == name)
        } else {
            self.by_name.get(name).copied()
        }
    }

    /// The start node's index.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The standard-mode step limit.
    pub fn step_limit(&self) -> u64 {
        self.limits.step_limit
    }

    /// The initial graph state of every run (a task can replace it).
    pub fn initial_state(&self) -> &Map<String, Value> {
        &self.limits.initial_state
    }

    /// The bus every run of this graph publishes its events to.
    pub fn events(&self) -> &EventBus {
        &self.limits.events
    }

    /// The default mailbox capacity of long-running mode.
    pub fn mailbox_capacity(&self) -> usize {
        self.limits.mailbox_capacity
    }

    /// The outgoing edges of `node` in firing order (regular edges by priority, then fallback).
    #[inline]
    pub fn edges_from(&self, node: usize) -> &[Edge] {
        self.edges.get(node).map_or(&[], |e| &e[..])
    }

    /// Every edge of the graph, node by node, in firing order.
    pub fn edges(&self) -> impl Iterator<Item = &Edge> {
        self.edges.iter().flat_map(|e| e.iter())
    }

    /// Routes `output` of node `from`: calls `emit(target)` for every edge that fires, in firing
    /// order, and returns how many fired (0 means `output` is a sink output).
    ///
    /// Every matching regular edge fires; fallback edges fire only when no regular edge did.
    ///
    /// # Errors
    /// [`RunError::ConditionPanicked`] naming the edge when a predicate panics.
    #[inline]
    pub fn route(
        &self,
        from: usize,
        output: &NodeMessage,
        mut emit: impl FnMut(usize),
    ) -> Result<usize, RunError> {
        let edges = self.edges_from(from);
        let split = self.first_fallback.get(from).copied().unwrap_or(0);
        let (regular, fallback) = edges.split_at(split.min(edges.len()));
        let mut fired = 0;
        for edge in regular {
            let fires = match edge.condition {
                EdgeCondition::Always => true,
                _ => self.matches(edge, output)?,
            };
            if fires {
                fired += 1;
                emit(edge.to);
            }
        }
        if fired == 0 {
            for edge in fallback {
                fired += 1;
                emit(edge.to);
            }
        }
        Ok(fired)
    }

    #[inline]
    fn matches(&self, edge: &Edge, output: &NodeMessage) -> Result<bool, RunError> {
        match &edge.condition {
            EdgeCondition::Always => Ok(true),
            EdgeCondition::Predicate(_) => {
                catch_panic(|| edge.condition.evaluate(output)).map_err(|message| {
                    RunError::ConditionPanicked {
                        from: self.name_of(edge.from),
                        to: self.name_of(edge.to),
                        message,
                        counts: spark_adk_core::RunCounts::default(),
                    }
                })
            }
            other => Ok(other.evaluate(output)),
        }
    }

    fn name_of(&self, index: usize) -> String {
        self.names
            .get(index)
            .map_or_else(|| format!("#{index}"), |n| n.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use spark_adk_core::{node_fn, NodeError, NodeMessage};

    use crate::GraphBuilder;

    fn graph_of(n: usize) -> super::Topology {
        let mut g = GraphBuilder::new();
        let nodes: Vec<_> = (0..n)
            .map(|i| {
                g.add(
                    format!("node-{i}"),
                    node_fn(|_| async { Ok::<_, NodeError>(NodeMessage::empty()) }),
                )
            })
            .collect();
        g.start(nodes[0]);
        g.build().unwrap()
    }

    #[test]
    fn index_of_finds_every_node_by_name_in_small_and_large_graphs() {
        for n in [1, super::SCAN_NAMES_UP_TO, super::SCAN_NAMES_UP_TO + 1, 100] {
            let topology = graph_of(n);
            for i in 0..n {
                assert_eq!(topology.index_of(&format!("node-{i}")), Some(i), "n = {n}");
            }
            assert_eq!(topology.index_of("node-"), None, "n = {n}");
            assert_eq!(topology.index_of(&format!("node-{n}")), None, "n = {n}");
        }
    }
}
