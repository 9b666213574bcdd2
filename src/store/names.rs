//! Registered-model renames, the poller's snapshots and cursors, and chain heads.

use std::collections::BTreeMap;

use super::{decode, encode, entries, ChainHead, JournalEntry, Store, StoreError};

impl Store {
    /// The name the store first knew a renamed model by (`None`: never renamed).
    pub fn first_name(&self, name: &str) -> Option<String> {
        let v = self.renames.get(format!("first/{name}")).ok()??;
        Some(String::from_utf8_lossy(&v).into_owned())
    }

    /// Every rename known: former name → current name.
    pub fn renames(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let mut out = BTreeMap::new();
        for entry in self.renames.scan_prefix("cur/") {
            let (k, v) = entry?;
            out.insert(
                String::from_utf8_lossy(&k[4..]).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
        Ok(out)
    }

    /// Records that registered model `from` is now called `to`, and moves what the store keeps
    /// under the old name to the new one: the poller's stage and alias snapshots, the training
    /// and checkpoint chain heads (when the new name has none), and every open job's event and
    /// signed MLflow writes (so in-flight jobs follow the model instead of failing on the old
    /// name). Idempotent.
    pub fn record_rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        if from == to {
            return Ok(());
        }
        let first = self.first_name(from).unwrap_or_else(|| from.to_string());
        for entry in self.renames.scan_prefix("cur/") {
            let (k, v) = entry?;
            if v.as_ref() == from.as_bytes() {
                self.renames.insert(k, to.as_bytes())?;
            }
        }
        self.renames.insert(format!("cur/{from}"), to.as_bytes())?;
        self.renames.remove(format!("cur/{to}"))?;
        self.renames.remove(format!("first/{from}"))?;
        if first != to {
            self.renames
                .insert(format!("first/{to}"), first.as_bytes())?;
        } else {
            self.renames.remove(format!("first/{to}"))?;
        }
        // Snapshots: `stage/<name>/<version>` and `aliases/<name>`.
        let stage_prefix = format!("stage/{from}/");
        for entry in self.snapshots.scan_prefix(stage_prefix.as_bytes()) {
            let (k, v) = entry?;
            let version = String::from_utf8_lossy(&k[stage_prefix.len()..]).into_owned();
            if !version.contains('/') {
                self.snapshots
                    .insert(format!("stage/{to}/{version}").as_bytes(), v)?;
                self.snapshots.remove(k)?;
            }
        }
        if let Some(v) = self.snapshots.remove(format!("aliases/{from}"))? {
            self.snapshots.insert(format!("aliases/{to}"), v)?;
        }
        // Chain heads.
        let mut moved = Vec::new();
        let old_rm = format!("rm/{from}");
        let old_checkpoints = format!("mlflow-predictions:{from}/");
        for entry in self.chains.iter() {
            let (k, v) = entry?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let new_key = if key == old_rm {
                format!("rm/{to}")
            } else if let Some(version) = key.strip_prefix(&old_checkpoints) {
                format!("mlflow-predictions:{to}/{version}")
            } else {
                continue;
            };
            if self.chains.get(new_key.as_bytes())?.is_none() {
                moved.push((new_key, decode::<ChainHead>(&key, &v)?));
            }
        }
        for (key, head) in moved {
            self.journaled_change(
                || {
                    self.chains.insert(key.as_bytes(), encode(&head))?;
                    Ok(())
                },
                |_| {
                    vec![JournalEntry::Chain {
                        chain_key: key.clone(),
                        head: head.clone(),
                    }]
                },
            )?;
        }
        // Open jobs follow the model.
        for job in self.open_jobs()? {
            if job.event.model_name() != Some(from)
                && !job.prepared.as_ref().is_some_and(|p| p.names_model(from))
            {
                continue;
            }
            self.update(&job.key, |j| {
                if j.event.model_name() == Some(from) {
                    j.event = j.event.with_model_name(to);
                }
                if let Some(p) = &mut j.prepared {
                    p.rename_model(from, to);
                }
            })?;
        }
        Ok(())
    }

    /// Removes a snapshot (a deleted model's, without events).
    pub fn remove_snapshot(&self, key: &str) -> Result<(), StoreError> {
        self.snapshots.remove(key.as_bytes())?;
        Ok(())
    }

    /// Every snapshot key starting with `prefix`.
    pub fn snapshot_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.snapshots
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// A chain's head.
    pub fn chain_head(&self, chain_key: &str) -> Result<Option<ChainHead>, StoreError> {
        self.chains
            .get(chain_key.as_bytes())?
            .map(|v| decode(chain_key, &v))
            .transpose()
    }

    /// Every chain head.
    pub fn chain_heads(&self) -> Result<Vec<(String, ChainHead)>, StoreError> {
        entries(&self.chains)
    }

    /// A source cursor (JSON).
    pub fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.cursors
            .get(name.as_bytes())?
            .map(|v| decode(name, &v))
            .transpose()
    }

    /// Saves a source cursor.
    pub fn set_cursor(&self, name: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.cursors.insert(name.as_bytes(), encode(value))?;
        Ok(())
    }

    /// Every cursor.
    pub fn cursors(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        entries(&self.cursors)
    }

    /// What the poller last saw under `key` (a version's stage, a model's aliases).
    pub fn snapshot(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.snapshots
            .get(key.as_bytes())?
            .map(|v| decode(key, &v))
            .transpose()
    }

    /// Saves a snapshot.
    pub fn set_snapshot(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.snapshots.insert(key.as_bytes(), encode(value))?;
        Ok(())
    }
}
