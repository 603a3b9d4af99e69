//! Recursive-descent parser with an explicit nesting limit.
//!
//! Grammar (loosest first):
//!
//! ```text
//! expr    := and ('or' and)*
//! and     := not ('and' not)*
//! not     := 'not'* cmp
//! cmp     := operand (cmp_op operand | 'in' list)?
//! operand := path | literal | list | '(' expr ')'
//! list    := '[' (item (',' item)* ','?)? ']'
//! item    := literal | list
//! ```
//!
//! `and`/`or` chains and `not` runs are parsed with loops; the parser only recurses
//! into `(` and `[`, and `(`, `[` and each `not` count one level of nesting, checked
//! against [`MAX_DEPTH`] *before* going deeper.

use serde_json::Value;

use super::ast::{CmpOp, Node, Operand};
use super::error::{snippet, ExprError, Position};
use super::lexer::{tokenize, Tok, Token};
use super::MAX_DEPTH;

/// Parses `source` into its tree.
pub(crate) fn parse(source: &str) -> Result<Node, ExprError> {
    if source.trim().is_empty() {
        return Err(ExprError::Empty {
            at: Position::in_source(source, 0),
        });
    }
    let tokens = tokenize(source)?;
    let mut parser = Parser {
        source,
        tokens,
        pos: 0,
        depth: 0,
    };
    let node = parser.expr()?;
    let next = parser.peek_token();
    match next.tok {
        Tok::Eof => Ok(node),
        Tok::RParen | Tok::RBracket => Err(ExprError::UnmatchedDelimiter {
            delimiter: if next.tok == Tok::RParen { ')' } else { ']' },
            at: parser.position(next.start),
        }),
        Tok::Not if parser.peek_nth(1) == &Tok::In => Err(ExprError::NotInUnsupported {
            at: parser.position(next.start),
        }),
        _ => Err(ExprError::TrailingInput {
            found: parser.text(next),
            at: parser.position(next.start),
        }),
    }
}

const EXPECTED_OPERAND: &str = "an operand (a `$.outputs` path, a literal or `(`)";
const EXPECTED_LIST_ITEM: &str = "a literal (list elements must be literals or lists)";

struct Parser<'s> {
    source: &'s str,
    /// Always ends with a [`Tok::Eof`] token.
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// The token returned past the end (never reached: the token list ends with `Eof`).
static EOF: Token = Token {
    tok: Tok::Eof,
    start: 0,
    end: 0,
};

