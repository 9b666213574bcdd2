//! Merkle-batched prediction checkpoints (our addition; opt-in `--predictions batched`).
//!
//! Per served model version, a batch of prediction payloads (the same `ario.mlflow/v1`
//! prediction payloads a per-trace proof commits to) becomes one RFC 9162 tree (§8.1): leaf =
//! the canonical payload bytes, so `leaf_hash = SHA-256(0x00 ‖ JCS(payload))`. The tree's root is
//! committed in an `ario.events/v1` checkpoint record (§8.2) whose skeleton envelope is the one
//! upload of the batch:
//!
//! * record: `event_type: "checkpoint"`, `subject: {type: "producer", producer_id}`,
//!   `context.chain_key = "mlflow-predictions:<name>/<version>"`, `event: {leaf_count,
//!   merkle_root, window}`; `previous_hash` = the previous checkpoint record's hash of the
//!   version, `GENESIS` for the first (as §8.2 says); the links to Arweave TXs — the version's
//!   registration TX and the previous checkpoint's TX (the registration TX for the first) — are
//!   committed in `metadata`;
//! * the batch document [`BATCH_SCHEMA`] (`ario/checkpoints/<tx>.json` on the version's source
//!   run) holds the envelope, the record bytes and every leaf: trace id, index, the canonical
//!   payload (the trace's witness), its hash, the leaf hash and the audit path;
//! * each trace gets one tag, [`TX_TAG`] = the checkpoint TX, and the version
//!   [`VERSION_TX_TAG`] = its newest checkpoint.
//!
//! One prediction is then provable alone: payload → leaf → audit path → signed root →
//! checkpoint TX on a gateway.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::GENESIS;
use crate::proof::merkle::{self, TreeHash};
use crate::proof::{jcs, sha256_hex};

/// The kernel family the checkpoint envelope belongs to.
pub const SPEC_VERSION: &str = "ario.events/v1";
/// `event_type` of the checkpoint record.
pub const EVENT_TYPE: &str = "checkpoint";
/// `subject.producer_id` of our checkpoints.
pub const PRODUCER_ID: &str = "ario-mlflow-worker";
/// The envelope's `environment` (required by the `ario.events/v1` profile).
pub const ENVIRONMENT: &str = "production";
/// Trace tag: the TX of the checkpoint the trace's prediction is a leaf of.
pub const TX_TAG: &str = "ario.checkpoint_tx";
/// Model-version tag: the TX of the version's newest checkpoint.
pub const VERSION_TX_TAG: &str = "ario.last_checkpoint_tx";
/// Directory of batch documents under `ario/` on the version's source run.
pub const DIR: &str = "checkpoints";
/// `schema` of the batch document.
pub const BATCH_SCHEMA: &str = "ario.mlflow.checkpoint/v1";
/// What a leaf is, as committed in the record's metadata.
pub const LEAF_RULE: &str = "RFC9162 leaf = JCS(ario.mlflow/v1 prediction payload)";

/// The chain key of a version's checkpoints.
pub fn chain_key(name: &str, version: &str) -> String {
    format!("mlflow-predictions:{name}/{version}")
}

/// Where a checkpoint's batch document lives below the run's artifact root.
pub fn batch_path(tx_id: &str) -> String {
    format!("ario/{DIR}/{tx_id}.json")
}

/// The version a checkpoint chain is about, and what it links to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointLinks {
    /// Registered model name.
    pub model_name: String,
    /// Version.
    pub model_version: String,
    /// The version's source run (where the batch document goes).
    pub model_run_id: String,
    /// The version's registration TX.
    pub registration_tx: String,
    /// The previous checkpoint record's hash, or GENESIS.
    pub previous_hash: String,
    /// The previous checkpoint's TX, or the registration TX for the first.
    pub previous_tx: String,
}

/// The checkpoint record (§8.2) over `leaf_hashes`, for the window `[start, end]` (RFC 3339
/// `…Z` milliseconds).
pub fn record(links: &CheckpointLinks, leaf_hashes: &[TreeHash], start: &str, end: &str) -> Value {
    json!({
        "spec_version": SPEC_VERSION,
        "payload_version": 1,
        "event_type": EVENT_TYPE,
        "subject": {"type": "producer", "producer_id": PRODUCER_ID},
        "previous_hash": links.previous_hash,
        "context": {"chain_key": chain_key(&links.model_name, &links.model_version)},
        "event": {
            "leaf_count": leaf_hashes.len(),
            "merkle_root": hex::encode(merkle::root(leaf_hashes)),
            "window": {"start": start, "end": end},
        },
        "extras": {},
        "metadata": {
            "leaf": LEAF_RULE,
            "model_name": links.model_name,
            "model_version": links.model_version,
            "model_run_id": links.model_run_id,
            "registration_tx": links.registration_tx,
            "previous_tx": links.previous_tx,
        },
    })
}

