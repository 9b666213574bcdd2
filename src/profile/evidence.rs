//! The family's evidence wrapper, `ario.evidence/v1` (ar-io-proof `specs/evidence-bundle.md`):
//! a signed bundle around a producer's body, verifiable offline against its embedded key.
//!
//! * `body_hash = SHA-256(JCS(body))` (an inline body) commits to the body;
//! * `signature` is Ed25519 over `JCS(bundle without signature)`, the envelope's own
//!   strip-and-canonicalise flow;
//! * `verdict` is a rendering convenience the verifier recomputes from the body;
//! * `previous_hash` chains successive exports of one scope: `SHA-256(JCS(prior bundle without
//!   its signature))`, `GENESIS` for the first.
//!
//! Our body is an `ario.mlflow.audit/v1` audit with the evidence of every stage inlined (the
//! envelope, the payload bytes, the signed data item, the Turbo receipt, the checkpoint batch
//! documents). Pure: no I/O, no clock.

use serde_json::{Map, Value};

use super::GENESIS;
use crate::proof::{jcs, sha256_hex, EnvelopeSigner, JcsError, SignerFailure};

/// The wrapper's `spec_version`.
pub const SPEC_VERSION: &str = "ario.evidence/v1";
/// Our body: an MLflow lineage audit with its evidence.
pub const AUDIT_BODY_TYPE: &str = "ario.mlflow.audit/v1";
/// ar-io-verify's attested export (verified by its own kernel; we check its wrapper).
pub const EXPORT_BODY_TYPE: &str = "ario.evidence.export/v1";
/// The anchor SDK's trace body.
pub const ANCHOR_TRACE_BODY_TYPE: &str = "ario.anchor.trace/v1";
/// The only wrapper signature algorithm we verify (the family's baseline).
pub const ED25519: &str = "ed25519";
/// `issuer.kind` of our exports.
pub const ISSUER_KIND: &str = "mlflow-worker";

