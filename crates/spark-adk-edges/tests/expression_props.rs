//! Property tests of the edge-condition expression language.
//!
//! Expressions are generated as small syntax trees ([`E`]), rendered to source text and
//! checked against an independent reference evaluator ([`ref_eval`]); parsing is also
//! fed arbitrary strings and token soups, and the value helpers are checked for the
//! algebraic properties they promise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cmp::Ordering;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};
use spark_adk_edges::expr::{json_eq, lookup_path, truthy, Expression};

// ---------------------------------------------------------------------------------------
// Generated syntax trees, their rendering, and a reference evaluator
// ---------------------------------------------------------------------------------------

/// Key segments used by generated paths and by generated output objects, so that
/// paths often hit something.
const SEGMENTS: &[&str] = &["a", "b", "c", "x-y", "_z"];

/// A literal: its source text and the value it denotes.
#[derive(Clone, Debug)]
struct Lit {
    text: String,
    value: Value,
}

/// An operand of a comparison.
#[derive(Clone, Debug)]
enum Opd {
    Path(Vec<String>),
    Lit(Lit),
    Group(Box<E>),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A boolean expression.
#[derive(Clone, Debug)]
enum E {
    Or(Vec<E>),
    And(Vec<E>),
    Not(Box<E>),
    Cmp(Op, Opd, Opd),
    In(Opd, Vec<Lit>),
    Bare(Opd),
}

fn render_operand(o: &Opd) -> String {
    match o {
        Opd::Path(segments) => {
            let mut s = String::from("$.outputs");
            for seg in segments {
                s.push('.');
                s.push_str(seg);
            }
            s
        }
        Opd::Lit(lit) => lit.text.clone(),
        Opd::Group(e) => format!("({})", render(e)),
    }
}

fn render_list(lits: &[Lit]) -> String {
    let items: Vec<&str> = lits.iter().map(|l| l.text.as_str()).collect();
    format!("[{}]", items.join(", "))
}

/// Renders `e` so that it can stand as an operand of `not`/`and` (parenthesizing
/// `and`/`or` chains).
fn render_tight(e: &E) -> String {
    match e {
        E::Or(_) | E::And(_) => format!("({})", render(e)),
        _ => render(e),
    }
}

/// Renders `e` as source text, relying on the documented precedence.
fn render(e: &E) -> String {
    match e {
        E::Or(items) => items
            .iter()
            .map(|i| match i {
                E::Or(_) => format!("({})", render(i)),
                _ => render(i),
            })
            .collect::<Vec<_>>()
            .join(" or "),
        E::And(items) => items
            .iter()
            .map(render_tight)
            .collect::<Vec<_>>()
            .join(" and "),
        E::Not(inner) => format!("not {}", render_tight(inner)),
        E::Cmp(op, l, r) => format!("{} {} {}", render_operand(l), op.text(), render_operand(r)),
        E::In(x, lits) => format!("{} in {}", render_operand(x), render_list(lits)),
        E::Bare(o) => render_operand(o),
    }
}

/// Reference evaluation, written independently of the library (it does use
/// `lookup_path` and `truthy`, which are tested on their own).
fn ref_eval(e: &E, out: &Value) -> bool {
    match e {
        E::Or(items) => items.iter().any(|i| ref_eval(i, out)),
        E::And(items) => items.iter().all(|i| ref_eval(i, out)),
        E::Not(inner) => !ref_eval(inner, out),
        E::Cmp(op, l, r) => {
            let (a, b) = (ref_value(l, out), ref_value(r, out));
            let order = ref_order(&a, &b);
            match op {
                Op::Eq => ref_eq(&a, &b),
                Op::Ne => !ref_eq(&a, &b),
                Op::Lt => order == Some(Ordering::Less),
                Op::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => order == Some(Ordering::Greater),
                Op::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
            }
        }
        E::In(x, lits) => {
            let v = ref_value(x, out);
            lits.iter().any(|l| ref_eq(&v, &l.value))
        }
        E::Bare(o) => truthy(&ref_value(o, out)),
    }
}

/// The value of an operand: a parenthesized bare operand keeps its value, any other
/// parenthesized expression is a boolean.
fn ref_value(o: &Opd, out: &Value) -> Value {
    match o {
        Opd::Path(segments) => lookup_path(out, segments).clone(),
        Opd::Lit(lit) => lit.value.clone(),
        Opd::Group(e) => match &**e {
            E::Bare(inner) => ref_value(inner, out),
            other => Value::Bool(ref_eval(other, out)),
        },
    }
}

/// Reference number/string order. Numbers: exact for two integers, f64 otherwise
/// (the "tame" generators keep integers within ±2^40, where f64 is exact).
fn ref_order(a: &Value, b: &Value) -> Option<Ordering> {
    fn int(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (int(x), int(y)) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Reference equality: recursive, numbers by value, different types unequal.
fn ref_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(_), Value::Number(_)) => ref_order(a, b) == Some(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| ref_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| ref_eq(x, y)))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Randomly re-cases `word` (`true` -> `tRuE`).
fn recase(word: &str, mask: u32) -> String {
    word.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask & (1 << (i % 32)) != 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// Quotes `s` as a string literal, escaping what must be escaped and randomly
/// escaping newlines and tabs.
fn quote(s: &str, double: bool, escape_controls: bool) -> String {
    let q = if double { '"' } else { '\'' };
    let mut out = String::new();
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            '\n' if escape_controls => out.push_str("\\n"),
            '\t' if escape_controls => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

fn tame_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ab]{0,2}",
        1 => "[a-z'\"\\\\\n\té😀 ]{0,6}",
        1 => any::<String>(),
    ]
}

