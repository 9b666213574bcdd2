//! Shared parts of the property suites (`tests/prop_*.rs`): the runner, which counts and prints
//! the cases each property passed, and strategies for arbitrary JSON.
//!
//! Cases per property: `PROPTEST_CASES` when set (a quick local run: `PROPTEST_CASES=256 cargo
//! test`), else [`DEFAULT_CASES`]. `.ci/run` runs the default. No failure file is written: a
//! failure prints the shrunk input, and a bug it finds becomes a unit test beside the code.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{Map, Number, Value};

/// Cases per property when `PROPTEST_CASES` is unset.
pub const DEFAULT_CASES: u32 = 10_000;

/// The configured number of cases, divided by `divisor` for the few properties whose single
/// case is expensive (at least 1).
pub fn cases(divisor: u32) -> u32 {
    let configured = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(DEFAULT_CASES);
    (configured / divisor.max(1)).max(1)
}

/// Runs `test` on `cases` generated inputs and prints `property <name>: N cases passed`;
/// panics with the shrunk counterexample when one fails (or panics).
pub fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let passed = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |input| {
        let r = test(input);
        if r.is_ok() {
            passed.fetch_add(1, Ordering::Relaxed);
        }
        r
    });
    match result {
        Ok(()) => println!(
            "property {name}: {cases} cases passed ({} runs)",
            passed.load(Ordering::Relaxed)
        ),
        Err(TestError::Fail(why, input)) => {
            panic!("property {name} fails: {why}\nminimal input: {input:#?}")
        }
        Err(TestError::Abort(why)) => panic!("property {name} aborted: {why}"),
    }
}

/// Any finite double, drawn both by class (zero, subnormal, normal, extremes) and by raw bits.
pub fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        any::<u64>()
            .prop_map(f64::from_bits)
            .prop_filter("finite", |x| x.is_finite()),
        Just(0.0),
        Just(-0.0),
        Just(9007199254740993.0),
        Just(1e21),
        Just(1e-7),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
    ]
}

/// Any string: ASCII, control characters, BMP (private use too) and astral characters.
pub fn any_string(max_chars: usize) -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => proptest::char::range(' ', '~'),
        1 => proptest::char::range('\u{0}', '\u{1f}'),
        2 => proptest::char::range('\u{80}', '\u{d7ff}'),
        1 => proptest::char::range('\u{e000}', '\u{ffff}'),
        2 => proptest::char::range('\u{10000}', '\u{10ffff}'),
    ];
    proptest::collection::vec(ch, 0..=max_chars).prop_map(|cs| cs.into_iter().collect())
}

/// A JSON number: integers across the whole i64/u64 range and finite doubles.
pub fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        finite_f64().prop_map(|x| Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
    ]
}

/// A JSON scalar.
pub fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        any_string(24).prop_map(Value::String),
    ]
}

/// Any JSON value up to `depth` containers deep (the root container counts as one).
pub fn json_value(depth: u32) -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(depth, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((any_string(12), inner), 0..8)
                .prop_map(|kvs| Value::Object(kvs.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// `value` wrapped in `levels` more containers, alternating arrays and objects.
pub fn nest(value: Value, levels: usize) -> Value {
    let mut v = value;
    for i in 0..levels {
        v = if i % 2 == 0 {
            Value::Array(vec![v])
        } else {
            let mut m = Map::new();
            m.insert("k".into(), v);
            Value::Object(m)
        };
    }
    v
}

/// Container depth of a value (root container = 1, scalars 0), without recursion.
pub fn depth_of(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => {
                max = max.max(d + 1);
                stack.extend(items.iter().map(|c| (c, d + 1)));
            }
            Value::Object(map) => {
                max = max.max(d + 1);
                stack.extend(map.values().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Drops a value iteratively (serde_json's own drop recurses, which a 10,000-deep test value
/// would overflow on a test thread's stack).
pub fn drop_deep(value: Value) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// A field of an MLflow entity as a server might send it: usually the right shape, sometimes
/// missing, sometimes any JSON at all.
pub fn field<S>(right: S) -> impl Strategy<Value = Option<Value>>
where
    S: Strategy<Value = Value> + 'static,
{
    prop_oneof![
        6 => right.prop_map(Some),
        1 => Just(None),
        1 => json_value(3).prop_map(Some),
    ]
}

/// A field of the right shape, or missing (never of the wrong type).
pub fn present<S>(right: S) -> impl Strategy<Value = Option<Value>>
where
    S: Strategy<Value = Value> + 'static,
{
    prop_oneof![
        6 => right.prop_map(Some),
        1 => Just(None),
    ]
}

/// An object from optional fields (missing ones left out).
pub fn object(fields: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

/// A string JSON value.
pub fn json_string(max_chars: usize) -> impl Strategy<Value = Value> {
    any_string(max_chars).prop_map(Value::String)
}
