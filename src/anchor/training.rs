//! Training events: a FINISHED run → its training payload (params, rounded metrics, the model
//! directory's checksums, dataset inputs) → signed onto the training chain of docs/architecture.md §2 (the
//! registered model the run's model is registered to, else the run's experiment). The chain
//! head tag moves only in step 2, after the upload.

use std::collections::BTreeMap;

use serde_json::Value;

use super::resolve::{
    ChainMove, Context, Limits, Resolution, SignPlan, Skip, SkipKind, TrainingDraft, Wait,
    NO_RENAMES,
};
use super::sign::sign_event;
use super::{wallet_tags, AnchorError, AnchorStatus, Anchored, Anchorer};
use crate::event::ChainOwner;
use crate::mlflow::artifacts::{join_uri, ArtifactError, ArtifactErrorKind};
use crate::mlflow::{MlflowError, Run};
use crate::profile::training::{self, TrainingFacts};
use crate::profile::{tags, GENESIS};
use crate::proof::sha256_hex;
use crate::store::prepared::{ArtifactContent, Prepared, TagValue, Write};

impl Anchorer {
    /// Anchors a finished run's training event (`anchor run <run_id>`), by the resolution the
    /// durable service uses; `artifact_path` overrides the model path the payload hashes.
    pub async fn anchor_run(
        &self,
        run_id: &str,
        artifact_path: Option<&str>,
    ) -> Result<Anchored, AnchorError> {
        let event = crate::event::ChangeEvent::run(run_id);
        let found = match artifact_path {
            None => self.anchor_event(&event).await?,
            Some(path) => {
                let limits = Limits::default();
                let ctx = Context {
                    limits: &limits,
                    waiting_since_ms: None,
                    now_ms: crate::store::now_ms(),
                    renames: &NO_RENAMES,
                    oneshot: true,
                };
                match self
                    .resolve_training_at(run_id, None, None, Some(path), &ctx)
                    .await?
                {
                    Resolution::Seal(draft) => {
                        let head = draft.mlflow_head.clone();
                        let p = self.seal_training(&draft, &head)?;
                        self.publish(&p).await?;
                        vec![Self::anchored(&p, AnchorStatus::Anchored)]
                    }
                    _ => self.anchor_event(&event).await?,
                }
            }
        };
        found
            .into_iter()
            .last()
            .ok_or_else(|| AnchorError::NotReady(format!("run {run_id}: nothing was anchored")))
    }

    /// What a `RunFinished` event becomes (see [`Self::resolve_training_at`]).
    pub async fn resolve_training(
        &self,
        run_id: &str,
        chain: Option<&str>,
        end_time: Option<i64>,
        ctx: &Context<'_>,
    ) -> Result<Resolution, AnchorError> {
        self.resolve_training_at(run_id, chain, end_time, None, ctx)
            .await
    }

