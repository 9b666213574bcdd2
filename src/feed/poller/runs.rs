//! Runs by the `end_time` watermark, the unanchored overlap and the periodic full reconciliation.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::registry::NO_TAG_IS_NULL;
use super::{
    now_ms, PollError, PollFilter, FULL_SCAN_EVERY, RUN_OVERLAP_EVERY, RUN_WATERMARK_OVERLAP_MS,
};
use crate::event::ChangeEvent;
use crate::mlflow::{MlflowClient, MlflowError};
use crate::profile::training;
use crate::store::Store;

/// The finished runs to detect: those past the `end_time` watermark (new finishes, and runs
/// finished again since their proof), and — on the first poll, every [`FULL_SCAN_EVERY`], and
/// for a filtered backfill — every finished run without a training proof.
pub(super) async fn poll_runs(
    mlflow: &MlflowClient,
    store: &Store,
    experiments: &[String],
    filter: &PollFilter,
    unfiltered: bool,
) -> Result<Vec<ChangeEvent>, PollError> {
    let cursor = store.cursor("runs")?.unwrap_or(Value::Null);
    let watermark = cursor["watermark_ms"].as_i64();
    let last_full = cursor["full_scan_ms"].as_i64().unwrap_or(0);
    let mut last_window = cursor["window_scan_ms"].as_i64().unwrap_or(0);
    let reconcile = !unfiltered
        || watermark.is_none()
        || now_ms() - last_full >= FULL_SCAN_EVERY.as_millis() as i64;
    let mut runs = Vec::new();
    if reconcile {
        runs.extend(finished_without_proof(mlflow, experiments, filter.since_ms).await?);
    }
    if let (true, Some(w)) = (unfiltered, watermark) {
        // Not anchored yet and finished within the overlap below the watermark (late commits,
        // skewed client clocks): small on a healthy registry, however busy.
        let unanchored = format!(
            "attributes.status = 'FINISHED' and attributes.end_time >= {} and tags.`ario.training_tx` IS NULL",
            w - RUN_WATERMARK_OVERLAP_MS
        );
        if NO_TAG_IS_NULL.load(Ordering::Relaxed) {
            let all = format!(
                "attributes.status = 'FINISHED' and attributes.end_time >= {}",
                w - RUN_WATERMARK_OVERLAP_MS
            );
            runs.extend(mlflow.search_runs(experiments, &all).await?);
        } else {
            // Each runs search is a scan of the runs table (MLflow indexes no run time): the
            // overlap is looked at every RUN_OVERLAP_EVERY, the watermark every poll.
            if now_ms() - last_window >= RUN_OVERLAP_EVERY.as_millis() as i64 {
                runs.extend(mlflow.search_runs(experiments, &unanchored).await?);
                last_window = now_ms();
            }
            // Finished after everything seen so far, anchored or not: new finishes, and runs
            // re-opened and finished again (a new end_time past the watermark).
            let newer = format!("attributes.status = 'FINISHED' and attributes.end_time > {w}");
            runs.extend(mlflow.search_runs(experiments, &newer).await?);
        }
    }
    let mut events = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut newest = watermark;
    for r in &runs {
        let Some(id) = r["info"]["run_id"].as_str() else {
            continue;
        };
        let end_time = r["info"]["end_time"]
            .as_i64()
            .or_else(|| r["info"]["end_time"].as_str().and_then(|t| t.parse().ok()));
        newest = newest.max(end_time);
        if !seen.insert((id.to_string(), end_time)) {
            continue;
        }
        let tag = |k: &str| {
            r["data"]["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["key"] == k)
                .and_then(|t| t["value"].as_str())
        };
        // Anchored for this very finish: nothing to do. Anchored earlier (re-opened since, or
        // anchored mid-run by the plugin): the job compares the run with its proof.
        if tag(training::TX_TAG).is_some()
            && tag(training::END_TIME_TAG) == end_time.map(|t| t.to_string()).as_deref()
        {
            continue;
        }
        // Signed elsewhere and never uploaded (a lost store, the plugin offline): detected
        // first, so its proof is adopted onto its chain before a newer run is signed there.
        let pending =
            tag(training::TX_TAG).is_none() && tag(crate::profile::tags::PAYLOAD_HASH).is_some();
        events.push((!pending, ChangeEvent::run_finished(id, end_time)));
    }
    events.sort_by_key(|(later, _)| *later);
    let events: Vec<ChangeEvent> = events.into_iter().map(|(_, e)| e).collect();
    if unfiltered {
        let full_scan_ms = if reconcile { now_ms() } else { last_full };
        store.set_cursor(
            "runs",
            &json!({
                "watermark_ms": newest.unwrap_or_else(now_ms),
                "full_scan_ms": full_scan_ms,
                "window_scan_ms": last_window,
                "last_scan": if reconcile { "full" } else { "incremental" },
                "runs_read": runs.len(),
            }),
        )?;
    }
    Ok(events)
}

/// Every finished run without a training proof (the reconciliation query).
pub(super) async fn finished_without_proof(
    mlflow: &MlflowClient,
    experiments: &[String],
    since: Option<i64>,
) -> Result<Vec<Value>, MlflowError> {
    let since = since
        .map(|s| format!(" and attributes.start_time >= {s}"))
        .unwrap_or_default();
    let unanchored = |runs: Vec<Value>| -> Vec<Value> {
        runs.into_iter()
            .filter(|r| {
                // The fallback query cannot leave anchored runs out: skip them here.
                !r["data"]["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["key"] == training::TX_TAG)
            })
            .collect()
    };
    if !NO_TAG_IS_NULL.load(Ordering::Relaxed) {
        let filter =
            format!("attributes.status = 'FINISHED' and tags.`ario.training_tx` IS NULL{since}");
        match mlflow.search_runs(experiments, &filter).await {
            Ok(runs) => return Ok(unanchored(runs)),
            Err(MlflowError::Http { status: 400, .. }) => {
                // MLflow 2.x's run search has no `IS NULL` on tags.
                NO_TAG_IS_NULL.store(true, Ordering::Relaxed);
                tracing::info!("this MLflow's run search has no `tags.… IS NULL` (MLflow 2.x): finished runs are listed and the anchored ones skipped here");
            }
            Err(e) => return Err(e),
        }
    }
    let filter = format!("attributes.status = 'FINISHED'{since}");
    Ok(unanchored(mlflow.search_runs(experiments, &filter).await?))
}