impl Parser<'_> {
    fn peek_token(&self) -> &Token {
        self.tokens
            .get(self.pos)
            .or_else(|| self.tokens.last())
            .unwrap_or(&EOF)
    }

    fn peek(&self) -> &Tok {
        &self.peek_token().tok
    }

    fn peek_nth(&self, n: usize) -> &Tok {
        self.tokens
            .get(self.pos + n)
            .map_or(&Tok::Eof, |token| &token.tok)
    }

    /// Consumes and returns the next token (stays on `Eof`).
    ///
    /// The token's payload is moved out (consumed tokens are never read again), so
    /// paths and strings are not copied.
    fn bump(&mut self) -> Token {
        let is_last = self.pos + 1 >= self.tokens.len();
        match self.tokens.get_mut(self.pos) {
            Some(token) if !is_last => {
                self.pos += 1;
                Token {
                    tok: std::mem::replace(&mut token.tok, Tok::Eof),
                    start: token.start,
                    end: token.end,
                }
            }
            // The final `Eof` token stays in place.
            _ => self.peek_token().clone(),
        }
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == tok {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn position(&self, offset: usize) -> Position {
        Position::in_source(self.source, offset)
    }

    fn text(&self, token: &Token) -> String {
        snippet(self.source.get(token.start..token.end).unwrap_or_default())
    }

    /// Goes one nesting level deeper, failing if that exceeds [`MAX_DEPTH`].
    fn enter(&mut self, at: usize) -> Result<(), ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(ExprError::TooDeep {
                max: MAX_DEPTH,
                at: self.position(at),
            });
        }
        self.depth += 1;
        Ok(())
    }

    /// The error for `token` appearing where `expected` was.
    fn unexpected(&self, token: &Token, expected: &'static str) -> ExprError {
        match token.tok {
            Tok::Eof => ExprError::UnexpectedEnd {
                expected,
                at: self.position(token.start),
            },
            Tok::RParen if self.depth == 0 => ExprError::UnmatchedDelimiter {
                delimiter: ')',
                at: self.position(token.start),
            },
            Tok::Not if self.peek_nth(1) == &Tok::In => ExprError::NotInUnsupported {
                at: self.position(token.start),
            },
            _ => ExprError::UnexpectedToken {
                found: self.text(token),
                expected,
                at: self.position(token.start),
            },
        }
    }

    /// `and ('or' and)*`
    fn expr(&mut self) -> Result<Node, ExprError> {
        let first = self.and()?;
        if self.peek() != &Tok::Or {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.eat(&Tok::Or) {
            operands.push(self.and()?);
        }
        Ok(Node::Or(operands))
    }

    /// `not ('and' not)*`
    fn and(&mut self) -> Result<Node, ExprError> {
        let first = self.not()?;
        if self.peek() != &Tok::And {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.eat(&Tok::And) {
            operands.push(self.not()?);
        }
        Ok(Node::And(operands))
    }

    /// `'not'* cmp`: each `not` is one nesting level.
    fn not(&mut self) -> Result<Node, ExprError> {
        let depth_before = self.depth;
        let mut nots = 0usize;
        while self.peek() == &Tok::Not {
            let token = self.bump();
            if self.peek() == &Tok::In {
                return Err(ExprError::NotInUnsupported {
                    at: self.position(token.start),
                });
            }
            self.enter(token.start)?;
            nots += 1;
        }
        let mut node = self.comparison()?;
        self.depth = depth_before;
        for _ in 0..nots {
            node = Node::Not(Box::new(node));
        }
        Ok(node)
    }

    /// `operand (cmp_op operand | 'in' list)?`, rejecting chained comparisons.
    fn comparison(&mut self) -> Result<Node, ExprError> {
        let lhs = self.operand()?;
        let node = if let Some(op) = cmp_op(self.peek()) {
            self.bump();
            let rhs = self.operand()?;
            Node::Compare { op, lhs, rhs }
        } else if self.peek() == &Tok::In {
            self.bump();
            let token = self.bump();
            if token.tok != Tok::LBracket {
                return Err(ExprError::InRequiresList {
                    found: self.text(&token),
                    at: self.position(token.start),
                });
            }
            self.enter(token.start)?;
            let list = self.list_rest(token.start)?;
            self.depth -= 1;
            Node::In {
                needle: lhs,
                list: list.into_boxed_slice(),
            }
        } else if self.peek() == &Tok::Not && self.peek_nth(1) == &Tok::In {
            return Err(ExprError::NotInUnsupported {
                at: self.position(self.peek_token().start),
            });
        } else {
            return Ok(match lhs {
                Operand::Group(inner) => *inner,
                other => Node::Truthy(other),
            });
        };
        let next = self.peek_token();
        if cmp_op(&next.tok).is_some() || next.tok == Tok::In {
            return Err(ExprError::ChainedComparison {
                operator: self.text(next),
                at: self.position(next.start),
            });
        }
        Ok(node)
    }

    /// A path, a literal, a list literal or a parenthesized expression.
    fn operand(&mut self) -> Result<Operand, ExprError> {
        let token = self.bump();
        match token.tok {
            Tok::Path(segments) => Ok(Operand::Path(segments)),
            Tok::Literal(value) => Ok(Operand::Literal(value)),
            Tok::LBracket => {
                self.enter(token.start)?;
                let items = self.list_rest(token.start)?;
                self.depth -= 1;
                Ok(Operand::Literal(Value::Array(items)))
            }
            Tok::LParen => {
                self.enter(token.start)?;
                let inner = self.expr()?;
                let close = self.bump();
                match close.tok {
                    Tok::RParen => {}
                    Tok::Eof => {
                        return Err(ExprError::UnclosedDelimiter {
                            delimiter: '(',
                            at: self.position(token.start),
                        })
                    }
                    _ => {
                        return Err(self.unexpected(&close, "`)`, `and` or `or`"));
                    }
                }
                self.depth -= 1;
                Ok(match inner {
                    // `(x)` is just `x`: it keeps its value, not only its truthiness.
                    Node::Truthy(operand) => operand,
                    node => Operand::Group(Box::new(node)),
                })
            }
            _ => Err(self.unexpected(&token, EXPECTED_OPERAND)),
        }
    }

    /// The elements of a list whose `[` (at byte `open`) was consumed and counted
    /// as a nesting level; consumes the closing `]`. A trailing comma is allowed.
    fn list_rest(&mut self, open: usize) -> Result<Vec<Value>, ExprError> {
        let mut items = Vec::new();
        loop {
            if self.eat(&Tok::RBracket) {
                return Ok(items);
            }
            let token = self.bump();
            let item = match token.tok {
                Tok::Literal(value) => value,
                Tok::LBracket => {
                    self.enter(token.start)?;
                    let nested = self.list_rest(token.start)?;
                    self.depth -= 1;
                    Value::Array(nested)
                }
                Tok::Eof => {
                    return Err(ExprError::UnclosedDelimiter {
                        delimiter: '[',
                        at: self.position(open),
                    })
                }
                _ => return Err(self.unexpected(&token, EXPECTED_LIST_ITEM)),
            };
            items.push(item);
            if self.eat(&Tok::Comma) {
                continue;
            }
            let next = self.bump();
            match next.tok {
                Tok::RBracket => return Ok(items),
                Tok::Eof => {
                    return Err(ExprError::UnclosedDelimiter {
                        delimiter: '[',
                        at: self.position(open),
                    })
                }
                _ => return Err(self.unexpected(&next, "`,` or `]`")),
            }
        }
    }
}

/// The comparison operator `tok` stands for, if any.
fn cmp_op(tok: &Tok) -> Option<CmpOp> {
    match tok {
        Tok::Eq => Some(CmpOp::Eq),
        Tok::Ne => Some(CmpOp::Ne),
        Tok::Lt => Some(CmpOp::Lt),
        Tok::Le => Some(CmpOp::Le),
        Tok::Gt => Some(CmpOp::Gt),
        Tok::Ge => Some(CmpOp::Ge),
        _ => None,
    }
}
