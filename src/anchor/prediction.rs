//! Predictions: an MLflow trace of a served model → its prediction payload (hashes of the root
//! span's input and output, the latency) → signed onto the served version's registration TX.
//! The trace is linked to its version through `mlflow.modelId` → LoggedModel → source run →
//! the version whose source is that model.
//!
//! Predictions are the high-volume event, so this path counts MLflow calls:
//! * traces are read in bulk ([`Anchorer::prefetch_traces`]: one `traces/batchGet` per 50
//!   traces, falling back to one `traces/get` per trace on servers without it);
//! * the served model (LoggedModel → version → run → registration TX) is resolved once per
//!   model id and cached ([`ServedModels`]);
//! * by default ([`PredictionTags::Minimal`]) only what both verifiers need is written: the
//!   payload witness artifact, `ario.payload_json` and `ario.prediction_tx` — three calls.
//!   [`PredictionTags::Full`] adds the plugin's mirror tags and the proof artifact (twelve).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::prepared::{ArtifactContent, Prepared, TagValue, Write};
use super::sign::sign_event;
use super::{AnchorError, AnchorStatus, Anchored, Anchorer};
use crate::mlflow::spans::{root_span, span_attribute, span_latency_ms};
use crate::mlflow::{MlflowClient, MlflowError, TraceInfo};
use crate::profile::prediction::{self, PredictionFacts};
use crate::profile::{registration, tags, witness, GENESIS};
use crate::proof::sha256_hex;

/// What a per-trace prediction writes back to MLflow (`--prediction-tags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PredictionTags {
    /// What verification needs: the payload witness artifact, `ario.payload_json` (step 1) and
    /// `ario.prediction_tx` (step 2) — 3 MLflow calls. Both `verify trace` commands pass.
    #[default]
    Minimal,
    /// Also the plugin's mirror tags (`ario.decision_id`, `ario.model_name`,
    /// `ario.model_version`, `ario.input_hash`, `ario.output_hash`, `ario.payload_hash`,
    /// `ario.proof_status`, `ario.arweave_url`) and the proof artifact — 12 MLflow calls.
    Full,
}

/// Traces fetched in bulk ahead of resolving them; each entry is taken once.
#[derive(Debug, Default)]
pub struct TraceCache {
    entries: Mutex<HashMap<String, (TraceInfo, Vec<Value>)>>,
    /// Set once the server answered that it has no `traces/batchGet`.
    unsupported: AtomicBool,
}

/// How long a served-model resolution without a registration TX is trusted (the TX may land).
const INCOMPLETE_TTL: Duration = Duration::from_secs(1);
/// Served models kept at most (the cache is cleared when full).
const SERVED_MODELS_MAX: usize = 1024;
/// Trace ids per `traces/batchGet` call (they travel in the query string).
const BATCH_GET_CHUNK: usize = 50;

/// What a trace's `mlflow.modelId` resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedModel {
    /// The LoggedModel's source run (`unknown` when it has none).
    pub run_id: String,
    /// The source run's artifact root, where the witness goes.
    pub artifact_uri: Option<String>,
    /// The registered version serving it: (name, version, registration TX if anchored).
    pub version: Option<(String, String, Option<String>)>,
}

/// Served models by LoggedModel id, bounded; an entry without a registration TX is re-read
/// after [`INCOMPLETE_TTL`].
#[derive(Debug, Default)]
pub struct ServedModels(Mutex<HashMap<String, (ServedModel, Instant)>>);

impl ServedModels {
    fn get(&self, model_id: &str) -> Option<ServedModel> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (model, at) = map.get(model_id)?;
        let complete = matches!(&model.version, Some((_, _, Some(_))));
        (complete || at.elapsed() < INCOMPLETE_TTL).then(|| model.clone())
    }

    fn put(&self, model_id: &str, model: ServedModel) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SERVED_MODELS_MAX {
            map.clear();
        }
        map.insert(model_id.to_string(), (model, Instant::now()));
    }
}

