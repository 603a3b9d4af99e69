//! Example-based tests of the edge-condition expression language: one behaviour per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use spark_adk_edges::expr::{
    json_eq, lookup_path, truthy, ExprError, Expression, Position, MAX_DEPTH,
};

/// Parses `source` (panicking with the error if it does not parse) and evaluates it.
fn eval(source: &str, outputs: &Value) -> bool {
    Expression::parse(source)
        .unwrap_or_else(|e| panic!("`{source}` should parse, got: {e}"))
        .evaluate(outputs)
}

/// The parse error for `source` (panicking if it parses).
fn parse_err(source: &str) -> ExprError {
    match Expression::parse(source) {
        Ok(expr) => panic!("`{source}` should not parse, got {expr:?}"),
        Err(e) => e,
    }
}

/// The parse error for a string built at run time (no `Debug` of a huge source on failure).
fn parse_err_quiet(source: &str) -> ExprError {
    match Expression::parse(source) {
        Ok(_) => panic!("a {}-byte source should not parse", source.len()),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------

#[test]
fn bare_outputs_path_is_the_whole_output_content() {
    assert!(eval("$.outputs == 5", &json!(5)));
    assert!(eval("$.outputs == 'done'", &json!("done")));
    assert!(eval("$.outputs == [1, 2]", &json!([1, 2])));
    assert!(!eval("$.outputs == 5", &json!(6)));
}

#[test]
fn path_segments_walk_nested_objects() {
    let out = json!({ "a": { "b": { "c": 42 } } });
    assert!(eval("$.outputs.a.b.c == 42", &out));
    assert!(!eval("$.outputs.a.b.c == 41", &out));
}

#[test]
fn missing_key_reads_as_null() {
    let out = json!({ "present": 1 });
    assert!(eval("$.outputs.absent == null", &out));
    assert!(eval("$.outputs.absent.deeper == null", &out));
    assert!(!eval("$.outputs.present == null", &out));
}

#[test]
fn non_object_on_the_path_reads_as_null() {
    let out = json!({ "n": 3, "list": [{ "x": 1 }], "s": "text" });
    assert!(eval("$.outputs.n.x == null", &out));
    assert!(eval("$.outputs.list.x == null", &out));
    assert!(eval("$.outputs.s.length == null", &out));
    assert!(!eval("$.outputs.n == null", &out));
}

#[test]
fn non_object_output_content_reads_as_null_for_any_key() {
    for content in [
        json!(7),
        json!("str"),
        json!([1, 2]),
        json!(true),
        Value::Null,
    ] {
        assert!(eval("$.outputs.key == null", &content), "{content}");
        assert!(!eval("$.outputs.key", &content), "{content}");
    }
}

#[test]
fn path_keys_may_contain_digits_underscores_and_hyphens() {
    let out = json!({ "_my-key_2": { "x-y": 1 } });
    assert!(eval("$.outputs._my-key_2.x-y == 1", &out));
}

#[test]
fn path_keys_are_case_sensitive() {
    let out = json!({ "Status": "ok" });
    assert!(eval("$.outputs.Status == 'ok'", &out));
    assert!(eval("$.outputs.status == null", &out));
}

#[test]
fn paths_must_start_with_dollar_outputs() {
    for source in [
        "$.foo == 1",
        "$ == 1",
        "$.output == 1",
        "$.outputsx == 1",
        "$outputs",
    ] {
        assert!(
            matches!(parse_err(source), ExprError::InvalidPath { .. }),
            "{source}"
        );
    }
}

#[test]
fn empty_or_malformed_path_segments_are_errors() {
    for (source, offset) in [
        ("$.outputs. == 1", 10),
        ("$.outputs.1a == 1", 10),
        ("$.outputs..a", 10),
        ("$.outputs.a.", 12),
        ("$.outputs.-a", 10),
    ] {
        let e = parse_err(source);
        assert!(matches!(e, ExprError::InvalidPath { .. }), "{source}: {e}");
        assert_eq!(e.position().offset, offset, "{source}: {e}");
    }
}

#[test]
fn paths_may_not_contain_spaces() {
    assert!(Expression::parse("$. outputs").is_err());
    assert!(Expression::parse("$.outputs. a").is_err());
}

// ---------------------------------------------------------------------------------------
// Precedence and associativity
// ---------------------------------------------------------------------------------------

#[test]
fn and_binds_tighter_than_or() {
    // `true or (false and false)` is true; `(true or false) and false` would be false.
    assert!(eval("true or false and false", &Value::Null));
    // `(false and true) or true` is true; `false and (true or true)` would be false.
    assert!(eval("false and true or true", &Value::Null));
}

#[test]
fn not_applies_to_the_whole_comparison() {
    let out = json!({ "n": 5 });
    // `not ($.outputs.n == 0)`: true. `(not $.outputs.n) == 0` would be `false == 0`: false.
    assert!(eval("not $.outputs.n == 0", &out));
    assert!(!eval("not $.outputs.n == 5", &out));
    assert!(eval("not $.outputs.n in [1, 2]", &out));
}

#[test]
fn not_binds_tighter_than_and_and_or() {
    // `(not true) and false` = false; `not (true and false)` would be true.
    assert!(!eval("not true and false", &Value::Null));
    // `(not true) or true` = true; `not (true or true)` = false.
    assert!(eval("not true or true", &Value::Null));
}

#[test]
fn not_may_be_repeated() {
    assert!(eval("not not true", &Value::Null));
    assert!(!eval("not not not true", &Value::Null));
    assert!(eval("not not $.outputs.x == 1", &json!({ "x": 1 })));
}

#[test]
fn parentheses_override_precedence() {
    assert!(!eval("(true or false) and false", &Value::Null));
    assert!(eval("not (true and false)", &Value::Null));
}

#[test]
fn long_and_or_chains_evaluate_left_to_right_with_precedence() {
    // a or b and c or d and e  ==  a or (b and c) or (d and e)
    assert!(eval(
        "false or true and false or true and true",
        &Value::Null
    ));
    assert!(!eval(
        "false or true and false or true and false",
        &Value::Null
    ));
    assert!(eval("true and true and true and true", &Value::Null));
    assert!(!eval("true and true and false and true", &Value::Null));
    assert!(eval("false or false or false or true", &Value::Null));
}

#[test]
fn chained_comparison_is_a_parse_error() {
    for (source, operator, offset) in [
        ("1 < 2 < 3", "<", 6),
        ("$.outputs.a == $.outputs.b == true", "==", 27),
        ("1 == 1 != 2", "!=", 7),
        ("1 == 1 in [true]", "in", 7),
        ("1 in [1] == true", "==", 9),
        ("1 in [1] in [[1]]", "in", 9),
    ] {
        match parse_err(source) {
            ExprError::ChainedComparison { operator: op, at } => {
                assert_eq!(op, operator, "{source}");
                assert_eq!(at.offset, offset, "{source}");
            }
            e => panic!("{source}: expected ChainedComparison, got {e:?}"),
        }
    }
}

#[test]
fn parenthesized_comparisons_may_be_compared() {
    let out = json!({ "a": 1 });
    assert!(eval("($.outputs.a == 1) == true", &out));
    assert!(eval("($.outputs.a == 2) == false", &out));
    assert!(eval("(1 < 2) == (2 < 3)", &out));
    assert!(!eval("($.outputs.a == 1) == 1", &out));
}

#[test]
fn parenthesized_bare_operand_keeps_its_value() {
    let out = json!({ "n": 3, "s": "x" });
    assert!(eval("($.outputs.n) == 3", &out));
    assert!(eval("(($.outputs.s)) == 'x'", &out));
    assert!(eval("(3) > 2", &out));
}

#[test]
fn and_and_or_produce_booleans() {
    let out = json!({ "s": "x", "n": 0 });
    assert!(eval("($.outputs.s or $.outputs.n) == true", &out));
    assert!(!eval("($.outputs.s or $.outputs.n) == 'x'", &out));
    assert!(eval("($.outputs.s and $.outputs.n) == false", &out));
    assert!(!eval("($.outputs.s and $.outputs.n) == 0", &out));
    assert!(eval("(not $.outputs.n) == true", &out));
}

// ---------------------------------------------------------------------------------------
// Literals
// ---------------------------------------------------------------------------------------

#[test]
fn integer_decimal_negative_and_exponent_numbers_are_literals() {
    let out = json!({ "i": 42, "d": 0.25, "neg": -1, "negd": -0.5, "big": 1000, "small": 0.0025 });
    assert!(eval("$.outputs.i == 42", &out));
    assert!(eval("$.outputs.d == 0.25", &out));
    assert!(eval("$.outputs.neg == -1", &out));
    assert!(eval("$.outputs.negd == -0.5", &out));
    assert!(eval("$.outputs.big == 1e3", &out));
    assert!(eval("$.outputs.big == 1E+3", &out));
    assert!(eval("$.outputs.small == 2.5e-3", &out));
    assert!(eval("$.outputs.neg==-1", &out));
}

#[test]
fn integers_beyond_64_bits_become_floats() {
    assert!(eval("100000000000000000000 == 1e20", &Value::Null));
    assert!(eval("-100000000000000000000 == -1e20", &Value::Null));
}

#[test]
fn malformed_numbers_are_parse_errors() {
    for source in [
        "1.", "1.e3", "1e", "1e+", "1abc", "1.2.3", "- 1", "-", "-x", "1e999", "1_000",
    ] {
        let e = parse_err(source);
        assert!(
            matches!(
                e,
                ExprError::InvalidNumber {
                    at: Position { offset: 0, .. },
                    ..
                }
            ),
            "{source}: {e:?}"
        );
    }
    // `.5` is not a number: `.` cannot start a token.
    assert!(matches!(
        parse_err(".5"),
        ExprError::UnexpectedCharacter { ch: '.', .. }
    ));
}

#[test]
fn single_and_double_quoted_strings_are_literals() {
    let out = json!({ "s": "ok" });
    assert!(eval("$.outputs.s == 'ok'", &out));
    assert!(eval("$.outputs.s == \"ok\"", &out));
    assert!(!eval("$.outputs.s == 'OK'", &out));
}

#[test]
fn string_escapes_are_decoded() {
    let out = json!({
        "q1": "it's", "q2": "say \"hi\"", "bs": "a\\b", "nl": "a\nb", "tab": "a\tb",
        "cr": "\r", "nul": "\0", "uni": "é😀"
    });
    assert!(eval(r"$.outputs.q1 == 'it\'s'", &out));
    assert!(eval(r#"$.outputs.q1 == "it's""#, &out));
    assert!(eval(r#"$.outputs.q2 == "say \"hi\"""#, &out));
    assert!(eval(r#"$.outputs.q2 == 'say "hi"'"#, &out));
    assert!(eval(r"$.outputs.bs == 'a\\b'", &out));
    assert!(eval(r"$.outputs.nl == 'a\nb'", &out));
    assert!(eval(r"$.outputs.tab == 'a\tb'", &out));
    assert!(eval(r"$.outputs.cr == '\r'", &out));
    assert!(eval(r"$.outputs.nul == '\0'", &out));
    assert!(eval(r"$.outputs.uni == '\u{e9}\u{1F600}'", &out));
    assert!(eval("$.outputs.uni == 'é😀'", &out));
}

#[test]
fn unknown_escapes_are_parse_errors_with_their_position() {
    for (source, offset) in [
        (r"'a\qb'", 2),
        (r"'\u{110000}'", 1),
        (r"'\u1234'", 1),
        (r"'é\x'", 3),
    ] {
        match parse_err(source) {
            ExprError::InvalidEscape { at, .. } => assert_eq!(at.offset, offset, "{source}"),
            e => panic!("{source}: expected InvalidEscape, got {e:?}"),
        }
    }
}

#[test]
fn list_literals_may_be_nested_and_empty() {
    let out = json!({ "l": [1, "a", null, [true, []]], "e": [] });
    assert!(eval("$.outputs.l == [1, 'a', null, [true, []]]", &out));
    assert!(eval("$.outputs.e == []", &out));
    assert!(!eval("[]", &out));
    assert!(eval("[0]", &out));
}

#[test]
fn one_trailing_comma_in_a_list_is_allowed() {
    assert!(eval("[1, 2,] == [1, 2]", &Value::Null));
    assert!(eval("[[1,],] == [[1]]", &Value::Null));
    assert!(Expression::parse("[1,,]").is_err());
    assert!(Expression::parse("[,]").is_err());
    assert!(Expression::parse("[1 2]").is_err());
}

#[test]
fn list_elements_must_be_literals() {
    for source in [
        "[$.outputs.a] == [1]",
        "1 in [$.outputs.a]",
        "1 in [(1)]",
        "1 in [not true]",
    ] {
        assert!(
            matches!(parse_err(source), ExprError::UnexpectedToken { .. }),
            "{source}"
        );
    }
}

#[test]
fn unclosed_list_is_a_parse_error_at_its_bracket() {
    assert_eq!(
        parse_err("1 in [1, 2"),
        ExprError::UnclosedDelimiter {
            delimiter: '[',
            at: Position {
                offset: 5,
                column: 6
            }
        }
    );
    assert!(matches!(
        parse_err("1 in [1, [2]"),
        ExprError::UnclosedDelimiter { delimiter: '[', .. }
    ));
}

#[test]
fn python_spelled_literals_are_accepted() {
    let out = json!({ "t": true, "f": false, "n": null });
    for source in [
        "$.outputs.t == True",
        "$.outputs.t == TRUE",
        "$.outputs.t == tRuE",
        "$.outputs.f == False",
        "$.outputs.f == FALSE",
        "$.outputs.n == Null",
        "$.outputs.n == nUlL",
        "$.outputs.n == None",
        "$.outputs.n == none",
        "$.outputs.n == NONE",
    ] {
        assert!(eval(source, &out), "{source}");
    }
    assert!(!eval("$.outputs.t == None", &out));
}

#[test]
fn keywords_are_lower_case_only() {
    for source in [
        "true AND true",
        "true Or true",
        "NOT true",
        "1 IN [1]",
        "1 In [1]",
    ] {
        assert!(
            matches!(parse_err(source), ExprError::UnknownWord { .. }),
            "{source}"
        );
    }
}

#[test]
fn bare_words_are_parse_errors() {
    for (source, word, offset) in [
        ("foo", "foo", 0),
        ("$.outputs.status == ok", "ok", 20),
        ("outputs.a == 1", "outputs", 0),
        ("true and yes", "yes", 9),
        ("x_1 == 1", "x_1", 0),
    ] {
        match parse_err(source) {
            ExprError::UnknownWord { word: w, at } => {
                assert_eq!(w, word, "{source}");
                assert_eq!(at.offset, offset, "{source}");
            }
            e => panic!("{source}: expected UnknownWord, got {e:?}"),
        }
    }
}

#[test]
fn empty_expression_is_an_error() {
    for source in ["", " ", "\t\n  \r"] {
        assert!(
            matches!(parse_err(source), ExprError::Empty { .. }),
            "{source:?}"
        );
    }
}

#[test]
fn unterminated_string_is_a_parse_error_with_its_position() {
    assert_eq!(
        parse_err("$.outputs.s == 'abc"),
        ExprError::UnterminatedString {
            quote: '\'',
            at: Position {
                offset: 15,
                column: 16
            }
        }
    );
    assert!(matches!(
        parse_err(r#""abc\""#),
        ExprError::UnterminatedString { quote: '"', .. }
    ));
    assert!(matches!(
        parse_err(r"'abc\"),
        ExprError::InvalidEscape { .. } | ExprError::UnterminatedString { .. }
    ));
}

#[test]
fn not_in_is_a_parse_error() {
    for source in [
        "$.outputs.a not in [1]",
        "not in [1]",
        "1 not in [1] and true",
    ] {
        assert!(
            matches!(parse_err(source), ExprError::NotInUnsupported { .. }),
            "{source}: {:?}",
            parse_err(source)
        );
    }
    // The supported spelling works.
    assert!(eval("not ($.outputs.a in [1])", &json!({ "a": 2 })));
}

#[test]
fn trailing_tokens_are_parse_errors() {
    for (source, found, offset) in [
        ("$.outputs.a $.outputs.b", "$.outputs.b", 12),
        ("1 == 1 2", "2", 7),
        ("true 'x'", "'x'", 5),
        ("true [1]", "[", 5),
        ("true not", "not", 5),
    ] {
        match parse_err(source) {
            ExprError::TrailingInput { found: f, at } => {
                assert_eq!(f, found, "{source}");
                assert_eq!(at.offset, offset, "{source}");
            }
            e => panic!("{source}: expected TrailingInput, got {e:?}"),
        }
    }
}

#[test]
fn missing_operands_are_parse_errors() {
    for source in ["$.outputs.a ==", "not", "true and", "true or", "1 in"] {
        let e = parse_err(source);
        assert!(
            matches!(
                e,
                ExprError::UnexpectedEnd { .. } | ExprError::InRequiresList { .. }
            ),
            "{source}: {e:?}"
        );
        assert_eq!(e.position().offset, source.len(), "{source}");
    }
    for source in ["== 1", "and true", "true and or false", "1 == == 1", "()"] {
        assert!(
            matches!(parse_err(source), ExprError::UnexpectedToken { .. }),
            "{source}: {:?}",
            parse_err(source)
        );
    }
}

#[test]
fn unbalanced_parentheses_are_parse_errors() {
    assert_eq!(
        parse_err("(true and (false)"),
        ExprError::UnclosedDelimiter {
            delimiter: '(',
            at: Position {
                offset: 0,
                column: 1
            }
        }
    );
    assert_eq!(
        parse_err("(true))"),
        ExprError::UnmatchedDelimiter {
            delimiter: ')',
            at: Position {
                offset: 6,
                column: 7
            }
        }
    );
    assert!(matches!(
        parse_err(")"),
        ExprError::UnmatchedDelimiter { delimiter: ')', .. }
    ));
    assert!(matches!(
        parse_err("true ]"),
        ExprError::UnmatchedDelimiter { delimiter: ']', .. }
    ));
    assert!(matches!(
        parse_err("(1 == 1"),
        ExprError::UnclosedDelimiter { delimiter: '(', .. }
    ));
}

#[test]
fn single_equals_and_bang_are_parse_errors() {
    assert!(matches!(
        parse_err("$.outputs.a = 1"),
        ExprError::UnexpectedCharacter {
            ch: '=',
            at: Position { offset: 12, .. }
        }
    ));
    assert!(matches!(
        parse_err("!true"),
        ExprError::UnexpectedCharacter { ch: '!', .. }
    ));
}

#[test]
fn bare_path_or_literal_is_a_whole_expression_evaluated_by_truthiness() {
    assert!(eval("$.outputs.ok", &json!({ "ok": true })));
    assert!(!eval("$.outputs.ok", &json!({ "ok": false })));
    assert!(eval("'x'", &Value::Null));
    assert!(!eval("0", &Value::Null));
    assert!(eval("[null]", &Value::Null));
    assert!(eval(
        "$.outputs.a and not $.outputs.b",
        &json!({ "a": 1, "b": "" })
    ));
}

// ---------------------------------------------------------------------------------------
// Truthiness
// ---------------------------------------------------------------------------------------

#[test]
fn falsy_values_are_null_false_zero_empty_string_list_and_object() {
    for v in [
        json!(null),
        json!(false),
        json!(0),
        json!(0.0),
        json!(-0.0),
        json!(""),
        json!([]),
        json!({}),
    ] {
        assert!(!truthy(&v), "{v}");
        let out = json!({ "v": v });
        assert!(!eval("$.outputs.v", &out), "{v}");
        assert!(eval("not $.outputs.v", &out), "{v}");
        assert!(!eval("$.outputs.v or $.outputs.v", &out), "{v}");
    }
}

#[test]
fn every_other_value_is_truthy() {
    for v in [
        json!(true),
        json!(1),
        json!(-1),
        json!(0.1),
        json!(u64::MAX),
        json!("0"),
        json!("false"),
        json!(" "),
        json!([0]),
        json!({ "a": null }),
    ] {
        assert!(truthy(&v), "{v}");
        let out = json!({ "v": v });
        assert!(eval("$.outputs.v", &out), "{v}");
        assert!(!eval("not $.outputs.v", &out), "{v}");
        assert!(eval("$.outputs.v and $.outputs.v", &out), "{v}");
    }
}

// ---------------------------------------------------------------------------------------
// Equality
// ---------------------------------------------------------------------------------------

#[test]
fn numbers_compare_by_value() {
    let out = json!({ "i": 1, "f": 1.0, "l": [1, { "x": 2 }], "z": 0 });
    assert!(eval("$.outputs.i == 1.0", &out));
    assert!(eval("$.outputs.f == 1", &out));
    assert!(eval("$.outputs.i == $.outputs.f", &out));
    assert!(eval("$.outputs.l != [1.5]", &out));
    assert!(eval("$.outputs.z == -0.0", &out));
    assert!(json_eq(
        &json!([1, { "x": 2 }]),
        &json!([1.0, { "x": 2.0 }])
    ));
    assert!(json_eq(&json!({ "a": [1e2] }), &json!({ "a": [100] })));
}

#[test]
fn numbers_inside_list_literals_compare_by_value() {
    let out = json!({ "l": [1, [2, 3]] });
    assert!(eval("$.outputs.l == [1.0, [2.0, 3e0]]", &out));
    assert!(!eval("$.outputs.l == [1.0, [2.0, 3.5]]", &out));
}

#[test]
fn large_integers_compare_exactly() {
    let out = json!({ "max": u64::MAX, "min": i64::MIN, "p": 9_007_199_254_740_993_u64 });
    assert!(eval("$.outputs.max == 18446744073709551615", &out));
    assert!(!eval("$.outputs.max == 18446744073709551614", &out));
    assert!(eval("$.outputs.min == -9223372036854775808", &out));
    // 2^53 + 1 is not 2^53, even though they are the same f64.
    assert!(!eval("$.outputs.p == 9007199254740992.0", &out));
    assert!(eval("$.outputs.p != 9007199254740992", &out));
}

#[test]
fn true_is_not_equal_to_one() {
    let out = json!({ "t": true, "one": 1 });
    assert!(!eval("$.outputs.t == 1", &out));
    assert!(eval("$.outputs.t != 1", &out));
    assert!(!eval("$.outputs.one == true", &out));
    assert!(!eval("false == 0", &out));
}

#[test]
fn values_of_different_types_are_unequal() {
    let out = json!({ "n": null, "s": "1", "z": 0, "e": "", "l": [], "o": {} });
    for source in [
        "$.outputs.n == 0",
        "$.outputs.n == ''",
        "$.outputs.n == false",
        "$.outputs.s == 1",
        "$.outputs.z == '0'",
        "$.outputs.e == []",
        "$.outputs.l == $.outputs.o",
        "$.outputs.l == null",
    ] {
        assert!(!eval(source, &out), "{source}");
        let negated = source.replace("==", "!=");
        assert!(eval(&negated, &out), "{negated}");
    }
}

#[test]
fn object_equality_ignores_key_order() {
    assert!(json_eq(
        &json!({ "a": 1, "b": [2] }),
        &serde_json::from_str::<Value>(r#"{"b":[2.0],"a":1}"#).unwrap()
    ));
    assert!(!json_eq(&json!({ "a": 1 }), &json!({ "a": 1, "b": 2 })));
    assert!(!json_eq(&json!({ "a": 1 }), &json!({ "b": 1 })));
}

#[test]
fn strings_compare_exactly() {
    let out = json!({ "s": "Ok" });
    assert!(!eval("$.outputs.s == 'ok'", &out));
    assert!(eval("$.outputs.s == 'Ok'", &out));
}

// ---------------------------------------------------------------------------------------
// Ordering
// ---------------------------------------------------------------------------------------

#[test]
fn numbers_order_by_value_across_integers_and_decimals() {
    let out = json!({ "score": 0.85, "n": 1 });
    assert!(eval("1 < 1.5", &out));
    assert!(eval("$.outputs.score >= 0.8", &out));
    assert!(!eval("$.outputs.score >= 0.9", &out));
    assert!(eval("$.outputs.n <= 1.0 and $.outputs.n >= 1.0", &out));
    assert!(!eval("$.outputs.n < 1.0 or $.outputs.n > 1.0", &out));
    assert!(eval("-2 < -1.5", &out));
    assert!(eval("2 > 1.999", &out));
    assert!(eval("-1e3 < 0", &out));
}

#[test]
fn large_u64_and_i64_order_correctly() {
    let out = json!({ "max": u64::MAX, "min": i64::MIN, "imax": i64::MAX, "p": 9_007_199_254_740_993_u64 });
    assert!(eval("$.outputs.max > 18446744073709551614", &out));
    assert!(eval("$.outputs.max > $.outputs.imax", &out));
    assert!(eval("$.outputs.min < -9223372036854775807", &out));
    assert!(eval("$.outputs.min < $.outputs.max", &out));
    assert!(eval("$.outputs.p > 9007199254740992.0", &out));
    assert!(eval(
        "$.outputs.max < 1e20 and $.outputs.max > 1.8e19",
        &out
    ));
    assert!(eval("$.outputs.max < 18446744073709551616", &out)); // 2^64 becomes a float
}

#[test]
fn strings_order_lexicographically() {
    assert!(eval("'apple' < 'banana'", &Value::Null));
    assert!(eval("'Z' < 'a'", &Value::Null));
    assert!(eval("'ab' > 'a'", &Value::Null));
    assert!(eval("'é' > 'z'", &Value::Null));
    assert!(eval("'abc' <= 'abc' and 'abc' >= 'abc'", &Value::Null));
    assert!(eval("'10' < '9'", &Value::Null));
}

#[test]
fn different_types_make_ordering_comparisons_false() {
    let out = json!({ "n": null, "s": "1", "l": [1], "o": { "a": 1 }, "b": true });
    for (a, b) in [
        ("$.outputs.n", "1"),
        ("$.outputs.s", "2"),
        ("$.outputs.l", "[2]"),
        ("$.outputs.o", "$.outputs.o"),
        ("$.outputs.b", "false"),
        ("$.outputs.n", "null"),
        ("$.outputs.missing", "0"),
    ] {
        for op in ["<", "<=", ">", ">="] {
            let source = format!("{a} {op} {b}");
            assert!(!eval(&source, &out), "{source}");
            let reversed = format!("{b} {op} {a}");
            assert!(!eval(&reversed, &out), "{reversed}");
        }
    }
    assert!(eval("not ($.outputs.n < 1)", &out));
    assert!(eval("not (null < 1)", &out));
}

// ---------------------------------------------------------------------------------------
// `in`
// ---------------------------------------------------------------------------------------

#[test]
fn in_is_true_when_some_element_equals() {
    let out = json!({ "status": "ok", "n": 2 });
    assert!(eval("$.outputs.status in ['ok', 'done']", &out));
    assert!(!eval("$.outputs.status in ['failed', 'done']", &out));
    assert!(eval("$.outputs.n in [1, 2, 3]", &out));
}

#[test]
fn in_uses_value_equality() {
    let out = json!({ "n": 1, "l": [1, 2], "t": true });
    assert!(eval("$.outputs.n in [1.0]", &out));
    assert!(eval("$.outputs.l in [[1.0, 2]]", &out));
    assert!(!eval("$.outputs.t in [1, 'true']", &out));
    assert!(eval("$.outputs.missing in [None]", &out));
}

#[test]
fn in_an_empty_list_is_false() {
    assert!(!eval("$.outputs in []", &Value::Null));
    assert!(eval("not ($.outputs in [])", &Value::Null));
}

#[test]
fn in_requires_a_list_literal() {
    for (source, found) in [
        ("$.outputs.a in $.outputs.b", "$.outputs.b"),
        ("'a' in 'abc'", "'abc'"),
        ("1 in (1)", "("),
        ("1 in", ""),
    ] {
        match parse_err(source) {
            ExprError::InRequiresList { found: f, .. } => assert_eq!(f, found, "{source}"),
            e => panic!("{source}: expected InRequiresList, got {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Nesting, size and adversarial input
// ---------------------------------------------------------------------------------------

#[test]
fn nesting_of_exactly_64_is_accepted() {
    let parens = format!("{}true{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(eval(&parens, &Value::Null));
    let nots = format!("{}true", "not ".repeat(MAX_DEPTH));
    assert!(eval(&nots, &Value::Null)); // 64 is even
    let lists = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(eval(&lists, &Value::Null));
    let mixed_ok = format!("{}true{}", "(not ".repeat(32), ")".repeat(32));
    assert!(eval(&mixed_ok, &Value::Null));
}

#[test]
fn nesting_deeper_than_64_is_an_error_not_a_stack_overflow() {
    let parens = format!(
        "{}true{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(
        parse_err(&parens),
        ExprError::TooDeep {
            max: MAX_DEPTH,
            at: Position {
                offset: MAX_DEPTH,
                column: MAX_DEPTH + 1
            }
        }
    );
    let nots = format!("{}true", "not ".repeat(MAX_DEPTH + 1));
    assert!(matches!(parse_err(&nots), ExprError::TooDeep { .. }));
    let lists = format!(
        "1 in {}{}",
        "[".repeat(MAX_DEPTH + 1),
        "]".repeat(MAX_DEPTH + 1)
    );
    assert!(matches!(parse_err(&lists), ExprError::TooDeep { .. }));
    let mixed = format!("{}true{}", "(not ".repeat(33), ")".repeat(33));
    assert!(matches!(parse_err(&mixed), ExprError::TooDeep { .. }));
}

#[test]
fn a_hundred_thousand_nested_parentheses_are_an_error_not_a_stack_overflow() {
    let n = 100_000;
    for source in [
        format!("{}true{}", "(".repeat(n), ")".repeat(n)),
        "(".repeat(n),
        "not ".repeat(n),
        "[".repeat(n),
        format!("1 in {}", "[".repeat(n)),
        "(not ".repeat(n),
    ] {
        assert!(matches!(
            parse_err_quiet(&source),
            ExprError::TooDeep { max: MAX_DEPTH, .. }
        ));
    }
}

#[test]
fn a_megabyte_long_or_chain_parses_and_evaluates() {
    let clause = "$.outputs.a == 1 or ";
    let count = 1_000_000 / clause.len();
    let mut source = clause.repeat(count);
    source.push_str("$.outputs.a == 2");
    let expr = Expression::parse(&source).unwrap();
    assert!(expr.evaluate(&json!({ "a": 2 })));
    assert!(expr.evaluate(&json!({ "a": 1 })));
    assert!(!expr.evaluate(&json!({ "a": 3 })));
    drop(expr);
}

#[test]
fn a_megabyte_long_and_chain_parses_and_evaluates() {
    let clause = "not $.outputs.a == 1 and ";
    let count = 1_000_000 / clause.len();
    let mut source = clause.repeat(count);
    source.push_str("$.outputs.b");
    let expr = Expression::parse(&source).unwrap();
    assert!(expr.evaluate(&json!({ "a": 2, "b": true })));
    assert!(!expr.evaluate(&json!({ "a": 1, "b": true })));
    assert!(!expr.evaluate(&json!({ "a": 2, "b": false })));
}

#[test]
fn a_long_chain_with_an_error_at_the_end_reports_the_right_position() {
    let mut source = "$.outputs.a == 1 or ".repeat(10_000);
    let offset = source.len();
    source.push_str("or");
    let e = parse_err_quiet(&source);
    assert!(matches!(e, ExprError::UnexpectedToken { .. }), "{e}");
    assert_eq!(e.position().offset, offset);
}

#[test]
fn unicode_anywhere_gives_errors_with_char_positions() {
    let e = parse_err("é");
    assert_eq!(
        e,
        ExprError::UnexpectedCharacter {
            ch: 'é',
            at: Position {
                offset: 0,
                column: 1
            }
        }
    );
    let e = parse_err("'日本' == 日本");
    assert_eq!(
        e,
        ExprError::UnexpectedCharacter {
            ch: '日',
            at: Position {
                offset: 12,
                column: 9
            }
        }
    );
    let e = parse_err("'😀' == 1 )");
    assert_eq!(
        e.position(),
        Position {
            offset: 12,
            column: 10
        }
    );
    assert!(matches!(
        parse_err("$.outputs.café == 1"),
        ExprError::InvalidPath {
            at: Position {
                offset: 13,
                column: 14
            },
            ..
        }
    ));
    assert!(matches!(
        parse_err("'😀"),
        ExprError::UnterminatedString {
            at: Position {
                offset: 0,
                column: 1
            },
            ..
        }
    ));
    // Errors render without panicking.
    for source in [
        "é",
        "'日本' == 日本",
        "1 == 1 '😀",
        "😀😀😀 and",
        "1é",
        "$.outputs.é",
    ] {
        let e = parse_err(source);
        assert!(!e.to_string().is_empty());
        assert!(source.is_char_boundary(e.position().offset), "{source}");
    }
}

#[test]
fn unicode_strings_compare_as_values() {
    let out = json!({ "name": "Zoë 😀" });
    assert!(eval("$.outputs.name == 'Zoë 😀'", &out));
    assert!(eval("$.outputs.name in [\"Zoë 😀\", 'x']", &out));
}

#[test]
fn unicode_whitespace_separates_tokens() {
    assert!(eval("true\u{00A0}and\u{3000}true", &Value::Null));
}

#[test]
fn nul_bytes_are_rejected_with_their_position() {
    assert_eq!(
        parse_err("true \0"),
        ExprError::UnexpectedCharacter {
            ch: '\0',
            at: Position {
                offset: 5,
                column: 6
            }
        }
    );
    // Inside a string a NUL byte is just a character.
    assert!(eval("$.outputs.s == 'a\0b'", &json!({ "s": "a\u{0}b" })));
}

#[test]
fn long_offending_text_is_truncated_in_errors() {
    let source = format!("true {}", "x".repeat(10_000));
    match parse_err_quiet(&source) {
        ExprError::UnknownWord { word, .. } => assert!(word.chars().count() <= 41),
        e => panic!("expected UnknownWord, got {e:?}"),
    }
}

/// A value nested `depth` levels deep: `[[[...[leaf]...]]]` or `{"k":{"k":...}}`.
fn deep_value(depth: usize, leaf: Value, object: bool) -> Value {
    let mut v = leaf;
    for _ in 0..depth {
        v = if object {
            // Not `json!({ "k": v })`: that would serialize `v` (recursively) into a copy.
            let mut map = serde_json::Map::new();
            map.insert("k".to_owned(), v);
            Value::Object(map)
        } else {
            Value::Array(vec![v])
        };
    }
    v
}

/// Drops `values` on a thread with a large stack: `serde_json::Value`'s own `Drop` is
/// recursive and would overflow a test thread's stack on 100k-deep values.
fn drop_on_big_stack(values: Vec<Value>) {
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || drop(values))
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn json_eq_on_deeply_nested_values_does_not_overflow_the_stack() {
    let depth = 100_000;
    let a = deep_value(depth, json!(1), false);
    let b = deep_value(depth, json!(1.0), false);
    let c = deep_value(depth, json!(2), false);
    let oa = deep_value(depth, json!(1), true);
    let ob = deep_value(depth, json!(1.0), true);
    assert!(json_eq(&a, &b));
    assert!(!json_eq(&a, &c));
    assert!(json_eq(&oa, &ob));
    assert!(!json_eq(&a, &oa));
    // Through the expression language too: a deep output against a path.
    let out = json!({ "deep": Value::Null });
    let expr = Expression::parse("$.outputs.deep == null").unwrap();
    assert!(expr.evaluate(&out));
    drop_on_big_stack(vec![a, b, c, oa, ob]);
}

#[test]
fn evaluating_against_deeply_nested_output_does_not_overflow_the_stack() {
    let deep = deep_value(100_000, json!(1), false);
    let out = json!({ "d": Value::Null });
    let mut out = out;
    out["d"] = deep;
    let expr = Expression::parse("$.outputs.d == [[1]] or $.outputs.d in [[], 1]").unwrap();
    assert!(!expr.evaluate(&out));
    assert!(Expression::parse("$.outputs.d").unwrap().evaluate(&out));
    drop_on_big_stack(vec![out]);
}

// ---------------------------------------------------------------------------------------
// Helpers and API
// ---------------------------------------------------------------------------------------

#[test]
fn lookup_path_returns_references_into_the_value() {
    let root = json!({ "a": { "b": [1] } });
    assert!(std::ptr::eq(
        lookup_path(&root, &["a", "b"]),
        &root["a"]["b"]
    ));
    assert!(std::ptr::eq(lookup_path(&root, &[] as &[&str]), &root));
    assert_eq!(lookup_path(&root, &["a", "x"]), &Value::Null);
    assert_eq!(lookup_path(&root, &["a", "b", "c"]), &Value::Null);
    assert_eq!(lookup_path(&json!(3), &[String::from("a")]), &Value::Null);
}

#[test]
fn json_eq_distinguishes_types_and_compares_numbers_by_value() {
    assert!(json_eq(&json!(1), &json!(1.0)));
    assert!(json_eq(&json!(0), &json!(-0.0)));
    assert!(!json_eq(&json!(1), &json!(true)));
    assert!(!json_eq(&json!(null), &json!(0)));
    assert!(!json_eq(&json!([1]), &json!([1, 1])));
    assert!(!json_eq(&json!([[1]]), &json!([1])));
    assert!(json_eq(&json!("a"), &json!("a")));
}

#[test]
fn expression_displays_and_returns_its_source() {
    let source = "$.outputs.score >= 0.8 and $.outputs.status == 'ok'";
    let expr = Expression::parse(source).unwrap();
    assert_eq!(expr.source(), source);
    assert_eq!(expr.to_string(), source);
    let from_str: Expression = source.parse().unwrap();
    assert_eq!(from_str, expr);
    assert!(from_str.evaluate(&json!({ "score": 0.8, "status": "ok" })));
}

#[test]
fn expression_and_error_are_clone_send_sync() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    assert_traits::<Expression>();
    assert_traits::<ExprError>();
    let e = parse_err("1 <");
    assert_eq!(e.clone(), e);
}

#[test]
fn error_messages_say_what_and_where() {
    let message = parse_err("$.outputs.a == 'abc").to_string();
    assert!(message.contains("unterminated string"), "{message}");
    assert!(message.contains("column 16"), "{message}");
    assert!(message.contains("byte 15"), "{message}");
    let message = parse_err("true AND false").to_string();
    assert!(message.contains("AND"), "{message}");
    assert!(message.contains("lower case"), "{message}");
    let message = parse_err("1 < 2 < 3").to_string();
    assert!(message.contains("chained comparison"), "{message}");
}
