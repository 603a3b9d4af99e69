//! Tokenizer: turns the source text into a flat list of [`Token`]s.
//!
//! Every token records its byte span; spans always start and end on `char`
//! boundaries, so error messages can slice the source safely.

use serde_json::{Number, Value};

use super::error::{snippet, ExprError, Position};

/// The kind (and payload) of a token.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// `$.outputs` followed by zero or more `.key` segments (the segments after `outputs`).
    Path(Box<[String]>),
    /// A literal: number, string, `true`/`false`/`null`/`None` (any case).
    Literal(Value),
    /// `and`
    And,
    /// `or`
    Or,
    /// `not`
    Not,
    /// `in`
    In,
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
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// End of input (always the last token).
    Eof,
}

/// A token and its byte span in the source.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    /// What the token is.
    pub(crate) tok: Tok,
    /// Byte offset of its first character.
    pub(crate) start: usize,
    /// Byte offset just past its last character.
    pub(crate) end: usize,
}

/// Tokenizes the whole source. The result always ends with a [`Tok::Eof`] token.
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, ExprError> {
    let mut lexer = Lexer {
        src: source,
        pos: 0,
    };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_whitespace();
        let start = lexer.pos;
        let Some(c) = lexer.peek() else {
            tokens.push(Token {
                tok: Tok::Eof,
                start,
                end: start,
            });
            return Ok(tokens);
        };
        let tok = match c {
            '(' => lexer.single(Tok::LParen),
            ')' => lexer.single(Tok::RParen),
            '[' => lexer.single(Tok::LBracket),
            ']' => lexer.single(Tok::RBracket),
            ',' => lexer.single(Tok::Comma),
            '=' | '!' | '<' | '>' => lexer.operator(c)?,
            '\'' | '"' => lexer.string(c)?,
            '$' => lexer.path()?,
            '-' | '0'..='9' => lexer.number()?,
            c if c.is_ascii_alphabetic() || c == '_' => lexer.word()?,
            ch => {
                return Err(ExprError::UnexpectedCharacter {
                    ch,
                    at: lexer.position(start),
                })
            }
        };
        tokens.push(Token {
            tok,
            start,
            end: lexer.pos,
        });
    }
}

/// Is `c` allowed after the first character of a path key segment?
fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Is the number literal `text` (already known to be well-formed) zero as written: no
/// non-zero digit before its exponent?
fn is_written_zero(text: &str) -> bool {
    text.chars()
        .take_while(|c| !matches!(c, 'e' | 'E'))
        .all(|c| !matches!(c, '1'..='9'))
}

/// Is `c` allowed after the first character of a bare word?
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

struct Lexer<'s> {
    src: &'s str,
    /// Current byte offset; always on a `char` boundary.
    pos: usize,
}

