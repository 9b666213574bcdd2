//! `keys rotate` and `keys history`: the organisation's envelope keys over the years
//! ([`crate::profile::key_history`]). A rotation makes a new key current and anchors a
//! `key_retired` hand-over signed by the **old** key; the history file (the root key and every
//! hand-over with its TX) is what auditors pin (`--trusted-keys-file`).
//!
//! Crash safety: a file key's successor is written to `<key-dir>/next/` first and reused by a
//! rotation run again; the hand-over is uploaded before the history file is replaced (atomic
//! rename) and before the key files move (`<key-dir>/retired/<key id>/` keeps the old pair).
//! A crash in between leaves the old key current and the hand-over anchored — running the
//! rotation again signs a new hand-over to the same next key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::error::{finish, CmdError};
use super::settings::AnchorSettings;
use super::signer::SignerKind;
use crate::arweave::turbo::{RetryPolicy, TurboConfig};
use crate::arweave::{TurboClient, Wallet};
use crate::keys::{EnvelopeKey, KeySource, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE};
use crate::profile::key_history::{self, Handover, KeyHistory};
use crate::proof::{sign_envelope, EnvelopeSigner};

/// Where the key history is kept.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// The key history file (default: `<key-dir>/history.json`).
    #[arg(long, env = "ARIO_MLFLOW_KEY_HISTORY", value_name = "FILE")]
    pub key_history: Option<PathBuf>,
}

/// Arguments of `keys rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub anchor: AnchorSettings,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub history: HistoryArgs,
    /// With ARIO_MLFLOW_SIGNER=pkcs11: the label of the new key pair on the token (generated
    /// there beforehand). The file signer generates the new key itself.
    #[arg(long, value_name = "LABEL")]
    pub to_pkcs11_key: Option<String>,
    /// Why (the hand-over's `reason`): `rotation`, or `compromised` for a revocation.
    #[arg(long, default_value = "rotation")]
    pub reason: String,
    /// When the old key stops being valid (RFC 3339; default now). A revocation backdates it
    /// to when the key may have been compromised: every proof it signed after that fails
    /// against the history (re-anchor the legitimate ones with the new key).
    #[arg(long, value_name = "TIME")]
    pub retired_at: Option<String>,
    /// The hand-over's `subject.tenant_id`.
    #[arg(long, env = "ARIO_MLFLOW_TENANT_ID", default_value = "default")]
    pub tenant_id: String,
    /// The hand-over's `subject.agent_id`.
    #[arg(
        long,
        env = "ARIO_MLFLOW_AGENT_ID",
        default_value = "ario-mlflow-worker"
    )]
    pub agent_id: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `keys history`.
#[derive(Debug, Args)]
pub struct ShowHistoryArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub history: HistoryArgs,
    /// Directory of the key files (where the history lives by default).
    #[arg(long, env = "ARIO_MLFLOW_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// Print the history file itself (what `--trusted-keys-file` takes), checked.
    #[arg(long)]
    pub json: bool,
}

fn history_path(args: &HistoryArgs, key_dir: Option<&Path>) -> Result<PathBuf, CmdError> {
    if let Some(p) = args
        .key_history
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
    {
        return Ok(p);
    }
    let dir = key_dir
        .map(Path::to_path_buf)
        .or_else(crate::keys::default_key_dir)
        .ok_or_else(|| CmdError::usage("no HOME: give --key-history or --key-dir"))?;
    Ok(dir.join("history.json"))
}

