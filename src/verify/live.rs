//! Check 3 (§5.1): MLflow re-read now — the run's params, metrics and model files, the version's
//! files, the trace — against what the payload committed to; model checksums memoized briefly.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::verdict::Check;
use super::{Verifier, VerifyError};
use crate::mlflow::{MlflowError, Run};
use crate::profile::training::{self, TrainingFacts};
use crate::profile::{prediction, registration, tags};
use crate::proof::jcs;

/// Model checksums keyed by (run, artifact path), each kept for `ttl`.
#[derive(Debug)]
pub struct ChecksumMemo {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<std::collections::HashMap<(String, String), MemoEntry>>,
}

/// When an entry was computed, and the checksums (`None`: no model files).
pub(super) type MemoEntry = (std::time::Instant, Option<BTreeMap<String, String>>);

impl ChecksumMemo {
    /// Entries live for `ttl`.
    pub fn new(ttl: std::time::Duration) -> ChecksumMemo {
        ChecksumMemo {
            ttl,
            entries: Default::default(),
        }
    }

    /// An empty memo with the same lifetime.
    pub fn fresh(&self) -> ChecksumMemo {
        ChecksumMemo::new(self.ttl)
    }

    fn get(&self, key: &(String, String)) -> Option<Option<BTreeMap<String, String>>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() <= self.ttl);
        entries.get(key).map(|(_, c)| c.clone())
    }

    fn put(&self, key: (String, String), value: Option<BTreeMap<String, String>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(key, (std::time::Instant::now(), value));
    }
}

/// The model files whose checksum differs between what was anchored and what the store holds
/// now: `path (changed)`, `path (missing)`, `path (added)`, sorted by path.
pub(super) fn changed_files(then: &Map<String, Value>, now: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, hash) in then {
        match now.get(path) {
            Some(h) if h == hash => {}
            Some(_) => out.push(format!("{path} (changed)")),
            None => out.push(format!("{path} (missing)")),
        }
    }
    for path in now.keys().filter(|p| !then.contains_key(*p)) {
        out.push(format!("{path} (added)"));
    }
    out.sort();
    out
}

impl Verifier {
    /// The model files' checksums, through the memo when there is one.
    pub async fn model_checksums(
        &self,
        run: &Run,
        path: &str,
    ) -> Result<Option<BTreeMap<String, String>>, MlflowError> {
        let key = (run.info.run_id.clone(), path.to_string());
        if let Some(memo) = &self.checksum_memo {
            if let Some(hit) = memo.get(&key) {
                return Ok(hit);
            }
        }
        let computed = self.mlflow.model_checksums(run, path).await?;
        if let Some(memo) = &self.checksum_memo {
            memo.put(key, computed.clone());
        }
        Ok(computed)
    }

