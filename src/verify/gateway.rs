//! The proof read from the gateway list: the envelope, and where a gateway serves the signed
//! data item, the item checked against the TX id and the bytes served.

use serde_json::Value;

use super::verdict::Check;
use super::Verifier;
use crate::arweave::DataItem;
use crate::profile::envelope;
use crate::proof::{jcs, verify_envelope};

/// The envelope read from a gateway, with what was learnt on the way.
pub(super) struct Fetched {
    pub(super) envelope: Value,
    pub(super) proof_found: Check,
    pub(super) data_item: Check,
}

/// The served payload must be the data of a valid item whose id is the TX.
/// Checks the signed data item `tx_id` against the bytes served, and its `MLflow-Workspace` tag
/// (when it has one) against `workspace`, the one being verified in: a proof made in another
/// workspace is about another entity of the same name. An item without the tag (the default
/// workspace, the plugin, or before workspaces) says nothing either way.
pub(super) fn data_item_check(tx_id: &str, item: &[u8], served: &[u8], workspace: &str) -> Check {
    let item = match DataItem::parse(item) {
        Ok(i) => i,
        // Some gateways answer unknown paths with a page of their own: not evidence either way.
        Err(e) => {
            return Check::skipped(format!(
                "not checked: the gateway's /dataitem answer is not an ANS-104 item ({e})"
            ))
        }
    };
    if let Err(e) = item.verify() {
        return Check::fail(format!("the data item's signature does not verify: {e}"));
    }
    if item.id() != tx_id {
        return Check::fail(format!("the data item's id is {}, not the TX", item.id()));
    }
    if item.data != served {
        return Check::fail("the bytes served at /raw differ from the data item's data");
    }
    let tagged = item
        .tags
        .iter()
        .find(|t| t.name == envelope::WORKSPACE_TAG.as_bytes())
        .map(|t| String::from_utf8_lossy(&t.value).into_owned());
    if let Some(made_in) = tagged.as_deref().filter(|w| *w != workspace) {
        return Check::fail(format!(
            "the proof was made in MLflow workspace {made_in:?}, not {workspace:?} (verify with --workspace {made_in})"
        ));
    }
    Check::pass("the served bytes are the data of the signed item whose id is the TX")
        .with("owner", item.owner_address())
}

impl Verifier {
    /// Reads the envelope of `tx_id`, trying gateways in order and skipping any whose bytes do
    /// not verify (reported in `proof_found.detail.skipped`).
    pub(super) async fn fetch(&self, tx_id: &str) -> Result<Fetched, Check> {
        if !crate::arweave::gateway::is_arweave_id(tx_id) {
            return Err(Check::fail(format!(
                "{tx_id:?} is not an Arweave id (43 base64url characters)"
            )));
        }
        let mut skipped: Vec<Value> = Vec::new();
        let mut first_bad: Option<Fetched> = None;
        for gateway in self.gateways.gateways() {
            let (bytes, _) = match self.gateways.fetch_from(gateway, tx_id).await {
                Ok(b) => b,
                Err(cause) => {
                    skipped
                        .push(serde_json::json!({"gateway": gateway.to_string(), "cause": cause.to_string()}));
                    continue;
                }
            };
            let item_bytes = self.gateways.fetch_data_item(gateway, tx_id).await;
            let data_item = match &item_bytes {
                Ok(Some(item)) => data_item_check(
                    tx_id,
                    item,
                    &bytes,
                    self.mlflow
                        .workspace()
                        .unwrap_or(envelope::DEFAULT_WORKSPACE),
                ),
                Ok(None) => Check::skipped("not checked: the gateway serves no signed data item"),
                Err(e) => Check::skipped(format!("not checked: data item unreadable ({e})")),
            };
            // Only an item that proves the served bytes is kept as evidence.
            if let (Some(log), Ok(Some(item)), Some(true)) =
                (&self.evidence, &item_bytes, data_item.ok)
            {
                log.data_item(tx_id, item);
            }
            let envelope = jcs::parse(&bytes).ok().filter(Value::is_object);
            let problem = match (&envelope, data_item.ok) {
                (None, _) => Some("served bytes that are not a JSON envelope".to_string()),
                (_, Some(false)) => Some(format!("served altered bytes ({})", data_item.reason)),
                (Some(env), _) if !verify_envelope(env, None).signature_valid => {
                    Some("served an envelope whose signature does not verify".to_string())
                }
                _ => None,
            };
            match (problem, envelope) {
                (None, Some(envelope)) => {
                    let mut found = Check::pass(format!("envelope retrieved from {gateway}"))
                        .with("served_by", gateway.to_string());
                    if !skipped.is_empty() {
                        found = found.with("skipped", Value::Array(skipped));
                    }
                    return Ok(Fetched {
                        envelope,
                        proof_found: found,
                        data_item,
                    });
                }
                (Some(problem), envelope) => {
                    skipped.push(
                        serde_json::json!({"gateway": gateway.to_string(), "cause": problem}),
                    );
                    if first_bad.is_none() {
                        if let Some(envelope) = envelope {
                            first_bad = Some(Fetched {
                                envelope,
                                proof_found: Check::skipped(""),
                                data_item,
                            });
                        }
                    }
                }
                (None, None) => unreachable!("no problem implies an envelope"),
            }
        }
        // No gateway served a good copy: verify the first bad one so the failure has a reason.
        match first_bad {
            Some(mut f) => {
                f.proof_found =
                    Check::pass("envelope retrieved, but no gateway served a copy that verifies")
                        .with("skipped", Value::Array(skipped));
                Ok(f)
            }
            None => Err(Check::fail(format!("no gateway served {tx_id}"))
                .with("skipped", Value::Array(skipped))),
        }
    }
}
