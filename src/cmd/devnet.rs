//! `devnet`: runs the local Turbo-compatible service until SIGINT/SIGTERM. Prints one JSON line
//! on stdout once listening (`{"event":"listening","url":…,"ca_cert":…}`) so scripts and test
//! harnesses can find the port when `--listen` uses port 0.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::DevnetArgs;
use crate::devnet::{start, DevnetConfig};

/// Runs the command.
pub async fn run(args: DevnetArgs) -> ExitCode {
    let config = DevnetConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        tls: args.tls,
        cert_out: args.cert_out.clone(),
        free_limit: args.free_limit,
        receipt_key: args.receipt_key.clone(),
        faults: args.faults.clone(),
    };
    let handle = match start(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let line = serde_json::json!({
        "event": "listening",
        "url": handle.url(),
        "ca_cert": args.cert_out,
        "data_dir": args.data_dir,
    });
    println!("{line}");
    let server = handle.server_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("devnet: shutting down");
        server.graceful_shutdown(Some(Duration::from_secs(5)));
        shutdown_signal().await;
        std::process::exit(130);
    });
    match handle.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: devnet stopped: {e}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
