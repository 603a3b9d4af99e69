//! [`GraphBuilder`]: add nodes, wire edges, validate everything at once.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};
use spark_adk_core::{DynNode, EventBus, Node};

use crate::chain::{ConditionProblem, EdgeSpec};
use crate::expr::ExprError;
use crate::topology::{Edge, NodeEntry, Topology};
use crate::{Chain, EdgeCondition, Endpoint, NodeRef};

static NEXT_BUILDER_ID: AtomicU32 = AtomicU32::new(1);

/// The default per-run step limit of standard mode.
pub const DEFAULT_STEP_LIMIT: u64 = 10_000;
/// The default mailbox capacity of long-running mode: how many messages may wait for one node
/// (queued, or taken by its worker and not started yet) before senders wait.
///
/// Large enough that a busy pipeline moves messages in batches rather than waking its senders
/// every few messages (measured in `docs/benchmarks.md`), small enough to bound memory: a
/// mailbox only allocates for messages actually waiting, and gives the space back when its
/// worker goes idle. The seed's mailboxes are unbounded queues; set a smaller capacity per
/// graph or per node for earlier backpressure.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;

/// One problem found when a graph is built.
///
/// [`GraphBuilder::build`] returns every problem it finds at once, in [`BuildErrors`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The graph has no node.
    #[error("the graph is empty: add at least one node")]
    EmptyGraph,
    /// Two nodes share a name.
    #[error("duplicate node name `{name}`: node names must be unique")]
    DuplicateNodeName {
        /// The repeated name.
        name: String,
    },
    /// An edge or the start refers to a node that is not in this graph.
    #[error("{place} refers to {node}, which is not in this graph")]
    UnknownNode {
        /// The unknown node as written (`node `x`` or a handle of another builder).
        node: String,
        /// Where it was used: `edge `a` -> `b``, or `the start node`.
        place: String,
    },
    /// No start node was set.
    #[error("no start node: call start(..) before build()")]
    MissingStart,
    /// An edge's expression did not parse.
    #[error("edge `{from}` -> `{to}`: malformed expression: {error}")]
    InvalidExpression {
        /// The edge's source node.
        from: String,
        /// The edge's target node.
        to: String,
        /// The parse error (with its position).
        error: ExprError,
    },
    /// Two incompatible conditions were put on one edge.
    #[error("edge `{from}` -> `{to}`: conflicting conditions (e.g. `.when(..)` after `.on(..)`)")]
    ConflictingConditions {
        /// The edge's source node.
        from: String,
        /// The edge's target node.
        to: String,
    },
    /// A condition was started with `.on(..)`/`.when(..)`/`.otherwise()` but no target followed.
    #[error("a condition on `{from}` has no target: write `{from_ref} >> target`", from_ref = from)]
    DanglingCondition {
        /// The node the condition starts from.
        from: String,
    },
    /// A node's mailbox capacity of zero.
    #[error("node `{node}`: mailbox capacity must be at least 1")]
    InvalidMailboxCapacity {
        /// The node.
        node: String,
    },
    /// A node's concurrency ([`GraphBuilder::node_concurrency`]) of zero.
    #[error("node `{node}`: concurrency must be at least 1 (1 processes one message at a time)")]
    InvalidConcurrency {
        /// The node.
        node: String,
    },
    /// The graph's default mailbox capacity ([`GraphBuilder::mailbox_capacity`]) of zero.
    #[error("the graph's default mailbox capacity must be at least 1")]
    InvalidDefaultMailboxCapacity,
    /// A node was added with an empty name.
    #[error("node #{position} (counting from 0 in the order nodes were added) has an empty name: node names must not be empty")]
    EmptyNodeName {
        /// Where the node is in the order nodes were added, from 0.
        position: usize,
    },
    /// A step limit of zero.
    #[error("the step limit must be at least 1")]
    InvalidStepLimit,
}

/// Every problem of a graph, reported at once when it is built.
///
/// What [`GraphBuilder::build`] returns when the graph is not valid: one [`BuildError`] per
/// problem, so that one build shows them all.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildErrors(pub Vec<BuildError>);

impl BuildErrors {
    /// The problems, in the order they were found.
    pub fn errors(&self) -> &[BuildError] {
        &self.0
    }
}

