//! Anchoring one MLflow event end to end: fetch facts → build the payload → sign → upload →
//! write back, in the two steps of DESIGN.md §3. Step 1 (as soon as the event is signed) writes
//! the witness artifacts, `ario.payload_hash`, `ario.public_key` and `ario.verify_status=signed`;
//! step 2 (only after Turbo accepted the item) writes `ario.*_tx`, `ario.arweave_url`,
//! `verify_status=anchored`, the receipt, and moves the training chain head.
//!
//! Anything the Python plugin (or an earlier run of ours) already anchored is detected and left
//! alone. An event that was signed but never uploaded (Turbo unreachable, a crash) is *resumed*:
//! its stored envelope is uploaded as is, so it keeps its id and is never signed twice.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::event::{envelope_item, sign_event, EventError, GENESIS};
use super::payload::{self, PayloadError, PredictionFacts, TrainingFacts};
use super::plan::{ArtifactContent, Prepared, Publisher, TagValue, Write};
use crate::arweave::turbo::TurboError;
use crate::arweave::{TurboClient, Wallet};
use crate::keys::EnvelopeKey;
use crate::mlflow::{MlflowClient, MlflowError, ModelVersion, Run};
use crate::proof::{jcs, sha256_hex, verify_envelope};

/// Why an event could not be anchored.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// MLflow could not be read or written.
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
    /// The payload could not be built.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// Signing failed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Upload failed (permanent, or retries exhausted).
    #[error(transparent)]
    Upload(#[from] TurboError),
    /// The entity is not in a state that can be anchored.
    #[error("{0}")]
    NotReady(String),
    /// A stored proof is inconsistent (e.g. a witness that does not match its envelope).
    #[error("{0}")]
    Inconsistent(String),
}

/// The result of anchoring one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchored {
    /// `training_complete`, `dataset`, `model_registered`, `stage_transition`, `prediction`.
    pub event_type: String,
    /// What was anchored (run id, `name/version`, trace id, dataset name).
    pub subject: String,
    /// The Arweave TX id (data item id).
    pub tx_id: String,
    /// SHA-256 of the payload.
    pub payload_hash: String,
    /// How it ended.
    pub status: AnchorStatus,
}

/// How an anchoring call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorStatus {
    /// Signed and uploaded now.
    Anchored,
    /// A signed-but-not-uploaded proof was found and uploaded now.
    Resumed,
    /// Already anchored (by the plugin or an earlier run); nothing was done.
    AlreadyAnchored,
}

/// Everything needed to anchor: MLflow, Turbo, the envelope key and the wallet.
#[derive(Debug)]
pub struct Anchorer {
    /// MLflow client.
    pub mlflow: MlflowClient,
    /// Turbo client.
    pub turbo: TurboClient,
    /// Envelope signing key.
    pub key: EnvelopeKey,
    /// Data-item signer.
    pub wallet: Wallet,
    /// Host used in `ario.arweave_url` tags (`ARIO_MLFLOW_GATEWAY_HOST`).
    pub gateway_host: String,
}

fn wallet_tags(wallet: &Wallet) -> Vec<(String, String)> {
    let text = |v: Value| v.as_str().unwrap_or_default().to_string();
    vec![
        (
            "ario.wallet_mode".into(),
            text(serde_json::to_value(wallet.mode).unwrap_or_default()),
        ),
        (
            "ario.wallet_type".into(),
            text(serde_json::to_value(wallet.wallet_type).unwrap_or_default()),
        ),
    ]
}