    /// A finished run:
    /// * gone, deleted, not FINISHED (re-opened), or finished again since this event was seen
    ///   → skipped, reopened by a later detection;
    /// * anchored, and its anchored run state (params, metrics, sources, datasets) is still the
    ///   run's → already anchored; changed since (re-opened, more logged, finished again) → a
    ///   new proof of the final state that supersedes the earlier one, whose witness is kept
    ///   under `ario/trainings/<event_id>/`;
    /// * signed elsewhere and never uploaded (the plugin offline, a lost store), its witness
    ///   matching the run's tags and state → that proof, adopted;
    /// * otherwise a new payload, read from a run that is FINISHED before and after it was
    ///   read (a run re-opened meanwhile is not signed mid-run).
    pub async fn resolve_training_at(
        &self,
        run_id: &str,
        chain: Option<&str>,
        end_time: Option<i64>,
        artifact_path: Option<&str>,
        ctx: &Context<'_>,
    ) -> Result<Resolution, AnchorError> {
        let run = match self.mlflow.get_run(run_id).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() => {
                return Ok(Skip::because(
                    SkipKind::Gone,
                    format!("run {run_id} no longer exists"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if run.info.lifecycle_stage == "deleted" {
            // Deleted runs can be restored: waited for (every source sees it again only if it
            // re-detects it), then skipped — a later detection reopens the job.
            if !ctx.expired(ctx.limits.max_dependency_wait) && !ctx.oneshot {
                return Ok(Wait::on(format!(
                    "run {run_id} is deleted (anchored if restored)"
                )));
            }
            return Ok(Skip::because(
                SkipKind::Gone,
                format!("run {run_id} is deleted (anchored if it is restored)"),
            ));
        }
        if run.info.status != "FINISHED" {
            return Ok(Skip::because(
                SkipKind::Gone,
                format!(
                    "run {run_id} is {}, not FINISHED (re-opened?): anchored when it finishes",
                    run.info.status
                ),
            ));
        }
        if end_time.is_some() && run.info.end_time != end_time {
            return Ok(Skip::because(
                SkipKind::Gone,
                format!(
                    "run {run_id} finished again since (end_time {:?}, not {:?}): that finish is its own event",
                    run.info.end_time, end_time
                ),
            ));
        }
        let mut keep_superseded = Vec::new();
        if let Some(tx) = run.tag(training::TX_TAG) {
            let hash = run.tag(tags::PAYLOAD_HASH).unwrap_or("").to_string();
            let on_record = |reason: String| {
                Ok(Skip::anchored(
                    SkipKind::AlreadyAnchored,
                    reason,
                    training::EVENT_TYPE,
                    run_id,
                    tx,
                    &hash,
                ))
            };
            if run.tag(training::END_TIME_TAG).is_some()
                && run.tag(training::END_TIME_TAG)
                    == run.info.end_time.map(|t| t.to_string()).as_deref()
            {
                return on_record("already anchored (ario.training_tx present)".into());
            }
            // Anchored by the plugin (mid-run, by `anchor()`), or by us before the run was
            // re-opened: a new proof only if the run's state changed since.
            let Some(witness) = self.training_witness(&run, &hash).await? else {
                return on_record(format!(
                    "anchored ({tx}); its witness ario/payload.json is missing or does not hash to ario.payload_hash, so a change since cannot be told"
                ));
            };
            let changed = training::changed_run_state(&witness.payload, &self.run_state(&run)?);
            if changed.is_empty() {
                return on_record(format!("already anchored ({tx}); unchanged since"));
            }
            tracing::info!(run_id, superseded = %tx, changed = ?changed, "run changed since its training proof; a new proof supersedes it");
            keep_superseded = witness.keep(&run);
        } else if let Some(tag) = run.tag(tags::PAYLOAD_HASH) {
            // Signed elsewhere, never uploaded: adopt that proof when its witness is the run's
            // (and still describes it); otherwise it was never anchored and a new one is signed.
            if let Some(witness) = self.training_witness(&run, tag).await? {
                let unchanged =
                    training::changed_run_state(&witness.payload, &self.run_state(&run)?)
                        .is_empty();
                if let (true, Some(proof)) = (unchanged, witness.proof) {
                    let owner = self.chain_owner(&run, chain).await?;
                    let p = self.restore(
                        proof.as_bytes(),
                        witness.bytes,
                        training::EVENT_TYPE,
                        run_id.into(),
                        training_anchored_writes(&run, &owner, tag),
                    )?;
                    let extends = p.envelope["previous_hash"].as_str().map(str::to_owned);
                    let chain = ChainMove {
                        key: owner.chain_key(),
                        head: p.payload_hash.clone(),
                        extends,
                    };
                    return Ok(SignPlan::adopted(p, Some(chain)));
                }
            }
        }
        let (payload, checksums) = self.training_payload(&run, artifact_path).await?;
        // Signing re-reads the status: a run re-opened while its files were read is not signed.
        let again = self.mlflow.get_run(run_id).await?;
        if again.info.status != "FINISHED" || again.info.end_time != run.info.end_time {
            return Ok(Skip::because(
                SkipKind::Gone,
                format!(
                    "run {run_id} was re-opened while being read ({}); anchored when it finishes",
                    again.info.status
                ),
            ));
        }
        let owner = self.chain_owner(&run, chain).await?;
        let mlflow_head = self.chain_head_of(&owner).await?;
        Ok(Resolution::Seal(Box::new(TrainingDraft {
            datasets: run_datasets(&run),
            run,
            payload,
            checksums,
            owner,
            mlflow_head,
            keep_superseded,
        })))
    }

    /// The run's params, metrics, sources and datasets as a payload would commit to them now
    /// (no model re-hash).
    fn run_state(&self, run: &Run) -> Result<Value, AnchorError> {
        Ok(training::payload(&TrainingFacts {
            run: &run.facts(),
            checksums: &BTreeMap::new(),
        })?)
    }

    /// The run's training witness (`ario/payload.json`) when it hashes to `payload_hash`, with
    /// its proof and receipt when present.
    async fn training_witness(
        &self,
        run: &Run,
        payload_hash: &str,
    ) -> Result<Option<TrainingWitness>, AnchorError> {
        let read = |path: &'static str| async move {
            match self.mlflow.download_run_artifact(run, path).await {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(AnchorError::from(e)),
            }
        };
        let Some(bytes) = read(training::PAYLOAD_ARTIFACT).await? else {
            return Ok(None);
        };
        if sha256_hex(&bytes) != payload_hash {
            return Ok(None);
        }
        let Ok(payload) = crate::proof::jcs::parse(&bytes) else {
            return Ok(None);
        };
        let text = |b: Option<Vec<u8>>| b.and_then(|b| String::from_utf8(b).ok());
        Ok(Some(TrainingWitness {
            proof: text(read(training::PROOF_ARTIFACT).await?),
            receipt: text(read(training::RECEIPT_ARTIFACT).await?),
            payload,
            bytes,
        }))
    }

    /// The training chain: the one the source pinned (Kafka: the partition that owns it), else
    /// the registered model the run is registered to, else the run's experiment.
    async fn chain_owner(
        &self,
        run: &Run,
        pinned: Option<&str>,
    ) -> Result<ChainOwner, AnchorError> {
        match pinned {
            Some(key) => ChainOwner::from_chain_key(key).ok_or_else(|| {
                AnchorError::Inconsistent(format!(
                    "run {}: the event names chain {key:?}, which is neither rm/<name> nor exp/<id>",
                    run.info.run_id
                ))
            }),
            None => Ok(self.training_chain_head(run).await?.1),
        }
    }

    /// Signs a training draft onto `previous` (the chain head the caller keeps): the cheap,
    /// synchronous half of a training resolution, so the service can gather payloads
    /// concurrently and still sign each chain in order.
    pub fn seal_training(
        &self,
        draft: &TrainingDraft,
        previous: &str,
    ) -> Result<Prepared, AnchorError> {
        let run = &draft.run;
        let run_id = &run.info.run_id;
        let ev = sign_event(
            training::EVENT_TYPE,
            training::subject(run_id),
            previous,
            &draft.payload,
            &self.key,
            &self.wallet.signer,
            self.mlflow.workspace(),
        )?;
        let artifact = |path: &str, content| Write::Artifact {
            artifact_uri: run.info.artifact_uri.clone(),
            path: path.into(),
            content,
        };
        let text = |s: String| TagValue::Text(s);
        let mut run_tags = vec![
            (
                tags::PUBLIC_KEY.to_string(),
                text(self.key.public_key_hex()),
            ),
            (
                tags::VERIFY_STATUS.to_string(),
                text(tags::STATUS_SIGNED.into()),
            ),
            (
                tags::PAYLOAD_HASH.to_string(),
                text(ev.payload_hash.clone()),
            ),
        ];
        if let Some(hash) = training::artifact_hash(&draft.checksums) {
            run_tags.push((tags::ARTIFACT_HASH.into(), text(hash)));
        }
        run_tags.extend(
            wallet_tags(&self.wallet)
                .into_iter()
                .map(|(k, v)| (k, text(v))),
        );
        if let Some(end) = run.info.end_time {
            run_tags.push((training::END_TIME_TAG.into(), text(end.to_string())));
        }
        // An earlier proof's witness is copied away before this one replaces it.
        let mut signed = draft.keep_superseded.clone();
        signed.extend([
            artifact(training::PAYLOAD_ARTIFACT, ArtifactContent::Payload),
            artifact(training::PROOF_ARTIFACT, ArtifactContent::Proof),
            Write::RunTags {
                run_id: run_id.clone(),
                tags: run_tags,
            },
        ]);
        let anchored = training_anchored_writes(run, &draft.owner, &ev.payload_hash);
        Ok(Prepared::new(
            ev,
            training::EVENT_TYPE,
            run_id.clone(),
            signed,
            anchored,
        ))
    }

    /// The training payload of a run and the checksums it commits to, built from live MLflow
    /// without writing anything (also used to compare with the plugin byte for byte).
    pub async fn training_payload(
        &self,
        run: &Run,
        artifact_path: Option<&str>,
    ) -> Result<(Value, BTreeMap<String, String>), AnchorError> {
        let logged_model_names = self.logged_model_names(run).await?;
        let path = match artifact_path {
            Some(p) => p.to_string(),
            None => training::artifact_path(
                run.tag(training::LOG_MODEL_HISTORY_TAG),
                &logged_model_names,
            )?,
        };
        // No hollow proofs: `{}` is signed only when the run demonstrably has no model files at
        // `path`. A store that cannot be read is an error (transient: the job waits; permanent:
        // it is parked with the cause), never an empty map — unlike the plugin, which signs `{}`.
        let checksums = match self.mlflow.model_checksums(run, &path).await? {
            Some(c) if !c.is_empty() => c,
            _ => {
                if let Some(record) = recorded_model(run, &path, &logged_model_names) {
                    return Err(MlflowError::Artifact(ArtifactError {
                        uri: join_uri(&run.info.artifact_uri, &path),
                        kind: ArtifactErrorKind::NotFound,
                        cause: format!(
                            "run {} records a model at {path:?} ({record}), but the store holds no readable file for it; refusing to sign a proof that commits to no model bytes",
                            run.info.run_id
                        ),
                    })
                    .into());
                }
                BTreeMap::new()
            }
        };
        let payload = training::payload(&TrainingFacts {
            run: &run.facts(),
            checksums: &checksums,
        })?;
        Ok((payload, checksums))
    }

    async fn logged_model_names(&self, run: &Run) -> Result<Vec<String>, AnchorError> {
        let mut names = Vec::new();
        for output in &run.outputs.model_outputs {
            if output.model_id.is_empty() {
                continue;
            }
            match self.mlflow.get_logged_model(&output.model_id).await {
                Ok(m) => names.push(m.name),
                // Deleted from MLflow: the run no longer has that model.
                Err(e) if e.is_not_found() => {
                    tracing::debug!(model_id = %output.model_id, error = %e, "logged model deleted")
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(names)
    }

    /// The training chain (docs/architecture.md §2): the registered model the run is registered to, else
    /// the run's experiment; its head is the `ario.last_training_hash` tag.
    pub async fn training_chain_head(
        &self,
        run: &Run,
    ) -> Result<(String, ChainOwner), AnchorError> {
        let versions = self
            .mlflow
            .search_model_versions(&format!("run_id='{}'", run.info.run_id))
            .await?;
        let owner = match versions.first() {
            Some(mv) => ChainOwner::RegisteredModel(mv.name.clone()),
            None => ChainOwner::Experiment(run.info.experiment_id.clone()),
        };
        Ok((self.chain_head_of(&owner).await?, owner))
    }

    /// The head MLflow's tag gives for a training chain (GENESIS when none is set).
    pub async fn chain_head_of(&self, owner: &ChainOwner) -> Result<String, AnchorError> {
        let head = match owner {
            ChainOwner::RegisteredModel(name) => self
                .mlflow
                .get_registered_model(name)
                .await?
                .tag(training::CHAIN_HEAD_TAG)
                .map(str::to_string),
            ChainOwner::Experiment(id) => {
                self.mlflow
                    .get_experiment_tag(id, training::CHAIN_HEAD_TAG)
                    .await?
            }
        };
        Ok(head
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| GENESIS.to_string()))
    }
}

/// Step-2 writes of a training event.
pub fn training_anchored_writes(run: &Run, owner: &ChainOwner, payload_hash: &str) -> Vec<Write> {
    let head = TagValue::Text(payload_hash.to_string());
    vec![
        Write::Artifact {
            artifact_uri: run.info.artifact_uri.clone(),
            path: training::RECEIPT_ARTIFACT.into(),
            content: ArtifactContent::Receipt,
        },
        Write::RunTags {
            run_id: run.info.run_id.clone(),
            tags: vec![
                (training::TX_TAG.into(), TagValue::TxId),
                (tags::ARWEAVE_URL.into(), TagValue::ArweaveUrl),
                (
                    tags::VERIFY_STATUS.into(),
                    TagValue::Text(tags::STATUS_ANCHORED.into()),
                ),
            ],
        },
        // The chain head moves only after a successful upload.
        match owner {
            ChainOwner::RegisteredModel(name) => Write::RegisteredModelTag {
                name: name.clone(),
                key: training::CHAIN_HEAD_TAG.into(),
                value: head,
            },
            ChainOwner::Experiment(id) => Write::ExperimentTag {
                experiment_id: id.clone(),
                key: training::CHAIN_HEAD_TAG.into(),
                value: head,
            },
        },
    ]
}

/// A run's training witness as stored: the payload bytes (matching the run's
/// `ario.payload_hash`), and the proof and receipt beside them.
struct TrainingWitness {
    bytes: Vec<u8>,
    payload: Value,
    proof: Option<String>,
    receipt: Option<String>,
}

impl TrainingWitness {
    /// Copies of the witness under `ario/trainings/<event_id>/`, so the proof stays verifiable
    /// once a newer proof's witness takes `ario/payload.json` (none without a readable proof).
    fn keep(&self, run: &Run) -> Vec<Write> {
        let Some(proof) = &self.proof else {
            return Vec::new();
        };
        let Some(event_id) = serde_json::from_str::<Value>(proof)
            .ok()
            .and_then(|e| e["event_id"].as_str().map(str::to_owned))
        else {
            return Vec::new();
        };
        let Ok(payload) = String::from_utf8(self.bytes.clone()) else {
            return Vec::new();
        };
        let mut files = vec![
            (crate::profile::witness::PAYLOAD_FILE, payload),
            (crate::profile::witness::PROOF_FILE, proof.clone()),
        ];
        if let Some(r) = &self.receipt {
            files.push((crate::profile::witness::RECEIPT_FILE, r.clone()));
        }
        files
            .into_iter()
            .map(|(file, text)| Write::Artifact {
                artifact_uri: run.info.artifact_uri.clone(),
                path: training::superseded_path(&event_id, file),
                content: ArtifactContent::Document(text),
            })
            .collect()
    }
}

/// A run's dataset inputs (name, digest), first occurrence of each.
pub fn run_datasets(run: &Run) -> Vec<(String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    run.inputs
        .dataset_inputs
        .iter()
        .map(|i| (i.dataset.name.clone(), i.dataset.digest.clone()))
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

/// What in MLflow says the run logged a model at `path`, if anything: MLflow 2's
/// `mlflow.log-model.history` tag or an MLflow 3 LoggedModel output of that name.
fn recorded_model(run: &Run, path: &str, logged_model_names: &[String]) -> Option<String> {
    let path = path.trim_matches('/');
    let top = path.split('/').next().unwrap_or(path);
    if logged_model_names.iter().any(|n| n == top) {
        return Some(format!("LoggedModel {top:?} of the run"));
    }
    let history = run.tag(training::LOG_MODEL_HISTORY_TAG)?;
    let entries: Vec<Value> = serde_json::from_str(history).ok()?;
    entries
        .iter()
        .any(|e| e["artifact_path"].as_str().map(|p| p.trim_matches('/')) == Some(path))
        .then(|| format!("{} tag", training::LOG_MODEL_HISTORY_TAG))
}
