//! JSON value helpers shared by the evaluator and by other edge conditions:
//! value equality ([`json_eq`]), truthiness ([`truthy`]), path lookup ([`lookup_path`])
//! and ordering ([`compare_order`]).

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// The `null` returned by [`lookup_path`] for missing values.
static NULL: Value = Value::Null;

/// JSON equality where numbers compare by value.
///
/// Like `Value`'s `==`, except that numbers are equal when they denote the same
/// mathematical value, whatever their representation: `1 == 1.0`, `0 == -0.0`.
/// The comparison is exact (no rounding through `f64`): `9007199254740993` (2^53 + 1)
/// is not equal to `9007199254740992.0`. Arrays are equal when they have the same length
/// and pairwise-equal elements; objects when they have the same keys with equal values
/// (key order does not matter). Numbers nested in arrays and objects also compare by
/// value. Values of different types are never equal (`true != 1`, `null != 0`,
/// `"1" != 1`).
///
/// The walk is iterative (an explicit work list instead of recursion), so arbitrarily
/// deeply nested values never overflow the stack. Comparing scalars, or arrays/objects
/// whose elements are scalars, does not allocate.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    let mut pending: Vec<(&Value, &Value)> = Vec::new();
    let mut current = (a, b);
    loop {
        if !shallow_eq(current.0, current.1, &mut pending) {
            return false;
        }
        match pending.pop() {
            Some(next) => current = next,
            None => return true,
        }
    }
}

/// Compares `a` and `b` one level deep: scalars fully, containers by shape and by their
/// scalar children; pairs of nested containers are pushed to `pending` for later.
fn shallow_eq<'a>(a: &'a Value, b: &'a Value, pending: &mut Vec<(&'a Value, &'a Value)>) -> bool {
    match (a, b) {
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| child_eq(x, y, pending))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(key, x)| ys.get(key).is_some_and(|y| child_eq(x, y, pending)))
        }
        _ => scalar_eq(a, b),
    }
}

/// Compares two children: scalars now, container pairs of the same kind later.
fn child_eq<'a>(x: &'a Value, y: &'a Value, pending: &mut Vec<(&'a Value, &'a Value)>) -> bool {
    match (x, y) {
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            pending.push((x, y));
            true
        }
        _ => scalar_eq(x, y),
    }
}

/// Equality of two values of which at least one is a scalar (containers are unequal to
/// everything here).
fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => number_cmp(x, y) == Some(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x == y,
        _ => false,
    }
}

/// Truthiness, as used by `not`, `and`, `or` and bare operands.
///
/// `null`, `false`, any number equal to zero (`0`, `0.0`, `-0.0`), the empty string, the
/// empty array and the empty object are false; every other value is true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => !number_is_zero(n),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

fn number_is_zero(n: &Number) -> bool {
    if let Some(i) = n.as_i64() {
        i == 0
    } else if let Some(u) = n.as_u64() {
        u == 0
    } else {
        n.as_f64() == Some(0.0)
    }
}

/// Walks `root` through nested objects, one key per segment.
///
/// With no segments, `root` itself is returned (whatever its type). A missing key, or
/// a non-object value that still has segments to walk through, yields `null` (a
/// reference to a static `Value::Null`). Never allocates.
pub fn lookup_path<'a>(root: &'a Value, segments: &[impl AsRef<str>]) -> &'a Value {
    let mut current = root;
    for segment in segments {
        current = match current {
            Value::Object(map) => match map.get(segment.as_ref()) {
                Some(child) => child,
                None => return &NULL,
            },
            _ => return &NULL,
        };
    }
    current
}

/// The order of two values for `<`, `<=`, `>`, `>=`: defined only for two numbers
/// (compared exactly by value) or two strings (compared by Unicode scalar values,
/// which is the same as byte order of their UTF-8 encodings). Any other pair has no
/// order, and every ordering comparison on it is false.
pub(crate) fn compare_order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_cmp(x, y),
        (Value::String(x), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    }
}

/// A JSON number, split into exact integers and floats.
enum Num {
    Int(i128),
    Float(f64),
}

fn classify(n: &Number) -> Option<Num> {
    if let Some(i) = n.as_i64() {
        Some(Num::Int(i128::from(i)))
    } else if let Some(u) = n.as_u64() {
        Some(Num::Int(i128::from(u)))
    } else {
        n.as_f64().map(Num::Float)
    }
}

/// Exact numeric comparison of two JSON numbers (integers are not rounded through f64).
/// `None` only for NaN, which `serde_json` numbers cannot normally hold.
pub(crate) fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (classify(a)?, classify(b)?) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
        (Num::Int(x), Num::Float(y)) => int_float_cmp(x, y),
        (Num::Float(x), Num::Int(y)) => int_float_cmp(y, x).map(Ordering::reverse),
    }
}

/// Exact comparison of an integer (within ±2^64) with a float.
fn int_float_cmp(int: i128, float: f64) -> Option<Ordering> {
    // Every integer we hold is within ±2^64, far inside ±1e30.
    const FAR: f64 = 1e30;
    if float.is_nan() {
        return None;
    }
    if float >= FAR {
        return Some(Ordering::Less);
    }
    if float <= -FAR {
        return Some(Ordering::Greater);
    }
    let floor = float.floor();
    // Exact: `floor` is an integer of magnitude below 1e30 < 2^127.
    let floor_int = floor as i128;
    match int.cmp(&floor_int) {
        Ordering::Equal if float > floor => Some(Ordering::Less),
        other => Some(other),
    }
}
