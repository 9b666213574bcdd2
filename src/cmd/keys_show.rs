//! `keys show`: prints the envelope public key and where it came from, creating the key files
//! on first use (so the key can be published through a trusted channel before any proof).

use clap::{Args, Subcommand};

use std::process::ExitCode;

use super::error::{finish, CmdError};

/// `keys …` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the envelope public key (hex) and where it came from; creates the key files on
    /// first use, so the key can be published before the first proof. With
    /// ARIO_MLFLOW_SIGNER=pkcs11, the key read from the token.
    Show(KeyArgs),
    /// Move the file or environment key into a PKCS#11 token (ARIO_MLFLOW_PKCS11_*): written
    /// there as a non-extractable key pair under --pkcs11-key, checked by a signature. The
    /// public key stays the same, so every proof made so far still verifies; delete the key
    /// file afterwards and run with ARIO_MLFLOW_SIGNER=pkcs11.
    Import(KeyArgs),
    /// Make a new envelope key current: the old key signs a `key_retired` hand-over (the
    /// family's `ario.agent/v1` event), anchored through Turbo and added to the key history
    /// that verifiers pin (`--trusted-keys-file`). File keys: the new key is generated and the
    /// old files kept in `<key-dir>/retired/<key id>/`; PKCS#11: name the new pair with
    /// `--to-pkcs11-key`.
    Rotate(Box<super::keys_rotate::RotateArgs>),
    /// The organisation's keys with their validity windows and hand-over TXs, the chain
    /// checked (`--json`: the history file, what `--trusted-keys-file` takes).
    History(super::keys_rotate::ShowHistoryArgs),
}

/// Where the signing key is looked up.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: super::signer::SignerArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: &KeyArgs) -> ExitCode {
    finish(show(args))
}

fn show(args: &KeyArgs) -> Result<ExitCode, CmdError> {
    let key = args.key.load()?;
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

/// Runs `keys import`.
pub fn import(args: &KeyArgs) -> ExitCode {
    finish(import_key(args))
}

fn import_key(args: &KeyArgs) -> Result<ExitCode, CmdError> {
    let k = &args.key;
    let seed = crate::keys::existing_seed(k.signing_key.as_deref(), k.key_dir.as_deref())?;
    let mut token = k.clone();
    token.signer = super::signer::SignerKind::Pkcs11;
    token.signing_key = None;
    let config = token.pkcs11_config()?;
    let (label, name) = (config.key.clone(), config.token.clone());
    let public = crate::keys::import_into_token(config, &seed)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"public_key": hex::encode(public), "token": name, "key": label})
        );
    } else {
        println!("imported into PKCS#11 token {name:?} as {label:?}");
        println!("public_key: {}", hex::encode(public));
        println!("next: run with ARIO_MLFLOW_SIGNER=pkcs11, then delete the key file (the token holds the only copy the service needs)");
    }
    Ok(ExitCode::SUCCESS)
}