/// Reads and checks a key history file.
pub(crate) fn read_history(path: &Path) -> Result<KeyHistory, CmdError> {
    let bytes = std::fs::read(path).map_err(|e| CmdError::read(path, e))?;
    let history: KeyHistory = serde_json::from_slice(&bytes)
        .map_err(|e| CmdError::Usage(format!("{} is not a key history: {e}", path.display())))?;
    history
        .windows()
        .map_err(|e| CmdError::Usage(format!("{}: {e}", path.display())))?;
    Ok(history)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CmdError> {
    let tmp = path.with_extension("tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CmdError::write(dir, e))?;
    }
    std::fs::write(&tmp, bytes).map_err(|e| CmdError::write(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CmdError::write(path, e))
}

/// Runs `keys rotate`.
pub async fn rotate(args: RotateArgs) -> ExitCode {
    finish(rotate_keys(args).await)
}

async fn rotate_keys(args: RotateArgs) -> Result<ExitCode, CmdError> {
    let key_args = &args.anchor.key;
    let old = key_args.load()?;
    let path = history_path(&args.history, key_args.key_dir.as_deref())?;
    let mut history = if path.exists() {
        read_history(&path)?
    } else {
        KeyHistory::new(&old.public_key())
    };
    let current = history
        .current()
        .map_err(|e| CmdError::Usage(e.to_string()))?;
    if current != old.public_key_hex() {
        return Err(CmdError::Usage(format!(
            "the history {} says the current key is {current}, but the signer's key is {}: rotate with the current key",
            path.display(),
            old.public_key_hex()
        )));
    }
    let (new, next_files) = match key_args.signer {
        SignerKind::Pkcs11 => {
            let label = args.to_pkcs11_key.clone().filter(|l| !l.is_empty()).ok_or_else(|| {
                CmdError::usage("ARIO_MLFLOW_SIGNER=pkcs11: name the new key pair with --to-pkcs11-key LABEL (generate it in the token first)")
            })?;
            let mut next = key_args.clone();
            next.pkcs11_key = Some(label);
            (next.load()?, None)
        }
        SignerKind::File => {
            let KeySource::File(private) = old.source().clone() else {
                return Err(CmdError::usage(
                    "the current key is not in key files (ARIO_MLFLOW_SIGNING_KEY or generated now): a rotation moves key files — put the key in --key-dir first",
                ));
            };
            let dir = private.parent().map(Path::to_path_buf).unwrap_or_default();
            let next_dir = dir.join("next");
            let next = EnvelopeKey::load_or_create(None, Some(&next_dir))?;
            (next, Some((dir, next_dir)))
        }
    };
    if new.public_key() == old.public_key() {
        return Err(CmdError::usage("the new key is the current key"));
    }
    let signed_at = time::OffsetDateTime::now_utc();
    let retired_at = match &args.retired_at {
        None => signed_at,
        Some(text) => {
            let at =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| {
                    CmdError::Usage(format!("--retired-at {text:?} is not an RFC 3339 time"))
                })?;
            if at > signed_at {
                return Err(CmdError::usage(
                    "--retired-at is in the future: a hand-over retires a key now or, for a revocation, earlier",
                ));
            }
            at
        }
    };
    let now = crate::anchor::sign::rfc3339_ms(retired_at);
    let unsigned = key_history::unsigned_handover(
        &uuid::Uuid::new_v4().to_string(),
        &old.public_key(),
        &new.public_key(),
        &args.reason,
        &now,
        &crate::anchor::sign::rfc3339_ms(signed_at),
        &history.head(),
        &args.tenant_id,
        &args.agent_id,
    );
    let envelope = sign_envelope(&unsigned, &old).map_err(CmdError::failed)?;
    let wallet = Wallet::load_or_create(args.anchor.wallet.as_deref(), None)?;
    let item = crate::anchor::sign::envelope_item(&envelope, &wallet.signer, None)
        .map_err(CmdError::failed)?;
    let tx = item.id();
    let turbo = TurboClient::new(TurboConfig {
        upload_url: args.anchor.upload_url.clone(),
        http: super::connect::http_settings(&args.anchor.http)?,
        retry: RetryPolicy::default(),
    })?;
    turbo
        .upload(&item.to_bytes())
        .await
        .map_err(CmdError::failed)?;
    history.handovers.push(Handover {
        tx: tx.clone(),
        envelope,
    });
    let windows = history
        .windows()
        .map_err(|e| CmdError::failed(e.to_string()))?;
    let text = serde_json::to_vec_pretty(&history).map_err(CmdError::failed)?;
    write_atomically(&path, &text)?;
    if let Some((dir, next_dir)) = next_files {
        // The old pair is kept aside (proofs it made stay verifiable by its public key).
        let retired = dir
            .join("retired")
            .join(key_history::key_id(&old.public_key()));
        std::fs::create_dir_all(&retired).map_err(|e| CmdError::write(&retired, e))?;
        for file in [PRIVATE_KEY_FILE, PUBLIC_KEY_FILE] {
            let (from, to) = (dir.join(file), retired.join(file));
            std::fs::rename(&from, &to).map_err(|e| CmdError::write(&to, e))?;
        }
        for file in [PRIVATE_KEY_FILE, PUBLIC_KEY_FILE] {
            let (from, to) = (next_dir.join(file), dir.join(file));
            std::fs::rename(&from, &to).map_err(|e| CmdError::write(&to, e))?;
        }
        let _ = std::fs::remove_dir(&next_dir);
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"tx": tx, "retired_public_key": old.public_key_hex(),
                "new_public_key": new.public_key_hex(), "retired_at": now,
                "history": path.display().to_string(), "keys": windows})
        );
    } else {
        println!("retired {} at {now}", old.public_key_hex());
        println!("current {}", new.public_key_hex());
        println!("hand-over anchored as {tx}; history in {}", path.display());
        if let Some(label) = &args.to_pkcs11_key {
            println!("next: restart the service with ARIO_MLFLOW_PKCS11_KEY={label}");
        } else {
            println!("next: restart the service (it loads the new key files)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `keys history`.
pub fn show(args: &ShowHistoryArgs) -> ExitCode {
    finish(show_history(args))
}

fn show_history(args: &ShowHistoryArgs) -> Result<ExitCode, CmdError> {
    let path = history_path(&args.history, args.key_dir.as_deref())?;
    let history = read_history(&path)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&history).map_err(CmdError::failed)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let windows = history
        .windows()
        .map_err(|e| CmdError::Usage(e.to_string()))?;
    println!("key history {} (root {}):", path.display(), history.root);
    for w in windows {
        println!(
            "  {}  {}  from {}  until {}{}",
            w.public_key,
            w.key_id,
            w.valid_from.as_deref().unwrap_or("the beginning"),
            w.retired_at.as_deref().unwrap_or("now (current)"),
            w.retired_by_tx
                .map(|t| format!("  (hand-over {t})"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
