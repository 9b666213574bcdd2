//! The envelope signing key (Ed25519): where it comes from and how it is kept.
//!
//! Order (spec/mlflow-profile.md §4.7, docs/architecture.md §5):
//! 1. `ARIO_MLFLOW_SIGNING_KEY` — standard base64 of the 32-byte seed — wins when non-empty;
//! 2. otherwise the plugin's key files in the key directory (default `~/.ario-mlflow/keys/`):
//!    `ed25519_private.json` = `{"seed": "<base64>"}`, `ed25519_public.json` = `{"key": "<base64>"}`;
//! 3. otherwise a new key is generated **once** and written there (file 0600, directory 0700).
//!
//! Behaviour change from the plugin (deliberate, see the README): the plugin regenerates and
//! overwrites its default key files on every start; we load them when present and never overwrite
//! an existing file. A malformed key file is an error naming the file, never a silent new key.
//! A new file is written to a temporary name and hard-linked into place, so a crash leaves no
//! half-written key and two processes starting at once end up with the same key.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ed25519_dalek::SigningKey;
use serde_json::json;

use crate::proof::{EnvelopeSigner, SignerFailure};

mod pkcs11;
pub use pkcs11::{import as import_into_token, Pkcs11Config, Pkcs11Error, Pkcs11Signer};

/// Environment variable holding the base64 seed (the plugin's name).
pub const SIGNING_KEY_ENV: &str = "ARIO_MLFLOW_SIGNING_KEY";
/// File name of the private key (seed) in the key directory.
pub const PRIVATE_KEY_FILE: &str = "ed25519_private.json";
/// File name of the public key in the key directory.
pub const PUBLIC_KEY_FILE: &str = "ed25519_public.json";

/// Standard alphabet, padding optional (Python's `b64decode` is lenient about it).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why the signing key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `ARIO_MLFLOW_SIGNING_KEY` is set but is not base64 of 32 bytes.
    #[error(
        "{SIGNING_KEY_ENV} is not standard base64 of a 32-byte Ed25519 seed ({0}); fix or unset it"
    )]
    BadEnvSeed(SeedError),
    /// A key file exists but cannot be used.
    #[error(
        "key file {path} is malformed ({reason}); fix or move it away — it is never overwritten"
    )]
    Malformed {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The public key file does not belong to the private key file.
    #[error("{public} does not match the private key in {private}; remove the wrong one")]
    PairMismatch {
        /// The private key file.
        private: PathBuf,
        /// The public key file.
        public: PathBuf,
    },
    /// Only the public half exists: generating a private key would orphan it.
    #[error("{public} exists but its private key {private} is missing; restore it or move the public key away")]
    MissingPrivate {
        /// The expected private key file.
        private: PathBuf,
        /// The public key file found.
        public: PathBuf,
    },
    /// No key directory given and no home directory to default to.
    #[error("no key directory: set $HOME, --key-dir or {SIGNING_KEY_ENV}")]
    NoKeyDir,
    /// File system error on a key path.
    #[error("cannot access key path {path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The system random source failed while generating a key.
    #[error("cannot generate a key: system random source failed: {0}")]
    Random(String),
}

/// Where the signing key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `ARIO_MLFLOW_SIGNING_KEY` environment variable.
    Env,
    /// An existing key file.
    File(PathBuf),
    /// Generated now and written to this file.
    Generated(PathBuf),
    /// A PKCS#11 token holds it (the key never leaves the token).
    Pkcs11 {
        /// The PKCS#11 module (library) path.
        module: PathBuf,
        /// The token's label.
        token: String,
        /// The key's label.
        key: String,
    },
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => write!(f, "environment variable {SIGNING_KEY_ENV}"),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Generated(p) => write!(f, "generated now, saved to {}", p.display()),
            KeySource::Pkcs11 { module, token, key } => write!(
                f,
                "PKCS#11 token {token:?}, key {key:?} (module {})",
                module.display()
            ),
        }
    }
}

/// The Ed25519 key that signs envelopes, wherever it is held: every signature the service
/// makes (envelopes, checkpoints, guard events) goes through it. Cheap to clone (one signer
/// shared); `Debug` never prints a secret.
#[derive(Clone)]
pub struct EnvelopeKey {
    signer: Arc<dyn EnvelopeSigner + Send + Sync>,
    public: [u8; 32],
    source: KeySource,
}

impl EnvelopeSigner for EnvelopeKey {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], SignerFailure> {
        self.signer.sign_message(message)
    }
}

impl fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvelopeKey")
            .field("public_key", &self.public_key_hex())
            .field("source", &self.source)
            .field("seed", &"<redacted>")
            .finish()
    }
}

