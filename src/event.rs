//! What every source produces and the store and the pipeline consume: the [`ChangeEvent`].
//!
//! A change event carries identities only (never payloads — the pipeline resolves those from
//! MLflow when it acts). Its dedupe key (docs/architecture.md §2) is the job key in the store, so the same
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
        /// The training chain key (`rm/<name>` or `exp/<id>`) the source fixed when it
        /// detected the run — set by `feed` (the run's partition key in Kafka), so every
        /// instance signs the run onto the chain its partition owns. `None`: the pipeline
        /// decides when it anchors (poller mode).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chain: Option<String>,
        /// The run's `end_time` (ms) when it was seen finished. A run re-opened and finished
        /// again has a new one, so its final state is a new event (a training proof that
        /// supersedes the earlier). `None` in events written before it existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end_time: Option<i64>,
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
        /// The version's `creation_timestamp` (ms): a model deleted and re-created under the
        /// same name has new versions with the same numbers, told apart by it (the store keeps
        /// the earlier one's job under `mv/<name>/<version>@<created_ms>`). `None` from sources
        /// that do not know it (webhooks) and in events written before it existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_ms: Option<i64>,
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
    /// A registered model was renamed (its versions, tags and aliases moved with it).
    ModelRenamed {
        /// The name before.
        from: String,
        /// The name after.
        to: String,
        /// The model's `last_updated_timestamp` after the rename (ms): renamed back and forth,
        /// each rename is its own event.
        updated_ms: i64,
    },
    /// A batch of one version's predictions sealed into a Merkle checkpoint (made by the
    /// pipeline in `--predictions batched` mode, never detected from a source).
    PredictionCheckpoint {
        /// Registered model name.
        name: String,
        /// Version.
        version: String,
        /// The checkpoint's TX (data item id), fixed when the batch was sealed.
        tx_id: String,
    },
}

impl ChangeEvent {
    /// The dedupe key (docs/architecture.md §2), also the job key.
    pub fn dedupe_key(&self) -> String {
        match self {
            ChangeEvent::RunFinished {
                run_id, end_time, ..
            } => match end_time {
                Some(t) => format!("run/{run_id}@{t}"),
                None => format!("run/{run_id}"),
            },
            ChangeEvent::DatasetInput { name, digest, .. } => format!("dataset/{name}/{digest}"),
            // The creation time is not part of the key (a webhook does not know it): the
            // store tells a re-created version apart by it (`Store::detect`).
            ChangeEvent::ModelVersionCreated { name, version, .. } => {
                format!("mv/{name}/{version}")
            }
            ChangeEvent::ModelRenamed {
                from,
                to,
                updated_ms,
            } => format!("rename/{from}/{to}/{updated_ms}"),
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
            ChangeEvent::PredictionCheckpoint {
                name,
                version,
                tx_id,
            } => format!("checkpoint/{name}/{version}/{tx_id}"),
        }
    }

    /// The envelope `event_type` it becomes.
    pub fn event_type(&self) -> &'static str {
        match self {
            ChangeEvent::RunFinished { .. } => profile::training::EVENT_TYPE,
            ChangeEvent::DatasetInput { .. } => profile::dataset::EVENT_TYPE,
            ChangeEvent::ModelVersionCreated { .. } => profile::registration::EVENT_TYPE,
            ChangeEvent::ModelRenamed { .. } => profile::rename::EVENT_TYPE,
            ChangeEvent::StageChanged { .. } => profile::promotion::EVENT_TYPE,
            ChangeEvent::AliasChanged { .. } => profile::alias::EVENT_TYPE,
            ChangeEvent::TraceLogged { .. } => profile::prediction::EVENT_TYPE,
            ChangeEvent::PredictionCheckpoint { .. } => profile::checkpoint::EVENT_TYPE,
        }
    }
}

impl ChangeEvent {
    /// A finished run whose chain the pipeline decides.
    pub fn run(run_id: impl Into<String>) -> ChangeEvent {
        ChangeEvent::RunFinished {
            run_id: run_id.into(),
            chain: None,
            end_time: None,
        }
    }

    /// A run seen FINISHED with this `end_time`, its chain decided by the pipeline.
    pub fn run_finished(run_id: impl Into<String>, end_time: Option<i64>) -> ChangeEvent {
        ChangeEvent::RunFinished {
            run_id: run_id.into(),
            chain: None,
            end_time,
        }
    }

    /// The registered model the event is about, when it is a registry event.
    pub fn model_name(&self) -> Option<&str> {
        match self {
            ChangeEvent::ModelVersionCreated { name, .. }
            | ChangeEvent::StageChanged { name, .. }
            | ChangeEvent::AliasChanged { name, .. }
            | ChangeEvent::PredictionCheckpoint { name, .. } => Some(name),
            ChangeEvent::ModelRenamed { to, .. } => Some(to),
            _ => None,
        }
    }

