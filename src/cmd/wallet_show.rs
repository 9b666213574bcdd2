//! `wallet show`: the funding wallet's type, address, mode and file.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use std::process::ExitCode;

use super::error::finish;
use crate::arweave::Wallet;

/// `wallet …` subcommands.
#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Print the wallet's type, address, mode and file; creates the default wallet on first use.
    Show(WalletArgs),
}

/// Where the funding wallet comes from.
#[derive(Debug, Clone, Args)]
pub struct WalletArgs {
    /// Arweave JWK or Solana id.json to sign data items with [default: ~/.ario-mlflow/wallet.json].
    #[arg(long, env = "ARIO_MLFLOW_ARWEAVE_WALLET")]
    pub wallet: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Accept a wallet file that group or others may read (`upload` refuses one by default).
    #[arg(long, env = "ARIO_MLFLOW_ALLOW_OPEN_KEY_FILES")]
    pub allow_open_key_files: bool,
}

impl WalletArgs {
    /// The wallet these flags name; a named file group or others may read is refused unless
    /// allowed.
    pub fn load(&self, refuse_open: bool) -> Result<Wallet, super::error::CmdError> {
        super::signer::load_wallet(
            self.wallet.as_deref(),
            self.allow_open_key_files || !refuse_open,
        )
    }
}

/// Runs the command.
pub fn run(args: &WalletArgs) -> ExitCode {
    // Showing a wallet signs nothing: an open file is only warned about.
    match args.load(false) {
        Ok(w) => {
            if args.json {
                let doc = serde_json::json!({
                    "type": w.wallet_type, "address": w.address(), "mode": w.mode,
                    "path": w.path, "generated": w.generated,
                    "signature_type": w.signer.signature_type().code(),
                });
                println!("{doc}");
            } else {
                let ty = serde_json::to_value(w.wallet_type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let mode = serde_json::to_value(w.mode)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                println!(
                    "type:    {ty} (ANS-104 signature type {})",
                    w.signer.signature_type().code()
                );
                println!("address: {}", w.address());
                println!(
                    "mode:    {mode}{}",
                    if w.generated { " (generated now)" } else { "" }
                );
                println!("file:    {}", w.path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => finish(Err(e)),
    }
}
