//! The `ario.mlflow.audit/v1` body judged from its evidence alone: every stage's proof and
//! every checkpoint's leaves, the verdict recomputed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use super::{finding, Finding, Status};
use crate::arweave::receipt::{Receipt, ReceiptError};
use crate::arweave::{DataItem, DataItemError};
use crate::profile::checkpoint::{check_inclusion, BatchDocument};
use crate::proof::{jcs, sha256_hex, verify_envelope, SpecVersionStatus};
use crate::verify::audit::checkpoint_chain;
use crate::verify::binding::subject_mismatch;
use crate::verify::Entity;

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
    pub(super) fn status(&self) -> Status {
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

    pub(super) fn as_json(&self) -> Value {
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

/// The audits of a body: one (`stages` at the top) or a window's (`audits`).
pub(super) fn audits(body: &Value) -> Vec<&Value> {
    match body.get("audits").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![body],
    }
}

/// Which signers pass: pinned keys, a key history's windows, or (both empty) any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keys<'a> {
    /// Pinned keys (lowercase hex).
    pub pinned: &'a [String],
    /// A trusted key history's windows.
    pub history: Option<&'a [crate::profile::key_history::KeyWindow]>,
}

impl<'a> Keys<'a> {
    /// The keys `opts` names.
    pub fn of(opts: &'a super::Options) -> Keys<'a> {
        Keys {
            pinned: &opts.trusted_keys,
            history: opts.key_history.as_deref(),
        }
    }
}

/// Recomputes an `ario.mlflow.audit/v1` body's verdict from its evidence alone.
pub fn recompute(body: &Value, trusted: Keys<'_>) -> BodyVerdict {
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

pub(super) fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A stage's checks from its evidence.
fn stage_item(audit: &Value, stage: &Value, trusted: Keys<'_>) -> Item {
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
                failed.push(why.to_string());
            }
        }
        _ => undetermined.push("no signed data item: the TX id cannot be re-derived".into()),
    }
    if let Some(why) = subject_check(audit, &kind, &label, ev, envelope) {
        match why {
            Subject::Undetermined(u) => undetermined.push(u),
            Subject::Other(f) => failed.push(f),
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
    trusted: Keys<'_>,
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
    if !trusted.pinned.is_empty() && !trusted.pinned.contains(&key) {
        failed.push(format!("signed by {key}, not a pinned key"));
    }
    if let Some(windows) = trusted.history {
        // The checkpoint envelope (ario.events/v1) carries its time as `signed_at` too.
        let at = text(envelope, "signed_at");
        if let Err(e) = crate::profile::key_history::judge(windows, &key, at) {
            failed.push(e.to_string());
        }
    }
}

/// The data item: its id is the TX, its signature verifies, its data is the envelope; the
/// receipt, when kept, is Turbo's for this item.
fn data_item_binds(
    tx: &str,
    b64: &str,
    envelope: &Value,
    receipt: Option<&Value>,
) -> Result<(), Unbound> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| Unbound::NotBase64)?;
    let item = DataItem::parse(&bytes).map_err(Unbound::Unreadable)?;
    item.verify().map_err(Unbound::Signature)?;
    if item.id() != tx {
        return Err(Unbound::OtherId(item.id()));
    }
    let data = jcs::parse(&item.data).map_err(|_| Unbound::DataNotJson)?;
    if &data != envelope {
        return Err(Unbound::OtherData);
    }
    if let Some(r) = receipt.filter(|r| !r.is_null()) {
        let r: Receipt = serde_json::from_value(r.clone())
            .map_err(|e| Unbound::ReceiptUnreadable(e.to_string()))?;
        if r.id != tx {
            return Err(Unbound::ReceiptOtherId(r.id));
        }
        r.verify_signature().map_err(Unbound::ReceiptSignature)?;
        if r.owner != item.owner_address() {
            return Err(Unbound::ReceiptOwner);
        }
    }
    Ok(())
}

/// Why a data item (or its receipt) does not bind the envelope to the TX.
#[derive(Debug, thiserror::Error)]
enum Unbound {
    #[error("the data item is not base64url")]
    NotBase64,
    #[error("the data item cannot be read: {0}")]
    Unreadable(DataItemError),
    #[error("the data item's signature does not verify: {0}")]
    Signature(DataItemError),
    #[error("the data item's id is {0}, not the TX")]
    OtherId(String),
    #[error("the data item's data is not JSON")]
    DataNotJson,
    #[error("the envelope differs from the data item's data (the signed upload)")]
    OtherData,
    #[error("the receipt cannot be read: {0}")]
    ReceiptUnreadable(String),
    #[error("the receipt is for {0}, not the TX")]
    ReceiptOtherId(String),
    #[error("the Turbo receipt: {0}")]
    ReceiptSignature(ReceiptError),
    #[error("the receipt names another owner than the data item's")]
    ReceiptOwner,
}

/// A subject that is not plainly the audited entity.
enum Subject {
    /// It is another entity.
    Other(String),
    /// It cannot be decided from the bundle.
    Undetermined(String),
}

/// The envelope's subject against the entity the audit says the stage is about (`None`:
/// bound).
fn subject_check(
    audit: &Value,
    kind: &str,
    label: &str,
    ev: &Value,
    envelope: &Value,
) -> Option<Subject> {
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
        other => return Some(Subject::Other(format!("unknown stage kind {other:?}"))),
    };
    if *stated != crate::verify::evidence::entity_json(&entity) && kind != "dataset" {
        return Some(Subject::Other(format!(
            "the evidence is about {stated}, not what the audit names"
        )));
    }
    let why = subject_mismatch(envelope, &entity)?;
    if label.contains("(anchored as ") {
        return Some(Subject::Undetermined(format!(
            "anchored under the model's former name; the rename proof is not in the bundle ({why})"
        )));
    }
    Some(Subject::Other(format!(
        "the proof is about another entity: {why}"
    )))
}

/// The checkpoints' batch documents: every leaf included under the signed root, the chain.
fn checkpoints(audit: &Value, trusted: Keys<'_>, v: &mut BodyVerdict) {
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
                    failed.push(why.to_string());
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
