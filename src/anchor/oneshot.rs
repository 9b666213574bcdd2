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

use super::event::{envelope_item, sign_event, EventError, SignedEvent, GENESIS};
use super::payload::{self, PayloadError, PredictionFacts, TrainingFacts};
use crate::arweave::turbo::TurboError;
use crate::arweave::{DataItem, Receipt, TurboClient, UploadOutcome, Wallet};
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

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

impl Anchorer {
    fn arweave_url(&self, tx: &str) -> String {
        format!("https://{}/{tx}", self.gateway_host)
    }

    /// Uploads a data item; the TX id is the locally computed id either way.
    async fn upload(&self, item: &DataItem) -> Result<(String, Option<Receipt>), AnchorError> {
        let outcome = self.turbo.upload(&item.to_bytes()).await?;
        let receipt = match outcome {
            UploadOutcome::Accepted(r) => Some(r),
            UploadOutcome::AlreadyInFlight(_) => None,
        };
        Ok((item.id(), receipt))
    }

    /// Re-uploads a stored envelope (signed earlier, never uploaded) after checking it against
    /// its witness bytes.
    async fn resume(
        &self,
        proof: &[u8],
        payload_bytes: &[u8],
    ) -> Result<(String, Option<Receipt>, String), AnchorError> {
        let envelope = jcs::parse(proof)
            .map_err(|e| AnchorError::Inconsistent(format!("stored proof is not JSON: {e}")))?;
        let verdict = verify_envelope(&envelope, Some(payload_bytes));
        if !verdict.overall {
            return Err(AnchorError::Inconsistent(format!(
                "stored proof does not verify against its witness ({}); refusing to upload it",
                verdict.reason.unwrap_or_default()
            )));
        }
        let item = envelope_item(&envelope, &self.wallet.signer)?;
        let (tx, receipt) = self.upload(&item).await?;
        Ok((tx, receipt, verdict.stored_payload_hash.unwrap_or_default()))
    }

    // ---------------------------------------------------------------- training

