//! The guard: keeps re-verifying what is anchored and answers the plugin's verify-status gate.
//!
//! For every asset of the policy ([`policy`]), every `interval` seconds: resolve the version the
//! asset names now (fixed, an alias, the latest in a stage), then run the checks `verify model`
//! runs on its registration proof and on its source run's training proof — proof found on a
//! gateway, data item, signature, pinned key, anchored bytes, and the live refetch, which
//! re-hashes every model file against the anchored `artifact_checksums`. The result maps to the
//! contract's outcomes (spec/mlflow-profile.md §5.7):
//!
//! | outcome | when |
//! |---|---|
//! | `verified` | every check passes |
//! | `tampered` | a check failed: files or record differ from what is anchored, a bad signature |
//! | `missing` | the asset's current version (or alias, or stage) has no proof, or does not exist |
//! | `unavailable` | MLflow or every gateway could not be asked |
//! | `unknown` | not checked yet |
//!
//! `stale` is true when the last `verified` check is older than the asset's `max_age` (or there
//! was none). Checks of different assets run at most [`MAX_CONCURRENT_CHECKS`] at a time; one
//! asset is checked by one task, so its model is never re-hashed twice at once.

mod error;
pub mod events;
pub mod policy;

pub use error::GuardError;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::mlflow::{MlflowClient, MlflowError};
use crate::profile::{registration, training};
use crate::verify::{Entity, ProofVerdict, Verifier};
use policy::{AssetPolicy, AssetTarget, GuardPolicy};

/// Asset checks running at once (each may re-hash a whole model).
pub const MAX_CONCURRENT_CHECKS: usize = 2;

/// The contract's outcome vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every check passed.
    Verified,
    /// What is anchored and what MLflow holds differ.
    Tampered,
    /// No proof for the asset's current version.
    Missing,
    /// MLflow or every gateway unreachable.
    Unavailable,
    /// Not checked yet.
    Unknown,
}

impl Outcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::Tampered => "tampered",
            Outcome::Missing => "missing",
            Outcome::Unavailable => "unavailable",
            Outcome::Unknown => "unknown",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The outcome.
    pub outcome: Outcome,
    /// The version checked (`None` when it could not be resolved).
    pub version: Option<String>,
    /// The registration TX of that version.
    pub tx_id: Option<String>,
    /// Why, for logs and `detail`.
    pub reason: String,
    /// Model files that changed, went missing or appeared.
    pub changed_files: Vec<String>,
    /// The anchored `ario.artifact_hash` of the version's source run.
    pub baseline_hash: Option<String>,
    /// The artifact hash of the model files as they are now (computed when tampered).
    pub observed_hash: Option<String>,
    /// The version's creation time (RFC 3339).
    pub registered_at: Option<String>,
}

impl Observation {
    fn new(
        outcome: Outcome,
        version: Option<String>,
        tx_id: Option<String>,
        reason: String,
    ) -> Observation {
        Observation {
            outcome,
            version,
            tx_id,
            reason,
            changed_files: Vec::new(),
            baseline_hash: None,
            observed_hash: None,
            registered_at: None,
        }
    }
}

/// One asset's state as served.
#[derive(Debug, Clone)]
struct AssetState {
    outcome: Outcome,
    last_verified: Option<SystemTime>,
    current_tx_id: Option<String>,
    version: Option<String>,
    reason: String,
    changed_files: Vec<String>,
    checked: Option<SystemTime>,
}

/// The guard's state, shared by its loop and the HTTP listener.
#[derive(Debug)]
pub struct Guard {
    policy: GuardPolicy,
    policy_hash: String,
    states: Mutex<BTreeMap<String, AssetState>>,
    events: Option<events::GuardEvents>,
}

impl Guard {
    /// Every asset starts `unknown`.
    pub fn new(policy: GuardPolicy) -> Guard {
        let states = policy
            .assets
            .iter()
            .map(|a| {
                (
                    a.id.clone(),
                    AssetState {
                        outcome: Outcome::Unknown,
                        last_verified: None,
                        current_tx_id: None,
                        version: None,
                        reason: "not checked yet".into(),
                        changed_files: Vec::new(),
                        checked: None,
                    },
                )
            })
            .collect();
        Guard {
            policy_hash: policy.policy_hash(),
            policy,
            states: Mutex::new(states),
            events: None,
        }
    }

    /// Signs and anchors tamper and missing transitions through `events`.
    pub fn with_events(mut self, events: events::GuardEvents) -> Guard {
        self.events = Some(events);
        self
    }

