//! Signing one event: the envelope (spec/mlflow-profile.md §1.1, shaped by
//! [`crate::profile::envelope`]) signed with the envelope key, and the ANS-104 data item that
//! carries it (§4.1) signed with the wallet. The item carries no random anchor, so re-making it
//! from the same envelope gives the same id.

use serde_json::Value;

use crate::arweave::{DataItem, DataItemError, ItemSigner, Tag};
use crate::keys::EnvelopeKey;
use crate::profile::envelope::{self, EnvelopeFields};
use crate::proof::{jcs, sha256_hex, sign_envelope, SignError};

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

/// Signs `payload` as an `event_type` event about `subject`, chained to `previous_hash`: draws
/// the event id and the signing time (the only clock and randomness in a proof), then builds the
/// envelope and its data item as the profile says.
pub fn sign_event(
    event_type: &str,
    subject: Value,
    previous_hash: &str,
    payload: &Value,
    key: &EnvelopeKey,
    signer: &ItemSigner,
    workspace: Option<&str>,
) -> Result<SignedEvent, EventError> {
    let payload_bytes = jcs::canonicalize(payload)?;
    let payload_hash = sha256_hex(&payload_bytes);
    let event_id = uuid::Uuid::new_v4().to_string();
    let signed_at = envelope::python_isoformat(time::OffsetDateTime::now_utc());
    let unsigned = envelope::unsigned(EnvelopeFields {
        event_id: &event_id,
        event_type,
        subject,
        payload_hash: &payload_hash,
        previous_hash,
        signed_at: &signed_at,
    });
    let envelope = sign_envelope(&unsigned, key)?;
    let item = envelope_item(&envelope, signer, workspace)?;
    Ok(SignedEvent {
        envelope,
        payload_bytes,
        payload_hash,
        event_id,
        item,
    })
}

/// RFC 3339 UTC with milliseconds and `Z` (the `ario.events/v1` time format).
pub fn rfc3339_ms(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Signs a checkpoint record (`ario.events/v1`, spec §8.2) as a skeleton envelope committing
/// to the record's JCS bytes, and builds its data item.
pub fn sign_checkpoint(
    record: &Value,
    key: &EnvelopeKey,
    signer: &ItemSigner,
    workspace: Option<&str>,
) -> Result<SignedEvent, EventError> {
    let payload_bytes = jcs::canonicalize(record)?;
    let payload_hash = sha256_hex(&payload_bytes);
    let event_id = uuid::Uuid::new_v4().to_string();
    let signed_at = rfc3339_ms(time::OffsetDateTime::now_utc());
    let unsigned =
        crate::profile::checkpoint::unsigned_envelope(&payload_hash, &event_id, &signed_at);
    let envelope = sign_envelope(&unsigned, key)?;
    let data = jcs::canonicalize(&envelope)?;
    let workspace = workspace
        .filter(|w| *w != envelope::DEFAULT_WORKSPACE)
        .map(|w| (envelope::WORKSPACE_TAG, w.to_string()));
    let tags = [
        ("Content-Type", envelope::CONTENT_TYPE.to_string()),
        ("App-Name", crate::profile::APP_NAME.to_string()),
        ("App-Version", envelope::app_version()),
        (
            "Event-Type",
            crate::profile::checkpoint::EVENT_TYPE.to_string(),
        ),
        ("Event-Id", event_id.clone()),
    ]
    .into_iter()
    .chain(workspace)
    .map(|(name, value)| Tag::new(name, value))
    .collect();
    let item = DataItem::sign(signer, tags, data, None, None)?;
    Ok(SignedEvent {
        envelope,
        payload_bytes,
        payload_hash,
        event_id,
        item,
    })
}

/// The data item carrying a signed envelope (deterministic for Ed25519 signers).
pub fn envelope_item(
    envelope: &Value,
    signer: &ItemSigner,
    workspace: Option<&str>,
) -> Result<DataItem, EventError> {
    let data = jcs::canonicalize(envelope)?;
    let tags = envelope::item_tags(envelope, workspace)
        .into_iter()
        .map(|(name, value)| Tag::new(name, value))
        .collect();
    Ok(DataItem::sign(signer, tags, data, None, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySource;
    use crate::profile::{APP_NAME, GENESIS};
    use crate::proof::verify_envelope;
    use serde_json::json;

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
            None,
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
            envelope_item(&ev.envelope, &signer, None).unwrap(),
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
