//! Dataset events (spec/mlflow-profile.md §2.2, §2.0.6): each distinct (name, digest) dataset
//! input of an anchored run is anchored on its own, chained to GENESIS, and the run is tagged
//! with its TX. The same identity (without `context`) is an entry of the training payload.

use serde_json::{json, Value};

use crate::proof::{jcs, sha256_hex};

/// Envelope `event_type`.
pub const EVENT_TYPE: &str = "dataset";
/// Prefix of the run tag naming a dataset's TX: `ario.dataset_anchor_tx.<name>`.
pub const TX_TAG_PREFIX: &str = "ario.dataset_anchor_tx.";

/// A dataset as MLflow stores it (`source` and `schema` are JSON text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetFacts {
    /// Dataset name.
    pub name: String,
    /// MLflow's digest of the data.
    pub digest: String,
    /// `local`, `http`, `delta_table`, …
    pub source_type: String,
    /// The source as JSON text.
    pub source: String,
    /// The schema as JSON text, when logged.
    pub schema: Option<String>,
}

/// The run tag that names this dataset's TX.
pub fn tx_tag(name: &str) -> String {
    format!("{TX_TAG_PREFIX}{name}")
}

/// `schema_hash` (§2.0.6): SHA-256 of the JCS of the parsed schema, else of the raw text, else `""`.
pub fn schema_hash(schema: Option<&str>) -> String {
    match schema.filter(|s| !s.is_empty()) {
        None => String::new(),
        Some(text) => match jcs::parse(text.as_bytes()).and_then(|v| jcs::canonicalize(&v)) {
            Ok(canonical) => sha256_hex(&canonical),
            Err(_) => sha256_hex(text.as_bytes()),
        },
    }
}

/// The standalone dataset payload (§2.2): the dataset identity without `context`.
pub fn payload(ds: &DatasetFacts) -> Value {
    json!({
        "event_type": EVENT_TYPE, "name": ds.name, "source": ds.source, "source_type": ds.source_type,
        "digest": ds.digest, "schema_hash": schema_hash(ds.schema.as_deref()),
    })
}

/// The envelope subject.
pub fn subject(ds: &DatasetFacts) -> Value {
    json!({"type": "mlflow_dataset", "name": ds.name, "digest": ds.digest})
}
