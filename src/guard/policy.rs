//! The guard's assets policy: the `[guard]` table of the configuration file.
//!
//! ```toml
//! [guard]
//! tenant_id = "acme"
//! agent_id = "ml-host-01"
//!
//! [[guard.asset]]
//! id = "credit-prod"
//! model = "credit-scorer@champion"   # NAME/VERSION, NAME@alias or NAME:stage
//! max_age = 900                       # seconds a successful check stays fresh
//! interval = 60                       # seconds between checks
//! ```
//!
//! Unknown keys are errors. `policy_hash` is the SHA-256 of the policy's canonical JSON (JCS), so
//! a consumer can tell which policy an answer was given under.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::proof::{jcs, sha256_hex};

/// Default seconds a successful check stays fresh.
pub const DEFAULT_MAX_AGE: u64 = 900;
/// Default seconds between checks.
pub const DEFAULT_INTERVAL: u64 = 60;

/// The policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardPolicy {
    /// The operator's tenant id (echoed in every answer).
    pub tenant_id: String,
    /// This agent's id (echoed in every answer).
    pub agent_id: String,
    /// The guarded assets.
    #[serde(default, rename = "asset")]
    pub assets: Vec<AssetPolicy>,
}

/// One guarded asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetPolicy {
    /// The operator's asset id (what `VerifiedModel(asset_id=…)` asks for).
    pub id: String,
    /// What it names: `NAME/VERSION`, `NAME@alias` or `NAME:stage`.
    pub model: String,
    /// The MLflow workspace the model is in (a server with workspaces); unset: the one the
    /// guard's MLflow connection names (`--workspace` / `MLFLOW_WORKSPACE`), else the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Seconds a successful check stays fresh (`stale` after that).
    #[serde(default = "default_max_age")]
    pub max_age: u64,
    /// Seconds between checks.
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_max_age() -> u64 {
    DEFAULT_MAX_AGE
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL
}

/// What an asset follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetTarget {
    /// One version, fixed.
    Version {
        /// Registered model.
        name: String,
        /// Version.
        version: String,
    },
    /// The version an alias points at now.
    Alias {
        /// Registered model.
        name: String,
        /// Alias.
        alias: String,
    },
    /// The latest version in a stage.
    Stage {
        /// Registered model.
        name: String,
        /// Stage (`Staging`, `Production`, …).
        stage: String,
    },
}

impl AssetTarget {
    /// Parses `NAME/VERSION` (split at the last `/`, a numeric version), `NAME@alias` or
    /// `NAME:stage`.
    pub fn parse(text: &str) -> Result<AssetTarget, TargetError> {
        let bad = || TargetError {
            text: text.to_string(),
        };
        if let Some((name, alias)) = text.rsplit_once('@') {
            if name.is_empty() || alias.is_empty() {
                return Err(bad());
            }
            return Ok(AssetTarget::Alias {
                name: name.into(),
                alias: alias.into(),
            });
        }
        if let Some((name, stage)) = text.rsplit_once(':') {
            if name.is_empty() || stage.is_empty() {
                return Err(bad());
            }
            return Ok(AssetTarget::Stage {
                name: name.into(),
                stage: stage.into(),
            });
        }
        match text.rsplit_once('/') {
            Some((name, version))
                if !name.is_empty()
                    && !version.is_empty()
                    && version.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(AssetTarget::Version {
                    name: name.into(),
                    version: version.into(),
                })
            }
            _ => Err(bad()),
        }
    }

    /// The registered model.
    pub fn name(&self) -> &str {
        match self {
            AssetTarget::Version { name, .. }
            | AssetTarget::Alias { name, .. }
            | AssetTarget::Stage { name, .. } => name,
        }
    }
}

/// A guarded asset's `model` that names no target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model = {text:?} is not NAME/VERSION, NAME@alias or NAME:stage")]
pub struct TargetError {
    /// What was written.
    pub text: String,
}

/// What is wrong with a `[guard]` table's assets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPolicy {
    /// An asset without an id.
    #[error("asset #{0}: `id` is empty")]
    EmptyId(usize),
    /// Two assets with one id.
    #[error("asset id {0:?} appears twice")]
    DuplicateId(String),
    /// An asset whose target does not parse.
    #[error("asset {id:?}: {source}")]
    Target {
        /// The asset.
        id: String,
        /// Why.
        #[source]
        source: TargetError,
    },
    /// An asset checked every 0 s.
    #[error("asset {0:?}: `interval` must be at least 1 second")]
    ZeroInterval(String),
    /// An asset whose `workspace` cannot name an MLflow workspace.
    #[error("asset {id:?}: workspace = {workspace:?} is not an MLflow workspace name (2 to 63 lowercase letters, digits and inner hyphens)")]
    Workspace {
        /// The asset.
        id: String,
        /// What was written.
        workspace: String,
    },
}

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
#[error("config file {path}: [guard]: {cause}")]
pub struct PolicyError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub cause: String,
}

/// `900.0` read as `900`: Helm renders every number of its values as a float (`toToml`), and a
/// number of seconds is one either way.
fn whole_floats_as_integers(v: &mut toml::Value) {
    match v {
        toml::Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            *v = toml::Value::Integer(*f as i64);
        }
        toml::Value::Array(items) => items.iter_mut().for_each(whole_floats_as_integers),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| whole_floats_as_integers(v)),
        _ => {}
    }
}

