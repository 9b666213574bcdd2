//! The envelope of an `ario.mlflow/v1` proof and the data item that carries it
//! (spec/mlflow-profile.md §1.1, §4.1), as values.
//!
//! The envelope has exactly the plugin's nine fields: the seven built by [`unsigned`] plus the
//! `public_key` and `signature` the kernel's signer adds. The data item's data is the JCS of the
//! full envelope, tagged by [`item_tags`] in a fixed order. Signing (keys, wallets) is the
//! anchorer's; this module only says what is signed.

use serde_json::{json, Value};

/// `App-Name` tag value (the plugin's, so indexers find both producers' proofs).
pub const APP_NAME: &str = "ar-io-mlflow";
/// The profile this project emits.
pub const SPEC_VERSION: &str = "ario.mlflow/v1";
/// `previous_hash` of a chain's first event.
pub const GENESIS: &str = "GENESIS";
/// `Content-Type` of the envelope data item.
pub const CONTENT_TYPE: &str = "application/json";

/// `App-Version` tag value.
pub fn app_version() -> String {
    format!("ario-mlflow-worker/{}", env!("CARGO_PKG_VERSION"))
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

/// An RFC 3339 time (`+00:00` or `Z`, any fraction) as ms since the epoch (`signed_at`, trace
/// request times).
pub fn rfc3339_to_ms(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// What an envelope commits to, before it is signed.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeFields<'a> {
    /// A fresh UUID v4 (the anchorer draws it).
    pub event_id: &'a str,
    /// The event type (`training_complete`, …).
    pub event_type: &'a str,
    /// What the event is about (each event type's `subject`).
    pub subject: Value,
    /// SHA-256 hex of the canonical payload.
    pub payload_hash: &'a str,
    /// The chain link: a payload hash, a TX id or [`GENESIS`].
    pub previous_hash: &'a str,
    /// [`python_isoformat`] of the signing time.
    pub signed_at: &'a str,
}

/// The seven unsigned envelope fields; the signer adds `public_key` and `signature`.
pub fn unsigned(fields: EnvelopeFields<'_>) -> Value {
    json!({
        "event_id": fields.event_id,
        "event_type": fields.event_type,
        "subject": fields.subject,
        "payload_hash": fields.payload_hash,
        "previous_hash": fields.previous_hash,
        "signed_at": fields.signed_at,
        "spec_version": SPEC_VERSION,
    })
}

/// The data-item tag naming a proof's MLflow workspace (none: the default workspace).
pub const WORKSPACE_TAG: &str = "MLflow-Workspace";

/// The workspace of a server without workspaces, and of every proof made before them.
pub const DEFAULT_WORKSPACE: &str = "default";

/// The data item's tags, in order: `Content-Type`, `App-Name`, `App-Version`, `Event-Type`,
/// `Event-Id`, `Chain-Prev`. Tags whose value would be empty are left out (ANS-104 allows no
/// empty value; an envelope without them is malformed anyway).
pub fn item_tags(envelope: &Value, workspace: Option<&str>) -> Vec<(&'static str, String)> {
    let field = |k: &str| {
        envelope
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let tags = vec![
        ("Content-Type", CONTENT_TYPE.to_string()),
        ("App-Name", APP_NAME.to_string()),
        ("App-Version", app_version()),
        ("Event-Type", field("event_type")),
        ("Event-Id", field("event_id")),
        ("Chain-Prev", field("previous_hash")),
        // The MLflow workspace the entity lives in, committed by the data item's signature
        // and not by the envelope, so the plugin's verifier reads the same envelope; absent
        // for the default workspace (whose items are byte-for-byte those before workspaces).
        (
            WORKSPACE_TAG,
            workspace
                .filter(|w| *w != DEFAULT_WORKSPACE)
                .unwrap_or("")
                .to_string(),
        ),
    ];
    tags.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn item_tags_come_in_the_plugin_order_and_skip_empty_values() {
        let env = json!({"event_type": "dataset", "event_id": "e", "previous_hash": ""});
        let names: Vec<&str> = item_tags(&env, None).iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "App-Name",
                "App-Version",
                "Event-Type",
                "Event-Id"
            ]
        );
    }
}
