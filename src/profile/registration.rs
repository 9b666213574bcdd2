//! Registration events (spec/mlflow-profile.md §2.4): a new model version, chained to its source
//! run's training TX, committing to whether the registered artifacts still hash to what the
//! training proof anchored.
//!
//! Witnesses. The plugin keeps one registration witness per *run*
//! (`ario/registration_payload.json`), so two versions registered from one run overwrite each
//! other's. Ours are per *event*: `ario/registrations/<event_id>/{payload,proof,receipt}.json`
//! on the source run ([`witness_path`]), which never collide; the plugin's shared file is
//! written too, but only by the first registration of a run and never overwritten, so the
//! version the plugin can check keeps verifying. A version with no run keeps its payload in the
//! model-version tag [`PAYLOAD_TAG`].
//!
//! What the payload commits to. `artifact_hash` is the source run's `ario.artifact_hash` (what
//! the training proof anchored) and `artifact_verified` whether the *registered version's own
//! files* — resolved from its `source` ([`ModelSource`]), whatever the model is called — still
//! hash to it. When there is no training hash to compare with (a LoggedModel with no run, a run
//! whose training proof holds no model), the payload adds [`ARTIFACT_CHECKSUMS_KEY`]: the
//! version's files themselves, so the proof never commits to nothing.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Envelope `event_type`.
pub const EVENT_TYPE: &str = "model_registered";
/// The plugin's canonical payload witness, one per *source run* (written once, never
/// overwritten).
pub const PAYLOAD_ARTIFACT: &str = "ario/registration_payload.json";
/// The plugin's signed envelope witness, one per source run.
pub const PROOF_ARTIFACT: &str = "ario/registration_proof.json";
/// The plugin's upload receipt, one per source run.
pub const RECEIPT_ARTIFACT: &str = "ario/registration_receipt.json";
/// Our per-event witness directory under `ario/` on the source run.
pub const WITNESS_DIR: &str = "registrations";
/// Model-version tag: the canonical payload text of a version that has no run (no artifact
/// root to keep a witness in).
pub const PAYLOAD_TAG: &str = "ario.registration_payload";
/// Extra payload key: the registered version's own file checksums, present only when no
/// training artifact hash exists to compare them with.
pub const ARTIFACT_CHECKSUMS_KEY: &str = "artifact_checksums";
/// Model-version tag: the registration TX (the chain link of promotions, aliases, predictions).
pub const TX_TAG: &str = "ario.registration_tx";
/// Model-version tag: whether the registered artifacts match the training proof.
pub const ARTIFACT_VERIFIED_TAG: &str = "ario.artifact_verified";

/// What a registration payload commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationFacts<'a> {
    /// Registered model name.
    pub model_name: &'a str,
    /// Version.
    pub model_version: &'a str,
    /// The version's `source` URI.
    pub source: &'a str,
    /// The source run, when known.
    pub source_run_id: Option<&'a str>,
    /// Whether the artifacts at `source` hash to the run's `ario.artifact_hash` (`None`: not
    /// checkable).
    pub artifact_verified: Option<bool>,
    /// The run's `ario.artifact_hash`, when it has one.
    pub artifact_hash: Option<&'a str>,
    /// The version's own file checksums, committed only when there is no `artifact_hash` to
    /// compare them with (see the module doc).
    pub artifact_checksums: Option<&'a BTreeMap<String, String>>,
}

/// The registration payload (§2.4).
pub fn payload(f: &RegistrationFacts<'_>) -> Value {
    let mut v = json!({
        "event_type": EVENT_TYPE, "model_name": f.model_name, "model_version": f.model_version,
        "source_run_id": f.source_run_id, "source": f.source, "artifact_verified": f.artifact_verified,
        "artifact_hash": f.artifact_hash,
    });
    if let (Some(map), Value::Object(o)) = (f.artifact_checksums, &mut v) {
        o.insert(ARTIFACT_CHECKSUMS_KEY.into(), json!(map));
    }
    v
}

/// `ario/registrations/<event_id>/<file>`: our per-event witness of a registration.
pub fn witness_path(event_id: &str, file: &str) -> String {
    super::witness::per_event_path(WITNESS_DIR, event_id, file)
}

/// What a model version's `source` names (the files the version serves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// `runs:/<run_id>/<path>`: a directory of a run (MLflow 3 overlays the run's LoggedModel
    /// of that name).
    Run {
        /// The run.
        run_id: String,
        /// The path below its artifact root (`model` when the URI names none, as the plugin).
        path: String,
    },
    /// `models:/m-…`: an MLflow 3 LoggedModel.
    LoggedModel {
        /// `m-…`.
        model_id: String,
    },
    /// `models:/<name>/<version>` (what `copy_model_version` writes).
    Version {
        /// Registered model.
        name: String,
        /// Version number.
        version: String,
    },
    /// `models:/<name>@<alias>`.
    Alias {
        /// Registered model.
        name: String,
        /// Alias.
        alias: String,
    },
    /// Any other artifact URI (`s3://…`, `mlflow-artifacts:/…`, `file:///…`, a path).
    Uri(String),
}