impl fmt::Display for BuildErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "invalid graph: {one}"),
            many => {
                write!(f, "invalid graph: {} problems:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for BuildErrors {}

struct NodeSpec {
    name: String,
    node: Arc<dyn DynNode>,
    mailbox_capacity: Option<usize>,
    concurrency: usize,
}

/// Builds a graph: add nodes, connect them, pick the start node, then [`build`](Self::build).
///
/// # Example
///
/// ```
/// use spark_adk_edges::GraphBuilder;
/// use spark_adk_core::{node_fn, NodeError};
/// use serde_json::json;
///
/// let mut g = GraphBuilder::new();
/// let a = g.add("a", node_fn(|_| async { Ok::<_, NodeError>(json!({ "ok": true })) }));
/// let b = g.add("b", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
/// let c = g.add("c", node_fn(|_| async { Ok::<_, NodeError>(json!({})) }));
/// g.connect(a.on("ok", true) >> b >> c);
/// let topology = g.start(a).build()?;
/// assert_eq!(topology.len(), 3);
/// # Ok::<(), spark_adk_edges::BuildErrors>(())
/// ```
///
/// `G` is what [`build`](Self::build) returns: a [`Topology`] by default, or any type made from
/// one (the facade's `spark_adk::GraphBuilder` is this builder with `G = Graph`), so a wrapper
/// needs no copy of these methods.
pub struct GraphBuilder<G = Topology> {
    id: u32,
    nodes: Vec<NodeSpec>,
    edges: Vec<EdgeSpec>,
    start: Option<Endpoint>,
    dangling: Vec<Endpoint>,
    step_limit: u64,
    mailbox_capacity: usize,
    initial_state: Map<String, Value>,
    events: Option<EventBus>,
    output: PhantomData<fn() -> G>,
}

impl<G> Default for GraphBuilder<G> {
    fn default() -> Self {
        Self {
            id: NEXT_BUILDER_ID.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            edges: Vec::new(),
            start: None,
            dangling: Vec::new(),
            step_limit: DEFAULT_STEP_LIMIT,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            initial_state: Map::new(),
            events: None,
            output: PhantomData,
        }
    }
}

impl<G> fmt::Debug for GraphBuilder<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphBuilder")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
            )
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl GraphBuilder {
    /// An empty builder whose [`build`](Self::build) returns a [`Topology`] (use
    /// [`Default`] for another output type).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<G: From<Topology>> GraphBuilder<G> {
    /// Adds a node under a unique name and returns its handle.
    pub fn add(&mut self, name: impl Into<String>, node: impl Node) -> NodeRef {
        self.add_shared(name, Arc::new(node))
    }

    /// Adds a node that is already shared (the same node object may appear in several graphs).
    pub fn add_shared(&mut self, name: impl Into<String>, node: Arc<dyn DynNode>) -> NodeRef {
        let index = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        self.nodes.push(NodeSpec {
            name: name.into(),
            node,
            mailbox_capacity: None,
            concurrency: 1,
        });
        NodeRef {
            builder: self.id,
            index,
        }
    }

    /// The handle of the node called `name`, if one was added.
    pub fn node(&self, name: &str) -> Option<NodeRef> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .and_then(|i| u32::try_from(i).ok())
            .map(|index| NodeRef {
                builder: self.id,
                index,
            })
    }

    /// Adds every edge of a chain (`a >> b >> c`, `a.on("k", v) >> b`, ...).
    pub fn connect(&mut self, chain: impl Into<Chain>) -> &mut Self {
        let chain = chain.into();
        if chain.pending.is_some() {
            self.dangling.push(chain.last.clone());
        }
        self.edges.extend(chain.edges);
        self
    }

    /// Adds an unconditional edge (the method form of `from >> to`).
    pub fn edge(&mut self, from: impl Into<Endpoint>, to: impl Into<Endpoint>) -> &mut Self {
        self.edge_with(from, to, EdgeCondition::Always, 0)
    }

    /// Adds a conditional edge (the method form of `from.on(..) >> to` and friends).
    pub fn edge_when(
        &mut self,
        from: impl Into<Endpoint>,
        to: impl Into<Endpoint>,
        condition: EdgeCondition,
    ) -> &mut Self {
        self.edge_with(from, to, condition, 0)
    }

    /// Adds an edge with a condition and a priority (higher fires first).
    pub fn edge_with(
        &mut self,
        from: impl Into<Endpoint>,
        to: impl Into<Endpoint>,
        condition: EdgeCondition,
        priority: i32,
    ) -> &mut Self {
        self.edges.push(EdgeSpec {
            from: from.into(),
            to: to.into(),
            condition: Ok(condition),
            priority,
        });
        self
    }

    /// Adds an edge whose condition is an expression; a parse error is reported by `build()`.
    pub fn edge_when_expr(
        &mut self,
        from: impl Into<Endpoint>,
        to: impl Into<Endpoint>,
        expression: &str,
    ) -> &mut Self {
        self.edges.push(EdgeSpec {
            from: from.into(),
            to: to.into(),
            condition: EdgeCondition::expression(expression).map_err(ConditionProblem::Expr),
            priority: 0,
        });
        self
    }

    /// Sets the start node (the seed's `Graph(start=...)`).
    pub fn start(&mut self, node: impl Into<Endpoint>) -> &mut Self {
        self.start = Some(node.into());
        self
    }

    /// Sets the standard-mode step limit of every run (default 10,000 activations).
    pub fn step_limit(&mut self, limit: u64) -> &mut Self {
        self.step_limit = limit;
        self
    }

    /// Sets the default mailbox capacity of long-running runs (default
    /// [`DEFAULT_MAILBOX_CAPACITY`], 1024).
    pub fn mailbox_capacity(&mut self, capacity: usize) -> &mut Self {
        self.mailbox_capacity = capacity;
        self
    }

    /// Sets the initial graph state of every run (a task can replace it).
    pub fn initial_state(&mut self, state: Map<String, Value>) -> &mut Self {
        self.initial_state = state;
        self
    }

    /// Uses `bus` for the events of every run of the graph (for example one with a replay
    /// buffer). Without it the graph gets its own bus without replay.
    pub fn event_bus(&mut self, bus: EventBus) -> &mut Self {
        self.events = Some(bus);
        self
    }

    /// Overrides the mailbox capacity of one node (long-running mode).
    pub fn node_mailbox_capacity(&mut self, node: NodeRef, capacity: usize) -> &mut Self {
        if node.builder == self.id {
            if let Some(spec) = self.nodes.get_mut(node.index()) {
                spec.mailbox_capacity = Some(capacity);
            }
        }
        self
    }

    /// Lets one node process up to `n` messages at once in long-running mode (default 1: one
    /// at a time, in mailbox order). Standard mode ignores it (a node runs once per step there).
    ///
    /// With `n > 1` the node's messages still *start* in the order they were queued in its
    /// mailbox (so, per sender, in send order), at most `n` at a time; they may *finish* in
    /// any order, so its outputs may reach the next nodes in another order than their inputs
    /// came. See `docs/runtime-semantics.md` ("Concurrency per node"). A limit shared by
    /// several nodes is a `Limiter` (`spark-adk-policy`).
    ///
    /// `n == 0` is reported by [`build`](Self::build) ([`BuildError::InvalidConcurrency`]).
    pub fn node_concurrency(&mut self, node: NodeRef, n: usize) -> &mut Self {
        if node.builder == self.id {
            if let Some(spec) = self.nodes.get_mut(node.index()) {
                spec.concurrency = n;
            }
        }
        self
    }

    fn describe(&self, e: &Endpoint) -> String {
        match e {
            Endpoint::Name(n) => n.clone(),
            Endpoint::Ref(r) if r.builder == self.id => self
                .nodes
                .get(r.index())
                .map_or_else(|| format!("#{}", r.index), |n| n.name.clone()),
            Endpoint::Ref(r) => format!("#{} of another graph builder", r.index),
        }
    }

    /// Validates the graph and compiles it. The builder is left empty (so `g.start(a).build()`
    /// works on a `&mut` builder).
    ///
    /// # Errors
    /// [`BuildErrors`] listing **every** problem: empty graph, empty or duplicate names, unknown nodes in
    /// edges or as start, missing start, malformed expressions, conflicting or dangling
    /// conditions, zero capacities, concurrency or step limit.
    pub fn build(&mut self) -> Result<G, BuildErrors> {
        let mut errors = Vec::new();
        if self.nodes.is_empty() {
            errors.push(BuildError::EmptyGraph);
        }
        for (position, n) in self.nodes.iter().enumerate() {
            if n.name.is_empty() {
                errors.push(BuildError::EmptyNodeName { position });
            }
        }
        let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(self.nodes.len());
        let mut reported_dup = std::collections::HashSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if by_name.insert(n.name.as_str(), i).is_some() && reported_dup.insert(&n.name) {
                errors.push(BuildError::DuplicateNodeName {
                    name: n.name.clone(),
                });
            }
        }
        // First occurrence wins for name lookups.
        for (i, n) in self.nodes.iter().enumerate().rev() {
            by_name.insert(n.name.as_str(), i);
        }
        let resolve = |e: &Endpoint| -> Option<usize> {
            match e {
                Endpoint::Ref(r) if r.builder == self.id && r.index() < self.nodes.len() => {
                    Some(r.index())
                }
                Endpoint::Ref(_) => None,
                Endpoint::Name(n) => by_name.get(n.as_str()).copied(),
            }
        };
        let unknown = |e: &Endpoint, place: String| BuildError::UnknownNode {
            node: match e {
                Endpoint::Name(n) => format!("node `{n}`"),
                Endpoint::Ref(_) => format!("node {}", self.describe(e)),
            },
            place,
        };

        let start = match &self.start {
            None => {
                if !self.nodes.is_empty() {
                    errors.push(BuildError::MissingStart);
                }
                None
            }
            Some(s) => {
                let r = resolve(s);
                if r.is_none() {
                    errors.push(unknown(s, "the start node".to_owned()));
                }
                r
            }
        };

        let mut out: Vec<Vec<Edge>> = (0..self.nodes.len()).map(|_| Vec::new()).collect();
        for (order, spec) in self.edges.iter().enumerate() {
            let from_name = self.describe(&spec.from);
            let to_name = self.describe(&spec.to);
            let place = || format!("edge `{from_name}` -> `{to_name}`");
            let from = resolve(&spec.from);
            let to = resolve(&spec.to);
            if from.is_none() {
                errors.push(unknown(&spec.from, place()));
            }
            if to.is_none() {
                errors.push(unknown(&spec.to, place()));
            }
            let condition = match &spec.condition {
                Ok(c) => Some(c.clone()),
                Err(ConditionProblem::Expr(error)) => {
                    errors.push(BuildError::InvalidExpression {
                        from: from_name.clone(),
                        to: to_name.clone(),
                        error: error.clone(),
                    });
                    None
                }
                Err(ConditionProblem::Conflict) => {
                    errors.push(BuildError::ConflictingConditions {
                        from: from_name.clone(),
                        to: to_name.clone(),
                    });
                    None
                }
            };
            if let (Some(from), Some(to), Some(condition)) = (from, to, condition) {
                if let Some(list) = out.get_mut(from) {
                    list.push(Edge {
                        from,
                        to,
                        condition,
                        priority: spec.priority,
                        order,
                    });
                }
            }
        }
        for d in &self.dangling {
            errors.push(BuildError::DanglingCondition {
                from: self.describe(d),
            });
        }
        if self.step_limit == 0 {
            errors.push(BuildError::InvalidStepLimit);
        }
        if self.mailbox_capacity == 0 {
            errors.push(BuildError::InvalidDefaultMailboxCapacity);
        }
        for n in &self.nodes {
            if n.mailbox_capacity == Some(0) {
                errors.push(BuildError::InvalidMailboxCapacity {
                    node: n.name.clone(),
                });
            }
            if n.concurrency == 0 {
                errors.push(BuildError::InvalidConcurrency {
                    node: n.name.clone(),
                });
            }
        }

        let start = match (errors.is_empty(), start) {
            (true, Some(start)) => start,
            _ => return Err(BuildErrors(errors)),
        };
        let nodes = std::mem::take(&mut self.nodes)
            .into_iter()
            .map(|n| NodeEntry {
                name: Arc::from(n.name),
                node: n.node,
                mailbox_capacity: n.mailbox_capacity.unwrap_or(self.mailbox_capacity),
                concurrency: n.concurrency,
            })
            .collect();
        let topology = Topology::new(
            nodes,
            out,
            start,
            crate::topology::Limits {
                step_limit: self.step_limit,
                mailbox_capacity: self.mailbox_capacity,
                initial_state: std::mem::take(&mut self.initial_state),
                events: self.events.take().unwrap_or_default(),
            },
        );
        *self = Self::default();
        Ok(G::from(topology))
    }
}
