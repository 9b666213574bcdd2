//! A prepared event and the MLflow writes that publish it, as data.
//!
//! Preparing an event fixes everything that must never change once signed: the payload bytes,
//! the signed envelope, the data item bytes (hence the TX id), and the exact MLflow writes of
//! both write-back steps. A [`Prepared`] is serializable, so the durable service keeps it in sled
//! and, after a crash, publishes *the same bytes* — never re-signing. Publishing has three
//! idempotent phases: [`Publisher::write_signed`] (witness artifacts, pending tags),
//! [`Publisher::upload`] (Turbo), [`Publisher::write_anchored`] (TX tags, receipt, chain head).

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sign::SignedEvent;
use crate::arweave::{Receipt, TurboClient, UploadOutcome};
use crate::mlflow::artifacts::join_uri;
use crate::mlflow::{MlflowClient, MlflowError};

/// Trace-tag writes of one event in flight at once.
const TRACE_TAG_CONCURRENCY: usize = 8;

/// One shared-witness claim at a time in this process (check, then write).
static SHARED_CLAIMS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A tag value, resolved at write time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagValue {
    /// A fixed string.
    Text(String),
    /// The event's TX id.
    TxId,
    /// `https://<gateway host>/<tx id>`.
    ArweaveUrl,
}

/// What an artifact write contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArtifactContent {
    /// A document fixed when the event was signed (a checkpoint's batch document).
    Document(String),
    /// The canonical payload bytes.
    Payload,
    /// The envelope, pretty-printed.
    Proof,
    /// The Turbo receipt (skipped when Turbo answered 202 and issued none).
    Receipt,
}

/// One MLflow write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// An artifact under a run's (or model's) artifact root.
    Artifact {
        /// The root URI (`mlflow-artifacts:/…`, `s3://…`, `file:///…`, …).
        artifact_uri: String,
        /// Path below the root.
        path: String,
        /// Content.
        content: ArtifactContent,
    },
    /// Run tags (one `log-batch`).
    RunTags {
        /// Run id.
        run_id: String,
        /// Tags.
        tags: Vec<(String, TagValue)>,
    },
    /// A model-version tag.
    ModelVersionTag {
        /// Registered model name.
        name: String,
        /// Version.
        version: String,
        /// Key.
        key: String,
        /// Value.
        value: TagValue,
    },
    /// A registered-model tag.
    RegisteredModelTag {
        /// Name.
        name: String,
        /// Key.
        key: String,
        /// Value.
        value: TagValue,
    },
    /// An experiment tag.
    ExperimentTag {
        /// Experiment id.
        experiment_id: String,
        /// Key.
        key: String,
        /// Value.
        value: TagValue,
    },
    /// An artifact at a path several events share (the plugin's one-per-run registration
    /// witness): written only while the file at `claim` is absent or holds this event's
    /// payload, so whoever claimed the path first (the plugin, or us) keeps it and nothing
    /// overwrites it.
    SharedArtifact {
        /// The root URI.
        artifact_uri: String,
        /// Path below the root.
        path: String,
        /// Content.
        content: ArtifactContent,
        /// The payload file whose content says who owns the shared witness.
        claim: String,
    },
    /// A trace tag.
    TraceTag {
        /// Trace id.
        trace_id: String,
        /// Key.
        key: String,
        /// Value.
        value: TagValue,
    },
}

impl Write {
    /// The registered model a write is about, if any.
    pub fn model_name(&self) -> Option<&str> {
        match self {
            Write::ModelVersionTag { name, .. } | Write::RegisteredModelTag { name, .. } => {
                Some(name)
            }
            _ => None,
        }
    }

    /// Whether this write moves a training chain's head tag (`ario.last_training_hash`).
    pub fn moves_chain_head(&self) -> bool {
        matches!(
            self,
            Write::RegisteredModelTag { key, .. } | Write::ExperimentTag { key, .. }
                if key == "ario.last_training_hash"
        )
    }
}

/// A signed event ready to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// Envelope `event_type`.
    pub event_type: String,
    /// Human-readable subject (run id, `name/version`, trace id, …).
    pub subject: String,
    /// SHA-256 of the payload.
    pub payload_hash: String,
    /// Canonical payload bytes.
    #[serde(with = "stored_bytes")]
    pub payload_bytes: Vec<u8>,
    /// Signed envelope.
    pub envelope: Value,
    /// ANS-104 data item bytes.
    #[serde(with = "stored_bytes")]
    pub item: Vec<u8>,
    /// Data item id (the TX id), known before upload.
    pub tx_id: String,
    /// Writes once signed (step 1).
    pub signed_writes: Vec<Write>,
    /// Writes once uploaded (step 2).
    pub anchored_writes: Vec<Write>,
}

impl Prepared {
    /// Whether a write of this event names registered model `name`.
    pub fn names_model(&self, name: &str) -> bool {
        self.signed_writes
            .iter()
            .chain(&self.anchored_writes)
            .any(|w| w.model_name() == Some(name))
    }

    /// Points the event's MLflow writes about registered model `from` at `to` (the model was
    /// renamed before they were made). The signed bytes are untouched.
    pub fn rename_model(&mut self, from: &str, to: &str) {
        for w in self
            .signed_writes
            .iter_mut()
            .chain(&mut self.anchored_writes)
        {
            match w {
                Write::ModelVersionTag { name, .. } | Write::RegisteredModelTag { name, .. }
                    if name == from =>
                {
                    *name = to.to_string()
                }
                _ => {}
            }
        }
    }

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

/// Bytes kept in the store (and the Kafka state topic) as standard base64 text — 1.33 bytes per
/// byte — rather than serde's default array of numbers (about 3.5); records written before read
/// either way.
mod stored_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Text(String),
            Numbers(Vec<u8>),
        }
        match Stored::deserialize(d)? {
            Stored::Text(t) => base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(serde::de::Error::custom),
            Stored::Numbers(n) => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_stored_as_base64_and_old_arrays_still_read() {
        let p = Prepared {
            event_type: "prediction".into(),
            subject: "t".into(),
            payload_hash: "h".into(),
            payload_bytes: vec![0, 1, 2, 255],
            envelope: serde_json::json!({}),
            item: vec![9; 600],
            tx_id: "x".into(),
            signed_writes: vec![],
            anchored_writes: vec![],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""payload_bytes":"AAEC/w==""#), "{text}");
        assert!(
            text.len() < 1000,
            "600 item bytes take {} bytes of JSON",
            text.len()
        );
        let old = text.replace(r#""AAEC/w==""#, "[0,1,2,255]");
        assert_eq!(serde_json::from_str::<Prepared>(&old).unwrap(), p);
    }

    #[test]
    fn prepared_events_round_trip_through_json() {
        let p = Prepared {
            event_type: "training_complete".into(),
            subject: "r".into(),
            payload_hash: "h".into(),
            payload_bytes: b"{}".to_vec(),
            envelope: serde_json::json!({"a": 1}),
            item: vec![1, 2, 3],
            tx_id: "t".into(),
            signed_writes: vec![Write::RunTags {
                run_id: "r".into(),
                tags: vec![("ario.payload_hash".into(), TagValue::Text("h".into()))],
            }],
            anchored_writes: vec![Write::TraceTag {
                trace_id: "tr".into(),
                key: "ario.prediction_tx".into(),
                value: TagValue::TxId,
            }],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Prepared>(&text).unwrap(), p);
    }
}
