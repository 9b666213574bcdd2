//! The MLflow poller: detects lifecycle events with the queries of spec/mlflow-rest.md §7 and
//! records them in the store (which de-duplicates). It only detects; the pipeline acts.
//!
//! * finished runs: by an `end_time` watermark — those not anchored that finished within an
//!   overlap below it, and any that finished past it (which also finds a run re-opened and
//!   finished again: a new `end_time`, so a new event when the run's `ario.training_end_time`
//!   is not it) — so an idle poll reads nothing; and on the first poll and every
//!   [`FULL_SCAN_EVERY`], the reconciliation `status = 'FINISHED' and tags.ario.training_tx IS
//!   NULL` over every experiment (the marker-tag queue: self-healing), paged;
//! * registered models first: a model gone whose creation time reappears under a new name was
//!   renamed ([`ChangeEvent::ModelRenamed`]; the store moves its snapshots, chains and open jobs
//!   to the new name); a model gone for good, or re-created (another creation time), has its
//!   snapshots dropped without events;
//! * model versions: ordered by `last_updated_timestamp` DESC and paged only down to the
//!   watermark minus an overlap (creation and stage transitions bump the timestamp), with a full
//!   scan on the first poll and every [`FULL_SCAN_EVERY`] (self-healing); versions without
//!   `ario.registration_tx` become registrations;
//! * stage changes: each version's stage compared with the snapshot kept in sled (MLflow keeps no
//!   stage history; a version first seen in a stage is recorded as reaching it from `None`);
//! * aliases: registered-model snapshots diffed (alias changes bump no timestamp);
//! * traces: v3 search, `status = 'OK'`, `tags.ario.prediction_tx IS NULL` and
//!   `tags.ario.checkpoint_tx IS NULL`, paged.
//!
//! One failing query is logged and the others still run; deleted entities simply stop matching.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::event::ChangeEvent;
use crate::mlflow::{MlflowClient, MlflowError};
use crate::profile::registration;
use crate::store::{Store, StoreError};

mod registry;
mod runs;
mod traces;

use registry::{model_versions, oldest_first, reconcile_models, StageSnapshot};
use runs::poll_runs;
use traces::{poll_traces, NO_TRACES_API};

/// What to poll (`backfill --experiment/--model/--since`). The default polls everything.
///
/// `experiments` restricts runs and traces; `models` restricts versions, stages and aliases. When
/// only one of the two is given, the other kind of entity is not polled, so a filtered backfill
/// touches exactly the slice asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollFilter {
    /// Experiment ids (empty: all, unless `models` is set).
    pub experiments: Vec<String>,
    /// Registered model names (empty: all, unless `experiments` is set).
    pub models: Vec<String>,
    /// Only entities created at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
}

impl PollFilter {
    fn runs_and_traces(&self) -> bool {
        !self.experiments.is_empty() || self.models.is_empty()
    }

    fn registry(&self) -> bool {
        !self.models.is_empty() || self.experiments.is_empty()
    }

    fn model_selected(&self, name: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == name)
    }
}

/// Counts of one poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Candidates seen.
    pub seen: u64,
    /// New jobs created.
    pub new_jobs: u64,
    /// Queries that failed (logged).
    pub failed_queries: u64,
}

/// Why polling failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Experiments could not be listed (nothing else can be searched without them).
    #[error(transparent)]
    Mlflow(#[from] MlflowError),
}

/// Overlap below the version watermark: clock skew between MLflow replicas and commit delays.
pub const VERSION_WATERMARK_OVERLAP_MS: i64 = 10 * 60 * 1000;

/// A full version scan, and the run reconciliation, at least this often even with a watermark
/// (self-healing).
pub const FULL_SCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Overlap below the trace `timestamp_ms` watermark (a trace is logged when it ends).
pub const TRACE_WATERMARK_OVERLAP_MS: i64 = 10 * 60 * 1000;

/// How often at least the registered models are listed in full (aliases bump no timestamp, so a
/// diff of the whole list is the only poll-based signal; webhooks make alias changes
/// immediate). A version of a model the store does not know lists them at once (a new or
/// renamed model).
pub const REGISTRY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a large registry's listing may be put off (its aliases are detected this late,
/// without webhooks).
pub const REGISTRY_EVERY_MAX: std::time::Duration = std::time::Duration::from_secs(1800);

