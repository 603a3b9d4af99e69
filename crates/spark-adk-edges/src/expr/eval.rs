//! Evaluation of a parsed tree against a node's output content.
//!
//! Evaluation never fails and does not allocate (except inside [`json_eq`] when it
//! compares arrays or objects nested in arrays or objects): paths are pre-split at parse
//! time, lookups return references, and booleans produced by parenthesized
//! sub-expressions are returned as references to static values. Recursion depth is
//! bounded by the tree's depth, which the parser limits.

use std::cmp::Ordering;

use serde_json::Value;

use super::ast::{CmpOp, Node, Operand};
use super::value::{compare_order, json_eq, lookup_path, truthy};

static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);

impl Node {
    /// The boolean value of this node for `outputs`.
    pub(crate) fn eval(&self, outputs: &Value) -> bool {
        match self {
            Node::Or(operands) => operands.iter().any(|node| node.eval(outputs)),
            Node::And(operands) => operands.iter().all(|node| node.eval(outputs)),
            Node::Not(inner) => !inner.eval(outputs),
            Node::Compare { op, lhs, rhs } => op.apply(lhs.value(outputs), rhs.value(outputs)),
            Node::In { needle, list } => {
                let needle = needle.value(outputs);
                list.iter().any(|item| json_eq(needle, item))
            }
            Node::Truthy(operand) => truthy(operand.value(outputs)),
        }
    }
}

impl Operand {
    /// The value of this operand for `outputs`.
    fn value<'a>(&'a self, outputs: &'a Value) -> &'a Value {
        match self {
            Operand::Path(segments) => lookup_path(outputs, segments),
            Operand::Literal(value) => value,
            Operand::Group(node) => {
                if node.eval(outputs) {
                    &TRUE
                } else {
                    &FALSE
                }
            }
        }
    }
}

impl CmpOp {
    fn apply(self, a: &Value, b: &Value) -> bool {
        match self {
            CmpOp::Eq => json_eq(a, b),
            CmpOp::Ne => !json_eq(a, b),
            CmpOp::Lt => compare_order(a, b) == Some(Ordering::Less),
            CmpOp::Le => matches!(compare_order(a, b), Some(Ordering::Less | Ordering::Equal)),
            CmpOp::Gt => compare_order(a, b) == Some(Ordering::Greater),
            CmpOp::Ge => matches!(
                compare_order(a, b),
                Some(Ordering::Greater | Ordering::Equal)
            ),
        }
    }
}
