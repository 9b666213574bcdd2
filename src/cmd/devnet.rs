//! `devnet`: runs the local Turbo-compatible service until SIGINT/SIGTERM. Prints one JSON line
//! on stdout once listening (`{"event":"listening","url":…,"ca_cert":…}`) so scripts and test
//! harnesses can find the port when `--listen` uses port 0.

use std::path::PathBuf;

use clap::Args;

use std::process::ExitCode;
use std::time::Duration;

use super::error::{finish, CmdError};
use crate::devnet::{start, DevnetConfig};

/// Arguments of `devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = crate::devnet::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// Directory for stored items, the receipt key and TLS material.
    #[arg(long, default_value = "devnet-data")]
    pub data_dir: PathBuf,
    /// Serve https with a generated CA-signed certificate for 127.0.0.1 / localhost.
    #[arg(long)]
    pub tls: bool,
    /// Write the CA certificate PEM here (for REQUESTS_CA_BUNDLE or --ca-cert).
    #[arg(long, requires = "tls")]
    pub cert_out: Option<PathBuf>,
    /// Largest accepted item in bytes; larger ones get 402 "Insufficient balance".
    #[arg(long, default_value_t = crate::devnet::DEFAULT_FREE_LIMIT)]
    pub free_limit: usize,
    /// RSA-4096 JWK that signs receipts [default: generated once into the data dir].
    #[arg(long)]
    pub receipt_key: Option<PathBuf>,
    /// Fault rule `ROUTE:SPEC[xCOUNT][@PROB]`, e.g. `upload:503x3`, `upload:429/2@0.3`,
    /// `raw:reset`, `upload:delay=1500`, `raw:notfound-first=2` (repeatable).
    #[arg(long = "fault", value_parser = crate::devnet::faults::FaultRule::parse)]
    pub faults: Vec<crate::devnet::faults::FaultRule>,
}

/// Runs the command.
pub async fn run(args: DevnetArgs) -> ExitCode {
    finish(serve(args).await)
}

async fn serve(args: DevnetArgs) -> Result<ExitCode, CmdError> {
    let config = DevnetConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        tls: args.tls,
        cert_out: args.cert_out.clone(),
        free_limit: args.free_limit,
        receipt_key: args.receipt_key.clone(),
        faults: args.faults.clone(),
    };
    let handle = start(config)
        .await
        .map_err(|e| CmdError::Setup(Box::new(e)))?;
    let line = serde_json::json!({
        "event": "listening",
        "url": handle.url(),
        "ca_cert": args.cert_out,
        "data_dir": args.data_dir,
    });
    println!("{line}");
    let server = handle.server_handle();
    tokio::spawn(async move {
        crate::service::shutdown::signal().await;
        tracing::info!("devnet: shutting down");
        server.graceful_shutdown(Some(Duration::from_secs(5)));
        crate::service::shutdown::signal().await;
        std::process::exit(130);
    });
    handle
        .wait()
        .await
        .map_err(|e| CmdError::failed(format!("devnet stopped: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
