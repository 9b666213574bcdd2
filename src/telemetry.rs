//! Metrics: every name the worker exports, in one place, and the Prometheus recorder.
//!
//! The code that does the work records through the `metrics` facade (`counter!`, `gauge!`,
//! `histogram!`), so the MLflow client, the Turbo client, the pipeline and the Kafka consumer
//! need no registry handed to them; `run` installs the Prometheus recorder once and the HTTP
//! listener renders it on `/metrics`. Why `metrics` + `metrics-exporter-prometheus` and not
//! `prometheus-client`: the facade keeps the clients free of exporter types (a library user
//! who installs no recorder pays one relaxed atomic load per call), and the exporter renders
//! the text exposition format with native histograms buckets chosen here. Label values are
//! bounded sets only (event types, sources, states, endpoint families, status classes,
//! partitions of the consumed topic). Every metric is documented in `docs/metrics.md`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Common prefix of every metric.
pub const PREFIX: &str = "ario_mlflow_worker";

/// Events detected (new jobs), by `event_type` and `source` (poll, webhook, kafka, derived).
pub const EVENTS_DETECTED: &str = "ario_mlflow_worker_events_detected_total";
/// Events anchored (job done), by `event_type` and `source` (the pipeline: poll or kafka).
pub const EVENTS_ANCHORED: &str = "ario_mlflow_worker_events_anchored_total";
/// Failed attempts (transient, retried), by `event_type` and `source`.
pub const EVENTS_FAILED: &str = "ario_mlflow_worker_events_failed_total";
/// Jobs parked (permanent error, needs `retry`), by `event_type` and `source`.
pub const EVENTS_PARKED: &str = "ario_mlflow_worker_events_parked_total";
/// Jobs skipped (nothing to do), by `event_type` and `source`.
pub const EVENTS_SKIPPED: &str = "ario_mlflow_worker_events_skipped_total";
/// Jobs skipped, by `event_type` and `reason` (`already_anchored`, `plugin`, `gone`,
/// `no_model`, `not_applicable`).
pub const SKIPS: &str = "ario_mlflow_worker_skips_total";
/// Kafka messages sent to the dead-letter topic, by `reason`.
pub const DEAD_LETTERS: &str = "ario_mlflow_worker_kafka_dead_letters_total";
/// Jobs per `state` in the store (open states, plus parked).
pub const JOBS: &str = "ario_mlflow_worker_jobs";
/// Age of the oldest open (unanchored) job.
pub const OLDEST_UNANCHORED: &str = "ario_mlflow_worker_oldest_unanchored_event_age_seconds";
/// Detection to anchored, by `event_type`.
pub const ANCHOR_LATENCY: &str = "ario_mlflow_worker_anchor_latency_seconds";
/// One data-item upload to Turbo (all attempts), by `outcome` (ok, error).
pub const UPLOAD_DURATION: &str = "ario_mlflow_worker_upload_duration_seconds";
/// Turbo HTTP responses, by `status_class` (2xx, 4xx, 5xx, transport).
pub const TURBO_RESPONSES: &str = "ario_mlflow_worker_turbo_responses_total";
/// One MLflow REST request, by `endpoint` family and `status_class`.
pub const MLFLOW_REQUEST_DURATION: &str = "ario_mlflow_worker_mlflow_request_duration_seconds";
/// Kafka consumer lag (messages) per `partition` of the consumed `topic`.
pub const KAFKA_LAG: &str = "ario_mlflow_worker_kafka_consumer_lag";
/// Kafka partitions this instance owns.
pub const KAFKA_PARTITIONS: &str = "ario_mlflow_worker_kafka_assigned_partitions";
/// Bytes of the state store on disk.
pub const STORE_BYTES: &str = "ario_mlflow_worker_store_size_bytes";
/// MLflow webhook deliveries, by `outcome` (accepted, ignored, unauthorized, stale, replayed,
/// malformed, too_large, unavailable).
pub const WEBHOOK_DELIVERIES: &str = "ario_mlflow_worker_webhook_deliveries_total";
/// Debezium records the CDC stage skipped, by `table` (`other` for a table it does not know)
/// and `reason` (tombstone, no_event, unknown_table, missing_column, no_before_image, …).
pub const CDC_SKIPPED: &str = "ario_mlflow_worker_cdc_records_skipped_total";
/// Change events the CDC stage produced to the event topic, by `event_type`.
pub const CDC_EVENTS: &str = "ario_mlflow_worker_cdc_events_produced_total";
/// Readiness checks, by `check`: 1 passing, 0 failing.
pub const READY: &str = "ario_mlflow_worker_ready";
/// Guard checks, by `outcome`.
pub const GUARD_CHECKS: &str = "ario_mlflow_worker_guard_checks_total";
/// One guard check of one asset (resolve, both proofs, the model re-hash).
pub const GUARD_CHECK_DURATION: &str = "ario_mlflow_worker_guard_check_duration_seconds";
/// Tamper and missing events the guard signed, by `event_type`.
pub const GUARD_EVENTS: &str = "ario_mlflow_worker_guard_events_total";
/// Entities MLflow holds per `event_type` and `standing` (anchored, signed_only,
/// not_anchored), from the service's tags-only coverage pass.
pub const COVERAGE: &str = "ario_mlflow_worker_coverage_entities";
/// Bytes of artifact files read and hashed (training payloads, registrations, the guard).
pub const BYTES_HASHED: &str = "ario_mlflow_worker_artifact_bytes_hashed_total";
/// Poll passes completed (a poll of MLflow and the pipeline drained of what was due), by
/// `outcome` (`ok`, `error`: the poll failed, the drain still ran).
pub const POLL_PASSES: &str = "ario_mlflow_worker_poll_passes_total";
/// Open jobs (detected, waiting, signed, uploaded: not anchored yet and not parked) after the
/// pipeline's last drain, by `workspace` (and, in Kafka mode, `partition`).
pub const OPEN_JOBS: &str = "ario_mlflow_worker_open_jobs";
/// Unix time of the `feed` process's last successful pass, by `stage` (`poll`: one per
/// `workspace`, set after each pass of MLflow produced; `debezium`: set while the re-keying
/// session is up). The dead-feed alert reads it.
pub const FEED_LAST_PASS: &str = "ario_mlflow_worker_feed_last_pass_timestamp_seconds";
/// Build information: value 1, labels `version`.
pub const BUILD_INFO: &str = "ario_mlflow_worker_build_info";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Why the metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The histogram buckets were refused.
    #[error("cannot configure the metrics recorder: {0}")]
    Configure(String),
    /// Another recorder is installed.
    #[error("cannot install the metrics recorder: {0}")]
    Install(String),
}

