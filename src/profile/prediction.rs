//! Predictions (spec/mlflow-profile.md §2.7): one MLflow trace of a served model, committing to
//! hashes of its input and output (never the data itself), chained to the served version's
//! registration TX. The payload travels in the trace tag [`PAYLOAD_JSON_TAG`] too, so a trace
//! is verifiable without artifact access.

use serde_json::{json, Value};

use super::round::python_round;
use super::PayloadError;
use crate::proof::{jcs, sha256_hex};

/// Envelope `event_type`.
pub const EVENT_TYPE: &str = "prediction";
/// The per-event witness directory under `ario/` (on the model's source run), keyed by trace id.
pub const WITNESS_DIR: &str = "predictions";
/// Trace tag: the canonical payload text.
pub const PAYLOAD_JSON_TAG: &str = "ario.payload_json";
/// Trace tag: the prediction TX.
pub const TX_TAG: &str = "ario.prediction_tx";
/// Trace tag: the prediction TX as older plugin versions wrote it.
pub const LEGACY_TX_TAG: &str = "ario.arweave_tx";
/// Trace tag: the decision id (the trace id).
pub const DECISION_ID_TAG: &str = "ario.decision_id";
/// Trace tag: the served model's name.
pub const MODEL_NAME_TAG: &str = "ario.model_name";
/// Trace tag: the served model's version.
pub const MODEL_VERSION_TAG: &str = "ario.model_version";
/// Trace tag: the payload's `input_hash`.
pub const INPUT_HASH_TAG: &str = "ario.input_hash";
/// Trace tag: the payload's `output_hash`.
pub const OUTPUT_HASH_TAG: &str = "ario.output_hash";
/// Trace tag: `anchoring` once signed, `anchored` once uploaded.
pub const PROOF_STATUS_TAG: &str = "ario.proof_status";
/// Value written to "unknown" fields when a trace names no registered model.
pub const UNKNOWN: &str = "unknown";

/// `input_hash` (§2.7): the JCS of an object input as is, of anything else wrapped as
/// `{"features": …}`.
pub fn input_hash(input: &Value) -> Result<String, PayloadError> {
    let wrapped = match input {
        Value::Object(_) => input.clone(),
        other => json!({ "features": other }),
    };
    Ok(sha256_hex(&jcs::canonicalize(&wrapped)?))
}

/// `output_hash` (§2.7): the JCS of `{"prediction": output}`.
pub fn output_hash(output: &Value) -> Result<String, PayloadError> {
    Ok(sha256_hex(&jcs::canonicalize(
        &json!({ "prediction": output }),
    )?))
}

/// Facts a prediction payload is built from (an MLflow trace).
#[derive(Debug, Clone)]
pub struct PredictionFacts {
    /// The trace id, used as `decision_id` and `mlflow_trace_id`.
    pub trace_id: String,
    /// Registered model name, or [`UNKNOWN`].
    pub model_name: String,
    /// Model version, or [`UNKNOWN`].
    pub model_version: String,
    /// The model's source run, or [`UNKNOWN`].
    pub run_id: String,
    /// `models:/<name>/<version>`, `models:/<model_id>`, or [`UNKNOWN`].
    pub model_uri: String,
    /// Root span request.
    pub input: Value,
    /// Root span response.
    pub output: Value,
    /// Execution time in ms.
    pub latency_ms: f64,
}

/// The prediction payload (§2.7), from a trace.
pub fn payload(f: &PredictionFacts) -> Result<Value, PayloadError> {
    Ok(json!({
        "event_type": EVENT_TYPE, "decision_id": f.trace_id, "model_name": f.model_name,
        "model_version": f.model_version, "run_id": f.run_id, "model_uri": f.model_uri,
        "input_hash": input_hash(&f.input)?, "output_hash": output_hash(&f.output)?,
        "latency_ms": jcs::number(python_round(f.latency_ms, 2))?, "artifact_verified": Value::Null,
        "mlflow_trace_id": f.trace_id,
    }))
}

/// The envelope subject.
pub fn subject(trace_id: &str, model_run_id: &str) -> Value {
    json!({"type": "mlflow_prediction", "decision_id": trace_id, "model_run_id": model_run_id, "trace_id": trace_id})
}

/// The witness path of one file of a prediction (on the model's source run).
pub fn witness_path(trace_id: &str, file: &str) -> String {
    super::witness::per_event_path(WITNESS_DIR, trace_id, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_hashes_match_the_golden_example() {
        assert_eq!(
            input_hash(&json!([78000, 0.18, 0.22, 72, 745])).unwrap(),
            "f985913dd680572d6ba3c6c34df1b35fe0f407900e64d2ee320f858d38d6c523"
        );
        assert_eq!(
            output_hash(&json!([1])).unwrap(),
            "1eee05979bc26e5bc80028d7b598a5ed9e69af39e95bca31376655e31f6d8d1f"
        );
        assert_eq!(
            input_hash(&json!({"q": "hello"})).unwrap(),
            sha256_hex(br#"{"q":"hello"}"#)
        );
    }
}
