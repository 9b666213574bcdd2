//! Verifying a prediction anchored in a Merkle checkpoint (`--predictions batched`): the
//! checkpoint envelope from a gateway (signature, data item, key), the batch document from the
//! served version's run (record bytes → the signed `payload_hash`; the trace's payload → leaf
//! hash → audit path → the record's `merkle_root`), and the live trace (its root span's input
//! and output still hash to what the leaf committed to).

use serde_json::{json, Value};

use super::{overall, signature_check, Check, Checks, Entity, ProofVerdict, Verifier};
use crate::mlflow::spans::{root_span, span_attribute};
use crate::profile::checkpoint::{self, BatchDocument};
use crate::profile::prediction;
use crate::proof::jcs;

impl Verifier {
    /// Verifies trace `trace_id` as a leaf of the checkpoint anchored as `tx_id`.
    pub async fn verify_checkpointed_trace(&self, trace_id: &str, tx_id: &str) -> ProofVerdict {
        let fetched = match self.fetch(tx_id).await {
            Ok(f) => f,
            Err(check) => return ProofVerdict::not_found(tx_id, check),
        };
        let env = &fetched.envelope;
        let text = |k: &str| env.get(k).and_then(Value::as_str).map(str::to_owned);
        let signature = signature_check(env);
        let entity = Entity::Trace(trace_id.to_string());
        let key_binding = self.key_binding(env, &entity).await;
        let signed_hash = text("payload_hash").unwrap_or_default();
        let (anchored_bytes, source_of_truth, previous) =
            match self.inclusion(trace_id, tx_id, env, &signed_hash).await {
                Ok(parts) => parts,
                Err(check) => (check, Check::skipped("no_payload_to_compare"), None),
            };
        let ario_attestation = match &self.attestation {
            None => Check::skipped("ario_verify_not_enabled"),
            Some(client) => client.attest(tx_id, self.min_attestation_level).await,
        };
        let mut verdict = ProofVerdict {
            tx_id: tx_id.to_string(),
            event_type: Some(prediction::EVENT_TYPE.into()),
            subject: Some(json!({"type": "mlflow_prediction_checkpoint", "trace_id": trace_id})),
            public_key: text("public_key"),
            previous_hash: previous,
            payload_hash: Some(signed_hash),
            signed_at: text("signed_at"),
            proof_found: fetched.proof_found,
            data_item: fetched.data_item,
            key_binding,
            checks: Checks {
                signature,
                anchored_bytes,
                source_of_truth,
                ario_attestation,
            },
            overall_ok: false,
            superseded_by: None,
            envelope: Some(fetched.envelope.clone()),
        };
        verdict.overall_ok = overall(&verdict);
        verdict
    }

    /// Checks 2 and 3 of a checkpointed trace, and the record's `previous_hash`.
    async fn inclusion(
        &self,
        trace_id: &str,
        tx_id: &str,
        envelope: &Value,
        signed_hash: &str,
    ) -> Result<(Check, Check, Option<String>), Check> {
        let (info, spans) = self
            .mlflow
            .get_trace(trace_id)
            .await
            .map_err(|e| Check::fail(format!("trace {trace_id}: {e}")))?;
        let model_id = info
            .trace_metadata
            .get("mlflow.modelId")
            .ok_or_else(|| Check::fail("the trace names no served model (mlflow.modelId)"))?;
        let model = self
            .mlflow
            .get_logged_model(model_id)
            .await
            .map_err(|e| Check::fail(format!("logged model {model_id}: {e}")))?;
        let run_id = model
            .source_run_id
            .ok_or_else(|| Check::fail(format!("logged model {model_id} has no source run")))?;
        let path = checkpoint::batch_path(tx_id);
        let bytes = self
            .download(&run_id, &path)
            .await
            .map_err(|e| Check::fail(format!("batch document {path}: {e}")))?;
        let doc: BatchDocument = serde_json::from_slice(&bytes)
            .map_err(|e| Check::fail(format!("batch document {path} cannot be read: {e}")))?;
        if doc.checkpoint_tx != tx_id || &doc.envelope != envelope {
            return Err(Check::fail(format!(
                "batch document {path} is not the one of checkpoint {tx_id}"
            )));
        }
        if let (Some(log), Ok(record)) = (&self.evidence, hex::decode(&doc.record_bytes)) {
            log.payload(tx_id, &record);
        }
        let included = checkpoint::check_inclusion(&doc, signed_hash, trace_id)
            .map_err(|e| Check::fail(e.to_string()))?;
        let leaf = &included.leaf;
        let index = leaf.leaf_index;
        let anchored = Check::pass(format!(
            "leaf {index} of {}: payload → leaf hash → audit path → signed merkle_root",
            included.leaf_count
        ))
        .with("leaf_index", index)
        .with("leaf_count", included.leaf_count)
        .with(
            "merkle_root",
            included.record["event"]["merkle_root"].clone(),
        )
        .with(
            "previous_tx",
            included.record["metadata"]["previous_tx"].clone(),
        )
        .with("batch_document", path);
        let previous = included.record["previous_hash"].as_str().map(str::to_owned);
        let live = live_check(index, &leaf.payload, trace_id, &spans);
        Ok((anchored, live, previous))
    }
}

/// Check 3: the live trace's root-span input and output still hash to what leaf `index`
/// committed to.
fn live_check(index: u64, payload: &str, trace_id: &str, spans: &[Value]) -> Check {
    let anchored = match jcs::parse(payload.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Check::fail(format!("leaf {index}: the payload is not JSON ({e})")),
    };
    if anchored["mlflow_trace_id"].as_str() != Some(trace_id) {
        return Check::fail(format!("leaf {index}: the payload is about another trace"));
    }
    let Some(root) = root_span(spans) else {
        return Check::fail(format!(
            "leaf {index}: the trace has no root span any more (pruned?)"
        ));
    };
    let input = span_attribute(root, "mlflow.spanInputs").unwrap_or(Value::Null);
    let output = span_attribute(root, "mlflow.spanOutputs").unwrap_or(Value::Null);
    for (field, live) in [
        ("input_hash", prediction::input_hash(&input)),
        ("output_hash", prediction::output_hash(&output)),
    ] {
        let live = match live {
            Ok(h) => h,
            Err(e) => return Check::fail(format!("leaf {index}: {field}: {e}")),
        };
        if anchored[field].as_str() != Some(live.as_str()) {
            return Check::fail(format!(
                "leaf {index}: live_mlflow_mismatch: the trace's {} no longer hashes to the anchored {field}",
                field.trim_end_matches("_hash")
            ))
            .with("leaf_index", index)
            .with("anchored", anchored[field].clone())
            .with("live", live);
        }
    }
    Check::pass(format!(
        "leaf {index}: the live trace's input and output hash to the anchored leaf"
    ))
}
