//! Tamper and missing events: when an asset moves from `verified` to `tampered` (or to
//! `missing`), one `ario.agent/v1` envelope — shaped like the corpus vectors
//! `envelope-tamper-detected-01.json` / `envelope-asset-missing-01.json` (inline payload with the
//! asset, the baseline and what was observed) — is signed, kept, and uploaded, once per
//! transition.
//!
//! Durability, in `<state-dir>/guard/`: `state.json` keeps each asset's last decisive outcome
//! (what a restart compares its first check with) and the head of the agent's event chain;
//! `events/<key>.json` keeps each signed event (envelope and data-item bytes) until Turbo accepts
//! it. Every file is written to a temporary name, synced and renamed. The key of an event is a
//! hash of the transition (asset, kind, the baseline proof, when it was last verified, what was
//! observed), so a crash after signing and before the state is written finds the file on the
//! next check and signs nothing twice; an event signed but not uploaded is uploaded again (the
//! same bytes, the same id) on every check until it is.
//!
//! The files are read once, when the guard starts ([`GuardEvents::open`], off the runtime);
//! from then on the state and the events live in memory and every write (a sync and a rename)
//! runs on the blocking pool, never on a runtime thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::policy::AssetPolicy;
use super::{GuardError, Observation, Outcome};
use crate::arweave::{DataItem, ItemSigner, TurboClient};
use crate::keys::EnvelopeKey;
use crate::profile::envelope::python_isoformat;
use crate::proof::{sha256_hex, sign_envelope};

/// The agent profile's spec version.
pub const AGENT_SPEC_VERSION: &str = "ario.agent/v1";

/// An asset's last decisive outcome, as kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeptAsset {
    /// `verified`, `tampered` or `missing` (`unavailable` is never kept: it decides nothing).
    pub outcome: Option<Outcome>,
    /// When it was last verified (RFC 3339).
    pub last_verified_at: Option<String>,
    /// The version last verified.
    pub version: Option<String>,
    /// Its registration TX.
    pub tx_id: Option<String>,
    /// Its anchored `ario.artifact_hash`.
    pub baseline_hash: Option<String>,
    /// The version's creation time (RFC 3339), the baseline's `registered_at`.
    pub registered_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kept {
    assets: BTreeMap<String, KeptAsset>,
    /// The TX of the agent's newest event (`previous_hash` of the next one).
    head: Option<String>,
}

/// One signed event, kept until uploaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptEvent {
    /// The transition's key.
    pub key: String,
    /// The asset.
    pub asset_id: String,
    /// `tamper_detected` or `asset_missing`.
    pub event_type: String,
    /// The signed envelope.
    pub envelope: Value,
    /// The data item (base64).
    pub item_b64: String,
    /// Its id.
    pub tx_id: String,
    /// Turbo accepted it.
    pub uploaded: bool,
}

/// Signs, keeps and uploads the guard's events.
pub struct GuardEvents {
    dir: PathBuf,
    key: EnvelopeKey,
    signer: ItemSigner,
    turbo: TurboClient,
    tenant_id: String,
    agent_id: String,
    policy_hash: String,
    /// The kept state; held while it is written, so writes of `state.json` never interleave.
    kept: tokio::sync::Mutex<Kept>,
    /// Every event signed, by key (as `events/<key>.json` holds them).
    log: std::sync::Mutex<BTreeMap<String, KeptEvent>>,
}

impl std::fmt::Debug for GuardEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardEvents")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), GuardError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| GuardError::io("write", path, e))
}

/// [`write_atomically`] on the blocking pool.
async fn write_off_runtime(path: PathBuf, bytes: Vec<u8>) -> Result<(), GuardError> {
    tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
        .await
        .map_err(|e| GuardError::Task(e.to_string()))?
}

