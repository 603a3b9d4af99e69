//! The parsed form of an expression.
//!
//! `and`/`or` chains are flattened into vectors, so neither building nor evaluating
//! a long chain recurses per operand. The tree's depth is bounded by the parser's
//! nesting limit ([`MAX_DEPTH`](super::MAX_DEPTH)), so the recursive evaluator cannot
//! overflow the stack.

use serde_json::Value;

/// A boolean-valued node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// True when any operand is (short-circuit, left to right). Has at least two operands.
    Or(Vec<Node>),
    /// True when all operands are (short-circuit, left to right). Has at least two operands.
    And(Vec<Node>),
    /// Logical negation.
    Not(Box<Node>),
    /// A comparison between two operands.
    Compare {
        /// The operator.
        op: CmpOp,
        /// Left operand.
        lhs: Operand,
        /// Right operand.
        rhs: Operand,
    },
    /// `needle in [list]`.
    In {
        /// The value looked for.
        needle: Operand,
        /// The list literal's elements.
        list: Box<[Value]>,
    },
    /// A bare operand, evaluated by truthiness.
    Truthy(Operand),
}

/// A value-producing operand of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Operand {
    /// `$.outputs.a.b`: the key segments after `outputs`.
    Path(Box<[String]>),
    /// A literal value (including list literals).
    Literal(Value),
    /// A parenthesized boolean expression; its value is `true` or `false`.
    Group(Box<Node>),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}