/// Why a bundle cannot be built or signed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The body or wrapper cannot be canonicalised.
    #[error("the bundle cannot be canonicalised: {0}")]
    Canonical(#[from] JcsError),
    /// The key refused to sign.
    #[error("the export key cannot sign: {0}")]
    Signer(#[from] SignerFailure),
}

/// Why a bundle is not a bundle we can judge at all (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Not a JSON object (or nested beyond the canonicaliser's depth limit).
    #[error("not a JSON evidence bundle: {0}")]
    NotJson(String),
    /// A required field is missing or of the wrong type.
    #[error("the bundle's `{0}` is missing or not of its type")]
    Field(&'static str),
    /// A `spec_version` we do not know.
    #[error("spec_version {0:?} is not ario.evidence/v1 (an unknown major is rejected)")]
    SpecVersion(String),
    /// A wrapper signature algorithm we do not verify.
    #[error("signature_alg {0:?} is not one we verify (ed25519)")]
    SignatureAlg(String),
    /// Both or neither of `body` and `body_ref`.
    #[error("exactly one of `body` and `body_ref` must be present")]
    BodyPresence,
    /// A key or signature that is not hex of its length.
    #[error("`{0}` is not hex of the right length")]
    Hex(&'static str),
}

/// The wrapper's own checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapperChecks {
    /// `body_type`.
    pub body_type: String,
    /// `SHA-256(JCS(body))` equals `body_hash`; `None` for an out-of-line body (not fetched).
    pub body_hash_ok: Option<bool>,
    /// The Ed25519 signature over the bundle without `signature` verifies with `public_key`.
    pub signature_ok: bool,
    /// The embedded key (lowercase hex).
    pub public_key: String,
}

/// `SHA-256(JCS(body))`.
pub fn body_hash(body: &Value) -> Result<String, JcsError> {
    Ok(sha256_hex(&jcs::canonicalize(body)?))
}

/// The hash the next export's `previous_hash` carries: `SHA-256(JCS(bundle without
/// signature))`.
pub fn chain_hash(bundle: &Value) -> Result<String, JcsError> {
    let mut unsigned = bundle.clone();
    if let Value::Object(m) = &mut unsigned {
        m.remove("signature");
    }
    Ok(sha256_hex(&jcs::canonicalize(&unsigned)?))
}

/// What a bundle says before it is signed.
#[derive(Debug, Clone)]
pub struct Unsigned {
    /// `body_type`.
    pub body_type: String,
    /// `issuer`.
    pub issuer: Value,
    /// `generated_at` (RFC 3339).
    pub generated_at: String,
    /// `gateway`, named not trusted.
    pub gateway: Option<String>,
    /// The rollup verdict.
    pub verdict: Value,
    /// The body.
    pub body: Value,
    /// `previous_hash`, `None` = `GENESIS`.
    pub previous_hash: Option<String>,
}

/// Builds and signs a bundle; returns it as a value (serialise it with [`jcs::canonicalize`]).
pub fn sign_bundle<S: EnvelopeSigner + ?Sized>(
    unsigned: Unsigned,
    signer: &S,
) -> Result<Value, BuildError> {
    let mut m = Map::new();
    m.insert("spec_version".into(), SPEC_VERSION.into());
    m.insert("body_type".into(), unsigned.body_type.into());
    m.insert("issuer".into(), unsigned.issuer);
    m.insert("generated_at".into(), unsigned.generated_at.into());
    m.insert(
        "gateway".into(),
        unsigned.gateway.map(Value::String).unwrap_or(Value::Null),
    );
    m.insert("verdict".into(), unsigned.verdict);
    m.insert("body_hash".into(), body_hash(&unsigned.body)?.into());
    m.insert("body".into(), unsigned.body);
    m.insert(
        "previous_hash".into(),
        unsigned
            .previous_hash
            .unwrap_or_else(|| GENESIS.to_string())
            .into(),
    );
    m.insert("signature_alg".into(), ED25519.into());
    m.insert("public_key".into(), hex::encode(signer.public_key()).into());
    let message = jcs::canonicalize(&Value::Object(m.clone()))?;
    let signature = signer.sign_message(&message)?;
    m.insert("signature".into(), hex::encode(signature).into());
    Ok(Value::Object(m))
}

/// Parses bundle bytes (the canonicaliser's depth limit applies: a nesting bomb is malformed).
pub fn parse(bytes: &[u8]) -> Result<Value, Malformed> {
    let value = jcs::parse(bytes).map_err(|e| Malformed::NotJson(e.to_string()))?;
    jcs::check_depth(&value).map_err(|e| Malformed::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(Malformed::NotJson("not a JSON object".into()));
    }
    Ok(value)
}

/// The wrapper checks of evidence-bundle.md §4 steps 1–3: the spec version's major, the body
/// hash, the signature. Malformed when the bundle cannot be judged at all.
pub fn check_wrapper(bundle: &Value) -> Result<WrapperChecks, Malformed> {
    let text = |k: &'static str| {
        bundle
            .get(k)
            .and_then(Value::as_str)
            .ok_or(Malformed::Field(k))
    };
    let spec = text("spec_version")?;
    if spec != SPEC_VERSION {
        return Err(Malformed::SpecVersion(spec.to_string()));
    }
    let body_type = text("body_type")?.to_string();
    let alg = text("signature_alg")?;
    if alg != ED25519 {
        return Err(Malformed::SignatureAlg(alg.to_string()));
    }
    let public_key = text("public_key")?.to_ascii_lowercase();
    let key: [u8; 32] = hex::decode(&public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(Malformed::Hex("public_key"))?;
    let signature: [u8; 64] = hex::decode(text("signature")?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(Malformed::Hex("signature"))?;
    let stated_hash = text("body_hash")?;
    let body_hash_ok = match (bundle.get("body"), bundle.get("body_ref")) {
        (Some(body), None) if body.is_object() => {
            let computed = body_hash(body).map_err(|e| Malformed::NotJson(e.to_string()))?;
            Some(computed.eq_ignore_ascii_case(stated_hash))
        }
        (None, Some(Value::String(_))) => None,
        _ => return Err(Malformed::BodyPresence),
    };
    for field in ["issuer", "verdict"] {
        if !bundle.get(field).is_some_and(Value::is_object) {
            return Err(Malformed::Field(if field == "issuer" {
                "issuer"
            } else {
                "verdict"
            }));
        }
    }
    text("generated_at")?;
    let mut unsigned = bundle.clone();
    if let Value::Object(m) = &mut unsigned {
        m.remove("signature");
    }
    let message = jcs::canonicalize(&unsigned).map_err(|e| Malformed::NotJson(e.to_string()))?;
    let signature_ok = ed25519_dalek::VerifyingKey::from_bytes(&key).is_ok_and(|k| {
        k.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
            .is_ok()
    });
    Ok(WrapperChecks {
        body_type,
        body_hash_ok,
        signature_ok,
        public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    fn bundle() -> (Value, SigningKey) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let b = sign_bundle(
            Unsigned {
                body_type: AUDIT_BODY_TYPE.into(),
                issuer: json!({"kind": ISSUER_KIND}),
                generated_at: "2026-12-05T00:00:00Z".into(),
                gateway: None,
                verdict: json!({"status": "verified", "summary": "x"}),
                body: json!({"stages": [], "n": 1.5}),
                previous_hash: None,
            },
            &key,
        )
        .unwrap();
        (b, key)
    }

    #[test]
    fn a_signed_bundle_checks_and_every_tamper_is_seen() {
        let (b, _) = bundle();
        let c = check_wrapper(&b).unwrap();
        assert_eq!(c.body_hash_ok, Some(true));
        assert!(c.signature_ok);
        assert_eq!(b["previous_hash"], GENESIS);

        let mut body = b.clone();
        body["body"]["n"] = json!(2);
        let c = check_wrapper(&body).unwrap();
        assert_eq!(c.body_hash_ok, Some(false));
        assert!(!c.signature_ok, "the signature covers the body too");

        let mut verdict = b.clone();
        verdict["verdict"]["status"] = json!("failed");
        assert!(!check_wrapper(&verdict).unwrap().signature_ok);

        let mut major = b.clone();
        major["spec_version"] = json!("ario.evidence/v2");
        assert!(matches!(
            check_wrapper(&major),
            Err(Malformed::SpecVersion(_))
        ));
        let mut alg = b.clone();
        alg["signature_alg"] = json!("rsa-pss-sha256");
        assert!(matches!(
            check_wrapper(&alg),
            Err(Malformed::SignatureAlg(_))
        ));
        let mut both = b;
        both["body_ref"] = json!("ar://x");
        assert_eq!(check_wrapper(&both), Err(Malformed::BodyPresence));
    }

    #[test]
    fn the_chain_hash_ignores_the_signature_only() {
        let (b, _) = bundle();
        let mut resigned = b.clone();
        resigned["signature"] = json!("00");
        assert_eq!(chain_hash(&b).unwrap(), chain_hash(&resigned).unwrap());
        let mut other = b.clone();
        other["generated_at"] = json!("2027-01-01T00:00:00Z");
        assert_ne!(chain_hash(&b).unwrap(), chain_hash(&other).unwrap());
    }

    #[test]
    fn a_nesting_bomb_is_malformed() {
        let mut text = String::new();
        for _ in 0..200 {
            text.push_str("{\"a\":");
        }
        text.push('1');
        for _ in 0..200 {
            text.push('}');
        }
        assert!(matches!(parse(text.as_bytes()), Err(Malformed::NotJson(_))));
    }
}
