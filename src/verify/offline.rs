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

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use super::audit::checkpoint_chain;
use super::binding::subject_mismatch;
use super::Entity;
use crate::arweave::receipt::Receipt;
use crate::arweave::{DataItem, GatewayReader};
use crate::profile::checkpoint::{check_inclusion, BatchDocument};
use crate::profile::evidence::{self as format, Malformed};
use crate::proof::{jcs, sha256_hex, verify_envelope, SpecVersionStatus};

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

/// Per-outcome counts of the body's items (stages and checkpointed predictions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every check passed.
    pub verified: u64,
    /// A check failed.
    pub failed: u64,
    /// Not checkable from the bundle (withheld).
    pub undetermined: u64,
    /// Stages the audit found not anchored (the audit's own gaps, reported not judged).
    pub not_anchored: u64,
}

impl Counts {
    fn status(&self) -> Status {
        if self.failed > 0 {
            Status::Failed
        } else if self.undetermined > 0 {
            Status::Partial
        } else if self.verified > 0 {
            Status::Verified
        } else {
            Status::NotFound
        }
    }

    fn as_json(&self) -> Value {
        json!({
            "verified": self.verified,
            "failed": self.failed,
            "undetermined": self.undetermined,
            "not_anchored": self.not_anchored,
        })
    }
}

/// One item of the body: a stage or a checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// `training`, `registration`, … or `checkpoint`.
    pub kind: String,
    /// Its label.
    pub label: String,
    /// Its TX.
    pub tx_id: Option<String>,
    /// Its outcome.
    pub ok: Option<bool>,
    /// Failures and undetermined checks, in words.
    pub notes: Vec<String>,
}

/// The recomputed verdict of a body.
#[derive(Debug, Clone, Serialize)]
pub struct BodyVerdict {
    /// The rollup.
    pub status: Status,
    /// Counts.
    pub counts: Counts,
    /// Per item.
    pub items: Vec<Item>,
    /// Checks not tied to one item (the checkpoint chain…).
    pub findings: Vec<Finding>,
}

impl BodyVerdict {
    /// The wrapper `verdict` an export asserts for this body.
    pub fn wrapper_verdict(&self, as_of: &str) -> Value {
        let c = &self.counts;
        json!({
            "status": self.status.as_str(),
            "summary": format!(
                "{} verified, {} failed, {} undetermined, {} not anchored",
                c.verified, c.failed, c.undetermined, c.not_anchored
            ),
            "counts": c.as_json(),
            "as_of": as_of,
        })
    }
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
            let verdict = recompute(body, &opts.trusted_keys);
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

/// The audits of a body: one (`stages` at the top) or a window's (`audits`).
fn audits(body: &Value) -> Vec<&Value> {
    match body.get("audits").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![body],
    }
}