fn tame_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-3i64..4).prop_map(Value::from),
        2 => select(vec![0.0, -0.0, 0.5, 1.0, -1.0, 1.5, 2.0, 1e3, -2.5e-3]).prop_map(Value::from),
        1 => (-(1i64 << 40)..(1i64 << 40)).prop_map(Value::from),
        1 => any::<f64>()
            .prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
}

/// Literals with their values, including nested lists.
fn lit_strategy() -> BoxedStrategy<Lit> {
    let number = tame_number().prop_map(|v| {
        let text = match &v {
            Value::Number(n) if n.is_f64() => format!("{:?}", n.as_f64().unwrap_or_default()),
            other => other.to_string(),
        };
        Lit { text, value: v }
    });
    let string = (tame_string(), any::<bool>(), any::<bool>()).prop_map(|(s, double, esc)| Lit {
        text: quote(&s, double, esc),
        value: Value::String(s),
    });
    let boolean = (any::<bool>(), any::<u32>()).prop_map(|(b, mask)| Lit {
        text: recase(if b { "true" } else { "false" }, mask),
        value: Value::Bool(b),
    });
    let null = (select(vec!["null", "none"]), any::<u32>()).prop_map(|(w, mask)| Lit {
        text: recase(w, mask),
        value: Value::Null,
    });
    let leaf = prop_oneof![4 => number, 3 => string, 1 => boolean, 1 => null];
    leaf.prop_recursive(3, 12, 4, |inner| {
        (vec(inner, 0..4), any::<bool>()).prop_map(|(items, trailing_comma)| {
            let texts: Vec<&str> = items.iter().map(|l| l.text.as_str()).collect();
            let comma = if trailing_comma && !items.is_empty() {
                ","
            } else {
                ""
            };
            Lit {
                text: format!("[{}{comma}]", texts.join(", ")),
                value: Value::Array(items.into_iter().map(|l| l.value).collect()),
            }
        })
    })
    .boxed()
}

fn path_strategy() -> impl Strategy<Value = Vec<String>> {
    vec(select(SEGMENTS).prop_map(|s: &str| s.to_owned()), 0..3)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    select(vec![Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge])
}

fn leaf_operand() -> BoxedStrategy<Opd> {
    prop_oneof![
        path_strategy().prop_map(Opd::Path),
        lit_strategy().prop_map(Opd::Lit),
    ]
    .boxed()
}

/// Comparison-level expressions without groups.
fn atom_strategy() -> BoxedStrategy<E> {
    prop_oneof![
        leaf_operand().prop_map(E::Bare),
        (op_strategy(), leaf_operand(), leaf_operand()).prop_map(|(op, l, r)| E::Cmp(op, l, r)),
        (leaf_operand(), vec(lit_strategy(), 0..4)).prop_map(|(x, l)| E::In(x, l)),
    ]
    .boxed()
}

