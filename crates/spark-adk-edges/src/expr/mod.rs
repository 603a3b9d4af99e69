//! The edge-condition expression language.
//!
//! An [`Expression`] is a small boolean condition over the output content of an
//! edge's source node, for example:
//!
//! ```text
//! $.outputs.score >= 0.8 and $.outputs.status == 'ok'
//! ```
//!
//! # Syntax
//!
//! * **Paths**: `$.outputs` is the whole output content; each following `.key`
//!   (`[A-Za-z_][A-Za-z0-9_-]*`) walks into a JSON object. A missing key, or a
//!   non-object on the way (including non-object output content), reads as `null`.
//!   Paths contain no whitespace.
//! * **Literals**: numbers (`1`, `-1`, `0.5`, `-0.5`, `1e3`, `2.5E-3`; a `-` must be
//!   directly followed by a digit, `.5` and `1.` are not numbers; leading zeros are
//!   decimal, `01 == 1`; a number directly followed by a letter, `1and`, is an error;
//!   integers that fit 64 bits, signed or unsigned, are exact, larger ones become the
//!   nearest float; a number that overflows, `1e400`, or that is not zero but rounds to
//!   zero, `1e-400`, is an error), strings in single or double quotes with the escapes
//!   `\\` `\'` `\"` `\n` `\t` `\r` and `\u{X}` (1 to 6 hex digits naming a Unicode scalar
//!   value, so no surrogates; any other escape is an error), `true`/`false`/`null`
//!   in any letter case, `None` (any case) as another spelling of `null`, and list
//!   literals `[1, 'a', null, [2]]` whose elements are literals (nested lists allowed;
//!   `[]` allowed; one trailing comma after at least one element allowed: `[1, 2,]`,
//!   but not `[,]`).
//! * **Operators**, loosest first: `or`; `and`; `not`; then the comparisons
//!   `==`, `!=`, `<`, `<=`, `>`, `>=` and `x in [..]`. `and`/`or` are left-associative;
//!   comparisons do not chain (`a < b < c` is an error). As in Python,
//!   `not $.outputs.n == 0` means `not ($.outputs.n == 0)`. The keywords `and`, `or`,
//!   `not`, `in` are lower case only; any other bare word is an error. `not in` is not
//!   supported (write `not (x in [..])`), and the right side of `in` must be a list
//!   literal.
//! * **Operands** of comparisons are paths, literals (including lists) or parenthesized
//!   expressions. A bare operand is also a whole expression, evaluated by truthiness.
//!   A parenthesized bare operand keeps its value (`($.outputs.n) == 3` compares the
//!   number); a parenthesized `and`/`or`/`not`/comparison produces a boolean
//!   (`($.outputs.a == 1) == true`).
//! * **Nesting**: parentheses, `not` and `[` each count one level; more than
//!   [`MAX_DEPTH`] levels is a parse error.
//!
//! # Semantics
//!
//! * `==` is [`json_eq`] (numbers by value, different types unequal), `!=` its negation.
//! * `<`, `<=`, `>`, `>=` compare two numbers (exactly, by value) or two strings (by
//!   Unicode scalar values); for any other pair of values they are false, so
//!   `not (null < 1)` is true.
//! * `x in [..]` is true when some element is [`json_eq`] to `x`.
//! * `not`, `and`, `or` use [`truthy`] and produce booleans; `and`/`or` short-circuit.
//!
//! Evaluation never fails and never panics; parse errors ([`ExprError`]) carry the
//! position of the problem.
//!
//! # Example
//!
//! ```
//! use serde_json::json;
//! use spark_adk_edges::expr::Expression;
//!
//! let cond = Expression::parse("$.outputs.score >= 0.8 and $.outputs.status == 'ok'")?;
//! assert!(cond.evaluate(&json!({ "score": 0.9, "status": "ok" })));
//! assert!(!cond.evaluate(&json!({ "score": 0.5, "status": "ok" })));
//! assert!(!cond.evaluate(&json!("not an object")));
//! # Ok::<(), spark_adk_edges::expr::ExprError>(())
//! ```

mod ast;
mod error;
mod eval;
mod lexer;
mod parser;
mod value;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde_json::Value;

pub use error::{ExprError, Position};
pub use value::{json_eq, lookup_path, truthy};

/// Maximum nesting depth (parentheses, `not`, lists) accepted by the parser.
pub const MAX_DEPTH: usize = 64;

/// A parsed, validated condition expression.
///
/// Parse once with [`Expression::parse`] (or [`str::parse`]), then
/// [`evaluate`](Expression::evaluate) as often as needed; evaluation does not fail.
/// Two expressions are equal when their source texts are equal.
#[derive(Clone, Debug)]
pub struct Expression {
    source: Box<str>,
    root: ast::Node,
}

impl Expression {
    /// Parses and validates `source`.
    ///
    /// # Errors
    ///
    /// An [`ExprError`] describing the first problem found and where it is: an empty
    /// expression, an invalid token, a syntax error, or nesting deeper than
    /// [`MAX_DEPTH`].
    pub fn parse(source: &str) -> Result<Expression, ExprError> {
        let root = parser::parse(source)?;
        Ok(Expression {
            source: source.into(),
            root,
        })
    }

    /// Evaluates the condition against a node's output content (what `$.outputs`
    /// denotes). Never panics and never fails.
    pub fn evaluate(&self, outputs: &Value) -> bool {
        self.root.eval(outputs)
    }

    /// The original source text.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl FromStr for Expression {
    type Err = ExprError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        Expression::parse(source)
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Expression {}

impl Hash for Expression {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}
