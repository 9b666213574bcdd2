//! The `spec_version` gate (spec/mlflow-profile.md §1.3): a fail-closed registry of accepted
//! majors, each optionally followed by an all-ASCII-digit minor (`ario.mlflow/v1.3`).

use serde::Serialize;
use serde_json::Value;

/// A profile major this verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Profile {
    /// `ario.agent/v1` — inline payloads; `_` keys stay inside the signed scope.
    Agent,
    /// `ario.mlflow/v1` — external commitment; top-level `_` keys are annotations.
    Mlflow,
    /// `ario.events/v1` — external commitment; `_` keys stay inside the signed scope.
    Events,
}

impl Profile {
    /// Every accepted major, the kernel's `ACCEPTED_SPEC_VERSIONS`.
    pub const ALL: [Profile; 3] = [Profile::Agent, Profile::Mlflow, Profile::Events];

    /// The major string, e.g. `ario.mlflow/v1`.
    pub fn major(self) -> &'static str {
        match self {
            Profile::Agent => "ario.agent/v1",
            Profile::Mlflow => "ario.mlflow/v1",
            Profile::Events => "ario.events/v1",
        }
    }
}

/// What the gate concluded about an envelope's `spec_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecVersion {
    /// A recognised major (with or without a numeric minor).
    Supported(Profile),
    /// Absent or JSON `null`: a pre-versioning envelope, accepted and flagged.
    Legacy,
    /// Anything else: fails verification even with a valid signature.
    Unsupported,
}

/// The verdict field `spec_version_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpecVersionStatus {
    /// A recognised major.
    Supported,
    /// Absent or null `spec_version`.
    Legacy,
    /// Unrecognised value, or the envelope is not an object.
    Unsupported,
}

impl SpecVersion {
    /// Classifies the `spec_version` field (`None` when the key is absent).
    pub fn classify(field: Option<&Value>) -> SpecVersion {
        match field {
            None | Some(Value::Null) => SpecVersion::Legacy,
            Some(Value::String(s)) => Profile::ALL
                .into_iter()
                .find(|p| matches_major(s, p.major()))
                .map_or(SpecVersion::Unsupported, SpecVersion::Supported),
            Some(_) => SpecVersion::Unsupported,
        }
    }

    /// The status reported in a verdict.
    pub fn status(self) -> SpecVersionStatus {
        match self {
            SpecVersion::Supported(_) => SpecVersionStatus::Supported,
            SpecVersion::Legacy => SpecVersionStatus::Legacy,
            SpecVersion::Unsupported => SpecVersionStatus::Unsupported,
        }
    }

    /// Whether top-level `_` keys are annotations outside the signed scope: only for the
    /// mlflow profile and legacy envelopes (spec §1.4).
    pub fn strips_underscore_keys(self) -> bool {
        matches!(
            self,
            SpecVersion::Supported(Profile::Mlflow) | SpecVersion::Legacy
        )
    }
}

/// `s == major`, or `major + "." + one or more ASCII digits`.
fn matches_major(s: &str, major: &str) -> bool {
    match s.strip_prefix(major) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('.')
            .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classify(v: Value) -> SpecVersion {
        SpecVersion::classify(Some(&v))
    }

    #[test]
    fn accepts_every_major_with_numeric_minors() {
        for s in [
            "ario.mlflow/v1",
            "ario.mlflow/v1.0",
            "ario.mlflow/v1.3",
            "ario.mlflow/v1.007",
        ] {
            assert_eq!(
                classify(json!(s)),
                SpecVersion::Supported(Profile::Mlflow),
                "{s}"
            );
        }
        assert_eq!(
            classify(json!("ario.agent/v1.2")),
            SpecVersion::Supported(Profile::Agent)
        );
        assert_eq!(
            classify(json!("ario.events/v1")),
            SpecVersion::Supported(Profile::Events)
        );
    }

    #[test]
    fn rejects_malformed_minors_other_majors_and_non_strings() {
        for s in [
            "ario.mlflow/v10",
            "ario.mlflow/v1.",
            "ario.mlflow/v1.x",
            "ario.mlflow/v1.3abc",
            "ario.mlflow/v1.1.2",
            "ario.mlflow/v2",
            "ario.mlflow/v99",
            "ario.future/v1",
            "ARIO.MLFLOW/V1",
            " ario.mlflow/v1",
            "ario.mlflow/v1 ",
            "ario.agent/v1.x",
            "",
        ] {
            assert_eq!(classify(json!(s)), SpecVersion::Unsupported, "{s:?}");
        }
        for v in [json!(1), json!(true), json!(["ario.mlflow/v1"]), json!({})] {
            assert_eq!(classify(v), SpecVersion::Unsupported);
        }
    }

    #[test]
    fn absent_and_null_are_legacy() {
        assert_eq!(SpecVersion::classify(None), SpecVersion::Legacy);
        assert_eq!(classify(Value::Null), SpecVersion::Legacy);
        assert!(SpecVersion::Legacy.strips_underscore_keys());
        assert!(!SpecVersion::Supported(Profile::Agent).strips_underscore_keys());
        assert!(!SpecVersion::Supported(Profile::Events).strips_underscore_keys());
    }
}