/// Parses a version's `source` into what it names.
pub fn parse_source(source: &str) -> ModelSource {
    if source.starts_with("runs:/") {
        let (run, path) = parse_runs_uri(source);
        return ModelSource::Run {
            run_id: run.unwrap_or_default(),
            path: path.unwrap_or_else(|| "model".into()),
        };
    }
    if let Some(rest) = source.strip_prefix("models:/") {
        let rest = rest.trim_start_matches('/').trim_end_matches('/');
        if let Some((name, alias)) = rest.rsplit_once('@') {
            return ModelSource::Alias {
                name: name.into(),
                alias: alias.into(),
            };
        }
        if let Some((name, version)) = rest.rsplit_once('/') {
            if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit()) {
                return ModelSource::Version {
                    name: name.into(),
                    version: version.into(),
                };
            }
        }
        if rest.starts_with("m-") && !rest.contains('/') {
            return ModelSource::LoggedModel {
                model_id: rest.into(),
            };
        }
    }
    ModelSource::Uri(source.to_string())
}

/// The envelope subject of every event about one model version (registration, promotion).
pub fn subject(name: &str, version: &str) -> Value {
    json!({"type": "mlflow_model_version", "name": name, "version": version})
}

/// `parse_runs_uri` (§2.0.5): `runs:/<run>/<path>` → (run id, path); anything else → (None, None).
pub fn parse_runs_uri(source: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = source.strip_prefix("runs:/") else {
        return (None, None);
    };
    let rest = rest.trim_start_matches('/');
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match rest.split_once('/') {
        None => (non_empty(rest), None),
        Some((run, path)) => (non_empty(run), non_empty(path)),
    }
}

/// Why a version's source run cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}/{version}: run_id {run_id} disagrees with source {model_source}")]
pub struct SourceRunMismatch {
    /// Registered model.
    pub name: String,
    /// Version.
    pub version: String,
    /// The version's `run_id`.
    pub run_id: String,
    /// The version's `source`.
    pub model_source: String,
}

/// The source run of a registration: the version's `run_id`, else the `runs:/` source; an
/// error when both are present and disagree (the plugin refuses too).
pub fn source_run(
    name: &str,
    version: &str,
    run_id: &str,
    source: &str,
) -> Result<Option<String>, SourceRunMismatch> {
    let (src_run, _) = parse_runs_uri(source);
    let mv_run = Some(run_id.to_string()).filter(|r| !r.is_empty());
    if let (Some(a), Some(b)) = (&mv_run, &src_run) {
        if a != b {
            return Err(SourceRunMismatch {
                name: name.into(),
                version: version.into(),
                run_id: a.clone(),
                model_source: source.into(),
            });
        }
    }
    Ok(mv_run.or(src_run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_uris_resolve_like_the_plugin() {
        assert_eq!(
            parse_runs_uri("runs:/abc/model"),
            (Some("abc".into()), Some("model".into()))
        );
        assert_eq!(
            parse_runs_uri("runs:///abc/sub/dir/"),
            (Some("abc".into()), Some("sub/dir/".into()))
        );
        assert_eq!(parse_runs_uri("runs:/abc"), (Some("abc".into()), None));
        assert_eq!(parse_runs_uri("models:/m-1"), (None, None));
    }

    #[test]
    fn sources_name_runs_logged_models_versions_aliases_and_uris() {
        assert_eq!(
            parse_source("runs:/r/clf"),
            ModelSource::Run {
                run_id: "r".into(),
                path: "clf".into()
            }
        );
        assert_eq!(
            parse_source("runs:/r"),
            ModelSource::Run {
                run_id: "r".into(),
                path: "model".into()
            }
        );
        assert_eq!(
            parse_source("models:/m-7a3f"),
            ModelSource::LoggedModel {
                model_id: "m-7a3f".into()
            }
        );
        assert_eq!(
            parse_source("models:/a/b/3"),
            ModelSource::Version {
                name: "a/b".into(),
                version: "3".into()
            }
        );
        assert_eq!(
            parse_source("models:/fraud@champion"),
            ModelSource::Alias {
                name: "fraud".into(),
                alias: "champion".into()
            }
        );
        assert_eq!(
            parse_source("s3://b/k/model"),
            ModelSource::Uri("s3://b/k/model".into())
        );
        assert_eq!(
            parse_source("models:/Production"),
            ModelSource::Uri("models:/Production".into())
        );
    }

    #[test]
    fn checksums_enter_the_payload_only_when_given() {
        let base = RegistrationFacts {
            model_name: "m",
            model_version: "1",
            source: "models:/m-1",
            source_run_id: None,
            artifact_verified: None,
            artifact_hash: None,
            artifact_checksums: None,
        };
        assert!(payload(&base).get(ARTIFACT_CHECKSUMS_KEY).is_none());
        let files: BTreeMap<String, String> = [("MLmodel".to_string(), "ab".to_string())].into();
        let with = payload(&RegistrationFacts {
            artifact_checksums: Some(&files),
            ..base
        });
        assert_eq!(with[ARTIFACT_CHECKSUMS_KEY]["MLmodel"], "ab");
        assert_eq!(
            witness_path("e-1", "payload.json"),
            "ario/registrations/e-1/payload.json"
        );
    }

    #[test]
    fn a_source_run_comes_from_run_id_or_source_and_both_must_agree() {
        assert_eq!(source_run("m", "1", "r", "").unwrap().as_deref(), Some("r"));
        assert_eq!(
            source_run("m", "1", "", "runs:/s/model")
                .unwrap()
                .as_deref(),
            Some("s")
        );
        assert_eq!(source_run("m", "1", "", "s3://b/k").unwrap(), None);
        let err = source_run("m", "1", "r", "runs:/s/model").unwrap_err();
        assert!(err.to_string().contains("disagrees"), "{err}");
    }
}
