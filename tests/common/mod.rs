//! Shared test harness, one file per concern: locating `../shared`, vectors and the corpus
//! key (here); [`devnet`]; the JS [`oracle`]; the [`plugin`]'s CLI; a real [`mlflow`] server; [`s3`]; [`files`];
//! running the worker CLI ([`run`]); the [`lab`] that puts MLflow and devnet together; the
//! [`kafka`] broker; [`process`] (ports, the worker process type); [`metrics`] (the scraper
//! and the waits built on it). Every service starts on an ephemeral port and stops on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde_json::Value;

/// An exclusive lock on a file, held until dropped: one test process at a time prepares a tool
/// several test binaries share (they run in parallel lanes under `scripts/test`).
pub struct ExclusiveFile(std::fs::File);

impl ExclusiveFile {
    /// Waits for the lock on `path` (created, with its directory).
    pub fn lock(path: &Path) -> ExclusiveFile {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open the lock file {}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
        ExclusiveFile(file)
    }
}

/// The project's `shared/` directory: `$ARIO_SHARED_DIR`, else `../shared` beside the repo.
/// Missing vectors are a hard failure, never a silent pass.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("ARIO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        });
    assert!(
        dir.join("vectors").is_dir(),
        "conformance data not found at {} (set ARIO_SHARED_DIR to the shared/ folder)",
        dir.display()
    );
    dir
}

/// Parses a JSON file under `shared/`.
pub fn load_json(relative: &str) -> Value {
    let path = shared_dir().join(relative);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Every `*.json` file directly in `shared/<relative>` whose name starts with `prefix`, sorted.
pub fn vector_files(relative: &str, prefix: &str) -> Vec<PathBuf> {
    let dir = shared_dir().join(relative);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
}

/// The corpus's fixed seed `0123…cdef` as a signing key.
pub const CORPUS_SEED_HEX: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The corpus's fixed public key.
pub const CORPUS_PUBLIC_HEX: &str =
    "207a067892821e25d770f1fba0c47c11ff4b813e54162ece9eb839e076231ab6";

/// The signing key of a vector's `fixed_keypair`, checked against its stated public key.
pub fn vector_key(vector: &Value) -> SigningKey {
    let pair = &vector["fixed_keypair"];
    let seed: [u8; 32] = hex_bytes(&pair["ed25519_seed_hex"])
        .try_into()
        .expect("32-byte seed");
    let key = SigningKey::from_bytes(&seed);
    assert_eq!(
        hex::encode(key.verifying_key().as_bytes()),
        str_of(&pair["ed25519_public_hex"])
    );
    key
}

/// A JSON string field, or a panic naming it.
pub fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Decodes a hex string field.
pub fn hex_bytes(v: &Value) -> Vec<u8> {
    hex::decode(str_of(v)).unwrap_or_else(|e| panic!("bad hex {v}: {e}"))
}

pub mod devnet;

pub mod oracle;

pub mod plugin;

pub mod mlflow;

pub mod s3;

pub mod files;

pub mod run;

pub mod lab;

pub mod metrics;

pub mod kafka;

/// SoftHSM2: a token per test in a directory of its own.
pub mod hsm;
pub mod process;

/// Deploy tools (podman, helm, docker-compose, …) installed by `deploy/scripts/install-tools.sh`.
pub mod tools;
