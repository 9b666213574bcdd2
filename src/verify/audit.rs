//! `audit <name>/<version>`: every stage of a model version's life, each verified — datasets,
//! training, registration, every promotion and alias change (found through their witnesses,
//! not only the latest tag), and a sample or all of its predictions.

use serde_json::{json, Map, Value};

use super::{CheckpointChainError, Entity, ProofVerdict, Verifier, VerifyError};
use crate::mlflow::{ModelVersion, Run};
use crate::profile::checkpoint::{self, BatchDocument};
use crate::profile::{alias, prediction, promotion, registration, tags, training, witness};

/// Which predictions to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionSample {
    /// At most this many (the most recent first).
    Count(usize),
    /// Every one.
    All,
}

/// One stage of the audit.
#[derive(Debug, Clone)]
pub struct Stage {
    /// `dataset`, `training`, `registration`, `promotion`, `alias`, `prediction` or `checkpoint`.
    pub stage: String,
    /// What it is (dataset name, `None → Staging`, `@champion`, trace id…).
    pub label: String,
    /// Its TX, when anchored.
    pub tx_id: Option<String>,
    /// The verdict, when anchored.
    pub verdict: Option<ProofVerdict>,
    /// What the proof must be about.
    pub entity: Entity,
}

impl Stage {
    /// `Some(true)` passed, `Some(false)` failed, `None` not anchored.
    pub fn ok(&self) -> Option<bool> {
        self.verdict.as_ref().map(|v| v.overall_ok)
    }
}

/// A version's Merkle checkpoints (`--predictions batched`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// Checkpoints found.
    pub count: usize,
    /// Predictions they hold.
    pub predictions: usize,
    /// `None`: no checkpoints; `Some(Ok(()))`: one chain from GENESIS, no fork, no gap;
    /// `Some(Err(why))` otherwise.
    pub chain: Option<Result<(), CheckpointChainError>>,
}

/// The whole audit.
#[derive(Debug, Clone)]
pub struct Audit {
    /// Registered model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// RFC 3339 UTC with microseconds and `Z` (the plugin's shape).
    pub generated_at: String,
    /// The MLflow server audited.
    pub tracking_uri: String,
    /// The version's source run.
    pub run_id: Option<String>,
    /// The version's stage now.
    pub current_stage: String,
    /// Aliases pointing at the version now.
    pub aliases: Vec<String>,
    /// The run's `ario.artifact_hash`.
    pub artifact_hash: Option<String>,
    /// Gateway host for TX links.
    pub gateway_host: String,
    /// Stages in life order.
    pub stages: Vec<Stage>,
    /// Predictions found (verified ones are in `stages`).
    pub predictions_found: usize,
    /// Merkle checkpoints of the version (each is a stage) and how many predictions they hold.
    pub checkpoints: CheckpointSummary,
    /// Every anchored stage passed.
    pub overall_ok: bool,
    /// The batch documents of the version's checkpoints (what `export` inlines).
    pub checkpoint_documents: Vec<BatchDocument>,
}

