//! The worker's one HTTP listener (`run --listen`, default `127.0.0.1:9847`): `/metrics`,
//! `/healthz`, `/readyz`, `POST /v1/webhooks/mlflow`, the guard's `GET
//! /v1/verify-status/{asset_id}` and the job endpoints `GET /v1/status`, `POST /v1/retry`. It binds loopback by default; bodies
//! are capped, slow handlers time out, and it stops with the rest of the service.
//!
//! It is an edge like the clients: it reads the health state, renders the metrics recorder and
//! hands webhook deliveries to [`crate::feed::webhook`]; it never anchors anything itself.

pub mod health;
pub mod jobs;
pub mod starting;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::feed::webhook::{Accepted, Delivery, WebhookReceiver, MAX_BODY_BYTES};
use health::Health;

/// The default listen address: loopback, the port the plugin's verify-status client expects.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9847";
/// The path MLflow delivers webhooks to.
pub const WEBHOOK_PATH: &str = "/v1/webhooks/mlflow";
/// Longest a handler may take before the client gets a 503.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers read.
#[derive(Clone)]
pub struct ServerState {
    /// Renders `/metrics` (`None`: the recorder could not be installed; `/metrics` says so).
    pub metrics: Option<PrometheusHandle>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// The webhook receiver (`None`: no secret configured, the route answers 404 saying so).
    pub webhook: Option<Arc<WebhookReceiver>>,
    /// Why webhooks are off, for the 404 body.
    pub webhook_off_reason: String,
    /// The guard whose state `/v1/verify-status/{asset_id}` serves (`None`: no policy; every
    /// asset is unknown to it, 404).
    pub guard: Option<Arc<crate::guard::Guard>>,
    /// The management secret that endpoint, `/v1/status` and `/v1/retry` require (`None`:
    /// they answer 401).
    pub management_secret: Option<String>,
    /// The stores the worker holds (for `/v1/status` and `/v1/retry`).
    pub stores: crate::store::LiveStores,
    /// `poll`, `kafka`, `guard` or `feed`: what `/v1/status` reports the process runs.
    pub mode: &'static str,
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr}: {cause} (choose another --listen address, or stop what holds it)"
)]
pub struct ListenError {
    /// The address.
    pub addr: SocketAddr,
    /// Cause.
    pub cause: std::io::Error,
}

/// Binds the listener (so a taken port fails at startup, before anything else runs).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ListenError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| ListenError { addr, cause })
}

/// The routes.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(WEBHOOK_PATH, post(webhook))
        .route("/v1/verify-status/{asset_id}", get(verify_status))
        .route("/v1/status", get(jobs::status))
        .route("/v1/retry", post(jobs::retry))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<ServerState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the metrics recorder is not installed\n",
        )
            .into_response(),
    }
}

fn json_status(ok: bool, body: serde_json::Value) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn healthz(State(state): State<ServerState>) -> Response {
    let (ok, body) = state.health.liveness();
    json_status(ok, body)
}

async fn readyz(State(state): State<ServerState>) -> Response {
    let (ok, body) = state.health.readiness();
    json_status(ok, body)
}

/// The plugin's verify-status gate: 401 without the right `X-Ario-Management-Secret`, 404 for
/// an asset not in the policy, else 200 with the asset's state. Never a redirect, never cached.
async fn verify_status(
    State(state): State<ServerState>,
    axum::extract::Path(asset_id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    if !jobs::authorized(&state, &headers) {
        return jobs::unauthorized();
    }
    let body = state
        .guard
        .as_ref()
        .and_then(|g| g.status(&asset_id, std::time::SystemTime::now()));
    match body {
        Some(body) => (StatusCode::OK, no_store, Json(body)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            no_store,
            Json(json!({"error": format!("asset {asset_id:?} is not in the guard policy")})),
        )
            .into_response(),
    }
}

fn refusal(status: StatusCode, outcome: &'static str, message: String) -> Response {
    crate::telemetry::webhook(outcome);
    tracing::warn!(outcome, error = %message, "webhook: delivery refused");
    (status, Json(json!({"ok": false, "error": message}))).into_response()
}

async fn webhook(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(receiver) = state.webhook.clone() else {
        return refusal(
            StatusCode::NOT_FOUND,
            "disabled",
            state.webhook_off_reason.clone(),
        );
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return refusal(
                e.status(),
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "too_large"
                } else {
                    "malformed"
                },
                format!("{} (limit {MAX_BODY_BYTES} bytes)", e.body_text()),
            )
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = Delivery {
        id: header("x-mlflow-delivery-id"),
        timestamp: header("x-mlflow-timestamp"),
        signature: header("x-mlflow-signature"),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let result =
        tokio::time::timeout(HANDLER_TIMEOUT, receiver.receive(delivery, &body, now)).await;
    use crate::feed::webhook::WebhookError as E;
    match result {
        Err(_) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "timed out recording the event".into(),
        ),
        Ok(Ok(Accepted::Recorded(keys))) => {
            crate::telemetry::webhook("accepted");
            (StatusCode::OK, Json(json!({"ok": true, "recorded": keys}))).into_response()
        }
        Ok(Ok(Accepted::Ignored(kind))) => {
            crate::telemetry::webhook("ignored");
            (StatusCode::OK, Json(json!({"ok": true, "ignored": kind}))).into_response()
        }
        Ok(Err(e)) => {
            let status = match &e {
                E::Unauthorized(_) | E::Stale { .. } => StatusCode::UNAUTHORIZED,
                E::Replayed(_) => StatusCode::CONFLICT,
                E::Malformed(_) => StatusCode::BAD_REQUEST,
                E::Store(_) | E::NoSecret => StatusCode::SERVICE_UNAVAILABLE,
            };
            refusal(status, e.outcome(), e.to_string())
        }
    }
}