/// Installs the Prometheus recorder (once per process) and returns the handle that renders it.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let latency_buckets = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix(PREFIX.into()), &latency_buckets)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(ANCHOR_LATENCY.into()),
                &[
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                ],
            )
        })
        .map_err(|e| MetricsError::Configure(e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| MetricsError::Install(e.to_string()))?;
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

fn describe() {
    use metrics::Unit;
    describe_counter!(
        EVENTS_DETECTED,
        "Events detected (new jobs) by event type and source."
    );
    describe_counter!(
        EVENTS_ANCHORED,
        "Events anchored (proof uploaded and recorded in MLflow)."
    );
    describe_counter!(
        EVENTS_FAILED,
        "Failed anchoring attempts that will be retried."
    );
    describe_counter!(
        EVENTS_PARKED,
        "Jobs parked on a permanent error (need `retry`)."
    );
    describe_counter!(EVENTS_SKIPPED, "Jobs closed with nothing to do.");
    describe_counter!(
        SKIPS,
        "Jobs closed with nothing to do, by event type and reason (already anchored, anchored by the plugin, gone, no model, not applicable)."
    );
    describe_counter!(
        DEAD_LETTERS,
        "Kafka messages sent to the dead-letter topic."
    );
    describe_counter!(
        CDC_SKIPPED,
        "Debezium records that carried no change event, by table and reason."
    );
    describe_counter!(
        CDC_EVENTS,
        "Change events the CDC stage produced to the event topic."
    );
    describe_gauge!(
        JOBS,
        "Jobs in the store per state (open states and parked)."
    );
    describe_gauge!(
        OLDEST_UNANCHORED,
        Unit::Seconds,
        "Age of the oldest open job."
    );
    describe_histogram!(ANCHOR_LATENCY, Unit::Seconds, "Detection to anchored.");
    describe_histogram!(
        UPLOAD_DURATION,
        Unit::Seconds,
        "One data-item upload (all attempts)."
    );
    describe_counter!(TURBO_RESPONSES, "Turbo HTTP responses by status class.");
    describe_histogram!(
        MLFLOW_REQUEST_DURATION,
        Unit::Seconds,
        "One MLflow REST request by endpoint family and status class."
    );
    describe_gauge!(
        KAFKA_LAG,
        "Kafka consumer lag in messages per owned partition."
    );
    describe_gauge!(KAFKA_PARTITIONS, "Kafka partitions this instance owns.");
    describe_gauge!(STORE_BYTES, Unit::Bytes, "Size of the state store on disk.");
    describe_counter!(WEBHOOK_DELIVERIES, "MLflow webhook deliveries by outcome.");
    describe_gauge!(READY, "Readiness checks: 1 passing, 0 failing.");
    describe_gauge!(
        FEED_LAST_PASS,
        Unit::Seconds,
        "Unix time of the feed's last successful pass (poll: per workspace; debezium: while its session is up)."
    );
    describe_counter!(
        POLL_PASSES,
        "Poll passes completed (MLflow polled, the pipeline drained), by outcome."
    );
    describe_gauge!(
        OPEN_JOBS,
        "Jobs not anchored yet and not parked, after the pipeline's last drain."
    );
    describe_counter!(GUARD_CHECKS, "Guard checks by outcome.");
    describe_histogram!(
        GUARD_CHECK_DURATION,
        Unit::Seconds,
        "One guard check of one asset."
    );
    describe_counter!(GUARD_EVENTS, "Tamper and missing events the guard signed.");
    describe_gauge!(
        COVERAGE,
        "Entities per event type and standing (tags-only coverage)."
    );
    describe_counter!(BYTES_HASHED, Unit::Bytes, "Artifact bytes read and hashed.");
    describe_gauge!(BUILD_INFO, "Build information (value 1).");
}

/// A status code as its class label.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
        None => "transport",
    }
}