/// Recomputes an `ario.mlflow.audit/v1` body's verdict from its evidence alone.
pub fn recompute(body: &Value, trusted: &[String]) -> BodyVerdict {
    let mut v = BodyVerdict {
        status: Status::NotFound,
        counts: Counts::default(),
        items: Vec::new(),
        findings: Vec::new(),
    };
    for audit in audits(body) {
        for stage in audit["stages"].as_array().into_iter().flatten() {
            let item = stage_item(audit, stage, trusted);
            match item.ok {
                Some(true) => v.counts.verified += 1,
                Some(false) => v.counts.failed += 1,
                None if item.tx_id.is_none() => v.counts.not_anchored += 1,
                None => v.counts.undetermined += 1,
            }
            v.items.push(item);
        }
        checkpoints(audit, trusted, &mut v);
    }
    v.status = v.counts.status();
    if v.findings.iter().any(|f| f.ok == Some(false)) {
        v.status = Status::Failed;
    }
    v
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A stage's checks from its evidence.
fn stage_item(audit: &Value, stage: &Value, trusted: &[String]) -> Item {
    let kind = text(stage, "stage").to_string();
    let label = text(stage, "label").to_string();
    let tx = stage["tx_id"].as_str().map(str::to_owned);
    let mut item = Item {
        kind: kind.clone(),
        label: label.clone(),
        tx_id: tx.clone(),
        ok: None,
        notes: Vec::new(),
    };
    let Some(tx) = tx else {
        item.notes.push("not anchored".into());
        return item;
    };
    let Some(ev) = stage.get("evidence").filter(|e| e.is_object()) else {
        item.notes
            .push("no evidence in the bundle (withheld)".into());
        return item;
    };
    let mut failed: Vec<String> = Vec::new();
    let mut undetermined: Vec<String> = Vec::new();
    if text(ev, "tx_id") != tx {
        failed.push(format!(
            "the evidence is of TX {:?}, not {tx}",
            text(ev, "tx_id")
        ));
    }
    let envelope = &ev["envelope"];
    let payload = match &ev["payload"] {
        Value::String(h) => match hex::decode(h) {
            Ok(b) => Some(b),
            Err(_) => {
                failed.push("the payload is not hex".into());
                None
            }
        },
        _ => {
            undetermined.push("the payload bytes are withheld".into());
            None
        }
    };
    envelope_checks(envelope, payload.as_deref(), trusted, &mut failed);
    match &ev["data_item"] {
        Value::String(b) => {
            if let Err(why) = data_item_binds(&tx, b, envelope, ev.get("receipt")) {
                failed.push(why);
            }
        }
        _ => undetermined.push("no signed data item: the TX id cannot be re-derived".into()),
    }
    if let Some(why) = subject_check(audit, &kind, &label, ev, envelope) {
        match why {
            Ok(u) => undetermined.push(u),
            Err(f) => failed.push(f),
        }
    }
    if let (Some(sums), Some(p)) = (ev.get("model_checksums"), &payload) {
        let committed = serde_json::from_slice::<Value>(p)
            .ok()
            .map(|p| p["artifact_checksums"].clone());
        if committed.as_ref() != Some(sums) {
            failed.push("the model checksums differ from those the payload commits to".into());
        }
    }
    if stage["ok"] == Value::Bool(false) {
        failed.push(format!(
            "the audit found this stage failing when it was exported: {}",
            failing_reason(stage)
        ));
    }
    item.ok = if !failed.is_empty() {
        Some(false)
    } else if !undetermined.is_empty() {
        None
    } else {
        Some(true)
    };
    item.notes = failed.into_iter().chain(undetermined).collect();
    item
}

/// The first failing check the online audit recorded.
fn failing_reason(stage: &Value) -> String {
    stage["checks"]
        .as_object()
        .into_iter()
        .flatten()
        .find(|(_, c)| c["ok"] == Value::Bool(false))
        .map(|(k, c)| format!("{k}: {}", text(c, "reason")))
        .unwrap_or_else(|| "see its checks".into())
}

/// Signature, spec version, payload binding and pinning of one envelope.
fn envelope_checks(
    envelope: &Value,
    payload: Option<&[u8]>,
    trusted: &[String],
    failed: &mut Vec<String>,
) {
    if !envelope.is_object() {
        failed.push("no envelope".into());
        return;
    }
    let v = verify_envelope(envelope, payload);
    if v.spec_version_status == SpecVersionStatus::Unsupported {
        failed.push("the envelope's spec_version is not supported".into());
    }
    if !v.signature_valid {
        failed.push("the envelope's signature does not verify".into());
    }
    if payload.is_some() && v.payload_hash_valid != Some(true) {
        failed.push("the payload bytes do not hash to the signed payload_hash".into());
    }
    let key = text(envelope, "public_key").to_ascii_lowercase();
    if !trusted.is_empty() && !trusted.contains(&key) {
        failed.push(format!("signed by {key}, not a pinned key"));
    }
}

/// The data item: its id is the TX, its signature verifies, its data is the envelope; the
/// receipt, when kept, is Turbo's for this item.
fn data_item_binds(
    tx: &str,
    b64: &str,
    envelope: &Value,
    receipt: Option<&Value>,
) -> Result<(), String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| "the data item is not base64url".to_string())?;
    let item = DataItem::parse(&bytes).map_err(|e| format!("the data item cannot be read: {e}"))?;
    item.verify()
        .map_err(|e| format!("the data item's signature does not verify: {e}"))?;
    if item.id() != tx {
        return Err(format!("the data item's id is {}, not the TX", item.id()));
    }
    let data =
        jcs::parse(&item.data).map_err(|_| "the data item's data is not JSON".to_string())?;
    if &data != envelope {
        return Err("the envelope differs from the data item's data (the signed upload)".into());
    }
    if let Some(r) = receipt.filter(|r| !r.is_null()) {
        let r: Receipt = serde_json::from_value(r.clone())
            .map_err(|e| format!("the receipt cannot be read: {e}"))?;
        if r.id != tx {
            return Err(format!("the receipt is for {}, not the TX", r.id));
        }
        r.verify_signature()
            .map_err(|e| format!("the Turbo receipt: {e}"))?;
        if r.owner != item.owner_address() {
            return Err("the receipt names another owner than the data item's".into());
        }
    }
    Ok(())
}

