//! What a verification answers: one [`Check`] per question, the [`ProofVerdict`] and the
//! verdict rules of §5.2 ([`overall`]), check 1 (the envelope's signature).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::proof::{verify_envelope, SpecVersionStatus};

/// One check: `ok` is `Some(true)` passed, `Some(false)` failed, `None` not run / not applicable.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Check {
    /// Tri-state outcome.
    pub ok: Option<bool>,
    /// Why (always filled, for people).
    pub reason: String,
    /// Machine-readable extras (hashes, gateway, levels…).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub detail: Map<String, Value>,
}

impl Check {
    /// A passed check.
    pub fn pass(reason: impl Into<String>) -> Check {
        Check {
            ok: Some(true),
            reason: reason.into(),
            detail: Map::new(),
        }
    }

    /// A failed check.
    pub fn fail(reason: impl Into<String>) -> Check {
        Check {
            ok: Some(false),
            reason: reason.into(),
            detail: Map::new(),
        }
    }

    /// A check that did not run or does not apply.
    pub fn skipped(reason: impl Into<String>) -> Check {
        Check {
            ok: None,
            reason: reason.into(),
            detail: Map::new(),
        }
    }

    /// Adds a detail field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Check {
        self.detail.insert(key.to_string(), value.into());
        self
    }
}

/// The four checks of spec §5.1, named as in the plugin's audit JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checks {
    /// Check 1: kernel signature and spec version.
    pub signature: Check,
    /// Check 2: the witness artifact in MLflow hashes to `payload_hash`.
    pub anchored_bytes: Check,
    /// Check 3: live MLflow rebuilt byte for byte.
    pub source_of_truth: Check,
    /// Check 4: ar.io Verify attestation.
    pub ario_attestation: Check,
}

/// The entity a proof is expected to be about (what `verify run|model|trace` asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// A training run.
    Run(String),
    /// A model version (name, version).
    ModelVersion(String, String),
    /// A trace (prediction).
    Trace(String),
    /// A dataset (name, digest).
    Dataset(String, String),
    /// Whatever the TX is about.
    Any,
}

/// The verdict on one proof.
#[derive(Debug, Clone, Serialize)]
pub struct ProofVerdict {
    /// The TX (data item id).
    pub tx_id: String,
    /// `event_type` of the envelope.
    pub event_type: Option<String>,
    /// `subject` of the envelope.
    pub subject: Option<Value>,
    /// Signer key (hex).
    pub public_key: Option<String>,
    /// `previous_hash` (payload hash for training, TX id for the rest, or GENESIS).
    pub previous_hash: Option<String>,
    /// `payload_hash`.
    pub payload_hash: Option<String>,
    /// `signed_at` as signed (advisory, never re-formatted).
    pub signed_at: Option<String>,
    /// The envelope was read from Arweave through a gateway.
    pub proof_found: Check,
    /// The served bytes are the data of the item whose id is the TX.
    pub data_item: Check,
    /// The signer is a pinned key (or the entity's `ario.public_key`).
    pub key_binding: Check,
    /// Checks 1–4.
    pub checks: Checks,
    /// The §5.2 verdict plus our stricter checks.
    pub overall_ok: bool,
    /// A training proof of a run that was re-opened and finished again: the TX of the newer
    /// proof that covers its final state (this one is superseded, not failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// The envelope as fetched.
    #[serde(skip)]
    pub envelope: Option<Value>,
}

impl ProofVerdict {
    /// A verdict for a TX whose envelope could not be read.
    pub(super) fn not_found(tx_id: &str, proof_found: Check) -> ProofVerdict {
        let none = || Check::skipped("no_envelope");
        ProofVerdict {
            tx_id: tx_id.to_string(),
            event_type: None,
            subject: None,
            public_key: None,
            previous_hash: None,
            payload_hash: None,
            signed_at: None,
            proof_found,
            data_item: none(),
            key_binding: none(),
            checks: Checks {
                signature: none(),
                anchored_bytes: none(),
                source_of_truth: none(),
                ario_attestation: none(),
            },
            overall_ok: false,
            superseded_by: None,
            envelope: None,
        }
    }

