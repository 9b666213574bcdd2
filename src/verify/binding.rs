//! Who signed, about what: the signer's key against pinned keys and the entity's
//! `ario.public_key`, and the envelope's subject against the entity (names a model had before a
//! rename included).

use serde_json::Value;

use super::verdict::{value_text, Check, Entity};
use super::{Verifier, VerifyError};
use crate::profile::{rename, tags};
use crate::proof::{jcs, sha256_hex, verify_envelope};

/// Why an envelope is not about `entity` (None when it is, or when nothing was expected).
pub(super) fn subject_mismatch(env: &Value, entity: &Entity) -> Option<String> {
    let subject = env.get("subject")?;
    let s = |k: &str| subject.get(k).and_then(value_text);
    match entity {
        Entity::Any => None,
        Entity::Run(id) => (s("run_id").as_deref() != Some(id.as_str()))
            .then(|| format!("subject {subject} is not run {id}")),
        Entity::ModelVersion(n, v) => (s("name").as_deref() != Some(n.as_str())
            || s("version").as_deref() != Some(v.as_str()))
        .then(|| format!("subject {subject} is not {n}/{v}")),
        Entity::Dataset(name, digest) => (s("name").as_deref() != Some(name.as_str())
            || s("digest").as_deref() != Some(digest.as_str()))
        .then(|| format!("subject {subject} is not dataset {name}@{digest}")),
        Entity::Trace(id) => {
            let trace = s("trace_id").or_else(|| s("decision_id"));
            (trace.as_deref() != Some(id.as_str()))
                .then(|| format!("subject {subject} is not trace {id}"))
        }
    }
}

/// A key history's hand-over the gateways do not serve as the history holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hand-over {tx}: {reason}")]
pub struct HandoverUnserved {
    /// The hand-over's TX.
    pub tx: String,
    /// What the gateways answered.
    pub reason: String,
}

/// Why a signer does not pass the pins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotPinned {
    /// Not one of the `--trusted-key`s.
    #[error("signed by {0}, which is not a pinned key")]
    Key(String),
    /// Outside the trusted key history.
    #[error(transparent)]
    History(#[from] crate::profile::key_history::OutsideHistory),
}

impl Verifier {
    /// When `entity` is a model version whose proof names another model: the former name and
    /// the rename proof's TX, if the model's rename proof verifies (signature, the payload in
    /// its tag, a pinned or matching key) and lists that name among its former names; an error
    /// saying why not when there is a rename proof that does not hold.
    pub(super) async fn renamed_subject(
        &self,
        env: &Value,
        entity: &Entity,
    ) -> Result<Option<(String, String)>, VerifyError> {
        let Entity::ModelVersion(name, version) = entity else {
            return Ok(None);
        };
        let subject = env.get("subject").cloned().unwrap_or(Value::Null);
        let (Some(old), Some(v)) = (
            subject.get("name").and_then(value_text),
            subject.get("version").and_then(value_text),
        ) else {
            return Ok(None);
        };
        if &v != version || &old == name {
            return Ok(None);
        }
        let former = self.former_names(name).await?;
        Ok(former
            .1
            .iter()
            .any(|n| n == &old)
            .then(|| (format!("{old}/{v}"), former.0)))
    }

    /// The names registered model `name` had before, from its newest rename proof, verified:
    /// (the rename TX, the former names). No rename proof: none.
    pub async fn former_names(&self, name: &str) -> Result<(String, Vec<String>), VerifyError> {
        let rm = self
            .mlflow
            .get_registered_model(name)
            .await
            .map_err(|e| VerifyError::mlflow(format!("registered model {name}"), e))?;
        let Some(tx) = rm.tag(rename::TX_TAG).map(str::to_owned) else {
            return Ok((String::new(), Vec::new()));
        };
        let broken = |reason: String| VerifyError::Referenced {
            what: "rename proof",
            tx: tx.clone(),
            reason,
        };
        let fetched = self.fetch(&tx).await.map_err(|c| broken(c.reason))?;
        let env = &fetched.envelope;
        if !verify_envelope(env, None).overall {
            return Err(broken("its signature does not verify".into()));
        }
        let key = env["public_key"]
            .as_str()
            .unwrap_or("")
            .to_ascii_lowercase();
        if let Err(reason) = self.pinned(env, &key) {
            return Err(broken(reason.to_string()));
        }
        if env["subject"]["name"].as_str() != Some(name) {
            return Err(broken("it is about another model".into()));
        }
        let event_id = env["event_id"].as_str().unwrap_or("");
        let payload = rm
            .tag(&rename::payload_tag(event_id))
            .ok_or_else(|| broken("its payload tag is missing".into()))?;
        if Some(sha256_hex(payload.as_bytes()).as_str()) != env["payload_hash"].as_str() {
            return Err(broken(
                "its payload tag does not hash to the proof's payload_hash".into(),
            ));
        }
        let payload =
            jcs::parse(payload.as_bytes()).map_err(|e| broken(format!("payload: {e}")))?;
        Ok((tx, rename::former_names(&payload)))
    }