impl EnvelopeKey {
    /// A key from a raw 32-byte seed (tests, and callers that manage their own secrets).
    pub fn from_seed(seed: &[u8; 32], source: KeySource) -> Self {
        let key = SigningKey::from_bytes(seed);
        EnvelopeKey {
            public: key.verifying_key().to_bytes(),
            signer: Arc::new(key),
            source,
        }
    }

    /// The key a PKCS#11 token holds (`ARIO_MLFLOW_SIGNER=pkcs11`): the module loaded, the
    /// token found by label, logged in, the key pair found by label and checked by a signature.
    pub fn from_pkcs11(config: Pkcs11Config) -> Result<Self, Pkcs11Error> {
        let source = KeySource::Pkcs11 {
            module: config.module.clone(),
            token: config.token.clone(),
            key: config.key.clone(),
        };
        let signer = Pkcs11Signer::open(config)?;
        Ok(EnvelopeKey {
            public: signer.public_key(),
            signer: Arc::new(signer),
            source,
        })
    }

    /// Lowercase hex of the 32-byte public key, as it appears in envelopes.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public)
    }

    /// Where the key came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// Resolves the key: `env_seed` (the value of `ARIO_MLFLOW_SIGNING_KEY`) when non-empty,
    /// else the key files in `key_dir`, else a new key generated once into `key_dir`.
    pub fn load_or_create(
        env_seed: Option<&str>,
        key_dir: Option<&Path>,
    ) -> Result<Self, KeyError> {
        if let Some(seed) = env_seed.map(str::trim).filter(|s| !s.is_empty()) {
            let seed = decode_seed(seed).map_err(KeyError::BadEnvSeed)?;
            return Ok(Self::from_seed(&seed, KeySource::Env));
        }
        let dir = match key_dir {
            Some(d) => d.to_path_buf(),
            None => default_key_dir().ok_or(KeyError::NoKeyDir)?,
        };
        let private = dir.join(PRIVATE_KEY_FILE);
        let public = dir.join(PUBLIC_KEY_FILE);
        if exists(&private)? {
            return load_pair(&private, &public);
        }
        if exists(&public)? {
            return Err(KeyError::MissingPrivate { private, public });
        }
        generate_into(&dir, &private, &public)
    }
}

/// The seed of an existing file or environment key (never one generated now): what `keys
/// import` moves into a token.
pub fn existing_seed(env_seed: Option<&str>, key_dir: Option<&Path>) -> Result<[u8; 32], KeyError> {
    if let Some(seed) = env_seed.map(str::trim).filter(|s| !s.is_empty()) {
        return decode_seed(seed).map_err(KeyError::BadEnvSeed);
    }
    let dir = match key_dir {
        Some(d) => d.to_path_buf(),
        None => default_key_dir().ok_or(KeyError::NoKeyDir)?,
    };
    let private = dir.join(PRIVATE_KEY_FILE);
    if !exists(&private)? {
        return Err(KeyError::Io {
            path: private,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no key file to import (set ARIO_MLFLOW_SIGNING_KEY or --key-dir)",
            ),
        });
    }
    read_field(&private, "seed")
}

/// `~/.ario-mlflow/keys`, the plugin's default key directory.
pub fn default_key_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".ario-mlflow").join("keys"))
}

/// Why a text is not a base64 Ed25519 seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    /// Not base64.
    #[error("not base64: {0}")]
    NotBase64(String),
    /// Not 32 bytes.
    #[error("decodes to {0} bytes, expected 32")]
    Length(usize),
}

fn decode_seed(text: &str) -> Result<[u8; 32], SeedError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| SeedError::NotBase64(e.to_string()))?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| SeedError::Length(len))
}