impl GuardPolicy {
    /// The `[guard]` table of a configuration file; `Ok(None)` when it has none.
    pub fn load(path: &Path) -> Result<Option<GuardPolicy>, PolicyError> {
        let err = |cause: String| PolicyError {
            path: path.display().to_string(),
            cause,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| err(e.to_string()))?;
        let Some(mut guard) = table.remove("guard") else {
            return Ok(None);
        };
        whole_floats_as_integers(&mut guard);
        let policy: GuardPolicy = guard
            .try_into()
            .map_err(|e: toml::de::Error| err(e.message().to_string()))?;
        policy.validate().map_err(|e| err(e.to_string()))?;
        Ok(Some(policy))
    }

    /// Ids unique and not empty, every target parseable, intervals at least 1 s, workspaces
    /// named as MLflow names them.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, a) in self.assets.iter().enumerate() {
            if a.id.trim().is_empty() {
                return Err(InvalidPolicy::EmptyId(i));
            }
            if !seen.insert(a.id.as_str()) {
                return Err(InvalidPolicy::DuplicateId(a.id.clone()));
            }
            AssetTarget::parse(&a.model).map_err(|source| InvalidPolicy::Target {
                id: a.id.clone(),
                source,
            })?;
            if a.interval == 0 {
                return Err(InvalidPolicy::ZeroInterval(a.id.clone()));
            }
            if let Some(w) = a
                .workspace
                .as_ref()
                .filter(|w| !crate::mlflow::is_workspace_name(w))
            {
                return Err(InvalidPolicy::Workspace {
                    id: a.id.clone(),
                    workspace: w.clone(),
                });
            }
        }
        Ok(())
    }

    /// SHA-256 (hex) of the policy's canonical JSON.
    pub fn policy_hash(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        sha256_hex(&jcs::canonicalize(&value).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn the_guard_table_parses_with_defaults_and_a_stable_hash() {
        let f = file(
            "poll_interval = 5\n[guard]\ntenant_id = \"acme\"\nagent_id = \"a1\"\n[[guard.asset]]\nid = \"m-prod\"\nmodel = \"m/1\"\n[[guard.asset]]\nid = \"m-champ\"\nmodel = \"m@champion\"\nmax_age = 30\ninterval = 5\n",
        );
        let p = GuardPolicy::load(f.path()).unwrap().unwrap();
        assert_eq!(p.assets.len(), 2);
        assert_eq!(
            (p.assets[0].max_age, p.assets[0].interval),
            (DEFAULT_MAX_AGE, DEFAULT_INTERVAL)
        );
        assert_eq!(p.policy_hash().len(), 64);
        assert_eq!(p.policy_hash(), p.clone().policy_hash());
        let mut other = p.clone();
        other.assets[1].max_age = 31;
        assert_ne!(p.policy_hash(), other.policy_hash());
        assert!(GuardPolicy::load(file("poll_interval = 1\n").path())
            .unwrap()
            .is_none());
    }

    #[test]
    fn unknown_keys_and_bad_targets_are_errors() {
        let e = GuardPolicy::load(
            file("[guard]\ntenant_id = \"t\"\nagent_id = \"a\"\ncolour = 1\n").path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = GuardPolicy::load(file("[guard]\ntenant_id = \"t\"\nagent_id = \"a\"\n[[guard.asset]]\nid = \"x\"\nmodel = \"m/1\"\nmaxage = 3\n").path()).unwrap_err();
        assert!(e.to_string().contains("maxage"), "{e}");
        let e = GuardPolicy::load(file("[guard]\ntenant_id = \"t\"\nagent_id = \"a\"\n[[guard.asset]]\nid = \"x\"\nmodel = \"just-a-name\"\n").path()).unwrap_err();
        assert!(e.to_string().contains("NAME/VERSION"), "{e}");
        assert_eq!(
            AssetTarget::parse("team/model/3").unwrap(),
            AssetTarget::Version {
                name: "team/model".into(),
                version: "3".into()
            }
        );
        assert_eq!(
            AssetTarget::parse("m:Production").unwrap(),
            AssetTarget::Stage {
                name: "m".into(),
                stage: "Production".into()
            }
        );
    }

    #[test]
    fn an_asset_names_its_workspace_and_the_hash_of_a_policy_without_one_is_unchanged() {
        let base = "[guard]\ntenant_id = \"t\"\nagent_id = \"a\"\n[[guard.asset]]\nid = \"x\"\nmodel = \"fraud/3\"\n";
        let plain = GuardPolicy::load(file(base).path()).unwrap().unwrap();
        assert_eq!(plain.assets[0].workspace, None);
        // The policy hash of a file written before workspaces stays what it was.
        let value = serde_json::to_value(&plain).unwrap();
        assert!(value["asset"][0].get("workspace").is_none(), "{value}");
        let named = GuardPolicy::load(file(&format!("{base}workspace = \"team-b\"\n")).path())
            .unwrap()
            .unwrap();
        assert_eq!(named.assets[0].workspace.as_deref(), Some("team-b"));
        assert_ne!(plain.policy_hash(), named.policy_hash());
        for bad in ["Team_B", "-b", "x", "a.b"] {
            let e = GuardPolicy::load(file(&format!("{base}workspace = \"{bad}\"\n")).path())
                .unwrap_err();
            assert!(
                e.to_string().contains("not an MLflow workspace name"),
                "{bad}: {e}"
            );
        }
    }
}