impl Verifier {
    /// Audits `name`/`version`.
    pub async fn audit(
        &self,
        name: &str,
        version: &str,
        predictions: PredictionSample,
        gateway_host: &str,
    ) -> Result<Audit, VerifyError> {
        let mv = self
            .mlflow
            .get_model_version(name, version)
            .await
            .map_err(|e| VerifyError::mlflow(format!("model version {name}/{version}"), e))?;
        let run = if mv.run_id.is_empty() {
            None
        } else {
            Some(
                self.mlflow
                    .get_run(&mv.run_id)
                    .await
                    .map_err(|e| VerifyError::mlflow(format!("source run {}", mv.run_id), e))?,
            )
        };
        let entity = Entity::ModelVersion(name.to_string(), version.to_string());
        let mut stages: Vec<Stage> = Vec::new();
        if let Some(run) = &run {
            stages.extend(self.run_stages(run).await);
        }
        stages.push(
            self.stage(
                "registration",
                &format!("{name}/{version}"),
                mv.tag(registration::TX_TAG),
                &entity,
            )
            .await,
        );
        for (stage, dir, tag_prefix) in [
            ("promotion", promotion::WITNESS_DIR, promotion::TX_TAG),
            ("alias", alias::WITNESS_DIR, alias::TX_TAG_PREFIX),
        ] {
            let dir = format!("ario/{dir}");
            for (label, tx) in self.history(run.as_ref(), &mv, &dir, tag_prefix).await {
                stages.push(self.stage(stage, &label, tx.as_deref(), &entity).await);
            }
        }
        let mut predictions_found = 0;
        if let Some(run) = &run {
            let found = self.predictions(run, &mv).await;
            predictions_found = found.len();
            let take = match predictions {
                PredictionSample::All => found.len(),
                PredictionSample::Count(n) => n.min(found.len()),
            };
            for (trace_id, tx) in found.into_iter().take(take) {
                let e = Entity::Trace(trace_id.clone());
                stages.push(self.stage("prediction", &trace_id, tx.as_deref(), &e).await);
            }
        }
        let mut checkpoints = CheckpointSummary::default();
        let mut checkpoint_documents = Vec::new();
        if let Some(run) = &run {
            let docs = self.checkpoints(run, &mv).await;
            checkpoints.count = docs.len();
            checkpoints.predictions = docs.iter().map(|d| d.leaves.len()).sum();
            if !docs.is_empty() {
                checkpoints.chain = Some(checkpoint_chain(&docs));
            }
            for doc in &docs {
                let Some(first) = doc.leaves.first() else {
                    continue;
                };
                let verdict = self
                    .verify_checkpointed_trace(&first.trace_id, &doc.checkpoint_tx)
                    .await;
                stages.push(Stage {
                    stage: "checkpoint".into(),
                    label: format!("{} predictions", doc.leaves.len()),
                    tx_id: Some(doc.checkpoint_tx.clone()),
                    verdict: Some(verdict),
                    entity: Entity::Trace(first.trace_id.clone()),
                });
            }
            checkpoint_documents = docs;
        }
        let overall_ok = stages.iter().all(|s| s.ok() != Some(false))
            && stages.iter().any(|s| s.ok() == Some(true))
            && !matches!(checkpoints.chain, Some(Err(_)));
        Ok(Audit {
            model: name.to_string(),
            version: version.to_string(),
            generated_at: now_rfc3339_micros(),
            tracking_uri: self.mlflow.tracking_uri().to_string(),
            run_id: run.as_ref().map(|r| r.info.run_id.clone()),
            current_stage: mv.current_stage.clone(),
            aliases: mv.aliases.clone(),
            artifact_hash: run
                .as_ref()
                .and_then(|r| r.tag(tags::ARTIFACT_HASH))
                .map(str::to_owned),
            gateway_host: gateway_host.to_string(),
            stages,
            predictions_found,
            checkpoints,
            overall_ok,
            checkpoint_documents,
        })
    }

    /// The stages of a run: its datasets, earlier (superseded) training proofs, its training.
    async fn run_stages(&self, run: &Run) -> Vec<Stage> {
        let mut stages = Vec::new();
        let run_entity = Entity::Run(run.info.run_id.clone());
        for (name, digest, tx) in self.dataset_proofs(run).await {
            let e = Entity::Dataset(name.clone(), digest.clone());
            let label = format!("{name} ({})", &digest[..digest.len().min(8)]);
            stages.push(self.stage("dataset", &label, tx.as_deref(), &e).await);
        }
        // Earlier proofs of a run re-opened and finished again: superseded, not failed.
        for event_dir in self
            .subdirs(run, &format!("ario/{}", training::SUPERSEDED_DIR))
            .await
        {
            let receipt = training::superseded_path(&event_dir, witness::RECEIPT_FILE);
            let tx = self
                .json_artifact(run, &receipt)
                .await
                .and_then(|r| r["id"].as_str().map(str::to_owned));
            let label = format!("(superseded) {}", run.info.run_id);
            stages.push(
                self.stage("training", &label, tx.as_deref(), &run_entity)
                    .await,
            );
        }
        stages.push(
            self.stage(
                "training",
                &run.info.run_id,
                run.tag(training::TX_TAG),
                &run_entity,
            )
            .await,
        );
        stages
    }

    /// Audits one run: its datasets and training (`export --run`).
    pub async fn audit_run(&self, run_id: &str, gateway_host: &str) -> Result<Audit, VerifyError> {
        let run = self
            .mlflow
            .get_run(run_id)
            .await
            .map_err(|e| VerifyError::mlflow(format!("run {run_id}"), e))?;
        let stages = self.run_stages(&run).await;
        let overall_ok = stages.iter().all(|s| s.ok() != Some(false))
            && stages.iter().any(|s| s.ok() == Some(true));
        Ok(Audit {
            model: String::new(),
            version: String::new(),
            generated_at: now_rfc3339_micros(),
            tracking_uri: self.mlflow.tracking_uri().to_string(),
            run_id: Some(run.info.run_id.clone()),
            current_stage: String::new(),
            aliases: Vec::new(),
            artifact_hash: run.tag(tags::ARTIFACT_HASH).map(str::to_owned),
            gateway_host: gateway_host.to_string(),
            stages,
            predictions_found: 0,
            checkpoints: CheckpointSummary::default(),
            overall_ok,
            checkpoint_documents: Vec::new(),
        })
    }

