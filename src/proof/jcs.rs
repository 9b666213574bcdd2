//! RFC 8785 JSON Canonicalization Scheme (JCS) over `serde_json::Value`.
//!
//! Every byte that is hashed or signed in this project goes through [`canonicalize`]. The
//! rules that matter (spec/mlflow-profile.md §1.6): object keys sorted by UTF-16 code units,
//! every number (integers too) written as ECMAScript `Number.prototype.toString` of the
//! IEEE-754 double, literal UTF-8, minimal escaping.
//!
//! The byte-level work is done by `serde_jcs` (checked against node's own `String(x)` and
//! `JSON.stringify` in `tests/jcs_node_oracle.rs`). This module adds what the crate does not:
//!
//! * [`parse`] reads untrusted JSON text with the two rejections the spec requires *before*
//!   any recursive code sees it: nesting deeper than [`MAX_DEPTH`] and lone UTF-16 surrogate
//!   escapes (`"\uD800"`). Both are found by one iterative byte scan, so a hostile
//!   100,000-deep document costs a linear scan and never a stack overflow.
//! * [`check_depth`] applies the same depth bound, iteratively, to values built in memory.
//! * [`number`] turns an `f64` into a JSON number or a typed error for NaN/±Infinity
//!   (`serde_json::json!(f64::NAN)` silently yields `null`, which would hash the wrong thing).

use serde_json::Value;

/// Deepest container nesting accepted (ar-io-proof spec v1.4 §2 invariant 7): the root
/// container is depth 1, each nested object or array adds one, scalars add nothing.
pub const MAX_DEPTH: usize = 128;

/// Why a JSON text or value cannot be canonicalized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// The text is not JSON (syntax error, not UTF-8, trailing data, NaN literal, …).
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// A `\uD800`–`\uDFFF` escape that is not part of a surrogate pair.
    #[error("lone UTF-16 surrogate escape at byte {offset}; RFC 8785 cannot encode it")]
    LoneSurrogate {
        /// Byte offset of the offending `\u` escape in the input text.
        offset: usize,
    },
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} containers")]
    TooDeep,
    /// NaN or ±Infinity, which JSON (and so JCS) cannot represent.
    #[error("number {0} is not finite; JSON cannot represent NaN or Infinity")]
    NonFiniteNumber(String),
    /// Serialization failed inside the canonicalizer (not expected for a `Value`).
    #[error("canonicalization failed: {0}")]
    Serialize(String),
}

impl JcsError {
    /// A short machine-readable reason code, used in verdicts.
    pub fn reason_code(&self) -> &'static str {
        match self {
            JcsError::NotJson(_) => "not_json",
            JcsError::LoneSurrogate { .. } => "lone_surrogate",
            JcsError::TooDeep => "nesting_too_deep",
            JcsError::NonFiniteNumber(_) => "non_finite_number",
            JcsError::Serialize(_) => "not_canonicalizable",
        }
    }
}

/// Parses untrusted JSON text into a value, rejecting lone surrogate escapes and nesting
/// deeper than [`MAX_DEPTH`] before any recursive parsing happens.
///
/// Duplicate object keys keep the last value, as Python's `json.loads` does.
pub fn parse(text: &[u8]) -> Result<Value, JcsError> {
    scan(text)?;
    let mut de = serde_json::Deserializer::from_slice(text);
    // serde_json's own limit rejects depth 128, which the spec allows; `scan` has
    // already bounded the depth to MAX_DEPTH, so the recursive parser is safe.
    de.disable_recursion_limit();
    let value =
        serde::Deserialize::deserialize(&mut de).map_err(|e| JcsError::NotJson(e.to_string()))?;
    de.end().map_err(|e| JcsError::NotJson(e.to_string()))?;
    Ok(value)
}

/// Canonical RFC 8785 bytes of a JSON value.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, JcsError> {
    check_depth(value)?;
    serde_jcs::to_vec(value).map_err(|e| JcsError::Serialize(e.to_string()))
}

/// Canonical RFC 8785 text of a JSON value (the same bytes as [`canonicalize`]).
pub fn canonicalize_to_string(value: &Value) -> Result<String, JcsError> {
    let bytes = canonicalize(value)?;
    String::from_utf8(bytes).map_err(|e| JcsError::Serialize(e.to_string()))
}

/// A JSON number for a finite `f64`; NaN and ±Infinity are an error, never `null`.
pub fn number(x: f64) -> Result<Value, JcsError> {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| JcsError::NonFiniteNumber(x.to_string()))
}

/// ECMAScript `String(x)` of a finite double, the number form JCS uses.
pub fn format_number(x: f64) -> Result<String, JcsError> {
    let value = number(x)?;
    canonicalize_to_string(&value)
}

