//! Signed envelopes: the family rules of spec/mlflow-profile.md §1.3–§1.5.
//!
//! An envelope is a JSON object that commits to a payload through `payload_hash` (lowercase hex
//! SHA-256 of the payload's JCS bytes) and carries an Ed25519 signature over the JCS bytes of its
//! *signed scope*: the envelope minus `signature`, minus `co_signatures` (always), minus every
//! top-level `_`-prefixed key (only for `ario.mlflow/v1[.n]` and legacy envelopes, whose `_` keys
//! are annotations such as `_tx_id`).
//!
//! Verification never fails with an error: every outcome is a [`Verdict`] whose fields mirror the
//! reference adapter's (`signature_valid`, tri-state `payload_hash_valid`,
//! `spec_version_status`, `legacy_envelope`, `overall`, `reason`). Like the reference kernel,
//! it does not judge `event_id`, `signed_at`, `subject` or `previous_hash` formats (§1.2).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use serde_json::{Map, Value};

use super::hash::sha256_hex;
use super::jcs::{self, JcsError};
use super::spec_version::{SpecVersion, SpecVersionStatus};

/// Why an envelope could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Envelopes are JSON objects.
    #[error("an envelope must be a JSON object")]
    NotAnObject,
    /// Signing twice would silently replace a signature.
    #[error("the envelope already carries a signature; refusing to sign it again")]
    AlreadySigned,
    /// External-commitment envelopes must name their payload hash.
    #[error("the envelope has neither `payload_hash` nor an inline `payload` to compute it from")]
    MissingPayloadHash,
    /// An inline payload whose hash differs from the stated `payload_hash`.
    #[error("`payload_hash` {stated} does not match the inline payload's hash {computed}")]
    PayloadHashMismatch {
        /// The envelope's `payload_hash`.
        stated: String,
        /// SHA-256 of the inline payload's JCS bytes.
        computed: String,
    },
    /// A `public_key` already present that is not the signing key's.
    #[error("`public_key` {stated} is not the signing key's public key {actual}")]
    PublicKeyMismatch {
        /// The envelope's `public_key`.
        stated: String,
        /// The signing key's public key, hex.
        actual: String,
    },
    /// The envelope (or its inline payload) cannot be canonicalized.
    #[error("cannot canonicalize the envelope: {0}")]
    Canonicalize(#[from] JcsError),
    /// The signer could not sign (a token away, a refused PIN, a key that is not the one
    /// expected).
    #[error("{0}")]
    Signer(#[from] SignerFailure),
}

/// Why a signer made no signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the signer could not sign: {message}")]
pub struct SignerFailure {
    /// What happened, for people (never a PIN or a key).
    pub message: String,
    /// Whether trying again later may succeed (a token removed, a session lost) rather than
    /// needing an operator (a wrong key label, a refused PIN, a mechanism the token lacks).
    pub transient: bool,
}

/// What makes an envelope's Ed25519 signature: a key in memory ([`SigningKey`]) or one held by
/// a token (`keys::Pkcs11Signer`). Ed25519 is deterministic: one key gives the same bytes
/// whichever holds it.
pub trait EnvelopeSigner {
    /// The 32-byte public key (what `public_key` carries).
    fn public_key(&self) -> [u8; 32];
    /// The signature over `message`.
    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], SignerFailure>;
}

impl EnvelopeSigner for SigningKey {
    fn public_key(&self) -> [u8; 32] {
        self.verifying_key().to_bytes()
    }

    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], SignerFailure> {
        Ok(self.sign(message).to_bytes())
    }
}

