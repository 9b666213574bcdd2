//! Shared test harness: locating `../shared`, loading vectors, the corpus key.
//!
//! Later issues add the real MLflow server, the broker and devnet here, each started on an
//! ephemeral port and stopped on drop.
#![allow(dead_code)]

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use serde_json::Value;

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

pub mod devnet {
    //! devnet in-process on an ephemeral loopback port, with its data in a temp dir.

    use std::path::PathBuf;
    use std::time::Duration;

    use ario_mlflow_worker::arweave::http::HttpSettings;
    use ario_mlflow_worker::arweave::turbo::{RetryPolicy, TurboConfig};
    use ario_mlflow_worker::arweave::TurboClient;
    use ario_mlflow_worker::devnet::faults::FaultRule;
    use ario_mlflow_worker::devnet::{start, DevnetConfig, DevnetHandle};

    /// A running devnet and the temp dir holding its data (removed on drop).
    pub struct TestDevnet {
        pub handle: DevnetHandle,
        pub dir: tempfile::TempDir,
    }

    /// The committed throwaway receipt key (avoids an RSA-4096 keygen per test).
    pub fn receipt_key() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/devnet-receipt-jwk.json")
    }

    /// Starts devnet with these fault flags (e.g. `["upload:503x2"]`).
    pub async fn start_devnet(tls: bool, faults: &[&str]) -> TestDevnet {
        let dir = tempfile::tempdir().unwrap();
        start_in(dir, tls, faults, None).await
    }

    /// Starts devnet in an existing directory (restarts), optionally on a fixed address.
    pub async fn start_in(
        dir: tempfile::TempDir,
        tls: bool,
        faults: &[&str],
        listen: Option<std::net::SocketAddr>,
    ) -> TestDevnet {
        let mut config = DevnetConfig::new(dir.path().join("data"));
        config.tls = tls;
        config.receipt_key = Some(receipt_key());
        config.faults = faults
            .iter()
            .map(|f| FaultRule::parse(f).unwrap())
            .collect();
        if let Some(addr) = listen {
            config.listen = addr;
        }
        let handle = start(config).await.unwrap();
        TestDevnet { handle, dir }
    }

    /// HTTP settings trusting the devnet's CA (when TLS) with a short timeout.
    pub fn http_for(dn: &DevnetHandle, timeout: Duration) -> HttpSettings {
        HttpSettings {
            request_timeout: timeout,
            connect_timeout: Duration::from_secs(2),
            extra_ca_pem: dn.ca_pem().map(|p| p.as_bytes().to_vec()),
        }
    }

    /// Fast retries for tests: many attempts, millisecond backoff, Retry-After capped at 5 s.
    pub fn fast_retry(max_attempts: usize) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
        }
    }

    /// A Turbo client pointed at the devnet.
    pub fn turbo(dn: &DevnetHandle, retry: RetryPolicy, timeout: Duration) -> TurboClient {
        TurboClient::new(TurboConfig {
            upload_url: dn.url().parse().unwrap(),
            http: http_for(dn, timeout),
            retry,
        })
        .unwrap()
    }
}

pub mod oracle {
    //! The independent ANS-104 oracle: `node shared/tools/ans104/verify_dataitem.mjs` (arbundles,
    //! the library Turbo verifies with) run on items devnet accepted. Needs node + npm; prints a
    //! notice and skips when node is absent, except under CI, where it is required.

    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;

    fn node_present() -> bool {
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The oracle script in a scratch copy with arbundles installed, or `None` without node.
    pub fn script() -> Option<PathBuf> {
        static SCRIPT: OnceLock<Option<PathBuf>> = OnceLock::new();
        SCRIPT
            .get_or_init(|| {
                if !node_present() {
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "node is required under CI for the ANS-104 oracle"
                    );
                    eprintln!("NOTICE: node not found; ANS-104 oracle SKIPPED");
                    return None;
                }
                let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ans104-oracle");
                if !dir.join("node_modules/arbundles/package.json").exists() {
                    std::fs::create_dir_all(&dir).unwrap();
                    for name in ["package.json", "verify_dataitem.mjs", "make_dataitem.mjs"] {
                        let from = super::shared_dir().join("tools/ans104").join(name);
                        std::fs::write(dir.join(name), std::fs::read(&from).unwrap()).unwrap();
                    }
                    let out = Command::new("npm")
                        .args([
                            "install",
                            "--no-audit",
                            "--no-fund",
                            "--loglevel=error",
                            "arbundles@0.11.2",
                        ])
                        .current_dir(&dir)
                        .output()
                        .expect("npm must be installed alongside node for the ANS-104 oracle");
                    assert!(
                        out.status.success(),
                        "npm install arbundles failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                Some(dir.join("verify_dataitem.mjs"))
            })
            .clone()
    }

    /// Checks every `<id>.bin` in `items_dir` with the oracle: each must be `valid` and
    /// `strictValid`, with the id we stored it under. Returns how many were checked.
    pub fn check_items(items_dir: &Path) -> usize {
        let Some(script) = script() else { return 0 };
        let mut files: Vec<PathBuf> = std::fs::read_dir(items_dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        files.sort();
        for file in &files {
            // Output goes to a file: node may cut large output short on a pipe when it exits.
            let report_path = file.with_extension("oracle.json");
            let report_file = std::fs::File::create(&report_path).unwrap();
            let out = Command::new("node")
                .arg(&script)
                .arg(file)
                .stdout(report_file)
                .output()
                .unwrap();
            let report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap_or_else(|e| {
                    panic!(
                        "oracle output for {}: {e}: {}",
                        file.display(),
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            let _ = std::fs::remove_file(&report_path);
            assert_eq!(
                report["valid"],
                serde_json::json!(true),
                "{}: {report}",
                file.display()
            );
            assert_eq!(
                report["strictValid"],
                serde_json::json!(true),
                "{}: {report}",
                file.display()
            );
            let stem = file.file_stem().unwrap().to_string_lossy();
            assert_eq!(
                report["id"].as_str(),
                Some(stem.as_ref()),
                "{}",
                file.display()
            );
        }
        println!("ANS-104 oracle (arbundles verify_dataitem.mjs): {} items accepted by devnet checked, all valid + strictValid", files.len());
        files.len()
    }
}