/// Arbitrary well-formed expressions (nesting well below the depth limit).
fn expr_strategy() -> BoxedStrategy<E> {
    atom_strategy()
        .prop_recursive(4, 24, 3, |inner| {
            let operand = prop_oneof![
                2 => leaf_operand(),
                1 => inner.clone().prop_map(|e| Opd::Group(Box::new(e))),
            ];
            prop_oneof![
                vec(inner.clone(), 2..4).prop_map(E::Or),
                vec(inner.clone(), 2..4).prop_map(E::And),
                inner.clone().prop_map(|e| E::Not(Box::new(e))),
                (op_strategy(), operand.clone(), operand.clone())
                    .prop_map(|(op, l, r)| E::Cmp(op, l, r)),
                (operand.clone(), vec(lit_strategy(), 0..3)).prop_map(|(x, l)| E::In(x, l)),
                operand.prop_map(E::Bare),
            ]
        })
        .boxed()
}

/// JSON values whose numbers compare exactly through f64, with objects keyed by
/// [`SEGMENTS`] so that generated paths find them.
fn tame_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        tame_number(),
        tame_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(
                select(SEGMENTS).prop_map(|s: &str| s.to_owned()),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// Output content: usually an object keyed by [`SEGMENTS`], sometimes anything.
fn tame_output() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => btree_map(select(SEGMENTS).prop_map(|s: &str| s.to_owned()), tame_json(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        1 => tame_json(),
    ]
    .boxed()
}

/// Arbitrary JSON: any numbers (including huge integers and extreme floats), any strings.
fn wild_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        any::<String>().prop_map(Value::String),
        "[ab]{0,2}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        let key = prop_oneof![
            select(SEGMENTS).prop_map(|s: &str| s.to_owned()),
            any::<String>()
        ];
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(key, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// Pieces of the language (and near-misses) to glue into token soups.
const TOKENS: &[&str] = &[
    "$.outputs",
    "$.outputs.a",
    "$.outputs.x-y.b",
    "$",
    ".",
    "outputs",
    "a",
    "and",
    "or",
    "not",
    "in",
    "AND",
    "Not",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "!",
    "(",
    ")",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "\\",
    "'x'",
    "\"y\"",
    "'\\n'",
    "'\\q'",
    "1",
    "-",
    "-1.5",
    "1e3",
    "1e",
    "1.",
    ".5",
    "true",
    "None",
    "NULL",
    "é",
    "😀",
    "\0",
    "\n",
    "[]",
    "x-y",
    "#",
    "'日本",
];

fn token_soup() -> impl Strategy<Value = String> {
    vec((select(TOKENS), select(vec!["", " ", "  "])), 0..24).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(token, sep)| format!("{token}{sep}"))
            .collect()
    })
}

fn parse(source: &str) -> Expression {
    Expression::parse(source).unwrap_or_else(|e| panic!("`{source}` should parse: {e}"))
}

