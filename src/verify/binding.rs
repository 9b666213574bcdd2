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
        if !self.trusted_keys.is_empty() && !self.trusted_keys.contains(&key) {
            return Err(broken(format!(
                "signed by {key}, which is not a pinned key"
            )));
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

    /// Pinned keys, else the entity's `ario.public_key` tag.
    pub(super) async fn key_binding(&self, env: &Value, entity: &Entity) -> Check {
        let Some(key) = env.get("public_key").and_then(Value::as_str) else {
            return Check::fail("envelope has no public_key");
        };
        let key = key.to_ascii_lowercase();
        if !self.trusted_keys.is_empty() {
            return if self.trusted_keys.contains(&key) {
                Check::pass("signed by a pinned key").with("public_key", key)
            } else {
                Check::fail(format!("signed by {key}, which is not a pinned key"))
                    .with("public_key", key)
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
