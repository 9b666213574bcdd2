//! Predictions: an MLflow trace of a served model → its prediction payload (hashes of the root
//! span's input and output, the latency) → signed onto the served version's registration TX.
//! The trace is linked to its version through `mlflow.modelId` → LoggedModel → source run →
//! the version whose source is that model.

use serde_json::Value;

use super::prepared::{ArtifactContent, Prepared, TagValue, Write};
use super::sign::sign_event;
use super::{AnchorError, AnchorStatus, Anchored, Anchorer};
use crate::mlflow::spans::{root_span, span_attribute, span_latency_ms};
use crate::mlflow::TraceInfo;
use crate::profile::prediction::{self, PredictionFacts};
use crate::profile::{registration, tags, witness, GENESIS};

impl Anchorer {
    /// Anchors a prediction from an MLflow trace (`anchor trace <trace_id>`).
    pub async fn anchor_trace(&self, trace_id: &str) -> Result<Vec<Anchored>, AnchorError> {
        let info = self.mlflow.get_trace_info(trace_id).await?;
        if let Some(tx) = info
            .tags
            .get(prediction::TX_TAG)
            .or_else(|| info.tags.get(prediction::LEGACY_TX_TAG))
        {
            let hash = info
                .tags
                .get(tags::PAYLOAD_HASH)
                .cloned()
                .unwrap_or_default();
            return Ok(vec![Anchored {
                event_type: prediction::EVENT_TYPE.into(),
                subject: trace_id.into(),
                tx_id: tx.clone(),
                payload_hash: hash,
                status: AnchorStatus::AlreadyAnchored,
            }]);
        }
        let mut out = Vec::new();
        let p = self.prepare_prediction(&info, &mut out, true).await?;
        self.publish(&p).await?;
        out.push(Self::anchored(&p, AnchorStatus::Anchored));
        Ok(out)
    }

    /// Builds and signs a prediction from a trace; anchors the model version's registration
    /// first when the trace is linked to one that is not anchored yet (recorded in `out`).
    /// With `anchor_dependencies` false, a linked version whose registration is not anchored yet
    /// is [`AnchorError::NotReady`] (the durable service waits for its own registration job).
    pub async fn prepare_prediction(
        &self,
        info: &TraceInfo,
        out: &mut Vec<Anchored>,
        anchor_dependencies: bool,
    ) -> Result<Prepared, AnchorError> {
        let trace_id = info.trace_id.as_str();
        if info.state == "IN_PROGRESS" {
            return Err(AnchorError::NotReady(format!(
                "trace {trace_id} is still in progress"
            )));
        }
        let spans = self.mlflow.get_trace_spans(trace_id).await?;
        let root = root_span(&spans).ok_or_else(|| {
            AnchorError::NotReady(format!("trace {trace_id} has no root span (pruned?)"))
        })?;
        let input = span_attribute(root, "mlflow.spanInputs").unwrap_or(Value::Null);
        let output = span_attribute(root, "mlflow.spanOutputs").unwrap_or(Value::Null);
        let latency_ms = span_latency_ms(root)
            .or_else(|| info.execution_ms())
            .unwrap_or(0.0);

        let unknown = || prediction::UNKNOWN.to_string();
        let (mut model_name, mut model_version, mut run_id, mut model_uri) =
            (unknown(), unknown(), unknown(), unknown());
        let mut previous = GENESIS.to_string();
        if let Some(model_id) = info
            .trace_metadata
            .get("mlflow.modelId")
            .filter(|m| !m.is_empty())
        {
            model_uri = format!("models:/{model_id}");
            if let Ok(model) = self.mlflow.get_logged_model(model_id).await {
                if let Some(source_run) = model.source_run_id.filter(|r| !r.is_empty()) {
                    run_id = source_run.clone();
                    let versions = self
                        .mlflow
                        .search_model_versions(&format!("run_id='{source_run}'"))
                        .await?;
                    let chosen = versions
                        .iter()
                        .find(|v| v.source == model_uri)
                        .or(versions.first());
                    if let Some(v) = chosen {
                        model_name = v.name.clone();
                        model_version = v.version.clone();
                        model_uri = format!("models:/{}/{}", v.name, v.version);
                        previous = match (v.tag(registration::TX_TAG), anchor_dependencies) {
                            (Some(tx), _) => tx.to_string(),
                            (None, true) => {
                                Box::pin(self.registration_tx(&v.name, &v.version, out))
                                    .await?
                                    .1
                            }
                            (None, false) => {
                                return Err(AnchorError::NotReady(format!(
                                    "waiting for the registration of {}/{}",
                                    v.name, v.version
                                )))
                            }
                        };
                    }
                }
            }
        }
        let facts = PredictionFacts {
            trace_id: trace_id.into(),
            model_name,
            model_version,
            run_id: run_id.clone(),
            model_uri,
            input,
            output,
            latency_ms,
        };
        let payload = prediction::payload(&facts)?;
        let ev = sign_event(
            prediction::EVENT_TYPE,
            prediction::subject(trace_id, &run_id),
            &previous,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;

        let mut signed = Vec::new();
        if run_id != prediction::UNKNOWN {
            let run = self.mlflow.get_run(&run_id).await?;
            for (file, content) in [
                (witness::PAYLOAD_FILE, ArtifactContent::Payload),
                (witness::PROOF_FILE, ArtifactContent::Proof),
            ] {
                signed.push(Write::Artifact {
                    artifact_uri: run.info.artifact_uri.clone(),
                    path: prediction::witness_path(trace_id, file),
                    content,
                });
            }
        }
        let tag = |key: &str, value: TagValue| Write::TraceTag {
            trace_id: trace_id.into(),
            key: key.into(),
            value,
        };
        let text = |s: &str| TagValue::Text(s.to_string());
        signed.extend([
            tag(
                prediction::PAYLOAD_JSON_TAG,
                TagValue::Text(String::from_utf8_lossy(&ev.payload_bytes).into_owned()),
            ),
            tag(prediction::DECISION_ID_TAG, text(trace_id)),
            tag(prediction::MODEL_NAME_TAG, text(&facts.model_name)),
            tag(prediction::MODEL_VERSION_TAG, text(&facts.model_version)),
            tag(
                prediction::INPUT_HASH_TAG,
                text(payload["input_hash"].as_str().unwrap_or_default()),
            ),
            tag(
                prediction::OUTPUT_HASH_TAG,
                text(payload["output_hash"].as_str().unwrap_or_default()),
            ),
            tag(tags::PAYLOAD_HASH, text(&ev.payload_hash)),
            tag(prediction::PROOF_STATUS_TAG, text("anchoring")),
        ]);
        let anchored = vec![
            tag(prediction::TX_TAG, TagValue::TxId),
            tag(tags::ARWEAVE_URL, TagValue::ArweaveUrl),
            tag(prediction::PROOF_STATUS_TAG, text(tags::STATUS_ANCHORED)),
        ];
        Ok(Prepared::new(
            ev,
            prediction::EVENT_TYPE,
            trace_id.into(),
            signed,
            anchored,
        ))
    }
}
