//! Flag groups that several commands share: how to reach MLflow (MLflow's own environment
//! names) and the HTTP settings of the Arweave-side services, with the constructors that turn
//! them into configured clients.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::arweave::http::HttpSettings;
use crate::mlflow::{MlflowClient, MlflowConfig};

/// How to reach MLflow (MLflow's own environment names).
#[derive(Debug, Clone, Args)]
pub struct MlflowArgs {
    /// MLflow tracking server.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_URI",
        default_value = "http://127.0.0.1:5000"
    )]
    pub tracking_uri: url::Url,
    /// Bearer token.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub tracking_token: Option<String>,
    /// Basic-auth user.
    #[arg(long, env = "MLFLOW_TRACKING_USERNAME", hide = true)]
    pub tracking_username: Option<String>,
    /// Basic-auth password.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    pub tracking_password: Option<String>,
    /// S3-compatible endpoint for `s3://` artifact roots (MinIO, Ceph, …), as MLflow reads it.
    /// Credentials come from the usual `AWS_*` variables.
    #[arg(long, env = "MLFLOW_S3_ENDPOINT_URL")]
    pub s3_endpoint_url: Option<String>,
    /// Artifact files hashed at once per model directory.
    #[arg(long, env = "ARIO_MLFLOW_ARTIFACT_CONCURRENCY", default_value_t = 4)]
    pub artifact_concurrency: usize,
    /// Skip TLS verification towards MLflow.
    #[arg(long, env = "MLFLOW_TRACKING_INSECURE_TLS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", hide = true)]
    pub tracking_insecure_tls: bool,
}

/// MLflow configuration from the shared flags.
pub(crate) fn mlflow_config(args: &MlflowArgs) -> MlflowConfig {
    let mut config = MlflowConfig::new(args.tracking_uri.clone());
    config.token = args.tracking_token.clone().filter(|t| !t.is_empty());
    config.username = args.tracking_username.clone().filter(|u| !u.is_empty());
    config.password = args.tracking_password.clone();
    config.insecure_tls = args.tracking_insecure_tls;
    config.artifact_stores.s3_endpoint_url = args.s3_endpoint_url.clone().filter(|u| !u.is_empty());
    config.artifact_stores.concurrency = args.artifact_concurrency.clamp(1, 64);
    config
}

/// MLflow client from the shared flags.
pub(crate) fn mlflow_client(args: &MlflowArgs) -> Result<MlflowClient, String> {
    MlflowClient::new(mlflow_config(args)).map_err(|e| e.to_string())
}

/// HTTP settings shared by uploads and reads.
#[derive(Debug, Clone, Args)]
pub struct ArweaveHttpArgs {
    /// Extra trusted CA certificate (PEM), e.g. the one `devnet --tls --cert-out` writes.
    #[arg(long, env = "ARIO_MLFLOW_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30, env = "ARIO_MLFLOW_HTTP_TIMEOUT")]
    pub timeout_secs: u64,
}

/// HTTP settings from the shared flags; reads the CA file if one is named.
pub(crate) fn http_settings(args: &ArweaveHttpArgs) -> Result<HttpSettings, String> {
    let extra_ca_pem = match &args.ca_cert {
        Some(path) => Some(read(path)?),
        None => None,
    };
    Ok(HttpSettings {
        request_timeout: std::time::Duration::from_secs(args.timeout_secs.max(1)),
        extra_ca_pem,
        ..HttpSettings::default()
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
