//! `verify evidence`: an `ario.evidence/v1` bundle judged on its own, without MLflow — the
//! wrapper (spec version major, `body_hash`, signature, pinned key, the link to a previous
//! export), then the body, whose verdict is recomputed and compared with the one asserted.
//!
//! Our body (`ario.mlflow.audit/v1` with evidence): for every anchored stage, the envelope's
//! signature, the payload bytes against the signed `payload_hash`, the signed data item (its
//! id re-derived, its signature, its data the envelope), Turbo's receipt (its signature, its id
//! and owner), the subject against the audited entity, the signer against pinned keys, the
//! model checksums against the payload; for every checkpoint, the batch document (record bytes
//! → signed hash, every leaf → audit path → signed root) and the chain of checkpoints.
//!
//! A body type we do not verify is `partial`, never `verified`: an ar-io-verify export
//! (`ario.evidence.export/v1`) gets its wrapper, its source-bundle linkage and the shape of its
//! attestations checked, and is handed to the family's kernel for the rest.
//!
//! Exit: 0 verified, 1 failed, 2 malformed, 3 partial (withheld bytes, a body type we do not
//! verify, nothing reachable online).

mod audit_body;

use serde::Serialize;
use serde_json::Value;

use crate::arweave::GatewayReader;
use crate::profile::evidence::{self as format, Malformed};
use crate::proof::jcs;
use audit_body::{audits, text};

pub use audit_body::{recompute, BodyVerdict, Counts, Item, Keys};

/// The rollup (evidence-bundle.md §3, plus `malformed` for what cannot be judged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every in-scope check passed.
    Verified,
    /// Nothing failed, but something could not be checked (withheld bytes, a body we do not
    /// verify, no gateway reachable).
    Partial,
    /// A check failed.
    Failed,
    /// Nothing in it is anchored.
    NotFound,
    /// Not a bundle we can judge.
    Malformed,
}

impl Status {
    /// The family's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Verified => "verified",
            Status::Partial => "partial",
            Status::Failed => "failed",
            Status::NotFound => "not_found",
            Status::Malformed => "malformed",
        }
    }

    /// 0 verified, 1 failed, 2 malformed, 3 partial or nothing anchored.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Verified => 0,
            Status::Failed => 1,
            Status::Malformed => 2,
            Status::Partial | Status::NotFound => 3,
        }
    }
}

/// One check's outcome: `Some(true)` passed, `Some(false)` failed, `None` undetermined.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What it is about (`wrapper`, `training <run>`, `checkpoint <tx>`…).
    pub scope: String,
    /// The check.
    pub check: String,
    /// Its outcome.
    pub ok: Option<bool>,
    /// Why.
    pub reason: String,
}

/// What `verify evidence` found.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceReport {
    /// The rollup, recomputed.
    pub status: Status,
    /// Why it is malformed, when it is.
    pub malformed: Option<String>,
    /// `body_type`.
    pub body_type: Option<String>,
    /// `issuer`.
    pub issuer: Value,
    /// `generated_at`.
    pub generated_at: Option<String>,
    /// The wrapper's key.
    pub public_key: Option<String>,
    /// The verdict the bundle asserts.
    pub asserted_status: Option<String>,
    /// Wrapper checks, the verdict's agreement, the previous link, online checks.
    pub findings: Vec<Finding>,
    /// The body's recomputed verdict (our body type only).
    pub body: Option<BodyVerdict>,
}

/// What `verify evidence` is given besides the bundle.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Pinned keys (lowercase hex): the wrapper and every envelope must be signed by one.
    pub trusted_keys: Vec<String>,
    /// The previous export of the scope: `previous_hash` must link to it.
    pub previous: Option<Value>,
    /// A trusted key history's windows: the bundle and every proof must be signed by a key
    /// valid when it signed.
    pub key_history: Option<Vec<crate::profile::key_history::KeyWindow>>,
}

fn finding(scope: &str, check: &str, ok: Option<bool>, reason: impl Into<String>) -> Finding {
    Finding {
        scope: scope.to_string(),
        check: check.to_string(),
        ok,
        reason: reason.into(),
    }
}

fn malformed(e: &Malformed) -> EvidenceReport {
    EvidenceReport {
        status: Status::Malformed,
        malformed: Some(e.to_string()),
        body_type: None,
        issuer: Value::Null,
        generated_at: None,
        public_key: None,
        asserted_status: None,
        findings: Vec::new(),
        body: None,
    }
}

/// Verifies bundle bytes offline.
pub fn verify_bytes(bytes: &[u8], opts: &Options) -> EvidenceReport {
    match format::parse(bytes) {
        Ok(bundle) => verify_bundle(&bundle, opts),
        Err(e) => malformed(&e),
    }
}