/// The share of the tracking server's time the full listing may take: the next one comes after
/// its duration / REGISTRY_DUTY (5 s for 5,000 models on sqlite → every 30 minutes).
pub const REGISTRY_DUTY: f64 = 0.0025;

/// How often the experiment list is read again.
pub const EXPERIMENTS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// How often the versions updated within the overlap below the watermark are read again.
pub const VERSION_OVERLAP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// How often the runs finished within the overlap below the watermark, not anchored yet (late
/// commits, skewed clocks), are searched for; runs past the watermark are every poll.
pub const RUN_OVERLAP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Overlap below the run `end_time` watermark: `end_time` is the client's clock, written when
/// the run ends, so it can be late or skewed.
pub const RUN_WATERMARK_OVERLAP_MS: i64 = 10 * 60 * 1000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Detects everything not yet anchored, once. Safe to call repeatedly.
pub async fn poll_once(mlflow: &MlflowClient, store: &Store) -> Result<PollStats, PollError> {
    poll_filtered(mlflow, store, &PollFilter::default()).await
}

/// Detects what `filter` selects and is not yet anchored, once.
pub async fn poll_filtered(
    mlflow: &MlflowClient,
    store: &Store,
    filter: &PollFilter,
) -> Result<PollStats, PollError> {
    let mut stats = PollStats::default();
    let experiments = if !filter.experiments.is_empty() {
        filter.experiments.clone()
    } else {
        // The experiment list changes rarely: read every EXPERIMENTS_EVERY (a run of a new
        // experiment is then found by the next overlap search, never missed).
        let cached = store.cursor("experiments")?.unwrap_or(Value::Null);
        let fresh = now_ms() - cached["listed_ms"].as_i64().unwrap_or(0)
            < EXPERIMENTS_EVERY.as_millis() as i64;
        match (
            fresh,
            serde_json::from_value::<Vec<String>>(cached["ids"].clone()),
        ) {
            (true, Ok(ids)) if !ids.is_empty() => ids,
            _ => {
                let ids = mlflow.active_experiment_ids().await?;
                store.set_cursor("experiments", &json!({"listed_ms": now_ms(), "ids": ids}))?;
                ids
            }
        }
    };
    let since = filter.since_ms;
    let record =
        |store: &Store, ev: ChangeEvent, stats: &mut PollStats| -> Result<(), StoreError> {
            stats.seen += 1;
            if store.detect(&ev)? {
                crate::telemetry::detected(ev.event_type(), "poll");
                stats.new_jobs += 1;
            }
            Ok(())
        };
    let unfiltered = filter == &PollFilter::default();
    if filter.runs_and_traces() {
        match poll_runs(mlflow, store, &experiments, filter, unfiltered).await {
            Ok(events) => {
                for ev in events {
                    record(store, ev, &mut stats)?;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "poll: runs query failed");
                stats.failed_queries += 1;
            }
        }
    }
    // The version watermark: the newest `last_updated_timestamp` seen, and when the last full
    // scan ran. A filtered backfill (`--since`/`--model`) always scans fully and keeps no cursor.
    let cursor = store.cursor("model_versions")?.unwrap_or(Value::Null);
    let watermark = cursor["watermark_ms"].as_i64();
    let last_full = cursor["full_scan_ms"].as_i64().unwrap_or(0);
    let incremental = unfiltered
        && watermark.is_some()
        && now_ms() - last_full < FULL_SCAN_EVERY.as_millis() as i64;
    let mut overlap_scan_ms = cursor["overlap_scan_ms"].as_i64().unwrap_or(0);
    let versions = if !filter.registry() {
        Ok(Vec::new())
    } else if incremental {
        // Every poll reads down to the watermark (a first page of a few when nothing
        // changed); the overlap below it (clock skew between MLflow replicas, commit delays)
        // every VERSION_OVERLAP_EVERY.
        let last_overlap = cursor["overlap_scan_ms"].as_i64().unwrap_or(0);
        let overlap = now_ms() - last_overlap >= VERSION_OVERLAP_EVERY.as_millis() as i64;
        let since = watermark.unwrap_or(0)
            - if overlap {
                VERSION_WATERMARK_OVERLAP_MS
            } else {
                0
            };
        if overlap {
            overlap_scan_ms = now_ms();
        }
        mlflow
            .search_model_versions_updated_since(since, !overlap)
            .await
            .map(oldest_first)
    } else {
        model_versions(mlflow).await
    };
    // The cursor moves only after the versions it covers were detected (a crash in between
    // re-reads them).
    let version_cursor = match (unfiltered, &versions) {
        (true, Ok(vs)) => {
            let newest = vs
                .iter()
                .filter_map(|mv| mv.last_updated_timestamp)
                .max()
                .into_iter()
                .chain(watermark)
                .max();
            Some(json!({
                "watermark_ms": newest.unwrap_or(0),
                "full_scan_ms": if incremental { last_full } else { now_ms() },
                "overlap_scan_ms": if incremental { overlap_scan_ms } else { now_ms() },
                "last_scan": if incremental { "incremental" } else { "full" },
                "versions_read": vs.len(),
            }))
        }
        _ => None,
    };
    // Registered models before the versions are diffed: a rename moves the snapshots the
    // version diff reads, so the versions of a renamed model are not taken for new ones. The
    // whole list is read every REGISTRY_EVERY (aliases bump no timestamp), at once when a
    // version names a model the store does not know (new, or renamed), and on every filtered
    // backfill.
    let known: BTreeMap<String, i64> = store
        .snapshot("models")?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let registry_cursor = store.cursor("registered_models")?.unwrap_or(Value::Null);
    let listed_ms = registry_cursor["listed_ms"].as_i64().unwrap_or(0);
    // The listing costs the server in proportion to the registry: it is repeated no more often
    // than REGISTRY_DUTY allows (its last duration × 1/REGISTRY_DUTY), within the bounds.
    let took_ms = registry_cursor["took_ms"].as_i64().unwrap_or(0);
    let every = ((took_ms as f64 / REGISTRY_DUTY) as i64).clamp(
        REGISTRY_EVERY.as_millis() as i64,
        REGISTRY_EVERY_MAX.as_millis() as i64,
    );
    let unknown_model =
        matches!(&versions, Ok(vs) if vs.iter().any(|mv| !known.contains_key(&mv.name)));
    let list_models = filter.registry()
        && (!unfiltered || unknown_model || known.is_empty() || now_ms() - listed_ms >= every);
    let listing_started = std::time::Instant::now();
    let models = if list_models {
        mlflow.search_registered_models().await.map(Some)
    } else {
        Ok(None)
    };
    let took_ms = listing_started.elapsed().as_millis() as i64;
    let models = match models {
        Ok(Some(models)) => {
            if unfiltered {
                for ev in reconcile_models(store, &models)? {
                    record(store, ev, &mut stats)?;
                }
                store.set_cursor(
                    "registered_models",
                    &json!({"listed_ms": now_ms(), "took_ms": took_ms, "models": models.len()}),
                )?;
            }
            Some(models)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "poll: registered models query failed");
            stats.failed_queries += 1;
            None
        }
    };
    // Creation times, so `--since` can judge alias changes by the version they point at.
    let mut created: BTreeMap<(String, String), i64> = BTreeMap::new();
    match versions {
        Ok(versions) => {
            for mv in versions {
                created.insert(
                    (mv.name.clone(), mv.version.clone()),
                    mv.creation_timestamp.unwrap_or(0),
                );
                if !filter.model_selected(&mv.name)
                    || since.is_some_and(|s| mv.creation_timestamp.unwrap_or(0) < s)
                {
                    continue;
                }
                if mv.tag(registration::TX_TAG).is_none() {
                    record(
                        store,
                        ChangeEvent::ModelVersionCreated {
                            name: mv.name.clone(),
                            version: mv.version.clone(),
                            created_ms: mv.creation_timestamp,
                        },
                        &mut stats,
                    )?;
                }
                let key = format!("stage/{}/{}", mv.name, mv.version);
                let before = StageSnapshot::read(store.snapshot(&key)?)
                    // A snapshot of an earlier version with the same number (the model was
                    // deleted and re-created) says nothing about this one.
                    .filter(|b| b.created_ms.is_none() || b.created_ms == mv.creation_timestamp);
                let from = before
                    .as_ref()
                    .map(|b| b.stage.clone())
                    .unwrap_or_else(|| "None".to_string());
                if from != mv.current_stage {
                    // First sight in a stage: recorded as reaching it from None (MLflow keeps no
                    // stage history); a proof already on record for it is recognised when the
                    // job resolves, so a store rebuilt from scratch re-anchors nothing.
                    let ev = ChangeEvent::StageChanged {
                        name: mv.name.clone(),
                        version: mv.version.clone(),
                        from,
                        to: mv.current_stage.clone(),
                        last_updated_ms: mv.last_updated_timestamp.unwrap_or(0),
                    };
                    record(store, ev, &mut stats)?;
                }
                let now = StageSnapshot {
                    stage: mv.current_stage.clone(),
                    created_ms: mv.creation_timestamp,
                };
                if before.as_ref() != Some(&now) {
                    store.set_snapshot(&key, &now.value())?;
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "poll: model versions query failed");
            stats.failed_queries += 1;
        }
    }
    if let Some(cursor) = version_cursor {
        store.set_cursor("model_versions", &cursor)?;
    }
    if let Some(models) = models {
        for rm in models {
            let name = rm.name.clone();
            let aliases: BTreeMap<String, String> = rm
                .aliases
                .iter()
                .map(|a| (a.alias.clone(), a.version.clone()))
                .collect();
            if !filter.model_selected(&name) {
                continue;
            }
            let key = format!("aliases/{name}");
            let before: BTreeMap<String, String> = store
                .snapshot(&key)?
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            let seen_ms = now_ms();
            let too_old = |version: &String| {
                since.is_some_and(|s| {
                    created
                        .get(&(name.clone(), version.clone()))
                        .copied()
                        .unwrap_or(0)
                        < s
                })
            };
            if aliases.values().chain(before.values()).any(too_old) {
                // Outside `--since`: neither detected nor remembered, so a later run sees it.
                continue;
            }
            for (alias, version) in &aliases {
                if before.get(alias) != Some(version) {
                    let ev = ChangeEvent::AliasChanged {
                        name: name.clone(),
                        alias: alias.clone(),
                        version: Some(version.clone()),
                        previous: before.get(alias).cloned(),
                        seen_ms,
                    };
                    record(store, ev, &mut stats)?;
                }
            }
            for (alias, version) in &before {
                if !aliases.contains_key(alias) {
                    let ev = ChangeEvent::AliasChanged {
                        name: name.clone(),
                        alias: alias.clone(),
                        version: None,
                        previous: Some(version.clone()),
                        seen_ms,
                    };
                    record(store, ev, &mut stats)?;
                }
            }
            if before != aliases {
                store.set_snapshot(&key, &json!(aliases))?;
            }
        }
    }
    let found = if filter.runs_and_traces() && !NO_TRACES_API.load(Ordering::Relaxed) {
        poll_traces(mlflow, store, &experiments, since, unfiltered).await
    } else {
        Ok(Vec::new())
    };
    match found {
        Ok(ids) => {
            for trace_id in ids {
                record(store, ChangeEvent::TraceLogged { trace_id }, &mut stats)?;
            }
        }
        Err(e) if e.is_not_found() => {
            // MLflow 2.x has no v3 traces API (and no served-model traces to anchor): say so
            // once and anchor everything else.
            if !NO_TRACES_API.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    tracking_uri = %mlflow.tracking_uri(),
                    error = %e,
                    "MLflow has no v3 traces API (MLflow 2.x?): predictions are not anchored; runs, versions, stages and aliases are"
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "poll: traces query failed");
            stats.failed_queries += 1;
        }
    }
    store.set_cursor(
        "poller",
        &json!({"last_poll_ms": now_ms(), "seen": stats.seen, "new_jobs": stats.new_jobs}),
    )?;
    store.flush().await?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_the_slice_asked_for() {
        let all = PollFilter::default();
        assert!(all.runs_and_traces() && all.registry() && all.model_selected("any"));
        let exp = PollFilter {
            experiments: vec!["3".into()],
            ..Default::default()
        };
        assert!(exp.runs_and_traces() && !exp.registry());
        let model = PollFilter {
            models: vec!["m".into()],
            ..Default::default()
        };
        assert!(
            !model.runs_and_traces()
                && model.registry()
                && model.model_selected("m")
                && !model.model_selected("n")
        );
        let both = PollFilter {
            experiments: vec!["3".into()],
            models: vec!["m".into()],
            since_ms: Some(1),
        };
        assert!(both.runs_and_traces() && both.registry());
    }
}