    async fn stage(&self, stage: &str, label: &str, tx: Option<&str>, entity: &Entity) -> Stage {
        let verdict = match tx {
            Some(tx) => Some(self.verify_tx(tx, entity).await),
            None => None,
        };
        // A proof anchored under the model's former name says so.
        let label = match verdict
            .as_ref()
            .and_then(|v| v.proof_found.detail.get("anchored_as"))
            .and_then(Value::as_str)
        {
            Some(former) => format!("{label} (anchored as {former})"),
            None => label.to_string(),
        };
        Stage {
            stage: stage.to_string(),
            label,
            tx_id: tx.map(str::to_owned),
            verdict,
            entity: entity.clone(),
        }
    }

    /// Promotions or alias changes of this version: every witness directory under `dir` on the
    /// run whose proof is about this version (TX from its receipt, or from a TX tag whose
    /// envelope has the directory's event id — the plugin writes no receipt there), plus TX
    /// tags with no witness (the plugin keeps only the latest promotion, in a tag).
    async fn history(
        &self,
        run: Option<&Run>,
        mv: &ModelVersion,
        dir: &str,
        tag_prefix: &str,
    ) -> Vec<(String, Option<String>)> {
        // (event id, label, tx)
        let mut found: Vec<(String, String, Option<String>)> = Vec::new();
        // Proofs made before the model was renamed name a former name.
        let mut names = vec![mv.name.clone()];
        if let Ok((_, former)) = self.former_names(&mv.name).await {
            names.extend(former);
        }
        if let Some(run) = run {
            for event_dir in self.subdirs(run, dir).await {
                let read = |f: &str| format!("{dir}/{event_dir}/{f}");
                let Some(proof) = self.json_artifact(run, &read("proof.json")).await else {
                    continue;
                };
                let subject = &proof["subject"];
                let version = subject["version"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| subject["version"].to_string());
                let named = subject["name"]
                    .as_str()
                    .is_some_and(|n| names.iter().any(|m| m == n));
                if !named || version != mv.version {
                    continue;
                }
                let payload = self
                    .json_artifact(run, &read("payload.json"))
                    .await
                    .unwrap_or(Value::Null);
                let label = match (payload["from_stage"].as_str(), payload["to_stage"].as_str()) {
                    (Some(f), Some(t)) => format!("{f} → {t}"),
                    _ => match (payload["alias"].as_str(), payload["action"].as_str()) {
                        (Some(a), Some(act)) => format!("@{a} {act}"),
                        _ => event_dir.clone(),
                    },
                };
                let tx = self
                    .json_artifact(run, &read("receipt.json"))
                    .await
                    .and_then(|r| r["id"].as_str().map(str::to_owned));
                found.push((event_dir, label, tx));
            }
        }
        for t in &mv.tags {
            let matches = if tag_prefix.ends_with('.') {
                t.key.starts_with(tag_prefix)
            } else {
                t.key == tag_prefix
            };
            if !matches
                || found
                    .iter()
                    .any(|f| f.2.as_deref() == Some(t.value.as_str()))
            {
                continue;
            }
            let event_id = match self.fetch(&t.value).await {
                Ok(f) => f.envelope["event_id"].as_str().map(str::to_owned),
                Err(_) => None,
            };
            if let Some(slot) = found
                .iter_mut()
                .find(|f| f.2.is_none() && Some(&f.0) == event_id.as_ref())
            {
                slot.2 = Some(t.value.clone());
                continue;
            }
            let label = match t.key.strip_prefix(tag_prefix).filter(|a| !a.is_empty()) {
                Some(alias) => format!("@{alias}"),
                None => format!("latest ({})", mv.current_stage),
            };
            found.push((String::new(), label, Some(t.value.clone())));
        }
        found
            .into_iter()
            .map(|(_, label, tx)| (label, tx))
            .collect()
    }

