//! Property suite: RFC 8785 canonicalization (`proof::jcs`) on generated JSON.
//!
//! - canonicalize ∘ parse ∘ canonicalize is a fixed point, and the output's object keys are in
//!   strictly increasing UTF-16 order at every level;
//! - any JSON nested ≤ 128 deep without lone surrogates canonicalizes, from a value and from text;
//! - deeper nesting (129 … 10,000) and lone surrogate escapes are the typed errors, never a panic
//!   or a stack overflow; strings up to 1 MB round-trip;
//! - arbitrary bytes (and damaged JSON) given to `parse` are a value or an error, never a panic.

#[path = "prop_support/mod.rs"]
mod prop_support;

use std::fmt;

use ario_mlflow_worker::proof::jcs::{self, JcsError, MAX_DEPTH};
use prop_support::{cases, check, depth_of, drop_deep, json_value, nest};
use proptest::prelude::*;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// JSON as written, object keys in text order (serde_json's `Map` sorts them).
#[derive(Debug)]
enum Ordered {
    Scalar,
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(x) = a.next_element()? {
                    items.push(x);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = a.next_entry()? {
                    entries.push((k, v));
                }
                Ok(Ordered::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// The first pair of keys out of UTF-16 order (or repeated), anywhere in the document.
fn keys_out_of_order(doc: &Ordered) -> Option<(String, String)> {
    let mut stack = vec![doc];
    while let Some(node) = stack.pop() {
        match node {
            Ordered::Scalar => {}
            Ordered::Array(items) => stack.extend(items),
            Ordered::Object(entries) => {
                for pair in entries.windows(2) {
                    let (a, b) = (&pair[0].0, &pair[1].0);
                    if a.encode_utf16().cmp(b.encode_utf16()) != std::cmp::Ordering::Less {
                        return Some((a.clone(), b.clone()));
                    }
                }
                stack.extend(entries.iter().map(|(_, v)| v));
            }
        }
    }
    None
}

#[test]
fn canonical_form_is_a_fixed_point_with_utf16_sorted_keys() {
    check(
        "jcs fixed point and key order",
        cases(1),
        json_value(8),
        |v| {
            let first = jcs::canonicalize(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let reparsed = jcs::parse(&first).map_err(|e| {
                TestCaseError::fail(format!("canonical output does not parse: {e}"))
            })?;
            let second =
                jcs::canonicalize(&reparsed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&first, &second, "canonicalize∘parse∘canonicalize moved");
            let doc: Ordered = serde_json::from_slice(&first)
                .map_err(|e| TestCaseError::fail(format!("canonical output: {e}")))?;
            if let Some((a, b)) = keys_out_of_order(&doc) {
                return Err(TestCaseError::fail(format!(
                    "keys {a:?} then {b:?} are not in increasing UTF-16 order"
                )));
            }
            // The same document given as text (serde_json's escaping) canonicalizes to the same.
            let text = serde_json::to_vec(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let from_text = jcs::parse(&text)
                .and_then(|p| jcs::canonicalize(&p))
                .map_err(|e| TestCaseError::fail(format!("text form: {e}")))?;
            prop_assert_eq!(first, from_text);
            Ok(())
        },
    );
}

#[test]
fn any_json_up_to_depth_128_canonicalizes_and_deeper_is_too_deep() {
    check(
        "jcs depth limit (1..=10,000 levels)",
        cases(1),
        (
            json_value(2),
            prop_oneof![
                4 => 0usize..=126,
                2 => 120usize..=140,
                1 => 140usize..=10_000,
            ],
        ),
        |(inner, extra)| {
            // The text is wrapped by hand: serde_json's serializer recurses per level.
            let inner_text =
                serde_json::to_string(&inner).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let text = nest_text(&inner_text, extra);
            let v = nest(inner, extra);
            let depth = depth_of(&v);
            let from_value = jcs::canonicalize(&v);
            let from_text = jcs::parse(&text);
            drop_deep(v);
            if depth <= MAX_DEPTH {
                prop_assert!(from_value.is_ok(), "depth {depth}: {from_value:?}");
                let parsed = from_text.map_err(|e| TestCaseError::fail(e.to_string()))?;
                let again = jcs::canonicalize(&parsed);
                drop_deep(parsed);
                prop_assert_eq!(again.ok(), from_value.ok());
            } else {
                prop_assert_eq!(
                    from_value.err(),
                    Some(JcsError::TooDeep),
                    "value, depth {}",
                    depth
                );
                prop_assert_eq!(
                    from_text.err(),
                    Some(JcsError::TooDeep),
                    "text, depth {}",
                    depth
                );
            }
            Ok(())
        },
    );
}

/// The text of [`nest`]: `inner` wrapped in `levels` containers, alternating `[…]` and `{"k":…}`.
fn nest_text(inner: &str, levels: usize) -> Vec<u8> {
    let mut open = String::new();
    let mut close = String::new();
    for i in (0..levels).rev() {
        open.push_str(if i % 2 == 0 { "[" } else { "{\"k\":" });
    }
    for i in 0..levels {
        close.push(if i % 2 == 0 { ']' } else { '}' });
    }
    format!("{open}{inner}{close}").into_bytes()
}

/// `\uXXXX` for a code unit.
fn escape(unit: u16) -> String {
    format!("\\u{unit:04x}")
}

#[test]
fn lone_surrogate_escapes_are_refused_and_pairs_are_accepted() {
    let unit = prop_oneof![
        (0x20u16..0xd800).boxed(),
        (0xd800u16..0xdc00).boxed(),
        (0xdc00u16..0xe000).boxed(),
        (0xe000u16..=0xffff).boxed(),
    ];
    check(
        "jcs surrogate escapes",
        cases(1),
        (
            proptest::collection::vec(unit, 1..6),
            "[a-z]{0,4}",
            any::<bool>(),
        ),
        |(units, plain, as_key)| {
            let escaped: String = units.iter().map(|&u| escape(u)).collect();
            let body = format!("{plain}{escaped}{plain}");
            let text = if as_key {
                format!("{{\"{body}\": 1}}")
            } else {
                format!("[\"{body}\"]")
            };
            let decoded = String::from_utf16(&units);
            let result = jcs::parse(text.as_bytes());
            match decoded {
                Ok(s) => {
                    let v = result.map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
                    let got = if as_key {
                        v.as_object().and_then(|m| m.keys().next().cloned())
                    } else {
                        v[0].as_str().map(str::to_owned)
                    };
                    prop_assert_eq!(got, Some(format!("{plain}{s}{plain}")));
                    prop_assert!(jcs::canonicalize(&v).is_ok());
                }
                Err(_) => prop_assert!(
                    matches!(result, Err(JcsError::LoneSurrogate { .. })),
                    "{}: {:?}",
                    text,
                    result
                ),
            }
            Ok(())
        },
    );
}

/// A pseudo-random string of `chars` characters from every class (ASCII, controls that JCS
/// escapes, BMP, astral), made from `seed` without proptest so a megabyte is cheap to draw.
fn big_string(seed: u64, chars: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..chars)
        .map(|_| match rng.u8(0..10) {
            0 => char::from(rng.u8(0..0x20)),
            1 => '"',
            2 => '\\',
            3..=5 => char::from(rng.u8(0x20..0x7f)),
            6 | 7 => char::from_u32(rng.u32(0x80..0xd800)).unwrap_or('x'),
            _ => char::from_u32(rng.u32(0x10000..0x110000)).unwrap_or('y'),
        })
        .collect()
}

#[test]
fn strings_up_to_a_megabyte_round_trip() {
    check(
        "jcs strings up to 1 MB",
        cases(1),
        (
            any::<u64>(),
            prop_oneof![
                98 => 0usize..2_000,
                2 => 250_000usize..=300_000,
            ],
        ),
        |(seed, chars)| {
            let s = big_string(seed, chars);
            let bytes = jcs::canonicalize(&Value::String(s.clone()))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = jcs::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back.as_str(), Some(s.as_str()));
            Ok(())
        },
    );
    // And once at the full megabyte and beyond, as value and as text.
    let s = big_string(7, 1 << 20);
    assert!(s.len() >= 1 << 20, "{} bytes", s.len());
    let bytes = jcs::canonicalize(&Value::String(s.clone())).expect("1 MB string");
    assert_eq!(
        jcs::parse(&bytes).expect("reparse").as_str(),
        Some(s.as_str())
    );
}

#[test]
fn arbitrary_bytes_are_a_value_or_an_error() {
    check(
        "jcs parse on arbitrary bytes",
        cases(1),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            // Damaged JSON: valid text with bytes overwritten, inserted or cut.
            (
                json_value(4),
                proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
                any::<prop::sample::Index>(),
            )
                .prop_map(|(v, edits, cut)| {
                    let mut t = serde_json::to_vec(&v).unwrap_or_default();
                    for (at, byte) in edits {
                        if t.is_empty() {
                            t.push(byte);
                        } else {
                            let i = at.index(t.len());
                            t[i] = byte;
                        }
                    }
                    let keep = cut.index(t.len() + 1);
                    t.truncate(keep.max(t.len() / 2));
                    t
                }),
            // Brackets only: deep, unbalanced, mixed.
            proptest::collection::vec(
                prop::sample::select(vec![b'[', b']', b'{', b'}', b',', b':', b'"', b'1']),
                0..4_000
            ),
        ],
        |bytes| {
            if let Ok(v) = jcs::parse(&bytes) {
                prop_assert!(
                    depth_of(&v) <= MAX_DEPTH,
                    "parse accepted depth {}",
                    depth_of(&v)
                );
                prop_assert!(jcs::canonicalize(&v).is_ok());
                drop_deep(v);
            }
            Ok(())
        },
    );
}
