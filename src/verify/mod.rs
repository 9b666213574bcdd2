//! Verification of anchored proofs against MLflow and any gateway (spec/mlflow-profile.md §5),
//! stricter than the plugin where §7 says it is lenient:
//!
//! * **proof found** — the envelope is read through the gateway list; a gateway whose bytes do
//!   not verify (bad signature, not JSON, not the data of the item whose id is the TX) is
//!   skipped and reported, the next one is tried;
//! * **data item** — where a gateway serves the signed item (`/dataitem/{id}`), its id must be
//!   the TX, its signature valid and its data the bytes served at `/raw/{id}`; elsewhere "not
//!   checked";
//! * **key binding** — with pinned keys (`--trusted-key`) any other signer fails; without, a key
//!   that differs from the entity's `ario.public_key` tag is reported;
//! * checks 1–4 of §5.1 (signature, anchored bytes, live MLflow refetch, ar.io Verify) with the
//!   verdict rules of §5.2.
//!
//! `signed_at` and `event_id` are never re-formatted or rejected for their format (§1.2).

mod anchored;
pub mod attestation;
pub mod audit;
mod binding;
pub mod chain;
pub mod checkpoint;
pub mod coverage;
pub mod error;
pub mod evidence;
mod gateway;
mod live;
pub mod offline;
pub mod report;
mod verdict;

use serde_json::Value;

use crate::arweave::GatewayReader;
use crate::mlflow::MlflowClient;
use crate::profile::tags;
use binding::subject_mismatch;
use gateway::Fetched;
use verdict::value_text;

pub use attestation::ArioVerifyClient;
pub use error::{CheckpointChainError, VerifyError};
pub use live::ChecksumMemo;
pub use verdict::{overall, signature_check, Check, Checks, Entity, ProofVerdict};

/// The verifier: MLflow, the gateway list, pinned keys, and the optional ar.io Verify client.
pub struct Verifier {
    /// MLflow (witnesses, live refetch, tags).
    pub mlflow: MlflowClient,
    /// Read gateways, in order.
    pub gateways: GatewayReader,
    /// Pinned signer keys (lowercase hex); empty = not pinned.
    pub trusted_keys: Vec<String>,
    /// A trusted key history's validity windows (`--trusted-keys-file`): a signer passes
    /// when it was valid at the envelope's `signed_at`.
    pub key_history: Option<std::sync::Arc<Vec<crate::profile::key_history::KeyWindow>>>,
    /// ar.io Verify, when configured and healthy.
    pub attestation: Option<ArioVerifyClient>,
    /// Attestation level needed to pass check 4.
    pub min_attestation_level: u64,
    /// Model checksums reused for a moment (the guard verifies a version's registration and
    /// its run's training proof one after the other: one re-hash serves both). `None`: every
    /// check hashes afresh.
    pub checksum_memo: Option<ChecksumMemo>,
    /// What `export` keeps of every proof verified (the data item, the payload bytes, the
    /// receipt); `None`: nothing is kept.
    pub evidence: Option<evidence::EvidenceLog>,
}

impl Verifier {
    /// The same verifier asking MLflow in `workspace` (proofs made in another workspace fail
    /// there): its gateways, pins and attestation, a memo of its own.
    pub fn in_workspace(&self, workspace: &str) -> Verifier {
        Verifier {
            mlflow: self.mlflow.in_workspace(workspace),
            gateways: self.gateways.clone(),
            trusted_keys: self.trusted_keys.clone(),
            key_history: self.key_history.clone(),
            attestation: self.attestation.clone(),
            min_attestation_level: self.min_attestation_level,
            checksum_memo: self.checksum_memo.as_ref().map(ChecksumMemo::fresh),
            evidence: self.evidence.clone(),
        }
    }

    /// Verifies the proof anchored as `tx_id`, expected to be about `entity`.
    pub async fn verify_tx(&self, tx_id: &str, entity: &Entity) -> ProofVerdict {
        let fetched = match self.fetch(tx_id).await {
            Ok(f) => f,
            Err(check) => return ProofVerdict::not_found(tx_id, check),
        };
        self.verify_fetched(tx_id, fetched, entity).await
    }

