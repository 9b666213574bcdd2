//! `webhook register`: registers the worker's receiver as a webhook on an MLflow 3.x server, or
//! prints the `curl` call that does (`--print`), for the events the worker anchors at once.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::connect::MlflowArgs;
use super::error::{finish, CmdError};
use crate::feed::webhook::register_command;

/// `webhook …`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register the worker's `/v1/webhooks/mlflow` as a webhook on the MLflow server
    /// (`model_version.created`, `model_version_alias.created|deleted`).
    Register(RegisterArgs),
}

/// Arguments of `webhook register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mlflow: MlflowArgs,
    /// The URL MLflow delivers to: the worker's listener as MLflow reaches it, e.g.
    /// `http://worker.internal:9847/v1/webhooks/mlflow`.
    #[arg(long)]
    pub receiver_url: url::Url,
    /// The webhook's name in MLflow.
    #[arg(long, default_value = "ario-mlflow-worker")]
    pub name: String,
    /// The signing secret (the first of `ARIO_MLFLOW_WEBHOOK_SECRET`, which the worker checks).
    #[arg(
        long,
        env = "ARIO_MLFLOW_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub webhook_secret: Vec<String>,
    /// Print the `curl` call instead of making it (the secret stays a shell variable).
    #[arg(long)]
    pub print: bool,
}

/// The events the worker anchors at once.
pub const EVENTS: [(&str, &str); 3] = [
    ("MODEL_VERSION", "CREATED"),
    ("MODEL_VERSION_ALIAS", "CREATED"),
    ("MODEL_VERSION_ALIAS", "DELETED"),
];

/// Runs `webhook register`.
pub async fn register(args: RegisterArgs) -> ExitCode {
    finish(create(args).await)
}

async fn create(args: RegisterArgs) -> Result<ExitCode, CmdError> {
    let tracking = args.mlflow.tracking_uri.as_str();
    // One workspace per webhook (MLflow scopes webhooks to workspaces): --workspace, else
    // MLFLOW_WORKSPACE, else the default one (no header).
    let config = super::connect::mlflow_config(&args.mlflow)?;
    let workspace = config.workspace.clone();
    if args.print {
        println!(
            "{}",
            register_command(
                tracking,
                args.receiver_url.as_str(),
                &args.name,
                workspace.as_deref()
            )
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(secret) = args.webhook_secret.iter().find(|s| !s.is_empty()) else {
        return Err(CmdError::usage("set ARIO_MLFLOW_WEBHOOK_SECRET (the worker checks deliveries against it) or pass --print"));
    };
    let mlflow = crate::mlflow::MlflowClient::new(config)?;
    let id = mlflow
        .create_webhook(&args.name, args.receiver_url.as_str(), &EVENTS, secret)
        .await
        .map_err(|e| CmdError::failed(format!("{e} (MLflow 3.x with MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY set; an http:// or private receiver also needs MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true on the server)")))?;
    let scope = workspace
        .map(|w| format!(" (MLflow workspace {w})"))
        .unwrap_or_default();
    println!(
        "registered webhook {id} on {tracking}{scope} → {}",
        args.receiver_url
    );
    println!("note: MLflow caches its webhook list (MLFLOW_WEBHOOK_CACHE_TTL, 60 s by default); the poller covers that gap");
    Ok(ExitCode::SUCCESS)
}
