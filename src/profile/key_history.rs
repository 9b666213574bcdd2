//! An organisation's envelope keys over the years: a pinned root key and the chain of signed
//! hand-overs (`key_retired`, the family's `ario.agent/v1` event: the envelope is signed by the
//! **old** key, its payload names the old and the new key and `retired_at`;
//! `../shared/vectors/ario-proof/envelope-key-retired-01.json`).
//!
//! Nothing in a history file is taken on trust but the root: each hand-over must verify under
//! the key it retires — the root, then each new key in turn — link to the one before by
//! `previous_hash` (its TX, or `GENESIS` for the first), and retire keys in time order. From
//! that chain come the **validity windows**: the root from the beginning until its
//! `retired_at`, each new key from the hand-over that named it until its own retirement, the
//! last one open. A proof passes against the history when its signer has a window and the
//! proof was signed inside it; one signed by a retired key after its `retired_at` fails, saying
//! so. Pure: the file is read and written by the commands.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::proof::verify_envelope;

/// The file format's name.
pub const FORMAT: &str = "ario.mlflow.key-history/v1";

/// The hand-over's event type.
pub const EVENT_TYPE: &str = "key_retired";

/// The hand-over envelope's spec version (the family's agent events).
pub const SPEC_VERSION: &str = "ario.agent/v1";

/// A key history as kept in a file (`keys history --json` prints one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyHistory {
    /// [`FORMAT`].
    pub format: String,
    /// The first key (hex), pinned by whoever trusts this history.
    pub root: String,
    /// The hand-overs, oldest first.
    #[serde(default)]
    pub handovers: Vec<Handover>,
}

/// One hand-over: its TX (the data item that carried it) and the signed envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    /// The data item id it was uploaded as.
    pub tx: String,
    /// The signed `key_retired` envelope.
    pub envelope: Value,
}

/// One key's validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyWindow {
    /// The key (hex).
    pub public_key: String,
    /// Its id (as the hand-overs name it; derived from the key for the root).
    pub key_id: String,
    /// Valid from (RFC 3339; `None`: from the beginning).
    pub valid_from: Option<String>,
    /// Retired at (RFC 3339; `None`: current).
    pub retired_at: Option<String>,
    /// The hand-over that retired it.
    pub retired_by_tx: Option<String>,
}

/// Why a history cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// Not this format.
    #[error("not a key history: format {0:?} (expected {FORMAT})")]
    Format(String),
    /// The root is not a 32-byte hex key.
    #[error("the root key {0:?} is not 64 hex characters")]
    Root(String),
    /// A hand-over that does not hold.
    #[error("hand-over #{index} (TX {tx}): {reason}")]
    Handover {
        /// 1-based.
        index: usize,
        /// Its TX.
        tx: String,
        /// What is wrong.
        reason: String,
    },
}

