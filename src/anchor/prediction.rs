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

use super::resolve::{Context, Resolution, SignPlan, Skip, SkipKind, Wait};
use super::sign::sign_event;
use super::{AnchorError, AnchorStatus, Anchored, Anchorer};
use crate::mlflow::spans::{root_span, span_attribute, span_latency_ms};
use crate::mlflow::{MlflowClient, MlflowError, TraceInfo};
use crate::profile::prediction::{self, PredictionFacts};
use crate::profile::{registration, tags, witness, GENESIS};
use crate::proof::sha256_hex;
use crate::store::prepared::{ArtifactContent, Prepared, TagValue, Write};

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
    /// The LoggedModel's name.
    pub name: String,
    /// The LoggedModel's source run.
    pub run_id: String,
    /// The source run's artifact root, where the witness goes (`None`: the run is gone).
    pub artifact_uri: Option<String>,
    /// The registered version serving exactly this LoggedModel, when one does.
    pub version: Option<ServingVersion>,
}

/// The registered version a trace's model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingVersion {
    /// Registered model.
    pub name: String,
    /// Version.
    pub version: String,
    /// Its registration TX, once anchored.
    pub registration_tx: Option<String>,
    /// Its creation time (ms).
    pub created_ms: Option<i64>,
}

/// Served models by LoggedModel id, bounded; an entry without a registration TX is re-read
/// after `INCOMPLETE_TTL`.
#[derive(Debug, Default)]
pub struct ServedModels(Mutex<HashMap<String, (Option<ServedModel>, Instant)>>);

impl ServedModels {
    fn get(&self, model_id: &str) -> Option<Option<ServedModel>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (model, at) = map.get(model_id)?;
        let complete = matches!(
            model,
            Some(ServedModel {
                version: Some(ServingVersion {
                    registration_tx: Some(_),
                    ..
                }),
                ..
            })
        );
        (complete || at.elapsed() < INCOMPLETE_TTL).then(|| model.clone())
    }

    fn put(&self, model_id: &str, model: Option<ServedModel>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SERVED_MODELS_MAX {
            map.clear();
        }
        map.insert(model_id.to_string(), (model, Instant::now()));
    }
}

/// Resolves a LoggedModel id to its source run and the version serving it: a version whose
/// source is `models:/<id>` (MLflow 3's registration of that LoggedModel), else one whose source
/// is `runs:/<run>/<its name>` (the same files); the oldest when several do. `None` when the
/// model is gone or has no run: nothing certain to attribute a prediction to.
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
    let artifact_uri = match mlflow.get_run(&run_id).await {
        Ok(run) => Some(run.info.artifact_uri),
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let exact = format!("models:/{model_id}");
    let by_path = format!("runs:/{run_id}/{}", model.name.trim_matches('/'));
    let mut versions = mlflow
        .search_model_versions(&format!("run_id='{run_id}'"))
        .await?;
    versions.sort_by_key(|v| {
        (
            v.creation_timestamp.unwrap_or(0),
            v.version.parse::<u64>().unwrap_or(0),
        )
    });
    let serving = versions
        .iter()
        .find(|v| v.source == exact)
        .or_else(|| {
            versions
                .iter()
                .find(|v| v.source.trim_end_matches('/') == by_path)
        })
        .map(|v| ServingVersion {
            name: v.name.clone(),
            version: v.version.clone(),
            registration_tx: v.tag(registration::TX_TAG).map(str::to_owned),
            created_ms: v.creation_timestamp,
        });
    Ok(Some(ServedModel {
        name: model.name,
        run_id,
        artifact_uri,
        version: serving,
    }))
}

/// Whether the plugin's `VerifiedModel` anchors this trace: it writes `ario.proof_status`
/// (`anchoring`, then `anchored` or `failed`) with a decision id of its own (ours, in the full
/// tag mode, is the trace id). Returns the status.
pub fn plugin_trace(info: &TraceInfo) -> Option<&str> {
    let status = info.tags.get(prediction::PROOF_STATUS_TAG)?;
    (info
        .tags
        .get(prediction::DECISION_ID_TAG)
        .map(String::as_str)
        != Some(info.trace_id.as_str()))
    .then_some(status.as_str())
}

impl Anchorer {
    /// Anchors a prediction from an MLflow trace (`anchor trace <trace_id>`), its version's
    /// registration first when missing.
    pub async fn anchor_trace(&self, trace_id: &str) -> Result<Vec<Anchored>, AnchorError> {
        self.anchor_event(&crate::event::ChangeEvent::TraceLogged {
            trace_id: trace_id.into(),
        })
        .await
    }

