//! Where the envelope key is (`ARIO_MLFLOW_SIGNER`): the flags every command that signs shares
//! (`run`, `backfill`, `anchor`, `guard`) and `keys show` — the plugin's key files or
//! `ARIO_MLFLOW_SIGNING_KEY`, or a PKCS#11 token. A token asked for is used or the command
//! stops: never a silent fall back to a key file.

use std::path::PathBuf;

use clap::Args;

use super::error::CmdError;
use crate::keys::{EnvelopeKey, Pkcs11Config};

/// What holds the envelope key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SignerKind {
    /// The plugin's key files (`--key-dir`) or `ARIO_MLFLOW_SIGNING_KEY`.
    #[default]
    File,
    /// A PKCS#11 token (`--pkcs11-module`, `--pkcs11-token`, `--pkcs11-key`, the PIN).
    Pkcs11,
}

/// The envelope key's flags.
#[derive(Debug, Clone, Args)]
pub struct SignerArgs {
    /// Directory of the plugin-format envelope key files [default: ~/.ario-mlflow/keys].
    #[arg(long, global = true, env = "ARIO_MLFLOW_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// Base64 of the 32-byte Ed25519 envelope seed; wins over key files.
    #[arg(
        long = "signing-key",
        env = "ARIO_MLFLOW_SIGNING_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub signing_key: Option<String>,
    /// What holds the envelope key: `file` (the key files, or ARIO_MLFLOW_SIGNING_KEY) or
    /// `pkcs11` (an HSM or token through its PKCS#11 module; the key never leaves it).
    #[arg(long, value_enum, env = "ARIO_MLFLOW_SIGNER", default_value = "file")]
    pub signer: SignerKind,
    /// The PKCS#11 module (library), e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, env = "ARIO_MLFLOW_PKCS11_MODULE", value_name = "PATH")]
    pub pkcs11_module: Option<PathBuf>,
    /// The label of the token holding the key.
    #[arg(long, env = "ARIO_MLFLOW_PKCS11_TOKEN", value_name = "LABEL")]
    pub pkcs11_token: Option<String>,
    /// The label of the Ed25519 key pair on the token.
    #[arg(long, env = "ARIO_MLFLOW_PKCS11_KEY", value_name = "LABEL")]
    pub pkcs11_key: Option<String>,
    /// The token's user PIN (prefer --pkcs11-pin-file).
    #[arg(
        long,
        env = "ARIO_MLFLOW_PKCS11_PIN",
        hide_env_values = true,
        value_name = "PIN"
    )]
    pub pkcs11_pin: Option<String>,
    /// A file holding the token's user PIN (its first line).
    #[arg(long, env = "ARIO_MLFLOW_PKCS11_PIN_FILE", value_name = "PATH")]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// Accept a key or wallet file that group or others may read (refused by default: whoever
    /// reads it can sign proofs or spend the wallet).
    #[arg(long, env = "ARIO_MLFLOW_ALLOW_OPEN_KEY_FILES")]
    pub allow_open_key_files: bool,
}

/// The funding wallet: the file named (refused when group or others may read it, unless
/// `allow_open`) or the default one, created on first use.
pub(crate) fn load_wallet(
    named: Option<&std::path::Path>,
    allow_open: bool,
) -> Result<crate::arweave::Wallet, CmdError> {
    if let Some(path) = named.filter(|p| !p.as_os_str().is_empty()) {
        private_file(path, "the wallet file", allow_open)?;
    }
    Ok(crate::arweave::Wallet::load_or_create(named, None)?)
}

/// Refuses a secret file (the envelope key, the wallet) that group or others may read, unless
/// `allow_open` says otherwise (then it is only a warning).
pub(crate) fn private_file(
    path: &std::path::Path,
    what: &str,
    allow_open: bool,
) -> Result<(), CmdError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                if allow_open {
                    tracing::warn!(file = %path.display(), mode = format!("{mode:03o}"), "{what} is readable by group or others (accepted: --allow-open-key-files)");
                } else {
                    return Err(CmdError::Usage(format!(
                        "{what} {} is readable by group or others (mode {mode:03o}): `chmod 600` it, or accept it with --allow-open-key-files (ARIO_MLFLOW_ALLOW_OPEN_KEY_FILES=true)",
                        path.display()
                    )));
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what, allow_open);
    Ok(())
}

impl SignerArgs {
    /// The envelope key these flags name; every error says what to set.
    pub fn load(&self) -> Result<EnvelopeKey, CmdError> {
        let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let path_given =
            |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
        match self.signer {
            SignerKind::File => {
                if path_given(&self.pkcs11_module)
                    || given(&self.pkcs11_token)
                    || given(&self.pkcs11_key)
                {
                    return Err(CmdError::usage(
                        "PKCS#11 settings are given but ARIO_MLFLOW_SIGNER is `file`: set ARIO_MLFLOW_SIGNER=pkcs11 to sign with the token (a key file is never used in its place), or unset ARIO_MLFLOW_PKCS11_*",
                    ));
                }
                let key = EnvelopeKey::load_or_create(
                    self.signing_key.as_deref(),
                    self.key_dir.as_deref(),
                )?;
                if let crate::keys::KeySource::File(path) = key.source() {
                    private_file(path, "the envelope key file", self.allow_open_key_files)?;
                }
                Ok(key)
            }
            SignerKind::Pkcs11 => {
                if given(&self.signing_key) {
                    return Err(CmdError::usage(
                        "ARIO_MLFLOW_SIGNER=pkcs11 signs with the token: unset ARIO_MLFLOW_SIGNING_KEY (two keys named, none is guessed)",
                    ));
                }
                Ok(EnvelopeKey::from_pkcs11(self.pkcs11_config()?)?)
            }
        }
    }

