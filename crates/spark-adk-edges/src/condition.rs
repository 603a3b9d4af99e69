//! [`EdgeCondition`]: when an edge fires.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use spark_adk_core::NodeMessage;

use crate::expr::{json_eq, lookup_path, ExprError, Expression};

/// A predicate over a node's output message (see [`EdgeCondition::predicate`]).
pub type PredicateFn = dyn Fn(&NodeMessage) -> bool + Send + Sync;

/// When an edge fires. Conditions are evaluated against the **source node's output**, right
/// after the source node ran.
///
/// # Example
///
/// ```
/// use spark_adk_edges::EdgeCondition;
/// use spark_adk_core::NodeMessage;
/// use serde_json::json;
///
/// let out = NodeMessage::from(json!({ "anomaly": true, "score": 0.93 }));
/// assert!(EdgeCondition::equals("anomaly", true).evaluate(&out));
/// assert!(EdgeCondition::expression("$.outputs.score >= 0.8")?.evaluate(&out));
/// assert!(EdgeCondition::predicate(|m| m.content["score"].as_f64() > Some(0.9)).evaluate(&out));
/// # Ok::<(), spark_adk_edges::ExprError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum EdgeCondition {
    /// Always fires (`a >> b`).
    Always,
    /// Fires when every `(key, value)` pair equals the output content at `key` (AND). A missing
    /// key reads as null; numbers compare by value, otherwise strict JSON equality.
    Equals(Vec<(String, Value)>),
    /// Fires when the expression is true (see [`Expression`]).
    Expression(Expression),
    /// Fires when the closure returns `true`. A panic inside it is caught and reported as
    /// `RunError::ConditionPanicked` naming the edge.
    Predicate(Arc<PredicateFn>),
    /// Fires only when no other (non-fallback) edge of the same source fired.
    Fallback,
}

impl EdgeCondition {
    /// An equality condition on one key (the seed's `on(anomaly=True)`).
    pub fn equals(key: impl Into<String>, value: impl Into<Value>) -> Self {
        EdgeCondition::Equals(vec![(key.into(), value.into())])
    }

    /// Parses an expression condition.
    ///
    /// # Errors
    /// The parse error, with its position in `source`.
    pub fn expression(source: &str) -> Result<Self, ExprError> {
        Expression::parse(source).map(EdgeCondition::Expression)
    }

    /// A predicate closure over the output message.
    pub fn predicate(f: impl Fn(&NodeMessage) -> bool + Send + Sync + 'static) -> Self {
        EdgeCondition::Predicate(Arc::new(f))
    }

    /// `true` for [`EdgeCondition::Fallback`].
    pub fn is_fallback(&self) -> bool {
        matches!(self, EdgeCondition::Fallback)
    }

    /// Evaluates the condition against `output`. A fallback evaluates to `true` here: whether it
    /// fires is decided by the router, which only evaluates it when no other edge fired.
    ///
    /// Never panics, except when a user predicate panics (the router catches that).
    pub fn evaluate(&self, output: &NodeMessage) -> bool {
        match self {
            EdgeCondition::Always | EdgeCondition::Fallback => true,
            EdgeCondition::Equals(pairs) => pairs
                .iter()
                .all(|(k, v)| json_eq(lookup_path(&output.content, &[k.as_str()]), v)),
            EdgeCondition::Expression(e) => e.evaluate(&output.content),
            EdgeCondition::Predicate(f) => f(output),
        }
    }

    /// A short human-readable label (for pictures and error messages); `None` for `Always`.
    pub fn label(&self) -> Option<String> {
        match self {
            EdgeCondition::Always => None,
            EdgeCondition::Equals(pairs) => Some(
                pairs
                    .iter()
                    .map(|(k, v)| format!("{k} == {v}"))
                    .collect::<Vec<_>>()
                    .join(" and "),
            ),
            EdgeCondition::Expression(e) => Some(e.source().to_owned()),
            EdgeCondition::Predicate(_) => Some("predicate".to_owned()),
            EdgeCondition::Fallback => Some("otherwise".to_owned()),
        }
    }
}

impl fmt::Debug for EdgeCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeCondition::Always => f.write_str("Always"),
            EdgeCondition::Equals(pairs) => f.debug_tuple("Equals").field(pairs).finish(),
            EdgeCondition::Expression(e) => f.debug_tuple("Expression").field(&e.source()).finish(),
            EdgeCondition::Predicate(_) => f.write_str("Predicate(..)"),
            EdgeCondition::Fallback => f.write_str("Fallback"),
        }
    }
}