/// The envelope's subject against the entity the audit says the stage is about:
/// `Some(Err)` failed, `Some(Ok)` undetermined, `None` bound.
fn subject_check(
    audit: &Value,
    kind: &str,
    label: &str,
    ev: &Value,
    envelope: &Value,
) -> Option<Result<String, String>> {
    let stated = &ev["entity"];
    let entity = match kind {
        "training" => Entity::Run(text(audit, "run_id").to_string()),
        "registration" | "promotion" | "alias" => Entity::ModelVersion(
            text(audit, "model").to_string(),
            text(audit, "version").to_string(),
        ),
        "prediction" => Entity::Trace(label.to_string()),
        "dataset" => Entity::Dataset(
            text(stated, "name").to_string(),
            text(stated, "digest").to_string(),
        ),
        // A checkpoint's envelope is the producer's; its documents bind it to the version.
        "checkpoint" => return None,
        other => return Some(Err(format!("unknown stage kind {other:?}"))),
    };
    if *stated != super::evidence::entity_json(&entity) && kind != "dataset" {
        return Some(Err(format!(
            "the evidence is about {stated}, not what the audit names"
        )));
    }
    let why = subject_mismatch(envelope, &entity)?;
    if label.contains("(anchored as ") {
        return Some(Ok(format!(
            "anchored under the model's former name; the rename proof is not in the bundle ({why})"
        )));
    }
    Some(Err(format!("the proof is about another entity: {why}")))
}