    /// A logged trace:
    /// * anchored already (ours, the legacy `ario.arweave_tx`, a checkpoint) → skipped;
    /// * anchored (or being anchored) by the plugin's `VerifiedModel` → skipped, never twice;
    /// * ERROR → not a prediction to prove; IN_PROGRESS, or spans not arrived yet → waited for,
    ///   then parked with the reason;
    /// * served by no model known for certain (no `mlflow.modelId`, the model gone or without
    ///   a run) → skipped as "no model";
    /// * served by a registered version → chained to its registration TX (waited for);
    ///   by an unregistered LoggedModel → GENESIS, as the plugin does for `models:/<id>`.
    pub async fn resolve_trace(
        &self,
        trace_id: &str,
        ctx: &Context<'_>,
        batched: bool,
    ) -> Result<Resolution, AnchorError> {
        // The wait counts from the trace's own request time as well as from detection: a trace
        // logged long ago whose spans are missing (a backfill, a lost store) is parked at once,
        // not waited for again.
        let limit = ctx.limits.max_trace_wait;
        let waited = |what: String, info: &TraceInfo| {
            if (ctx.expired(limit) || logged_longer_ago(info, ctx.now_ms, limit)) && !ctx.oneshot {
                Resolution::Park(format!(
                    "{what} after {} s; `retry` it once the trace is complete",
                    limit.as_secs()
                ))
            } else {
                Wait::on(what)
            }
        };
        let (info, spans) = match self.take_trace(trace_id).await {
            Ok(t) => t,
            Err(e) if e.is_not_found() => {
                return Ok(Skip::because(
                    SkipKind::Gone,
                    format!("trace {trace_id} no longer exists"),
                ))
            }
            // MLflow answers `traces/get` with an error while a trace's spans are not stored
            // ("Trace data not stored in tracking store"): when its info is there, the spans
            // have not arrived.
            Err(e) => match self.mlflow.get_trace_info(trace_id).await {
                Ok(info) if info.state != "ERROR" => {
                    return Ok(waited(
                        format!("the spans of trace {trace_id} have not arrived ({e})"),
                        &info,
                    ))
                }
                _ => return Err(e.into()),
            },
        };
        if let Some(done) = already_anchored(&info) {
            return Ok(Resolution::Skip(Skip {
                reason: "already anchored (ario.prediction_tx present)".into(),
                kind: SkipKind::AlreadyAnchored,
                anchored: Some(done),
            }));
        }
        if let Some(tx) = info.tags.get(crate::profile::checkpoint::TX_TAG) {
            return Ok(Skip::anchored(
                SkipKind::AlreadyAnchored,
                "already anchored in a checkpoint",
                prediction::EVENT_TYPE,
                trace_id,
                tx,
                "",
            ));
        }
        if let Some(status) = plugin_trace(&info) {
            return Ok(Skip::because(
                SkipKind::Plugin,
                format!("the plugin's VerifiedModel anchors this prediction (ario.proof_status={status})"),
            ));
        }
        match info.state.as_str() {
            "ERROR" => {
                return Ok(Skip::because(
                    SkipKind::NotApplicable,
                    format!("trace {trace_id} ended in ERROR: no prediction to prove"),
                ))
            }
            "IN_PROGRESS" => {
                return Ok(waited(
                    format!("trace {trace_id} is still in progress"),
                    &info,
                ))
            }
            _ => {}
        }
        let Some(root) = root_span(&spans) else {
            return Ok(waited(
                format!("the spans of trace {trace_id} have not arrived"),
                &info,
            ));
        };
        let Some(model_id) = info
            .trace_metadata
            .get("mlflow.modelId")
            .filter(|m| !m.is_empty())
        else {
            return Ok(Skip::because(
                SkipKind::NoModel,
                format!("trace {trace_id} names no model (no mlflow.modelId): nothing to attribute it to"),
            ));
        };
        let Some(served) = self.served_model(model_id).await? else {
            return Ok(Skip::because(
                SkipKind::NoModel,
                format!("trace {trace_id}: its model {model_id} no longer exists or has no run"),
            ));
        };
        let (model_name, model_version, model_uri, previous) = match &served.version {
            Some(v) => {
                let previous = match &v.registration_tx {
                    Some(tx) => tx.clone(),
                    None if !ctx.expired(ctx.limits.max_dependency_wait) || ctx.oneshot => {
                        return Ok(Wait::for_event(
                            crate::event::ChangeEvent::ModelVersionCreated {
                                name: v.name.clone(),
                                version: v.version.clone(),
                                created_ms: v.created_ms,
                            },
                        ))
                    }
                    None => GENESIS.to_string(),
                };
                (
                    v.name.clone(),
                    v.version.clone(),
                    format!("models:/{}/{}", v.name, v.version),
                    previous,
                )
            }
            None => (
                served.name.clone(),
                model_id.clone(),
                format!("models:/{model_id}"),
                GENESIS.to_string(),
            ),
        };
        let facts = PredictionFacts {
            trace_id: trace_id.into(),
            model_name,
            model_version,
            run_id: served.run_id.clone(),
            model_uri,
            input: span_attribute(root, "mlflow.spanInputs").unwrap_or(Value::Null),
            output: span_attribute(root, "mlflow.spanOutputs").unwrap_or(Value::Null),
            latency_ms: span_latency_ms(root)
                .or_else(|| info.execution_ms())
                .unwrap_or(0.0),
        };
        let Some(artifact_uri) = served.artifact_uri.clone() else {
            return Ok(Skip::because(
                SkipKind::NoModel,
                format!(
                    "trace {trace_id}: its model's run {} is gone",
                    served.run_id
                ),
            ));
        };
        if batched && served.version.is_some() && previous != GENESIS {
            return Ok(Resolution::Leaf(Box::new(self.prediction_leaf(
                &facts,
                &previous,
                trace_id,
                &artifact_uri,
            )?)));
        }
        Ok(SignPlan::signed(self.prepare_prediction(
            &facts,
            &previous,
            &artifact_uri,
        )?))
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
            return Ok(m);
        }
        let resolved = resolve_served_model(&self.mlflow, model_id).await?;
        self.served_models.put(model_id, resolved.clone());
        Ok(resolved)
    }

    /// Builds and signs a prediction from its facts, chained to `previous`, its witness under
    /// the model's run.
    pub fn prepare_prediction(
        &self,
        facts: &PredictionFacts,
        previous: &str,
        artifact_uri: &str,
    ) -> Result<Prepared, AnchorError> {
        let trace_id = facts.trace_id.as_str();
        let payload = prediction::payload(facts)?;
        let ev = sign_event(
            prediction::EVENT_TYPE,
            prediction::subject(trace_id, &facts.run_id),
            previous,
            &payload,
            &self.key,
            &self.wallet.signer,
            self.mlflow.workspace(),
        )?;
        let full = self.prediction_tags == PredictionTags::Full;
        let mut signed = Vec::new();
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
                artifact_uri: artifact_uri.to_string(),
                path: prediction::witness_path(trace_id, file),
                content: content.clone(),
            });
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
}