    /// The same event about the registered model called `name` (a registry event detected
    /// under a later name is recorded under the name the store first knew the model by, so
    /// a rename never makes one change two jobs). Other events are returned unchanged.
    pub fn with_model_name(&self, name: &str) -> ChangeEvent {
        let mut e = self.clone();
        match &mut e {
            ChangeEvent::ModelVersionCreated { name: n, .. }
            | ChangeEvent::StageChanged { name: n, .. }
            | ChangeEvent::AliasChanged { name: n, .. } => *n = name.to_string(),
            _ => {}
        }
        e
    }

    /// The key that places the event in a Kafka partition: its chain key where the event is
    /// chained in sequence (`rm/<name>` for every registry event of a model, the run's pinned
    /// training chain), else a key of its own identity (`dataset/…`, `trace/…`). It is a
    /// function of the event alone, so one dedupe key always lands in one partition. `None`
    /// for a run whose chain is not pinned yet (the source must resolve it first).
    pub fn partition_key(&self) -> Option<String> {
        match self {
            ChangeEvent::RunFinished { chain, .. } => chain.clone(),
            ChangeEvent::DatasetInput { name, digest, .. } => {
                Some(format!("dataset/{name}/{digest}"))
            }
            ChangeEvent::ModelVersionCreated { name, .. }
            | ChangeEvent::StageChanged { name, .. }
            | ChangeEvent::AliasChanged { name, .. }
            | ChangeEvent::ModelRenamed { to: name, .. } => {
                Some(ChainOwner::RegisteredModel(name.clone()).chain_key())
            }
            ChangeEvent::TraceLogged { trace_id } => Some(format!("trace/{trace_id}")),
            ChangeEvent::PredictionCheckpoint { name, version, .. } => {
                Some(profile::checkpoint::chain_key(name, version))
            }
        }
    }

    /// The entity the event is about, for logs and CloudEvents' `subject`.
    pub fn subject(&self) -> String {
        match self {
            ChangeEvent::RunFinished { run_id, .. } | ChangeEvent::DatasetInput { run_id, .. } => {
                run_id.clone()
            }
            ChangeEvent::ModelVersionCreated { name, version, .. }
            | ChangeEvent::StageChanged { name, version, .. } => format!("{name}/{version}"),
            ChangeEvent::ModelRenamed { from, to, .. } => format!("{from}→{to}"),
            ChangeEvent::AliasChanged { name, alias, .. } => format!("{name}@{alias}"),
            ChangeEvent::TraceLogged { trace_id } => trace_id.clone(),
            ChangeEvent::PredictionCheckpoint { name, version, .. } => {
                format!("{name}/{version}")
            }
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
    /// The owner a chain key names (`rm/<name>`, `exp/<id>`); `None` for anything else.
    pub fn from_chain_key(key: &str) -> Option<ChainOwner> {
        if let Some(name) = key.strip_prefix("rm/").filter(|n| !n.is_empty()) {
            return Some(ChainOwner::RegisteredModel(name.to_string()));
        }
        key.strip_prefix("exp/")
            .filter(|e| !e.is_empty())
            .map(|e| ChainOwner::Experiment(e.to_string()))
    }

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
        assert_eq!(e(ChangeEvent::run("r")), "run/r");
        let pinned = ChangeEvent::RunFinished {
            run_id: "r".into(),
            chain: Some("rm/m".into()),
            end_time: None,
        };
        assert_eq!(
            e(pinned.clone()),
            "run/r",
            "the pinned chain is not identity"
        );
        assert_eq!(pinned.partition_key().as_deref(), Some("rm/m"));
        assert_eq!(ChangeEvent::run("r").partition_key(), None);
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
                version: "2".into(),
                created_ms: None,
            }),
            "mv/m/2"
        );
        // The creation time is not identity by itself (the store compares it).
        assert_eq!(
            e(ChangeEvent::ModelVersionCreated {
                name: "m".into(),
                version: "2".into(),
                created_ms: Some(17),
            }),
            "mv/m/2"
        );
        // A run re-opened and finished again: a new event per finish.
        assert_eq!(e(ChangeEvent::run_finished("r", Some(5))), "run/r@5");
        let renamed = ChangeEvent::ModelRenamed {
            from: "a".into(),
            to: "b".into(),
            updated_ms: 3,
        };
        assert_eq!(renamed.partition_key().as_deref(), Some("rm/b"));
        assert_eq!(e(renamed), "rename/a/b/3");
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
        assert_eq!(removed.partition_key().as_deref(), Some("rm/m"));
        assert_eq!(e(removed), "alias/m/a/-/9");
        assert_eq!(
            e(ChangeEvent::TraceLogged {
                trace_id: "tr-1".into()
            }),
            "trace/tr-1"
        );
    }

    #[test]
    fn chain_keys_round_trip_to_owners() {
        for owner in [
            ChainOwner::RegisteredModel("m/x".into()),
            ChainOwner::Experiment("7".into()),
        ] {
            assert_eq!(ChainOwner::from_chain_key(&owner.chain_key()), Some(owner));
        }
        assert_eq!(ChainOwner::from_chain_key("rm/"), None);
        assert_eq!(ChainOwner::from_chain_key("trace/t"), None);
    }
}