/// Parsing `source` either succeeds or fails with an error that renders and points
/// at a character boundary inside the source.
fn check_parse_total(source: &str) -> Result<(), TestCaseError> {
    match Expression::parse(source) {
        Ok(expr) => {
            prop_assert_eq!(expr.source(), source);
            let _ = expr.evaluate(&Value::Null);
        }
        Err(e) => {
            let at = e.position();
            prop_assert!(at.offset <= source.len());
            prop_assert!(source.is_char_boundary(at.offset));
            prop_assert_eq!(at.column, source[..at.offset].chars().count() + 1);
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_expressions_parse_and_agree_with_the_reference_evaluator(
        e in expr_strategy(),
        out in tame_output(),
    ) {
        let source = render(&e);
        let expr = parse(&source);
        prop_assert_eq!(expr.evaluate(&out), ref_eval(&e, &out), "source: {}", source);
    }

    #[test]
    fn evaluation_never_panics_on_arbitrary_json(e in expr_strategy(), out in wild_json()) {
        let expr = parse(&render(&e));
        let _ = expr.evaluate(&out);
        let _ = expr.evaluate(&Value::Object(Map::from_iter([("a".to_owned(), out)])));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_strings(source in any::<String>()) {
        check_parse_total(&source)?;
    }

    #[test]
    fn parse_never_panics_on_token_soup(source in token_soup()) {
        check_parse_total(&source)?;
    }

    #[test]
    fn parse_never_panics_on_mutated_valid_expressions(
        e in expr_strategy(),
        cut in any::<prop::sample::Index>(),
        insert in select(TOKENS),
    ) {
        let source = render(&e);
        let boundaries: Vec<usize> =
            source.char_indices().map(|(i, _)| i).chain([source.len()]).collect();
        let at = boundaries[cut.index(boundaries.len())];
        check_parse_total(&source[..at])?;
        check_parse_total(&format!("{}{insert}{}", &source[..at], &source[at..]))?;
    }

    #[test]
    fn or_binds_looser_than_and(
        a in expr_strategy(), b in expr_strategy(), c in expr_strategy(), out in tame_output(),
    ) {
        let (ea, eb, ec) = (ref_eval(&a, &out), ref_eval(&b, &out), ref_eval(&c, &out));
        let (ta, tb, tc) = (render_tight(&a), render_tight(&b), render_tight(&c));
        let or_and = format!("{ta} or {tb} and {tc}");
        prop_assert_eq!(parse(&or_and).evaluate(&out), ea || (eb && ec), "{}", or_and);
        let and_or = format!("{ta} and {tb} or {tc}");
        prop_assert_eq!(parse(&and_or).evaluate(&out), (ea && eb) || ec, "{}", and_or);
    }

    #[test]
    fn not_negates_its_operand(e in expr_strategy(), out in tame_output()) {
        let plain = parse(&render(&e)).evaluate(&out);
        let negated = format!("not ({})", render(&e));
        prop_assert_eq!(parse(&negated).evaluate(&out), !plain, "{}", negated);
        let tight = format!("not {}", render_tight(&e));
        prop_assert_eq!(parse(&tight).evaluate(&out), !plain, "{}", tight);
    }

    #[test]
    fn not_applies_to_the_whole_comparison(
        op in op_strategy(), l in leaf_operand(), r in leaf_operand(), out in tame_output(),
    ) {
        let cmp = format!("{} {} {}", render_operand(&l), op.text(), render_operand(&r));
        let plain = parse(&cmp).evaluate(&out);
        prop_assert_eq!(parse(&format!("not {cmp}")).evaluate(&out), !plain, "{}", cmp);
    }

    #[test]
    fn eq_and_ne_are_complementary(l in leaf_operand(), r in leaf_operand(), out in wild_json()) {
        let (l, r) = (render_operand(&l), render_operand(&r));
        let eq = parse(&format!("{l} == {r}")).evaluate(&out);
        let ne = parse(&format!("{l} != {r}")).evaluate(&out);
        prop_assert_ne!(eq, ne, "{} vs {}", l, r);
    }

    #[test]
    fn in_is_true_exactly_when_some_element_is_json_equal(
        x in leaf_operand(), lits in vec(lit_strategy(), 0..5), out in tame_output(),
    ) {
        let needle = ref_value(&x, &out);
        let expected = lits.iter().any(|l| json_eq(&needle, &l.value));
        let x_text = render_operand(&x);
        let source = format!("{x_text} in {}", render_list(&lits));
        prop_assert_eq!(parse(&source).evaluate(&out), expected, "{}", source);
        if !lits.is_empty() {
            let as_ors: Vec<String> =
                lits.iter().map(|l| format!("{x_text} == {}", l.text)).collect();
            prop_assert_eq!(parse(&as_ors.join(" or ")).evaluate(&out), expected);
        }
    }

    #[test]
    fn literals_denote_their_values(lit in lit_strategy()) {
        let source = format!("$.outputs == {}", lit.text);
        prop_assert!(parse(&source).evaluate(&lit.value), "{}", source);
        let source = format!("{} in [{}]", lit.text, lit.text);
        prop_assert!(parse(&source).evaluate(&Value::Null), "{}", source);
    }

    #[test]
    fn a_bare_path_is_evaluated_by_truthiness(path in path_strategy(), out in wild_json()) {
        let source = render_operand(&Opd::Path(path.clone()));
        prop_assert_eq!(parse(&source).evaluate(&out), truthy(lookup_path(&out, &path)));
    }

    #[test]
    fn ordering_is_total_on_numbers_and_strings_and_false_across_types(
        a in lit_strategy(), b in lit_strategy(),
    ) {
        let results: Vec<bool> = ["<", "==", ">"]
            .iter()
            .map(|op| parse(&format!("{} {op} {}", a.text, b.text)).evaluate(&Value::Null))
            .collect();
        let orderable = matches!(
            (&a.value, &b.value),
            (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_))
        );
        if orderable {
            prop_assert_eq!(results.iter().filter(|r| **r).count(), 1, "{} vs {}", a.text, b.text);
        } else {
            for op in ["<", "<=", ">", ">="] {
                let source = format!("{} {op} {}", a.text, b.text);
                prop_assert!(!parse(&source).evaluate(&Value::Null), "{}", source);
            }
        }
    }

    #[test]
    fn json_eq_is_reflexive_and_symmetric(a in wild_json(), b in wild_json()) {
        prop_assert!(json_eq(&a, &a));
        prop_assert!(json_eq(&a, &a.clone()));
        prop_assert_eq!(json_eq(&a, &b), json_eq(&b, &a));
        if a == b {
            prop_assert!(json_eq(&a, &b));
        }
    }

    #[test]
    fn json_eq_agrees_with_the_reference_equality(a in tame_json(), b in tame_json()) {
        prop_assert_eq!(json_eq(&a, &b), ref_eq(&a, &b));
        // Equal-by-value numbers in a container keep the containers equal.
        let wrapped = |v: &Value| Value::Array(vec![v.clone(), Value::from(1)]);
        prop_assert_eq!(
            json_eq(&wrapped(&a), &serde_json::json!([b.clone(), 1.0])),
            ref_eq(&a, &b)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Literal rules (the `spark_adk_edges::expr` module docs)
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signed_64_bit_integer_literals_compare_exactly(a in any::<i64>(), b in any::<i64>()) {
        prop_assert_eq!(parse(&format!("{a} == {b}")).evaluate(&Value::Null), a == b);
        prop_assert_eq!(parse(&format!("{a} < {b}")).evaluate(&Value::Null), a < b);
        // Neighbours differ even where f64 cannot tell them apart.
        if let Some(next) = a.checked_add(1) {
            let holds = parse(&format!("{a} < {next}")).evaluate(&Value::Null);
            prop_assert!(holds);
        }
    }

    #[test]
    fn unsigned_64_bit_integer_literals_compare_exactly(a in any::<u64>(), b in any::<u64>()) {
        prop_assert_eq!(parse(&format!("{a} == {b}")).evaluate(&Value::Null), a == b);
        prop_assert_eq!(parse(&format!("{a} >= {b}")).evaluate(&Value::Null), a >= b);
        let out = serde_json::json!({ "n": a });
        let holds = parse(&format!("$.outputs.n == {a}")).evaluate(&out);
        prop_assert!(holds);
    }

    #[test]
    fn leading_zeros_do_not_change_a_number(n in any::<u32>(), zeros in 1usize..6, neg in any::<bool>()) {
        let sign = if neg { "-" } else { "" };
        let source = format!("{sign}{}{n} == {sign}{n}", "0".repeat(zeros));
        prop_assert!(parse(&source).evaluate(&Value::Null), "{}", source);
    }

    #[test]
    fn a_non_zero_number_too_small_for_a_float_is_an_error_and_zero_is_not(
        mantissa in 1u32..100_000,
        exponent in 330u32..5_000,
    ) {
        let holds = Expression::parse(&format!("{mantissa}e-{exponent}")).is_err();
        prop_assert!(holds);
        let holds = Expression::parse(&format!("-{mantissa}e-{exponent}")).is_err();
        prop_assert!(holds);
        let holds = Expression::parse(&format!("{mantissa}e{exponent}")).is_err();
        prop_assert!(holds);
        let holds = parse(&format!("0e-{exponent} == 0")).evaluate(&Value::Null);
        prop_assert!(holds);
    }

    #[test]
    fn a_finite_float_written_in_rust_notation_reads_back_as_itself(x in any::<f64>()) {
        prop_assume!(x.is_finite());
        let out = serde_json::json!({ "x": x });
        let source = format!("$.outputs.x == {x:e}");
        prop_assert!(parse(&source).evaluate(&out), "{}", source);
    }

    #[test]
    fn a_unicode_escape_decodes_to_its_scalar_value(c in any::<char>(), pad in 0usize..3) {
        let hex = format!("{:x}", u32::from(c));
        let digits = format!("{}{hex}", "0".repeat(pad.min(6 - hex.len())));
        let out = serde_json::json!({ "s": c.to_string() });
        let source = format!("$.outputs.s == '\\u{{{digits}}}'");
        prop_assert!(parse(&source).evaluate(&out), "{}", source);
    }

    #[test]
    fn a_unicode_escape_of_a_surrogate_is_an_error(code in 0xD800u32..=0xDFFF) {
        let holds = Expression::parse(&format!("'\\u{{{code:x}}}'")).is_err();
        prop_assert!(holds);
    }

    #[test]
    fn an_escape_outside_the_list_is_an_error(c in any::<char>()) {
        prop_assume!(!matches!(c, '\\' | '"' | '\'' | 'n' | 't' | 'r' | 'u'));
        let source = format!("'a\\{c}b'");
        prop_assert!(Expression::parse(&source).is_err(), "{:?}", source);
    }
}