impl Anchorer {
    fn publisher(&self) -> Publisher<'_> {
        Publisher {
            mlflow: &self.mlflow,
            turbo: &self.turbo,
            gateway_host: &self.gateway_host,
        }
    }

    /// Publishes a prepared event: step 1, upload, step 2. Returns the TX id.
    pub async fn publish(&self, p: &Prepared) -> Result<String, AnchorError> {
        let publisher = self.publisher();
        publisher.write_signed(p).await?;
        let receipt = publisher.upload(p).await?;
        publisher.write_anchored(p, receipt.as_ref()).await?;
        Ok(p.tx_id.clone())
    }

    fn anchored(p: &Prepared, status: AnchorStatus) -> Anchored {
        Anchored {
            event_type: p.event_type.clone(),
            subject: p.subject.clone(),
            tx_id: p.tx_id.clone(),
            payload_hash: p.payload_hash.clone(),
            status,
        }
    }

    /// Wraps a stored envelope (signed earlier, never uploaded), checked against its witness bytes and
    /// wrapped for publishing with the given writes. Never re-signs.
    pub fn restore(
        &self,
        proof: &[u8],
        payload_bytes: Vec<u8>,
        event_type: &str,
        subject: String,
        anchored_writes: Vec<Write>,
    ) -> Result<Prepared, AnchorError> {
        let envelope = jcs::parse(proof)
            .map_err(|e| AnchorError::Inconsistent(format!("stored proof is not JSON: {e}")))?;
        let verdict = verify_envelope(&envelope, Some(&payload_bytes));
        if !verdict.overall {
            return Err(AnchorError::Inconsistent(format!(
                "stored proof does not verify against its witness ({}); refusing to upload it",
                verdict.reason.unwrap_or_default()
            )));
        }
        let item = envelope_item(&envelope, &self.wallet.signer)?;
        Ok(Prepared {
            event_type: event_type.into(),
            subject,
            payload_hash: verdict.stored_payload_hash.unwrap_or_default(),
            payload_bytes,
            envelope,
            tx_id: item.id(),
            item: item.to_bytes(),
            signed_writes: Vec::new(),
            anchored_writes,
        })
    }

    // ---------------------------------------------------------------- training

    /// Anchors a finished run's training event (`anchor run <run_id>`).
    pub async fn anchor_run(
        &self,
        run_id: &str,
        artifact_path: Option<&str>,
    ) -> Result<Anchored, AnchorError> {
        let run = self.mlflow.get_run(run_id).await?;
        if let Some(tx) = run.tag("ario.training_tx") {
            let hash = run.tag("ario.payload_hash").unwrap_or("").to_string();
            return Ok(Anchored {
                event_type: "training_complete".into(),
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
        if run.tag("ario.payload_hash").is_some() {
            // Signed earlier (by us or the plugin) but never uploaded: upload that proof.
            let proof = self
                .mlflow
                .download_run_artifact(&run, "ario/proof.json")
                .await?;
            let payload_bytes = self
                .mlflow
                .download_run_artifact(&run, "ario/payload.json")
                .await?;
            let owner = self.training_chain_head(&run).await?.1;
            let hash = sha256_hex(&payload_bytes);
            let p = self.restore(
                &proof,
                payload_bytes,
                "training_complete",
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
        let subject = json!({"type": "mlflow_run", "run_id": run_id});
        let ev = sign_event(
            "training_complete",
            subject,
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
        let mut tags = vec![
            (
                "ario.public_key".to_string(),
                text(self.key.public_key_hex()),
            ),
            ("ario.verify_status".to_string(), text("signed".into())),
            (
                "ario.payload_hash".to_string(),
                text(ev.payload_hash.clone()),
            ),
        ];
        if let Some(hash) = payload::artifact_hash(checksums) {
            tags.push(("ario.artifact_hash".into(), text(hash)));
        }
        tags.extend(
            wallet_tags(&self.wallet)
                .into_iter()
                .map(|(k, v)| (k, text(v))),
        );
        let signed = vec![
            artifact("ario/payload.json", ArtifactContent::Payload),
            artifact("ario/proof.json", ArtifactContent::Proof),
            Write::RunTags {
                run_id: run_id.clone(),
                tags,
            },
        ];
        let anchored = training_anchored_writes(run, owner, &ev.payload_hash);
        Ok(Prepared::new(
            ev,
            "training_complete",
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
            None => payload::training_artifact_path(run, &logged_model_names)?,
        };
        let checksums = match self.mlflow.model_checksums(run, &path).await {
            Ok(Some(c)) => c,
            Ok(None) => BTreeMap::new(),
            Err(e) if !e.is_transient() => {
                tracing::warn!(run_id = %run.info.run_id, error = %e, "artifacts could not be hashed; anchoring with empty artifact_checksums (as the plugin does)");
                BTreeMap::new()
            }
            Err(e) => return Err(e.into()),
        };
        let payload = payload::training_payload(&TrainingFacts {
            run,
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
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => {
                    tracing::debug!(model_id = %output.model_id, error = %e, "logged model not readable")
                }
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
        if let Some(mv) = versions.first() {
            let rm = self.mlflow.get_registered_model(&mv.name).await?;
            let head = rm
                .tag("ario.last_training_hash")
                .filter(|h| !h.is_empty())
                .unwrap_or(GENESIS)
                .to_string();
            return Ok((head, ChainOwner::RegisteredModel(mv.name.clone())));
        }
        let head = self
            .experiment_tag(&run.info.experiment_id, "ario.last_training_hash")
            .await?
            .unwrap_or_else(|| GENESIS.to_string());
        Ok((head, ChainOwner::Experiment(run.info.experiment_id.clone())))
    }

    async fn experiment_tag(
        &self,
        experiment_id: &str,
        key: &str,
    ) -> Result<Option<String>, AnchorError> {
        let v: Value = self
            .mlflow
            .call(
                "experiments/get",
                crate::mlflow::client::Request::get(
                    "api/2.0/mlflow/experiments/get",
                    &[("experiment_id", experiment_id)],
                ),
            )
            .await?;
        Ok(v["experiment"]["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned))
    }

    // ---------------------------------------------------------------- datasets

    /// Builds and signs one dataset event (GENESIS); step 2 tags the run with its TX.
    pub fn prepare_dataset(
        &self,
        run: &Run,
        ds: &crate::mlflow::Dataset,
    ) -> Result<Prepared, AnchorError> {
        let payload = payload::dataset_payload(ds);
        let subject = json!({"type": "mlflow_dataset", "name": ds.name, "digest": ds.digest});
        let ev = sign_event(
            "dataset",
            subject,
            GENESIS,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;
        let anchored = vec![Write::RunTags {
            run_id: run.info.run_id.clone(),
            tags: vec![(
                format!("ario.dataset_anchor_tx.{}", ds.name),
                TagValue::TxId,
            )],
        }];
        Ok(Prepared::new(
            ev,
            "dataset",
            ds.name.clone(),
            Vec::new(),
            anchored,
        ))
    }

    /// Anchors each distinct (name, digest) dataset input of a run (`anchor dataset <run_id>`).
    pub async fn anchor_datasets(&self, run_id: &str) -> Result<Vec<Anchored>, AnchorError> {
        let run = self.mlflow.get_run(run_id).await?;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for input in &run.inputs.dataset_inputs {
            let ds = &input.dataset;
            if !seen.insert((ds.name.clone(), ds.digest.clone())) {
                continue;
            }
            if let Some(tx) = run.tag(&format!("ario.dataset_anchor_tx.{}", ds.name)) {
                let hash = sha256_hex(
                    &jcs::canonicalize(&payload::dataset_payload(ds))
                        .map_err(PayloadError::from)?,
                );
                out.push(Anchored {
                    event_type: "dataset".into(),
                    subject: ds.name.clone(),
                    tx_id: tx.into(),
                    payload_hash: hash,
                    status: AnchorStatus::AlreadyAnchored,
                });
                continue;
            }
            let p = self.prepare_dataset(&run, ds)?;
            self.publish(&p).await?;
            out.push(Self::anchored(&p, AnchorStatus::Anchored));
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- registration

    /// Anchors a model version's registration (`anchor model <name>/<version>`). The source run's
    /// training proof comes first (anchored now if missing), so the chain links.
    pub async fn anchor_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Vec<Anchored>, AnchorError> {
        let mv = self.mlflow.get_model_version(name, version).await?;
        let subject_text = format!("{name}/{version}");
        if let Some(tx) = mv.tag("ario.registration_tx") {
            let hash = mv.tag("ario.payload_hash").unwrap_or("").to_string();
            return Ok(vec![Anchored {
                event_type: "model_registered".into(),
                subject: subject_text,
                tx_id: tx.into(),
                payload_hash: hash,
                status: AnchorStatus::AlreadyAnchored,
            }]);
        }
        let source_run_id = registration_source_run(&mv)?;
        let mut out = Vec::new();
        let mut run = None;
        if let Some(run_id) = &source_run_id {
            let r = self.mlflow.get_run(run_id).await?;
            if r.tag("ario.training_tx").is_none() && r.info.status == "FINISHED" {
                out.push(self.anchor_run(run_id, None).await?);
            }
            run = Some(self.mlflow.get_run(run_id).await?);
        }
        if let (Some(r), Some(proof_hash)) = (&run, mv.tag("ario.payload_hash")) {
            // Signed earlier but never uploaded: resume it.
            let proof = self
                .mlflow
                .download_run_artifact(r, "ario/registration_proof.json")
                .await?;
            let payload_bytes = self
                .mlflow
                .download_run_artifact(r, "ario/registration_payload.json")
                .await?;
            let p = self.restore(
                &proof,
                payload_bytes,
                "model_registered",
                subject_text.clone(),
                registration_anchored_writes(&mv, run.as_ref()),
            )?;
            if p.payload_hash != proof_hash {
                return Err(AnchorError::Inconsistent(format!("{subject_text}: stored registration proof is for payload {}, tag says {proof_hash}", p.payload_hash)));
            }
            self.publish(&p).await?;
            out.push(Self::anchored(&p, AnchorStatus::Resumed));
            return Ok(out);
        }
        let p = self
            .prepare_registration(&mv, run.as_ref(), source_run_id.as_deref())
            .await?;
        self.publish(&p).await?;
        out.push(Self::anchored(&p, AnchorStatus::Anchored));
        Ok(out)
    }

    /// Builds and signs a registration; `run` is the source run (already anchored or not).
    pub async fn prepare_registration(
        &self,
        mv: &ModelVersion,
        run: Option<&Run>,
        source_run_id: Option<&str>,
    ) -> Result<Prepared, AnchorError> {
        let (name, version) = (&mv.name, &mv.version);
        let (_, src_path) = payload::parse_runs_uri(&mv.source);
        let (artifact_verified, expected_hash, previous) = match run {
            Some(r) => {
                let expected = r.tag("ario.artifact_hash").map(str::to_owned);
                let path = src_path.unwrap_or_else(|| "model".into());
                let checksums = match self.mlflow.model_checksums(r, &path).await {
                    Ok(c) => c.unwrap_or_default(),
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(_) => BTreeMap::new(),
                };
                let verified = match (payload::artifact_hash(&checksums), &expected) {
                    (Some(actual), Some(expected)) => Some(&actual == expected),
                    _ => None,
                };
                (
                    verified,
                    expected,
                    r.tag("ario.training_tx").unwrap_or(GENESIS).to_string(),
                )
            }
            None => (None, None, GENESIS.to_string()),
        };
        let payload = payload::registration_payload(
            name,
            version,
            &mv.source,
            source_run_id,
            artifact_verified,
            expected_hash.as_deref(),
        );
        let subject = json!({"type": "mlflow_model_version", "name": name, "version": version});
        let ev = sign_event(
            "model_registered",
            subject,
            &previous,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;
        let mut signed = Vec::new();
        if let Some(r) = run {
            for (path, content) in [
                ("ario/registration_payload.json", ArtifactContent::Payload),
                ("ario/registration_proof.json", ArtifactContent::Proof),
            ] {
                signed.push(Write::Artifact {
                    artifact_uri: r.info.artifact_uri.clone(),
                    path: path.into(),
                    content,
                });
            }
        }
        let mut tags = vec![
            ("ario.verify_status", "signed".to_string()),
            ("ario.public_key", self.key.public_key_hex()),
            ("ario.payload_hash", ev.payload_hash.clone()),
            ("ario.wallet_mode", wallet_tags(&self.wallet)[0].1.clone()),
        ];
        if let Some(v) = artifact_verified {
            tags.push(("ario.artifact_verified", v.to_string()));
        }
        signed.extend(tags.into_iter().map(|(k, v)| Write::ModelVersionTag {
            name: name.clone(),
            version: version.clone(),
            key: k.into(),
            value: TagValue::Text(v),
        }));
        let anchored = registration_anchored_writes(mv, run);
        Ok(Prepared::new(
            ev,
            "model_registered",
            format!("{name}/{version}"),
            signed,
            anchored,
        ))
    }

    /// The version's `ario.registration_tx`, anchoring the registration first if needed.
    async fn registration_tx(
        &self,
        name: &str,
        version: &str,
        out: &mut Vec<Anchored>,
    ) -> Result<(ModelVersion, String), AnchorError> {
        let mv = self.mlflow.get_model_version(name, version).await?;
        if let Some(tx) = mv.tag("ario.registration_tx") {
            return Ok((mv.clone(), tx.to_string()));
        }
        let anchored = self.anchor_model_version(name, version).await?;
        let tx = anchored
            .last()
            .map(|a| a.tx_id.clone())
            .unwrap_or_else(|| GENESIS.into());
        out.extend(anchored);
        Ok((self.mlflow.get_model_version(name, version).await?, tx))
    }

    // ---------------------------------------------------------------- promotion

    /// Anchors a stage transition (`anchor promotion <name>/<version>`): `from_stage` as the
    /// caller saw it (the poller tracks it; MLflow itself does not keep it), `to_stage` the
    /// version's current stage unless given.
    pub async fn anchor_promotion(
        &self,
        name: &str,
        version: &str,
        from_stage: &str,
        to_stage: Option<&str>,
    ) -> Result<Vec<Anchored>, AnchorError> {
        let mut out = Vec::new();
        let (mv, registration_tx) = self.registration_tx(name, version, &mut out).await?;
        let to = to_stage
            .map(str::to_owned)
            .unwrap_or_else(|| mv.current_stage.clone());
        let hash = sha256_hex(
            &jcs::canonicalize(&payload::promotion_payload(name, version, from_stage, &to))
                .map_err(PayloadError::from)?,
        );
        if mv.tag("ario.promotion_payload_hash") == Some(hash.as_str()) {
            if let Some(tx) = mv.tag("ario.promotion_tx") {
                out.push(Anchored {
                    event_type: "stage_transition".into(),
                    subject: format!("{name}/{version} {from_stage}→{to}"),
                    tx_id: tx.into(),
                    payload_hash: hash,
                    status: AnchorStatus::AlreadyAnchored,
                });
                return Ok(out);
            }
        }
        let run = if mv.run_id.is_empty() {
            None
        } else {
            Some(self.mlflow.get_run(&mv.run_id).await?)
        };
        let p = self.prepare_promotion(&mv, run.as_ref(), &registration_tx, from_stage, &to)?;
        self.publish(&p).await?;
        out.push(Self::anchored(&p, AnchorStatus::Anchored));
        Ok(out)
    }

    /// Builds and signs a stage transition chained to `registration_tx`.
    pub fn prepare_promotion(
        &self,
        mv: &ModelVersion,
        run: Option<&Run>,
        registration_tx: &str,
        from: &str,
        to: &str,
    ) -> Result<Prepared, AnchorError> {
        let (name, version) = (&mv.name, &mv.version);
        let payload = payload::promotion_payload(name, version, from, to);
        let subject = json!({"type": "mlflow_model_version", "name": name, "version": version});
        let ev = sign_event(
            "stage_transition",
            subject,
            registration_tx,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;
        let mut signed = event_witness(
            run,
            "promotions",
            &ev.event_id,
            &[
                ("payload.json", ArtifactContent::Payload),
                ("proof.json", ArtifactContent::Proof),
            ],
        );
        signed.push(Write::ModelVersionTag {
            name: name.clone(),
            version: version.clone(),
            key: "ario.promotion_payload_hash".into(),
            value: TagValue::Text(ev.payload_hash.clone()),
        });
        // Every promotion keeps its TX next to its witness (the tag holds only the latest).
        let mut anchored = event_witness(
            run,
            "promotions",
            &ev.event_id,
            &[("receipt.json", ArtifactContent::Receipt)],
        );
        anchored.push(Write::ModelVersionTag {
            name: name.clone(),
            version: version.clone(),
            key: "ario.promotion_tx".into(),
            value: TagValue::TxId,
        });
        Ok(Prepared::new(
            ev,
            "stage_transition",
            format!("{name}/{version} {from}→{to}"),
            signed,
            anchored,
        ))
    }

    /// Builds and signs an alias change (our addition): witness under the version's run at
    /// `ario/aliases/<event_id>/`, TX recorded as `ario.alias_tx.<alias>` on the version.
    pub fn prepare_alias(
        &self,
        mv: &ModelVersion,
        run: Option<&Run>,
        registration_tx: &str,
        alias: &str,
        action: payload::AliasAction,
        previous_version: Option<&str>,
    ) -> Result<Prepared, AnchorError> {
        let (name, version) = (&mv.name, &mv.version);
        let payload = payload::alias_payload(name, version, alias, action, previous_version);
        let subject =
            json!({"type": "mlflow_model_alias", "name": name, "alias": alias, "version": version});
        let ev = sign_event(
            "alias_changed",
            subject,
            registration_tx,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;
        let signed = event_witness(
            run,
            "aliases",
            &ev.event_id,
            &[
                ("payload.json", ArtifactContent::Payload),
                ("proof.json", ArtifactContent::Proof),
            ],
        );
        let mut anchored = event_witness(
            run,
            "aliases",
            &ev.event_id,
            &[("receipt.json", ArtifactContent::Receipt)],
        );
        anchored.push(Write::ModelVersionTag {
            name: name.clone(),
            version: version.clone(),
            key: format!("ario.alias_tx.{alias}"),
            value: TagValue::TxId,
        });
        Ok(Prepared::new(
            ev,
            "alias_changed",
            format!("{name}@{alias}→{version}"),
            signed,
            anchored,
        ))
    }

    // ---------------------------------------------------------------- prediction

    /// Anchors a prediction from an MLflow trace (`anchor trace <trace_id>`).
    pub async fn anchor_trace(&self, trace_id: &str) -> Result<Vec<Anchored>, AnchorError> {
        let info = self.mlflow.get_trace_info(trace_id).await?;
        if let Some(tx) = info
            .tags
            .get("ario.prediction_tx")
            .or_else(|| info.tags.get("ario.arweave_tx"))
        {
            let hash = info
                .tags
                .get("ario.payload_hash")
                .cloned()
                .unwrap_or_default();
            return Ok(vec![Anchored {
                event_type: "prediction".into(),
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
        info: &crate::mlflow::TraceInfo,
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
        let root = spans
            .iter()
            .find(|s| {
                s.get("parent_span_id")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            })
            .ok_or_else(|| {
                AnchorError::NotReady(format!("trace {trace_id} has no root span (pruned?)"))
            })?;
        let input = span_attribute(root, "mlflow.spanInputs").unwrap_or(Value::Null);
        let output = span_attribute(root, "mlflow.spanOutputs").unwrap_or(Value::Null);
        let latency_ms = span_latency_ms(root)
            .or_else(|| info.execution_ms())
            .unwrap_or(0.0);

        let unknown = || "unknown".to_string();
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
                        previous = match (v.tag("ario.registration_tx"), anchor_dependencies) {
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
        let payload = payload::prediction_payload(&facts)?;
        let subject = json!({"type": "mlflow_prediction", "decision_id": trace_id, "model_run_id": run_id, "trace_id": trace_id});
        let ev = sign_event(
            "prediction",
            subject,
            &previous,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;

        let mut signed = Vec::new();
        if run_id != "unknown" {
            let run = self.mlflow.get_run(&run_id).await?;
            for (file, content) in [
                ("payload.json", ArtifactContent::Payload),
                ("proof.json", ArtifactContent::Proof),
            ] {
                signed.push(Write::Artifact {
                    artifact_uri: run.info.artifact_uri.clone(),
                    path: format!("ario/predictions/{trace_id}/{file}"),
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
                "ario.payload_json",
                TagValue::Text(String::from_utf8_lossy(&ev.payload_bytes).into_owned()),
            ),
            tag("ario.decision_id", text(trace_id)),
            tag("ario.model_name", text(&facts.model_name)),
            tag("ario.model_version", text(&facts.model_version)),
            tag(
                "ario.input_hash",
                text(payload["input_hash"].as_str().unwrap_or_default()),
            ),
            tag(
                "ario.output_hash",
                text(payload["output_hash"].as_str().unwrap_or_default()),
            ),
            tag("ario.payload_hash", text(&ev.payload_hash)),
            tag("ario.proof_status", text("anchoring")),
        ]);
        let anchored = vec![
            tag("ario.prediction_tx", TagValue::TxId),
            tag("ario.arweave_url", TagValue::ArweaveUrl),
            tag("ario.proof_status", text("anchored")),
        ];
        Ok(Prepared::new(
            ev,
            "prediction",
            trace_id.into(),
            signed,
            anchored,
        ))
    }
}

/// The source run of a registration: the version's `run_id`, else the `runs:/` source; an
/// error when both are present and disagree (the plugin refuses too).
pub fn registration_source_run(mv: &ModelVersion) -> Result<Option<String>, AnchorError> {
    let (src_run, _) = payload::parse_runs_uri(&mv.source);
    let mv_run = Some(mv.run_id.clone()).filter(|r| !r.is_empty());
    if let (Some(a), Some(b)) = (&mv_run, &src_run) {
        if a != b {
            return Err(AnchorError::Inconsistent(format!(
                "{}/{}: run_id {a} disagrees with source {}",
                mv.name, mv.version, mv.source
            )));
        }
    }
    Ok(mv_run.or(src_run))
}

/// Step-2 writes of a training event.
pub fn training_anchored_writes(run: &Run, owner: &ChainOwner, payload_hash: &str) -> Vec<Write> {
    let head = TagValue::Text(payload_hash.to_string());
    vec![
        Write::Artifact {
            artifact_uri: run.info.artifact_uri.clone(),
            path: "ario/receipt.json".into(),
            content: ArtifactContent::Receipt,
        },
        Write::RunTags {
            run_id: run.info.run_id.clone(),
            tags: vec![
                ("ario.training_tx".into(), TagValue::TxId),
                ("ario.arweave_url".into(), TagValue::ArweaveUrl),
                (
                    "ario.verify_status".into(),
                    TagValue::Text("anchored".into()),
                ),
            ],
        },
        // The chain head moves only after a successful upload.
        match owner {
            ChainOwner::RegisteredModel(name) => Write::RegisteredModelTag {
                name: name.clone(),
                key: "ario.last_training_hash".into(),
                value: head,
            },
            ChainOwner::Experiment(id) => Write::ExperimentTag {
                experiment_id: id.clone(),
                key: "ario.last_training_hash".into(),
                value: head,
            },
        },
    ]
}

/// Artifacts of a promotion or alias change, kept per event under `ario/<dir>/<event_id>/` on
/// the version's run (none when the version has no run).
fn event_witness(
    run: Option<&Run>,
    dir: &str,
    event_id: &str,
    files: &[(&str, ArtifactContent)],
) -> Vec<Write> {
    let Some(r) = run else {
        return Vec::new();
    };
    files
        .iter()
        .map(|(file, content)| Write::Artifact {
            artifact_uri: r.info.artifact_uri.clone(),
            path: format!("ario/{dir}/{event_id}/{file}"),
            content: *content,
        })
        .collect()
}

/// Step-2 writes of a registration.
pub fn registration_anchored_writes(mv: &ModelVersion, run: Option<&Run>) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(r) = run {
        out.push(Write::Artifact {
            artifact_uri: r.info.artifact_uri.clone(),
            path: "ario/registration_receipt.json".into(),
            content: ArtifactContent::Receipt,
        });
    }
    for (k, v) in [
        ("ario.registration_tx", TagValue::TxId),
        ("ario.arweave_url", TagValue::ArweaveUrl),
        ("ario.verify_status", TagValue::Text("anchored".into())),
    ] {
        out.push(Write::ModelVersionTag {
            name: mv.name.clone(),
            version: mv.version.clone(),
            key: k.into(),
            value: v,
        });
    }
    out
}

/// Who owns a training chain head (and its `ario.last_training_hash` tag).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChainOwner {
    /// The registered model the run's model is registered to.
    RegisteredModel(String),
    /// The run's experiment (no registered model).
    Experiment(String),
}

impl ChainOwner {
    /// The chain key used by the durable service (`rm/<name>` or `exp/<id>`).
    pub fn chain_key(&self) -> String {
        match self {
            ChainOwner::RegisteredModel(n) => format!("rm/{n}"),
            ChainOwner::Experiment(e) => format!("exp/{e}"),
        }
    }
}

/// A span attribute as JSON: MLflow's v3 API returns OTLP `AnyValue`s; older servers return
/// JSON-encoded strings.
pub fn span_attribute(span: &Value, key: &str) -> Option<Value> {
    match span.get("attributes")? {
        Value::Array(attrs) => attrs
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| any_value(&a["value"])),
        Value::Object(map) => map.get(key).map(|v| match v {
            Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
            other => other.clone(),
        }),
        _ => None,
    }
}

/// OTLP `AnyValue` JSON → plain JSON.
pub fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("string_value") {
        return s.clone();
    }
    if let Some(b) = v.get("bool_value") {
        return b.clone();
    }
    if let Some(i) = v.get("int_value") {
        return match i {
            Value::String(s) => s
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| i.clone()),
            other => other.clone(),
        };
    }
    if let Some(d) = v.get("double_value") {
        return d.clone();
    }
    if let Some(arr) = v.get("array_value") {
        return Value::Array(
            arr["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(any_value)
                .collect(),
        );
    }
    if let Some(kv) = v.get("kvlist_value") {
        return Value::Object(
            kv["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["key"].as_str().unwrap_or_default().to_string(),
                        any_value(&e["value"]),
                    )
                })
                .collect(),
        );
    }
    Value::Null
}

fn span_latency_ms(span: &Value) -> Option<f64> {
    let num = |k: &str| {
        span.get(k).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let (start, end) = (num("start_time_unix_nano")?, num("end_time_unix_nano")?);
    Some(end.saturating_sub(start) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_any_values_decode_to_plain_json() {
        let span = json!({"attributes": [
            {"key": "mlflow.spanInputs", "value": {"kvlist_value": {"values": [
                {"key": "features", "value": {"array_value": {"values": [{"double_value": 0.1}, {"int_value": "7"}, {"string_value": "x"}, {"bool_value": true}]}}}
            ]}}},
        ], "start_time_unix_nano": 1_000_000, "end_time_unix_nano": 3_500_000});
        assert_eq!(
            span_attribute(&span, "mlflow.spanInputs"),
            Some(json!({"features": [0.1, 7, "x", true]}))
        );
        assert_eq!(span_attribute(&span, "missing"), None);
        assert_eq!(span_latency_ms(&span), Some(2.5));
        let legacy = json!({"attributes": {"mlflow.spanOutputs": "[1]"}});
        assert_eq!(
            span_attribute(&legacy, "mlflow.spanOutputs"),
            Some(json!([1]))
        );
    }
}