    /// Check 3: the anchored payload overlaid with what live MLflow says now must canonicalize
    /// to the anchored bytes.
    pub(super) async fn source_of_truth(&self, event_type: Option<&str>, bytes: &[u8]) -> Check {
        let original = match jcs::parse(bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Check::fail("payload_parse_failed: not a JSON object"),
            Err(e) => return Check::fail(format!("payload_parse_failed: {e}")),
        };
        let live = match event_type {
            Some("training_complete") => self.live_training(&original).await,
            Some("model_registered") => self.live_registration(&original).await,
            Some("prediction") => self.live_prediction(&original).await,
            _ => {
                return Check::skipped("no_live_fields_for_event_type").with(
                    "note",
                    "MLflow keeps no live state this event can be re-derived from",
                )
            }
        };
        let overlay = match live {
            Ok(o) => o,
            Err(detail) => {
                return Check::fail("live_refetch_incomplete").with("detail", detail.to_string())
            }
        };
        // A prediction's live record is its whole payload (the trace tag): compared whole, so
        // a tag emptied or cut down fails (the plugin overlays only the keys present).
        let whole = event_type == Some("prediction");
        let mut rebuilt = if whole { Map::new() } else { original.clone() };
        let mut changed: Vec<String> = if whole {
            original
                .keys()
                .filter(|k| !overlay.contains_key(*k))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for (k, v) in &overlay {
            let canonical = |x: &Value| jcs::canonicalize(x).ok();
            if original.get(k).and_then(canonical) != canonical(v) {
                changed.push(k.clone());
            }
            rebuilt.insert(k.clone(), v.clone());
        }
        let fields: Vec<Value> = overlay.keys().map(|k| Value::String(k.clone())).collect();
        match jcs::canonicalize(&Value::Object(rebuilt)) {
            Ok(b) if b == bytes => Check::pass("live MLflow matches anchored bytes")
                .with("live_fields_refetched", fields),
            Ok(_) => {
                changed.sort();
                // Which model files changed, went missing or appeared, by name.
                let files = match (
                    original.get("artifact_checksums"),
                    overlay.get("artifact_checksums"),
                ) {
                    (Some(Value::Object(then)), Some(Value::Object(now))) => {
                        changed_files(then, now)
                    }
                    _ => Vec::new(),
                };
                let mut reason = format!(
                    "live_mlflow_mismatch: {} changed since anchoring",
                    if changed.is_empty() {
                        "formatting".into()
                    } else {
                        changed.join(", ")
                    }
                );
                if !files.is_empty() {
                    reason.push_str(&format!(" (files: {})", files.join(", ")));
                }
                let check = Check::fail(reason).with(
                    "changed_fields",
                    changed.into_iter().map(Value::String).collect::<Vec<_>>(),
                );
                if files.is_empty() {
                    check
                } else {
                    check.with(
                        "changed_files",
                        files.into_iter().map(Value::String).collect::<Vec<_>>(),
                    )
                }
            }
            Err(e) => Check::fail(format!("live_refetch_failed: {e}")),
        }
    }

    pub(super) async fn live_training(
        &self,
        original: &Map<String, Value>,
    ) -> Result<Map<String, Value>, VerifyError> {
        let run_id = original
            .get("run_id")
            .and_then(Value::as_str)
            .ok_or_else(|| VerifyError::Payload("payload has no run_id".into()))?;
        let run = self
            .mlflow
            .get_run(run_id)
            .await
            .map_err(|e| VerifyError::mlflow(format!("run {run_id}"), e))?;
        let path = self.logged_model_path(&run).await;
        let checksums = match self.model_checksums(&run, &path).await {
            Ok(Some(c)) => c,
            Ok(None) => BTreeMap::new(),
            Err(e) => return Err(VerifyError::mlflow(format!("artifacts under {path}"), e)),
        };
        let live = training::payload(&TrainingFacts {
            run: &run.facts(),
            checksums: &checksums,
        })
        .map_err(|e| VerifyError::Payload(format!("the live training payload: {e}")))?;
        let mut keys = vec![
            "params",
            "metrics",
            "source_name",
            "git_commit",
            "artifact_checksums",
        ];
        if original.contains_key("dataset_inputs") {
            keys.push("dataset_inputs");
        }
        Ok(keys
            .into_iter()
            .filter_map(|k| live.get(k).map(|v| (k.to_string(), v.clone())))
            .collect())
    }

    /// §5.1 check 3: exactly one logged-model path → it, otherwise `model`.
    pub(super) async fn logged_model_path(&self, run: &Run) -> String {
        let mut names = Vec::new();
        for output in &run.outputs.model_outputs {
            if let Ok(m) = self.mlflow.get_logged_model(&output.model_id).await {
                names.push(m.name);
            }
        }
        training::artifact_path(run.tag(training::LOG_MODEL_HISTORY_TAG), &names)
            .unwrap_or_else(|_| "model".into())
    }

    /// Check 3 of a registration: the files the payload's `source` names re-hashed now (the
    /// same resolution the anchorer used, whatever the model is called), the source run's
    /// `ario.artifact_hash` read now; `artifact_verified` recomputed from the two, and the file
    /// map itself when the payload committed to it.
    pub(super) async fn live_registration(
        &self,
        original: &Map<String, Value>,
    ) -> Result<Map<String, Value>, VerifyError> {
        let text = |k: &str| {
            original
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let source = text("source");
        let run_id = text("source_run_id");
        let run = if run_id.is_empty() {
            None
        } else {
            Some(
                self.mlflow
                    .get_run(&run_id)
                    .await
                    .map_err(|e| VerifyError::mlflow(format!("run {run_id}"), e))?,
            )
        };
        let tag = run
            .as_ref()
            .and_then(|r| r.tag(tags::ARTIFACT_HASH))
            .map(str::to_owned);
        // The version as the payload describes it: its source and run.
        let described = crate::mlflow::ModelVersion {
            name: text("model_name"),
            version: text("model_version"),
            source: source.clone(),
            run_id,
            ..Default::default()
        };
        let checksums = self
            .version_checksums(&described)
            .await
            .map_err(|e| VerifyError::mlflow(format!("the files of {source}"), e))?;
        let actual = checksums.as_ref().and_then(training::artifact_hash);
        let verified = match (&tag, &checksums) {
            (Some(t), Some(_)) => Value::Bool(actual.as_deref() == Some(t.as_str())),
            _ => Value::Null,
        };
        let mut m = Map::new();
        m.insert(
            "artifact_hash".into(),
            tag.map(Value::String).unwrap_or(Value::Null),
        );
        m.insert("artifact_verified".into(), verified);
        if original.contains_key(registration::ARTIFACT_CHECKSUMS_KEY) {
            m.insert(
                registration::ARTIFACT_CHECKSUMS_KEY.into(),
                serde_json::to_value(checksums.unwrap_or_default()).unwrap_or(Value::Null),
            );
        }
        Ok(m)
    }

    /// A version's files' checksums (its `source` resolved as the anchorer does), through the
    /// memo when there is one.
    pub async fn version_checksums(
        &self,
        mv: &crate::mlflow::ModelVersion,
    ) -> Result<Option<BTreeMap<String, String>>, MlflowError> {
        let key = (format!("source:{}", mv.source), mv.run_id.clone());
        if let Some(memo) = &self.checksum_memo {
            if let Some(hit) = memo.get(&key) {
                return Ok(hit);
            }
        }
        let computed = self.mlflow.version_files(mv).await?.checksums;
        if let Some(memo) = &self.checksum_memo {
            memo.put(key, computed.clone());
        }
        Ok(computed)
    }

    pub(super) async fn live_prediction(
        &self,
        original: &Map<String, Value>,
    ) -> Result<Map<String, Value>, VerifyError> {
        let trace_id = original
            .get("mlflow_trace_id")
            .and_then(Value::as_str)
            .ok_or_else(|| VerifyError::Payload("payload has no mlflow_trace_id".into()))?;
        let info = self
            .mlflow
            .get_trace_info(trace_id)
            .await
            .map_err(|e| VerifyError::mlflow(format!("trace {trace_id}"), e))?;
        let text = info.tags.get(prediction::PAYLOAD_JSON_TAG).ok_or_else(|| {
            VerifyError::Payload("trace has no ario.payload_json tag (pruned?)".into())
        })?;
        match jcs::parse(text.as_bytes()) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(VerifyError::Payload(
                "ario.payload_json is not a JSON object".into(),
            )),
            Err(e) => Err(VerifyError::Payload(format!("ario.payload_json: {e}"))),
        }
    }
}
