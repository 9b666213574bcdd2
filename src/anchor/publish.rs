//! Publishing a [`Prepared`] event: three idempotent phases — [`Publisher::write_signed`]
//! (witness artifacts, pending tags), [`Publisher::upload`] (Turbo),
//! [`Publisher::write_anchored`] (TX tags, receipt, chain head). The event itself is data the store
//! keeps ([`crate::store::prepared`]).

use futures::{StreamExt, TryStreamExt};

use super::sign::SignedEvent;
use crate::arweave::{Receipt, TurboClient, UploadOutcome};
use crate::mlflow::artifacts::join_uri;
use crate::mlflow::{MlflowClient, MlflowError};
use crate::store::prepared::{ArtifactContent, Prepared, TagValue, Write};

/// Trace-tag writes of one event in flight at once.
const TRACE_TAG_CONCURRENCY: usize = 8;

/// One shared-witness claim at a time in this process (check, then write).
static SHARED_CLAIMS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Prepared {
    /// A prepared event from a signed one and its writes.
    pub fn new(
        ev: SignedEvent,
        event_type: &str,
        subject: String,
        signed_writes: Vec<Write>,
        anchored_writes: Vec<Write>,
    ) -> Self {
        Prepared {
            event_type: event_type.to_string(),
            subject,
            payload_hash: ev.payload_hash,
            payload_bytes: ev.payload_bytes,
            tx_id: ev.item.id(),
            item: ev.item.to_bytes(),
            envelope: ev.envelope,
            signed_writes,
            anchored_writes,
        }
    }
}

/// Applies a [`Prepared`] event's phases.
#[derive(Debug, Clone)]
pub struct Publisher<'a> {
    /// MLflow client.
    pub mlflow: &'a MlflowClient,
    /// Turbo client.
    pub turbo: &'a TurboClient,
    /// Host used in `ario.arweave_url`.
    pub gateway_host: &'a str,
}

impl Publisher<'_> {
    fn value(&self, v: &TagValue, tx: &str) -> String {
        match v {
            TagValue::Text(s) => s.clone(),
            TagValue::TxId => tx.to_string(),
            TagValue::ArweaveUrl => format!("https://{}/{tx}", self.gateway_host),
        }
    }

    async fn apply(
        &self,
        p: &Prepared,
        writes: &[Write],
        receipt: Option<&Receipt>,
    ) -> Result<(), MlflowError> {
        let mut i = 0;
        while i < writes.len() {
            // A run of artifacts and trace tags (a prediction's witness and its payload tag; a
            // checkpoint's tag on every trace it covers) goes out in parallel: the writes are
            // independent, each is idempotent, and the phase is done only when all are.
            let run = writes[i..]
                .iter()
                .take_while(|w| matches!(w, Write::TraceTag { .. } | Write::Artifact { .. }))
                .count();
            if run > 1 {
                futures::stream::iter(&writes[i..i + run])
                    .map(|w| self.apply_one(p, w, receipt))
                    .buffer_unordered(TRACE_TAG_CONCURRENCY)
                    .try_collect::<Vec<()>>()
                    .await?;
                i += run;
                continue;
            }
            self.apply_one(p, &writes[i], receipt).await?;
            i += 1;
        }
        Ok(())
    }

    /// The bytes of an artifact write (`None`: a receipt Turbo never issued).
    fn bytes(
        p: &Prepared,
        content: &ArtifactContent,
        receipt: Option<&Receipt>,
    ) -> Option<Vec<u8>> {
        Some(match content {
            ArtifactContent::Document(text) => text.clone().into_bytes(),
            ArtifactContent::Payload => p.payload_bytes.clone(),
            ArtifactContent::Proof => serde_json::to_vec_pretty(&p.envelope).unwrap_or_default(),
            ArtifactContent::Receipt => serde_json::to_vec_pretty(receipt?).unwrap_or_default(),
        })
    }

    async fn apply_one(
        &self,
        p: &Prepared,
        w: &Write,
        receipt: Option<&Receipt>,
    ) -> Result<(), MlflowError> {
        {
            match w {
                Write::Artifact {
                    artifact_uri,
                    path,
                    content,
                } => {
                    let Some(bytes) = Self::bytes(p, content, receipt) else {
                        return Ok(());
                    };
                    self.mlflow
                        .upload_artifact(&join_uri(artifact_uri, path), bytes)
                        .await?;
                }
                Write::SharedArtifact {
                    artifact_uri,
                    path,
                    content,
                    claim,
                } => {
                    let Some(bytes) = Self::bytes(p, content, receipt) else {
                        return Ok(());
                    };
                    let _one = SHARED_CLAIMS.lock().await;
                    let ours = match self
                        .mlflow
                        .download_artifact(&join_uri(artifact_uri, claim))
                        .await
                    {
                        Ok(held) => held == p.payload_bytes,
                        // Unclaimed: only the claim itself takes it.
                        Err(e) if e.is_not_found() => path == claim,
                        Err(e) => return Err(e),
                    };
                    if ours {
                        self.mlflow
                            .upload_artifact(&join_uri(artifact_uri, path), bytes)
                            .await?;
                    }
                }
                Write::RunTags { run_id, tags } => {
                    let tags: Vec<(String, String)> = tags
                        .iter()
                        .map(|(k, v)| (k.clone(), self.value(v, &p.tx_id)))
                        .collect();
                    self.mlflow.set_run_tags(run_id, &tags).await?;
                }
                Write::ModelVersionTag {
                    name,
                    version,
                    key,
                    value,
                } => {
                    self.mlflow
                        .set_model_version_tag(name, version, key, &self.value(value, &p.tx_id))
                        .await?
                }
                Write::RegisteredModelTag { name, key, value } => {
                    self.mlflow
                        .set_registered_model_tag(name, key, &self.value(value, &p.tx_id))
                        .await?
                }
                Write::ExperimentTag {
                    experiment_id,
                    key,
                    value,
                } => {
                    self.mlflow
                        .set_experiment_tag(experiment_id, key, &self.value(value, &p.tx_id))
                        .await?
                }
                Write::TraceTag {
                    trace_id,
                    key,
                    value,
                } => {
                    self.mlflow
                        .set_trace_tag(trace_id, key, &self.value(value, &p.tx_id))
                        .await?
                }
            }
        }
        Ok(())
    }

    /// Step 1: witness artifacts and pending tags (idempotent).
    pub async fn write_signed(&self, p: &Prepared) -> Result<(), MlflowError> {
        self.apply(p, &p.signed_writes, None).await
    }

    /// Uploads the stored item bytes; `None` receipt when Turbo answered 202.
    pub async fn upload(
        &self,
        p: &Prepared,
    ) -> Result<Option<Receipt>, crate::arweave::TurboError> {
        Ok(match self.turbo.upload(&p.item).await? {
            UploadOutcome::Accepted(r) => Some(r),
            UploadOutcome::AlreadyInFlight(_) => None,
        })
    }

    /// Step 2: TX tags, receipt, chain head (idempotent).
    pub async fn write_anchored(
        &self,
        p: &Prepared,
        receipt: Option<&Receipt>,
    ) -> Result<(), MlflowError> {
        self.apply(p, &p.anchored_writes, receipt).await
    }
}
