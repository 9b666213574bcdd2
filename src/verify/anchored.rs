//! Check 2 (§5.1): the payload bytes the envelope committed to, read back from the proof's
//! witness in MLflow (run artifacts, a version's or a rename's tag).

use serde_json::Value;

use super::verdict::{value_text, Check};
use super::Verifier;
use crate::mlflow::MlflowError;
use crate::profile::training;
use crate::profile::{registration, rename, witness};
use crate::proof::sha256_hex;

/// Where a proof's witness is.
pub(super) enum Witness {
    /// Artifacts of a run, tried in order.
    Run(String, Vec<String>),
    /// The bytes of a tag (a version without a run, a rename).
    Tag(String, Vec<u8>),
}

impl Verifier {
    /// Check 2: the witness named by the subject hashes to `payload_hash`. Returns the check,
    /// the witness bytes, and — for a training proof superseded by a newer one of the same run —
    /// the newer proof's TX. `lookup_name` is the model's current name when the proof names a
    /// former one.
    pub(super) async fn anchored_bytes(
        &self,
        env: &Value,
        tx_id: &str,
        lookup_name: Option<&str>,
    ) -> (Check, Option<Vec<u8>>, Option<String>) {
        let subject = env.get("subject").cloned().unwrap_or(Value::Null);
        let s = |k: &str| subject.get(k).and_then(value_text);
        let event_type = env.get("event_type").and_then(Value::as_str).unwrap_or("");
        let event_id = s("event_id").or_else(|| env.get("event_id").and_then(value_text));
        let stored = env
            .get("payload_hash")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut superseded_by = None;
        // Where the witness may be: (run, paths in order) or the bytes of a tag.
        let located: Result<Witness, Check> = match subject.get("type").and_then(Value::as_str) {
            Some("mlflow_run") => match s("run_id") {
                Some(run) => {
                    let mut paths = vec![training::PAYLOAD_ARTIFACT.to_string()];
                    if let Some(id) = &event_id {
                        paths.push(training::superseded_path(id, witness::PAYLOAD_FILE));
                    }
                    Ok(Witness::Run(run, paths))
                }
                None => Err(Check::fail("subject_missing_run_id")),
            },
            Some(t @ ("mlflow_model_version" | "mlflow_model_alias")) => {
                match (
                    lookup_name.map(str::to_owned).or_else(|| s("name")),
                    s("version"),
                ) {
                    (Some(name), Some(version)) => {
                        match self.mlflow.get_model_version(&name, &version).await {
                            Ok(mv) => {
                                let paths: Option<Vec<String>> = if t == "mlflow_model_alias" {
                                    event_id
                                        .as_ref()
                                        .map(|id| vec![format!("ario/aliases/{id}/payload.json")])
                                } else {
                                    match event_type {
                                        // Ours per event first, then the plugin's one per run.
                                        "model_registered" => Some(
                                            event_id
                                                .iter()
                                                .map(|id| {
                                                    registration::witness_path(
                                                        id,
                                                        witness::PAYLOAD_FILE,
                                                    )
                                                })
                                                .chain([registration::PAYLOAD_ARTIFACT.into()])
                                                .collect(),
                                        ),
                                        "stage_transition" => event_id.as_ref().map(|id| {
                                            vec![format!("ario/promotions/{id}/payload.json")]
                                        }),
                                        _ => Some(vec![training::PAYLOAD_ARTIFACT.into()]),
                                    }
                                };
                                match paths {
                                    None => Err(Check::fail("subject_missing_event_id")),
                                    // A version with no run keeps its registration payload in
                                    // a version tag.
                                    Some(_)
                                        if mv.run_id.is_empty()
                                            && event_type == "model_registered" =>
                                    {
                                        match mv.tag(registration::PAYLOAD_TAG) {
                                            Some(text) => Ok(Witness::Tag(
                                                registration::PAYLOAD_TAG.into(),
                                                text.as_bytes().to_vec(),
                                            )),
                                            None => Err(Check::fail(format!(
                                                "download_failed: {name}/{version} has no run and no {} tag",
                                                registration::PAYLOAD_TAG
                                            ))),
                                        }
                                    }
                                    Some(p) => Ok(Witness::Run(mv.run_id, p)),
                                }
                            }
                            Err(e) => {
                                Err(Check::fail(format!("could_not_resolve_model_version: {e}")))
                            }
                        }
                    }
                    _ => Err(Check::fail("subject_missing_name_or_version")),
                }
            }
            Some("mlflow_prediction") => match (s("decision_id"), s("model_run_id")) {
                (Some(d), Some(r)) => Ok(Witness::Run(
                    r,
                    vec![format!("ario/predictions/{d}/payload.json")],
                )),
                _ => Err(Check::fail("subject_missing_decision_id_or_run_id")),
            },
            Some(rename::SUBJECT_TYPE) => match (s("name"), &event_id) {
                (Some(name), Some(id)) => match self.mlflow.get_registered_model(&name).await {
                    Ok(rm) => match rm.tag(&rename::payload_tag(id)) {
                        Some(text) => Ok(Witness::Tag(
                            rename::payload_tag(id),
                            text.as_bytes().to_vec(),
                        )),
                        None => Err(Check::fail(format!(
                            "download_failed: {name} has no {} tag",
                            rename::payload_tag(id)
                        ))),
                    },
                    Err(e) => Err(Check::fail(format!(
                        "could_not_resolve_registered_model: {e}"
                    ))),
                },
                _ => Err(Check::fail("subject_missing_name_or_event_id")),
            },
            Some("mlflow_trace" | "mlflow_decision") => {
                Err(Check::skipped("legacy_subject_type_no_artifact"))
            }
            Some("mlflow_dataset") => Err(Check::skipped("mlflow_check_deferred_for_subject")),
            other => Err(Check::skipped(format!(
                "unknown_subject_type: '{}'",
                other.unwrap_or("")
            ))),
        };
        let (path, bytes) = match located {
            Err(c) => return (c, None, None),
            Ok(Witness::Tag(tag, bytes)) => (format!("tag {tag}"), bytes),
            Ok(Witness::Run(run_id, paths)) => {
                let run = match self.mlflow.get_run(&run_id).await {
                    Ok(r) => r,
                    Err(e) => {
                        return (
                            Check::fail(format!("download_failed: run {run_id}: {e}"))
                                .with("artifact_expected", paths[0].clone()),
                            None,
                            None,
                        )
                    }
                };
                // The first path whose bytes hash to the proof; else the first readable one
                // (its mismatch is the failure), else the first error.
                let mut first: Option<(String, Result<Vec<u8>, MlflowError>)> = None;
                let mut matched = None;
                for path in &paths {
                    let got = self.mlflow.download_run_artifact(&run, path).await;
                    if matches!(&got, Ok(b) if sha256_hex(b) == stored) {
                        matched = Some((path.clone(), got));
                        break;
                    }
                    let readable = got.is_ok();
                    if first.as_ref().is_none_or(|(_, f)| f.is_err() && readable) {
                        first = Some((path.clone(), got));
                    }
                }
                let (path, got) = matched.or(first).unwrap_or_else(|| {
                    (
                        String::new(),
                        Err(MlflowError::Unsupported("no witness path".into())),
                    )
                });
                let bytes = match got {
                    Ok(b) => b,
                    Err(e) => {
                        return (
                            Check::fail(format!("download_failed: {e}"))
                                .with("artifact_expected", paths.join(" or ")),
                            None,
                            None,
                        )
                    }
                };
                if let Some(log) = &self.evidence {
                    // The upload's receipt sits beside the payload it witnesses.
                    let receipt = match path.rsplit_once('/') {
                        Some((dir, _)) => format!("{dir}/{}", witness::RECEIPT_FILE),
                        None => witness::RECEIPT_FILE.to_string(),
                    };
                    if let Ok(r) = self.mlflow.download_run_artifact(&run, &receipt).await {
                        if let Ok(v) = serde_json::from_slice::<Value>(&r) {
                            if v["id"].as_str() == Some(tx_id) {
                                log.receipt(tx_id, v);
                            }
                        }
                    }
                }
                if event_type == training::EVENT_TYPE && path != training::PAYLOAD_ARTIFACT {
                    let newer = run.tag(training::TX_TAG).unwrap_or("");
                    if newer != tx_id && !newer.is_empty() {
                        superseded_by = Some(newer.to_string());
                    }
                }
                (path, bytes)
            }
        };
        let computed = sha256_hex(&bytes);
        let check = if computed == stored {
            Check::pass(format!("{path} hashes to payload_hash"))
        } else {
            Check::fail(format!(
                "anchored_bytes_mismatch: {path} hashes to {computed}, the proof commits to {stored}"
            ))
        }
        .with("computed_hash", computed)
        .with("stored_hash", stored)
        .with("artifact_expected", path);
        (check, Some(bytes), superseded_by)
    }

    pub(super) async fn download(&self, run_id: &str, path: &str) -> Result<Vec<u8>, MlflowError> {
        let run = self.mlflow.get_run(run_id).await?;
        self.mlflow.download_run_artifact(&run, path).await
    }
}