/// The endpoint family of an MLflow REST path (a bounded label: the resource, never an id).
pub fn mlflow_endpoint(path: &str) -> &'static str {
    const FAMILIES: [&str; 12] = [
        "registered-models",
        "model-versions",
        "logged-models",
        "experiments",
        "metrics",
        "datasets",
        "webhooks",
        "traces",
        "runs",
        "artifacts",
        "mlflow-artifacts",
        "get-artifact",
    ];
    let trimmed = path.trim_start_matches('/');
    if trimmed.starts_with("api/2.0/mlflow-artifacts")
        || trimmed.starts_with("ajax-api/2.0/mlflow-artifacts")
    {
        return "mlflow-artifacts";
    }
    for segment in trimmed.split(['/', '?']) {
        if let Some(family) = FAMILIES.iter().find(|f| **f == segment) {
            return family;
        }
    }
    "other"
}

/// One event detected.
pub fn detected(event_type: &'static str, source: &'static str) {
    counter!(EVENTS_DETECTED, "event_type" => event_type, "source" => source).increment(1);
}

/// A job skipped, and why.
pub fn skipped(event_type: &'static str, reason: &'static str) {
    counter!(SKIPS, "event_type" => event_type, "reason" => reason).increment(1);
}

/// A job's step outcome, counted by the pipeline.
pub fn job_outcome(name: &'static str, event_type: &'static str, source: &'static str) {
    counter!(name, "event_type" => event_type, "source" => source).increment(1);
}

/// Detection to anchored.
pub fn anchored_after(event_type: &'static str, latency: Duration) {
    histogram!(ANCHOR_LATENCY, "event_type" => event_type).record(latency.as_secs_f64());
}

/// One MLflow request.
pub fn mlflow_request(path: &str, status: Option<u16>, took: Duration) {
    histogram!(MLFLOW_REQUEST_DURATION, "endpoint" => mlflow_endpoint(path), "status_class" => status_class(status))
        .record(took.as_secs_f64());
}

/// One Turbo response (or transport failure).
pub fn turbo_response(status: Option<u16>) {
    counter!(TURBO_RESPONSES, "status_class" => status_class(status)).increment(1);
}

/// One upload, all attempts.
pub fn upload(ok: bool, took: Duration) {
    histogram!(UPLOAD_DURATION, "outcome" => if ok { "ok" } else { "error" })
        .record(took.as_secs_f64());
}

/// One dead letter.
pub fn dead_letter(reason: &'static str) {
    counter!(DEAD_LETTERS, "reason" => reason).increment(1);
}

/// One Debezium record skipped by the CDC stage (`table`: one the decoder knows, `other` or
/// `none` — never a name from the record, which would grow the label set).
pub fn cdc_skipped(table: &'static str, reason: &'static str) {
    counter!(CDC_SKIPPED, "table" => table, "reason" => reason).increment(1);
}

