//! Registered models and versions: renames and re-creations, version listings, stage snapshots.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use serde_json::{json, Value};

use crate::event::ChangeEvent;
use crate::mlflow::{MlflowClient, MlflowError, RegisteredModel};
use crate::store::{Store, StoreError};

/// What the poller remembers of a version's stage: the stage, and the version's creation time
/// (so a re-created version with the same number is not diffed against its predecessor).
/// Stores written before it held the stage as a plain string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StageSnapshot {
    pub(super) stage: String,
    pub(super) created_ms: Option<i64>,
}

impl StageSnapshot {
    pub(super) fn read(v: Option<Value>) -> Option<StageSnapshot> {
        match v? {
            Value::String(stage) => Some(StageSnapshot {
                stage,
                created_ms: None,
            }),
            Value::Object(m) => Some(StageSnapshot {
                stage: m.get("stage")?.as_str()?.to_string(),
                created_ms: m.get("created_ms").and_then(Value::as_i64),
            }),
            _ => None,
        }
    }

    pub(super) fn value(&self) -> Value {
        json!({"stage": self.stage, "created_ms": self.created_ms})
    }
}

/// Diffs the registered models with what the store last saw (`models`: name → creation time):
/// a name gone whose creation time reappears under one new name is a rename (recorded in the
/// store, which moves snapshots, chains and open jobs; returned as an event); a model gone for
/// good or re-created has its snapshots dropped, without events.
pub(super) fn reconcile_models(
    store: &Store,
    models: &[RegisteredModel],
) -> Result<Vec<ChangeEvent>, StoreError> {
    let before: BTreeMap<String, i64> = store
        .snapshot("models")?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let now: BTreeMap<String, i64> = models
        .iter()
        .map(|m| (m.name.clone(), m.creation_timestamp.unwrap_or(0)))
        .collect();
    let mut events = Vec::new();
    let gone: Vec<(&String, &i64)> = before
        .iter()
        .filter(|(n, _)| !now.contains_key(*n))
        .collect();
    for (old, created) in gone {
        let renamed: Vec<&RegisteredModel> = models
            .iter()
            .filter(|m| {
                m.creation_timestamp == Some(*created)
                    && *created != 0
                    && !before.contains_key(&m.name)
            })
            .collect();
        match renamed.as_slice() {
            [to] => {
                tracing::info!(from = %old, to = %to.name, "registered model renamed");
                store.record_rename(old, &to.name)?;
                events.push(ChangeEvent::ModelRenamed {
                    from: old.clone(),
                    to: to.name.clone(),
                    updated_ms: to.last_updated_timestamp.unwrap_or(0),
                });
            }
            _ => {
                tracing::info!(model = %old, "registered model deleted; its snapshots are dropped");
                drop_snapshots(store, old)?;
            }
        }
    }
    for (name, created) in &now {
        if before.get(name).is_some_and(|b| b != created && *b != 0) {
            tracing::info!(model = %name, "registered model deleted and re-created; the old one's snapshots are dropped");
            drop_snapshots(store, name)?;
        }
    }
    if before != now {
        store.set_snapshot("models", &json!(now))?;
    }
    Ok(events)
}

/// Forgets what the poller saw of model `name` (its stages and aliases).
pub(super) fn drop_snapshots(store: &Store, name: &str) -> Result<(), StoreError> {
    store.remove_snapshot(&format!("aliases/{name}"))?;
    for key in store.snapshot_keys(&format!("stage/{name}/"))? {
        if !key[format!("stage/{name}/").len()..].contains('/') {
            store.remove_snapshot(&key)?;
        }
    }
    Ok(())
}

/// Set once the server refused `tags.… IS NULL` in a run search.
pub(super) static NO_TAG_IS_NULL: AtomicBool = AtomicBool::new(false);

pub(super) async fn model_versions(
    mlflow: &MlflowClient,
) -> Result<Vec<crate::mlflow::ModelVersion>, MlflowError> {
    Ok(oldest_first(mlflow.search_model_versions("").await?))
}

/// Oldest first, so registrations are detected in creation order.
pub(super) fn oldest_first(
    mut all: Vec<crate::mlflow::ModelVersion>,
) -> Vec<crate::mlflow::ModelVersion> {
    all.sort_by_key(|mv| {
        (
            mv.creation_timestamp.unwrap_or(0),
            mv.name.clone(),
            mv.version.parse::<u64>().unwrap_or(0),
        )
    });
    all
}
