//! Stage transitions: a version moved between stages → its promotion payload → signed onto the
//! version's registration TX (a dependency). `from_stage` is what the source saw: MLflow keeps
//! no stage history, so the poller tracks it and CDC reads it from the `before` image.
//!
//! A transition already proven is recognised from the version's promotion witnesses
//! (`ario/promotions/<event_id>/…` on its run, written by us and by the plugin's
//! `ArioMlflowClient`), so a promotion the plugin anchored, or one anchored before the store
//! was lost, is never anchored twice.

use serde_json::Value;

use super::resolve::{plugin_present, Context, Resolution, SignPlan, Skip, SkipKind, Wait};
use super::sign::sign_event;
use super::{per_event_witness, AnchorError, Anchored, Anchorer};
use crate::event::ChangeEvent;
use crate::mlflow::{ModelVersion, Run};
use crate::profile::{promotion, witness};
use crate::store::prepared::{ArtifactContent, Prepared, TagValue, Write};

/// A proof signed up to this long before the version's `last_updated_timestamp` still counts as
/// proving that change (clock skew between the signer and MLflow).
const SIGNED_BEFORE_TOLERANCE_MS: i64 = 60_000;

impl Anchorer {
    /// Anchors a stage transition (`anchor promotion <name>/<version>`): `from_stage` as the
    /// caller saw it, `to_stage` the version's current stage unless given.
    pub async fn anchor_promotion(
        &self,
        name: &str,
        version: &str,
        from_stage: &str,
        to_stage: Option<&str>,
    ) -> Result<Vec<Anchored>, AnchorError> {
        let mv = self.mlflow.get_model_version(name, version).await?;
        let to = to_stage
            .map(str::to_owned)
            .unwrap_or_else(|| mv.current_stage.clone());
        self.anchor_event(&ChangeEvent::StageChanged {
            name: name.into(),
            version: version.into(),
            from: from_stage.into(),
            to,
            last_updated_ms: mv.last_updated_timestamp.unwrap_or(0),
        })
        .await
    }

    /// A stage change: waits for the version's registration; skipped when a proof of the same
    /// transition is on record in the version's witnesses; left to the plugin for the grace
    /// period when its run was started with the plugin; else signed.
    pub async fn resolve_promotion(
        &self,
        name: &str,
        version: &str,
        from: &str,
        to: &str,
        last_updated_ms: i64,
        ctx: &Context<'_>,
    ) -> Result<Resolution, AnchorError> {
        let (mv, run, reg) = match self.registered_version(name, version, 0, ctx).await? {
            Ok(parts) => parts,
            Err(r) => return Ok(r),
        };
        if let Some((tx, hash)) = self
            .promotion_on_record(&mv, run.as_ref(), from, to, last_updated_ms)
            .await?
        {
            return Ok(Skip::anchored(
                SkipKind::AlreadyAnchored,
                format!("{from} → {to} is already proven ({tx})"),
                promotion::EVENT_TYPE,
                format!("{}/{} {from}→{to}", mv.name, mv.version),
                &tx,
                &hash,
            ));
        }
        if let Some(r) = &run {
            let age = ctx.now_ms as i64 - last_updated_ms;
            let grace = ctx.limits.plugin_grace.as_millis() as i64;
            if plugin_present(r) && age < grace && !ctx.oneshot {
                return Ok(Wait::on(format!(
                    "{}/{} {from} → {to}: its run was started with the ar-io-mlflow plugin, which may be anchoring it (grace {} s left)",
                    mv.name,
                    mv.version,
                    (grace - age) / 1000 + 1
                )));
            }
        }
        Ok(SignPlan::signed(self.prepare_promotion(
            &mv,
            run.as_ref(),
            &reg,
            from,
            to,
        )?))
    }