    /// The run's dataset inputs and their proofs. One proof exists per (name, digest) (DESIGN
    /// dedupe key), tagged `ario.dataset_anchor_tx.<name>` on the first run that used it, so a
    /// dataset shared by several runs is looked up on the other runs too.
    async fn dataset_proofs(&self, run: &Run) -> Vec<(String, String, Option<String>)> {
        let mut out: Vec<(String, String, Option<String>)> = Vec::new();
        for input in &run.inputs.dataset_inputs {
            let (name, digest) = (&input.dataset.name, &input.dataset.digest);
            if out.iter().any(|(n, d, _)| n == name && d == digest) {
                continue;
            }
            let key = format!("ario.dataset_anchor_tx.{name}");
            let mut candidates: Vec<String> =
                run.tag(&key).map(str::to_owned).into_iter().collect();
            candidates.extend(self.runs_tagged(&key).await);
            let mut found = None;
            for tx in candidates {
                let about = match self.fetch(&tx).await {
                    Ok(f) => f.envelope["subject"]["digest"].as_str() == Some(digest.as_str()),
                    Err(_) => false,
                };
                if about {
                    found = Some(tx);
                    break;
                }
            }
            out.push((name.clone(), digest.clone(), found));
        }
        out
    }

    /// Values of `key` on runs that carry it (any experiment, at most 100).
    async fn runs_tagged(&self, key: &str) -> Vec<String> {
        let Ok(experiments) = self.mlflow.active_experiment_ids().await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for chunk in experiments.chunks(500) {
            let body = serde_json::json!({
                "experiment_ids": chunk,
                "filter": format!("tags.`{key}` IS NOT NULL"),
                "max_results": 100,
            });
            let Ok(v) = self
                .mlflow
                .call::<Value>(
                    "runs/search",
                    crate::mlflow::client::Request::post("api/2.0/mlflow/runs/search", body),
                )
                .await
            else {
                continue;
            };
            for r in v["runs"].as_array().into_iter().flatten() {
                for t in r["data"]["tags"].as_array().into_iter().flatten() {
                    if t["key"] == key {
                        if let Some(v) = t["value"].as_str() {
                            if !out.iter().any(|o| o == v) {
                                out.push(v.to_string());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    async fn subdirs(&self, run: &Run, dir: &str) -> Vec<String> {
        let root = crate::mlflow::artifacts::join_uri(&run.info.artifact_uri, dir);
        self.mlflow
            .list_artifact_dir(&root)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.is_dir)
            .map(|e| e.path.rsplit('/').next().unwrap_or(&e.path).to_string())
            .collect()
    }

    async fn json_artifact(&self, run: &Run, path: &str) -> Option<Value> {
        let bytes = self.mlflow.download_run_artifact(run, path).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The batch documents of this version's checkpoints (`ario/checkpoints/*.json`).
    async fn checkpoints(&self, run: &Run, mv: &ModelVersion) -> Vec<BatchDocument> {
        let root = crate::mlflow::artifacts::join_uri(
            &run.info.artifact_uri,
            &format!("ario/{}", checkpoint::DIR),
        );
        let files = self
            .mlflow
            .list_artifact_dir(&root)
            .await
            .unwrap_or_default();
        let mut out = Vec::new();
        for f in files.iter().filter(|e| !e.is_dir) {
            let name = f.path.rsplit('/').next().unwrap_or(&f.path);
            let path = format!("ario/{}/{name}", checkpoint::DIR);
            let Some(doc) = self
                .json_artifact(run, &path)
                .await
                .and_then(|v| serde_json::from_value::<BatchDocument>(v).ok())
            else {
                continue;
            };
            let record = hex::decode(&doc.record_bytes)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .unwrap_or(Value::Null);
            if record["metadata"]["model_name"].as_str() == Some(mv.name.as_str())
                && record["metadata"]["model_version"].as_str() == Some(mv.version.as_str())
            {
                out.push(doc);
            }
        }
        out
    }

    /// Predictions of this version: witnesses under `ario/predictions/` whose payload names
    /// this version; TX from the trace's `ario.prediction_tx` tag.
    async fn predictions(&self, run: &Run, mv: &ModelVersion) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        let dir = format!("ario/{}", prediction::WITNESS_DIR);
        for decision in self.subdirs(run, &dir).await {
            let Some(payload) = self
                .json_artifact(
                    run,
                    &prediction::witness_path(&decision, witness::PAYLOAD_FILE),
                )
                .await
            else {
                continue;
            };
            if payload["model_name"].as_str() != Some(mv.name.as_str())
                || payload["model_version"].as_str() != Some(mv.version.as_str())
            {
                continue;
            }
            let trace_id = payload["mlflow_trace_id"]
                .as_str()
                .unwrap_or(&decision)
                .to_string();
            let tx = match self.mlflow.get_trace_info(&trace_id).await {
                Ok(info) => info
                    .tags
                    .get(prediction::TX_TAG)
                    .or_else(|| info.tags.get(prediction::LEGACY_TX_TAG))
                    .cloned(),
                Err(_) => None,
            };
            out.push((trace_id, tx));
        }
        out
    }
}

/// Whether a version's checkpoints form one chain: exactly one first (`GENESIS`), every other
/// record's `previous_hash` the hash of exactly one other record, none claimed twice.
pub fn checkpoint_chain(docs: &[BatchDocument]) -> Result<(), CheckpointChainError> {
    let mut previous_of: std::collections::BTreeMap<String, String> = Default::default();
    for d in docs {
        let unreadable = |reason: String| CheckpointChainError::Unreadable {
            tx: d.checkpoint_tx.clone(),
            reason,
        };
        let bytes =
            hex::decode(&d.record_bytes).map_err(|e| unreadable(format!("record bytes: {e}")))?;
        let record: Value =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(format!("record: {e}")))?;
        let prev = record["previous_hash"].as_str().unwrap_or("").to_string();
        previous_of.insert(crate::proof::sha256_hex(&bytes), prev);
    }
    let firsts = previous_of
        .values()
        .filter(|p| p.as_str() == crate::profile::GENESIS)
        .count();
    if firsts != 1 {
        return Err(CheckpointChainError::Starts(firsts));
    }
    let mut claimed = std::collections::BTreeSet::new();
    for prev in previous_of
        .values()
        .filter(|p| p.as_str() != crate::profile::GENESIS)
    {
        if !previous_of.contains_key(prev) {
            return Err(CheckpointChainError::Gap(prev.clone()));
        }
        if !claimed.insert(prev.clone()) {
            return Err(CheckpointChainError::Fork(prev.clone()));
        }
    }
    Ok(())
}

/// `%Y-%m-%dT%H:%M:%S.%fZ` (the plugin's `generated_at`).
fn now_rfc3339_micros() -> String {
    let now = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    now.format(&f).unwrap_or_default()
}

impl Audit {
    /// JSON in the shape of the plugin's `ario.mlflow.audit/v1`, plus our additions (every
    /// stage's label and stricter checks, aliases, predictions found).
    pub fn to_json(&self) -> Value {
        let stages: Vec<Value> = self
            .stages
            .iter()
            .map(|s| {
                let checks = s.verdict.as_ref().map(|v| {
                    let c = &v.checks;
                    let mut m = Map::new();
                    for (k, check) in [
                        ("signature", &c.signature),
                        ("anchored_bytes", &c.anchored_bytes),
                        ("source_of_truth", &c.source_of_truth),
                        ("ario_attestation", &c.ario_attestation),
                    ] {
                        m.insert(k.into(), json!({"ok": check.ok, "reason": check.reason}));
                    }
                    Value::Object(m)
                });
                let mut stage = json!({
                    "stage": s.stage,
                    "tx_id": s.tx_id,
                    "anchored": s.tx_id.is_some(),
                    "checks": checks,
                    "ok": s.ok(),
                    "label": s.label,
                });
                if let Some(v) = &s.verdict {
                    stage["verdict"] = serde_json::to_value(v).unwrap_or(Value::Null);
                }
                stage
            })
            .collect();
        json!({
            "schema": "ario.mlflow.audit/v1",
            "model": self.model,
            "version": self.version,
            "generated_at": self.generated_at,
            "tracking_uri": self.tracking_uri,
            "run_id": self.run_id,
            "current_stage": self.current_stage,
            "artifact_hash": self.artifact_hash,
            "stages": stages,
            "overall_ok": self.overall_ok,
            "aliases": self.aliases,
            "predictions_found": self.predictions_found,
            "checkpoints": {
                "count": self.checkpoints.count,
                "predictions": self.checkpoints.predictions,
                "chain": match &self.checkpoints.chain {
                    None => Value::Null,
                    Some(Ok(())) => json!("linear"),
                    Some(Err(why)) => json!(why.to_string()),
                },
            },
            "generator": format!("ario-mlflow-worker/{}", env!("CARGO_PKG_VERSION")),
        })
    }
}
