//! Traces without a proof, in a time-indexed window.

use std::sync::atomic::AtomicBool;

use serde_json::{json, Value};

use super::{now_ms, FULL_SCAN_EVERY, TRACE_WATERMARK_OVERLAP_MS};
use crate::mlflow::{MlflowClient, MlflowError};
use crate::store::Store;

/// Set once the server answered that it has no v3 traces API.
pub(super) static NO_TRACES_API: AtomicBool = AtomicBool::new(false);

/// The traces to detect: those past the `timestamp_ms` watermark (minus an overlap) that are OK
/// and carry no proof, and — on the first poll, every [`FULL_SCAN_EVERY`], and for a filtered
/// backfill — every OK trace without a proof (the reconciliation).
pub(super) async fn poll_traces(
    mlflow: &MlflowClient,
    store: &Store,
    experiments: &[String],
    since: Option<i64>,
    unfiltered: bool,
) -> Result<Vec<String>, MlflowError> {
    let cursor = store.cursor("traces").ok().flatten().unwrap_or(Value::Null);
    let watermark = cursor["watermark_ms"].as_i64();
    let last_full = cursor["full_scan_ms"].as_i64().unwrap_or(0);
    let reconcile = !unfiltered
        || watermark.is_none()
        || now_ms() - last_full >= FULL_SCAN_EVERY.as_millis() as i64;
    let mut found = Vec::new();
    if reconcile {
        // Anchored either way (a proof of its own, or a leaf of a checkpoint): not searched
        // again.
        let mut filter = "trace.status = 'OK' and tags.`ario.prediction_tx` IS NULL and tags.`ario.checkpoint_tx` IS NULL".to_string();
        if let Some(s) = since {
            filter.push_str(&format!(" and trace.timestamp_ms >= {s}"));
        }
        found.extend(mlflow.search_traces(experiments, &filter).await?);
    }
    if let (true, Some(w)) = (unfiltered, watermark) {
        // The traces table is indexed by time: the overlap costs little, and only traces
        // without a proof come back.
        let filter = format!(
            "trace.status = 'OK' and trace.timestamp_ms >= {} and tags.`ario.prediction_tx` IS NULL and tags.`ario.checkpoint_tx` IS NULL",
            w - TRACE_WATERMARK_OVERLAP_MS
        );
        found.extend(mlflow.search_traces(experiments, &filter).await?);
    }
    let mut newest = watermark;
    let mut ids = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for t in &found {
        let Some(id) = t["trace_id"].as_str() else {
            continue;
        };
        let at = t["request_time"]
            .as_str()
            .and_then(crate::profile::envelope::rfc3339_to_ms)
            .or_else(|| t["timestamp_ms"].as_i64());
        newest = newest.max(at);
        let tagged = |k: &str| match &t["tags"] {
            Value::Object(m) => m.contains_key(k),
            Value::Array(a) => a.iter().any(|x| x["key"] == k),
            _ => false,
        };
        // Proven already: nothing to do (the job would skip it anyway).
        if tagged(crate::profile::prediction::TX_TAG)
            || tagged(crate::profile::prediction::LEGACY_TX_TAG)
            || tagged(crate::profile::checkpoint::TX_TAG)
        {
            continue;
        }
        if seen.insert(id.to_string()) {
            ids.push(id.to_string());
        }
    }
    if unfiltered {
        store
            .set_cursor(
                "traces",
                &json!({
                    // Traces are logged when they end: their time is at most their duration in
                    // the past. Following the clock keeps the searched window constant even when
                    // every trace is anchored at once (none comes back to move the watermark).
                    "watermark_ms": newest
                        .unwrap_or_else(now_ms)
                        .max(now_ms() - TRACE_WATERMARK_OVERLAP_MS),
                    "full_scan_ms": if reconcile { now_ms() } else { last_full },
                    "last_scan": if reconcile { "full" } else { "incremental" },
                    "traces_read": found.len(),
                }),
            )
            .map_err(|e| MlflowError::Unsupported(e.to_string()))?;
    }
    Ok(ids)
}