/// The outcome of verifying one envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `spec_version` acceptable, signature valid and payload hash not contradicted.
    pub overall: bool,
    /// Ed25519 (`verify_strict`) over the signed scope with the embedded `public_key`.
    pub signature_valid: bool,
    /// `Some(true)` bound, `Some(false)` contradicted or missing, `None` nothing to compare.
    pub payload_hash_valid: Option<bool>,
    /// Hash computed from external payload bytes (preferred) or the inline payload.
    pub computed_payload_hash: Option<String>,
    /// The envelope's `payload_hash` when it is a string.
    pub stored_payload_hash: Option<String>,
    /// `supported`, `legacy` or `unsupported`.
    pub spec_version_status: SpecVersionStatus,
    /// Absent or null `spec_version`.
    pub legacy_envelope: bool,
    /// The embedded signer key (hex) when it is a string.
    pub public_key: Option<String>,
    /// The first failed rule, as a stable code (`unsupported_spec_version`,
    /// `missing_payload_hash`, `payload_hash_mismatch`, `invalid_signature`, …).
    pub reason: Option<String>,
}

/// Signs an unsigned envelope with `key` (the reference kernel's `sign_envelope`).
///
/// Computes `payload_hash` from an inline `payload` (or checks it against one), fills
/// `public_key`, and adds `signature` over the signed scope. Absent fields are never invented.
pub fn sign_envelope<S: EnvelopeSigner + ?Sized>(
    unsigned: &Value,
    key: &S,
) -> Result<Value, SignError> {
    let Value::Object(map) = unsigned else {
        return Err(SignError::NotAnObject);
    };
    let mut env = map.clone();
    if env.contains_key("signature") {
        return Err(SignError::AlreadySigned);
    }
    if let Some(payload) = env.get("payload") {
        let computed = sha256_hex(&jcs::canonicalize(payload)?);
        match env.get("payload_hash") {
            None => {
                env.insert("payload_hash".into(), Value::String(computed));
            }
            Some(Value::String(stated)) if *stated == computed => {}
            Some(other) => {
                return Err(SignError::PayloadHashMismatch {
                    stated: display(other),
                    computed,
                });
            }
        }
    } else if !matches!(env.get("payload_hash"), Some(Value::String(_))) {
        return Err(SignError::MissingPayloadHash);
    }
    let public_hex = hex::encode(key.public_key());
    match env.get("public_key") {
        None => {
            env.insert("public_key".into(), Value::String(public_hex));
        }
        Some(Value::String(stated)) if stated.eq_ignore_ascii_case(&public_hex) => {}
        Some(other) => {
            return Err(SignError::PublicKeyMismatch {
                stated: display(other),
                actual: public_hex,
            });
        }
    }
    let scope = jcs::canonicalize(&Value::Object(signed_scope(&env)))?;
    let signature = key.sign_message(&scope)?;
    env.insert("signature".into(), Value::String(hex::encode(signature)));
    Ok(Value::Object(env))
}

