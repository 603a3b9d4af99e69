//! The result of a run: the last sink output, every sink output, and run metadata.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{BudgetKind, NodeMessage, TaskType};

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum StopReason {
    /// Standard mode: no activation left. Long-running mode: quiescence (every mailbox empty, no
    /// worker processing).
    Completed,
    /// A budget ran out (long-running mode stops gracefully).
    Budget(BudgetKind),
    /// A shutdown was requested (by a handle, a shutdown message or a node).
    Shutdown,
    /// The run handle was dropped while the run was still going (long-running mode).
    HandleDropped,
    /// A node interrupted a durable run (`Context::interrupt`); the node and what it asked are
    /// in [`RunMetadata::interrupt`]. Resume the run with an answer to go on.
    Interrupted,
}

/// The interrupt a durable run stopped at ([`StopReason::Interrupted`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterruptInfo {
    /// The node that interrupted.
    pub node: Arc<str>,
    /// What it asked.
    pub payload: Value,
}

/// One output that matched no outgoing edge (a sink output of the run).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SinkOutput {
    /// The node that produced it.
    pub node: Arc<str>,
    /// The output.
    pub message: NodeMessage,
}

/// How many sink outputs a run keeps for its result.
///
/// The default keeps every one, in completion order (what a run's result promises). A spawned
/// long-running run that produces outputs for days would keep them all in memory; such a run
/// reads its outputs through its handle's subscription and keeps only the last few for the
/// result.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use spark_adk_core::{NodeMessage, SinkOutputs, SinkRetention};
///
/// let mut sinks = SinkOutputs::with_retention(SinkRetention::Last(2));
/// for n in 0..5 {
///     sinks.push(Arc::from("out"), NodeMessage::new(serde_json::json!({ "n": n })));
/// }
/// let kept: Vec<_> = sinks.as_slice().iter().map(|s| s.message.content["n"].clone()).collect();
/// assert_eq!(kept, [3, 4]);
/// assert_eq!(sinks.discarded(), 3);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SinkRetention {
    /// Every sink output (the default).
    #[default]
    All,
    /// Only the most recent `n` (at least one: the result's content is the most recent output).
    Last(usize),
}

impl SinkRetention {
    /// The most outputs kept, `None` for all.
    fn limit(self) -> Option<usize> {
        match self {
            SinkRetention::All => None,
            SinkRetention::Last(n) => Some(n.max(1)),
        }
    }
}

/// Every sink output of a run, in completion order (or the most recent ones, see
/// [`SinkRetention`]). A run with a single sink output (the common case) keeps it inline,
/// without allocating.
#[derive(Clone, Debug, Default)]
pub struct SinkOutputs(SinkStore);

#[derive(Clone, Debug, Default)]
enum SinkStore {
    #[default]
    Empty,
    One(SinkOutput),
    Many(Vec<SinkOutput>),
    /// Only the most recent ones ([`SinkRetention::Last`]); boxed, so the common stores stay
    /// small.
    Window(Box<Window>),
}

/// The store of [`SinkRetention::Last`]: up to `2 * limit` outputs, of which those before the
/// last `limit` are hidden; they are removed in one go when the vector reaches `2 * limit`
/// (amortized constant time per push).
#[derive(Clone, Debug)]
struct Window {
    all: Vec<SinkOutput>,
    limit: usize,
    /// Outputs removed from `all`.
    removed: u64,
}

impl Window {
    fn visible(&self) -> &[SinkOutput] {
        self.all
            .get(self.all.len().saturating_sub(self.limit)..)
            .unwrap_or(&[])
    }
}

impl SinkOutputs {
    /// No sink output yet; every one pushed is kept.
    #[inline]
    pub fn new() -> Self {
        Self::default()
    }

    /// No sink output yet; pushed ones are kept as `retention` says.
    pub fn with_retention(retention: SinkRetention) -> Self {
        match retention.limit() {
            None => Self::default(),
            Some(limit) => Self(SinkStore::Window(Box::new(Window {
                all: Vec::new(),
                limit,
                removed: 0,
            }))),
        }
    }

    /// Appends a sink output of `node` (dropping the oldest kept one if the retention says so).
    #[inline]
    pub fn push(&mut self, node: Arc<str>, message: NodeMessage) {
        let output = SinkOutput { node, message };
        match &mut self.0 {
            // The common case of a long run: append in place, without moving the vector.
            SinkStore::Many(all) => all.push(output),
            SinkStore::Window(window) => {
                window.all.push(output);
                if window.all.len() >= window.limit.saturating_mul(2) {
                    let excess = window.all.len() - window.limit;
                    window.all.drain(..excess);
                    window.removed += excess as u64;
                }
            }
            SinkStore::Empty => self.0 = SinkStore::One(output),
            SinkStore::One(_) => {
                if let SinkStore::One(first) = std::mem::take(&mut self.0) {
                    self.0 = SinkStore::Many(vec![first, output]);
                }
            }
        }
    }

