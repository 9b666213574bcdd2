//! From a payload to a signed envelope and its ANS-104 data item (spec/mlflow-profile.md §1.1,
//! §4.1). The envelope has exactly the plugin's nine fields; the data item's data is the JCS of
//! the full envelope, tagged `Content-Type`, `App-Name: ar-io-mlflow`, `App-Version:
//! ario-mlflow-worker/<version>`, `Event-Type`, `Event-Id`, `Chain-Prev` in that order. The item
//! carries no random anchor, so re-making it from the same envelope gives the same id.

use serde_json::{json, Value};

use crate::arweave::{DataItem, DataItemError, ItemSigner, Tag};
use crate::keys::EnvelopeKey;
use crate::proof::{jcs, sha256_hex, sign_envelope, SignError};

/// `App-Name` tag value (the plugin's, so indexers find both producers' proofs).
pub const APP_NAME: &str = "ar-io-mlflow";
/// The profile this project emits.
pub const SPEC_VERSION: &str = "ario.mlflow/v1";
/// `previous_hash` of a chain's first event.
pub const GENESIS: &str = "GENESIS";

/// `App-Version` tag value.
pub fn app_version() -> String {
    format!("ario-mlflow-worker/{}", env!("CARGO_PKG_VERSION"))
}

/// Why an event could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The payload or envelope cannot be canonicalized.
    #[error("cannot canonicalize: {0}")]
    Jcs(#[from] jcs::JcsError),
    /// Envelope signing failed.
    #[error("cannot sign the envelope: {0}")]
    Sign(#[from] SignError),
    /// Data item signing failed.
    #[error("cannot build the data item: {0}")]
    Item(#[from] DataItemError),
}

/// A signed event: everything that must be kept before anything leaves the machine.
#[derive(Debug, Clone)]
pub struct SignedEvent {
    /// The signed envelope.
    pub envelope: Value,
    /// The canonical payload bytes (the witness artifact).
    pub payload_bytes: Vec<u8>,
    /// SHA-256 hex of the payload bytes.
    pub payload_hash: String,
    /// The envelope's `event_id`.
    pub event_id: String,
    /// The data item to upload (its id is the TX id).
    pub item: DataItem,
}

/// `datetime.now(timezone.utc).isoformat()`: `+00:00`, microseconds omitted when zero.
pub fn python_isoformat(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let micros = at.microsecond();
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    if micros == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{micros:06}+00:00")
    }
}

/// Signs `payload` as an `event_type` event about `subject`, chained to `previous_hash`.
pub fn sign_event(
    event_type: &str,
    subject: Value,
    previous_hash: &str,
    payload: &Value,
    key: &EnvelopeKey,
    signer: &ItemSigner,
) -> Result<SignedEvent, EventError> {
    let payload_bytes = jcs::canonicalize(payload)?;
    let payload_hash = sha256_hex(&payload_bytes);
    let event_id = uuid::Uuid::new_v4().to_string();
    let unsigned = json!({
        "event_id": event_id,
        "event_type": event_type,
        "subject": subject,
        "payload_hash": payload_hash,
        "previous_hash": previous_hash,
        "signed_at": python_isoformat(time::OffsetDateTime::now_utc()),
        "spec_version": SPEC_VERSION,
    });
    let envelope = sign_envelope(&unsigned, key.signing_key())?;
    let item = envelope_item(&envelope, signer)?;
    Ok(SignedEvent {
        envelope,
        payload_bytes,
        payload_hash,
        event_id,
        item,
    })
}

/// The data item carrying a signed envelope (deterministic for Ed25519 signers).
pub fn envelope_item(envelope: &Value, signer: &ItemSigner) -> Result<DataItem, EventError> {
    let data = jcs::canonicalize(envelope)?;
    let field = |k: &str| {
        envelope
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let tags = vec![
        Tag::new("Content-Type", "application/json"),
        Tag::new("App-Name", APP_NAME),
        Tag::new("App-Version", app_version()),
        Tag::new("Event-Type", field("event_type")),
        Tag::new("Event-Id", field("event_id")),
        Tag::new("Chain-Prev", field("previous_hash")),
    ];
    // Empty values are not allowed in tags; an envelope without them would be malformed anyway.
    let tags: Vec<Tag> = tags.into_iter().filter(|t| !t.value.is_empty()).collect();
    Ok(DataItem::sign(signer, tags, data, None, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySource;
    use crate::proof::verify_envelope;

    #[test]
    fn isoformat_matches_python() {
        let t = time::macros::datetime!(2026-06-10 12:00:00.123456 UTC);
        assert_eq!(python_isoformat(t), "2026-06-10T12:00:00.123456+00:00");
        let t = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(python_isoformat(t), "2026-01-01T00:00:00+00:00");
        let t = time::macros::datetime!(2026-01-01 00:00:00.000001 UTC);
        assert_eq!(python_isoformat(t), "2026-01-01T00:00:00.000001+00:00");
    }

    #[test]
    fn signed_events_verify_and_their_items_are_deterministic() {
        let key = EnvelopeKey::from_seed(&[1; 32], KeySource::Env);
        let signer = ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[2; 32]));
        let payload = json!({"event_type": "training_complete", "run_id": "r"});
        let ev = sign_event(
            "training_complete",
            json!({"type": "mlflow_run", "run_id": "r"}),
            GENESIS,
            &payload,
            &key,
            &signer,
        )
        .unwrap();
        let env = ev.envelope.as_object().unwrap();
        let mut keys: Vec<&str> = env.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "event_id",
                "event_type",
                "payload_hash",
                "previous_hash",
                "public_key",
                "signature",
                "signed_at",
                "spec_version",
                "subject"
            ]
        );
        assert!(verify_envelope(&ev.envelope, Some(&ev.payload_bytes)).overall);
        assert_eq!(
            envelope_item(&ev.envelope, &signer).unwrap(),
            ev.item,
            "same envelope, same item bytes and id"
        );
        assert_eq!(ev.item.tag("App-Name").as_deref(), Some(APP_NAME));
        assert_eq!(ev.item.tag("Chain-Prev").as_deref(), Some(GENESIS));
        assert_eq!(ev.item.data, jcs::canonicalize(&ev.envelope).unwrap());
        assert_eq!(
            ev.item
                .tags
                .iter()
                .map(|t| t.name_str().into_owned())
                .collect::<Vec<_>>(),
            [
                "Content-Type",
                "App-Name",
                "App-Version",
                "Event-Type",
                "Event-Id",
                "Chain-Prev"
            ]
        );
    }
}