/// Whether `info`'s request time lies more than `limit` before `now_ms` (a trace that should
/// be complete by now; unknown times are not).
fn logged_longer_ago(info: &TraceInfo, now_ms: u64, limit: Duration) -> bool {
    info.request_time
        .as_deref()
        .and_then(crate::profile::envelope::rfc3339_to_ms)
        .and_then(|at| u64::try_from(at).ok())
        .is_some_and(|at| now_ms.saturating_sub(at) > limit.as_millis() as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(tags: &[(&str, &str)]) -> TraceInfo {
        TraceInfo {
            trace_id: "tr-1".into(),
            state: "OK".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_trace_logged_longer_ago_than_the_wait_is_not_waited_for_again() {
        let at = |time: Option<&str>| TraceInfo {
            request_time: time.map(str::to_owned),
            ..trace(&[])
        };
        let logged =
            crate::profile::envelope::rfc3339_to_ms("2026-12-04T10:00:00Z").unwrap() as u64;
        let limit = Duration::from_secs(900);
        let t = at(Some("2026-12-04T10:00:00Z"));
        assert!(!logged_longer_ago(&t, logged + 899_000, limit));
        assert!(logged_longer_ago(&t, logged + 901_000, limit));
        // No or unreadable request time: only the wait since detection counts.
        assert!(!logged_longer_ago(&at(None), logged + 10_000_000, limit));
        assert!(!logged_longer_ago(
            &at(Some("yesterday")),
            logged + 10_000_000,
            limit
        ));
    }

    #[test]
    fn the_plugins_predictions_are_recognised_in_every_state_and_ours_are_not_taken_for_them() {
        let plugin = |status: &str| {
            trace(&[
                (prediction::PROOF_STATUS_TAG, status),
                (prediction::DECISION_ID_TAG, "5c6d7e8f-0a1b-4c2d-8e3f-ffff"),
            ])
        };
        for status in ["anchoring", "anchored", "failed", "disabled"] {
            assert_eq!(plugin_trace(&plugin(status)), Some(status));
        }
        // Ours, in the full tag mode: the decision id is the trace id.
        let ours = trace(&[
            (prediction::PROOF_STATUS_TAG, "anchoring"),
            (prediction::DECISION_ID_TAG, "tr-1"),
        ]);
        assert_eq!(plugin_trace(&ours), None);
        assert_eq!(plugin_trace(&trace(&[])), None);
        // The legacy TX tag counts as anchored.
        let legacy = trace(&[(prediction::LEGACY_TX_TAG, "x".repeat(43).as_str())]);
        assert!(already_anchored(&legacy).is_some());
    }
}