    /// The outputs kept, in completion order.
    pub fn as_slice(&self) -> &[SinkOutput] {
        match &self.0 {
            SinkStore::Empty => &[],
            SinkStore::One(one) => std::slice::from_ref(one),
            SinkStore::Many(all) => all,
            SinkStore::Window(window) => window.visible(),
        }
    }

    /// How many outputs were pushed but are not kept (see [`SinkRetention::Last`]).
    pub fn discarded(&self) -> u64 {
        match &self.0 {
            SinkStore::Window(window) => {
                window.removed + (window.all.len() - window.visible().len()) as u64
            }
            SinkStore::Empty | SinkStore::One(_) | SinkStore::Many(_) => 0,
        }
    }

    /// Removes and returns the most recent output.
    pub fn pop(&mut self) -> Option<SinkOutput> {
        match &mut self.0 {
            SinkStore::Empty => None,
            SinkStore::One(_) => match std::mem::take(&mut self.0) {
                SinkStore::One(one) => Some(one),
                _ => None,
            },
            SinkStore::Many(all) => all.pop(),
            SinkStore::Window(window) => {
                // Outputs hidden by the limit stay discarded.
                let excess = window.all.len().saturating_sub(window.limit);
                window.all.drain(..excess);
                window.removed += excess as u64;
                window.all.pop()
            }
        }
    }

    /// Number of outputs kept.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// `true` when none is kept.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

/// Equal when the same outputs are kept and as many were discarded.
impl PartialEq for SinkOutputs {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice() && self.discarded() == other.discarded()
    }
}

impl Serialize for SinkOutputs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

/// How many messages one node processed (an item of [`NodeCounts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NodeCount<'a> {
    /// The node's name.
    pub node: &'a str,
    /// Activations (`process` calls that finished, shutdown deliveries not included).
    pub processed: u64,
}

/// Activations per node, in the graph's node order. The names are shared with the graph, and
/// the counts of a graph of up to 3 nodes are kept inline, so counting costs no
/// allocation for a small graph and one small allocation for a larger one.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use spark_adk_core::NodeCounts;
///
/// let names: Arc<[Arc<str>]> = vec![Arc::from("a"), Arc::from("b")].into();
/// let mut counts = NodeCounts::new(names);
/// counts.increment(1);
/// assert_eq!(counts.get("b"), Some(1));
/// let listed: Vec<(&str, u64)> = counts.iter().map(|c| (c.node, c.processed)).collect();
/// assert_eq!(listed, [("a", 0), ("b", 1)]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCounts {
    names: Arc<[Arc<str>]>,
    counts: Counts,
}

/// How many nodes' counts [`NodeCounts`] keeps without allocating.
const INLINE_COUNTS: usize = 3;

/// The counts of [`NodeCounts`], as many as it has names: inline for a small graph (the slots
/// past the graph's nodes stay zero), on the heap for a larger one.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Counts {
    Inline([u64; INLINE_COUNTS]),
    Heap(Box<[u64]>),
}

fn no_names() -> Arc<[Arc<str>]> {
    static EMPTY: std::sync::OnceLock<Arc<[Arc<str>]>> = std::sync::OnceLock::new();
    Arc::clone(EMPTY.get_or_init(|| Arc::from(Vec::new())))
}

impl Default for NodeCounts {
    fn default() -> Self {
        Self::new(no_names())
    }
}

impl NodeCounts {
    /// Zero counts for the nodes `names` (by index).
    #[inline]
    pub fn new(names: Arc<[Arc<str>]>) -> Self {
        let counts = if names.len() <= INLINE_COUNTS {
            Counts::Inline([0; INLINE_COUNTS])
        } else {
            // Not `vec![0; n]`: that asks the allocator for zeroed memory (`calloc`), which
            // glibc serves without its thread cache; a plain allocation filled here is cheaper.
            Counts::Heap(std::iter::repeat_n(0, names.len()).collect())
        };
        Self { names, counts }
    }

    /// Counts for the nodes `names`, taken in order from `counts` (missing ones are zero).
    pub fn from_counts(names: Arc<[Arc<str>]>, counts: impl IntoIterator<Item = u64>) -> Self {
        let mut this = Self::new(names);
        for (slot, count) in this.slots_mut().iter_mut().zip(counts) {
            *slot = count;
        }
        this
    }

    #[inline]
    fn slots(&self) -> &[u64] {
        match &self.counts {
            Counts::Inline(slots) => slots.get(..self.names.len()).unwrap_or(&[]),
            Counts::Heap(slots) => slots,
        }
    }

    #[inline]
    fn slots_mut(&mut self) -> &mut [u64] {
        match &mut self.counts {
            Counts::Inline(slots) => slots.get_mut(..self.names.len()).unwrap_or(&mut []),
            Counts::Heap(slots) => slots,
        }
    }

