//! `keys show`: prints the envelope public key and where it came from, creating the key files
//! on first use (so the key can be published through a trusted channel before any proof).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use std::process::ExitCode;

use super::error::{finish, CmdError};
use crate::keys::EnvelopeKey;

/// `keys …` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the envelope public key (hex) and where it came from; creates the key files on
    /// first use, so the key can be published before the first proof.
    Show(KeyArgs),
}

/// Where the signing key is looked up.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Directory of the plugin-format key files [default: ~/.ario-mlflow/keys].
    #[arg(long, env = "ARIO_MLFLOW_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// Base64 of the 32-byte Ed25519 seed; wins over key files.
    #[arg(
        long = "signing-key",
        env = "ARIO_MLFLOW_SIGNING_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub signing_key: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: &KeyArgs) -> ExitCode {
    finish(show(args))
}

fn show(args: &KeyArgs) -> Result<ExitCode, CmdError> {
    let key = EnvelopeKey::load_or_create(args.signing_key.as_deref(), args.key_dir.as_deref())?;
    if args.json {
        let doc = serde_json::json!({
            "public_key": key.public_key_hex(),
            "source": key.source().to_string(),
        });
        println!("{doc}");
    } else {
        println!("public_key: {}", key.public_key_hex());
        println!("source:     {}", key.source());
    }
    Ok(ExitCode::SUCCESS)
}
