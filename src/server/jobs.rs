//! `GET /v1/status` and `POST /v1/retry`: the running worker's stores (one per MLflow workspace
//! in poll mode, one per owned partition in Kafka mode) read and re-queued through the
//! listener, so `status` and `retry` work without stopping the service. Both want the
//! management secret, like the guard's verify-status endpoint.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ServerState;
use crate::store::{StoreReport, StoreScope};

/// The header both endpoints (and verify-status) require.
pub const SECRET_HEADER: &str = "x-ario-management-secret";

/// One live store's status (`GET /v1/status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopedReport {
    /// The MLflow workspace.
    pub workspace: String,
    /// The Kafka partition (Kafka mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// The store's status.
    #[serde(flatten)]
    pub report: StoreReport,
}

/// `GET /v1/status`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// `poll` or `kafka`.
    pub mode: String,
    /// The stores the worker holds right now (in Kafka mode: its owned partitions).
    pub stores: Vec<ScopedReport>,
}

/// `?workspace=NAME`: only that workspace's stores.
#[derive(Debug, Default, Deserialize)]
pub struct StatusQuery {
    /// The MLflow workspace.
    pub workspace: Option<String>,
}

/// `POST /v1/retry`'s body: one job, or every parked one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetryRequest {
    /// The job key.
    #[serde(default)]
    pub job: Option<String>,
    /// Every parked job.
    #[serde(default)]
    pub all_parked: bool,
    /// Only this MLflow workspace's stores.
    #[serde(default)]
    pub workspace: Option<String>,
}

/// `POST /v1/retry`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetryAnswer {
    /// Jobs re-queued.
    pub requeued: usize,
}

fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

/// Whether `headers` carry the management secret (compared in constant time).
pub(super) fn authorized(state: &ServerState, headers: &HeaderMap) -> bool {
    let offered = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    match (&state.management_secret, offered) {
        (Some(secret), Some(offered)) => crate::guard::secret_matches(secret, offered),
        _ => false,
    }
}

/// The 401 every management endpoint answers.
pub(super) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        no_store(),
        Json(json!({"error": "missing or wrong X-Ario-Management-Secret (the value of <state-dir>/management-secret, or of --management-secret-file)"})),
    )
        .into_response()
}

fn in_scope(scope: &StoreScope, workspace: Option<&str>) -> bool {
    workspace.is_none_or(|w| w == scope.workspace)
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, no_store(), Json(json!({"error": message}))).into_response()
}

/// `GET /v1/status`.
pub(super) async fn status(
    State(state): State<ServerState>,
    Query(query): Query<StatusQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let stores = state.stores.snapshot();
    let mode = state.mode.to_string();
    // Every job is read (sled I/O): off the runtime.
    let read = tokio::task::spawn_blocking(move || {
        stores
            .into_iter()
            .filter(|(scope, _)| in_scope(scope, query.workspace.as_deref()))
            .map(|(scope, live)| {
                live.store.report().map(|report| ScopedReport {
                    workspace: scope.workspace,
                    partition: scope.partition,
                    report,
                })
            })
            .collect::<Result<Vec<_>, _>>()
    });
    match read.await {
        Ok(Ok(stores)) => (
            StatusCode::OK,
            no_store(),
            Json(WorkerStatus { mode, stores }),
        )
            .into_response(),
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /v1/retry`.
pub(super) async fn retry(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Json<RetryRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let request = match body {
        Ok(Json(r)) => r,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if request.job.is_some() == request.all_parked {
        return failure(
            StatusCode::BAD_REQUEST,
            "give either \"job\" (a job key) or \"all_parked\": true".into(),
        );
    }
    let stores = state.stores.snapshot();
    let requeue = tokio::task::spawn_blocking(move || {
        let mut requeued = 0;
        for (scope, live) in stores {
            if !in_scope(&scope, request.workspace.as_deref()) {
                continue;
            }
            let n = live.store.requeue_parked(request.job.as_deref())?;
            if n > 0 {
                futures::executor::block_on(live.store.flush())?;
                if let Some(wake) = &live.wake {
                    wake.notify_one();
                }
            }
            requeued += n;
        }
        Ok::<_, crate::store::StoreError>(requeued)
    });
    match requeue.await {
        Ok(Ok(requeued)) => {
            if requeued > 0 {
                tracing::info!(
                    requeued,
                    "retry: parked job(s) re-queued through the listener"
                );
            }
            (StatusCode::OK, no_store(), Json(RetryAnswer { requeued })).into_response()
        }
        Ok(Err(e)) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
