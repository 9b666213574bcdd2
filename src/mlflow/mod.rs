//! The MLflow edge: an async REST client for MLflow 2.14–3.x servers (spec/mlflow-rest.md).
//!
//! Configuration uses MLflow's own environment names (`MLFLOW_TRACKING_URI`,
//! `MLFLOW_TRACKING_TOKEN`, `MLFLOW_TRACKING_USERNAME`/`PASSWORD`, `MLFLOW_TRACKING_INSECURE_TLS`).
//! Connections are pooled, every request has a timeout, 429/5xx/transport failures are retried
//! with backoff (`backon`), and every error names the REST call that failed. Artifacts go
//! through the server's proxy (`mlflow-artifacts:` roots): listed recursively, downloaded
//! **streamed into SHA-256** (constant memory, no temp files), and uploaded with `PUT`.

pub mod artifacts;
pub mod client;
pub mod model_source;
pub mod spans;
pub mod types;

pub use client::{
    is_workspace_name, MlflowClient, MlflowConfig, MlflowError, DEFAULT_WORKSPACE, WORKSPACE_HEADER,
};
pub use types::*;