/// The unsigned skeleton envelope of a record (§8.2): the record stays off chain, committed by
/// `payload_hash`.
pub fn unsigned_envelope(payload_hash: &str, event_id: &str, signed_at: &str) -> Value {
    json!({
        "spec_version": SPEC_VERSION,
        "event_id": event_id,
        "signed_at": signed_at,
        "environment": ENVIRONMENT,
        "payload_hash": payload_hash,
    })
}

/// One leaf of a batch document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchLeaf {
    /// The trace the prediction is.
    pub trace_id: String,
    /// Index in the tree.
    pub leaf_index: u64,
    /// The canonical prediction payload (its witness), as text.
    pub payload: String,
    /// SHA-256 of the payload bytes.
    pub payload_hash: String,
    /// RFC 9162 leaf hash (hex).
    pub leaf_hash: String,
    /// Audit path, bottom up (hex).
    pub audit_path: Vec<String>,
}

/// The batch document of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchDocument {
    /// [`BATCH_SCHEMA`].
    pub schema: String,
    /// The checkpoint's TX (the data item id).
    pub checkpoint_tx: String,
    /// The signed skeleton envelope.
    pub envelope: Value,
    /// Hex of the record's JCS bytes (hashes to the envelope's `payload_hash`).
    pub record_bytes: String,
    /// Every leaf, in index order.
    pub leaves: Vec<BatchLeaf>,
}

/// Builds the batch document's leaves: hashes and audit paths over `payloads` (canonical bytes).
pub fn batch_leaves(trace_ids: &[String], payloads: &[Vec<u8>]) -> (Vec<TreeHash>, Vec<BatchLeaf>) {
    let hashes: Vec<TreeHash> = payloads.iter().map(|p| merkle::leaf_hash(p)).collect();
    let paths = merkle::audit_paths(&hashes);
    let leaves = trace_ids
        .iter()
        .zip(payloads)
        .zip(hashes.iter().zip(paths))
        .enumerate()
        .map(|(i, ((trace_id, payload), (hash, path)))| BatchLeaf {
            trace_id: trace_id.clone(),
            leaf_index: i as u64,
            payload: String::from_utf8_lossy(payload).into_owned(),
            payload_hash: sha256_hex(payload),
            leaf_hash: hex::encode(hash),
            audit_path: path.iter().map(hex::encode).collect(),
        })
        .collect();
    (hashes, leaves)
}

/// Why one leaf does not prove its prediction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InclusionError {
    /// The record bytes do not hash to the signed `payload_hash`.
    #[error("the batch's record does not hash to the signed payload_hash ({computed} ≠ {signed})")]
    RecordHash {
        /// SHA-256 of the record bytes.
        computed: String,
        /// The envelope's `payload_hash`.
        signed: String,
    },
    /// The record is not a checkpoint record.
    #[error("the batch's record is not a checkpoint record: {0}")]
    Record(String),
    /// The trace is not a leaf of the batch.
    #[error("trace {0} is not a leaf of this checkpoint")]
    NotALeaf(String),
    /// The leaf's payload does not hash to its leaf hash.
    #[error("leaf {index}: the payload does not hash to the leaf hash")]
    LeafHash {
        /// Leaf index.
        index: u64,
    },
    /// The audit path does not lead to the signed root.
    #[error("leaf {index}: the audit path does not lead to the signed merkle_root")]
    Path {
        /// Leaf index.
        index: u64,
    },
}

/// What an included leaf proves.
#[derive(Debug, Clone, PartialEq)]
pub struct Included {
    /// The record, parsed.
    pub record: Value,
    /// The leaf.
    pub leaf: BatchLeaf,
    /// The tree size.
    pub leaf_count: u64,
}

