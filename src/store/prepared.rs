//! A prepared event and the MLflow writes that publish it, as data — the record the store keeps
//! for a signed job (the anchorer builds it: `anchor::publish`).
//!
//! Preparing an event fixes everything that must never change once signed: the payload bytes,
//! the signed envelope, the data item bytes (hence the TX id), and the exact MLflow writes of
//! both write-back steps. A [`Prepared`] is serializable, so the durable service keeps it in sled
//! and, after a crash, publishes *the same bytes* — never re-signing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