    /// Adds one activation to the node at `index` (executors call this; out of range: ignored).
    #[inline]
    pub fn increment(&mut self, index: usize) {
        if let Some(slot) = self.slots_mut().get_mut(index) {
            *slot += 1;
        }
    }

    /// The count of the node called `name`, or `None` for an unknown node.
    pub fn get(&self, name: &str) -> Option<u64> {
        let index = self.names.iter().position(|n| &**n == name)?;
        self.slots().get(index).copied()
    }

    /// Every node with its count, in the graph's node order.
    pub fn iter(&self) -> impl Iterator<Item = NodeCount<'_>> {
        self.names
            .iter()
            .zip(self.slots())
            .map(|(node, &processed)| NodeCount { node, processed })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// `true` for a graph without nodes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl<'a> IntoIterator for &'a NodeCounts {
    type Item = NodeCount<'a>;
    type IntoIter = Box<dyn Iterator<Item = NodeCount<'a>> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl Serialize for NodeCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for c in self.iter() {
            map.serialize_entry(c.node, &c.processed)?;
        }
        map.end()
    }
}

/// What the runtime measured and counted during a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunMetadata {
    /// The mode the run used.
    pub task_type: TaskType,
    /// Why the run ended.
    pub stop_reason: StopReason,
    /// Activations performed (`process` calls that finished).
    pub steps: u64,
    /// Tokens recorded through `Context::record_tokens`.
    pub tokens_used: u64,
    /// Wall-clock duration of the run.
    pub elapsed: Duration,
    /// Messages created for a node: the task input and every routed output (long-running:
    /// also every message sent through a handle).
    pub accepted: u64,
    /// Messages whose `process` call finished (Ok or error).
    pub processed: u64,
    /// Messages accepted but never processed (queued at the stop, or not delivered).
    pub unprocessed: u64,
    /// Long-running mode: activations (and shutdown deliveries) still running when the grace
    /// period of a graceful stop ended, and therefore dropped (see `Task::with_grace`). Their
    /// messages are among `unprocessed`.
    pub activations_dropped: u64,
    /// Activations per node, in the graph's node order.
    pub per_node: NodeCounts,
    /// Sink outputs produced but not kept in the result ([`SinkRetention::Last`]); they were
    /// still broadcast to subscribers of a spawned run. Zero when every one is kept.
    pub sink_outputs_discarded: u64,
    /// The interrupt the run stopped at, when [`RunMetadata::stop_reason`] is
    /// [`StopReason::Interrupted`].
    pub interrupt: Option<InterruptInfo>,
}

impl RunMetadata {
    /// A metadata record with everything zero.
    #[inline]
    pub fn new(task_type: TaskType) -> Self {
        Self {
            task_type,
            stop_reason: StopReason::Completed,
            steps: 0,
            tokens_used: 0,
            elapsed: Duration::ZERO,
            accepted: 0,
            processed: 0,
            unprocessed: 0,
            activations_dropped: 0,
            per_node: NodeCounts::default(),
            sink_outputs_discarded: 0,
            interrupt: None,
        }
    }

    /// The accounting part of the metadata.
    pub fn counts(&self) -> crate::RunCounts {
        crate::RunCounts {
            accepted: self.accepted,
            processed: self.processed,
            unprocessed: self.unprocessed,
            tokens_used: self.tokens_used,
        }
    }

    /// How many messages `node` processed, or `None` for an unknown node.
    pub fn processed_by(&self, node: &str) -> Option<u64> {
        self.per_node.get(node)
    }
}

/// The outcome of a successful run.
///
/// `output` is the most recent output that matched no outgoing edge; `sink_outputs` holds every
/// such output in completion order.
///
/// # Example
///
/// ```
/// use spark_adk_core::{NodeMessage, RunMetadata, RunResult, TaskType};
/// use serde_json::json;
///
/// let result = RunResult::new(
///     vec![("load".into(), NodeMessage::from(json!({ "loaded": 3 })))],
///     RunMetadata::new(TaskType::Standard),
/// );
/// assert_eq!(result.content()["loaded"], 3);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunResult {
    sink_outputs: SinkOutputs,
    /// What the runtime measured and counted.
    pub metadata: RunMetadata,
    /// The graph state at the end of the run.
    pub state: Map<String, Value>,
}

static NULL: Value = Value::Null;

impl RunResult {
    /// A result from `(node, output)` sink outputs in completion order.
    pub fn new(sink_outputs: Vec<(Arc<str>, NodeMessage)>, metadata: RunMetadata) -> Self {
        let mut sinks = SinkOutputs::new();
        for (node, message) in sink_outputs {
            sinks.push(node, message);
        }
        Self::from_sinks(sinks, metadata)
    }

