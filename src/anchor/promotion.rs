//! Stage transitions: a version moved between stages → its promotion payload → signed onto the
//! version's registration TX (anchored first when missing). `from_stage` is what the caller saw:
//! MLflow keeps no stage history, so the poller tracks it.

use super::prepared::{ArtifactContent, Prepared, TagValue, Write};
use super::sign::sign_event;
use super::{per_event_witness, AnchorError, AnchorStatus, Anchored, Anchorer};
use crate::mlflow::{ModelVersion, Run};
use crate::profile::{promotion, witness, PayloadError};
use crate::proof::{jcs, sha256_hex};

impl Anchorer {
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
            &jcs::canonicalize(&promotion::payload(name, version, from_stage, &to))
                .map_err(PayloadError::from)?,
        );
        if mv.tag(promotion::PAYLOAD_HASH_TAG) == Some(hash.as_str()) {
            if let Some(tx) = mv.tag(promotion::TX_TAG) {
                out.push(Anchored {
                    event_type: promotion::EVENT_TYPE.into(),
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
        let payload = promotion::payload(name, version, from, to);
        let ev = sign_event(
            promotion::EVENT_TYPE,
            promotion::subject(name, version),
            registration_tx,
            &payload,
            &self.key,
            &self.wallet.signer,
        )?;
        let mut signed = per_event_witness(
            run,
            promotion::WITNESS_DIR,
            &ev.event_id,
            &[
                (witness::PAYLOAD_FILE, ArtifactContent::Payload),
                (witness::PROOF_FILE, ArtifactContent::Proof),
            ],
        );
        signed.push(Write::ModelVersionTag {
            name: name.clone(),
            version: version.clone(),
            key: promotion::PAYLOAD_HASH_TAG.into(),
            value: TagValue::Text(ev.payload_hash.clone()),
        });
        // Every promotion keeps its TX next to its witness (the tag holds only the latest).
        let mut anchored = per_event_witness(
            run,
            promotion::WITNESS_DIR,
            &ev.event_id,
            &[(witness::RECEIPT_FILE, ArtifactContent::Receipt)],
        );
        anchored.push(Write::ModelVersionTag {
            name: name.clone(),
            version: version.clone(),
            key: promotion::TX_TAG.into(),
            value: TagValue::TxId,
        });
        Ok(Prepared::new(
            ev,
            promotion::EVENT_TYPE,
            format!("{name}/{version} {from}→{to}"),
            signed,
            anchored,
        ))
    }
}
