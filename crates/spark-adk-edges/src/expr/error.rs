//! Parse errors of the condition language, each carrying the position it refers to.

use std::fmt;

/// Where in the source text an error was found.
///
/// `offset` is a byte offset into the source (always on a `char` boundary, so
/// `&source[offset..]` is valid); `column` is the 1-based position counted in
/// characters (Unicode scalar values) from the start of the source. Line breaks are
/// not treated specially: expressions are expected to be one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// Byte offset into the source text.
    pub offset: usize,
    /// 1-based character column into the source text.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `source`.
    ///
    /// If `offset` is past the end or not on a character boundary, the column is
    /// approximated instead of panicking.
    pub(crate) fn in_source(source: &str, offset: usize) -> Position {
        let column = match source.get(..offset) {
            Some(prefix) => prefix.chars().count() + 1,
            None => {
                // Not a char boundary or out of range: count the chars that start before it.
                source
                    .char_indices()
                    .take_while(|(i, _)| *i < offset)
                    .count()
                    + 1
            }
        };
        Position { offset, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {} (byte {})", self.column, self.offset)
    }
}

/// Why a condition expression could not be parsed.
///
/// Every variant records where the problem is ([`Position`]) and, where useful, the
/// offending text (truncated to a few dozen characters).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExprError {
    /// The expression is empty or only whitespace.
    #[error("empty expression at {at}: expected a condition such as `$.outputs.ok == true`")]
    Empty {
        /// Start of the (blank) source.
        at: Position,
    },

    /// A character that cannot start any token (e.g. `&`, `#`, a NUL byte, a non-ASCII letter).
    #[error("unexpected character {ch:?} at {at}")]
    UnexpectedCharacter {
        /// The character.
        ch: char,
        /// Where it is.
        at: Position,
    },

    /// A string literal that is not closed before the end of the expression.
    #[error("unterminated string starting at {at}: missing closing {quote}")]
    UnterminatedString {
        /// The opening quote character (`'` or `"`).
        quote: char,
        /// Position of the opening quote.
        at: Position,
    },

    /// An unsupported backslash escape inside a string literal.
    #[error("invalid escape `{escape}` in string at {at}: supported escapes are \\\\ \\' \\\" \\n \\t \\r and \\u{{X}} with 1 to 6 hex digits naming a Unicode scalar value")]
    InvalidEscape {
        /// The escape sequence as written (e.g. `\q`).
        escape: String,
        /// Position of the backslash.
        at: Position,
    },

    /// A malformed or out-of-range number literal (e.g. `1.`, `1e`, `1abc`, `1e999`, a lone `-`).
    #[error("invalid number `{text}` at {at}: {reason}")]
    InvalidNumber {
        /// The offending text.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
        /// Position of the number's first character.
        at: Position,
    },

    /// A malformed path (e.g. `$.foo`, `$.outputs.`, `$.outputs.1x`).
    #[error("invalid path `{text}` at {at}: {reason}")]
    InvalidPath {
        /// The path text up to and including the problem.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
        /// Position of the problem inside the path.
        at: Position,
    },

    /// A bare word that is neither a keyword nor a literal (e.g. `foo`, `AND`).
    #[error("unknown word `{word}` at {at}{hint}", hint = unknown_word_hint(word))]
    UnknownWord {
        /// The word.
        word: String,
        /// Where it starts.
        at: Position,
    },

    /// A token that is not allowed where it appears (e.g. a missing operand: `== 1`, `a and or b`).
    #[error("unexpected `{found}` at {at}: expected {expected}")]
    UnexpectedToken {
        /// The token text as written.
        found: String,
        /// What the parser expected instead.
        expected: &'static str,
        /// Where the token starts.
        at: Position,
    },

    /// The expression ended while something was still expected (e.g. `$.outputs.a ==`).
    #[error("unexpected end of expression at {at}: expected {expected}")]
    UnexpectedEnd {
        /// What the parser expected.
        expected: &'static str,
        /// The end of the source.
        at: Position,
    },

    /// A complete expression is followed by more tokens (e.g. `$.outputs.a $.outputs.b`).
    #[error(
        "unexpected `{found}` at {at} after a complete expression: expected `and`, `or` or the end"
    )]
    TrailingInput {
        /// The first extra token.
        found: String,
        /// Where it starts.
        at: Position,
    },

    /// A `(` or `[` that is never closed.
    #[error("unclosed `{delimiter}` opened at {at}")]
    UnclosedDelimiter {
        /// `(` or `[`.
        delimiter: char,
        /// Position of the opening delimiter.
        at: Position,
    },

    /// A `)` or `]` with no matching opener.
    #[error("unmatched `{delimiter}` at {at}")]
    UnmatchedDelimiter {
        /// `)` or `]`.
        delimiter: char,
        /// Where it is.
        at: Position,
    },

    /// Comparisons do not chain: `a < b < c` or `a == b == c` (use `and`, or parentheses).
    #[error("chained comparison at {at}: `{operator}` cannot follow another comparison; combine comparisons with `and`/`or` or use parentheses")]
    ChainedComparison {
        /// The second comparison operator.
        operator: String,
        /// Where it is.
        at: Position,
    },

    /// `not in` is not part of the language; write `not (x in [..])`.
    #[error("`not in` at {at} is not supported: write `not (x in [...])`")]
    NotInUnsupported {
        /// Position of the `not`.
        at: Position,
    },

    /// The right-hand side of `in` must be a list literal.
    #[error("`in` must be followed by a list literal like `[1, 'a']`, found `{found}` at {at}")]
    InRequiresList {
        /// What followed `in` (empty at the end of input).
        found: String,
        /// Where it is.
        at: Position,
    },

    /// Parentheses, `not` and lists nest deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("expression nests deeper than {max} levels at {at}")]
    TooDeep {
        /// The maximum nesting depth.
        max: usize,
        /// Position of the token that went one level too deep.
        at: Position,
    },
}