/// A key id derived from the key itself (the root has no hand-over naming it): the first 16
/// bytes of SHA-256 of the key, as a UUID (version 8, RFC 9562's custom form).
pub fn key_id(public_key: &[u8; 32]) -> String {
    let digest = crate::proof::sha256(public_key);
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The unsigned `key_retired` envelope handing `retired` over to `new` (both hex keys), in the
/// family vector's shape; `previous_hash` is the previous hand-over's TX or `GENESIS`.
#[allow(clippy::too_many_arguments)]
pub fn unsigned_handover(
    event_id: &str,
    retired: &[u8; 32],
    new: &[u8; 32],
    reason: &str,
    retired_at: &str,
    signed_at: &str,
    previous_hash: &str,
    tenant_id: &str,
    agent_id: &str,
) -> Value {
    json!({
        "spec_version": SPEC_VERSION,
        "event_id": event_id,
        "event_type": EVENT_TYPE,
        "subject": {"type": "agent", "tenant_id": tenant_id, "agent_id": agent_id},
        "previous_hash": previous_hash,
        "signed_at": signed_at,
        "payload": {
            "retired_key_id": key_id(retired),
            "retired_public_key": hex::encode(retired),
            "new_key_id": key_id(new),
            "new_public_key": hex::encode(new),
            "reason": reason,
            "retired_at": retired_at,
        },
    })
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

impl KeyHistory {
    /// A history of one key.
    pub fn new(root: &[u8; 32]) -> KeyHistory {
        KeyHistory {
            format: FORMAT.into(),
            root: hex::encode(root),
            handovers: Vec::new(),
        }
    }

    /// The validity windows the chain proves, oldest first (the last is current).
    pub fn windows(&self) -> Result<Vec<KeyWindow>, HistoryError> {
        if self.format != FORMAT {
            return Err(HistoryError::Format(self.format.clone()));
        }
        let root = hex32(&self.root.to_ascii_lowercase())
            .ok_or_else(|| HistoryError::Root(self.root.clone()))?;
        let mut windows = vec![KeyWindow {
            public_key: hex::encode(root),
            key_id: key_id(&root),
            valid_from: None,
            retired_at: None,
            retired_by_tx: None,
        }];
        let mut previous_tx: Option<&str> = None;
        let mut last_retired: Option<OffsetDateTime> = None;
        for (i, h) in self.handovers.iter().enumerate() {
            let bad = |reason: String| HistoryError::Handover {
                index: i + 1,
                tx: h.tx.clone(),
                reason,
            };
            let env = &h.envelope;
            let current = windows
                .last()
                .map(|w| w.public_key.clone())
                .unwrap_or_default();
            if env["spec_version"] != SPEC_VERSION || env["event_type"] != EVENT_TYPE {
                return Err(bad(format!("not a {SPEC_VERSION} {EVENT_TYPE} envelope")));
            }
            if !verify_envelope(env, None).overall {
                return Err(bad("its signature does not verify".into()));
            }
            let signer = env["public_key"]
                .as_str()
                .unwrap_or("")
                .to_ascii_lowercase();
            if signer != current {
                return Err(bad(format!(
                    "signed by {signer}, not by the key it must retire ({current})"
                )));
            }
            let p = &env["payload"];
            let retired = p["retired_public_key"].as_str().unwrap_or("");
            if !retired.eq_ignore_ascii_case(&current) {
                return Err(bad(format!(
                    "retires {retired}, not the current key {current}"
                )));
            }
            let new = p["new_public_key"]
                .as_str()
                .and_then(|k| hex32(&k.to_ascii_lowercase()))
                .ok_or_else(|| bad("new_public_key is not 64 hex characters".into()))?;
            let retired_at_text = p["retired_at"].as_str().unwrap_or("");
            let retired_at = parse_time(retired_at_text)
                .ok_or_else(|| bad(format!("retired_at {retired_at_text:?} is not RFC 3339")))?;
            if last_retired.is_some_and(|t| retired_at < t) {
                return Err(bad("retires a key before the previous hand-over".into()));
            }
            let expected_previous = previous_tx.unwrap_or(super::GENESIS);
            if env["previous_hash"] != expected_previous {
                return Err(bad(format!(
                    "previous_hash {} does not link to {expected_previous}",
                    env["previous_hash"]
                )));
            }
            if let Some(w) = windows.last_mut() {
                w.retired_at = Some(retired_at_text.to_string());
                w.retired_by_tx = Some(h.tx.clone());
                if let Some(id) = p["retired_key_id"].as_str() {
                    w.key_id = id.to_string();
                }
            }
            windows.push(KeyWindow {
                public_key: hex::encode(new),
                key_id: p["new_key_id"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| key_id(&new)),
                valid_from: Some(retired_at_text.to_string()),
                retired_at: None,
                retired_by_tx: None,
            });
            previous_tx = Some(&h.tx);
            last_retired = Some(retired_at);
        }
        Ok(windows)
    }

    /// The current key (hex): the last hand-over's new key, else the root.
    pub fn current(&self) -> Result<String, HistoryError> {
        Ok(self
            .windows()?
            .last()
            .map(|w| w.public_key.clone())
            .unwrap_or_default())
    }

    /// The `previous_hash` of the next hand-over.
    pub fn head(&self) -> String {
        self.handovers
            .last()
            .map(|h| h.tx.clone())
            .unwrap_or_else(|| super::GENESIS.to_string())
    }
}

/// Why a proof's signer does not pass against a key history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutsideHistory {
    /// The key is not in the history.
    #[error("signed by {key}, which is not in the trusted key history")]
    UnknownKey {
        /// The signer.
        key: String,
    },
    /// The envelope's time cannot be placed.
    #[error("signed_at {signed_at:?} is not a time the key history can place")]
    NoTime {
        /// What the envelope says.
        signed_at: String,
    },
    /// Signed before the key's window opened.
    #[error("signed by {key} at {signed_at}, before it became valid at {valid_from}")]
    BeforeValid {
        /// The signer.
        key: String,
        /// When.
        signed_at: String,
        /// Its window's start.
        valid_from: String,
    },
    /// Signed by a retired key after its retirement.
    #[error("signed by retired key {key} at {signed_at}, after its retirement at {retired_at} (hand-over TX {tx})")]
    AfterRetirement {
        /// The signer.
        key: String,
        /// When.
        signed_at: String,
        /// Its retirement.
        retired_at: String,
        /// The hand-over that retired it.
        tx: String,
    },
}

/// Judges a proof signed by `public_key` at `signed_at` (RFC 3339) against `windows`: the
/// window it falls in, or why not.
pub fn judge(
    windows: &[KeyWindow],
    public_key: &str,
    signed_at: &str,
) -> Result<KeyWindow, OutsideHistory> {
    let key = public_key.to_ascii_lowercase();
    let Some(window) = windows.iter().find(|w| w.public_key == key) else {
        return Err(OutsideHistory::UnknownKey { key });
    };
    let Some(at) = parse_time(signed_at) else {
        return Err(OutsideHistory::NoTime {
            signed_at: signed_at.to_string(),
        });
    };
    if let Some(from) = window.valid_from.as_deref() {
        if parse_time(from).is_some_and(|from| at < from) {
            return Err(OutsideHistory::BeforeValid {
                key,
                signed_at: signed_at.to_string(),
                valid_from: from.to_string(),
            });
        }
    }
    if let Some(until) = window.retired_at.as_deref() {
        if parse_time(until).is_some_and(|until| at >= until) {
            return Err(OutsideHistory::AfterRetirement {
                key,
                signed_at: signed_at.to_string(),
                retired_at: until.to_string(),
                tx: window.retired_by_tx.clone().unwrap_or_else(|| "?".into()),
            });
        }
    }
    Ok(window.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::sign_envelope;
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn handover(
        history: &KeyHistory,
        old: &SigningKey,
        new: &SigningKey,
        at: &str,
        tx: &str,
    ) -> Handover {
        let unsigned = unsigned_handover(
            "00000000-0000-4000-8000-000000000001",
            &old.verifying_key().to_bytes(),
            &new.verifying_key().to_bytes(),
            "rotation",
            at,
            at,
            &history.head(),
            "acme",
            "worker-1",
        );
        Handover {
            tx: tx.into(),
            envelope: sign_envelope(&unsigned, old).unwrap(),
        }
    }

    fn chain() -> (KeyHistory, [SigningKey; 3]) {
        let keys = [key(1), key(2), key(3)];
        let mut h = KeyHistory::new(&keys[0].verifying_key().to_bytes());
        let first = handover(&h, &keys[0], &keys[1], "2026-01-01T00:00:00.000Z", "tx-1");
        h.handovers.push(first);
        let second = handover(&h, &keys[1], &keys[2], "2026-06-01T00:00:00.000Z", "tx-2");
        h.handovers.push(second);
        (h, keys)
    }

    #[test]
    fn the_chain_gives_each_key_its_window_and_judges_proofs_by_them() {
        let (h, keys) = chain();
        let w = h.windows().unwrap();
        assert_eq!(w.len(), 3);
        let hexkey = |k: &SigningKey| hex::encode(k.verifying_key().to_bytes());
        assert_eq!(w[0].retired_at.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert_eq!(w[1].valid_from.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert_eq!(w[2].retired_at, None);
        assert_eq!(h.current().unwrap(), hexkey(&keys[2]));
        // Inside its window: passes; a retired key after its retirement: fails, saying so.
        assert!(judge(&w, &hexkey(&keys[0]), "2025-12-31T23:59:59Z").is_ok());
        let late = judge(&w, &hexkey(&keys[0]), "2026-02-01T00:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(
            late.contains("retired key") && late.contains("tx-1"),
            "{late}"
        );
        let early = judge(&w, &hexkey(&keys[2]), "2026-03-01T00:00:00Z")
            .unwrap_err()
            .to_string();
        assert!(early.contains("before it became valid"), "{early}");
        assert!(judge(&w, &hexkey(&keys[1]), "2026-03-01T00:00:00Z").is_ok());
        assert!(judge(&w, &hexkey(&key(9)), "2026-03-01T00:00:00Z")
            .unwrap_err()
            .to_string()
            .contains("not in the trusted key history"));
    }

    #[test]
    fn a_history_that_does_not_hold_is_refused() {
        let (h, keys) = chain();
        // A hand-over signed by a key it does not retire (the chain skips one).
        let mut skipped = KeyHistory::new(&keys[0].verifying_key().to_bytes());
        skipped.handovers.push(h.handovers[1].clone());
        assert!(skipped
            .windows()
            .unwrap_err()
            .to_string()
            .contains("not by the key it must retire"));
        // A flipped payload byte: the signature no longer holds.
        let mut tampered = h.clone();
        tampered.handovers[0].envelope["payload"]["retired_at"] = "2027-01-01T00:00:00.000Z".into();
        assert!(tampered
            .windows()
            .unwrap_err()
            .to_string()
            .contains("signature"));
        // Links: the second must name the first's TX.
        let mut relinked = h.clone();
        relinked.handovers[0].tx = "tx-other".into();
        assert!(relinked
            .windows()
            .unwrap_err()
            .to_string()
            .contains("does not link"));
        let mut wrong = h.clone();
        wrong.format = "x".into();
        assert!(matches!(wrong.windows(), Err(HistoryError::Format(_))));
    }

    #[test]
    fn the_handover_has_the_family_vectors_shape() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/ario-proof/envelope-key-retired-01.json"
        ));
        let Ok(text) = text else {
            // tests/proof_vectors.rs fails loudly when the shared data is missing.
            return;
        };
        let vector: Value = serde_json::from_str(&text).unwrap();
        let theirs = &vector["inputs"]["envelope_pre_signature"];
        let ours = unsigned_handover(
            "e", &[1; 32], &[2; 32], "rotation", "t", "t", "GENESIS", "a", "b",
        );
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&ours), keys(theirs));
        assert_eq!(keys(&ours["payload"]), keys(&theirs["payload"]));
        assert_eq!(keys(&ours["subject"]), keys(&theirs["subject"]));
        assert_eq!(ours["spec_version"], theirs["spec_version"]);
        assert_eq!(ours["event_type"], theirs["event_type"]);
        // Our key ids are UUID-shaped like theirs.
        assert_eq!(key_id(&[1; 32]).len(), 36);
    }
}