/// Resolves a LoggedModel id to its source run and serving version (three reads).
async fn resolve_served_model(
    mlflow: &MlflowClient,
    model_id: &str,
) -> Result<Option<ServedModel>, MlflowError> {
    let model = match mlflow.get_logged_model(model_id).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(run_id) = model.source_run_id.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let model_uri = format!("models:/{model_id}");
    let versions = mlflow
        .search_model_versions(&format!("run_id='{run_id}'"))
        .await?;
    let version = versions
        .iter()
        .find(|v| v.source == model_uri)
        .or(versions.first())
        .map(|v| {
            (
                v.name.clone(),
                v.version.clone(),
                v.tag(registration::TX_TAG).map(str::to_owned),
            )
        });
    let artifact_uri = match mlflow.get_run(&run_id).await {
        Ok(run) => Some(run.info.artifact_uri),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    Ok(Some(ServedModel {
        run_id,
        artifact_uri,
        version,
    }))
}

impl Anchorer {
    /// Anchors a prediction from an MLflow trace (`anchor trace <trace_id>`).
    pub async fn anchor_trace(&self, trace_id: &str) -> Result<Vec<Anchored>, AnchorError> {
        let (info, spans) = self.mlflow.get_trace(trace_id).await?;
        if let Some(done) = already_anchored(&info) {
            return Ok(vec![done]);
        }
        let mut out = Vec::new();
        let p = self
            .prepare_prediction(&info, &spans, &mut out, true)
            .await?;
        self.publish(&p).await?;
        out.push(Self::anchored(&p, AnchorStatus::Anchored));
        Ok(out)
    }

    /// Reads the infos and spans of `trace_ids` in bulk (one `traces/batchGet` per 50) for
    /// [`Self::take_trace`]; what an earlier call fetched and nobody took is dropped. A server
    /// without the endpoint is said once; its traces are then read one by one.
    pub async fn prefetch_traces(&self, trace_ids: &[String]) {
        let cache = &self.traces;
        cache
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if trace_ids.is_empty() || cache.unsupported.load(Ordering::Relaxed) {
            return;
        }
        for chunk in trace_ids.chunks(BATCH_GET_CHUNK) {
            match self.mlflow.batch_get_traces(chunk).await {
                Ok(Some(traces)) => {
                    let mut map = cache.entries.lock().unwrap_or_else(|p| p.into_inner());
                    for (info, spans) in traces {
                        map.insert(info.trace_id.clone(), (info, spans));
                    }
                }
                Ok(None) => {
                    cache.unsupported.store(true, Ordering::Relaxed);
                    tracing::info!(
                        "MLflow has no traces/batchGet (before MLflow 3.x): traces are read one by one"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "traces/batchGet failed; reading these traces one by one");
                    return;
                }
            }
        }
    }

    /// A prefetched trace (taken: a second call reads MLflow), else one `traces/get`.
    pub async fn take_trace(&self, trace_id: &str) -> Result<(TraceInfo, Vec<Value>), MlflowError> {
        let cached = self
            .traces
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(trace_id);
        match cached {
            Some(t) => Ok(t),
            None => self.mlflow.get_trace(trace_id).await,
        }
    }

    /// The served model of a LoggedModel id, from the cache or MLflow.
    async fn served_model(&self, model_id: &str) -> Result<Option<ServedModel>, MlflowError> {
        if let Some(m) = self.served_models.get(model_id) {
            return Ok(Some(m));
        }
        let resolved = resolve_served_model(&self.mlflow, model_id).await?;
        if let Some(m) = &resolved {
            self.served_models.put(model_id, m.clone());
        }
        Ok(resolved)
    }

    /// Builds and signs a prediction from a trace and its spans; anchors the model version's
    /// registration first when the trace is linked to one that is not anchored yet (recorded
    /// in `out`). With `anchor_dependencies` false, a linked version whose registration is not
    /// anchored yet is [`AnchorError::NotReady`] (the durable service waits for its own
    /// registration job).
    pub async fn prepare_prediction(
        &self,
        info: &TraceInfo,
        spans: &[Value],
        out: &mut Vec<Anchored>,
        anchor_dependencies: bool,
    ) -> Result<Prepared, AnchorError> {
        let (facts, previous, artifact_uri) = self
            .prediction_facts(info, spans, out, anchor_dependencies)
            .await?;
        let trace_id = info.trace_id.as_str();
        let payload = prediction::payload(&facts)?;
        let ev = sign_event(
            prediction::EVENT_TYPE,
            prediction::subject(trace_id, &facts.run_id),
            &previous,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;
        let full = self.prediction_tags == PredictionTags::Full;
        let mut signed = Vec::new();
        if let Some(artifact_uri) = artifact_uri {
            let files: &[(&str, ArtifactContent)] = if full {
                &[
                    (witness::PAYLOAD_FILE, ArtifactContent::Payload),
                    (witness::PROOF_FILE, ArtifactContent::Proof),
                ]
            } else {
                &[(witness::PAYLOAD_FILE, ArtifactContent::Payload)]
            };
            for (file, content) in files {
                signed.push(Write::Artifact {
                    artifact_uri: artifact_uri.clone(),
                    path: prediction::witness_path(trace_id, file),
                    content: content.clone(),
                });
            }
        }
        let tag = |key: &str, value: TagValue| Write::TraceTag {
            trace_id: trace_id.into(),
            key: key.into(),
            value,
        };
        let text = |s: &str| TagValue::Text(s.to_string());
        signed.push(tag(
            prediction::PAYLOAD_JSON_TAG,
            TagValue::Text(String::from_utf8_lossy(&ev.payload_bytes).into_owned()),
        ));
        let mut anchored = vec![tag(prediction::TX_TAG, TagValue::TxId)];
        if full {
            signed.extend([
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
            anchored.extend([
                tag(tags::ARWEAVE_URL, TagValue::ArweaveUrl),
                tag(prediction::PROOF_STATUS_TAG, text(tags::STATUS_ANCHORED)),
            ]);
        }
        Ok(Prepared::new(
            ev,
            prediction::EVENT_TYPE,
            trace_id.into(),
            signed,
            anchored,
        ))
    }

    /// The facts a prediction payload commits to, the `previous_hash` it chains to (the
    /// serving version's registration TX, or GENESIS) and the artifact root of its witness.
    pub async fn prediction_facts(
        &self,
        info: &TraceInfo,
        spans: &[Value],
        out: &mut Vec<Anchored>,
        anchor_dependencies: bool,
    ) -> Result<(PredictionFacts, String, Option<String>), AnchorError> {
        let trace_id = info.trace_id.as_str();
        if info.state == "IN_PROGRESS" {
            return Err(AnchorError::NotReady(format!(
                "trace {trace_id} is still in progress"
            )));
        }
        let root = root_span(spans).ok_or_else(|| {
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
        let mut artifact_uri = None;
        if let Some(model_id) = info
            .trace_metadata
            .get("mlflow.modelId")
            .filter(|m| !m.is_empty())
        {
            model_uri = format!("models:/{model_id}");
            if let Some(served) = self.served_model(model_id).await? {
                run_id = served.run_id.clone();
                artifact_uri = served.artifact_uri.clone();
                if let Some((name, version, tx)) = &served.version {
                    model_name = name.clone();
                    model_version = version.clone();
                    model_uri = format!("models:/{name}/{version}");
                    previous = match (tx, anchor_dependencies) {
                        (Some(tx), _) => tx.clone(),
                        (None, true) => Box::pin(self.registration_tx(name, version, out)).await?.1,
                        (None, false) => {
                            return Err(AnchorError::NotReady(format!(
                                "waiting for the registration of {name}/{version}"
                            )))
                        }
                    };
                }
            }
        }
        let facts = PredictionFacts {
            trace_id: trace_id.into(),
            model_name,
            model_version,
            run_id,
            model_uri,
            input,
            output,
            latency_ms,
        };
        Ok((facts, previous, artifact_uri))
    }
}

/// The anchored result a trace's tags already record (the plugin's or ours), if any.
pub fn already_anchored(info: &TraceInfo) -> Option<Anchored> {
    let tx = info
        .tags
        .get(prediction::TX_TAG)
        .or_else(|| info.tags.get(prediction::LEGACY_TX_TAG))?;
    let payload_hash = info
        .tags
        .get(tags::PAYLOAD_HASH)
        .cloned()
        .or_else(|| {
            info.tags
                .get(prediction::PAYLOAD_JSON_TAG)
                .map(|p| sha256_hex(p.as_bytes()))
        })
        .unwrap_or_default();
    Some(Anchored {
        event_type: prediction::EVENT_TYPE.into(),
        subject: info.trace_id.clone(),
        tx_id: tx.clone(),
        payload_hash,
        status: AnchorStatus::AlreadyAnchored,
    })
}