    async fn verify_fetched(&self, tx_id: &str, f: Fetched, entity: &Entity) -> ProofVerdict {
        let env = &f.envelope;
        let text = |k: &str| env.get(k).and_then(Value::as_str).map(str::to_owned);
        let event_type = text("event_type");
        let mut proof_found = f.proof_found;
        // A proof anchored before its model was renamed names the former name: it is about the
        // version asked for when a verifying rename proof of the model says so.
        let mut lookup_name = None;
        if let Some(why) = subject_mismatch(env, entity) {
            match self.renamed_subject(env, entity).await {
                Ok(Some((former, rename_tx))) => {
                    proof_found = proof_found
                        .with("anchored_as", former.clone())
                        .with("rename_tx", rename_tx);
                    proof_found.reason = format!(
                        "{} (anchored as {former}; renamed since, rename proof verified)",
                        proof_found.reason
                    );
                    if let Entity::ModelVersion(name, _) = entity {
                        lookup_name = Some(name.clone());
                    }
                }
                Ok(None) | Err(_) => {
                    let extra = match self.renamed_subject(env, entity).await {
                        Err(e) => format!("; {e}"),
                        _ => String::new(),
                    };
                    proof_found =
                        Check::fail(format!("proof is about another entity: {why}{extra}")).with(
                            "served_by",
                            proof_found
                                .detail
                                .get("served_by")
                                .cloned()
                                .unwrap_or(Value::Null),
                        );
                }
            }
        }
        let signature = signature_check(env);
        let (anchored_bytes, payload_bytes, superseded_by) = self
            .anchored_bytes(env, tx_id, lookup_name.as_deref())
            .await;
        if let (Some(log), Some(bytes)) = (&self.evidence, &payload_bytes) {
            log.payload(tx_id, bytes);
        }
        let source_of_truth = match (&payload_bytes, &superseded_by) {
            (Some(_), Some(newer)) => Check::skipped(format!(
                "superseded: the run was re-opened after this proof and its final state is proven by {newer}"
            ))
            .with("superseded_by", newer.clone()),
            (Some(bytes), None) => self.source_of_truth(event_type.as_deref(), bytes).await,
            (None, _) => Check::skipped("no_payload_to_compare"),
        };
        let ario_attestation = match &self.attestation {
            None => Check::skipped("ario_verify_not_enabled"),
            Some(client) => client.attest(tx_id, self.min_attestation_level).await,
        };
        let key_binding = self.key_binding(env, entity).await;
        let mut verdict = ProofVerdict {
            tx_id: tx_id.to_string(),
            event_type,
            subject: env.get("subject").cloned(),
            public_key: text("public_key"),
            previous_hash: text("previous_hash"),
            payload_hash: text("payload_hash"),
            signed_at: env.get("signed_at").map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            proof_found,
            data_item: f.data_item,
            key_binding,
            checks: Checks {
                signature,
                anchored_bytes,
                source_of_truth,
                ario_attestation,
            },
            overall_ok: false,
            superseded_by,
            envelope: Some(f.envelope.clone()),
        };
        verdict.overall_ok = overall(&verdict);
        verdict
    }

    /// `--write-back`: tags an entity as verified, only for a passing verdict with a passing
    /// attestation (the plugin writes "verified" for any answer, even level 0; we do not).
    pub async fn write_back(
        &self,
        entity: &Entity,
        v: &ProofVerdict,
    ) -> Result<Vec<String>, crate::mlflow::MlflowError> {
        let att = &v.checks.ario_attestation;
        if !v.overall_ok || att.ok != Some(true) {
            return Ok(Vec::new());
        }
        let mut tags: Vec<(String, String)> = vec![(tags::VERIFY_STATUS.into(), "verified".into())];
        for (key, field) in [
            ("ario.attestation_level", "attestation_level"),
            ("ario.report_url", "report_url"),
            ("ario.attested_by", "attested_by"),
            ("ario.attested_at", "attested_at"),
        ] {
            if let Some(value) = att.detail.get(field).and_then(value_text) {
                tags.push((key.into(), value));
            }
        }
        let written: Vec<String> = tags.iter().map(|(k, _)| k.clone()).collect();
        let result = match entity {
            Entity::Run(id) => self.mlflow.set_run_tags(id, &tags).await,
            Entity::ModelVersion(n, ver) => {
                for (k, value) in &tags {
                    self.mlflow.set_model_version_tag(n, ver, k, value).await?;
                }
                Ok(())
            }
            Entity::Trace(id) => {
                for (k, value) in &tags {
                    self.mlflow.set_trace_tag(id, k, value).await?;
                }
                Ok(())
            }
            Entity::Dataset(..) | Entity::Any => return Ok(Vec::new()),
        };
        result?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests;
