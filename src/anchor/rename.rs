//! Renames of a registered model (our addition, `model_renamed`): the rename itself becomes a
//! signed proof, so a proof anchored under the former name stays attributable to the model
//! under its new one (see [`crate::profile::rename`]). Chained to the model's previous rename
//! TX; witnessed in the registered model's tags (a registered model has no artifact root).

use serde_json::Value;

use super::resolve::{Resolution, SignPlan, Skip, SkipKind};
use super::sign::sign_event;
use super::{AnchorError, Anchorer};
use crate::mlflow::RegisteredModel;
use crate::profile::{rename, GENESIS};
use crate::proof::{jcs, sha256_hex};
use crate::store::prepared::{Prepared, TagValue, Write};

/// The rename payloads a registered model carries in its tags (they move with it), parsed.
pub fn rename_payloads(rm: &RegisteredModel) -> Vec<(String, Value)> {
    rm.tags
        .iter()
        .filter_map(|t| {
            let event_id = t.key.strip_prefix(rename::PAYLOAD_TAG_PREFIX)?;
            let payload = jcs::parse(t.value.as_bytes()).ok()?;
            Some((event_id.to_string(), payload))
        })
        .collect()
}

impl Anchorer {
    /// `from` was renamed `to`: skipped when the model is gone or the rename is already proven
    /// (a rename payload `from → to` in its tags), else signed, carrying every earlier name.
    pub async fn resolve_rename(&self, from: &str, to: &str) -> Result<Resolution, AnchorError> {
        let rm = match self.mlflow.get_registered_model(to).await {
            Ok(rm) => rm,
            Err(e) if e.is_not_found() => {
                return Ok(Skip::because(
                    SkipKind::Gone,
                    format!("registered model {to} no longer exists"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let payloads = rename_payloads(&rm);
        if let Some((_, p)) = payloads.iter().find(|(_, p)| {
            p["previous_name"].as_str() == Some(from) && p["model_name"].as_str() == Some(to)
        }) {
            let hash = jcs::canonicalize(p)
                .map(|b| sha256_hex(&b))
                .unwrap_or_default();
            return Ok(Skip::anchored(
                SkipKind::AlreadyAnchored,
                format!("the rename {from} → {to} is already proven"),
                rename::EVENT_TYPE,
                format!("{from}→{to}"),
                rm.tag(rename::TX_TAG).unwrap_or(""),
                &hash,
            ));
        }
        // The names before `from`: the proof of the rename that produced `from`, if any.
        let earlier = payloads
            .iter()
            .find(|(_, p)| p["model_name"].as_str() == Some(from))
            .map(|(_, p)| rename::former_names(p))
            .unwrap_or_default();
        let previous = rm.tag(rename::TX_TAG).unwrap_or(GENESIS).to_string();
        Ok(SignPlan::signed(
            self.prepare_rename(to, from, &earlier, &previous)?,
        ))
    }

    /// Builds and signs the proof that `from` became `to`.
    pub fn prepare_rename(
        &self,
        to: &str,
        from: &str,
        earlier: &[String],
        previous: &str,
    ) -> Result<Prepared, AnchorError> {
        let payload = rename::payload(to, from, earlier);
        let ev = sign_event(
            rename::EVENT_TYPE,
            rename::subject(to),
            previous,
            &payload,
            &self.key,
            &self.wallet.signer,
            self.mlflow.workspace(),
        )?;
        let signed = vec![Write::RegisteredModelTag {
            name: to.into(),
            key: rename::payload_tag(&ev.event_id),
            value: TagValue::Text(String::from_utf8_lossy(&ev.payload_bytes).into_owned()),
        }];
        let anchored = vec![Write::RegisteredModelTag {
            name: to.into(),
            key: rename::TX_TAG.into(),
            value: TagValue::TxId,
        }];
        Ok(Prepared::new(
            ev,
            rename::EVENT_TYPE,
            format!("{from}→{to}"),
            signed,
            anchored,
        ))
    }
}