    /// A result from sink outputs already collected (what executors use).
    #[inline]
    pub fn from_sinks(sink_outputs: SinkOutputs, metadata: RunMetadata) -> Self {
        Self {
            sink_outputs,
            metadata,
            state: Map::new(),
        }
    }

    /// Returns the result with `state` as its final graph state.
    #[must_use]
    #[inline]
    pub fn with_state(mut self, state: Map<String, Value>) -> Self {
        self.state = state;
        self
    }

    /// The most recent sink output, if the run produced one.
    pub fn output(&self) -> Option<&NodeMessage> {
        self.sink_outputs.as_slice().last().map(|s| &s.message)
    }

    /// The content of [`RunResult::output`], or JSON `null` when there is none (the seed's
    /// `result.content`).
    pub fn content(&self) -> &Value {
        self.output().map_or(&NULL, |m| &m.content)
    }

    /// The node that produced [`RunResult::output`].
    pub fn output_node(&self) -> Option<&str> {
        self.sink_outputs.as_slice().last().map(|s| &*s.node)
    }

    /// Every sink output of the run, in completion order.
    pub fn sink_outputs(&self) -> &[SinkOutput] {
        self.sink_outputs.as_slice()
    }

    /// Takes the most recent sink output.
    pub fn into_output(mut self) -> Option<NodeMessage> {
        self.sink_outputs.pop().map(|s| s.message)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn names(n: usize) -> Arc<[Arc<str>]> {
        (0..n).map(|i| Arc::from(format!("n{i}"))).collect()
    }

    #[test]
    fn node_counts_list_exactly_the_graphs_nodes_inline_or_on_the_heap() {
        for n in [0, 1, INLINE_COUNTS, INLINE_COUNTS + 1, 10] {
            let mut counts = NodeCounts::new(names(n));
            for i in 0..n {
                for _ in 0..=i {
                    counts.increment(i);
                }
            }
            counts.increment(n); // out of range: ignored
            let listed: Vec<u64> = counts.iter().map(|c| c.processed).collect();
            assert_eq!(listed, (1..=n as u64).collect::<Vec<_>>(), "{n} nodes");
            assert_eq!(counts.len(), n);
            assert_eq!(counts.get(&format!("n{n}")), None);
            let again = NodeCounts::from_counts(names(n), 1..);
            assert_eq!(counts, again, "{n} nodes");
        }
    }

    fn pushed(retention: SinkRetention, n: u64) -> SinkOutputs {
        let mut sinks = SinkOutputs::with_retention(retention);
        for i in 0..n {
            sinks.push(Arc::from("out"), NodeMessage::new(serde_json::json!(i)));
        }
        sinks
    }

    fn values(sinks: &SinkOutputs) -> Vec<u64> {
        sinks
            .as_slice()
            .iter()
            .map(|s| s.message.content.as_u64().unwrap())
            .collect()
    }

    #[test]
    fn every_sink_output_is_kept_by_default() {
        let sinks = pushed(SinkRetention::All, 100);
        assert_eq!(values(&sinks), (0..100).collect::<Vec<_>>());
        assert_eq!(sinks.discarded(), 0);
    }

    #[test]
    fn a_limited_retention_keeps_exactly_the_most_recent_outputs_in_order() {
        for limit in 1..=6usize {
            for n in 0..40u64 {
                let sinks = pushed(SinkRetention::Last(limit), n);
                let kept = n.min(limit as u64);
                assert_eq!(
                    values(&sinks),
                    (n - kept..n).collect::<Vec<_>>(),
                    "limit {limit}, {n} pushed"
                );
                assert_eq!(sinks.len() as u64, kept);
                assert_eq!(sinks.discarded(), n - kept, "limit {limit}, {n} pushed");
            }
        }
    }

    #[test]
    fn last_zero_keeps_the_most_recent_output() {
        let sinks = pushed(SinkRetention::Last(0), 5);
        assert_eq!(values(&sinks), [4]);
        assert_eq!(sinks.discarded(), 4);
    }

    #[test]
    fn pop_takes_the_most_recent_and_never_brings_back_a_discarded_one() {
        let mut sinks = pushed(SinkRetention::Last(3), 5); // keeps 2, 3, 4; 0, 1 hidden
        assert_eq!(*sinks.pop().unwrap().message.content, serde_json::json!(4));
        assert_eq!(values(&sinks), [2, 3]);
        assert_eq!(sinks.discarded(), 2);
    }

    #[test]
    fn outputs_are_equal_when_they_keep_the_same_ones() {
        let mut a = pushed(SinkRetention::Last(2), 3);
        let b = pushed(SinkRetention::Last(2), 3);
        assert_eq!(a, b);
        a.push(Arc::from("out"), NodeMessage::new(serde_json::json!(3)));
        assert_ne!(a, b);
    }
}
