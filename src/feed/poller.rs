//! The MLflow poller: detects lifecycle events with the queries of spec/mlflow-rest.md §7 and
//! records them in the store (which de-duplicates). It only detects; the pipeline acts.
//!
//! * finished runs: `status = 'FINISHED' and tags.ario.training_tx IS NULL` over every
//!   experiment (the marker-tag queue: stateless, self-healing), paged;
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
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Value};

use crate::event::ChangeEvent;
use crate::mlflow::client::Request;
use crate::mlflow::{MlflowClient, MlflowError};
use crate::profile::registration;
use crate::store::{Store, StoreError};

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

/// A full version scan at least this often, even with a watermark (self-healing).
pub const FULL_SCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

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
    let experiments = if filter.experiments.is_empty() {
        mlflow.active_experiment_ids().await?
    } else {
        filter.experiments.clone()
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
    let runs = if filter.runs_and_traces() {
        finished_runs(mlflow, &experiments, since).await
    } else {
        Ok(Vec::new())
    };
    match runs {
        Ok(runs) => {
            for run_id in runs {
                record(store, ChangeEvent::run(run_id), &mut stats)?;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "poll: runs query failed");
            stats.failed_queries += 1;
        }
    }
    // The version watermark: the newest `last_updated_timestamp` seen, and when the last full
    // scan ran. A filtered backfill (`--since`/`--model`) always scans fully and keeps no cursor.
    let cursor = store.cursor("model_versions")?.unwrap_or(Value::Null);
    let watermark = cursor["watermark_ms"].as_i64();
    let last_full = cursor["full_scan_ms"].as_i64().unwrap_or(0);
    let unfiltered = filter == &PollFilter::default();
    let incremental = unfiltered
        && watermark.is_some()
        && now_ms() - last_full < FULL_SCAN_EVERY.as_millis() as i64;
    let versions = if !filter.registry() {
        Ok(Vec::new())
    } else if incremental {
        let since = watermark.unwrap_or(0) - VERSION_WATERMARK_OVERLAP_MS;
        mlflow
            .search_model_versions_updated_since(since)
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
                "last_scan": if incremental { "incremental" } else { "full" },
                "versions_read": vs.len(),
            }))
        }
        _ => None,
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
                        },
                        &mut stats,
                    )?;
                }
                let key = format!("stage/{}/{}", mv.name, mv.version);
                let before = store
                    .snapshot(&key)?
                    .and_then(|v| v.as_str().map(str::to_owned));
                let from = before.clone().unwrap_or_else(|| "None".to_string());
                if from != mv.current_stage {
                    let ev = ChangeEvent::StageChanged {
                        name: mv.name.clone(),
                        version: mv.version.clone(),
                        from,
                        to: mv.current_stage.clone(),
                        last_updated_ms: mv.last_updated_timestamp.unwrap_or(0),
                    };
                    record(store, ev, &mut stats)?;
                }
                if before.as_deref() != Some(mv.current_stage.as_str()) {
                    store.set_snapshot(&key, &json!(mv.current_stage))?;
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
    let models = if filter.registry() {
        registered_models(mlflow).await
    } else {
        Ok(Vec::new())
    };
    match models {
        Ok(models) => {
            for (name, aliases) in models {
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
        Err(e) => {
            tracing::warn!(error = %e, "poll: registered models query failed");
            stats.failed_queries += 1;
        }
    }
    let found = if filter.runs_and_traces() && !NO_TRACES_API.load(Ordering::Relaxed) {
        traces(mlflow, &experiments, since).await
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

async fn finished_runs(
    mlflow: &MlflowClient,
    experiments: &[String],
    since: Option<i64>,
) -> Result<Vec<String>, MlflowError> {
    let since = since
        .map(|s| format!(" and attributes.start_time >= {s}"))
        .unwrap_or_default();
    let ids = |runs: Vec<Value>| -> Vec<String> {
        runs.iter()
            .filter(|r| {
                // The fallback query cannot leave anchored runs out: skip them here.
                !r["data"]["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["key"] == crate::profile::training::TX_TAG)
            })
            .filter_map(|r| r["info"]["run_id"].as_str().map(str::to_owned))
            .collect()
    };
    if !NO_TAG_IS_NULL.load(Ordering::Relaxed) {
        let filter =
            format!("attributes.status = 'FINISHED' and tags.`ario.training_tx` IS NULL{since}");
        match mlflow.search_runs(experiments, &filter).await {
            Ok(runs) => return Ok(ids(runs)),
            Err(MlflowError::Http { status: 400, .. }) => {
                // MLflow 2.x's run search has no `IS NULL` on tags.
                NO_TAG_IS_NULL.store(true, Ordering::Relaxed);
                tracing::info!("this MLflow's run search has no `tags.… IS NULL` (MLflow 2.x): finished runs are listed and the anchored ones skipped here");
            }
            Err(e) => return Err(e),
        }
    }
    let filter = format!("attributes.status = 'FINISHED'{since}");
    Ok(ids(mlflow.search_runs(experiments, &filter).await?))
}

/// Set once the server refused `tags.… IS NULL` in a run search.
static NO_TAG_IS_NULL: AtomicBool = AtomicBool::new(false);

async fn model_versions(
    mlflow: &MlflowClient,
) -> Result<Vec<crate::mlflow::ModelVersion>, MlflowError> {
    Ok(oldest_first(mlflow.search_model_versions("").await?))
}

/// Oldest first, so registrations are detected in creation order.
fn oldest_first(mut all: Vec<crate::mlflow::ModelVersion>) -> Vec<crate::mlflow::ModelVersion> {
    all.sort_by_key(|mv| {
        (
            mv.creation_timestamp.unwrap_or(0),
            mv.name.clone(),
            mv.version.parse::<u64>().unwrap_or(0),
        )
    });
    all
}

async fn registered_models(
    mlflow: &MlflowClient,
) -> Result<Vec<(String, BTreeMap<String, String>)>, MlflowError> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let mut query = vec![("max_results", "1000")];
        if !token.is_empty() {
            query.push(("page_token", token.as_str()));
        }
        let v: Value = mlflow
            .call(
                "registered-models/search",
                Request::get("api/2.0/mlflow/registered-models/search", &query),
            )
            .await?;
        for rm in v["registered_models"].as_array().into_iter().flatten() {
            let name = rm["name"].as_str().unwrap_or_default().to_string();
            let aliases = rm["aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| {
                    Some((
                        a["alias"].as_str()?.to_string(),
                        a["version"].as_str()?.to_string(),
                    ))
                })
                .collect();
            out.push((name, aliases));
        }
        match v["next_page_token"].as_str().filter(|t| !t.is_empty()) {
            Some(t) => token = t.to_string(),
            None => return Ok(out),
        }
    }
}

/// Set once the server answered that it has no v3 traces API.
static NO_TRACES_API: AtomicBool = AtomicBool::new(false);

async fn traces(
    mlflow: &MlflowClient,
    experiments: &[String],
    since: Option<i64>,
) -> Result<Vec<String>, MlflowError> {
    // Anchored either way (a proof of its own, or a leaf of a checkpoint): not searched again.
    let mut filter = "trace.status = 'OK' and tags.`ario.prediction_tx` IS NULL and tags.`ario.checkpoint_tx` IS NULL".to_string();
    if let Some(s) = since {
        filter.push_str(&format!(" and trace.timestamp_ms >= {s}"));
    }
    Ok(mlflow
        .search_traces(experiments, &filter)
        .await?
        .iter()
        .filter_map(|t| t["trace_id"].as_str().map(str::to_owned))
        .collect())
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
