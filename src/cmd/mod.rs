//! One file per command: each takes its parsed arguments and returns the process exit status.

pub mod anchor;
pub mod devnet;
pub mod fetch;
pub mod keys_show;
pub mod service;
pub mod upload;
pub mod verify;
pub mod verify_envelope;
pub mod wallet_show;

use std::path::Path;

use crate::arweave::http::HttpSettings;
use crate::cli::ArweaveHttpArgs;

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