    /// Anchors a finished run's training event (`anchor run <run_id>`).
    pub async fn anchor_run(
        &self,
        run_id: &str,
        artifact_path: Option<&str>,
    ) -> Result<Anchored, AnchorError> {
        let run = self.mlflow.get_run(run_id).await?;
        let done = |tx: &str, hash: &str, status| Anchored {
            event_type: "training_complete".into(),
            subject: run_id.into(),
            tx_id: tx.into(),
            payload_hash: hash.into(),
            status,
        };
        if let Some(tx) = run.tag("ario.training_tx") {
            return Ok(done(
                tx,
                run.tag("ario.payload_hash").unwrap_or(""),
                AnchorStatus::AlreadyAnchored,
            ));
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
            let (tx, receipt, hash) = self.resume(&proof, &payload_bytes).await?;
            self.finish_training(&run, &tx, receipt.as_ref(), &hash)
                .await?;
            return Ok(done(&tx, &hash, AnchorStatus::Resumed));
        }

        let (payload, checksums) = self.training_payload(&run, artifact_path).await?;
        let (previous, _) = self.training_chain_head(&run).await?;
        let subject = json!({"type": "mlflow_run", "run_id": run_id});
        let ev = sign_event(
            "training_complete",
            subject,
            &previous,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;

        // Step 1: the pending proof is visible in MLflow before anything leaves the machine.
        self.mlflow
            .upload_run_artifact(&run, "ario/payload.json", ev.payload_bytes.clone())
            .await?;
        self.mlflow
            .upload_run_artifact(&run, "ario/proof.json", pretty(&ev.envelope))
            .await?;
        let mut tags = vec![
            ("ario.public_key".to_string(), self.key.public_key_hex()),
            ("ario.verify_status".to_string(), "signed".to_string()),
            ("ario.payload_hash".to_string(), ev.payload_hash.clone()),
        ];
        if let Some(hash) = payload::artifact_hash(&checksums) {
            tags.push(("ario.artifact_hash".into(), hash));
        }
        tags.extend(wallet_tags(&self.wallet));
        self.mlflow.set_run_tags(run_id, &tags).await?;

        // Step 2: upload, then record.
        let (tx, receipt) = self.upload(&ev.item).await?;
        self.finish_training(&run, &tx, receipt.as_ref(), &ev.payload_hash)
            .await?;
        Ok(done(&tx, &ev.payload_hash, AnchorStatus::Anchored))
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

    async fn finish_training(
        &self,
        run: &Run,
        tx: &str,
        receipt: Option<&Receipt>,
        payload_hash: &str,
    ) -> Result<(), AnchorError> {
        if let Some(r) = receipt {
            self.mlflow
                .upload_run_artifact(
                    run,
                    "ario/receipt.json",
                    pretty(&serde_json::to_value(r).unwrap_or_default()),
                )
                .await?;
        }
        let tags = vec![
            ("ario.training_tx".to_string(), tx.to_string()),
            ("ario.arweave_url".to_string(), self.arweave_url(tx)),
            ("ario.verify_status".to_string(), "anchored".to_string()),
        ];
        self.mlflow.set_run_tags(&run.info.run_id, &tags).await?;
        // The chain head moves only after a successful upload.
        match self.training_chain_head(run).await?.1 {
            ChainOwner::RegisteredModel(name) => {
                self.mlflow
                    .set_registered_model_tag(&name, "ario.last_training_hash", payload_hash)
                    .await?
            }
            ChainOwner::Experiment(id) => {
                self.mlflow
                    .set_experiment_tag(&id, "ario.last_training_hash", payload_hash)
                    .await?
            }
        }
        Ok(())
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
    async fn training_chain_head(&self, run: &Run) -> Result<(String, ChainOwner), AnchorError> {
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
        // Experiment tags come with runs/get? No: read them through the experiment.
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
            let tag = format!("ario.dataset_anchor_tx.{}", ds.name);
            let payload = payload::dataset_payload(ds);
            if let Some(tx) = run.tag(&tag) {
                let hash = sha256_hex(&jcs::canonicalize(&payload).map_err(PayloadError::from)?);
                out.push(Anchored {
                    event_type: "dataset".into(),
                    subject: ds.name.clone(),
                    tx_id: tx.into(),
                    payload_hash: hash,
                    status: AnchorStatus::AlreadyAnchored,
                });
                continue;
            }
            let subject = json!({"type": "mlflow_dataset", "name": ds.name, "digest": ds.digest});
            let ev = sign_event(
                "dataset",
                subject,
                GENESIS,
                &payload,
                &self.key,
                &self.wallet.signer,
            )?;
            let (tx, _) = self.upload(&ev.item).await?;
            self.mlflow
                .set_run_tags(run_id, &[(tag, tx.clone())])
                .await?;
            out.push(Anchored {
                event_type: "dataset".into(),
                subject: ds.name.clone(),
                tx_id: tx,
                payload_hash: ev.payload_hash,
                status: AnchorStatus::Anchored,
            });
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
        let (src_run, src_path) = payload::parse_runs_uri(&mv.source);
        let mv_run = Some(mv.run_id.clone()).filter(|r| !r.is_empty());
        if let (Some(a), Some(b)) = (&mv_run, &src_run) {
            if a != b {
                return Err(AnchorError::Inconsistent(format!(
                    "{subject_text}: run_id {a} disagrees with source {}",
                    mv.source
                )));
            }
        }
        let source_run_id = mv_run.or(src_run);
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
            let (tx, receipt, hash) = self.resume(&proof, &payload_bytes).await?;
            if hash != proof_hash {
                return Err(AnchorError::Inconsistent(format!("{subject_text}: stored registration proof is for payload {hash}, tag says {proof_hash}")));
            }
            self.finish_registration(&mv, r, &tx, receipt.as_ref())
                .await?;
            out.push(Anchored {
                event_type: "model_registered".into(),
                subject: subject_text,
                tx_id: tx,
                payload_hash: hash,
                status: AnchorStatus::Resumed,
            });
            return Ok(out);
        }

        let (artifact_verified, expected_hash, previous) = match &run {
            Some(r) => {
                let expected = r.tag("ario.artifact_hash").map(str::to_owned);
                let path = src_path.clone().unwrap_or_else(|| "model".into());
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
            source_run_id.as_deref(),
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

        if let Some(r) = &run {
            self.mlflow
                .upload_run_artifact(
                    r,
                    "ario/registration_payload.json",
                    ev.payload_bytes.clone(),
                )
                .await?;
            self.mlflow
                .upload_run_artifact(r, "ario/registration_proof.json", pretty(&ev.envelope))
                .await?;
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
        for (k, v) in &tags {
            self.mlflow
                .set_model_version_tag(name, version, k, v)
                .await?;
        }
        let (tx, receipt) = self.upload(&ev.item).await?;
        match &run {
            Some(r) => {
                self.finish_registration(&mv, r, &tx, receipt.as_ref())
                    .await?
            }
            None => self.finish_registration_tags(&mv, &tx).await?,
        }
        out.push(Anchored {
            event_type: "model_registered".into(),
            subject: subject_text,
            tx_id: tx,
            payload_hash: ev.payload_hash,
            status: AnchorStatus::Anchored,
        });
        Ok(out)
    }

    async fn finish_registration(
        &self,
        mv: &ModelVersion,
        run: &Run,
        tx: &str,
        receipt: Option<&Receipt>,
    ) -> Result<(), AnchorError> {
        if let Some(r) = receipt {
            self.mlflow
                .upload_run_artifact(
                    run,
                    "ario/registration_receipt.json",
                    pretty(&serde_json::to_value(r).unwrap_or_default()),
                )
                .await?;
        }
        self.finish_registration_tags(mv, tx).await
    }

    async fn finish_registration_tags(
        &self,
        mv: &ModelVersion,
        tx: &str,
    ) -> Result<(), AnchorError> {
        for (k, v) in [
            ("ario.registration_tx", tx.to_string()),
            ("ario.arweave_url", self.arweave_url(tx)),
            ("ario.verify_status", "anchored".to_string()),
        ] {
            self.mlflow
                .set_model_version_tag(&mv.name, &mv.version, k, &v)
                .await?;
        }
        Ok(())
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
        let payload = payload::promotion_payload(name, version, from_stage, &to);
        let hash = sha256_hex(&jcs::canonicalize(&payload).map_err(PayloadError::from)?);
        let subject_text = format!("{name}/{version} {from_stage}→{to}");
        if mv.tag("ario.promotion_payload_hash") == Some(hash.as_str()) {
            if let Some(tx) = mv.tag("ario.promotion_tx") {
                out.push(Anchored {
                    event_type: "stage_transition".into(),
                    subject: subject_text,
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
        let subject = json!({"type": "mlflow_model_version", "name": name, "version": version});
        let ev = sign_event(
            "stage_transition",
            subject,
            &registration_tx,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;
        if let Some(r) = &run {
            let dir = format!("ario/promotions/{}", ev.event_id);
            self.mlflow
                .upload_run_artifact(r, &format!("{dir}/payload.json"), ev.payload_bytes.clone())
                .await?;
            self.mlflow
                .upload_run_artifact(r, &format!("{dir}/proof.json"), pretty(&ev.envelope))
                .await?;
        }
        self.mlflow
            .set_model_version_tag(
                name,
                version,
                "ario.promotion_payload_hash",
                &ev.payload_hash,
            )
            .await?;
        let (tx, _) = self.upload(&ev.item).await?;
        self.mlflow
            .set_model_version_tag(name, version, "ario.promotion_tx", &tx)
            .await?;
        out.push(Anchored {
            event_type: "stage_transition".into(),
            subject: subject_text,
            tx_id: tx,
            payload_hash: ev.payload_hash,
            status: AnchorStatus::Anchored,
        });
        Ok(out)
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

        let mut out = Vec::new();
        let (mut model_name, mut model_version, mut run_id, mut model_uri) = (
            "unknown".to_string(),
            "unknown".to_string(),
            "unknown".to_string(),
            "unknown".to_string(),
        );
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
                        previous = self.registration_tx(&v.name, &v.version, &mut out).await?.1;
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
        let ev: SignedEvent = sign_event(
            "prediction",
            subject,
            &previous,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;

        if run_id != "unknown" {
            let run = self.mlflow.get_run(&run_id).await?;
            let dir = format!("ario/predictions/{trace_id}");
            self.mlflow
                .upload_run_artifact(
                    &run,
                    &format!("{dir}/payload.json"),
                    ev.payload_bytes.clone(),
                )
                .await?;
            self.mlflow
                .upload_run_artifact(&run, &format!("{dir}/proof.json"), pretty(&ev.envelope))
                .await?;
        }
        let payload_text = String::from_utf8_lossy(&ev.payload_bytes).into_owned();
        let tags = [
            ("ario.payload_json", payload_text),
            ("ario.decision_id", trace_id.to_string()),
            ("ario.model_name", facts.model_name.clone()),
            ("ario.model_version", facts.model_version.clone()),
            (
                "ario.input_hash",
                payload["input_hash"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
            (
                "ario.output_hash",
                payload["output_hash"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
            ("ario.payload_hash", ev.payload_hash.clone()),
            ("ario.proof_status", "anchoring".to_string()),
        ];
        for (k, v) in &tags {
            self.mlflow.set_trace_tag(trace_id, k, v).await?;
        }
        let (tx, _) = self.upload(&ev.item).await?;
        for (k, v) in [
            ("ario.prediction_tx", tx.clone()),
            ("ario.arweave_url", self.arweave_url(&tx)),
            ("ario.proof_status", "anchored".to_string()),
        ] {
            self.mlflow.set_trace_tag(trace_id, k, &v).await?;
        }
        out.push(Anchored {
            event_type: "prediction".into(),
            subject: trace_id.into(),
            tx_id: tx,
            payload_hash: ev.payload_hash,
            status: AnchorStatus::Anchored,
        });
        Ok(out)
    }
}

/// Who owns a training chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ChainOwner {
    RegisteredModel(String),
    Experiment(String),
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