    /// The policy hash answers carry.
    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }

    /// The policy.
    pub fn policy(&self) -> &GuardPolicy {
        &self.policy
    }

    /// The verify-status body of an asset (`None`: not in the policy), exactly the fields the
    /// plugin's `VerifyStatusClient` parses, plus `detail` (ignored by it).
    pub fn status(&self, asset_id: &str, now: SystemTime) -> Option<Value> {
        let asset = self.policy.assets.iter().find(|a| a.id == asset_id)?;
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let s = states.get(asset_id)?;
        let stale = s.last_verified.is_none_or(|t| {
            now.duration_since(t).unwrap_or_default() > Duration::from_secs(asset.max_age)
        });
        Some(json!({
            "asset_id": asset.id,
            "tenant_id": self.policy.tenant_id,
            "agent_id": self.policy.agent_id,
            "outcome": s.outcome.as_str(),
            "last_verified_at": s.last_verified.map(rfc3339),
            "max_age": asset.max_age,
            "stale": stale,
            "policy_hash": self.policy_hash,
            "current_tx_id": s.current_tx_id,
            "detail": {
                "model": asset.model,
                "version": s.version,
                "reason": s.reason,
                "changed_files": s.changed_files,
                "checked_at": s.checked.map(rfc3339),
            },
        }))
    }

    /// Records an observation; returns the outcome before it.
    pub fn record(&self, asset_id: &str, o: &Observation, at: SystemTime) -> Outcome {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = states.get_mut(asset_id) else {
            return Outcome::Unknown;
        };
        let before = s.outcome;
        s.outcome = o.outcome;
        s.reason = o.reason.clone();
        s.changed_files = o.changed_files.clone();
        s.checked = Some(at);
        if o.version.is_some() || o.outcome != Outcome::Unavailable {
            s.version = o.version.clone();
            s.current_tx_id = o.tx_id.clone();
        }
        if o.outcome == Outcome::Verified {
            s.last_verified = Some(at);
        }
        before
    }

    /// Checks every asset on its interval until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, verifier: Arc<Verifier>, stop: CancellationToken) {
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS));
        let mut tasks = Vec::new();
        for (index, asset) in self.policy.assets.clone().into_iter().enumerate() {
            let verifier = match &asset.workspace {
                Some(w) => Arc::new(verifier.in_workspace(w)),
                None => verifier.clone(),
            };
            let (guard, permits, stop) = (self.clone(), permits.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let checked = async {
                        let _permit = permits.acquire().await;
                        let started = std::time::Instant::now();
                        let o = check(&verifier, &asset).await;
                        crate::telemetry::guard_check(o.outcome.as_str(), started.elapsed());
                        let before = guard.record(&asset.id, &o, SystemTime::now());
                        if before != o.outcome {
                            tracing::info!(asset = %asset.id, from = before.as_str(), to = o.outcome.as_str(), version = ?o.version, reason = %o.reason, files = ?o.changed_files, "guard: outcome changed");
                        }
                        if let Some(events) = &guard.events {
                            if let Err(e) = events.observe(&asset, index, &o).await {
                                tracing::warn!(asset = %asset.id, error = %e, "guard: cannot keep the transition; retrying at the next check");
                            }
                        }
                    };
                    tokio::select! {
                        _ = checked => {}
                        _ = stop.cancelled() => return,
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(asset.interval)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// The management secret the verify-status endpoint requires: `<state-dir>/management-secret`,
/// generated once (32 random bytes, hex; mode 0600) and read back afterwards. Never logged.
pub fn management_secret(state_dir: &std::path::Path) -> Result<String, GuardError> {
    let path = state_dir.join("management-secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => return Err(GuardError::EmptySecret { path }),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(GuardError::io("read", path, e))
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(state_dir).map_err(|e| GuardError::io("create", state_dir, e))?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| GuardError::Randomness(e.to_string()))?;
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(|e| GuardError::io("create", &path, e))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| GuardError::io("write", &path, e))?;
    Ok(secret)
}

/// The management secret in `path` (`--management-secret-file`, e.g. a mounted Secret): read,
/// trimmed, never created — a missing or empty file is an error naming it.
pub fn read_management_secret(path: &std::path::Path) -> Result<String, GuardError> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) => Err(GuardError::EmptySecret {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(GuardError::io("read", path, e)),
    }
}

/// Whether `offered` is `secret`, compared in constant time (over their SHA-256 digests, so the
/// length leaks nothing either).
pub fn secret_matches(secret: &str, offered: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(secret.as_bytes()),
        Sha256::digest(offered.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn unreachable_mlflow(e: &MlflowError) -> bool {
    e.is_transient() || matches!(e, MlflowError::Http { status, .. } if *status >= 500)
}

/// The version the asset names now.
async fn resolve(mlflow: &MlflowClient, target: &AssetTarget) -> Result<String, Observation> {
    let miss = |reason: String| Observation::new(Outcome::Missing, None, None, reason);
    let down = |e: &MlflowError| {
        Observation::new(
            Outcome::Unavailable,
            None,
            None,
            format!("MLflow unreachable: {e}"),
        )
    };
    match target {
        AssetTarget::Version { version, .. } => Ok(version.clone()),
        AssetTarget::Alias { name, alias } => match mlflow.get_registered_model(name).await {
            Ok(rm) => rm
                .aliases
                .iter()
                .find(|a| &a.alias == alias)
                .map(|a| a.version.clone())
                .ok_or_else(|| miss(format!("alias {name}@{alias} is not set"))),
            Err(e) if unreachable_mlflow(&e) => Err(down(&e)),
            Err(e) => Err(miss(format!("registered model {name}: {e}"))),
        },
        AssetTarget::Stage { name, stage } => {
            let filter = format!("name='{}'", name.replace('\'', "\\'"));
            match mlflow.search_model_versions(&filter).await {
                Ok(versions) => versions
                    .iter()
                    .filter(|v| v.current_stage.eq_ignore_ascii_case(stage))
                    .max_by_key(|v| v.version.parse::<u64>().unwrap_or(0))
                    .map(|v| v.version.clone())
                    .ok_or_else(|| miss(format!("no version of {name} is in stage {stage}"))),
                Err(e) if unreachable_mlflow(&e) => Err(down(&e)),
                Err(e) => Err(miss(format!("versions of {name}: {e}"))),
            }
        }
    }
}

/// One check of one asset.
pub async fn check(verifier: &Verifier, asset: &AssetPolicy) -> Observation {
    let target = match AssetTarget::parse(&asset.model) {
        Ok(t) => t,
        Err(e) => return Observation::new(Outcome::Missing, None, None, e.to_string()),
    };
    let name = target.name().to_string();
    let version = match resolve(&verifier.mlflow, &target).await {
        Ok(v) => v,
        Err(o) => return o,
    };
    let observe = |outcome, tx: Option<String>, reason: String, files: Vec<String>| {
        let mut o = Observation::new(outcome, Some(version.clone()), tx, reason);
        o.changed_files = files;
        o
    };
    let mv = match verifier.mlflow.get_model_version(&name, &version).await {
        Ok(mv) => mv,
        Err(e) if unreachable_mlflow(&e) => {
            return observe(
                Outcome::Unavailable,
                None,
                format!("MLflow unreachable: {e}"),
                vec![],
            )
        }
        Err(e) => {
            return observe(
                Outcome::Missing,
                None,
                format!("{name}/{version}: {e}"),
                vec![],
            )
        }
    };
    let Some(tx) = mv.tag(registration::TX_TAG).map(str::to_owned) else {
        return observe(
            Outcome::Missing,
            None,
            format!(
                "{name}/{version} has no registration proof ({})",
                registration::TX_TAG
            ),
            vec![],
        );
    };
    let registered_at = mv
        .creation_timestamp
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok())
        .map(|t| rfc3339(t.into()));
    let mut verdicts = vec![(
        "registration",
        verifier
            .verify_tx(&tx, &Entity::ModelVersion(name.clone(), version.clone()))
            .await,
    )];
    let mut source_run = None;
    if !mv.run_id.is_empty() {
        match verifier.mlflow.get_run(&mv.run_id).await {
            Ok(run) => {
                source_run = Some(run.clone());
                if let Some(training_tx) = run.tag(training::TX_TAG) {
                    verdicts.push((
                        "training",
                        verifier
                            .verify_tx(training_tx, &Entity::Run(mv.run_id.clone()))
                            .await,
                    ));
                }
            }
            Err(e) if unreachable_mlflow(&e) => {
                return observe(
                    Outcome::Unavailable,
                    Some(tx),
                    format!("MLflow unreachable: {e}"),
                    vec![],
                )
            }
            Err(_) => {}
        }
    }
    let (outcome, reason, files) = classify(&verdicts);
    let mut o = observe(outcome, Some(tx), reason, files);
    o.registered_at = registered_at;
    if let Some(run) = &source_run {
        o.baseline_hash = run
            .tag(crate::profile::tags::ARTIFACT_HASH)
            .map(str::to_owned);
        if outcome == Outcome::Tampered {
            // What the files hash to now, for the tamper event (the check's own pass, from the
            // verifier's memo when the paths agree).
            let path = registration::parse_runs_uri(&mv.source)
                .1
                .unwrap_or_else(|| "model".into());
            if let Ok(Some(now)) = verifier.model_checksums(run, &path).await {
                o.observed_hash = training::artifact_hash(&now);
            }
        }
    }
    o
}

/// Maps the verdicts of one check to an outcome, its reason and the changed files.
pub fn classify(verdicts: &[(&str, ProofVerdict)]) -> (Outcome, String, Vec<String>) {
    let mut files: Vec<String> = Vec::new();
    for (_, v) in verdicts {
        if let Some(Value::Array(list)) = v.checks.source_of_truth.detail.get("changed_files") {
            files.extend(list.iter().filter_map(|f| f.as_str().map(str::to_owned)));
        }
    }
    files.sort();
    files.dedup();
    for (what, v) in verdicts {
        if v.proof_found.ok != Some(true) {
            let causes: Vec<String> = v
                .proof_found
                .detail
                .get("skipped")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(|c| c["cause"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let unreachable = !causes.is_empty()
                && causes
                    .iter()
                    .all(|c| !c.contains("HTTP 4") && !c.contains("HTTP 404"));
            let outcome = if unreachable {
                Outcome::Unavailable
            } else {
                Outcome::Missing
            };
            return (
                outcome,
                format!("{what} proof {}: {}", v.tx_id, v.proof_found.reason),
                files,
            );
        }
        let live = &v.checks.source_of_truth;
        if live.ok == Some(false) && live.reason.starts_with("live_refetch_incomplete") {
            let detail = live
                .detail
                .get("detail")
                .and_then(Value::as_str)
                .unwrap_or("");
            if detail.contains("cannot reach") || detail.contains("timed out") {
                return (
                    Outcome::Unavailable,
                    format!("{what}: MLflow unreachable: {detail}"),
                    files,
                );
            }
        }
    }
    for (what, v) in verdicts {
        if let Some((name, check)) = v.first_failed() {
            let detail = check
                .detail
                .get("detail")
                .and_then(Value::as_str)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            return (
                Outcome::Tampered,
                format!("{what} {name}: {}{detail}", check.reason),
                files,
            );
        }
    }
    if verdicts.iter().all(|(_, v)| v.overall_ok) {
        (Outcome::Verified, "every check passed".into(), files)
    } else {
        let (what, v) = verdicts
            .iter()
            .find(|(_, v)| !v.overall_ok)
            .map(|(w, v)| (*w, v))
            .unwrap_or(("registration", &verdicts[0].1));
        (
            Outcome::Unavailable,
            format!(
                "{what}: a required check could not run ({})",
                v.checks.source_of_truth.reason
            ),
            files,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> GuardPolicy {
        GuardPolicy {
            tenant_id: "acme".into(),
            agent_id: "a1".into(),
            assets: vec![AssetPolicy {
                id: "m-prod".into(),
                model: "m/1".into(),
                workspace: None,
                max_age: 60,
                interval: 5,
            }],
        }
    }

    #[test]
    fn an_unchecked_asset_is_unknown_and_stale_and_an_old_success_goes_stale() {
        let g = Guard::new(policy());
        let now = SystemTime::now();
        let s = g.status("m-prod", now).unwrap();
        assert_eq!(
            (s["outcome"].as_str(), s["stale"].as_bool()),
            (Some("unknown"), Some(true))
        );
        for k in [
            "asset_id",
            "tenant_id",
            "agent_id",
            "outcome",
            "last_verified_at",
            "max_age",
            "stale",
            "policy_hash",
            "current_tx_id",
        ] {
            assert!(s.get(k).is_some(), "{k} missing from {s}");
        }
        assert!(g.status("other", now).is_none());
        let ok = Observation::new(
            Outcome::Verified,
            Some("1".into()),
            Some("t".repeat(43)),
            "every check passed".into(),
        );
        let checked = now - Duration::from_secs(30);
        assert_eq!(g.record("m-prod", &ok, checked), Outcome::Unknown);
        let s = g.status("m-prod", now).unwrap();
        assert_eq!(
            (s["outcome"].as_str(), s["stale"].as_bool()),
            (Some("verified"), Some(false))
        );
        assert_eq!(s["current_tx_id"], "t".repeat(43));
        let later = now + Duration::from_secs(31);
        assert_eq!(
            g.status("m-prod", later).unwrap()["stale"],
            true,
            "past max_age"
        );
        // Unreachable MLflow keeps the last known version and TX.
        let down = Observation::new(
            Outcome::Unavailable,
            None,
            None,
            "MLflow unreachable".into(),
        );
        assert_eq!(g.record("m-prod", &down, now), Outcome::Verified);
        let s = g.status("m-prod", now).unwrap();
        assert_eq!(
            (s["outcome"].as_str(), s["current_tx_id"].as_str()),
            (Some("unavailable"), Some("t".repeat(43).as_str()))
        );
    }
}