/// One change event produced by the CDC stage.
pub fn cdc_event(event_type: &'static str) {
    counter!(CDC_EVENTS, "event_type" => event_type).increment(1);
}

/// One webhook delivery.
pub fn webhook(outcome: &'static str) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// Consumer lag of one partition (`None`: the partition is no longer owned).
pub fn kafka_lag(topic: &str, partition: i32, lag: Option<i64>) {
    let g = gauge!(KAFKA_LAG, "topic" => topic.to_string(), "partition" => partition.to_string());
    match lag {
        Some(lag) => g.set(lag.max(0) as f64),
        None => g.set(0.0),
    }
}

/// Partitions owned.
pub fn kafka_partitions(n: usize) {
    gauge!(KAFKA_PARTITIONS).set(n as f64);
}

/// The store's shape: jobs per state, the oldest open job, size on disk.
pub fn store_gauges(
    workspace: &str,
    per_state: &[(&'static str, usize)],
    oldest_open_age: Option<Duration>,
    bytes: u64,
) {
    let workspace = workspace.to_string();
    for (state, n) in per_state {
        gauge!(JOBS, "workspace" => workspace.clone(), "state" => *state).set(*n as f64);
    }
    gauge!(OLDEST_UNANCHORED, "workspace" => workspace.clone())
        .set(oldest_open_age.map(|d| d.as_secs_f64()).unwrap_or(0.0));
    gauge!(STORE_BYTES, "workspace" => workspace).set(bytes as f64);
}

/// One guard check.
pub fn guard_check(outcome: &'static str, took: Duration) {
    counter!(GUARD_CHECKS, "outcome" => outcome).increment(1);
    histogram!(GUARD_CHECK_DURATION).record(took.as_secs_f64());
}

/// One guard event signed.
pub fn guard_event(event_type: &'static str) {
    counter!(GUARD_EVENTS, "event_type" => event_type).increment(1);
}

/// One artifact file hashed.
pub fn bytes_hashed(n: u64) {
    counter!(BYTES_HASHED).increment(n);
}

/// One coverage count.
pub fn coverage(workspace: &str, event_type: &'static str, standing: &'static str, n: usize) {
    gauge!(COVERAGE, "workspace" => workspace.to_string(), "event_type" => event_type, "standing" => standing)
        .set(n as f64);
}

/// The `feed` process completed a pass of `stage` (`poll`, `debezium`) now.
pub fn feed_pass(stage: &'static str, workspace: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge!(FEED_LAST_PASS, "stage" => stage, "workspace" => workspace.to_string()).set(now);
}

/// One poll pass ended: `ok` when the poll itself succeeded.
pub fn poll_pass(workspace: &str, ok: bool) {
    counter!(POLL_PASSES, "workspace" => workspace.to_string(), "outcome" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// The open jobs of `workspace`'s pipeline after a drain.
pub fn open_jobs(workspace: &str, n: usize) {
    gauge!(OPEN_JOBS, "workspace" => workspace.to_string()).set(n as f64);
}

/// Kafka mode: the open jobs of an owned partition's pipeline after a drain (0 once the
/// partition is handed over: its next owner reports it).
pub fn partition_open_jobs(workspace: &str, partition: i32, n: usize) {
    gauge!(OPEN_JOBS, "workspace" => workspace.to_string(), "partition" => partition.to_string())
        .set(n as f64);
}

/// Readiness of one check (1 ready, 0 not).
pub fn ready(check: &'static str, ok: bool) {
    gauge!(READY, "check" => check).set(if ok { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_families_are_bounded_and_never_ids() {
        assert_eq!(mlflow_endpoint("/api/2.0/mlflow/runs/get"), "runs");
        assert_eq!(
            mlflow_endpoint("api/2.0/mlflow/model-versions/search"),
            "model-versions"
        );
        assert_eq!(
            mlflow_endpoint("/api/2.0/mlflow/registered-models/alias"),
            "registered-models"
        );
        assert_eq!(
            mlflow_endpoint("/api/3.0/mlflow/traces/tr-abc/tags"),
            "traces"
        );
        assert_eq!(
            mlflow_endpoint("/api/2.0/mlflow-artifacts/artifacts/1/abc/model.pkl"),
            "mlflow-artifacts"
        );
        assert_eq!(
            mlflow_endpoint("/api/2.0/mlflow/logged-models/m-123"),
            "logged-models"
        );
        assert_eq!(mlflow_endpoint("/something/else/entirely"), "other");
        assert_eq!(status_class(Some(204)), "2xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "transport");
    }
}
