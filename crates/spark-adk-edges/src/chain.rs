//! Node handles and the `>>` wiring syntax: [`NodeRef`], [`Endpoint`], [`Chain`].

use std::ops::Shr;

use serde_json::Value;
use spark_adk_core::NodeMessage;

use crate::expr::{ExprError, Expression};
use crate::EdgeCondition;

/// A handle to a node added to a [`GraphBuilder`](crate::GraphBuilder). `Copy`, so it can be used
/// in many edges.
///
/// `a >> b` makes an edge, `a.on("k", v) >> b` a conditional one; see [`Chain`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeRef {
    pub(crate) builder: u32,
    pub(crate) index: u32,
}

impl NodeRef {
    /// The node's position in its graph (the order it was added in).
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// Starts a conditional edge from this node: fires when the output's `key` equals `value`.
    /// Call `.on(..)` again on the result to add more pairs (all must match).
    pub fn on(self, key: impl Into<String>, value: impl Into<Value>) -> Chain {
        Chain::from(self).on(key, value)
    }

    /// Starts a conditional edge from this node with an expression, e.g.
    /// `"$.outputs.score >= 0.8"`. A malformed expression is reported by `build()`, naming the
    /// edge; use [`Expression::parse`] first to get the error eagerly.
    pub fn when(self, expression: &str) -> Chain {
        Chain::from(self).when(expression)
    }

    /// Starts a conditional edge from this node with an already parsed expression.
    pub fn when_expr(self, expression: Expression) -> Chain {
        Chain::from(self).condition(EdgeCondition::Expression(expression))
    }

    /// Starts a conditional edge from this node with a predicate closure over the output.
    pub fn when_fn(self, f: impl Fn(&NodeMessage) -> bool + Send + Sync + 'static) -> Chain {
        Chain::from(self).condition(EdgeCondition::predicate(f))
    }

    /// Starts a fallback edge: it fires only when no other edge of this node fired.
    pub fn otherwise(self) -> Chain {
        Chain::from(self).condition(EdgeCondition::Fallback)
    }

    /// Starts an edge with a priority: edges of one node fire in priority order (higher first),
    /// then in the order they were added. Priority never changes whether an edge fires.
    pub fn priority(self, priority: i32) -> Chain {
        Chain::from(self).priority(priority)
    }
}

/// One end of an edge: a [`NodeRef`] or a node name, resolved when the graph is built.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A handle returned by `GraphBuilder::add`.
    Ref(NodeRef),
    /// A node name.
    Name(String),
}

impl From<NodeRef> for Endpoint {
    fn from(r: NodeRef) -> Self {
        Endpoint::Ref(r)
    }
}

impl From<&str> for Endpoint {
    fn from(name: &str) -> Self {
        Endpoint::Name(name.to_owned())
    }
}

impl From<String> for Endpoint {
    fn from(name: String) -> Self {
        Endpoint::Name(name)
    }
}

/// An edge as written, before the graph is built.
#[derive(Clone, Debug)]
pub(crate) struct EdgeSpec {
    pub(crate) from: Endpoint,
    pub(crate) to: Endpoint,
    pub(crate) condition: Result<EdgeCondition, ConditionProblem>,
    pub(crate) priority: i32,
}

/// Why an edge as written has no usable condition.
#[derive(Clone, Debug)]
pub(crate) enum ConditionProblem {
    /// The expression did not parse.
    Expr(ExprError),
    /// Two incompatible conditions were put on one edge (e.g. `.when(..)` after `.on(..)`).
    Conflict,
}

#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) condition: Result<EdgeCondition, ConditionProblem>,
    pub(crate) priority: i32,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            condition: Ok(EdgeCondition::Always),
            priority: 0,
        }
    }
}

/// A sequence of edges written with `>>`, e.g. `a >> b >> c` (edges a→b and b→c) or
/// `analyzer.on("anomaly", true) >> actuator`. Hand it to `GraphBuilder::connect`.
///
/// Conditions and priorities set on a chain apply to the next edge leaving its last node:
/// `(a >> b).on("ok", true) >> c` makes a→b plain and b→c conditional.
#[derive(Clone, Debug)]
#[must_use = "a chain does nothing until it is passed to GraphBuilder::connect"]
pub struct Chain {
    pub(crate) first: Endpoint,
    pub(crate) edges: Vec<EdgeSpec>,
    pub(crate) last: Endpoint,
    pub(crate) pending: Option<Pending>,
}

impl Chain {
    fn pending_mut(&mut self) -> &mut Pending {
        self.pending.get_or_insert_with(Pending::default)
    }

    /// Adds an equality pair to the next edge (pairs are ANDed).
    pub fn on(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        let pending = self.pending_mut();
        match &mut pending.condition {
            Ok(EdgeCondition::Equals(pairs)) => pairs.push((key.into(), value.into())),
            Ok(c @ EdgeCondition::Always) => *c = EdgeCondition::equals(key, value),
            Ok(_) => pending.condition = Err(ConditionProblem::Conflict),
            Err(_) => {}
        }
        self
    }

    /// Puts an expression condition on the next edge (parse errors are reported by `build()`).
    pub fn when(self, expression: &str) -> Self {
        let parsed = Expression::parse(expression)
            .map(EdgeCondition::Expression)
            .map_err(ConditionProblem::Expr);
        self.set_condition(parsed)
    }

    /// Puts any [`EdgeCondition`] on the next edge.
    pub fn condition(self, condition: EdgeCondition) -> Self {
        self.set_condition(Ok(condition))
    }

    fn set_condition(mut self, condition: Result<EdgeCondition, ConditionProblem>) -> Self {
        let pending = self.pending_mut();
        let replace = match &pending.condition {
            Ok(EdgeCondition::Always) => Some(condition),
            Err(ConditionProblem::Expr(_)) => None,
            _ => Some(Err(ConditionProblem::Conflict)),
        };
        if let Some(c) = replace {
            pending.condition = c;
        }
        self
    }

    /// Makes the next edge a fallback edge.
    pub fn otherwise(self) -> Self {
        self.condition(EdgeCondition::Fallback)
    }

    /// Sets the priority of the next edge (higher fires first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.pending_mut().priority = priority;
        self
    }

    fn then(mut self, next: Chain) -> Chain {
        let pending = self.pending.take().unwrap_or_default();
        self.edges.push(EdgeSpec {
            from: self.last,
            to: next.first,
            condition: pending.condition,
            priority: pending.priority,
        });
        self.edges.extend(next.edges);
        self.last = next.last;
        self.pending = next.pending;
        self
    }
}

impl From<NodeRef> for Chain {
    fn from(r: NodeRef) -> Self {
        Chain {
            first: Endpoint::Ref(r),
            edges: Vec::new(),
            last: Endpoint::Ref(r),
            pending: None,
        }
    }
}

impl From<Endpoint> for Chain {
    fn from(e: Endpoint) -> Self {
        Chain {
            first: e.clone(),
            edges: Vec::new(),
            last: e,
            pending: None,
        }
    }
}

impl From<&str> for Chain {
    fn from(name: &str) -> Self {
        Chain::from(Endpoint::from(name))
    }
}

impl<R: Into<Chain>> Shr<R> for Chain {
    type Output = Chain;
    fn shr(self, rhs: R) -> Chain {
        self.then(rhs.into())
    }
}

impl<R: Into<Chain>> Shr<R> for NodeRef {
    type Output = Chain;
    fn shr(self, rhs: R) -> Chain {
        Chain::from(self).then(rhs.into())
    }
}