/// The checkpoints' batch documents: every leaf included under the signed root, the chain.
fn checkpoints(audit: &Value, trusted: &[String], v: &mut BodyVerdict) {
    let cp = &audit["checkpoints"];
    let docs = cp["documents"].as_array().cloned().unwrap_or_default();
    let mut parsed: Vec<BatchDocument> = Vec::new();
    for raw in &docs {
        let tx = text(raw, "checkpoint_tx").to_string();
        let mut item = Item {
            kind: "checkpoint".into(),
            label: String::new(),
            tx_id: Some(tx.clone()),
            ok: Some(true),
            notes: Vec::new(),
        };
        let doc: BatchDocument = match serde_json::from_value(raw.clone()) {
            Ok(d) => d,
            Err(e) => {
                item.ok = Some(false);
                item.notes
                    .push(format!("the batch document cannot be read: {e}"));
                v.counts.failed += 1;
                v.items.push(item);
                continue;
            }
        };
        item.label = format!("{} predictions", doc.leaves.len());
        let mut failed = Vec::new();
        let record = hex::decode(&doc.record_bytes).ok();
        if record.is_none() {
            failed.push("the record bytes are not hex".to_string());
        }
        envelope_checks(&doc.envelope, record.as_deref(), trusted, &mut failed);
        match &raw["data_item"] {
            Value::String(b) => {
                if let Err(why) = data_item_binds(&tx, b, &doc.envelope, None) {
                    failed.push(why);
                }
            }
            _ => {
                item.ok = None;
                item.notes
                    .push("no signed data item: the TX id cannot be re-derived".into());
            }
        }
        let meta = record
            .as_deref()
            .and_then(|r| serde_json::from_slice::<Value>(r).ok())
            .map(|r| r["metadata"].clone())
            .unwrap_or(Value::Null);
        if meta["model_name"].as_str() != Some(text(audit, "model"))
            || meta["model_version"].as_str() != Some(text(audit, "version"))
        {
            failed.push("the checkpoint is about another model version".into());
        }
        let signed = text(&doc.envelope, "payload_hash").to_string();
        let (mut ok_leaves, mut bad_leaves) = (0u64, 0u64);
        for leaf in &doc.leaves {
            let bound = check_inclusion(&doc, &signed, &leaf.trace_id)
                .map_err(|e| e.to_string())
                .and_then(|inc| {
                    let payload: Value = serde_json::from_str(&inc.leaf.payload)
                        .map_err(|_| "the leaf's payload is not JSON".to_string())?;
                    if inc.leaf.leaf_index != leaf.leaf_index {
                        return Err(format!("trace {} is a leaf twice", leaf.trace_id));
                    }
                    if payload["mlflow_trace_id"].as_str() != Some(leaf.trace_id.as_str()) {
                        return Err(format!(
                            "leaf {}: the payload is about another trace",
                            leaf.leaf_index
                        ));
                    }
                    if sha256_hex(leaf.payload.as_bytes()) != leaf.payload_hash.to_ascii_lowercase()
                    {
                        return Err(format!(
                            "leaf {}: payload_hash is not the payload's",
                            leaf.leaf_index
                        ));
                    }
                    Ok(())
                });
            match bound {
                Ok(()) => ok_leaves += 1,
                Err(why) => {
                    bad_leaves += 1;
                    if bad_leaves <= 5 {
                        failed.push(format!("trace {}: {why}", leaf.trace_id));
                    }
                }
            }
        }
        if bad_leaves > 5 {
            failed.push(format!("… {} more leaves fail", bad_leaves - 5));
        }
        if !failed.is_empty() {
            item.ok = Some(false);
        }
        item.notes.splice(0..0, failed);
        item.label = format!(
            "{ok_leaves} of {} predictions included under the signed root",
            doc.leaves.len()
        );
        // Each checkpointed prediction counts as an item of its own.
        match item.ok {
            Some(true) => v.counts.verified += ok_leaves,
            Some(false) => {
                v.counts.verified += 0;
                v.counts.failed += doc.leaves.len().max(1) as u64;
            }
            None => v.counts.undetermined += doc.leaves.len().max(1) as u64,
        }
        v.items.push(item);
        parsed.push(doc);
    }
    let expected = cp["count"].as_u64().unwrap_or(0) as usize;
    if docs.len() < expected {
        v.counts.undetermined += (expected - docs.len()) as u64;
        v.findings.push(finding(
            "checkpoints",
            "documents",
            None,
            format!(
                "{expected} checkpoints, {} batch documents in the bundle",
                docs.len()
            ),
        ));
    }
    if !parsed.is_empty() {
        v.findings.push(match checkpoint_chain(&parsed) {
            Ok(()) => finding(
                "checkpoints",
                "chain",
                Some(true),
                "one chain from GENESIS, no fork, no gap",
            ),
            Err(e) => finding("checkpoints", "chain", Some(false), e.to_string()),
        });
    }
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