/// Checks `trace_id`'s leaf of `doc` against the signed `payload_hash`: record bytes → hash,
/// payload → leaf hash, audit path → the record's `merkle_root`.
pub fn check_inclusion(
    doc: &BatchDocument,
    signed_payload_hash: &str,
    trace_id: &str,
) -> Result<Included, InclusionError> {
    let bytes =
        hex::decode(&doc.record_bytes).map_err(|e| InclusionError::Record(e.to_string()))?;
    let computed = sha256_hex(&bytes);
    if !computed.eq_ignore_ascii_case(signed_payload_hash) {
        return Err(InclusionError::RecordHash {
            computed,
            signed: signed_payload_hash.to_string(),
        });
    }
    let record = jcs::parse(&bytes).map_err(|e| InclusionError::Record(e.to_string()))?;
    let root = record["event"]["merkle_root"]
        .as_str()
        .and_then(|r| hex::decode(r).ok())
        .and_then(|r| TreeHash::try_from(r.as_slice()).ok())
        .ok_or_else(|| InclusionError::Record("no 32-byte event.merkle_root".into()))?;
    let leaf_count = record["event"]["leaf_count"]
        .as_u64()
        .ok_or_else(|| InclusionError::Record("no integer event.leaf_count".into()))?;
    let leaf = doc
        .leaves
        .iter()
        .find(|l| l.trace_id == trace_id)
        .ok_or_else(|| InclusionError::NotALeaf(trace_id.to_string()))?;
    let index = leaf.leaf_index;
    let hash = merkle::leaf_hash(leaf.payload.as_bytes());
    if hex::encode(hash) != leaf.leaf_hash.to_ascii_lowercase() {
        return Err(InclusionError::LeafHash { index });
    }
    let path: Option<Vec<TreeHash>> = leaf
        .audit_path
        .iter()
        .map(|p| {
            hex::decode(p)
                .ok()
                .and_then(|b| TreeHash::try_from(b.as_slice()).ok())
        })
        .collect();
    let ok = path.is_some_and(|p| merkle::verify_inclusion(&hash, index, leaf_count, &p, &root));
    if !ok {
        return Err(InclusionError::Path { index });
    }
    Ok(Included {
        record,
        leaf: leaf.clone(),
        leaf_count,
    })
}

/// The first link of a version's checkpoint chain.
pub fn first_links(
    model_name: &str,
    model_version: &str,
    model_run_id: &str,
    registration_tx: &str,
) -> CheckpointLinks {
    CheckpointLinks {
        model_name: model_name.into(),
        model_version: model_version.into(),
        model_run_id: model_run_id.into(),
        registration_tx: registration_tx.into(),
        previous_hash: GENESIS.into(),
        previous_tx: registration_tx.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_of_a_batch_proves_inclusion_and_a_changed_payload_does_not() {
        let ids: Vec<String> = (0..7).map(|i| format!("tr-{i}")).collect();
        let payloads: Vec<Vec<u8>> = (0..7)
            .map(|i| format!("{{\"i\":{i}}}").into_bytes())
            .collect();
        let (hashes, leaves) = batch_leaves(&ids, &payloads);
        let links = first_links("m", "1", "r", "REG");
        let rec = record(
            &links,
            &hashes,
            "2026-12-01T00:00:00.000Z",
            "2026-12-01T00:00:30.000Z",
        );
        let bytes = jcs::canonicalize(&rec).unwrap();
        let mut doc = BatchDocument {
            schema: BATCH_SCHEMA.into(),
            checkpoint_tx: "tx".into(),
            envelope: Value::Null,
            record_bytes: hex::encode(&bytes),
            leaves,
        };
        let signed = sha256_hex(&bytes);
        for id in &ids {
            let inc = check_inclusion(&doc, &signed, id).unwrap();
            assert_eq!(inc.leaf_count, 7);
        }
        assert_eq!(rec["previous_hash"], GENESIS);
        assert_eq!(rec["metadata"]["previous_tx"], "REG");
        assert!(matches!(
            check_inclusion(&doc, "00", "tr-1"),
            Err(InclusionError::RecordHash { .. })
        ));
        assert!(matches!(
            check_inclusion(&doc, &signed, "tr-x"),
            Err(InclusionError::NotALeaf(_))
        ));
        doc.leaves[3].payload = "{\"i\":33}".into();
        assert_eq!(
            check_inclusion(&doc, &signed, "tr-3"),
            Err(InclusionError::LeafHash { index: 3 })
        );
        doc.leaves[3].payload = "{\"i\":3}".into();
        doc.leaves[3].audit_path.swap(0, 1);
        assert_eq!(
            check_inclusion(&doc, &signed, "tr-3"),
            Err(InclusionError::Path { index: 3 })
        );
    }
}