impl GuardEvents {
    /// Opens (or creates) `<state_dir>/guard/` and reads what it keeps (blocking file I/O:
    /// call it off the runtime, e.g. in `spawn_blocking`).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        state_dir: &Path,
        key: EnvelopeKey,
        signer: ItemSigner,
        turbo: TurboClient,
        tenant_id: &str,
        agent_id: &str,
        policy_hash: &str,
    ) -> Result<GuardEvents, GuardError> {
        let dir = state_dir.join("guard");
        std::fs::create_dir_all(dir.join("events"))
            .map_err(|e| GuardError::io("create", &dir, e))?;
        let state = dir.join("state.json");
        let kept = match std::fs::read(&state) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| GuardError::State {
                path: state,
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kept::default(),
            Err(e) => return Err(GuardError::io("read", state, e)),
        };
        let events_dir = dir.join("events");
        let entries =
            std::fs::read_dir(&events_dir).map_err(|e| GuardError::io("read", &events_dir, e))?;
        let mut log = BTreeMap::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<KeptEvent>(&b).ok())
            {
                Some(event) => {
                    log.insert(event.key.clone(), event);
                }
                None => {
                    tracing::warn!(file = %path.display(), "guard: a kept event cannot be read; ignored")
                }
            }
        }
        Ok(GuardEvents {
            dir,
            key,
            signer,
            turbo,
            tenant_id: tenant_id.into(),
            agent_id: agent_id.into(),
            policy_hash: policy_hash.into(),
            kept: tokio::sync::Mutex::new(kept),
            log: std::sync::Mutex::new(log),
        })
    }

    /// What is kept of an asset.
    pub async fn kept(&self, asset_id: &str) -> Option<KeptAsset> {
        self.kept.lock().await.assets.get(asset_id).cloned()
    }

    /// The events signed so far (uploaded or not).
    pub fn events(&self) -> Vec<KeptEvent> {
        self.lock_log().values().cloned().collect()
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, KeptEvent>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event_path(&self, key: &str) -> PathBuf {
        self.dir.join("events").join(format!("{key}.json"))
    }

    /// Takes one observation of `asset` (index `index` in the policy): on a `verified` →
    /// `tampered`/`missing` transition signs and keeps one event; keeps the decisive outcome;
    /// uploads what is pending.
    pub async fn observe(
        &self,
        asset: &AssetPolicy,
        index: usize,
        o: &Observation,
    ) -> Result<(), GuardError> {
        let mut kept = self.kept.lock().await;
        let before = kept.assets.get(&asset.id).cloned().unwrap_or_default();
        let transition = before.outcome == Some(Outcome::Verified)
            && matches!(o.outcome, Outcome::Tampered | Outcome::Missing);
        if transition {
            let kind = if o.outcome == Outcome::Tampered {
                "tamper_detected"
            } else {
                "asset_missing"
            };
            let key = sha256_hex(
                format!(
                    "{}\n{kind}\n{}\n{}\n{}",
                    asset.id,
                    before.tx_id.as_deref().unwrap_or(""),
                    before.last_verified_at.as_deref().unwrap_or(""),
                    o.observed_hash.as_deref().unwrap_or(""),
                )
                .as_bytes(),
            );
            let existing = self.lock_log().get(&key).cloned();
            let event = match existing {
                Some(existing) => existing,
                None => {
                    let event =
                        self.sign(asset, index, kind, &key, &before, o, kept.head.as_deref())?;
                    write_off_runtime(
                        self.event_path(&key),
                        serde_json::to_vec_pretty(&event).unwrap_or_default(),
                    )
                    .await?;
                    self.lock_log().insert(key.clone(), event.clone());
                    tracing::warn!(asset = %asset.id, event_type = kind, tx = %event.tx_id, files = ?o.changed_files, reason = %o.reason, "guard: {kind} event signed");
                    crate::telemetry::guard_event(if kind == "tamper_detected" {
                        "tamper_detected"
                    } else {
                        "asset_missing"
                    });
                    event
                }
            };
            kept.head = Some(event.tx_id.clone());
        }
        match o.outcome {
            Outcome::Verified => {
                kept.assets.insert(
                    asset.id.clone(),
                    KeptAsset {
                        outcome: Some(Outcome::Verified),
                        last_verified_at: Some(python_isoformat(time::OffsetDateTime::now_utc())),
                        version: o.version.clone(),
                        tx_id: o.tx_id.clone(),
                        baseline_hash: o.baseline_hash.clone(),
                        registered_at: o.registered_at.clone(),
                    },
                );
            }
            Outcome::Tampered | Outcome::Missing => {
                let entry = kept.assets.entry(asset.id.clone()).or_default();
                entry.outcome = Some(o.outcome);
            }
            Outcome::Unavailable | Outcome::Unknown => {}
        }
        if transition || o.outcome != Outcome::Unavailable {
            let bytes = serde_json::to_vec_pretty(&*kept).unwrap_or_default();
            write_off_runtime(self.dir.join("state.json"), bytes).await?;
        }
        drop(kept);
        self.upload_pending().await;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn sign(
        &self,
        asset: &AssetPolicy,
        index: usize,
        kind: &str,
        key: &str,
        before: &KeptAsset,
        o: &Observation,
        head: Option<&str>,
    ) -> Result<KeptEvent, GuardError> {
        let now = python_isoformat(time::OffsetDateTime::now_utc());
        let version = before.version.clone().unwrap_or_default();
        let name = super::policy::AssetTarget::parse(&asset.model)
            .map(|t| t.name().to_string())
            .unwrap_or_default();
        let asset_json = json!({
            "asset_id": asset.id,
            "policy_asset_index": index,
            "type": "mlflow_model_version",
            "uri": format!("models:/{name}/{version}"),
            "model": asset.model,
        });
        let baseline = json!({
            "hash": before.baseline_hash,
            "registered_at": before.registered_at,
            "tx_id": before.tx_id,
            "version": before.version,
            "verified_at": before.last_verified_at,
        });
        let payload = if kind == "tamper_detected" {
            json!({
                "asset": asset_json,
                "baseline": baseline,
                "observed": {
                    "detected_at": now,
                    "hash": o.observed_hash,
                    "changed_files": o.changed_files,
                    "reason": o.reason,
                },
                "policy_hash": self.policy_hash,
            })
        } else {
            json!({
                "asset": asset_json,
                "baseline": baseline,
                "detected_at": now,
                "observed": {"version": o.version, "reason": o.reason},
                "policy_hash": self.policy_hash,
            })
        };
        let unsigned = json!({
            "spec_version": AGENT_SPEC_VERSION,
            "event_id": uuid::Uuid::new_v4().to_string(),
            "event_type": kind,
            "subject": {"type": "agent", "tenant_id": self.tenant_id, "agent_id": self.agent_id},
            "previous_hash": head.unwrap_or(crate::profile::GENESIS),
            "signed_at": now,
            "payload": payload,
        });
        let envelope =
            sign_envelope(&unsigned, &self.key).map_err(|e| GuardError::Sign(e.to_string()))?;
        let item: DataItem = crate::anchor::sign::envelope_item(&envelope, &self.signer, None)
            .map_err(|e| GuardError::Sign(e.to_string()))?;
        Ok(KeptEvent {
            key: key.to_string(),
            asset_id: asset.id.clone(),
            event_type: kind.to_string(),
            envelope,
            item_b64: base64::engine::general_purpose::STANDARD.encode(item.to_bytes()),
            tx_id: item.id(),
            uploaded: false,
        })
    }

    /// Uploads every kept event Turbo has not accepted yet (the same bytes each time).
    pub async fn upload_pending(&self) {
        let pending: Vec<KeptEvent> = self
            .lock_log()
            .values()
            .filter(|e| !e.uploaded)
            .cloned()
            .collect();
        for mut event in pending {
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&event.item_b64)
            else {
                tracing::warn!(key = %event.key, "guard: a kept event's item is not base64; skipped");
                continue;
            };
            match self.turbo.upload(&bytes).await {
                Ok(_) => {
                    event.uploaded = true;
                    self.lock_log().insert(event.key.clone(), event.clone());
                    match write_off_runtime(
                        self.event_path(&event.key),
                        serde_json::to_vec_pretty(&event).unwrap_or_default(),
                    )
                    .await
                    {
                        Ok(()) => {
                            tracing::warn!(asset = %event.asset_id, event_type = %event.event_type, tx = %event.tx_id, "guard: event anchored")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "guard: uploaded, but the record was not updated (it is re-uploaded, harmlessly)")
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(asset = %event.asset_id, tx = %event.tx_id, error = %e, "guard: event upload failed; retrying at the next check")
                }
            }
        }
    }
}
