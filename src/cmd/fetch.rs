//! `fetch <ID>`: reads a data item's payload through the ordered gateway list. Exit 0 found
//! (and matching `--sha256` when given), 1 no gateway served it, 2 bad input.

use std::path::PathBuf;

use clap::Args;

use super::connect::ArweaveHttpArgs;
use super::error::{finish, CmdError};
use std::io::Write;
use std::process::ExitCode;

use crate::arweave::gateway::gateway_list;
use crate::arweave::GatewayReader;

/// Arguments of `fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Data item id (base64url; may start with `-`).
    #[arg(allow_hyphen_values = true)]
    pub id: String,
    /// Gateway `host[:port]` (https) or full URL; repeatable, tried in order.
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// Comma-separated gateways, used when no `--gateway` is given.
    #[arg(long, env = "ARIO_MLFLOW_GATEWAYS", hide = true)]
    pub gateways_env: Option<String>,
    /// Host put first in the default gateway list.
    #[arg(long, env = "ARIO_MLFLOW_GATEWAY_HOST", hide = true)]
    pub gateway_host: Option<String>,
    /// Expected SHA-256 (hex) of the payload; gateways serving other bytes are skipped.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Write the payload here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: ArweaveHttpArgs,
}

/// Runs the command.
pub async fn run(args: FetchArgs) -> ExitCode {
    finish(fetch(args).await)
}

async fn fetch(args: FetchArgs) -> Result<ExitCode, CmdError> {
    let expected = match args.sha256.as_deref().map(hex::decode) {
        None => None,
        Some(Ok(bytes)) if bytes.len() == 32 => bytes.try_into().ok(),
        Some(_) => return Err(CmdError::usage("--sha256 must be 64 hex characters")),
    };
    let gateways = gateway_list(
        &args.gateways,
        args.gateways_env.as_deref(),
        args.gateway_host.as_deref(),
    )?;
    let http = super::connect::http_settings(&args.http)?;
    let reader = GatewayReader::new(gateways, &http)?;
    let fetched = reader
        .fetch_raw(&args.id, expected.as_ref())
        .await
        .map_err(CmdError::failed)?;
    for f in &fetched.failures {
        eprintln!("note: {} failed: {}", f.gateway, f.cause);
    }
    eprintln!(
        "served by {} ({} bytes)",
        fetched.gateway,
        fetched.bytes.len()
    );
    let written = match &args.output {
        Some(path) => std::fs::write(path, &fetched.bytes),
        None => std::io::stdout().write_all(&fetched.bytes),
    };
    written.map_err(|e| CmdError::Usage(format!("cannot write the payload: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
