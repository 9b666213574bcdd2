//! Alias changes — our addition to the profile (`event_type` `alias_changed`): an alias set,
//! moved or removed, chained to the version's registration TX, witnessed per event under
//! `ario/aliases/<event_id>/` on the version's run and recorded as `ario.alias_tx.<alias>`.

use serde_json::{json, Value};

/// Envelope `event_type`.
pub const EVENT_TYPE: &str = "alias_changed";
/// The per-event witness directory under `ario/`.
pub const WITNESS_DIR: &str = "aliases";
/// Prefix of the model-version tag naming an alias change's TX: `ario.alias_tx.<alias>`.
pub const TX_TAG_PREFIX: &str = "ario.alias_tx.";

/// Whether an alias was set (or moved) to a version, or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasAction {
    /// Set or moved onto `model_version`.
    Set,
    /// Removed (`model_version` is the version it pointed at).
    Removed,
}

/// The model-version tag naming this alias's latest change.
pub fn tx_tag(alias: &str) -> String {
    format!("{TX_TAG_PREFIX}{alias}")
}

/// The alias-change payload.
pub fn payload(
    model_name: &str,
    model_version: &str,
    alias: &str,
    action: AliasAction,
    previous_version: Option<&str>,
) -> Value {
    json!({
        "event_type": EVENT_TYPE, "model_name": model_name, "model_version": model_version, "alias": alias,
        "action": match action { AliasAction::Set => "set", AliasAction::Removed => "removed" },
        "previous_version": previous_version,
    })
}

/// The envelope subject.
pub fn subject(name: &str, alias: &str, version: &str) -> Value {
    json!({"type": "mlflow_model_alias", "name": name, "alias": alias, "version": version})
}
