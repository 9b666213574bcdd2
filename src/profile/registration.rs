//! Registration events (spec/mlflow-profile.md §2.4): a new model version, chained to its source
//! run's training TX, committing to whether the registered artifacts still hash to what the
//! training proof anchored.

use serde_json::{json, Value};

/// Envelope `event_type`.
pub const EVENT_TYPE: &str = "model_registered";
/// The canonical payload, under the *source run's* artifact root.
pub const PAYLOAD_ARTIFACT: &str = "ario/registration_payload.json";
/// The signed envelope.
pub const PROOF_ARTIFACT: &str = "ario/registration_proof.json";
/// The upload receipt.
pub const RECEIPT_ARTIFACT: &str = "ario/registration_receipt.json";
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
}

/// The registration payload (§2.4).
pub fn payload(f: &RegistrationFacts<'_>) -> Value {
    json!({
        "event_type": EVENT_TYPE, "model_name": f.model_name, "model_version": f.model_version,
        "source_run_id": f.source_run_id, "source": f.source, "artifact_verified": f.artifact_verified,
        "artifact_hash": f.artifact_hash,
    })
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