/// Verifies a parsed bundle offline.
pub fn verify_bundle(bundle: &Value, opts: &Options) -> EvidenceReport {
    let wrapper = match format::check_wrapper(bundle) {
        Ok(w) => w,
        Err(e) => return malformed(&e),
    };
    let mut findings = Vec::new();
    findings.push(match wrapper.body_hash_ok {
        Some(true) => finding(
            "wrapper",
            "body_hash",
            Some(true),
            "SHA-256(JCS(body)) is body_hash",
        ),
        Some(false) => finding(
            "wrapper",
            "body_hash",
            Some(false),
            "the body does not hash to body_hash: it was altered",
        ),
        None => finding(
            "wrapper",
            "body_hash",
            None,
            "the body is out of line (body_ref) and not fetched",
        ),
    });
    findings.push(if wrapper.signature_ok {
        finding(
            "wrapper",
            "signature",
            Some(true),
            format!("Ed25519 signature by {} verifies", wrapper.public_key),
        )
    } else {
        finding(
            "wrapper",
            "signature",
            Some(false),
            "the wrapper signature does not verify: the bundle was altered after signing",
        )
    });
    if !opts.trusted_keys.is_empty() {
        let pinned = opts.trusted_keys.contains(&wrapper.public_key);
        findings.push(finding(
            "wrapper",
            "key_pinning",
            Some(pinned),
            if pinned {
                "signed by a pinned key".to_string()
            } else {
                format!("signed by {}, not a pinned key", wrapper.public_key)
            },
        ));
    }
    if let Some(windows) = &opts.key_history {
        let at = bundle["generated_at"].as_str().unwrap_or("");
        findings.push(
            match crate::profile::key_history::judge(windows, &wrapper.public_key, at) {
                Ok(_) => finding(
                    "wrapper",
                    "key_history",
                    Some(true),
                    "the signer was valid when the bundle was generated",
                ),
                Err(e) => finding("wrapper", "key_history", Some(false), e.to_string()),
            },
        );
    }
    if let Some(previous) = &opts.previous {
        let stated = bundle["previous_hash"].as_str().unwrap_or("");
        findings.push(match format::chain_hash(previous) {
            Ok(h) if h == stated => finding(
                "wrapper",
                "previous_hash",
                Some(true),
                "links to the previous export given",
            ),
            Ok(h) => finding(
                "wrapper",
                "previous_hash",
                Some(false),
                format!("previous_hash is {stated:?}, the previous export given hashes to {h}"),
            ),
            Err(e) => finding(
                "wrapper",
                "previous_hash",
                Some(false),
                format!("the previous export cannot be canonicalised: {e}"),
            ),
        });
    }
    let asserted = bundle["verdict"]["status"].as_str().map(str::to_owned);
    let mut report = EvidenceReport {
        status: Status::Verified,
        malformed: None,
        body_type: Some(wrapper.body_type.clone()),
        issuer: bundle["issuer"].clone(),
        generated_at: bundle["generated_at"].as_str().map(str::to_owned),
        public_key: Some(wrapper.public_key.clone()),
        asserted_status: asserted.clone(),
        findings,
        body: None,
    };
    let body = bundle.get("body");
    match (wrapper.body_type.as_str(), body) {
        (format::AUDIT_BODY_TYPE, Some(body)) => {
            let verdict = recompute(body, Keys::of(opts));
            let agrees = asserted.as_deref() == Some(verdict.status.as_str())
                && bundle["verdict"]
                    .get("counts")
                    .is_none_or(|c| *c == verdict.counts.as_json());
            report.findings.push(finding(
                "wrapper",
                "verdict",
                Some(agrees),
                if agrees {
                    format!("the asserted verdict ({}) is the recomputed one", verdict.status.as_str())
                } else {
                    format!(
                        "the asserted verdict {} {} disagrees with the one recomputed from the body, {} {}",
                        asserted.as_deref().unwrap_or("(none)"),
                        bundle["verdict"].get("counts").cloned().unwrap_or(Value::Null),
                        verdict.status.as_str(),
                        verdict.counts.as_json()
                    )
                },
            ));
            report.body = Some(verdict);
        }
        (format::EXPORT_BODY_TYPE, Some(body)) => {
            if let Err(e) = export_shape(body) {
                return malformed(&e);
            }
            report.findings.extend(export_linkage(body));
        }
        (other, _) => report.findings.push(finding(
            "body",
            "body_type",
            None,
            format!(
                "body type {other} is not one this tool verifies: only its wrapper was checked"
            ),
        )),
    }
    report.status = rollup(&report);
    report
}

/// Failed when any check failed; else partial when any is undetermined or the body is not ours.
fn rollup(report: &EvidenceReport) -> Status {
    let body = report.body.as_ref().map(|b| b.status);
    if report.findings.iter().any(|f| f.ok == Some(false)) || body == Some(Status::Failed) {
        return Status::Failed;
    }
    if report.findings.iter().any(|f| f.ok.is_none()) {
        return Status::Partial;
    }
    body.unwrap_or(Status::Partial)
}