impl<'s> Lexer<'s> {
    fn rest(&self) -> &'s str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Consumes the next character unless it is whitespace (to include it in an error).
    fn bump_visible(&mut self) {
        if self.peek().is_some_and(|c| !c.is_whitespace()) {
            self.bump();
        }
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.pos += expected.len_utf8();
            true
        } else {
            false
        }
    }

    fn eat_while(&mut self, pred: impl Fn(char) -> bool) {
        while let Some(c) = self.peek() {
            if !pred(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn skip_whitespace(&mut self) {
        self.eat_while(char::is_whitespace);
    }

    fn position(&self, offset: usize) -> Position {
        Position::in_source(self.src, offset)
    }

    fn text(&self, start: usize, end: usize) -> String {
        snippet(self.src.get(start..end).unwrap_or_default())
    }

    fn single(&mut self, tok: Tok) -> Tok {
        self.bump();
        tok
    }

    /// `==`, `!=`, `<`, `<=`, `>`, `>=`.
    fn operator(&mut self, first: char) -> Result<Tok, ExprError> {
        let start = self.pos;
        self.bump();
        let with_eq = self.eat('=');
        match (first, with_eq) {
            ('=', true) => Ok(Tok::Eq),
            ('!', true) => Ok(Tok::Ne),
            ('<', true) => Ok(Tok::Le),
            ('<', false) => Ok(Tok::Lt),
            ('>', true) => Ok(Tok::Ge),
            ('>', false) => Ok(Tok::Gt),
            // A lone `=` (did you mean `==`?) or a lone `!` (use `not`).
            (ch, _) => Err(ExprError::UnexpectedCharacter {
                ch,
                at: self.position(start),
            }),
        }
    }

    /// A single- or double-quoted string with backslash escapes.
    fn string(&mut self, quote: char) -> Result<Tok, ExprError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let here = self.pos;
            match self.bump() {
                None => {
                    return Err(ExprError::UnterminatedString {
                        quote,
                        at: self.position(start),
                    })
                }
                Some(c) if c == quote => return Ok(Tok::Literal(Value::String(out))),
                Some('\\') => out.push(self.escape(here)?),
                Some(c) => out.push(c),
            }
        }
    }

    /// The character denoted by the escape whose backslash is at `backslash`
    /// (the backslash is already consumed).
    fn escape(&mut self, backslash: usize) -> Result<char, ExprError> {
        let invalid = |lexer: &Self| ExprError::InvalidEscape {
            escape: lexer.text(backslash, lexer.pos),
            at: lexer.position(backslash),
        };
        let Some(c) = self.bump() else {
            // A backslash at the very end: the string is unterminated anyway.
            return Err(invalid(self));
        };
        match c {
            '\\' => Ok('\\'),
            '\'' => Ok('\''),
            '"' => Ok('"'),
            'n' => Ok('\n'),
            't' => Ok('\t'),
            'r' => Ok('\r'),
            'u' => {
                if !self.eat('{') {
                    return Err(invalid(self));
                }
                let digits_start = self.pos;
                self.eat_while(|c| c.is_ascii_hexdigit());
                let digits = self.src.get(digits_start..self.pos).unwrap_or_default();
                if digits.is_empty() || digits.len() > 6 || !self.eat('}') {
                    return Err(invalid(self));
                }
                u32::from_str_radix(digits, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| invalid(self))
            }
            _ => Err(invalid(self)),
        }
    }

    /// `$.outputs` followed by `.segment`s.
    fn path(&mut self) -> Result<Tok, ExprError> {
        const ROOT: &str = "$.outputs";
        let start = self.pos;
        let invalid = |lexer: &Self, reason: &'static str, at: usize| ExprError::InvalidPath {
            text: lexer.text(start, lexer.pos),
            reason,
            at: lexer.position(at),
        };
        if !self.rest().starts_with(ROOT) {
            self.bump();
            self.eat_while(|c| c == '.' || is_segment_char(c));
            return Err(invalid(self, "paths must start with `$.outputs`", start));
        }
        self.pos += ROOT.len();
        if self
            .peek()
            .is_some_and(|c| is_segment_char(c) || c.is_alphanumeric())
        {
            self.eat_while(|c| is_segment_char(c) || c.is_alphanumeric());
            return Err(invalid(self, "paths must start with `$.outputs`", start));
        }
        let mut segments = Vec::new();
        while self.eat('.') {
            let seg_start = self.pos;
            match self.peek() {
                Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
                Some(c) => {
                    self.pos += c.len_utf8();
                    return Err(invalid(
                        self,
                        "a key must start with an ASCII letter or `_`",
                        seg_start,
                    ));
                }
                None => {
                    return Err(invalid(self, "expected a key after `.`", seg_start));
                }
            }
            self.eat_while(is_segment_char);
            if let Some(c) = self.peek().filter(|c| c.is_alphanumeric()) {
                let bad = self.pos;
                self.pos += c.len_utf8();
                return Err(invalid(
                    self,
                    "keys may contain only ASCII letters, digits, `_` and `-`",
                    bad,
                ));
            }
            segments.push(
                self.src
                    .get(seg_start..self.pos)
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        Ok(Tok::Path(segments.into_boxed_slice()))
    }

    /// `-?digits(.digits)?([eE][+-]?digits)?`
    fn number(&mut self) -> Result<Tok, ExprError> {
        let start = self.pos;
        let invalid = |lexer: &Self, reason: &'static str| ExprError::InvalidNumber {
            text: lexer.text(start, lexer.pos),
            reason,
            at: lexer.position(start),
        };
        let negative = self.eat('-');
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Err(invalid(self, "`-` must be immediately followed by a digit"));
        }
        self.eat_while(|c| c.is_ascii_digit());
        let mut integer = true;
        if self.peek() == Some('.') {
            integer = false;
            self.bump();
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump_visible();
                return Err(invalid(self, "expected a digit after the decimal point"));
            }
            self.eat_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek(), Some('e' | 'E'))
            && (self.peek_second().is_some_and(|c| c.is_ascii_digit())
                || matches!(self.peek_second(), Some('+' | '-')))
        {
            integer = false;
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump_visible();
                return Err(invalid(self, "expected a digit in the exponent"));
            }
            self.eat_while(|c| c.is_ascii_digit());
        }
        if let Some(c) = self
            .peek()
            .filter(|&c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            self.pos += c.len_utf8();
            return Err(invalid(self, "unexpected character in number"));
        }
        let text = self.src.get(start..self.pos).unwrap_or_default();
        let number = if integer {
            let exact = if negative {
                text.parse::<i64>().ok().map(Number::from)
            } else {
                text.parse::<u64>().ok().map(Number::from)
            };
            // Integers beyond 64 bits fall back to the nearest f64.
            exact.or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64))
        } else {
            text.parse::<f64>().ok().and_then(Number::from_f64)
        };
        let number = number.ok_or_else(|| invalid(self, "number is out of range"))?;
        if number.as_f64() == Some(0.0) && !is_written_zero(text) {
            return Err(invalid(self, "non-zero number rounds to zero"));
        }
        Ok(Tok::Literal(Value::Number(number)))
    }

    /// A keyword, a word literal (`true`, `false`, `null`, `None`, any case) or an error.
    fn word(&mut self) -> Result<Tok, ExprError> {
        let start = self.pos;
        self.eat_while(is_word_char);
        let word = self.src.get(start..self.pos).unwrap_or_default();
        let tok = match word {
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "in" => Tok::In,
            w if w.eq_ignore_ascii_case("true") => Tok::Literal(Value::Bool(true)),
            w if w.eq_ignore_ascii_case("false") => Tok::Literal(Value::Bool(false)),
            w if w.eq_ignore_ascii_case("null") || w.eq_ignore_ascii_case("none") => {
                Tok::Literal(Value::Null)
            }
            _ => {
                return Err(ExprError::UnknownWord {
                    word: snippet(word),
                    at: self.position(start),
                })
            }
        };
        Ok(tok)
    }
}