fn exists(path: &Path) -> Result<bool, KeyError> {
    path.try_exists().map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_field(path: &Path, field: &str) -> Result<[u8; 32], KeyError> {
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let value = doc.get(field).and_then(|v| v.as_str()).ok_or_else(|| {
        malformed(format!(
            "expected an object with a string field \"{field}\""
        ))
    })?;
    decode_seed(value).map_err(|e| malformed(format!("field \"{field}\" {e}")))
}

fn load_pair(private: &Path, public: &Path) -> Result<EnvelopeKey, KeyError> {
    let seed = read_field(private, "seed")?;
    let key = EnvelopeKey::from_seed(&seed, KeySource::File(private.to_path_buf()));
    if exists(public)? {
        let stated = read_field(public, "key")?;
        if stated != key.public {
            return Err(KeyError::PairMismatch {
                private: private.to_path_buf(),
                public: public.to_path_buf(),
            });
        }
    } else {
        let body = json!({ "key": B64.encode(key.public) });
        write_new(public, body.to_string().as_bytes(), 0o644)?;
    }
    Ok(key)
}

fn generate_into(dir: &Path, private: &Path, public: &Path) -> Result<EnvelopeKey, KeyError> {
    create_private_dir(dir)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let body = json!({ "seed": B64.encode(seed) });
    if !write_new(private, body.to_string().as_bytes(), 0o600)? {
        // Another process created the key first: use theirs.
        return load_pair(private, public);
    }
    let key = EnvelopeKey::from_seed(&seed, KeySource::Generated(private.to_path_buf()));
    let pub_body = json!({ "key": B64.encode(key.public) });
    write_new(public, pub_body.to_string().as_bytes(), 0o644)?;
    Ok(key)
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| KeyError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` only if it does not exist yet (temp file + hard link, so the final
/// name appears complete or not at all). Returns `false` when `path` already existed.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS_SEED_B64: &str = "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=";
    const CORPUS_PUBLIC: &str = "207a067892821e25d770f1fba0c47c11ff4b813e54162ece9eb839e076231ab6";

    #[test]
    fn env_seed_wins_over_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = EnvelopeKey::load_or_create(Some(CORPUS_SEED_B64), Some(dir.path())).unwrap();
        assert_eq!(key.public_key_hex(), CORPUS_PUBLIC);
        assert_eq!(key.source(), &KeySource::Env);
        assert!(
            !dir.path().join(PRIVATE_KEY_FILE).exists(),
            "env key must not touch the key dir"
        );
    }

    #[test]
    fn bad_env_seed_is_an_error_and_empty_env_is_unset() {
        assert!(matches!(
            EnvelopeKey::load_or_create(Some("AAAA"), None),
            Err(KeyError::BadEnvSeed(_))
        ));
        assert!(matches!(
            EnvelopeKey::load_or_create(Some("!!"), None),
            Err(KeyError::BadEnvSeed(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let key = EnvelopeKey::load_or_create(Some("  "), Some(dir.path())).unwrap();
        assert!(matches!(key.source(), KeySource::Generated(_)));
    }

    #[test]
    fn generated_once_then_reused_with_private_modes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("nested").join("keys");
        let first = EnvelopeKey::load_or_create(None, Some(&dir)).unwrap();
        assert!(matches!(first.source(), KeySource::Generated(_)));
        let second = EnvelopeKey::load_or_create(None, Some(&dir)).unwrap();
        assert_eq!(first.public_key_hex(), second.public_key_hex());
        assert!(matches!(second.source(), KeySource::File(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.join(PRIVATE_KEY_FILE)), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert_eq!(leftovers.len(), 2, "only the two key files remain");
    }

    #[test]
    fn plugin_key_files_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PRIVATE_KEY_FILE),
            format!(r#"{{"seed": "{CORPUS_SEED_B64}"}}"#),
        )
        .unwrap();
        let key = EnvelopeKey::load_or_create(None, Some(dir.path())).unwrap();
        assert_eq!(key.public_key_hex(), CORPUS_PUBLIC);
        // The missing public half was written, and it is consistent on the next load.
        assert!(dir.path().join(PUBLIC_KEY_FILE).exists());
        assert!(EnvelopeKey::load_or_create(None, Some(dir.path())).is_ok());
    }

    #[test]
    fn malformed_or_mismatched_files_are_errors_and_stay_untouched() {
        for body in ["not json", r#"{"seed": 5}"#, r#"{"seed": "AAAA"}"#, r#"{}"#] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(PRIVATE_KEY_FILE);
            std::fs::write(&path, body).unwrap();
            let err = EnvelopeKey::load_or_create(None, Some(dir.path())).unwrap_err();
            assert!(matches!(err, KeyError::Malformed { .. }), "{body}: {err}");
            assert!(err.to_string().contains(PRIVATE_KEY_FILE));
            assert_eq!(std::fs::read_to_string(&path).unwrap(), body);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PRIVATE_KEY_FILE),
            format!(r#"{{"seed": "{CORPUS_SEED_B64}"}}"#),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(PUBLIC_KEY_FILE),
            format!(r#"{{"key": "{}"}}"#, B64.encode([9u8; 32])),
        )
        .unwrap();
        assert!(matches!(
            EnvelopeKey::load_or_create(None, Some(dir.path())),
            Err(KeyError::PairMismatch { .. })
        ));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PUBLIC_KEY_FILE), r#"{"key": "x"}"#).unwrap();
        assert!(matches!(
            EnvelopeKey::load_or_create(None, Some(dir.path())),
            Err(KeyError::MissingPrivate { .. })
        ));
    }

    #[test]
    fn debug_output_never_contains_the_seed() {
        let key = EnvelopeKey::from_seed(&[0x42; 32], KeySource::Env);
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted") && !shown.contains(&hex::encode([0x42u8; 32])));
        assert!(!shown.contains(&B64.encode([0x42u8; 32])));
    }
}