/// ar-io-verify's export: the shape of its attestations (an RSA-PSS record with an RSA JWK).
fn export_shape(body: &Value) -> Result<(), Malformed> {
    let attestations = body["attestations"]
        .as_array()
        .ok_or(Malformed::Field("body.attestations"))?;
    for a in attestations {
        match a["signature_alg"].as_str() {
            Some("rsa-pss-sha256") => {}
            Some(other) => return Err(Malformed::SignatureAlg(other.to_string())),
            None => return Err(Malformed::Field("body.attestations[].signature_alg")),
        }
        let key = &a["public_key"];
        if key["kty"] != "RSA" || !key["n"].is_string() || !key["e"].is_string() {
            return Err(Malformed::Field(
                "body.attestations[].public_key (an RSA JWK)",
            ));
        }
    }
    Ok(())
}

/// ar-io-verify's export: the source bundle's linkage and its own wrapper; the rest is the
/// family kernel's (undetermined here).
fn export_linkage(body: &Value) -> Vec<Finding> {
    let mut out = Vec::new();
    let stated = body["source_bundle_hash"].as_str().unwrap_or("");
    match body.get("source_bundle") {
        Some(source) => {
            let linked = format::body_hash(source).is_ok_and(|h| h.eq_ignore_ascii_case(stated));
            out.push(finding(
                "body",
                "source_bundle_hash",
                Some(linked),
                if linked {
                    "the inline source bundle hashes to source_bundle_hash"
                } else {
                    "the inline source bundle does not hash to source_bundle_hash"
                },
            ));
            match format::check_wrapper(source) {
                Ok(w) => out.push(finding(
                    "source bundle",
                    "wrapper",
                    Some(w.signature_ok && w.body_hash_ok != Some(false)),
                    format!(
                        "source bundle ({}): body hash {}, signature {}",
                        w.body_type,
                        match w.body_hash_ok {
                            Some(true) => "matches",
                            Some(false) => "differs",
                            None => "not checked",
                        },
                        if w.signature_ok {
                            "verifies"
                        } else {
                            "does not verify"
                        }
                    ),
                )),
                Err(e) => out.push(finding(
                    "source bundle",
                    "wrapper",
                    Some(false),
                    e.to_string(),
                )),
            }
        }
        None => out.push(finding(
            "body",
            "source_bundle",
            None,
            "the source bundle is out of line (source_bundle_ref) and not fetched",
        )),
    }
    out.push(finding(
        "body",
        "body_type",
        None,
        "ario.evidence.export/v1: the attestations and the kernel verdict are not verified by this tool (use the family kernel, @ar.io/proof)",
    ));
    out
}

/// `--online`: every TX of the bundle fetched from each gateway and compared with the envelope
/// the bundle holds; one finding per TX (a mismatch fails, none reachable is undetermined).
pub async fn check_online(bundle: &Value, gateways: &GatewayReader) -> Vec<Finding> {
    let mut txs: Vec<(String, Value)> = Vec::new();
    let body = &bundle["body"];
    for audit in audits(body) {
        for stage in audit["stages"].as_array().into_iter().flatten() {
            if let (Some(tx), Some(env)) =
                (stage["tx_id"].as_str(), stage["evidence"].get("envelope"))
            {
                txs.push((tx.to_string(), env.clone()));
            }
        }
        for doc in audit["checkpoints"]["documents"]
            .as_array()
            .into_iter()
            .flatten()
        {
            txs.push((
                text(doc, "checkpoint_tx").to_string(),
                doc["envelope"].clone(),
            ));
        }
    }
    txs.sort_by(|a, b| a.0.cmp(&b.0));
    txs.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::new();
    for (tx, envelope) in txs {
        let (mut confirm, mut mismatch, mut unreachable) = (Vec::new(), Vec::new(), Vec::new());
        for g in gateways.gateways() {
            match gateways.fetch_from(g, &tx).await {
                Ok((bytes, _)) => match jcs::parse(&bytes) {
                    Ok(served) if served == envelope => confirm.push(g.to_string()),
                    _ => mismatch.push(g.to_string()),
                },
                Err(_) => unreachable.push(g.to_string()),
            }
        }
        out.push(if !mismatch.is_empty() {
            finding(
                &format!("TX {tx}"),
                "online",
                Some(false),
                format!(
                    "{} serve other bytes than the bundle's envelope",
                    mismatch.join(", ")
                ),
            )
        } else if confirm.is_empty() {
            finding(
                &format!("TX {tx}"),
                "online",
                None,
                format!("no gateway reachable ({})", unreachable.join(", ")),
            )
        } else {
            finding(
                &format!("TX {tx}"),
                "online",
                Some(true),
                format!("served as in the bundle by {}", confirm.join(", ")),
            )
        });
    }
    out
}

impl EvidenceReport {
    /// Adds online findings and recomputes the rollup.
    pub fn with_online(mut self, findings: Vec<Finding>) -> EvidenceReport {
        if self.status == Status::Malformed {
            return self;
        }
        self.findings.extend(findings);
        self.status = rollup(&self);
        self
    }
}
