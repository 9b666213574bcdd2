//! `upload <FILE>`: signs a file as a data item with the funding wallet and uploads it through
//! Turbo; prints the id, the receipt (or in-flight status) as JSON. Exit 0 uploaded, 1 rejected
//! or failed after retries, 2 bad input or configuration.

use std::path::PathBuf;

use clap::Args;

use super::connect::ArweaveHttpArgs;
use super::error::{finish, CmdError};
use super::wallet_show::WalletArgs;
use std::process::ExitCode;

use crate::arweave::turbo::{RetryPolicy, TurboConfig};
use crate::arweave::{DataItem, Tag, TurboClient, UploadOutcome};

/// Arguments of `upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The file whose bytes become the data item's payload.
    pub file: PathBuf,
    /// Turbo upload service base URL.
    #[arg(
        long,
        env = "ARIO_MLFLOW_UPLOAD_URL",
        default_value = "https://upload.ardrive.io"
    )]
    pub upload_url: url::Url,
    /// Data item tag `NAME=VALUE` (repeatable).
    #[arg(long = "tag", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// `Content-Type` tag [default: application/json for .json files, else application/octet-stream].
    #[arg(long)]
    pub content_type: Option<String>,
    /// Attempts in total for transient failures.
    #[arg(long, default_value_t = 6)]
    pub attempts: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub wallet: WalletArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: ArweaveHttpArgs,
}

fn parse_tag(s: &str) -> Result<(String, String), CmdError> {
    s.split_once('=')
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .ok_or_else(|| CmdError::Usage(format!("expected NAME=VALUE, got {s:?}")))
}

/// Runs the command.
pub async fn run(args: UploadArgs) -> ExitCode {
    finish(upload(args).await)
}

async fn upload(args: UploadArgs) -> Result<ExitCode, CmdError> {
    let data = std::fs::read(&args.file).map_err(|e| CmdError::read(&args.file, e))?;
    let wallet = args.wallet.load(true)?;
    let content_type = args.content_type.clone().unwrap_or_else(|| {
        if args.file.extension().is_some_and(|x| x == "json") {
            "application/json"
        } else {
            "application/octet-stream"
        }
        .to_string()
    });
    let mut tags = vec![Tag::new("Content-Type", content_type)];
    tags.extend(
        args.tags
            .iter()
            .map(|(n, v)| Tag::new(n.clone(), v.clone())),
    );
    let item = DataItem::sign(&wallet.signer, tags, data, None, None)?;
    let http = super::connect::http_settings(&args.http)?;
    let retry = RetryPolicy {
        max_attempts: args.attempts.max(1),
        ..RetryPolicy::default()
    };
    let client = TurboClient::new(TurboConfig {
        upload_url: args.upload_url.clone(),
        http,
        retry,
    })?;
    let id = item.id();
    let outcome = client
        .upload(&item.to_bytes())
        .await
        .map_err(CmdError::failed)?;
    let doc = match &outcome {
        UploadOutcome::Accepted(r) => serde_json::json!({"id": id, "receipt": r}),
        UploadOutcome::AlreadyInFlight(s) => {
            serde_json::json!({"id": id, "already_in_flight": s})
        }
    };
    println!("{doc}");
    Ok(ExitCode::SUCCESS)
}
