//! What `export` keeps while it audits, and the `ario.mlflow.audit/v1` evidence body built from
//! it: the audit as `audit --format json` prints it, each anchored stage carrying its evidence
//! (the envelope, the exact payload bytes, the signed data item whose id is the TX, the Turbo
//! receipt, the model's file checksums) and the checkpoints their batch documents — everything
//! `verify evidence` needs once MLflow is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::audit::Audit;
use super::Entity;

/// What was read for one TX while verifying it.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// The signed ANS-104 data item, as a gateway served it (only one that proved the bytes).
    pub data_item: Option<Vec<u8>>,
    /// The payload bytes the envelope commits to (a checkpoint's record bytes).
    pub payload: Option<Vec<u8>>,
    /// Turbo's receipt, from the witness directory.
    pub receipt: Option<Value>,
}

/// Evidence kept per TX while a [`super::Verifier`] verifies (shared by its clones).
#[derive(Debug, Clone, Default)]
pub struct EvidenceLog(Arc<Mutex<HashMap<String, Captured>>>);

impl EvidenceLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn with(&self, tx_id: &str, f: impl FnOnce(&mut Captured)) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(tx_id.to_string()).or_default());
    }

    /// Keeps the data item of `tx_id`.
    pub fn data_item(&self, tx_id: &str, bytes: &[u8]) {
        self.with(tx_id, |c| c.data_item = Some(bytes.to_vec()));
    }

    /// Keeps the payload bytes of `tx_id`.
    pub fn payload(&self, tx_id: &str, bytes: &[u8]) {
        self.with(tx_id, |c| c.payload = Some(bytes.to_vec()));
    }

    /// Keeps the receipt of `tx_id`.
    pub fn receipt(&self, tx_id: &str, receipt: Value) {
        self.with(tx_id, |c| c.receipt = Some(receipt));
    }

    /// What was kept for `tx_id`.
    pub fn get(&self, tx_id: &str) -> Captured {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(tx_id).cloned().unwrap_or_default()
    }
}

/// The entity a stage's proof must be about, as the body states it.
pub fn entity_json(entity: &Entity) -> Value {
    match entity {
        Entity::Run(id) => json!({"type": "run", "run_id": id}),
        Entity::ModelVersion(n, v) => json!({"type": "model_version", "name": n, "version": v}),
        Entity::Trace(id) => json!({"type": "trace", "trace_id": id}),
        Entity::Dataset(n, d) => json!({"type": "dataset", "name": n, "digest": d}),
        Entity::Any => json!({"type": "any"}),
    }
}

/// The audit with its evidence inlined: the body of an `ario.mlflow.audit/v1` export.
pub fn audit_body(audit: &Audit, log: &EvidenceLog) -> Value {
    let mut body = audit.to_json();
    if let Some(stages) = body["stages"].as_array_mut() {
        for (json, stage) in stages.iter_mut().zip(&audit.stages) {
            let (Some(tx), Some(verdict)) = (&stage.tx_id, &stage.verdict) else {
                continue;
            };
            let captured = log.get(tx);
            let envelope = verdict.envelope.clone().unwrap_or(Value::Null);
            let payload = captured.payload.as_deref().map(hex::encode);
            let checksums = captured
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                .map(|p| p["artifact_checksums"].clone())
                .filter(Value::is_object);
            let mut evidence = json!({
                "tx_id": tx,
                "entity": entity_json(&stage.entity),
                "envelope": envelope,
                "payload": payload,
                "data_item": captured.data_item.as_deref().map(|b| URL_SAFE_NO_PAD.encode(b)),
                "receipt": captured.receipt,
            });
            if let Some(c) = checksums {
                evidence["model_checksums"] = c;
            }
            // The verdict is the online one; the evidence replaces its copy of the envelope.
            if let Some(v) = json.get_mut("verdict").and_then(Value::as_object_mut) {
                v.remove("envelope");
            }
            json["evidence"] = evidence;
        }
    }
    let documents: Vec<Value> = audit
        .checkpoint_documents
        .iter()
        .map(|doc| {
            let mut d = serde_json::to_value(doc).unwrap_or(Value::Null);
            let captured = log.get(&doc.checkpoint_tx);
            d["data_item"] = captured
                .data_item
                .as_deref()
                .map(|b| Value::String(URL_SAFE_NO_PAD.encode(b)))
                .unwrap_or(Value::Null);
            d
        })
        .collect();
    body["checkpoints"]["documents"] = Value::Array(documents);
    body
}