    /// A promotion proof of `from → to` among the version's witnesses (ours or the plugin's:
    /// `to` compared without case, as the plugin records the caller's spelling), signed no
    /// earlier than the change; a `None →` change (also the first sight of a version already in
    /// a stage) is proven by the version's latest promotion proof when it reached that stage.
    /// Returns its TX (from its receipt or the version's `ario.promotion_tx`) and payload hash. Read only when the version carries a
    /// promotion tag, so versions never promoted with a proof cost nothing.
    pub async fn promotion_on_record(
        &self,
        mv: &ModelVersion,
        run: Option<&Run>,
        from: &str,
        to: &str,
        last_updated_ms: i64,
    ) -> Result<Option<(String, String)>, AnchorError> {
        let (Some(run), Some(_)) = (run, mv.tag(promotion::PAYLOAD_HASH_TAG)) else {
            return Ok(None);
        };
        for w in self
            .per_event_witnesses(run, promotion::WITNESS_DIR)
            .await?
        {
            let p = &w.payload;
            let same_version = p["model_version"].as_str() == Some(mv.version.as_str());
            let reaches = p["to_stage"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(to));
            // A first sight (`None →`, the history before it unknown) is proven by the version's
            // latest promotion proof when it reached this stage; any other change by a proof of
            // exactly it, signed no earlier than the change.
            let (same_change, in_time) = if from == "None" {
                (
                    reaches,
                    mv.tag(promotion::PAYLOAD_HASH_TAG) == Some(w.payload_hash.as_str())
                        || (p["from_stage"].as_str() == Some("None")
                            && w.signed_at_ms.is_some_and(|at| {
                                at >= last_updated_ms - SIGNED_BEFORE_TOLERANCE_MS
                            })),
                )
            } else {
                (
                    reaches && p["from_stage"].as_str() == Some(from),
                    w.signed_at_ms
                        .is_some_and(|at| at >= last_updated_ms - SIGNED_BEFORE_TOLERANCE_MS),
                )
            };
            if same_version && same_change && in_time {
                let tx =
                    w.tx.clone()
                        .or_else(|| {
                            (mv.tag(promotion::PAYLOAD_HASH_TAG) == Some(w.payload_hash.as_str()))
                                .then(|| mv.tag(promotion::TX_TAG).map(str::to_owned))
                                .flatten()
                        })
                        .unwrap_or_default();
                return Ok(Some((tx, w.payload_hash)));
            }
        }
        Ok(None)
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
            self.mlflow.workspace(),
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

/// One per-event witness as found on a run: its payload (hashing as stored), the signing time
/// and TX when its proof and receipt say.
#[derive(Debug, Clone)]
pub struct EventWitness {
    /// The event id (the directory name).
    pub event_id: String,
    /// The parsed payload.
    pub payload: Value,
    /// SHA-256 of the payload bytes.
    pub payload_hash: String,
    /// The proof's `signed_at`, in ms.
    pub signed_at_ms: Option<i64>,
    /// The receipt's id.
    pub tx: Option<String>,
}

impl Anchorer {
    /// Every `ario/<dir>/<event_id>/` witness on `run` with a readable payload.
    pub async fn per_event_witnesses(
        &self,
        run: &Run,
        dir: &str,
    ) -> Result<Vec<EventWitness>, AnchorError> {
        let root =
            crate::mlflow::artifacts::join_uri(&run.info.artifact_uri, &format!("ario/{dir}"));
        let mut out = Vec::new();
        for entry in self.mlflow.list_artifact_dir(&root).await? {
            if !entry.is_dir {
                continue;
            }
            let id = entry
                .path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(&entry.path)
                .to_string();
            let read = |file: &str| witness::per_event_path(dir, &id, file);
            let bytes = match self
                .mlflow
                .download_run_artifact(run, &read(witness::PAYLOAD_FILE))
                .await
            {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(payload) = crate::proof::jcs::parse(&bytes) else {
                continue;
            };
            let json = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).ok();
            let proof = match self
                .mlflow
                .download_run_artifact(run, &read(witness::PROOF_FILE))
                .await
            {
                Ok(b) => json(b),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            let receipt = match self
                .mlflow
                .download_run_artifact(run, &read(witness::RECEIPT_FILE))
                .await
            {
                Ok(b) => json(b),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            out.push(EventWitness {
                payload_hash: crate::proof::sha256_hex(&bytes),
                payload,
                signed_at_ms: proof
                    .as_ref()
                    .and_then(|p| p["signed_at"].as_str())
                    .and_then(rfc3339_ms),
                tx: receipt.and_then(|r| r["id"].as_str().map(str::to_owned)),
                event_id: id,
            });
        }
        Ok(out)
    }
}

/// An RFC 3339 time as ms since the epoch.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    crate::profile::envelope::rfc3339_to_ms(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_times_of_both_producers_parse() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.500000+00:00"), Some(1500));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:02+00:00"), Some(2000));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:02.25Z"), Some(2250));
        assert_eq!(rfc3339_ms("yesterday"), None);
    }
}
