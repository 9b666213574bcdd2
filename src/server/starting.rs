//! The listener while the service waits to start (MLflow, Kafka not reachable yet): `/healthz`
//! answers 200 (the process is alive and doing what it should: waiting), `/readyz` 503 with what
//! it waits for and the last error, every other path 503. Stopped — its port released — before
//! the service's own listener binds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What the service waits for, as `/readyz` says it.
#[derive(Clone, Default)]
pub struct Waiting(Arc<Mutex<String>>);

impl Waiting {
    /// Replaces the reason.
    pub fn set(&self, reason: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = reason.into();
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The starting listener: serving until [`StartingListener::stop`].
pub struct StartingListener {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl StartingListener {
    /// Binds `addr` and serves the starting routes.
    pub async fn start(
        addr: SocketAddr,
        waiting: Waiting,
    ) -> Result<StartingListener, super::ListenError> {
        let listener = super::bind(addr).await?;
        let stop = CancellationToken::new();
        let router = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .fallback(get(not_yet))
            .with_state(waiting);
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the starting listener stopped");
            }
        });
        Ok(StartingListener { stop, task })
    }

    /// Stops serving and waits until the port is released.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

async fn healthz(State(waiting): State<Waiting>) -> Response {
    (
        StatusCode::OK,
        no_store(),
        Json(json!({"status": "starting", "waiting_for": waiting.get()})),
    )
        .into_response()
}

async fn readyz(State(waiting): State<Waiting>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        no_store(),
        Json(json!({"ready": false, "starting": true, "waiting_for": waiting.get()})),
    )
        .into_response()
}

async fn not_yet(State(waiting): State<Waiting>) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        no_store(),
        Json(json!({"error": format!("the service is starting: {}", waiting.get())})),
    )
        .into_response()
}