    /// Every check by its short name, in the order a failure is reported.
    pub fn named_checks(&self) -> [(&'static str, &Check); 7] {
        let c = &self.checks;
        [
            ("proof found", &self.proof_found),
            ("data item", &self.data_item),
            ("key", &self.key_binding),
            ("signature", &c.signature),
            ("anchored bytes", &c.anchored_bytes),
            ("live record", &c.source_of_truth),
            ("attestation", &c.ario_attestation),
        ]
    }

    /// The first check that failed, by its short name.
    pub fn first_failed(&self) -> Option<(&'static str, &Check)> {
        self.named_checks()
            .into_iter()
            .find(|(_, check)| check.ok == Some(false))
    }

    /// The "record matches" row of the plugin's panel: checks 2 and 3 consolidated.
    pub fn record_matches(&self) -> Check {
        let (a, s) = (&self.checks.anchored_bytes, &self.checks.source_of_truth);
        match (a.ok, s.ok) {
            (Some(false), _) => Check::fail(or(&a.reason, "anchored_bytes_mismatch")),
            (_, Some(false)) => Check::fail(or(&s.reason, "live_mlflow_mismatch")),
            (None, _) => Check::skipped(a.reason.clone()),
            (_, None) => Check::skipped(s.reason.clone()),
            _ => Check::pass("live MLflow matches anchored bytes"),
        }
    }
}

pub(super) fn or(reason: &str, default: &str) -> String {
    if reason.is_empty() {
        default.to_string()
    } else {
        reason.to_string()
    }
}

/// A JSON scalar as text (versions may be numbers in old subjects).
pub(super) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Check 1 (§5.1): kernel verification without payload bytes; legacy accepted and flagged.
pub fn signature_check(env: &Value) -> Check {
    let v = verify_envelope(env, None);
    let status = match v.spec_version_status {
        SpecVersionStatus::Supported => "supported",
        SpecVersionStatus::Legacy => "legacy",
        SpecVersionStatus::Unsupported => "unsupported",
    };
    let check = if v.overall {
        Check::pass(if v.legacy_envelope {
            "signature valid (legacy envelope without spec_version)"
        } else {
            "signature valid"
        })
    } else if v.spec_version_status == SpecVersionStatus::Unsupported {
        Check::fail("unsupported_spec_version")
    } else {
        Check::fail(
            v.reason
                .clone()
                .unwrap_or_else(|| "signature_invalid".into()),
        )
    };
    check
        .with("signature_valid", v.signature_valid)
        .with("spec_version_status", status)
        .with("legacy_envelope", v.legacy_envelope)
}

/// §5.2, plus our checks: any failure fails; for training, registration and prediction a check
/// 1–3 that could not run fails too; otherwise at least one check must pass.
pub fn overall(v: &ProofVerdict) -> bool {
    let c = &v.checks;
    let all = [
        &v.proof_found,
        &v.data_item,
        &v.key_binding,
        &c.signature,
        &c.anchored_bytes,
        &c.source_of_truth,
        &c.ario_attestation,
    ];
    if v.proof_found.ok != Some(true) || all.iter().any(|k| k.ok == Some(false)) {
        return false;
    }
    let required = matches!(
        v.event_type.as_deref(),
        Some("training_complete" | "model_registered" | "prediction")
    );
    // A superseded training proof has no live state to match (the run moved on, proven by
    // the newer proof); its witness still binds it.
    let live = if v.superseded_by.is_some() {
        vec![&c.signature, &c.anchored_bytes]
    } else {
        vec![&c.signature, &c.anchored_bytes, &c.source_of_truth]
    };
    if required && live.iter().any(|k| k.ok.is_none()) {
        return false;
    }
    c.signature.ok == Some(true)
}
