//! Training events: a FINISHED run → its training payload (params, rounded metrics, the model
//! directory's checksums, dataset inputs) → signed onto the training chain of DESIGN.md §2 (the
//! registered model the run's model is registered to, else the run's experiment). The chain
//! head tag moves only in step 2, after the upload.

use std::collections::BTreeMap;

use serde_json::Value;

use super::prepared::{ArtifactContent, Prepared, TagValue, Write};
use super::sign::sign_event;
use super::{wallet_tags, AnchorError, AnchorStatus, Anchored, Anchorer};
use crate::event::ChainOwner;
use crate::mlflow::artifacts::{join_uri, ArtifactError, ArtifactErrorKind};
use crate::mlflow::{MlflowError, Run};
use crate::profile::training::{self, TrainingFacts};
use crate::profile::{tags, GENESIS};
use crate::proof::sha256_hex;

impl Anchorer {
    /// Anchors a finished run's training event (`anchor run <run_id>`).
    pub async fn anchor_run(
        &self,
        run_id: &str,
        artifact_path: Option<&str>,
    ) -> Result<Anchored, AnchorError> {
        let run = self.mlflow.get_run(run_id).await?;
        if let Some(tx) = run.tag(training::TX_TAG) {
            let hash = run.tag(tags::PAYLOAD_HASH).unwrap_or("").to_string();
            return Ok(Anchored {
                event_type: training::EVENT_TYPE.into(),
                subject: run_id.into(),
                tx_id: tx.into(),
                payload_hash: hash,
                status: AnchorStatus::AlreadyAnchored,
            });
        }
        if run.info.status != "FINISHED" {
            return Err(AnchorError::NotReady(format!(
                "run {run_id} is {}, not FINISHED; it is anchored once it finishes",
                run.info.status
            )));
        }
        if run.tag(tags::PAYLOAD_HASH).is_some() {
            // Signed earlier (by us or the plugin) but never uploaded: upload that proof.
            let proof = self
                .mlflow
                .download_run_artifact(&run, training::PROOF_ARTIFACT)
                .await?;
            let payload_bytes = self
                .mlflow
                .download_run_artifact(&run, training::PAYLOAD_ARTIFACT)
                .await?;
            let owner = self.training_chain_head(&run).await?.1;
            let hash = sha256_hex(&payload_bytes);
            let p = self.restore(
                &proof,
                payload_bytes,
                training::EVENT_TYPE,
                run_id.into(),
                training_anchored_writes(&run, &owner, &hash),
            )?;
            self.publish(&p).await?;
            return Ok(Self::anchored(&p, AnchorStatus::Resumed));
        }
        let p = self.prepare_training(&run, artifact_path).await?;
        self.publish(&p).await?;
        Ok(Self::anchored(&p, AnchorStatus::Anchored))
    }

    /// Builds and signs a run's training event (nothing is written).
    pub async fn prepare_training(
        &self,
        run: &Run,
        artifact_path: Option<&str>,
    ) -> Result<Prepared, AnchorError> {
        let (previous, owner) = self.training_chain_head(run).await?;
        self.prepare_training_on(run, artifact_path, &previous, &owner)
            .await
    }

    /// Builds and signs a run's training event on a given chain head (the durable service
    /// passes the head it keeps in sled, which moves as soon as an event is signed).
    pub async fn prepare_training_on(
        &self,
        run: &Run,
        artifact_path: Option<&str>,
        previous: &str,
        owner: &ChainOwner,
    ) -> Result<Prepared, AnchorError> {
        let (payload, checksums) = self.training_payload(run, artifact_path).await?;
        self.seal_training(run, &payload, &checksums, previous, owner)
    }

    /// Signs a training payload already built by [`Self::training_payload`] onto `previous`:
    /// the cheap, synchronous half of [`Self::prepare_training_on`], so the service can gather
    /// payloads concurrently and still sign each chain in order.
    pub fn seal_training(
        &self,
        run: &Run,
        payload: &Value,
        checksums: &BTreeMap<String, String>,
        previous: &str,
        owner: &ChainOwner,
    ) -> Result<Prepared, AnchorError> {
        let run_id = &run.info.run_id;
        let ev = sign_event(
            training::EVENT_TYPE,
            training::subject(run_id),
            previous,
            payload,
            &self.key,
            &self.wallet.signer,
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
        if let Some(hash) = training::artifact_hash(checksums) {
            run_tags.push((tags::ARTIFACT_HASH.into(), text(hash)));
        }
        run_tags.extend(
            wallet_tags(&self.wallet)
                .into_iter()
                .map(|(k, v)| (k, text(v))),
        );
        let signed = vec![
            artifact(training::PAYLOAD_ARTIFACT, ArtifactContent::Payload),
            artifact(training::PROOF_ARTIFACT, ArtifactContent::Proof),
            Write::RunTags {
                run_id: run_id.clone(),
                tags: run_tags,
            },
        ];
        let anchored = training_anchored_writes(run, owner, &ev.payload_hash);
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

    /// The training chain (DESIGN.md §2): the registered model the run is registered to, else
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
