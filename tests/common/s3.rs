//! The real S3-compatible server of `../shared/S3.md` (s3s-fs by default), started through
//! `../shared/tools/s3/s3-local.sh` (installed there on first use, then kept under
//! `~/.cache/ario-s3-local`). It keeps objects as plain files, so a test can compute what the
//! store holds independently of any S3 client, and overwrite an object as an attacker would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// A running S3 server.
pub struct S3 {
    /// `S3_ENDPOINT`, `MLFLOW_S3_ENDPOINT_URL`, `AWS_*` as the helper prints them.
    pub env: Vec<(String, String)>,
    /// The bucket.
    pub bucket: String,
    /// Where the server keeps the bucket's objects as files.
    pub bucket_dir: PathBuf,
}

/// Starts (or finds running) the shared S3 server.
pub fn start() -> S3 {
    let script = super::shared_dir().join("tools/s3/s3-local.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .output()
        .expect("run s3-local.sh");
    assert!(
        out.status.success(),
        "the S3 server did not start ({}): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let env: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("s3-local.sh printed no {k}"))
    };
    let bucket = get("S3_BUCKET");
    let home = std::env::var_os("S3_LOCAL_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ario-s3-local")
        });
    let bucket_dir = home.join("data-s3s-fs").join(&bucket);
    assert!(
        bucket_dir.is_dir(),
        "bucket directory {} not found",
        bucket_dir.display()
    );
    S3 {
        env,
        bucket,
        bucket_dir,
    }
}

impl S3 {
    /// The environment with one variable replaced (e.g. a wrong secret key).
    pub fn env_with(&self, key: &str, value: &str) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if k == key {
                        value.to_string()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    }

    /// `{relative path: sha256 hex}` of every file the server holds under `prefix` of the
    /// bucket, read from its data directory (not through S3).
    pub fn file_checksums(&self, prefix: &str) -> BTreeMap<String, String> {
        let root = self.bucket_dir.join(prefix.trim_matches('/'));
        super::files::checksums(&root)
    }
}
