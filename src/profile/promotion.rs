//! Stage transitions (spec/mlflow-profile.md §2.5), chained to the version's registration TX.
//! Every promotion keeps its witness per event (`ario/promotions/<event_id>/…` on the version's
//! run); the version's tags hold only the latest.

use serde_json::{json, Value};

/// Envelope `event_type`.
pub const EVENT_TYPE: &str = "stage_transition";
/// The per-event witness directory under `ario/`.
pub const WITNESS_DIR: &str = "promotions";
/// Model-version tag: the payload hash of the latest promotion.
pub const PAYLOAD_HASH_TAG: &str = "ario.promotion_payload_hash";
/// Model-version tag: the latest promotion's TX.
pub const TX_TAG: &str = "ario.promotion_tx";

/// The stage-transition payload (§2.5).
pub fn payload(model_name: &str, model_version: &str, from_stage: &str, to_stage: &str) -> Value {
    json!({
        "event_type": EVENT_TYPE, "model_name": model_name, "model_version": model_version,
        "from_stage": from_stage, "to_stage": to_stage,
    })
}

/// The envelope subject (the version's, as for its registration).
pub fn subject(name: &str, version: &str) -> Value {
    super::registration::subject(name, version)
}