/// Checks, without recursion, that `value` nests no deeper than [`MAX_DEPTH`].
pub fn check_depth(value: &Value) -> Result<(), JcsError> {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > MAX_DEPTH {
            return Err(JcsError::TooDeep);
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    Ok(())
}

/// One iterative pass over JSON text: container depth outside strings, and `\u` escapes
/// inside strings checked for surrogate pairing. Syntax errors are left to the parser.
fn scan(text: &[u8]) -> Result<(), JcsError> {
    let mut depth = 0usize;
    let mut i = 0usize;
    let mut in_string = false;
    // Offset of a high-surrogate escape still waiting for its low half.
    let mut pending_high: Option<usize> = None;
    while i < text.len() {
        let b = text[i];
        if !in_string {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(JcsError::TooDeep);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'\\' => {
                let Some(&esc) = text.get(i + 1) else { break };
                if esc == b'u' {
                    let unit = text
                        .get(i + 2..i + 6)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u16::from_str_radix(h, 16).ok());
                    match unit {
                        Some(0xD800..=0xDBFF) => {
                            if let Some(at) = pending_high {
                                return Err(JcsError::LoneSurrogate { offset: at });
                            }
                            pending_high = Some(i);
                        }
                        Some(0xDC00..=0xDFFF) => {
                            if pending_high.take().is_none() {
                                return Err(JcsError::LoneSurrogate { offset: i });
                            }
                        }
                        _ => {
                            if let Some(at) = pending_high {
                                return Err(JcsError::LoneSurrogate { offset: at });
                            }
                        }
                    }
                    i += 6;
                } else {
                    if let Some(at) = pending_high {
                        return Err(JcsError::LoneSurrogate { offset: at });
                    }
                    i += 2;
                }
            }
            _ => {
                if let Some(at) = pending_high {
                    return Err(JcsError::LoneSurrogate { offset: at });
                }
                if b == b'"' {
                    in_string = false;
                }
                i += 1;
            }
        }
    }
    if let Some(at) = pending_high {
        return Err(JcsError::LoneSurrogate { offset: at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jcs(text: &str) -> String {
        canonicalize_to_string(&parse(text.as_bytes()).expect("parse")).expect("jcs")
    }

    #[test]
    fn numbers_follow_ecmascript_including_integers() {
        assert_eq!(jcs("[9007199254740993]"), "[9007199254740992]");
        assert_eq!(jcs("[-9223372036854775808]"), "[-9223372036854776000]");
        assert_eq!(jcs("[1000000000000000000000]"), "[1e+21]");
        assert_eq!(
            jcs("[1.0,-0.0,4.50,1e30,1e-7,0.000001,5e-324]"),
            "[1,0,4.5,1e+30,1e-7,0.000001,5e-324]"
        );
        assert_eq!(format_number(0.1 + 0.2).unwrap(), "0.30000000000000004");
    }

    #[test]
    fn keys_sort_by_utf16_code_units_not_code_points() {
        // U+1F600 is D83D DE00 in UTF-16, which sorts before U+FFFF.
        assert_eq!(
            jcs("{\"\u{FFFF}\":1,\"\u{1F600}\":2,\"a\":3}"),
            "{\"a\":3,\"\u{1F600}\":2,\"\u{FFFF}\":1}"
        );
    }

    #[test]
    fn strings_escape_minimally_and_keep_utf8_literal() {
        let v = json!({"s": "\"\\\u{8}\u{c}\n\r\t\u{1}\u{1f}/\u{7f}\u{2028}é😀"});
        assert_eq!(
            canonicalize_to_string(&v).unwrap(),
            "{\"s\":\"\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f/\u{7f}\u{2028}é😀\"}"
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(jcs(r#"{"a":1,"a":2}"#), r#"{"a":2}"#);
    }

    #[test]
    fn lone_surrogates_are_rejected_and_pairs_accepted() {
        for bad in [
            r#"["\uD800"]"#,
            r#"["\uDC00"]"#,
            r#"["\uD800\u0041"]"#,
            r#"["\uD800x"]"#,
            r#"["\uD800\uD800\uDC00"]"#,
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(JcsError::LoneSurrogate { .. })),
                "{bad}"
            );
        }
        assert_eq!(jcs(r#"["\uD83D\uDE00"]"#), "[\"😀\"]");
        // An escaped backslash followed by "uD800" is plain text, not an escape.
        assert_eq!(jcs(r#"["\\uD800"]"#), r#"["\\uD800"]"#);
    }

    #[test]
    fn depth_128_is_accepted_and_129_rejected_in_text_and_values() {
        let nested = |d: usize| "[".repeat(d) + &"]".repeat(d);
        assert!(parse(nested(128).as_bytes()).is_ok());
        assert_eq!(parse(nested(129).as_bytes()), Err(JcsError::TooDeep));
        assert_eq!(parse(nested(200_000).as_bytes()), Err(JcsError::TooDeep));
        // Brackets inside strings do not count.
        let in_string = format!("[\"{}\"]", "[".repeat(500));
        assert!(parse(in_string.as_bytes()).is_ok());

        let mut v = json!(1);
        for _ in 0..128 {
            v = json!({ "k": v });
        }
        assert!(canonicalize(&v).is_ok());
        let v = json!([v]);
        assert_eq!(canonicalize(&v), Err(JcsError::TooDeep));
    }

    #[test]
    fn non_finite_numbers_are_typed_errors() {
        assert!(matches!(
            number(f64::NAN),
            Err(JcsError::NonFiniteNumber(_))
        ));
        assert!(matches!(
            number(f64::INFINITY),
            Err(JcsError::NonFiniteNumber(_))
        ));
        assert!(matches!(parse(b"[NaN]"), Err(JcsError::NotJson(_))));
        assert!(matches!(parse(b"[Infinity]"), Err(JcsError::NotJson(_))));
        assert!(matches!(parse(b"[1e400]"), Err(JcsError::NotJson(_))));
    }

    #[test]
    fn garbage_is_not_json() {
        for bad in [&b""[..], b"{", b"{} {}", b"\xff\xfe", b"[1,]"] {
            assert!(matches!(parse(bad), Err(JcsError::NotJson(_))), "{bad:?}");
        }
    }
}
