//! Property suite: signed envelopes (`proof::envelope`) as the anchorer makes them
//! (`anchor::sign::sign_event`, the profile's nine fields).
//!
//! - sign → verify round-trips for arbitrary payloads, subjects and chain links;
//! - changing any one character of the signature, any one bit of the payload bytes, or any one
//!   character of any signed field makes verification fail.

#[path = "prop_support/mod.rs"]
mod prop_support;

use ario_mlflow_worker::anchor::sign::sign_event;
use ario_mlflow_worker::arweave::ItemSigner;
use ario_mlflow_worker::keys::{EnvelopeKey, KeySource};
use ario_mlflow_worker::proof::verify_envelope;
use prop_support::{any_string, cases, check, json_value};
use proptest::prelude::*;
use serde_json::Value;

/// The envelope fields the signature covers, as the profile writes them.
const SIGNED_FIELDS: [&str; 8] = [
    "event_id",
    "event_type",
    "payload_hash",
    "previous_hash",
    "public_key",
    "signed_at",
    "spec_version",
    "subject",
];

/// What to damage in a signed envelope.
#[derive(Debug, Clone)]
enum Damage {
    /// One hex digit of the signature.
    Signature(prop::sample::Index, u8),
    /// One bit of one byte of the payload bytes.
    Payload(prop::sample::Index, u8),
    /// One character of a signed field (its JSON text, for the subject).
    Field(prop::sample::Index, prop::sample::Index, char),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1u8..16).prop_map(|(i, d)| Damage::Signature(i, d)),
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Damage::Payload(i, b)),
        (
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            prop::char::any()
        )
            .prop_map(|(f, i, c)| Damage::Field(f, i, c)),
    ]
}

/// `text` with the character at `at` replaced by `with` (or by `x`/`y` when it already is).
fn replace_char(text: &str, at: prop::sample::Index, with: char) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return with.to_string();
    }
    let i = at.index(chars.len());
    let new = if chars[i] != with {
        with
    } else if with != 'x' {
        'x'
    } else {
        'y'
    };
    chars
        .iter()
        .enumerate()
        .map(|(j, &c)| if j == i { new } else { c })
        .collect()
}

#[test]
fn signed_envelopes_verify_and_any_damage_fails() {
    let key = EnvelopeKey::from_seed(&[7; 32], KeySource::Env);
    let signer = ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
    check(
        "envelope sign/verify and single-point damage",
        cases(1),
        (
            json_value(5),
            json_value(2),
            any_string(16).prop_filter("non-empty", |s| !s.is_empty()),
            prop_oneof![
                Just("GENESIS".to_string()),
                "[0-9a-f]{64}",
                "[A-Za-z0-9_-]{43}"
            ],
            damage(),
        ),
        |(payload, subject, event_type, previous, damage)| {
            let ev = sign_event(
                &event_type,
                subject,
                &previous,
                &payload,
                &key,
                &signer,
                None,
            )
            .map_err(|e| TestCaseError::fail(format!("signing failed: {e}")))?;
            let verdict = verify_envelope(&ev.envelope, Some(&ev.payload_bytes));
            prop_assert!(
                verdict.overall,
                "a fresh envelope fails: {:?}",
                verdict.reason
            );
            let mut envelope = ev.envelope.clone();
            let mut payload_bytes = ev.payload_bytes.clone();
            match damage {
                Damage::Signature(at, delta) => {
                    let sig = envelope["signature"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let mut digits: Vec<u8> = sig.into_bytes();
                    let i = at.index(digits.len());
                    let v = u8::from_str_radix(&(digits[i] as char).to_string(), 16).unwrap_or(0);
                    digits[i] = b"0123456789abcdef"[usize::from((v + delta) % 16)];
                    envelope["signature"] =
                        Value::String(String::from_utf8(digits).unwrap_or_default());
                }
                Damage::Payload(at, bit) => {
                    if payload_bytes.is_empty() {
                        payload_bytes.push(1);
                    } else {
                        let i = at.index(payload_bytes.len());
                        payload_bytes[i] ^= 1 << bit;
                    }
                }
                Damage::Field(which, at, with) => {
                    let name = SIGNED_FIELDS[which.index(SIGNED_FIELDS.len())];
                    let field = &mut envelope[name];
                    match field {
                        Value::String(s) => *s = replace_char(s, at, with),
                        other => {
                            // The subject: change one character of one of its strings, or add
                            // a member when it has none.
                            let text = serde_json::to_string(other).unwrap_or_default();
                            // A change must change the canonical bytes: two integers beyond
                            // 2^53 that round to one double are one JCS number.
                            let canonical =
                                |v: &Value| ario_mlflow_worker::proof::jcs::canonicalize(v).ok();
                            let changed =
                                match serde_json::from_str::<Value>(&replace_char(&text, at, with))
                                {
                                    Ok(v) if canonical(&v) != canonical(other) => v,
                                    _ => serde_json::json!({"changed": text}),
                                };
                            *other = changed;
                        }
                    }
                }
            }
            let verdict = verify_envelope(&envelope, Some(&payload_bytes));
            prop_assert!(
                !verdict.overall,
                "damaged envelope still verifies: {}",
                serde_json::to_string(&envelope).unwrap_or_default()
            );
            Ok(())
        },
    );
}
