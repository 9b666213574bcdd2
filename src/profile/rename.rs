//! Renames of a registered model — our addition to the profile (`event_type` `model_renamed`).
//!
//! MLflow's `rename_registered_model` moves every version, tag and alias to the new name, but
//! proofs anchored before it name the old one in their subject and payload, and Arweave is
//! immutable. The rename itself is therefore anchored: a signed proof that `previous_name`
//! became `model_name`, carrying every name the model had before (`former_names`, oldest
//! first), chained to the model's previous rename TX (or GENESIS). A verifier asked about
//! `NEW/V` accepts a proof about `OLD/V` only through a verifying rename proof of `NEW` whose
//! `former_names` holds `OLD` ("anchored as OLD/V").
//!
//! Witness: a registered model has no artifact root, so the canonical payload is kept in the
//! registered-model tag [`payload_tag`] (one per rename, keyed by the envelope's event id), and
//! [`TX_TAG`] names the newest rename.

use serde_json::{json, Value};

/// Envelope `event_type`.
pub const EVENT_TYPE: &str = "model_renamed";
/// `subject.type`.
pub const SUBJECT_TYPE: &str = "mlflow_registered_model";
/// Registered-model tag: the newest rename's TX.
pub const TX_TAG: &str = "ario.rename_tx";
/// Prefix of the registered-model tag holding one rename's canonical payload.
pub const PAYLOAD_TAG_PREFIX: &str = "ario.rename_payload.";

/// The registered-model tag holding the payload of the rename whose envelope is `event_id`.
pub fn payload_tag(event_id: &str) -> String {
    format!("{PAYLOAD_TAG_PREFIX}{event_id}")
}

/// The rename payload: `previous_name` became `model_name`; `former_names` lists every earlier
/// name, oldest first, `previous_name` last.
pub fn payload(model_name: &str, previous_name: &str, earlier: &[String]) -> Value {
    let mut former: Vec<String> = earlier
        .iter()
        .filter(|n| n.as_str() != model_name && n.as_str() != previous_name)
        .cloned()
        .collect();
    former.push(previous_name.to_string());
    json!({
        "event_type": EVENT_TYPE, "model_name": model_name, "previous_name": previous_name,
        "former_names": former,
    })
}

/// The envelope subject.
pub fn subject(model_name: &str) -> Value {
    json!({"type": SUBJECT_TYPE, "name": model_name})
}

/// The names a rename payload says the model had before (`former_names`, else
/// `previous_name`).
pub fn former_names(payload: &Value) -> Vec<String> {
    let mut out: Vec<String> = payload["former_names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if let Some(p) = payload["previous_name"].as_str() {
        if !out.iter().any(|n| n == p) {
            out.push(p.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn former_names_accumulate_oldest_first() {
        let first = payload("b", "a", &[]);
        assert_eq!(former_names(&first), ["a"]);
        let second = payload("c", "b", &former_names(&first));
        assert_eq!(second["former_names"], json!(["a", "b"]));
        // Renamed back to an earlier name: that name is current, not former.
        let back = payload("a", "c", &former_names(&second));
        assert_eq!(former_names(&back), ["b", "c"]);
        assert_eq!(subject("c")["type"], SUBJECT_TYPE);
        assert_eq!(payload_tag("e1"), "ario.rename_payload.e1");
    }
}