    /// Checks a key history's hand-overs against what the gateways serve: each TX must be a
    /// valid data item carrying exactly the hand-over the history holds (a history file cannot
    /// claim a hand-over that was never anchored).
    pub async fn check_handovers(
        &self,
        history: &crate::profile::key_history::KeyHistory,
    ) -> Result<(), HandoverUnserved> {
        for h in &history.handovers {
            let unserved = |reason: String| HandoverUnserved {
                tx: h.tx.clone(),
                reason,
            };
            let fetched = self.fetch(&h.tx).await.map_err(|c| unserved(c.reason))?;
            if fetched.data_item.ok != Some(true) {
                return Err(unserved(fetched.data_item.reason));
            }
            if fetched.envelope != h.envelope {
                return Err(unserved(
                    "the gateways serve another envelope than the history holds".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether `key` may have signed `env` when keys are pinned (`--trusted-key`, the key
    /// history of `--trusted-keys-file`): `Ok` with what passed it, `Err` with why not.
    /// `Ok("")` when nothing is pinned.
    pub(super) fn pinned(&self, env: &Value, key: &str) -> Result<String, NotPinned> {
        if self.trusted_keys.iter().any(|k| k == key) {
            return Ok("signed by a pinned key".into());
        }
        if let Some(windows) = &self.key_history {
            let signed_at = env["signed_at"].as_str().unwrap_or("");
            return match crate::profile::key_history::judge(windows, key, signed_at) {
                Ok(w) => Ok(format!(
                    "signed by key {} of the trusted history, valid {} to {}",
                    w.key_id,
                    w.valid_from.as_deref().unwrap_or("the beginning"),
                    w.retired_at.as_deref().unwrap_or("now")
                )),
                Err(outside) => Err(NotPinned::History(outside)),
            };
        }
        if self.trusted_keys.is_empty() {
            Ok(String::new())
        } else {
            Err(NotPinned::Key(key.to_string()))
        }
    }

    /// Pinned keys (or the trusted key history), else the entity's `ario.public_key` tag.
    pub(super) async fn key_binding(&self, env: &Value, entity: &Entity) -> Check {
        let Some(key) = env.get("public_key").and_then(Value::as_str) else {
            return Check::fail("envelope has no public_key");
        };
        let key = key.to_ascii_lowercase();
        if !self.trusted_keys.is_empty() || self.key_history.is_some() {
            return match self.pinned(env, &key) {
                Ok(why) => Check::pass(why).with("public_key", key),
                Err(reason) => Check::fail(reason.to_string()).with("public_key", key),
            };
        }
        match self.entity_key_tag(entity).await {
            Some(tag) if tag.eq_ignore_ascii_case(&key) => {
                Check::skipped("matches the entity's ario.public_key tag (no key pinned)")
                    .with("public_key", key)
            }
            Some(tag) => Check::skipped(format!(
                "WARNING: signer {key} differs from the entity's ario.public_key tag {tag}; pin keys with --trusted-key"
            ))
            .with("public_key", key)
            .with("tag", tag),
            None => Check::skipped("no key pinned (--trusted-key) and no ario.public_key tag to compare")
                .with("public_key", key),
        }
    }

    pub(super) async fn entity_key_tag(&self, entity: &Entity) -> Option<String> {
        let tag = tags::PUBLIC_KEY;
        match entity {
            Entity::Run(id) => self
                .mlflow
                .get_run(id)
                .await
                .ok()?
                .tag(tag)
                .map(str::to_owned),
            Entity::ModelVersion(n, v) => {
                let mv = self.mlflow.get_model_version(n, v).await.ok()?;
                if let Some(t) = mv.tag(tag) {
                    return Some(t.to_string());
                }
                let run = self.mlflow.get_run(&mv.run_id).await.ok()?;
                run.tag(tag).map(str::to_owned)
            }
            Entity::Trace(id) => self
                .mlflow
                .get_trace_info(id)
                .await
                .ok()?
                .tags
                .get(tag)
                .cloned(),
            Entity::Dataset(..) | Entity::Any => None,
        }
    }
}
