//! Anchoring: MLflow facts → canonical payload → signed envelope → data item → Turbo → MLflow
//! write-back, in the two steps of docs/architecture.md §3. Step 1 (as soon as the event is signed) writes
//! the witness artifacts, `ario.payload_hash`, `ario.public_key` and `ario.verify_status=signed`;
//! step 2 (only after Turbo accepted the item) writes `ario.*_tx`, `ario.arweave_url`,
//! `verify_status=anchored`, the receipt, and moves the training chain head.
//!
//! What a proof *is* comes from [`crate::profile`]; this module reads the facts from MLflow and
//! drives the side effects:
//!
//! * [`resolve`] — what an event becomes (sign, seal, skip, wait, park), one code path per
//!   event type shared by the pipeline and the `anchor …` commands;
//! * one file per event type — [`training`], [`dataset`], [`registration`], [`promotion`],
//!   [`alias`], [`prediction`], [`rename`] — each reads that event's MLflow facts, recognises
//!   what is already anchored, and prepares the signed event (a [`Prepared`]);
//! * [`sign`] — the envelope and its ANS-104 data item, signed;
//! * [`publish`] — the [`Publisher`] that applies a signed event's MLflow writes and uploads it
//!   (the event itself, a [`Prepared`], is data the store keeps: [`crate::store::prepared`]);
//! * [`pipeline`] — the durable service's stages over the store, which uses the same preparers.
//!
//! Anything the Python plugin (or an earlier run of ours) already anchored is detected and left
//! alone. An event that was signed but never uploaded (Turbo unreachable, a crash) is *resumed*:
//! its stored envelope is uploaded as is, so it keeps its id and is never signed twice.

pub mod alias;
pub mod checkpoint;
pub mod dataset;
pub mod pipeline;
pub mod prediction;
pub mod promotion;
pub mod publish;
pub mod registration;
pub mod rename;
pub mod resolve;
pub mod sign;
pub mod training;

use serde_json::Value;

use crate::arweave::turbo::TurboError;
use crate::arweave::{TurboClient, Wallet};
use crate::keys::EnvelopeKey;
use crate::mlflow::{MlflowClient, MlflowError, Run};
use crate::profile::{tags, witness, PayloadError};
use crate::proof::{jcs, verify_envelope};
use crate::store::prepared::{ArtifactContent, Prepared, Write};
use publish::Publisher;
use sign::{envelope_item, EventError};

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
    /// What a per-trace prediction writes back (`--prediction-tags`).
    pub prediction_tags: prediction::PredictionTags,
    /// Traces read in bulk ahead of resolving them.
    pub traces: prediction::TraceCache,
    /// Served models by LoggedModel id.
    pub served_models: prediction::ServedModels,
}

/// The wallet's mode and type tags (`ario.wallet_mode`, `ario.wallet_type`), in that order.
fn wallet_tags(wallet: &Wallet) -> Vec<(String, String)> {
    let text = |v: Value| v.as_str().unwrap_or_default().to_string();
    vec![
        (
            tags::WALLET_MODE.into(),
            text(serde_json::to_value(wallet.mode).unwrap_or_default()),
        ),
        (
            tags::WALLET_TYPE.into(),
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
        let item = envelope_item(&envelope, &self.wallet.signer, self.mlflow.workspace())?;
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
}

/// Artifacts of an event kept per event under `ario/<dir>/<event_id>/` on the version's run
/// (promotions, aliases; none when the version has no run).
fn per_event_witness(
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
            path: witness::per_event_path(dir, event_id, file),
            content: content.clone(),
        })
        .collect()
}
