//! What every source produces and the store and the pipeline consume: the [`ChangeEvent`].
//!
//! A change event carries identities only (never payloads — the pipeline resolves those from
//! MLflow when it acts). Its dedupe key (DESIGN.md §2) is the job key in the store, so the same
//! event detected twice, by two sources or after a restart, is one job. Its chain (the
//! [`ChainOwner`] and its [`ChainOwner::chain_key`]) decides which events are signed in order.
//!
//! This module imports nothing of the crate but the profile's event-type names: the poller, the
//! Kafka and webhook sources, the store and the pipeline all meet here.

use serde::{Deserialize, Serialize};

use crate::profile;

/// Something that happened in MLflow and deserves a proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeEvent {
    /// A run reached FINISHED.
    RunFinished {
        /// Run id.
        run_id: String,
    },
    /// A dataset input of an anchored run.
    DatasetInput {
        /// The run that logged it.
        run_id: String,
        /// Dataset name.
        name: String,
        /// Dataset digest.
        digest: String,
    },
    /// A new model version.
    ModelVersionCreated {
        /// Registered model.
        name: String,
        /// Version.
        version: String,
    },
    /// A version's stage changed.
    StageChanged {
        /// Registered model.
        name: String,
        /// Version.
        version: String,
        /// Stage before.
        from: String,
        /// Stage after.
        to: String,
        /// The version's `last_updated_timestamp` when seen.
        last_updated_ms: i64,
    },
    /// An alias was set, moved or removed.
    AliasChanged {
        /// Registered model.
        name: String,
        /// Alias.
        alias: String,
        /// Version it points at now (`None`: removed).
        version: Option<String>,
        /// Version it pointed at before.
        previous: Option<String>,
        /// When the change was seen (ms).
        seen_ms: i64,
    },
    /// A trace (prediction) was logged.
    TraceLogged {
        /// Trace id.
        trace_id: String,
    },
}

impl ChangeEvent {
    /// The dedupe key (DESIGN.md §2), also the job key.
    pub fn dedupe_key(&self) -> String {
        match self {
            ChangeEvent::RunFinished { run_id } => format!("run/{run_id}"),
            ChangeEvent::DatasetInput { name, digest, .. } => format!("dataset/{name}/{digest}"),
            ChangeEvent::ModelVersionCreated { name, version } => format!("mv/{name}/{version}"),
            ChangeEvent::StageChanged {
                name,
                version,
                from,
                to,
                last_updated_ms,
            } => format!("stage/{name}/{version}/{from}/{to}/{last_updated_ms}"),
            ChangeEvent::AliasChanged {
                name,
                alias,
                version,
                seen_ms,
                ..
            } => {
                format!(
                    "alias/{name}/{alias}/{}/{seen_ms}",
                    version.as_deref().unwrap_or("-")
                )
            }
            ChangeEvent::TraceLogged { trace_id } => format!("trace/{trace_id}"),
        }
    }

    /// The envelope `event_type` it becomes.
    pub fn event_type(&self) -> &'static str {
        match self {
            ChangeEvent::RunFinished { .. } => profile::training::EVENT_TYPE,
            ChangeEvent::DatasetInput { .. } => profile::dataset::EVENT_TYPE,
            ChangeEvent::ModelVersionCreated { .. } => profile::registration::EVENT_TYPE,
            ChangeEvent::StageChanged { .. } => profile::promotion::EVENT_TYPE,
            ChangeEvent::AliasChanged { .. } => profile::alias::EVENT_TYPE,
            ChangeEvent::TraceLogged { .. } => profile::prediction::EVENT_TYPE,
        }
    }
}

/// Who owns a training chain head (and its `ario.last_training_hash` tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainOwner {
    /// The registered model the run's model is registered to.
    RegisteredModel(String),
    /// The run's experiment (no registered model).
    Experiment(String),
}

impl ChainOwner {
    /// The chain key used by the durable service (`rm/<name>` or `exp/<id>`).
    pub fn chain_key(&self) -> String {
        match self {
            ChainOwner::RegisteredModel(n) => format!("rm/{n}"),
            ChainOwner::Experiment(e) => format!("exp/{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_keys_follow_the_design_table() {
        let e = |ev: ChangeEvent| ev.dedupe_key();
        assert_eq!(e(ChangeEvent::RunFinished { run_id: "r".into() }), "run/r");
        assert_eq!(
            e(ChangeEvent::DatasetInput {
                run_id: "r".into(),
                name: "n".into(),
                digest: "d".into()
            }),
            "dataset/n/d"
        );
        assert_eq!(
            e(ChangeEvent::ModelVersionCreated {
                name: "m".into(),
                version: "2".into()
            }),
            "mv/m/2"
        );
        let stage = ChangeEvent::StageChanged {
            name: "m".into(),
            version: "2".into(),
            from: "None".into(),
            to: "Staging".into(),
            last_updated_ms: 7,
        };
        assert_eq!(e(stage), "stage/m/2/None/Staging/7");
        let removed = ChangeEvent::AliasChanged {
            name: "m".into(),
            alias: "a".into(),
            version: None,
            previous: Some("1".into()),
            seen_ms: 9,
        };
        assert_eq!(e(removed), "alias/m/a/-/9");
        assert_eq!(
            e(ChangeEvent::TraceLogged {
                trace_id: "tr-1".into()
            }),
            "trace/tr-1"
        );
    }
}
