//! Registration events: a new model version → its registration payload (does the registered
//! artifact still hash to what the training proof anchored?) → signed onto the source run's
//! training TX. The training proof comes first (anchored now by `anchor model` when missing),
//! so the chain links.

use super::prepared::{ArtifactContent, Prepared, TagValue, Write};
use super::sign::sign_event;
use super::{wallet_tags, AnchorError, AnchorStatus, Anchored, Anchorer};
use crate::mlflow::{ModelVersion, Run};
use crate::profile::registration::{self, RegistrationFacts};
use crate::profile::{tags, training, GENESIS};

impl Anchorer {
    /// Anchors a model version's registration (`anchor model <name>/<version>`). The source run's
    /// training proof comes first (anchored now if missing), so the chain links.
    pub async fn anchor_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Vec<Anchored>, AnchorError> {
        let mv = self.mlflow.get_model_version(name, version).await?;
        let subject_text = format!("{name}/{version}");
        if let Some(tx) = mv.tag(registration::TX_TAG) {
            let hash = mv.tag(tags::PAYLOAD_HASH).unwrap_or("").to_string();
            return Ok(vec![Anchored {
                event_type: registration::EVENT_TYPE.into(),
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
            if r.tag(training::TX_TAG).is_none() && r.info.status == "FINISHED" {
                out.push(self.anchor_run(run_id, None).await?);
            }
            run = Some(self.mlflow.get_run(run_id).await?);
        }
        if let (Some(r), Some(proof_hash)) = (&run, mv.tag(tags::PAYLOAD_HASH)) {
            // Signed earlier but never uploaded: resume it.
            let proof = self
                .mlflow
                .download_run_artifact(r, registration::PROOF_ARTIFACT)
                .await?;
            let payload_bytes = self
                .mlflow
                .download_run_artifact(r, registration::PAYLOAD_ARTIFACT)
                .await?;
            let p = self.restore(
                &proof,
                payload_bytes,
                registration::EVENT_TYPE,
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
        let (_, src_path) = registration::parse_runs_uri(&mv.source);
        let (artifact_verified, expected_hash, previous) = match run {
            Some(r) => {
                let expected = r.tag(tags::ARTIFACT_HASH).map(str::to_owned);
                let path = src_path.unwrap_or_else(|| "model".into());
                // A store that cannot be read makes the job wait or park: `artifact_verified`
                // is never `null` because the files could not be read.
                let checksums = self
                    .mlflow
                    .model_checksums(r, &path)
                    .await?
                    .unwrap_or_default();
                let verified = match (training::artifact_hash(&checksums), &expected) {
                    (Some(actual), Some(expected)) => Some(&actual == expected),
                    _ => None,
                };
                (
                    verified,
                    expected,
                    r.tag(training::TX_TAG).unwrap_or(GENESIS).to_string(),
                )
            }
            None => (None, None, GENESIS.to_string()),
        };
        let payload = registration::payload(&RegistrationFacts {
            model_name: name,
            model_version: version,
            source: &mv.source,
            source_run_id,
            artifact_verified,
            artifact_hash: expected_hash.as_deref(),
        });
        let ev = sign_event(
            registration::EVENT_TYPE,
            registration::subject(name, version),
            &previous,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;
        let mut signed = Vec::new();
        if let Some(r) = run {
            for (path, content) in [
                (registration::PAYLOAD_ARTIFACT, ArtifactContent::Payload),
                (registration::PROOF_ARTIFACT, ArtifactContent::Proof),
            ] {
                signed.push(Write::Artifact {
                    artifact_uri: r.info.artifact_uri.clone(),
                    path: path.into(),
                    content,
                });
            }
        }
        let mut version_tags = vec![
            (tags::VERIFY_STATUS, tags::STATUS_SIGNED.to_string()),
            (tags::PUBLIC_KEY, self.key.public_key_hex()),
            (tags::PAYLOAD_HASH, ev.payload_hash.clone()),
            (tags::WALLET_MODE, wallet_tags(&self.wallet)[0].1.clone()),
        ];
        if let Some(v) = artifact_verified {
            version_tags.push((registration::ARTIFACT_VERIFIED_TAG, v.to_string()));
        }
        signed.extend(
            version_tags
                .into_iter()
                .map(|(k, v)| Write::ModelVersionTag {
                    name: name.clone(),
                    version: version.clone(),
                    key: k.into(),
                    value: TagValue::Text(v),
                }),
        );
        let anchored = registration_anchored_writes(mv, run);
        Ok(Prepared::new(
            ev,
            registration::EVENT_TYPE,
            format!("{name}/{version}"),
            signed,
            anchored,
        ))
    }

    /// The version's `ario.registration_tx`, anchoring the registration first if needed.
    pub(super) async fn registration_tx(
        &self,
        name: &str,
        version: &str,
        out: &mut Vec<Anchored>,
    ) -> Result<(ModelVersion, String), AnchorError> {
        let mv = self.mlflow.get_model_version(name, version).await?;
        if let Some(tx) = mv.tag(registration::TX_TAG) {
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
}

/// The source run of a registration: the version's `run_id`, else the `runs:/` source; an
/// error when both are present and disagree (the plugin refuses too).
pub fn registration_source_run(mv: &ModelVersion) -> Result<Option<String>, AnchorError> {
    registration::source_run(&mv.name, &mv.version, &mv.run_id, &mv.source)
        .map_err(|e| AnchorError::Inconsistent(e.to_string()))
}

/// Step-2 writes of a registration.
pub fn registration_anchored_writes(mv: &ModelVersion, run: Option<&Run>) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(r) = run {
        out.push(Write::Artifact {
            artifact_uri: r.info.artifact_uri.clone(),
            path: registration::RECEIPT_ARTIFACT.into(),
            content: ArtifactContent::Receipt,
        });
    }
    for (k, v) in [
        (registration::TX_TAG, TagValue::TxId),
        (tags::ARWEAVE_URL, TagValue::ArweaveUrl),
        (
            tags::VERIFY_STATUS,
            TagValue::Text(tags::STATUS_ANCHORED.into()),
        ),
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