impl ExprError {
    /// Where in the source the error was found.
    pub fn position(&self) -> Position {
        match self {
            ExprError::Empty { at }
            | ExprError::UnexpectedCharacter { at, .. }
            | ExprError::UnterminatedString { at, .. }
            | ExprError::InvalidEscape { at, .. }
            | ExprError::InvalidNumber { at, .. }
            | ExprError::InvalidPath { at, .. }
            | ExprError::UnknownWord { at, .. }
            | ExprError::UnexpectedToken { at, .. }
            | ExprError::UnexpectedEnd { at, .. }
            | ExprError::TrailingInput { at, .. }
            | ExprError::UnclosedDelimiter { at, .. }
            | ExprError::UnmatchedDelimiter { at, .. }
            | ExprError::ChainedComparison { at, .. }
            | ExprError::NotInUnsupported { at }
            | ExprError::InRequiresList { at, .. }
            | ExprError::TooDeep { at, .. } => *at,
        }
    }
}

/// A hint appended to [`ExprError::UnknownWord`] messages.
fn unknown_word_hint(word: &str) -> &'static str {
    match word.to_ascii_lowercase().as_str() {
        "and" | "or" | "not" | "in" => " (keywords `and`, `or`, `not`, `in` are lower case)",
        "outputs" => " (paths start with `$.outputs`)",
        _ => " (strings must be quoted; paths start with `$.outputs`)",
    }
}

/// At most this many characters of offending text are kept in an error.
const MAX_SNIPPET_CHARS: usize = 40;

/// `text`, shortened to [`MAX_SNIPPET_CHARS`] characters with a trailing `…` if longer.
pub(crate) fn snippet(text: &str) -> String {
    match text.char_indices().nth(MAX_SNIPPET_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => {
            let mut s = text.get(..cut).unwrap_or_default().to_owned();
            s.push('…');
            s
        }
    }
}