    /// The token, the key label and the PIN these flags name.
    pub fn pkcs11_config(&self) -> Result<Pkcs11Config, CmdError> {
        let missing = |what: &str, env: &str| {
            CmdError::Usage(format!(
                "ARIO_MLFLOW_SIGNER=pkcs11 needs {what}: set {env} (or the --{} flag)",
                env.trim_start_matches("ARIO_MLFLOW_")
                    .to_lowercase()
                    .replace('_', "-")
            ))
        };
        let module = self
            .pkcs11_module
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| missing("the module's path", "ARIO_MLFLOW_PKCS11_MODULE"))?;
        let token = self
            .pkcs11_token
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| missing("the token's label", "ARIO_MLFLOW_PKCS11_TOKEN"))?;
        let key = self
            .pkcs11_key
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| missing("the key's label", "ARIO_MLFLOW_PKCS11_KEY"))?;
        let pin = self.pin()?;
        Ok(Pkcs11Config {
            module,
            token,
            key,
            pin: cryptoki::types::AuthPin::new(pin),
        })
    }

    /// The PIN: `--pkcs11-pin` or the first line of `--pkcs11-pin-file`, not both.
    fn pin(&self) -> Result<String, CmdError> {
        let inline = self.pkcs11_pin.clone().filter(|p| !p.is_empty());
        let file = self
            .pkcs11_pin_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty());
        match (inline, file) {
            (Some(_), Some(_)) => Err(CmdError::usage(
                "both ARIO_MLFLOW_PKCS11_PIN and ARIO_MLFLOW_PKCS11_PIN_FILE are set: give one",
            )),
            (Some(pin), None) => Ok(pin),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| CmdError::read(&path, e))?;
                warn_if_readable(&path);
                let pin = text.lines().next().unwrap_or("").trim_end().to_string();
                if pin.is_empty() {
                    return Err(CmdError::Usage(format!(
                        "the PIN file {} is empty",
                        path.display()
                    )));
                }
                Ok(pin)
            }
            (None, None) => Err(CmdError::usage(
                "ARIO_MLFLOW_SIGNER=pkcs11 needs the token's PIN: set ARIO_MLFLOW_PKCS11_PIN_FILE (a file only this user reads) or ARIO_MLFLOW_PKCS11_PIN",
            )),
        }
    }
}

/// A PIN file others can read: said (never its content).
fn warn_if_readable(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(), "the PKCS#11 PIN file is readable by others: chmod 600 it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SignerArgs {
        SignerArgs {
            key_dir: None,
            signing_key: None,
            signer: SignerKind::Pkcs11,
            pkcs11_module: Some("/nowhere/libpkcs11.so".into()),
            pkcs11_token: Some("t".into()),
            pkcs11_key: Some("k".into()),
            pkcs11_pin: Some("1234".into()),
            pkcs11_pin_file: None,
            allow_open_key_files: false,
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused_unless_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut a = args();
        a.signer = SignerKind::File;
        a.pkcs11_module = None;
        a.pkcs11_token = None;
        a.pkcs11_key = None;
        a.key_dir = Some(dir.path().to_path_buf());
        assert!(a.load().is_ok(), "generated 0600");
        let private = dir.path().join("ed25519_private.json");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = message(&a);
        assert!(
            e.contains("readable by group or others (mode 644)") && e.contains("chmod 600"),
            "{e}"
        );
        a.allow_open_key_files = true;
        assert!(a.load().is_ok());
    }

    fn message(a: &SignerArgs) -> String {
        a.load().err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn a_token_asked_for_is_used_or_the_command_stops_naming_what_to_set() {
        let mut a = args();
        a.pkcs11_token = None;
        assert!(
            message(&a).contains("ARIO_MLFLOW_PKCS11_TOKEN"),
            "{}",
            message(&a)
        );
        let mut a = args();
        a.pkcs11_pin = None;
        assert!(message(&a).contains("PIN"), "{}", message(&a));
        let mut a = args();
        a.pkcs11_pin_file = Some("/nowhere/pin".into());
        assert!(message(&a).contains("give one"), "{}", message(&a));
        let mut a = args();
        a.signing_key = Some("AAAA".into());
        assert!(message(&a).contains("unset ARIO_MLFLOW_SIGNING_KEY"));
        // The module cannot load: a setup error naming it, never a key file instead.
        let e = args().load().unwrap_err();
        assert_eq!(e.exit_code(), std::process::ExitCode::from(2));
        assert!(e.to_string().contains("/nowhere/libpkcs11.so"), "{e}");
        assert!(
            !e.to_string().contains("1234"),
            "the PIN is never said: {e}"
        );
        // PKCS#11 settings with the file signer: refused, not ignored.
        let mut a = args();
        a.signer = SignerKind::File;
        assert!(
            message(&a).contains("ARIO_MLFLOW_SIGNER=pkcs11"),
            "{}",
            message(&a)
        );
    }
}