/// The signed scope of an envelope object: what the signature covers (spec §1.4).
pub fn signed_scope(envelope: &Map<String, Value>) -> Map<String, Value> {
    let strip_underscore =
        SpecVersion::classify(envelope.get("spec_version")).strips_underscore_keys();
    envelope
        .iter()
        .filter(|(k, _)| {
            k.as_str() != "signature"
                && k.as_str() != "co_signatures"
                && !(strip_underscore && k.starts_with('_'))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// JCS bytes of the signed scope, the exact message the Ed25519 signature is over.
pub fn signed_scope_bytes(envelope: &Map<String, Value>) -> Result<Vec<u8>, JcsError> {
    jcs::canonicalize(&Value::Object(signed_scope(envelope)))
}

/// Verifies an envelope value; `payload_bytes` are the external payload's stored bytes when
/// the caller has them (hashed as given, never re-canonicalized).
pub fn verify_envelope(envelope: &Value, payload_bytes: Option<&[u8]>) -> Verdict {
    let Value::Object(env) = envelope else {
        return Verdict {
            overall: false,
            signature_valid: false,
            payload_hash_valid: Some(false),
            computed_payload_hash: None,
            stored_payload_hash: None,
            spec_version_status: SpecVersionStatus::Unsupported,
            legacy_envelope: false,
            public_key: None,
            reason: Some("envelope_not_a_json_object".into()),
        };
    };
    let mut reasons: Vec<String> = Vec::new();

    let spec = SpecVersion::classify(env.get("spec_version"));
    let spec_ok = spec != SpecVersion::Unsupported;
    if !spec_ok {
        reasons.push("unsupported_spec_version".into());
    }

    let stored = env
        .get("payload_hash")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut computed = None;
    let payload_hash_valid = match &stored {
        None => {
            reasons.push("missing_payload_hash".into());
            Some(false)
        }
        Some(stated) => {
            let mut checks = Vec::new();
            if let Some(payload) = env.get("payload") {
                match jcs::canonicalize(payload) {
                    Ok(bytes) => {
                        let h = sha256_hex(&bytes);
                        checks.push(h == *stated);
                        computed = Some(h);
                    }
                    Err(e) => {
                        reasons.push(format!("payload_not_canonicalizable:{}", e.reason_code()));
                        checks.push(false);
                    }
                }
            }
            if let Some(bytes) = payload_bytes {
                let h = sha256_hex(bytes);
                checks.push(h == *stated);
                computed = Some(h);
            }
            if checks.is_empty() {
                None
            } else if checks.iter().all(|ok| *ok) {
                Some(true)
            } else {
                if !reasons
                    .iter()
                    .any(|r| r.starts_with("payload_not_canonicalizable"))
                {
                    reasons.push("payload_hash_mismatch".into());
                }
                Some(false)
            }
        }
    };

    let signature_valid = match check_signature(env) {
        Ok(()) => true,
        Err(reason) => {
            reasons.push(reason.to_string());
            false
        }
    };

    Verdict {
        overall: spec_ok && signature_valid && payload_hash_valid != Some(false),
        signature_valid,
        payload_hash_valid,
        computed_payload_hash: computed,
        stored_payload_hash: stored,
        spec_version_status: spec.status(),
        legacy_envelope: spec == SpecVersion::Legacy,
        public_key: env
            .get("public_key")
            .and_then(Value::as_str)
            .map(str::to_owned),
        reason: reasons.into_iter().next(),
    }
}

/// Parses envelope text and verifies it. Text that is not JSON at all is an `Err` (the caller
/// could not read an envelope); JSON that breaks a canonicalization rule (lone surrogate,
/// nesting deeper than 128) is a failed [`Verdict`] with that reason.
pub fn verify_envelope_text(
    text: &[u8],
    payload_bytes: Option<&[u8]>,
) -> Result<Verdict, JcsError> {
    match jcs::parse(text) {
        Ok(value) => Ok(verify_envelope(&value, payload_bytes)),
        Err(e @ (JcsError::LoneSurrogate { .. } | JcsError::TooDeep)) => Ok(Verdict {
            overall: false,
            signature_valid: false,
            payload_hash_valid: Some(false),
            computed_payload_hash: None,
            stored_payload_hash: None,
            spec_version_status: SpecVersionStatus::Unsupported,
            legacy_envelope: false,
            public_key: None,
            reason: Some(e.reason_code().into()),
        }),
        Err(e) => Err(e),
    }
}

/// Why an envelope's signature does not hold; its `Display` is the verdict's reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum SignatureFailure {
    /// `public_key` is not 32 bytes of hex, or not a curve point.
    #[error("malformed_public_key")]
    MalformedPublicKey,
    /// `signature` is not 64 bytes of hex.
    #[error("malformed_signature")]
    MalformedSignature,
    /// The signed scope cannot be canonicalized (the JCS reason code).
    #[error("envelope_not_canonicalizable:{0}")]
    NotCanonicalizable(&'static str),
    /// Strict Ed25519 verification failed.
    #[error("invalid_signature")]
    Invalid,
}

/// Ed25519 strict verification of the signed scope.
fn check_signature(env: &Map<String, Value>) -> Result<(), SignatureFailure> {
    let key_hex = env.get("public_key").and_then(Value::as_str).unwrap_or("");
    let key_bytes: [u8; 32] = hex::decode(key_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureFailure::MalformedPublicKey)?;
    let key =
        VerifyingKey::from_bytes(&key_bytes).map_err(|_| SignatureFailure::MalformedPublicKey)?;
    let sig_hex = env.get("signature").and_then(Value::as_str).unwrap_or("");
    let sig_bytes: [u8; 64] = hex::decode(sig_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureFailure::MalformedSignature)?;
    let signature = Signature::from_bytes(&sig_bytes);
    let scope = signed_scope_bytes(env)
        .map_err(|e| SignatureFailure::NotCanonicalizable(e.reason_code()))?;
    key.verify_strict(&scope, &signature)
        .map_err(|_| SignatureFailure::Invalid)
}

fn display(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn corpus_key() -> SigningKey {
        let seed: [u8; 32] =
            hex::decode("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
                .unwrap()
                .try_into()
                .unwrap();
        SigningKey::from_bytes(&seed)
    }

    fn mlflow_unsigned() -> Value {
        json!({
            "event_id": "e-1", "event_type": "training_complete", "spec_version": "ario.mlflow/v1",
            "subject": {"type": "mlflow_run", "run_id": "r"}, "previous_hash": "GENESIS",
            "signed_at": "2026-01-01T00:00:00+00:00", "payload_hash": sha256_hex(b"{}"),
        })
    }

    #[test]
    fn signed_envelope_verifies_with_and_without_payload_bytes() {
        let env = sign_envelope(&mlflow_unsigned(), &corpus_key()).unwrap();
        let bound = verify_envelope(&env, Some(b"{}"));
        assert!(bound.overall && bound.signature_valid);
        assert_eq!(bound.payload_hash_valid, Some(true));
        let undetermined = verify_envelope(&env, None);
        assert!(undetermined.overall);
        assert_eq!(undetermined.payload_hash_valid, None);
        let wrong = verify_envelope(&env, Some(b"wrong"));
        assert!(!wrong.overall && wrong.signature_valid);
        assert_eq!(wrong.reason.as_deref(), Some("payload_hash_mismatch"));
    }

    #[test]
    fn co_signatures_are_outside_the_scope_for_every_profile() {
        for spec in ["ario.mlflow/v1", "ario.agent/v1", "ario.events/v1"] {
            let mut unsigned = mlflow_unsigned();
            unsigned["spec_version"] = json!(spec);
            let mut env = sign_envelope(&unsigned, &corpus_key()).unwrap();
            env["co_signatures"] = json!([{"public_key": "00", "signature": "11"}]);
            assert!(verify_envelope(&env, None).overall, "{spec}");
        }
    }

    #[test]
    fn underscore_keys_are_stripped_only_for_mlflow_and_legacy() {
        let mut legacy = mlflow_unsigned();
        legacy.as_object_mut().unwrap().remove("spec_version");
        for (unsigned, stripped) in [(mlflow_unsigned(), true), (legacy, true)] {
            let mut env = sign_envelope(&unsigned, &corpus_key()).unwrap();
            env["_tx_id"] = json!("abc");
            assert_eq!(verify_envelope(&env, None).overall, stripped);
        }
        let mut agent = mlflow_unsigned();
        agent["spec_version"] = json!("ario.agent/v1");
        let mut env = sign_envelope(&agent, &corpus_key()).unwrap();
        env["_tx_id"] = json!("abc");
        let v = verify_envelope(&env, None);
        assert!(!v.overall);
        assert_eq!(v.reason.as_deref(), Some("invalid_signature"));
    }

    #[test]
    fn legacy_envelopes_verify_and_are_flagged() {
        for legacy in [None, Some(Value::Null)] {
            let mut unsigned = mlflow_unsigned();
            match &legacy {
                None => {
                    unsigned.as_object_mut().unwrap().remove("spec_version");
                }
                Some(v) => unsigned["spec_version"] = v.clone(),
            }
            let v = verify_envelope(&sign_envelope(&unsigned, &corpus_key()).unwrap(), None);
            assert!(v.overall && v.legacy_envelope);
            assert_eq!(v.spec_version_status, SpecVersionStatus::Legacy);
        }
    }

    #[test]
    fn unsupported_spec_version_fails_even_when_validly_signed() {
        for bad in [
            "ario.mlflow/v1.",
            "ario.mlflow/v1.x",
            "ario.mlflow/v1.3abc",
            "ario.mlflow/v10",
            "ario.agent/v99",
        ] {
            let mut unsigned = mlflow_unsigned();
            unsigned["spec_version"] = json!(bad);
            let v = verify_envelope(&sign_envelope(&unsigned, &corpus_key()).unwrap(), None);
            assert!(v.signature_valid && !v.overall, "{bad}");
            assert_eq!(v.reason.as_deref(), Some("unsupported_spec_version"));
        }
    }

    #[test]
    fn missing_or_non_string_payload_hash_fails() {
        let mut env = sign_envelope(&mlflow_unsigned(), &corpus_key()).unwrap();
        env.as_object_mut().unwrap().remove("payload_hash");
        let v = verify_envelope(&env, None);
        assert!(!v.overall);
        assert_eq!(v.payload_hash_valid, Some(false));
        assert_eq!(v.reason.as_deref(), Some("missing_payload_hash"));
        env["payload_hash"] = json!(42);
        assert!(!verify_envelope(&env, None).overall);
    }

    #[test]
    fn non_objects_are_rejected_with_the_reference_reason() {
        for v in [json!([]), json!("x"), json!(1), json!(true), Value::Null] {
            let verdict = verify_envelope(&v, None);
            assert!(!verdict.overall);
            assert_eq!(verdict.spec_version_status, SpecVersionStatus::Unsupported);
            assert_eq!(
                verdict.reason.as_deref(),
                Some("envelope_not_a_json_object")
            );
        }
        assert_eq!(
            sign_envelope(&json!([]), &corpus_key()),
            Err(SignError::NotAnObject)
        );
    }

    #[test]
    fn signing_refuses_resigning_missing_hash_and_foreign_public_key() {
        let key = corpus_key();
        let signed = sign_envelope(&mlflow_unsigned(), &key).unwrap();
        assert_eq!(sign_envelope(&signed, &key), Err(SignError::AlreadySigned));
        let mut no_hash = mlflow_unsigned();
        no_hash.as_object_mut().unwrap().remove("payload_hash");
        assert_eq!(
            sign_envelope(&no_hash, &key),
            Err(SignError::MissingPayloadHash)
        );
        let mut foreign = mlflow_unsigned();
        foreign["public_key"] = json!("00".repeat(32));
        assert!(matches!(
            sign_envelope(&foreign, &key),
            Err(SignError::PublicKeyMismatch { .. })
        ));
        let mut inline = mlflow_unsigned();
        inline["payload"] = json!({"a": 1});
        assert!(matches!(
            sign_envelope(&inline, &key),
            Err(SignError::PayloadHashMismatch { .. })
        ));
    }

    #[test]
    fn malformed_key_or_signature_is_a_verdict_not_a_panic() {
        let env = sign_envelope(&mlflow_unsigned(), &corpus_key()).unwrap();
        for (field, value, reason) in [
            ("public_key", json!("zz"), "malformed_public_key"),
            ("public_key", json!(7), "malformed_public_key"),
            ("signature", json!("abcd"), "malformed_signature"),
            ("signature", Value::Null, "malformed_signature"),
        ] {
            let mut bad = env.clone();
            bad[field] = value;
            assert_eq!(
                verify_envelope(&bad, None).reason.as_deref(),
                Some(reason),
                "{field}"
            );
        }
    }

    #[test]
    fn unparseable_rules_surface_as_verdicts_and_garbage_as_errors() {
        let deep = "[".repeat(129) + &"]".repeat(129);
        let text = format!(r#"{{"payload_hash":"x","deep":{deep}}}"#);
        assert_eq!(
            verify_envelope_text(text.as_bytes(), None)
                .unwrap()
                .reason
                .as_deref(),
            Some("nesting_too_deep")
        );
        let surrogate = br#"{"payload_hash":"x","signed_at":"\uD800"}"#;
        assert_eq!(
            verify_envelope_text(surrogate, None)
                .unwrap()
                .reason
                .as_deref(),
            Some("lone_surrogate")
        );
        assert!(verify_envelope_text(b"not json", None).is_err());
    }
}
